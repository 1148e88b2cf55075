"""``condense export``: a trained model directory -> ``DIR/model.<format>.tflite``."""

from __future__ import annotations

import argparse

# Pure Python: `condense export --help` starts no TensorFlow.
from condense.export.formats import FORMATS, FORMS, ROUTES, format_names

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.


def format_help(prefix: str = "") -> str:
    """One clause per registered format, for ``--format``'s help."""
    return prefix + "; ".join(f"{name} ({fmt.help})" for name, fmt in FORMATS.items())


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help=f"export a trained model to .tflite ({', '.join(FORMATS)}) and check it against Keras",
        description="Convert DIR/model.keras to DIR/model.<format>.tflite in a child process, then check the file "
        "against the Keras model on the test split (LiteRT).",
    )
    p.add_argument("--model", required=True, help="model directory written by condense train")
    p.add_argument("--format", required=True, choices=format_names(), help=format_help())
    p.add_argument("--calibration", type=int, default=300,
                   help="training samples that calibrate int8 and on which dropping Masking is checked (default 300)")
    p.add_argument("--form", choices=FORMS, default="sequence",
                   help="recurrent models: sequence (default: all hours in one call, model.<format>.tflite) or step "
                        "(one hour per call, the recurrent state as float inputs and outputs, batch 1: "
                        "model.<format>.step.tflite; small full-int8 files that run on TFLM and in the browser)")
    p.add_argument("--no-fold", action="store_true",
                   help="float32 step files: keep the normalizer outside the file (it then takes normalized inputs, "
                        "like the int8 step file and the sequence files); by default its mean / scale are folded into "
                        "the first layer and the file takes the continuous channels in their units")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="models without a time axis (DNN): a batched file with a dynamic batch dimension (server-side "
                        "scoring); by default every file has batch 1, which LiteRT.js and TFLM need")
    p.add_argument("--int8-io", action="store_true",
                   help="full-integer formats only: int8 input and output tensors (integer-only NPUs and microcontrollers)")
    p.add_argument("--route", choices=ROUTES, default="auto",
                   help="recurrent models: auto (default: the fused LSTM op where exact), fused (fail if impossible), "
                        "while / unrolled (the Keras 3 default conversion, Masking kept)")
    p.add_argument("--data", default=None, help="data for calibration and the parity check (default: the training data)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from condense.runs.workflow import export_run

    if args.int8_io and not FORMATS[args.format].integer_only:  # before the data is read
        raise ValueError(f"--int8-io needs a full-integer format (int8), got --format {args.format}")
    if args.no_fold and not (args.form == "step" and args.format == "float32"):
        raise ValueError("--no-fold applies to float32 step files (--format float32 --form step): the other files "
                         "never fold the normalizer")
    if args.form == "step" and args.dynamic_batch:
        raise ValueError("--form step files have batch 1: drop --dynamic-batch")
    if args.form == "step" and (args.int8_io or args.route != "auto"):
        raise ValueError("--form step takes neither --int8-io nor --route: a step file is the step's equations, "
                         "its state float between calls")
    report = export_run(args.model, args.format, calibration=args.calibration, data=args.data,
                        cache_dir=args.cache_dir, int8_io=args.int8_io, route=args.route, quiet=args.quiet,
                        verbose=getattr(args, "verbose", False), form=args.form, dynamic_batch=args.dynamic_batch,
                        fold_normalizer=not args.no_fold)
    if args.form == "step":
        return _print_step(report)
    print(
        f"{report['path']}: {report['bytes']:,} bytes ({report['format']}, route: {report['route']}); vs Keras on "
        f"{report['n']} test samples: max |diff| {report['max_abs_diff']:.2e}, AUROC {report['auroc_tflite']:.4f} "
        f"(Keras {report['auroc_keras']:.4f}), {report['tied_probabilities']} tied probabilities"
    )
    masking = report["masking"] or {}
    if "checked_samples" in masking or not masking.get("dropped", True):
        print(f"  Masking {'dropped' if masking.get('dropped') else 'kept'}: {masking.get('reason', '')}")
    if report["cell_state_max_abs"] is not None:
        print(f"  largest LSTM cell state on the calibration data: {report['cell_state_max_abs']:.2f}")
    return _print_tflm_and_warnings(report, "samples")


def _print_step(report: dict) -> int:
    """What ``export --form step`` says: the file, its contract, parity over the chained steps, TFLM."""
    steps = report["steps"]
    print(f"{report['path']}: {report['bytes']:,} bytes ({report['format']}, one step per call); ops: "
          f"{', '.join(report['ops'])}")
    states = ", ".join(f"{s['name']} ({s['units']})" for s in report["states"])
    print(f"  inputs: x (1 hour) and the state {states}, float, batch 1; outputs: p and each state + '_out'; "
          "start every patient from zero state")
    print("  x: imputed values in their units (the normalizer is folded into the first layer)"
          if report["normalizer_folded"] else
          "  x: normalized with the mean / scale in the file's metadata (condense inspect shows them)")
    print(f"  vs Keras on {report['n']} test sequences chained over {steps} steps: max |diff| "
          f"{report['max_abs_diff']:.2e}, AUROC {report['auroc_tflite']:.4f} (Keras {report['auroc_keras']:.4f}, "
          f"difference {report['auroc_tflite'] - report['auroc_keras']:+.4f})")
    latency = report["step_latency"]
    print(f"  LiteRT, 1 thread: {latency['median_us']:.1f} us per step (median; {steps} steps "
          f"{steps * latency['median_us']:.0f} us)")
    return _print_tflm_and_warnings(report, "sequences")


def _print_tflm_and_warnings(report: dict, what: str) -> int:
    tflm = report["tflm"]
    if "arena_bytes" in tflm:
        print(f"  TensorFlow Lite for Microcontrollers: runs with a {tflm['arena_bytes']:,}-byte arena; "
              f"max |diff| vs LiteRT on {tflm['n']} {what} {tflm['max_abs_vs_litert']:.2e}")
    else:
        print(f"  TensorFlow Lite for Microcontrollers: {tflm['note']}")
    for warning in report["warnings"]:
        print(f"  warning: {warning}")
    return 0
