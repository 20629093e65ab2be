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
    p.add_argument("--output", choices=("json", "table"), default="table")
    p.add_argument("--placer", choices=PLACERS, default="auto")
    p.add_argument("--time-limit-ms", type=float, default=100.0, help="CP-SAT budget (auto/cpsat)")
    p.add_argument("--workers", type=int, default=1, help="CP-SAT workers")
    p.add_argument("--seed", type=int, default=0, help="CP-SAT seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .cli import EXIT_INVALID, EXIT_NOT_PLACED, EXIT_OK
    if not args.gang:
        from gangplace.engine.errors import InvalidRequest
        raise InvalidRequest("give --gang FILE", field="--gang")
    cluster = Cluster.load(args.cluster)
    gang = GangRequest.load(args.gang)
    placement = place(cluster, gang, placer=args.placer, time_limit_ms=args.time_limit_ms,
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
