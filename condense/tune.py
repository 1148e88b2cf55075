"""``condense tune``: a small, seeded search for the student's shape, judged on the validation split only.

A trial is one setting of the search space (hidden units, pruning quantile, dropout, batch size,
learning rate, and the distillation settings: alpha, temperature, teacher seeds), trained with every
seed ``0 .. seeds-1`` as ``"trial"`` rows of the benchmark grid (:mod:`condense.bench.jobs`), so the
local process pool or a Ray cluster runs them (``--executor ray``) exactly as it runs ``condense bench``.
A trial is scored by its mean validation AUROC over the seeds; the test split is never read (not
scored, not predicted), so the chosen setting can be tested honestly afterwards.

The search is random over the space, seeded (``search_seed``): the same command gives the same
trials. Trial 0 is always the current recipe (:data:`condense.recipe.RECIPE`), so a search is
measured against it. A
setting whose final model (after pruning) has more than ``max_params`` parameters is never drawn:
its count is computed before training from the widths that pruning keeps
(:func:`condense.prune.selection.select_units` keeps ``n - floor(q n)``) and checked after.

Outputs in the tuning folder: ``tune.json`` (the settings, every trial's results and the best
trial with the ``condense train`` command that trains it), ``trials.csv`` (one line per trial,
best first) and ``trials/seed<S>/<trial>.json`` (each finished job, written as it arrives:
``--resume`` runs only the missing ones). docs/tuning.md has the measurement behind the recipe.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import shlex
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from condense.bench.executors import GridProgress, make_executor
from condense.bench.jobs import Job, JobContext, JobResult, train_config
from condense.bench.profiles import Profile
from condense.bench.rows import RowSpec
from condense.bench.runner import data_record, input_kinds, prepare_inputs
from condense.checks import check_choice, check_int, invalid_argument
from condense.data.sources import load_dataset
from condense.io import atomic_write, read_json, write_json
from condense.recipe import DISTILL_SETTINGS, RECIPE, RECIPE_TEACHERS, train_settings
from condense.runs.model_dir import acquire_lock, release_lock
from condense.evaluate.measure import param_count
from condense.train import TrainConfig, build_model, set_tf_threads

# Deferred on purpose: Keras and condense.prune (Keras) are imported inside the function that counts a
# setting's parameters.

__all__ = ["DEFAULT_SPACE", "TUNABLE", "TuneSettings", "TuneError", "parse_space", "draw_trials",
           "final_params", "run_tune", "train_command"]

TUNE_FILE = "tune.json"
TRIALS_CSV = "trials.csv"
TRIALS_DIR = "trials"
TUNE_VERSION = 1
#: The student families a search shapes (one recurrent width per layer).
TUNED_MODELS = ("hlstm", "lstm")


def _quantile(text: str):
    return None if text.lower() in ("none", "0") else float(text)


def _flag(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


#: What a search may vary: {setting: parser of one value from the command line}. ``units`` is the width
#: of every recurrent layer; ``prune_quantile`` ``none`` trains unpruned; the ``distill_*`` and
#: ``teacher_seeds`` settings apply when the search has teachers.
TUNABLE = {
    "units": int,
    "prune_quantile": _quantile,
    "dropout": float,
    "batch_size": int,
    "learning_rate": float,
    "distill_alpha": float,
    "distill_temperature": float,
    "teacher_seeds": int,
    "time_since_last": _flag,
}

#: The default search space (a few values per setting around the recipe; the budget removes the rest).
DEFAULT_SPACE = {
    "units": (8, 12, 16, 20, 24, 32),
    "prune_quantile": (None, 0.25, 0.5),
    "dropout": (0.0, 0.1, 0.3, 0.5),
    "batch_size": (8, 16, 32),
    "learning_rate": (5e-4, 1e-3, 2e-3, 4e-3),
    "distill_alpha": (0.1, 0.2, 0.35, 0.5),
    "distill_temperature": (1.0, 2.0),
    "teacher_seeds": (1, 3),
    "time_since_last": (False, True),
}


class TuneError(ValueError):
    """A tuning folder that cannot be started or resumed as asked (the message says why)."""


def parse_space(items: list[str], base: dict | None = None) -> dict:
    """``["units=8,16", "dropout=0.1"]`` -> the search space with those settings replaced
    (``base``: :data:`DEFAULT_SPACE`); a one-value setting is fixed."""
    space = dict(DEFAULT_SPACE if base is None else base)
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"--space takes NAME=VALUE[,VALUE...], got {item!r}")
        check_choice("space", name, TUNABLE)
        try:
            parsed = tuple(dict.fromkeys(TUNABLE[name](v.strip()) for v in values.split(",")))
        except ValueError as exc:
            raise ValueError(f"--space {item!r}: {exc}") from None
        space[name] = parsed
    return space


@dataclass
class TuneSettings:
    """Everything that decides a search (recorded whole in ``tune.json``; ``--resume`` checks it)."""

    data: str
    model: str = "hlstm"
    teachers: tuple[str, ...] = RECIPE_TEACHERS
    trials: int = 24
    seeds: int = 2
    max_params: int = 4000
    search_seed: int = 0
    epochs: int = 20
    select: str = "best"
    patience: int | None = 5
    space: dict = field(default_factory=lambda: dict(DEFAULT_SPACE))

    def __post_init__(self):
        check_choice("model", self.model, TUNED_MODELS)
        for name, low in (("trials", 1), ("seeds", 1), ("max_params", 1), ("search_seed", 0), ("epochs", 2)):
            check_int(name, getattr(self, name), low)
        self.teachers = tuple(self.teachers)
        unknown = sorted(set(self.space) - set(TUNABLE))
        if unknown:
            raise invalid_argument("space", f"settings among {sorted(TUNABLE)}", unknown)
        for name, values in self.space.items():
            if isinstance(values, (str, bytes)) or not values:
                raise invalid_argument("space", f"a non-empty list of values for {name!r}", values)
            self.space[name] = tuple(values)
        # every value is checked now (a bad one fails here, not in trial 17)
        for name, values in self.space.items():
            for value in values:
                try:
                    self.config({**RECIPE, name: value}, 0)
                except ValueError as exc:
                    raise ValueError(f"space {name}={value}: {exc}") from None

    def config(self, setting: dict, seed: int) -> TrainConfig:
        """The training configuration of one trial's setting with ``seed``."""
        return train_config(self.profile(), self.row("check", setting), seed)

    def profile(self) -> Profile:
        """The benchmark profile the trials run under (epochs, epoch selection; the rest per trial)."""
        return Profile(name="tune", data=self.data, epochs=self.epochs, batch_size=8, select=self.select,
                       patience=self.patience)

    def row(self, name: str, setting: dict) -> RowSpec:
        """The grid row that trains ``setting``."""
        train = train_settings(setting, model=self.model, teachers=self.teachers)
        return RowSpec(name, self.model, f"tuning trial {name}", "trial", self.model, train=train)

    def to_json(self) -> dict:
        record = asdict(self)
        record["teachers"] = list(self.teachers)
        record["space"] = {k: list(v) for k, v in self.space.items()}
        return record


