"""``gangplace grpc ...``: call a running gangplace server by hand through the typed client.

    gangplace grpc place --target 127.0.0.1:50051 --gang examples/gang.yaml [--reserve]
    gangplace grpc snapshot --target ...        gangplace grpc release --target ... GANG

Exit codes: 0 ok, 2 invalid input (the server's INVALID_ARGUMENT, field named), 3 the gang does
not fit, 1 the server could not be reached or failed.
"""
from __future__ import annotations

import argparse
import sys
import time

from .client import DEFAULT_TARGET, GangplaceClient, ServiceError
from .output import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("grpc", help="call a running gangplace server (gRPC)",
                       description="Call a running gangplace server through gangplace.v1.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    common.add_argument("--ca", metavar="PEM", help="TLS: CA that signed the server certificate")
    common.add_argument("--cert", metavar="PEM", help="mTLS: client certificate")
    common.add_argument("--key", metavar="PEM", help="mTLS: client private key")
    common.add_argument("--server-name", help="TLS: name to check in the server certificate")
    common.add_argument("--tls", action="store_true", help="TLS with the system CA roots")
    common.add_argument("--timeout-s", type=float, default=30.0, help="per-call deadline")
    verbs = p.add_subparsers(dest="grpc_verb", metavar="VERB", required=True)

    def verb(name: str, help: str, fn, output: bool = True) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help, parents=[common])
        if output:
            v.add_argument("--output", choices=("json", "table"), default="table",
                           help="(default table, as `gangplace place`)")
        v.set_defaults(func=lambda args: _run(fn, args))
        return v

    v = verb("place", "place one gang (optionally reserve it)", _place)
    v.add_argument("--gang", required=True, help="gang file (.yaml or .json)")
    v.add_argument("--placer", choices=("auto", "heuristic", "cpsat"), default="", help="(default: the server's)")
    v.add_argument("--time-limit-ms", type=float, default=0.0, help="CP-SAT budget (0 = the server's)")
    v.add_argument("--reserve", action="store_true", help="hold the placement as a reservation")
    v.add_argument("--ttl-s", type=float, default=0.0, help="reservation lifetime (server default)")
    v = verb("batch", "place several gangs (a directory or a multi-gang file)", _batch)
    v.add_argument("--gangs", required=True, metavar="DIR_OR_FILE",
                   help="a directory of gang files or one file holding a list of gangs")
    v.add_argument("--placer", choices=("auto", "heuristic", "cpsat"), default="", help="(default: the server's)")
    v.add_argument("--time-limit-ms", type=float, default=0.0, help="CP-SAT budget (0 = the server's)")
    v = verb("release", "drop a gang's reservation", _release, output=False)
    v.add_argument("gang")
    v = verb("explain", "why a gang does not fit now", _explain)
    v.add_argument("--gang", required=True, help="gang file (.yaml or .json)")
    v = verb("preempt", "plan which gangs to evict so a gang fits", _preempt)
    v.add_argument("--gang", required=True, help="gang file (.yaml or .json)")
    v.add_argument("--placer", choices=("auto", "heuristic", "cpsat"), default="", help="(default: the server's)")
    v = verb("snapshot", "read the live cluster", _snapshot)
    v.add_argument("--nodes", action="store_true", help="include every node (a line per node in the table)")
    v = verb("upsert-nodes", "add or replace the nodes of a cluster file", _upsert, output=False)
    v.add_argument("--cluster", required=True, help="cluster file (.yaml, .json, .parquet, .arrow)")
    v = verb("remove-nodes", "remove nodes by name", _remove, output=False)
    v.add_argument("names", nargs="+")
    v = verb("bind", "record a running pod", _bind, output=False)
    v.add_argument("--pod", required=True, help="unique pod key (Kubernetes: UID)")
    v.add_argument("--node", required=True)
    v.add_argument("--gpus", type=int, default=0)
    v.add_argument("--cpu", type=int, default=0, help="millicores")
    v.add_argument("--memory", type=int, default=0, help="bytes")
    v.add_argument("--gang", default="")
    v.add_argument("--priority", type=int, default=0)
    v = verb("unbind", "forget pods' allocations", _unbind, output=False)
    v.add_argument("pods", nargs="+")
    v = verb("ping", "round-trip time of a no-op call", _ping, output=False)
    v.add_argument("--count", type=int, default=10, help="calls (default 10)")
    verb("health", "the standard health check", _health, output=False)


