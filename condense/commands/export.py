"""``condense export``: a trained model directory -> ``DIR/model.<format>.tflite``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to .tflite (float32, dynamic-range or full int8) and check it against Keras",
        description="Convert DIR/model.keras to DIR/model.<format>.tflite in a child process, then check the file "
        "against the Keras model on the test split (LiteRT).",
    )
    p.add_argument("--model", required=True, help="model directory written by condense train")
    p.add_argument("--format", required=True, choices=("float32", "dynamic", "int8"))
    p.add_argument("--calibration", type=int, default=300, help="training samples used to calibrate int8 (default 300)")
    p.add_argument("--data", default=None, help="data for calibration and the parity check (default: the training data)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from condense.workflow import export_run

    report = export_run(args.model, args.format, calibration=args.calibration, data=args.data,
                        cache_dir=args.cache_dir, quiet=args.quiet)
    print(
        f"{report['path']}: {report['bytes']:,} bytes ({report['format']}); vs Keras on {report['n']} test samples: "
        f"max |diff| {report['max_abs_diff']:.2e}, AUROC {report['auroc_tflite']:.4f} (Keras {report['auroc_keras']:.4f})"
    )
    return 0
