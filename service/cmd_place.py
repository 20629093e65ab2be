"""``gangplace place``: place one gang (or, with --gangs, a batch) on a cluster file."""
from __future__ import annotations

import argparse

from gangplace.engine import Cluster, GangRequest, PLACERS, place
from gangplace.engine.place.objective import DEFAULT_OBJECTIVE, OBJECTIVES

from .output import print_batch_table, print_json, print_placement_table, print_preemption


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
    p.add_argument("--objective", choices=OBJECTIVES, default=DEFAULT_OBJECTIVE,
                   help="part (3) of the objective, best fit: from the node up, each domain measured in the gang's "
                        "pods first, a one-pod gang first to the node whose oldest running GPU pod started first "
                        "(age, the default); the same without the age rule (podfit); from the node up in GPUs only "
                        "(bottomup); or the older order, top level first (topdown); docs/placement.md")
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
                      workers=args.workers, seed=args.seed, objective=args.objective)
    if args.output == "json":
        print_json(placement.to_dict())
    else:
        print_placement_table(placement, node_path=_node_path(cluster), requested_placer=args.placer)
    return EXIT_OK if placement.placed else EXIT_NOT_PLACED


def _node_path(cluster: Cluster):
    return lambda name: cluster.node_path(cluster.node_index[name])


def _solver_options(args: argparse.Namespace) -> dict:
    """The placer options of a batch or a preemption plan (their own default time limit unless given)."""
    kw = {} if args.time_limit_ms is None else {"time_limit_ms": args.time_limit_ms}
    return dict(placer=args.placer, workers=args.workers, seed=args.seed, objective=args.objective, **kw)


def run_batch(args: argparse.Namespace, cluster: Cluster) -> int:
    from gangplace.engine.exact.batch import place_batch
    from gangplace.engine.model.formats import load_gangs

    from .cli import EXIT_NOT_PLACED, EXIT_OK
    gangs = load_gangs(args.gangs)
    result = place_batch(cluster, gangs, **_solver_options(args))
    if args.output == "json":
        print_json(result.to_dict())
    else:
        b = result.baseline
        print_batch_table([(p, g.priority, g.total_gpus) for g, p in zip(gangs, result.placements)],
                          f"batch of {len(gangs)} gangs: [bold]{result.placed_gangs}[/] placed, {result.placed_gpus} GPUs "
                          f"(one by one in priority order: {b.get('placed_gangs')} gangs, {b.get('placed_gpus')} GPUs); "
                          f"set from {result.method}{', proved best' if result.optimal else ''}; "
                          f"{result.elapsed_ms:.1f} ms")
    return EXIT_OK if result.placed_gangs == len(gangs) else EXIT_NOT_PLACED


def run_preempt(args: argparse.Namespace, cluster: Cluster, gang: GangRequest) -> int:
    from gangplace.engine.exact.preempt import plan_preemption

    from .cli import EXIT_NOT_PLACED, EXIT_OK
    plan = plan_preemption(cluster, gang, **_solver_options(args))
    if args.output == "json":
        print_json(plan.to_dict())
    else:
        print_preemption(gang.name, feasible=plan.feasible, victims=plan.victim_details,
                         evicted_gpus=plan.evicted_gpus, cost=plan.cost, optimal=plan.optimal, reason=plan.reason)
        if plan.placement.placed:
            print_placement_table(plan.placement, node_path=_node_path(cluster), requested_placer=args.placer)
    return EXIT_OK if plan.feasible and plan.placement.placed else EXIT_NOT_PLACED
