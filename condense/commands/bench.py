"""``condense bench`` and ``condense compare``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from condense.bench.profiles import PROFILES
from condense.commands.paths import output_folder


def register(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="train, condense, export and measure every variant; write the table and plots",
        description="Run the condensation benchmark. Outputs: table.csv, table.md, manifest.json and the "
                    "summary, pareto and roc figures (.png and .svg).",
    )
    b.add_argument("--profile", choices=sorted(PROFILES), default="default")
    b.add_argument("--data", default=None, help="override the profile's data (IHM folder, synthetic[:N[:SEED]], physionet2012:PATH)")
    b.add_argument("--seeds", type=int, default=1, help="run every row with seeds 0..N-1; metrics become mean and std")
    b.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    b.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    b.add_argument("--select", choices=("last", "best"), default=None, help="override epoch selection")
    b.add_argument("--patience", type=int, default=None, help="early stopping on validation AUROC")
    b.add_argument("--rows", default=None, help="comma-separated subset of rows to run")
    b.add_argument("--out", default=None, type=output_folder, help="output folder (default benchmarks/results/<profile>-<timestamp>)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(handler=cmd_bench)

    c = sub.add_parser(
        "compare",
        help="diff two benchmark tables; non-zero exit on a regression",
        description="Compare BASE.csv and NEW.csv: fails on changed parameter counts or byte sizes, a missing or "
        "failed row, or an AUROC drop beyond --auroc-tolerance; timings are reported as ratios.",
    )
    c.add_argument("base")
    c.add_argument("new")
    c.add_argument("--auroc-tolerance", type=float, default=0.01)
    c.add_argument("--bytes-tolerance", type=float, default=0.005,
                   help="relative tolerance on .tflite sizes (default 0.005; converter tensor names vary)")
    c.add_argument("--latency-tolerance", type=float, default=None,
                   help="also fail when a latency grows by more than this fraction (e.g. 0.5)")
    c.set_defaults(handler=cmd_compare)


def cmd_bench(args: argparse.Namespace) -> int:
    from condense.bench.runner import run_benchmark
    from condense.bench.profiles import get_profile

    profile = get_profile(args.profile, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                          select=args.select, patience=args.patience)
    out = Path(args.out) if args.out else Path("benchmarks/results") / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    out_dir, ok = run_benchmark(profile, out_dir=out, seeds=args.seeds, cache_dir=args.cache_dir,
                                quiet=args.quiet, only=rows)
    print((out_dir / "table.md").read_text(encoding="utf-8"))
    if not ok:
        print("some rows failed (see the table); exit code 1")
    return 0 if ok else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from condense.bench.compare import compare_tables

    result = compare_tables(args.base, args.new, auroc_tolerance=args.auroc_tolerance,
                            latency_tolerance=args.latency_tolerance, bytes_tolerance=args.bytes_tolerance)
    print(result.report())
    return 0 if result.ok else 1
