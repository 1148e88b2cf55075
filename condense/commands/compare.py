"""``condense compare BASE.csv NEW.csv``: the command line of :func:`condense.bench.compare.compare_tables`."""

from __future__ import annotations

import argparse

from condense.bench.compare import (CORRECTIONS, DEFAULT_ALPHA, DEFAULT_AUROC_TOLERANCE, DEFAULT_BYTES_TOLERANCE,
                                    DEFAULT_CORRECTION, DEFAULT_RESAMPLES, compare_tables)

COMPARE_HELP = "diff two benchmark tables; non-zero exit on a regression"
COMPARE_DESCRIPTION = (
    "Compare BASE.csv and NEW.csv: fails on changed parameter counts or byte sizes, a missing or failed row, "
    "or an AUROC drop. With predictions.npz stored beside both tables, an AUROC drop fails when a paired "
    "bootstrap over patients and seeds finds it significant (one-sided, --alpha, Holm-corrected across the "
    "rows unless --correction none) or larger than --max-drop; without them, when it exceeds "
    "--auroc-tolerance. Timings are reported as ratios."
)


def register(sub) -> None:
    c = sub.add_parser("compare", help=COMPARE_HELP, description=COMPARE_DESCRIPTION)
    add_compare_arguments(c)
    c.set_defaults(handler=run_compare)


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``condense compare``'s arguments to ``parser`` (dests match :func:`compare_tables`)."""
    parser.add_argument("base", help="the reference table.csv (predictions.npz and manifest.json beside it are used)")
    parser.add_argument("new", help="the table.csv to check")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="one-sided significance level of the paired AUROC test (default 0.05; with --correction "
                             "holm, the family-wise error rate across the rows)")
    parser.add_argument("--max-drop", dest="max_drop", type=float, default=None,
                        help="also fail a row whose paired AUROC difference is below -MAX_DROP, significant or not")
    parser.add_argument("--auroc-tolerance", dest="auroc_tolerance", type=float, default=DEFAULT_AUROC_TOLERANCE,
                        help="the fallback without stored predictions: fail an AUROC drop beyond this (default 0.01)")
    parser.add_argument("--bytes-tolerance", dest="bytes_tolerance", type=float, default=DEFAULT_BYTES_TOLERANCE,
                        help="relative tolerance on .tflite sizes (default 0.005; converter tensor names vary)")
    parser.add_argument("--latency-tolerance", dest="latency_tolerance", type=float, default=None,
                        help="also fail when a latency grows by more than this fraction (e.g. 0.5)")
    parser.add_argument("--resamples", dest="n_resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples per row (default 2000)")
    parser.add_argument("--correction", dest="correction", choices=CORRECTIONS, default=DEFAULT_CORRECTION,
                        help="multiple-comparison correction of the paired AUROC tests across the rows: holm "
                             "(Holm-Bonferroni, family-wise error rate --alpha; default) or none (--alpha per row)")
    parser.add_argument("--format", dest="fmt", choices=("text", "markdown"), default="text",
                        help="report format; markdown is for a CI job to post (default text)")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    """Run the comparison the parsed ``args`` describe, print the report; exit code 0 pass, 1 fail."""
    result = compare_tables(
        args.base, args.new, alpha=args.alpha, max_drop=args.max_drop, auroc_tolerance=args.auroc_tolerance,
        bytes_tolerance=args.bytes_tolerance, latency_tolerance=args.latency_tolerance,
        n_resamples=args.n_resamples, correction=getattr(args, "correction", DEFAULT_CORRECTION),
    )
    print(result.report(getattr(args, "fmt", "text")), end="" if getattr(args, "fmt", "text") == "markdown" else "\n")
    return 0 if result.ok else 1