def trial_name(k: int) -> str:
    return f"t{k:03d}"


def final_params(config: TrainConfig, input_shape: tuple[int, ...]) -> int:
    """Parameters of ``config``'s model after pruning (built with the kept widths, never trained)."""
    import keras

    from condense.prune.selection import kept_units

    widths = config.units or ((16,) if config.model == "hlstm" else (16, 16))
    kept = tuple(kept_units(w, config.prune_quantile) if config.prune_quantile else w for w in widths)
    model = build_model(replace(config, units=kept, prune_quantile=None, teachers=()), input_shape)
    count = param_count(model)
    keras.backend.clear_session()
    return count


def draw_trials(settings: TuneSettings, params_of) -> list[dict]:
    """The search's trials: the recipe first (its values for settings the space fixes otherwise are
    replaced), then settings drawn at random (seeded) from the space, each at most once, within the
    parameter budget. ``params_of(setting)`` counts a setting's final parameters.

    Returns ``[{"trial", "setting", "params"}]``; fewer than ``settings.trials`` when the space
    holds fewer settings within the budget.
    """
    space = {name: settings.space.get(name, (RECIPE[name],)) for name in TUNABLE}
    if not settings.teachers:
        space.update({name: (RECIPE[name],) for name in DISTILL_SETTINGS})
    recipe = {name: RECIPE[name] if RECIPE[name] in values else values[0] for name, values in space.items()}
    total = math.prod(len(v) for v in space.values())
    rng = np.random.default_rng([settings.search_seed, 0x7E57])
    chosen, seen, budget_cache = [], set(), {}
    candidates = itertools.chain([recipe], (
        {name: values[int(rng.integers(len(values)))] for name, values in space.items()} for _ in itertools.count()))
    tries = 0
    for setting in candidates:
        if len(chosen) == settings.trials or len(seen) == total or tries > 50 * settings.trials + 1000:
            break
        tries += 1
        key = tuple(setting[name] for name in TUNABLE)
        if key in seen:
            continue
        seen.add(key)
        shape = (setting["units"], setting["prune_quantile"], setting["time_since_last"])
        if shape not in budget_cache:
            budget_cache[shape] = params_of(setting)
        if budget_cache[shape] <= settings.max_params:
            chosen.append({"trial": trial_name(len(chosen)), "setting": setting, "params": budget_cache[shape]})
    return chosen


