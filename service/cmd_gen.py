"""``gangplace gen-cluster``: write a synthetic cluster file; ``gangplace gen-trace``: write a generated
job trace (engine/sim/synthetic_trace.py) as a CSV for ``gangplace simulate --trace FILE``."""
from __future__ import annotations

import argparse
import sys

from gangplace.engine.model.synthetic import PRESETS, generate


def add_parser(sub) -> None:
    p = sub.add_parser("gen-cluster", help="generate a synthetic cluster file",
                       description="Generate a synthetic cluster. --gpus rounds up to whole nodes (the last "
                                   "rack or SU may be partial); --fill lands at or just under the target, "
                                   "within one background job.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="dgx-h100", help="(default dgx-h100)")
    p.add_argument("--gpus", type=int, default=2048, help="total GPUs, 8..262144 (default 2048)")
    p.add_argument("--fill", type=float, default=0.6, help="fraction of GPUs taken by background jobs (default 0.6)")
    p.add_argument("--seed", type=int, default=1, help="(default 1)")
    p.add_argument("-o", "--output", required=True, help="cluster file: .yaml, .json, .parquet or .arrow")
    p.set_defaults(func=run)
    t = sub.add_parser("gen-trace", help="write a generated job trace (large-gang) as a CSV",
                       description="Write the generated large-gang workload (half of the GPU-time in gangs of 32 "
                                   "GPUs or more; docs/simulation.md) as a trace CSV. The same jobs as "
                                   "`gangplace simulate --trace large-gang:seed=S:jobs=N`.")
    t.add_argument("--workload", choices=("large-gang",), default="large-gang", help="(default large-gang)")
    t.add_argument("--seed", type=int, default=1, help="(default 1)")
    t.add_argument("--jobs", type=int, default=1500, help="(default 1500)")
    t.add_argument("-o", "--output", required=True, help="trace CSV file, or - for standard output")
    t.set_defaults(func=run_trace)


def run_trace(args: argparse.Namespace) -> int:
    from gangplace.engine.sim.synthetic_trace import big_gang_share, large_gang, write_csv

    from rich.console import Console
    trace = large_gang(args.seed, args.jobs)
    to_stdout = args.output == "-"
    write_csv(trace, sys.stdout if to_stdout else args.output)
    where = "standard output" if to_stdout else args.output
    Console(stderr=to_stdout).print(  # with -o -, stdout carries the CSV alone
        f"wrote {where}: {len(trace):,} jobs, {trace.gpu_seconds / 3600:,.0f} GPU-hours, "
        f"{big_gang_share(trace):.1%} of them in gangs of >= 32 GPUs, arrivals over {trace.span_s / 3600:.1f} h",
        highlight=False, soft_wrap=True)
    return 0


def run(args: argparse.Namespace) -> int:
    from .output import console
    cluster = generate(args.preset, gpus=args.gpus, fill=args.fill, seed=args.seed)
    cluster.save(args.output)
    used = 1 - cluster.free_gpu_count / max(cluster.total_gpus, 1)
    console().print(f"wrote {args.output}: {cluster.n_nodes} nodes, {cluster.total_gpus} GPUs, "
                    f"{used:.1%} used, levels {list(cluster.levels)}", highlight=False, soft_wrap=True)
    return 0
