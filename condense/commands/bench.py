"""``condense bench``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from condense.bench.executors import EXECUTORS, default_local_workers
from condense.bench.profiles import PROFILES
from condense.commands.paths import output_folder

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.


def register(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="train, condense, export and measure every variant; write the table and plots",
        description="Run the condensation benchmark. Outputs: table.csv, table.md, manifest.json and the "
                    "summary, pareto and roc figures (.png and .svg).",
    )
    b.add_argument("--profile", choices=sorted(PROFILES), default=None, help="how big a run (default: default)")
    b.add_argument("--data", default=None, help="override the profile's data (IHM folder, synthetic[:N[:SEED]], physionet2012:PATH)")
    b.add_argument("--seeds", type=int, default=None,
                   help="run every row with seeds 0..N-1 (default 1); metrics become mean and std")
    b.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    b.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    b.add_argument("--select", choices=("last", "best"), default=None, help="override epoch selection")
    b.add_argument("--patience", type=int, default=None, help="early stopping on validation AUROC")
    b.add_argument("--rows", default=None, help="comma-separated subset of rows to run")
    b.add_argument("--out", default=None, type=output_folder, help="output folder (default benchmarks/results/<profile>-<timestamp>)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--quiet", action="store_true")
    grid = add_grid_arguments(b, "(row, seed) job", " With more than one, training time is re-measured alone "
                                                       "after the grid.")
    grid.add_argument("--resume", default=None, type=Path, metavar="DIR",
                      help="finish the run in DIR with its own settings: saved jobs are kept, the missing "
                           "(and failed) ones run")
    b.set_defaults(handler=cmd_bench)


def add_grid_arguments(parser, job: str, workers_note: str = ""):
    """``--executor``, ``--ray-address`` and ``--workers``: where a grid of jobs runs (``condense bench``,
    ``condense tune``); returns the argument group. ``job`` names one job in the help."""
    grid = parser.add_argument_group("where the jobs run (docs/scale-out.md)")
    grid.add_argument("--executor", choices=EXECUTORS, default="local",
                      help="local: a process pool on this machine (default, no Ray needed); ray: every "
                           f"{job} a Ray task (pip install 'condense[ray]')")
    grid.add_argument("--ray-address", default=None,
                      help="a running Ray cluster (`ray start --head` prints it; 'auto' finds a local one); "
                           "default: a private local cluster for this run")
    grid.add_argument("--workers", type=int, default=None,
                      help="jobs at a time: local: a process pool of this many (default: one per core; 1 runs them "
                           "in this process, one after the other); ray: at most this many (default: the cluster's "
                           "CPUs)." + workers_note)
    return grid


def grid_settings(args: argparse.Namespace) -> dict:
    """``executor``, ``ray_address`` and ``workers`` (one per core by default on the local executor)."""
    workers = args.workers
    if workers is None and args.executor == "local":
        workers = default_local_workers()
    return {"executor": args.executor, "ray_address": args.ray_address, "workers": workers}


#: Settings a resumed run takes from its folder (giving them with --resume is an error).
RUN_SETTINGS = ("profile", "data", "seeds", "epochs", "batch_size", "select", "patience", "rows", "out")


def cmd_bench(args: argparse.Namespace) -> int:
    from condense.bench.runner import resume_benchmark, run_benchmark
    from condense.bench.profiles import get_profile

    grid = dict(cache_dir=args.cache_dir, quiet=args.quiet, **grid_settings(args))
    if args.resume is not None:
        given = [name for name in RUN_SETTINGS if getattr(args, name) is not None]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(f"--resume takes the run's settings from {args.resume}/rows/plan.json; drop {flags}")
        out_dir, ok = resume_benchmark(args.resume, **grid)
    else:
        profile = get_profile(args.profile or "default", data=args.data, epochs=args.epochs,
                              batch_size=args.batch_size, select=args.select, patience=args.patience)
        out = Path(args.out) if args.out else Path("benchmarks/results") / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
        out_dir, ok = run_benchmark(profile, out_dir=out, seeds=1 if args.seeds is None else args.seeds,
                                    only=rows, **grid)
    print((out_dir / "table.md").read_text(encoding="utf-8"))
    if not ok:
        print("some rows failed (see the table); exit code 1")
    return 0 if ok else 1