def train_command(settings: TuneSettings, setting: dict, seed: int = 0, out: str = "DIR") -> str:
    """The ``condense train`` command that trains ``setting`` (what the search found, as one line)."""
    config = settings.config(setting, seed)
    args = ["condense", "train", "--data", settings.data, "--model", config.model,
            "--units", ",".join(str(u) for u in config.units), "--dropout", f"{config.dropout:g}",
            "--batch-size", str(config.batch_size), "--learning-rate", f"{config.learning_rate:g}",
            "--epochs", str(config.epochs), "--select", config.select]
    if config.patience is not None:
        args += ["--patience", str(config.patience)]
    if config.prune_quantile:
        args += ["--prune-quantile", f"{config.prune_quantile:g}"]
    if config.time_since_last:
        args.append("--time-since-last")
    for teacher in config.teachers:
        args += ["--teacher", teacher]
    if config.teachers:
        args += ["--distill-alpha", f"{config.distill_alpha:g}", "--distill-temperature",
                 f"{config.distill_temperature:g}", "--teacher-seeds", str(config.teacher_seeds)]
    args += ["--seed", str(seed), "--out", out]
    return shlex.join(args)


# -- the tuning folder --------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(out_dir: Path):
    target = Path(os.path.abspath(out_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    fd = acquire_lock(lock, out_dir, busy=TuneError, error=TuneError,
                      held_by="is in use by another `condense tune` (a tuning folder has one writer at a time)")
    try:
        yield
    finally:
        release_lock(lock, fd)


def _job_file(out_dir: Path, job: Job) -> Path:
    return out_dir / TRIALS_DIR / f"seed{job.seed}" / f"{job.name}.json"


def _load_job(out_dir: Path, job: Job) -> dict | None:
    """A job's saved fields, or None (missing, unreadable or failed: it runs again)."""
    path = _job_file(out_dir, job)
    try:
        fields = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(fields, dict) or fields.get("status") != "ok" or not isinstance(fields.get("val_auroc"), float):
        return None
    return fields


def _start(out_dir: Path, plan: dict, resume: bool) -> None:
    """A new search refuses a folder that holds anything; ``resume`` needs the same plan."""
    path = out_dir / TUNE_FILE
    if resume:
        try:
            saved = read_json(path)
        except (OSError, ValueError) as exc:
            raise TuneError(f"{out_dir}: no search to resume ({path}: {exc})") from None
        if not isinstance(saved, dict) or saved.get("plan") != plan:
            raise TuneError(f"{path}: this search's settings, data or trials differ from the saved search's; "
                            "resume it with its own settings, or start a new one in another --out")
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        hint = f" (continue it with `condense tune --resume --out {out_dir} ...`)" if path.exists() else ""
        raise TuneError(f"{out_dir} is not empty{hint}: a search writes into an empty or new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, {"version": TUNE_VERSION, "plan": plan, "finished": False})


def _summaries(trials: list[dict], fields: dict[tuple[str, int], dict], seeds: int) -> list[dict]:
    """One line per trial (mean and per-seed validation AUROC), best first; failed trials last."""
    lines = []
    for trial in trials:
        runs = [fields.get((trial["trial"], s)) for s in range(seeds)]
        ok = [r for r in runs if r is not None and r.get("status") == "ok"]
        line = {"trial": trial["trial"], **trial["setting"], "params": trial["params"],
                "status": "ok" if len(ok) == seeds else "failed"}
        if len(ok) == seeds:
            aurocs = [r["val_auroc"] for r in ok]
            line.update(val_auroc=statistics.fmean(aurocs), val_auroc_sd=statistics.stdev(aurocs) if seeds > 1 else 0.0,
                        val_auroc_seeds=aurocs, val_ece=statistics.fmean(r["val_ece"] for r in ok),
                        trained_params=sorted({r["params"] for r in ok}),
                        epochs_run=statistics.fmean(r["epochs_run"] for r in ok),
                        train_seconds=statistics.fmean(r["train_seconds"] for r in ok))
            if line["trained_params"] != [trial["params"]]:
                line["status"] = "failed"
                line["error"] = (f"trained {line['trained_params']} parameters, {trial['params']} were counted "
                                 "before training")
        else:
            line["error"] = next((r.get("error", "") for r in runs if r is not None and r.get("status") != "ok"),
                                 "did not run")
        lines.append(line)
    return sorted(lines, key=lambda r: (r["status"] != "ok", -r.get("val_auroc", 0.0), r["params"], r["trial"]))


CSV_COLUMNS = ("rank", "trial", "val_auroc", "val_auroc_sd", "val_ece", "params", *TUNABLE, "epochs_run",
               "train_seconds", "status", "error")


def _trials_csv(lines: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rank, line in enumerate(lines, start=1):
        cells = {k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in line.items()}
        writer.writerow({**cells, "rank": rank if line["status"] == "ok" else ""})
    return buf.getvalue()


def run_tune(settings: TuneSettings, *, out_dir, cache_dir=None, quiet: bool = False, executor: str = "local",
             ray_address: str | None = None, workers: int | None = None, resume: bool = False) -> dict:
    """Run the search ``settings`` describes into ``out_dir``; returns what ``tune.json`` holds."""
    out_dir = Path(out_dir)
    runner = make_executor(executor, address=ray_address, workers=workers, threads=1)
    with _locked(out_dir):
        return _run_locked(settings, out_dir, cache_dir, quiet, runner, resume)


def _run_locked(settings: TuneSettings, out_dir: Path, cache_dir, quiet: bool, runner, resume: bool) -> dict:
    t0 = time.perf_counter()
    dataset = load_dataset(settings.data, seed=0, cache_dir=cache_dir, quiet=quiet)
    dataset.require_labels()
    profile = settings.profile()
    prepared = {}  # the model inputs of each input kind, made once: counting parameters needs their shape

    def inputs_of(kind: str):
        if kind not in prepared:
            prepared.update(prepare_inputs(dataset, [kind]))
        return prepared[kind]

    def params_of(setting: dict) -> int:
        config = settings.config(setting, 0)
        return final_params(config, inputs_of(config.input_kind)[1]["train"].shape[1:])

    trials = draw_trials(settings, params_of)
    if not trials:
        raise TuneError(f"no setting of the search space has at most {settings.max_params:,} parameters "
                        "(raise --max-params or give smaller --space units=...)")
    plan = {"settings": settings.to_json(), "data": {"spec": settings.data, "fingerprint": dataset.fingerprint},
            "trials": trials}
    plan = _json_roundtrip(plan)
    _start(out_dir, plan, resume)
    rows = [settings.row(t["trial"], t["setting"]) for t in trials]
    jobs = [Job(seed, (row,)) for seed in range(settings.seeds) for row in rows]
    threads = set_tf_threads(1) if runner.name == "local" else None
    ctx = JobContext(profile, dataset, {kind: inputs_of(kind) for kind in input_kinds(rows, profile)},
                     data_record(profile, dataset))
    fields = {}
    for job in jobs:
        saved = _load_job(out_dir, job) if resume else None
        if saved is not None:
            fields[(job.name, job.seed)] = saved
    todo = [job for job in jobs if (job.name, job.seed) not in fields]
    progress = GridProgress(todo, settings.epochs, quiet)
    progress.say(f"tune {settings.model}: {len(trials)} trials x {settings.seeds} seed(s) = {len(jobs)} jobs"
                 + (f" ({len(jobs) - len(todo)} done earlier)" if resume else "")
                 + f" on {dataset.source} (train {len(dataset.train)}, val {len(dataset.val)}; the test split is not "
                 f"read), at most {settings.max_params:,} parameters, executor {runner.name} -> {out_dir}")

    def on_result(job: Job, result: JobResult) -> None:
        row = dict(result.rows.get(job.name) or {"status": "failed", "error": "no result"})
        write_json(_job_file(out_dir, job), row)
        fields[(job.name, job.seed)] = row
        progress.finished(job, result)
        if row.get("status") == "ok":
            progress.say(f"  {job.key}: val AUROC {row['val_auroc']:.4f}, {row['params']:,} params")

    runner.run(todo, ctx, progress, on_result)
    lines = _summaries(trials, fields, settings.seeds)
    best = lines[0] if lines and lines[0]["status"] == "ok" else None
    recipe = next(line for line in lines if line["trial"] == trials[0]["trial"])
    record = {"version": TUNE_VERSION, "plan": plan, "finished": True, "trials": lines,
              "recipe_trial": recipe["trial"], "wall_seconds": time.perf_counter() - t0,
              "executor": runner.name, "tf_threads": threads}
    if best is not None:
        setting = next(t["setting"] for t in trials if t["trial"] == best["trial"])
        record["best"] = {"trial": best["trial"], "setting": setting, "val_auroc": best["val_auroc"],
                          "val_auroc_sd": best["val_auroc_sd"], "params": best["params"],
                          "vs_recipe": best["val_auroc"] - recipe["val_auroc"] if recipe["status"] == "ok" else None,
                          "command": train_command(settings, setting)}
    atomic_write(out_dir / TRIALS_CSV, _trials_csv(lines))
    write_json(out_dir / TUNE_FILE, record)
    return record


def _json_roundtrip(obj):
    """``obj`` as JSON reads it back (tuples become lists): what a resumed search compares."""
    return json.loads(json.dumps(obj))