def _client(args) -> GangplaceClient:
    tls = None
    if args.ca or args.cert or args.tls:
        from .tls import ClientTLS
        tls = ClientTLS(ca=args.ca, cert=args.cert, key=args.key, server_name=args.server_name)
    return GangplaceClient(args.target, tls=tls, timeout_s=args.timeout_s)


def _run(fn, args) -> int:
    from .cli import EXIT_INVALID
    with _client(args) as client:
        try:
            return int(fn(client, args) or 0)
        except ServiceError as e:
            print(f"gangplace: error: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"gangplace: error: {e}", file=sys.stderr)
            return EXIT_INVALID


def _print_placement(p, args, reservation: str = "") -> int:
    from .cli import EXIT_NOT_PLACED, EXIT_OK
    if args.output == "json":
        print_json(p.to_dict())
    else:
        from .output import print_placement_table
        print_placement_table(p, requested_placer=args.placer or "auto", reservation=reservation)
    return EXIT_OK if p.placed else EXIT_NOT_PLACED


def _place(c: GangplaceClient, args) -> int:
    from gangplace.engine import GangRequest
    gang = GangRequest.load(args.gang)
    p = c.place(gang, placer=args.placer, time_limit_ms=args.time_limit_ms, reserve=args.reserve,
                reservation_ttl_s=args.ttl_s)
    note = ""
    if args.reserve and p.placed and args.output == "table":
        held = [r for r in c.snapshot().reservations if r.gang == gang.name]
        note = (f"reserved: {len(held[0].pods)} pod slots held for {held[0].expires_in_s:.0f} s "
                f"(refreshed by each member; `gangplace grpc release {gang.name}` drops it)" if held
                else "not reserved: the reservation expired or was released before it could be read")
    return _print_placement(p, args, note)


def _batch(c: GangplaceClient, args) -> int:
    from gangplace.engine.model.formats import load_gangs
    gangs = load_gangs(args.gangs)
    placements = c.place_batch(gangs, placer=args.placer, time_limit_ms=args.time_limit_ms)
    if args.output == "json":
        print_json([p.to_dict() for p in placements])
    else:
        from .output import print_batch_table
        print_batch_table([(p, g.priority, g.total_gpus) for g, p in zip(gangs, placements)],
                          f"batch of {len(placements)} gangs: [bold]{sum(p.placed for p in placements)}[/] placed")
    from .cli import EXIT_NOT_PLACED, EXIT_OK
    return EXIT_OK if all(p.placed for p in placements) else EXIT_NOT_PLACED  # as `gangplace place --gangs`


def _release(c: GangplaceClient, args) -> int:
    released = c.release(args.gang)
    print("released" if released else f"no reservation named {args.gang!r}")
    return 0


def _explain(c: GangplaceClient, args) -> int:
    from gangplace.engine import GangRequest
    e = c.explain(GangRequest.load(args.gang))
    if args.output == "json":
        print_json({"fits": e.fits, "reason": e.reason, "explanation": e.explanation})
    else:
        print(e.reason or "the gang fits now")
    return 0 if e.fits else 3  # like `place`: scripts can test whether the gang fits


def _preempt(c: GangplaceClient, args) -> int:
    from gangplace.engine import GangRequest
    plan = c.plan_preemption(GangRequest.load(args.gang), placer=args.placer)
    out = {"feasible": plan.feasible, "optimal": plan.optimal, "evicted_gpus": plan.evicted_gpus, "cost": plan.cost,
           "reason": plan.reason,
           "victims": [{"gang": v.gang, "priority": v.priority, "gpus": v.gpus, "nodes": list(v.nodes)}
                       for v in plan.victims],
           "placement": plan.placement.to_dict() if plan.placement else None}
    if args.output == "json":
        print_json(out)
    else:
        from .output import print_placement_table, print_preemption
        print_preemption(args.gang, feasible=plan.feasible, victims=out["victims"], evicted_gpus=plan.evicted_gpus,
                         cost=plan.cost, optimal=plan.optimal, reason=plan.reason)
        if plan.placement is not None and plan.placement.placed:
            print_placement_table(plan.placement, requested_placer=args.placer or "auto")
    from .cli import EXIT_NOT_PLACED, EXIT_OK
    placed = plan.feasible and plan.placement is not None and plan.placement.placed
    return EXIT_OK if placed else EXIT_NOT_PLACED  # as `gangplace place --preempt`


def _snapshot(c: GangplaceClient, args) -> int:
    s = c.snapshot(include_nodes=args.nodes)
    if args.output == "json":
        out = {"version": s.version, "levels": list(s.levels), "node_count": s.node_count,
               "total_gpus": s.total_gpus, "free_gpus": s.free_gpus, "stats": dict(s.stats),
               "reservations": [{"gang": r.gang, "expires_in_s": round(r.expires_in_s, 3),
                                 "nodes": sorted({p.node for p in r.pods})} for r in s.reservations]}
        if args.nodes:
            from gangplace.engine.model.formats import node_to_dict
            out["nodes"] = [node_to_dict(n, s.levels) for n in s.nodes]
        print_json(out)
    else:
        print(f"version {s.version}: {s.node_count} nodes, {s.total_gpus} GPUs, {s.free_gpus} free, "
              f"{len(s.reservations)} reservations; levels {' > '.join(s.levels)}")
        if args.nodes:
            for n in s.nodes:
                print(f"  {n.name}: {n.gpus - n.gpus_used} of {n.gpus} GPUs free"
                      f"{'' if n.schedulable else ', cordoned'}; {'/'.join(n.topology.get(lv, '-') for lv in s.levels)}")
    return 0


def _upsert(c: GangplaceClient, args) -> int:
    from gangplace.engine import Cluster
    nodes = Cluster.load(args.cluster).nodes
    version = c.upsert_nodes(nodes)
    print(f"upserted {len(nodes)} nodes; state version {version}")
    return 0


def _remove(c: GangplaceClient, args) -> int:
    return _done_of("removed", c.remove_nodes(args.names), len(args.names), "nodes")


def _done_of(verb: str, done: int, asked: int, what: str) -> int:
    """"removed 2 of 3 nodes": the server applies what it can (unknown names are no error)."""
    print(f"{verb} {done} of {asked} {what}")
    return 0


def _bind(c: GangplaceClient, args) -> int:
    version = c.bind(args.pod, args.node, gpus=args.gpus, cpu=args.cpu, memory=args.memory, gang=args.gang,
                     priority=args.priority)
    print(f"bound {args.pod} to {args.node}; state version {version}")
    return 0


def _unbind(c: GangplaceClient, args) -> int:
    return _done_of("unbound", c.unbind(args.pods), len(args.pods), "pods")


def _ping(c: GangplaceClient, args) -> int:
    times = []
    for _ in range(max(1, args.count)):
        t0 = time.perf_counter()
        c.ping()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(f"{len(times)} pings to {args.target}: min {times[0]:.3f} ms, median {times[len(times) // 2]:.3f} ms, "
          f"max {times[-1]:.3f} ms")
    return 0


def _health(c: GangplaceClient, args) -> int:
    status = c.health()
    print(status)
    return 0 if status == "SERVING" else 1
