"""``condense tune``."""

from __future__ import annotations

import argparse

from condense.commands.bench import add_grid_arguments, grid_settings
from condense.commands.paths import output_folder

# Deferred on purpose: the CLI imports this module to build its parser; what a command runs is imported
# when it runs, so `condense --help` stays fast and never starts TensorFlow.


def register(sub) -> None:
    t = sub.add_parser(
        "tune",
        help="search the student's shape under a parameter budget, on the validation split only",
        description="Train TRIALS settings of the search space (hidden units, pruning quantile, dropout, batch size, "
                    "learning rate, distillation alpha / temperature / teacher seeds, time since last observation) "
                    "with SEEDS seeds each, score each by its mean validation AUROC (the test split is never read) "
                    "and print the best with the `condense train` command that trains it. Trial t000 is the current "
                    "recipe. Writes DIR/tune.json and DIR/trials.csv (docs/tuning.md).",
    )
    t.add_argument("--data", required=True, help="IHM folder, synthetic[:N[:SEED]] or physionet2012:PATH")
    t.add_argument("--out", required=True, type=output_folder, help="tuning folder to write (new or empty; "
                                                                    "with --resume, the search to finish)")
    t.add_argument("--model", choices=("hlstm", "lstm"), default="hlstm", help="the student (default hlstm)")
    t.add_argument("--teacher", action="append", default=None, dest="teachers", metavar="peer:NAME",
                   help="distillation teacher(s) of every trial (default: peer:gbm); --no-teacher for none")
    t.add_argument("--no-teacher", action="store_true", help="train the trials on the labels alone")
    t.add_argument("--trials", type=int, default=24, help="settings to try, the recipe included (default 24)")
    t.add_argument("--seeds", type=int, default=2, help="seeds per setting, 0..N-1 (default 2)")
    t.add_argument("--max-params", type=int, default=4000,
                   help="parameter budget of the final (pruned) model (default 4000)")
    t.add_argument("--search-seed", type=int, default=0, help="seed of the random draw of settings (default 0)")
    t.add_argument("--space", action="append", default=[], metavar="NAME=V[,V...]",
                   help="replace one setting's values in the search space, e.g. units=12,16 or "
                        "prune_quantile=none,0.5 (repeat; one value fixes the setting)")
    t.add_argument("--epochs", type=int, default=20, help="at most this many epochs (default 20)")
    t.add_argument("--patience", type=int, default=5,
                   help="keep the best validation epoch, stop after this many without improvement (default 5)")
    t.add_argument("--resume", action="store_true", help="finish the search in --out (same settings): saved "
                                                         "trials are kept")
    t.add_argument("--cache-dir", default=None)
    t.add_argument("--quiet", action="store_true")
    add_grid_arguments(t, "(trial, seed) job")
    t.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from condense.tune import TuneSettings, parse_space, run_tune

    if args.no_teacher and args.teachers:
        raise ValueError("--no-teacher and --teacher exclude each other")
    teachers = () if args.no_teacher else tuple(args.teachers or ("peer:gbm",))
    settings = TuneSettings(data=args.data, model=args.model, teachers=teachers, trials=args.trials, seeds=args.seeds,
                            max_params=args.max_params, search_seed=args.search_seed, epochs=args.epochs,
                            patience=args.patience, space=parse_space(args.space))
    record = run_tune(settings, out_dir=args.out, cache_dir=args.cache_dir, quiet=args.quiet, resume=args.resume,
                      **grid_settings(args))
    print(summary_text(record))
    return 0 if "best" in record else 1


def summary_text(record: dict, top: int = 10) -> str:
    """The best trials as a few lines, and the command that trains the best."""
    names = ("units", "prune_quantile", "dropout", "batch_size", "learning_rate", "distill_alpha",
             "distill_temperature", "teacher_seeds", "time_since_last")
    lines = [f"{'trial':<6} {'val AUROC':>15} {'params':>7}  setting"]
    for line in record["trials"][:top]:
        if line["status"] != "ok":
            lines.append(f"{line['trial']:<6} {'FAILED':>15} {line['params']:>7,}  {line.get('error', '')}")
            continue
        setting = " ".join(f"{n}={line[n]}" for n in names if n in line)
        mark = "  (the recipe)" if line["trial"] == record["recipe_trial"] else ""
        lines.append(f"{line['trial']:<6} {line['val_auroc']:>8.4f} ±{line['val_auroc_sd']:.4f} "
                     f"{line['params']:>7,}  {setting}{mark}")
    best = record.get("best")
    if best is None:
        lines.append("no trial finished: nothing to recommend")
    else:
        vs = "" if best["vs_recipe"] is None else f", {best['vs_recipe']:+.4f} vs the recipe"
        lines.append(f"best: {best['trial']} (validation AUROC {best['val_auroc']:.4f}{vs}, {best['params']:,} "
                     f"params); train it with\n  {best['command']}")
    return "\n".join(lines)
