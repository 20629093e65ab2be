"""``gangplace place``: place one gang (or, with --gangs, a batch) on a cluster file."""
from __future__ import annotations

import argparse

from gangplace.engine import Cluster, GangRequest, PLACERS, place

from .output import console, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("place", help="place a gang on a cluster file",
                       description="Place one gang on a cluster. Exit 0 placed, 3 does not fit, 2 invalid input.")
    p.add_argument("--cluster", required=True, help="cluster file (.yaml, .json, .parquet, .arrow)")
    p.add_argument("--gang", help="gang file (.yaml or .json)")
    p.add_argument("--gangs", metavar="DIR_OR_FILE",
                   help="batch mode: a directory of gang files or one file holding a list of gangs; "
                        "placed jointly (priority-weighted gangs placed, then locality), exit 3 if any is left out")
    p.add_argument("--preempt", action="store_true",
                   help="if the gang does not fit, plan the cheapest eviction of lower-priority running gangs "
                        "(from the cluster file's per-node allocations) and print victims + placement")
    p.add_argument("--output", choices=("json", "table"), default="table", help="(default table)")
    p.add_argument("--placer", choices=PLACERS, default="auto", help="(default auto)")
    p.add_argument("--time-limit-ms", type=float, default=None,
                   help="CP-SAT budget in ms (auto/cpsat): default 100 per gang, 1000 for a batch or a preemption plan")
    p.add_argument("--workers", type=int, default=1, help="CP-SAT workers")
    p.add_argument("--seed", type=int, default=0, help="CP-SAT seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .cli import EXIT_NOT_PLACED, EXIT_OK
    from gangplace.engine.model.errors import InvalidRequest
    if args.gangs and (args.gang or args.preempt):
        raise InvalidRequest("give either --gang (optionally with --preempt) or --gangs", field="--gangs")
    if not args.gang and not args.gangs:
        raise InvalidRequest("give --gang FILE or --gangs DIR_OR_FILE", field="--gang")
    cluster = Cluster.load(args.cluster)
    if args.gangs:
        return run_batch(args, cluster)
    gang = GangRequest.load(args.gang)
    if args.preempt:
        return run_preempt(args, cluster, gang)
    placement = place(cluster, gang, placer=args.placer,
                      time_limit_ms=100.0 if args.time_limit_ms is None else args.time_limit_ms,
                      workers=args.workers, seed=args.seed)
    if args.output == "json":
        print_json(placement.to_dict())
    else:
        print_placement_table(cluster, placement)
    return EXIT_OK if placement.placed else EXIT_NOT_PLACED


def print_placement_table(cluster: Cluster, placement) -> None:
    from rich.table import Table
    con = console()
    status = "[green]placed[/]" if placement.placed else "[red]not placed[/]"
    opt = "proved optimal" if placement.optimal else (
        f"gap {placement.gap:.1%}" if placement.gap is not None else "not proved")
    con.print(f"gang [bold]{placement.gang}[/]: {status} by {placement.placer} ({opt}) "
              f"in {placement.elapsed_ms:.2f} ms")
    if not placement.placed:
        con.print(placement.reason)
        return
    summary = Table("level", "domains used", "free GPUs left in them")
    for level, n in placement.domains_used.items():
        summary.add_row(level, str(n), str(placement.stranded_gpus.get(level, "")))
    con.print(summary)
    pods = Table("pod set", "index", "node", "path")
    for p in placement.pods:
        pods.add_row(p.pod_set, str(p.index), p.node, cluster.node_path(cluster.node_index[p.node]))
    con.print(pods)


def run_batch(args: argparse.Namespace, cluster: Cluster) -> int:
    from gangplace.engine.exact.batch import place_batch
    from gangplace.engine.model.formats import load_gangs

    from .cli import EXIT_NOT_PLACED, EXIT_OK
    gangs = load_gangs(args.gangs)
    kw = {} if args.time_limit_ms is None else {"time_limit_ms": args.time_limit_ms}
    result = place_batch(cluster, gangs, placer=args.placer, workers=args.workers, seed=args.seed, **kw)
    if args.output == "json":
        print_json(result.to_dict())
    else:
        from rich.table import Table
        con = console()
        b = result.baseline
        con.print(f"batch of {len(gangs)} gangs: [bold]{result.placed_gangs}[/] placed, {result.placed_gpus} GPUs "
                  f"(one by one in priority order: {b.get('placed_gangs')} gangs, {b.get('placed_gpus')} GPUs); "
                  f"set from {result.method}{', proved best' if result.optimal else ''}; "
                  f"{result.elapsed_ms:.1f} ms")
        t = Table("gang", "priority", "placed", "GPUs", "domains used", "placer", "optimal", "reason")
        for g, p in zip(gangs, result.placements):
            t.add_row(p.gang, str(g.priority), "yes" if p.placed else "[red]no[/]",
                      str(g.total_gpus) if p.placed else "", " ".join(f"{k}={v}" for k, v in p.domains_used.items()),
                      p.placer, "yes" if p.optimal else "", p.reason.split(";")[0])
        con.print(t)
    return EXIT_OK if result.placed_gangs == len(gangs) else EXIT_NOT_PLACED


def run_preempt(args: argparse.Namespace, cluster: Cluster, gang: GangRequest) -> int:
    from gangplace.engine.exact.preempt import plan_preemption

    from .cli import EXIT_NOT_PLACED, EXIT_OK
    kw = {} if args.time_limit_ms is None else {"time_limit_ms": args.time_limit_ms}
    plan = plan_preemption(cluster, gang, placer=args.placer, workers=args.workers, seed=args.seed, **kw)
    if args.output == "json":
        print_json(plan.to_dict())
    else:
        from rich.table import Table
        con = console()
        if not plan.feasible:
            con.print(f"gang [bold]{gang.name}[/]: [red]cannot be placed by preemption[/]: {plan.reason}")
        elif not plan.victims:
            con.print(f"gang [bold]{gang.name}[/] fits without preemption")
        else:
            con.print(f"gang [bold]{gang.name}[/]: evict {len(plan.victims)} gang(s), {plan.evicted_gpus} GPUs, "
                      f"cost {plan.cost}{' (proved cheapest)' if plan.optimal else ''}")
            t = Table("victim", "priority", "GPUs", "nodes")
            for v in plan.victim_details:
                t.add_row(v["gang"], str(v["priority"]), str(v["gpus"]), ", ".join(v["nodes"]))
            con.print(t)
        if plan.placement.placed:
            print_placement_table(cluster, plan.placement)
    return EXIT_OK if plan.feasible and plan.placement.placed else EXIT_NOT_PLACED
