"""``condense train``, ``condense evaluate`` and ``condense predict``."""

from __future__ import annotations

import argparse
import sys

from condense.commands.export import format_help
from condense.commands.paths import output_file, output_folder
from condense.calibrate import CALIBRATIONS
from condense.export.formats import FORMS, score_format_names
from condense.train import (
    BEST_PATIENCE, DEFAULT_ALPHA, DEFAULT_FOLDS, DEFAULT_TEMPERATURE, PROTOCOLS, SELECT_CHOICES, model_names,
)

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a baseline or condensed model and write a model directory",
        description="Train lstm | hlstm | dnn | lr | gbm on DATA and write DIR/model.keras (or model.lr.json, "
        "or model.gbm.txt and model.gbm.json), DIR/preprocessing.json and DIR/manifest.json. The peers lr "
        "(logistic regression) and gbm (LightGBM, early stopping on validation AUROC) use only --seed of "
        "the training options.",
    )
    p.add_argument("--data", default="synthetic", help="IHM folder, synthetic[:EPISODES[:SEED]] or physionet2012:PATH (default: synthetic)")
    p.add_argument("--model", required=True, choices=sorted(model_names()))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="best",
                   help=f"best (default): the model of the best validation epoch, stopping after {BEST_PATIENCE} "
                        "epochs without improvement (safe on small real data); paper: the last of the epochs, as "
                        "the paper (overfits small real cohorts)")
    p.add_argument("--select", choices=SELECT_CHOICES, default=None,
                   help="override the protocol's epoch selection: last epoch or best validation AUROC")
    p.add_argument("--patience", type=int, default=None,
                   help="override the protocol's early stopping: stop when validation AUROC has not improved for "
                        "this many epochs")
    p.add_argument("--hlstm-hidden", choices=("gates", "input"), default="gates", help="where the hLSTM's hidden layer sits")
    p.add_argument("--units", type=_widths, default=None, metavar="W[,W...]",
                   help="layer widths, first to last (default: the paper's: lstm 16,16; hlstm 16; dnn 256,128,64)")
    p.add_argument("--dropout", type=float, default=None,
                   help="rate of the Dropout layer before the output (default: 0.3; dnn 0.5)")
    p.add_argument("--prune-quantile", type=float, default=None, help="prune units below this quantile of importance (e.g. 0.25, 0.5)")
    p.add_argument("--prune-after", type=int, default=1, help="epochs before pruning (default 1, the paper's)")
    p.add_argument("--prune-criterion", default="mean_abs", help="unit importance criterion: mean_abs (default, the paper), or any name of condense.prune.CRITERIA (docs/pruning.md)")
    p.add_argument("--calibrate", choices=CALIBRATIONS, default="none",
                   help="recalibrate the final logit on the validation split and fold it into the output layer "
                        "(AUROC unchanged, no extra op; docs/calibration.md): platt (slope and intercept), intercept "
                        "(the intercept alone: predicted deaths sum to the observed ones), none (as trained, default)")
    p.add_argument("--time-since-last", action="store_true",
                   help="lstm/hlstm: add one input channel per variable, the hours since it was last observed "
                        "(GRU-D style; docs/distillation.md has the measurement)")
    d = p.add_argument_group("knowledge distillation (lstm, hlstm, dnn students; docs/distillation.md)")
    d.add_argument("--teacher", action="append", default=[], metavar="DIR", dest="teachers",
                   help="a trained model directory (any model, same data and --seed), or peer:gbm / peer:lr to fit "
                        "that peer here; repeat for several teachers (their probabilities are averaged)")
    d.add_argument("--distill-alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"weight of the labels in the target, 1 - alpha on the teachers (default {DEFAULT_ALPHA:g})")
    d.add_argument("--distill-temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help=f"soften the teachers' probabilities: sigmoid(logit(p) / T) (default {DEFAULT_TEMPERATURE:g})")
    d.add_argument("--teacher-folds", type=int, default=DEFAULT_FOLDS,
                   help=f"refit each teacher on {DEFAULT_FOLDS} folds of the training split so that it scores only "
                        "records it has not seen (default); 0: the teacher as saved, scoring its own training records")
    d.add_argument("--teacher-seeds", type=int, default=1,
                   help="fit every peer:NAME teacher with this many seeds (--seed, +1, ...) and average them "
                        "(a seed ensemble; default 1)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input cell")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, type=output_folder, help="model directory to write")
    p.set_defaults(handler=cmd_train)

    e = sub.add_parser(
        "evaluate",
        help="reload a model directory and score the test split",
        description="Reload DIR in this (fresh) process and recompute the test metrics.",
    )
    e.add_argument("--model", required=True, help="model directory written by condense train")
    e.add_argument("--data", default=None, help="data to score (default: the data the model was trained on)")
    e.add_argument("--format", default="keras", choices=score_format_names(),
                   help=format_help("keras (the saved Keras model, the default); "))
    e.add_argument("--form", choices=FORMS, default="sequence",
                   help="with a .tflite format: the whole-sequence file (default) or the step file (condense export "
                        "--form step), chained over the hours")
    e.add_argument("--json", default=None, type=output_file, help="also write the metrics to this JSON file")
    e.add_argument("--cache-dir", default=None)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(handler=cmd_evaluate)

    r = sub.add_parser(
        "predict",
        help="score every record of DATA with a saved model and write a CSV",
        description="Write one row per record (RecordID for PhysioNet 2012, stay for IHM) with its probability, "
        "and the label when known, using the model's saved preprocessing (never refitted).",
    )
    r.add_argument("--model", required=True, help="model directory written by condense train")
    r.add_argument("--format", default="keras", choices=score_format_names(),
                   help=format_help("keras (the saved Keras model, the default); "))
    r.add_argument("--form", choices=FORMS, default="sequence",
                   help="with a .tflite format: the whole-sequence file (default) or the step file, chained over the hours")
    r.add_argument("--data", required=True, help="IHM folder, synthetic[:N[:SEED]] or physionet2012:PATH")
    r.add_argument("--out", required=True, type=output_file, help="CSV file to write")
    r.add_argument("--strict", action="store_true", help="stop at the first bad input cell")
    r.add_argument("--cache-dir", default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(handler=cmd_predict)


def _widths(text: str) -> tuple[int, ...]:
    """``--units 32,16`` -> (32, 16)."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 16 or 32,16), got {text!r}")
    return widths


def _log(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _epoch_line(args: argparse.Namespace):
    """``on_epoch`` printing one line per epoch (stderr), or None where Keras draws its bar."""
    if args.quiet or sys.stdout.isatty():
        return None

    def on_epoch(epoch: int, seconds: float, loss: float, val_auroc: float) -> None:
        _log(args, f"epoch {epoch}/{args.epochs}: loss {loss:.4f}, val AUROC {val_auroc:.4f}, {seconds:.1f} s")

    return on_epoch


def _selection_text(result: dict) -> str:
    """``, epoch 7 of 12 (protocol best)`` for models trained per epoch."""
    run = len(result.get("epoch_seconds") or [])
    if result.get("model") == "gbm" and result.get("selected_epoch"):
        rounds = len(result.get("val_auroc_history") or [])
        return f", boosting round {result['selected_epoch']} of {rounds} (early stopping on validation AUROC)"
    if result.get("model") == "lr" or not run or result.get("selected_epoch") is None:
        return ""
    text = f", epoch {result['selected_epoch']} of {run} (protocol {result['config']['protocol']})"
    distillation = result.get("distillation")
    if distillation:
        text += f", distilled (teachers' train AUROC {distillation['teacher_train_auroc']:.4f})"
    return text


def cmd_train(args: argparse.Namespace) -> int:
    from condense.runs.workflow import train_run

    # A terminal gets Keras's progress bar; a pipe or a log file one line per epoch (no '\r').
    on_epoch = _epoch_line(args)
    result = train_run(
        data=args.data,
        out_dir=args.out,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        select=args.select or PROTOCOLS[args.protocol]["select"],
        patience=args.patience if args.patience is not None else PROTOCOLS[args.protocol]["patience"],
        hlstm_hidden=args.hlstm_hidden,
        units=args.units,
        dropout=args.dropout,
        prune_quantile=args.prune_quantile,
        prune_after=args.prune_after,
        prune_criterion=args.prune_criterion,
        time_since_last=args.time_since_last,
        teachers=tuple(args.teachers),
        distill_alpha=args.distill_alpha,
        distill_temperature=args.distill_temperature,
        teacher_folds=args.teacher_folds,
        teacher_seeds=args.teacher_seeds,
        calibrate=args.calibrate,
        strict=args.strict,
        cache_dir=args.cache_dir,
        verbose=0 if args.quiet or on_epoch is not None else 1,
        quiet=args.quiet,
        on_epoch=on_epoch,
        log=lambda m: _log(args, m),
    )
    test = result["metrics"]["test"]
    print(
        f"{args.model}: {result['params']:,} params, test AUROC {test['auroc']:.4f} "
        f"[{test['auroc_ci'][0]:.4f}, {test['auroc_ci'][1]:.4f}], AUPRC {test['auprc']:.4f}, "
        f"Brier {test['brier']:.4f}, trained in {result['train_seconds']:.1f} s{_selection_text(result)} -> {args.out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from condense.io import write_json
    from condense.runs.workflow import evaluate_run

    metrics = evaluate_run(args.model, data=args.data, fmt=args.format, cache_dir=args.cache_dir, quiet=args.quiet,
                           form=args.form)
    test = metrics["test"]
    print(
        f"{args.model} [{metrics['label']}]: test AUROC {test['auroc']:.4f} [{test['auroc_ci'][0]:.4f}, "
        f"{test['auroc_ci'][1]:.4f}], AUPRC {test['auprc']:.4f}, Brier {test['brier']:.4f}{_ece_text(test)}, "
        f"n={test['n']}" + _challenge_text(test)
    )
    if args.json:
        write_json(args.json, metrics)
    return 0


def _ece_text(m: dict) -> str:
    """``, ECE 0.035 (a calibrated model: up to 0.031 by chance)``: the ECE beside its sampling-noise floor."""
    if m.get("ece") is None:
        return ""
    floor = m.get("ece_floor_high")
    return f", ECE {m['ece']:.3f}" + ("" if floor is None else f" (a calibrated model: up to {floor:.3f} by chance)")


def _challenge_text(m: dict) -> str:
    """The PhysioNet/CinC 2012 challenge's two scores, as the command lines print them."""
    parts = []
    if m.get("event1") is not None:
        parts.append(f"event 1 {m['event1']:.4f} (threshold from the training death rate)")
    if m.get("hl_h") is not None:
        parts.append(f"event 2 H {m['hl_h']:.2f} on {m['n']:,} patients")
    return "; challenge " + ", ".join(parts) if parts else ""


def cmd_predict(args: argparse.Namespace) -> int:
    from condense.runs.workflow import predict_run

    summary = predict_run(args.model, data=args.data, out_csv=args.out, fmt=args.format, form=args.form,
                          strict=args.strict, cache_dir=args.cache_dir, quiet=args.quiet)
    if summary["issues"]:
        counts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(summary["issues"].items()))
        _log(args, f"input problems counted and treated as missing or clipped: {counts}")
    n, labelled = summary["n"], summary["labelled"]
    line = f"scored {n:,} records [{summary['scored_by']}] -> {args.out}"
    m = summary["metrics"]
    if m is not None:
        line += f"; AUROC {m['auroc']:.4f} [{m['auroc_ci'][0]:.4f}, {m['auroc_ci'][1]:.4f}] on {labelled:,} labelled"
        if labelled < n:
            line += f" ({n - labelled:,} without a label)"
        line += _ece_text(m) + _challenge_text(m)
    elif labelled:
        line += f" ({labelled:,} labelled, all of one class: no AUROC)"
    else:
        line += " (no labels: no metrics)"
    print(line)
    return 0
