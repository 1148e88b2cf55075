"""One job of the benchmark grid: a (row group, seed) that can run in this process or on a Ray worker.

The grid is a list of :class:`Job`. A job trains one model row and makes and checks every
``.tflite`` file converted from it; or runs one tfmot peer; or fits a peer on hand-made features
(the logistic regression, gradient boosting); or
reads a reference score; or trains a tuning trial of ``condense tune`` (:mod:`condense.tune`: judged on
the validation split alone, no file kept). :func:`run_job` works in a private work folder and returns a
:class:`JobResult`: the rows' measurements, their test-set scores, and the bytes of every file
the job made (paths relative to the run folder). The same function therefore runs anywhere (the
local executor calls it here, the Ray executor on a worker that may not share a disk with the
driver) and the driver alone writes into the run folder (:mod:`condense.bench.store`).

Timings that the table compares between rows (Keras and LiteRT latency, LiteRT batched time)
are not measured here: the driver measures every file after the grid has finished, with nothing
else running (:mod:`condense.bench.runner`). Training time is measured here, in the job.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from condense.bench.profiles import Profile
from condense.bench.rows import RowSpec
from condense.calibrate import fit_map, recalibrated_calibration
from condense.data import Dataset
from condense.evaluate import measure
from condense.evaluate.summary import summarize
from condense.export import micro
from condense.export.conversion_child import FAULT_ENV as EXPORT_FAULT_ENV
from condense.export.convert import ExportJob, export_tflite_many
from condense.export.litert_runner import open_tflite
from condense.io import sha256_file, work_folder
from condense.peers.kinds import PEERS
from condense.peers.tfmot_bridge import missing_message, missing_packages, run_tfmot_peers
from condense.runs.model_dir import KERAS_FILE, load_manifest, record_file, save_run, tflite_file
from condense.runs.workflow import train_on_dataset
from condense.train import TrainConfig

# Deferred on purpose: Keras is imported inside the functions that use it, so importing this module stays light.

#: Test samples every .tflite file runs on TFLM (compared with LiteRT's outputs).
TFLM_SAMPLES = 16

#: Test hook read by :func:`run_job` wherever the job runs: ``KEY=FAULT[,KEY=FAULT...]`` (a job's key,
#: ``seed0/dnn``). ``worker-segfault``: the process running the job dies by SIGSEGV as the job starts
#: (a Ray worker crash); ``memory``: the job raises ``MemoryError`` (an error of the job's own);
#: ``export-segfault``: the job's converter child dies by SIGSEGV (``CONDENSE_EXPORT_FAULT`` for
#: this job only). docs/scale-out.md says what each does to the grid.
FAULT_ENV = "CONDENSE_JOB_FAULT"
JOB_FAULTS = ("worker-segfault", "memory", "export-segfault")


@dataclass(frozen=True)
class Job:
    """``rows[0]`` is the job's own row; the others are ``"convert"`` rows made from it."""

    seed: int
    rows: tuple[RowSpec, ...]

    @property
    def name(self) -> str:
        return self.rows[0].row

    @property
    def key(self) -> str:
        """``seed<S>/<row>``: the job's name in ``rows/`` and in progress lines."""
        return f"seed{self.seed}/{self.name}"

    def units(self, epochs: int) -> float:
        """The job's share of the grid's work (row weights; training rows count per epoch)."""
        return sum(r.weight * (epochs if r.kind in ("train", "tfmot", "trial") else 1) for r in self.rows)


def plan_jobs(rows: list[RowSpec], seeds: int) -> list[Job]:
    """The grid: one job per non-``convert`` row and seed, its converted rows attached, seed-major.

    Raises:
        ValueError: a ``convert`` row whose source row is not among ``rows``.
    """
    names = {r.row for r in rows}
    converted: dict[str, list[RowSpec]] = {}
    for spec in rows:
        if spec.kind == "convert":
            if spec.source not in names:
                raise ValueError(f"row {spec.row!r} is converted from row {spec.source!r}: select that row too")
            converted.setdefault(spec.source, []).append(spec)
    own = [r for r in rows if r.kind != "convert"]
    return [Job(seed, (spec, *converted.get(spec.row, []))) for seed in range(seeds) for spec in own]


def model_dir_name(seed: int, row: str) -> str:
    """A row's model directory, relative to the run folder."""
    return f"models/seed{seed}/{row}"


@dataclass
class JobContext:
    """What every job reads: the profile, the data, and the prepared model inputs per input kind
    (``{kind: (ModelInputs, {"train": x, "val": x, "test": x})}``, fitted once by the driver)."""

    profile: Profile
    dataset: Dataset
    prepared: dict
    data_record: dict  # what a row's model directory records of its data

    def arrays(self, kind: str) -> dict[str, np.ndarray]:
        return self.prepared[kind][1]


@dataclass
class JobResult:
    """``rows``: row -> its table fields (``status`` ``ok`` or ``failed`` with ``error``);
    ``scores``: row -> test-set scores (N,) float64, NaN where a row has no score for a record;
    ``files``: path relative to the run folder -> bytes (the model directories the job made)."""

    key: str
    seed: int
    rows: dict[str, dict]
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.get("status") == "ok" for r in self.rows.values())


def error_text(exc: BaseException) -> str:
    """One line, at most 300 characters: what a failed row's ``error`` column holds."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def failed_result(job: Job, error: str, seconds: float = 0.0) -> JobResult:
    """Every row of ``job`` failed with ``error`` (the job died before reporting its rows)."""
    rows = {spec.row: {**row_identity(spec, job.seed), "status": "failed", "error": error} for spec in job.rows}
    return JobResult(job.key, job.seed, rows, seconds=seconds)


#: The status of a row that did not run because an optional peer is not installed (the run's
#: rows were not named, so the user did not ask for it): not a failure; ``error`` says how to install it.
SKIPPED = "skipped"


def skipped_result(job: Job) -> JobResult | None:
    """``job``'s rows skipped when it is a tfmot peer whose optional packages are missing; else None."""
    main = job.rows[0]
    missing = missing_packages() if main.kind == "tfmot" else []
    if not missing:
        return None
    reason = missing_message(main.train["peer"], missing)
    return JobResult(job.key, job.seed, {spec.row: {**row_identity(spec, job.seed), "status": SKIPPED, "error": reason}
                                         for spec in job.rows})


def row_identity(spec: RowSpec, seed: int) -> dict:
    return {"row": spec.row, "model": spec.model, "method": spec.method, "family": spec.family,
            "condensation": spec.condensation, "form": spec.form, "baseline": spec.baseline or "", "seed": seed}


def train_config(profile: Profile, spec: RowSpec, seed: int):
    """The :class:`~condense.train.TrainConfig` of a ``"train"`` or ``"peer"`` row (validated on construction)."""

    settings = {"epochs": profile.epochs, "batch_size": profile.batch_size, "select": profile.select,
                "patience": profile.patience, "prune_after": profile.prune_after}
    return TrainConfig(**{**settings, **spec.train, "seed": seed})  # a row's own settings win over the profile's


def run_job(job: Job, ctx: JobContext, *, on_epoch=None, say=None) -> JobResult:
    """Do one job in a private work folder; a failing row is recorded in its row, never raised.

    ``on_epoch(row, epoch, epochs, seconds, loss, val_auroc)`` and ``say(message)`` report
    progress when the caller can show it (the local executor).
    """

    t0 = time.perf_counter()
    fault = injected_fault(job)
    if fault == "worker-segfault":
        ctypes.string_at(0)  # a real invalid read: the process dies with SIGSEGV
    if fault == "memory":
        raise MemoryError(f"{FAULT_ENV}: the job ran out of memory")
    with _export_fault(fault == "export-segfault"), work_folder("job") as work:
        runner = _JobRunner(job, ctx, work, on_epoch=on_epoch, say=say or (lambda message: None))
        runner.run()
        files = {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}
    return JobResult(job.key, job.seed, runner.results, runner.scores, files, time.perf_counter() - t0)


def injected_fault(job: Job) -> str | None:
    """The fault :data:`FAULT_ENV` injects into ``job``, if any."""
    faults = {}
    for item in filter(None, os.environ.get(FAULT_ENV, "").replace(" ", "").split(",")):
        key, _, fault = item.partition("=")
        if fault not in JOB_FAULTS:
            raise ValueError(f"{FAULT_ENV} takes KEY=FAULT items with FAULT one of {JOB_FAULTS}, got {item!r}")
        faults[key] = fault
    return faults.get(job.key)


@contextlib.contextmanager
def _export_fault(on: bool):
    """``CONDENSE_EXPORT_FAULT=segfault`` for the converter children started inside the block."""
    if not on:
        yield
        return

    before = os.environ.get(EXPORT_FAULT_ENV)
    os.environ[EXPORT_FAULT_ENV] = "segfault"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(EXPORT_FAULT_ENV, None)
        else:
            os.environ[EXPORT_FAULT_ENV] = before


class _JobRunner:
    """The steps of one job; ``work`` stands for the run folder (relative paths are the same)."""

    def __init__(self, job: Job, ctx: JobContext, work: Path, *, on_epoch, say):
        self.job, self.ctx, self.work = job, ctx, work
        self.profile, self.seed = ctx.profile, job.seed
        self.on_epoch, self.say = on_epoch, say
        self.results: dict[str, dict] = {}
        self.scores: dict[str, np.ndarray] = {}
        #: row -> (a, b) of the recalibration fitted on its validation probabilities (or None)
        self.recal: dict[str, tuple[float, float] | None] = {}

    @property
    def y_test(self) -> np.ndarray:
        return self.ctx.dataset.test.y

    def run(self) -> None:
        main, *converted = self.job.rows
        self._guarded(main, getattr(self, f"_run_{main.kind}"))
        if main.kind != "train" or self.results[main.row]["status"] != "ok":
            for spec in converted:
                self._guarded(spec, lambda s: self._fail(f"source row {main.row!r} did not train"))
            return
        exported = self._export(main, [main, *converted])  # every file of the job: one child process
        kind = self.results[main.row]["input_kind"]
        self._guarded(main, lambda s: self._file_measurements(s, exported, "float32", kind, self.scores[s.row])[0])
        for spec in converted:
            if self.results[main.row]["status"] != "ok":
                self._guarded(spec, lambda s: self._fail(f"source row {main.row!r}: {self.results[main.row]['error']}"))
            else:
                self._guarded(spec, lambda s: self._measure_converted(s, main, exported))

    @staticmethod
    def _fail(message: str) -> dict:
        raise RuntimeError(message)

    def _guarded(self, spec: RowSpec, step) -> None:
        result = self.results.setdefault(spec.row, {})
        try:
            result.update(step(spec))
            result["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - a failing row is reported, the grid goes on
            result.update(status="failed", error=error_text(exc))
            self.say(f"  {spec.row} (seed {self.seed}) FAILED: {result['error']}")
            if os.environ.get("CONDENSE_DEBUG"):
                traceback.print_exc()
        result.update(row_identity(spec, self.seed))

    def _metrics(self, p: np.ndarray, y: np.ndarray | None = None, probabilities: bool = True) -> dict:
        y = self.y_test if y is None else y
        s = summarize(y, p, n_resamples=self.profile.bootstrap_resamples, seed=self.seed, probabilities=probabilities,
                      base_rate=self.ctx.dataset.train_death_rate)
        # calibration (ECE over 10 equal-frequency bins, logistic recalibration slope / intercept,
        # Hosmer-Lemeshow H): None for a score that is not a probability, or where the fit has no maximum
        return {"auroc": s["auroc"], "auroc_low": s["auroc_ci"][0], "auroc_high": s["auroc_ci"][1],
                "auprc": s["auprc"], "brier": s["brier"], "ece": s["ece"], "cal_slope": s["cal_slope"],
                "cal_intercept": s["cal_intercept"], "event1": s["event1"], "hl_h": s["hl_h"], "n_test": s["n"],
                "ece_floor": s["ece_floor"], "ece_floor_high": s["ece_floor_high"]}

    def _fit_recalibration(self, row: str, p_val: np.ndarray) -> None:
        """The profile's recalibration map of ``row``, fitted on its validation probabilities (None
        when the profile reports none, or the fit has none: the after columns stay empty)."""
        method = self.profile.recalibration
        self.recal[row] = None
        if method != "none":
            try:
                self.recal[row] = fit_map(self.ctx.dataset.val.y, p_val, method)
            except ValueError as exc:
                self.say(f"  {row} (seed {self.seed}): no {method} recalibration ({exc})")

    def _recalibrated(self, row: str, p_test: np.ndarray, source: str | None = None) -> dict:
        """The after-recalibration columns of ``row``'s test probabilities, with the map fitted for
        ``source`` (a converted file takes its Keras model's: the map folded into the model would
        reach the file exactly)."""
        fitted = self.recal.get(source or row)
        if fitted is None:
            return {}
        return recalibrated_calibration(self.y_test, p_test, *fitted)

    def _model_dir(self, row: str) -> Path:
        return self.work / model_dir_name(self.seed, row)

    def _relative(self, path) -> str:
        return str(Path(path).relative_to(self.work))

    # -- the job's own row -----------------------------------------------------------------------
    def _train(self, spec: RowSpec, score_test: bool = True):
        config = train_config(self.profile, spec, self.seed)
        if config.model not in PEERS:
            import keras

            # Layer names restart in every job, so the saved file is byte-identical whichever
            # process (this one after other jobs, a fresh Ray worker) trained the model.
            keras.backend.clear_session()
        report = None if self.on_epoch is None else (
            lambda epoch, seconds, loss, val_auroc: self.on_epoch(spec.row, epoch, config.epochs, seconds, loss,
                                                                  val_auroc))
        model, inputs, record = train_on_dataset(config, self.ctx.dataset, verbose=0, on_epoch=report,
                                                 prepared=self.ctx.prepared[config.input_kind], score_test=score_test)
        return config, model, inputs, record

    def _train_and_save(self, spec: RowSpec) -> tuple[dict, dict, Path]:
        config, model, inputs, record = self._train(spec)
        p_test = record.pop("p_test")
        self.scores[spec.row] = np.asarray(p_test, dtype=np.float64)
        self._fit_recalibration(spec.row, record.pop("p_val"))
        model_dir = self._model_dir(spec.row)
        save_run(model_dir, model=model, inputs=inputs, manifest={**record, "data": self.ctx.data_record})
        return config, record, model_dir

    def _run_train(self, spec: RowSpec) -> dict:
        config, record, model_dir = self._train_and_save(spec)
        result = self._metrics(self.scores[spec.row])
        result.update(self._recalibrated(spec.row, self.scores[spec.row]))
        result.update(
            params=record["params"], keras_bytes=measure.file_bytes(model_dir / KERAS_FILE),
            train_seconds=record["train_seconds"], epochs_run=len(record["epoch_seconds"]),
            model_dir=self._relative(model_dir), prune=record.get("prune"), input_kind=config.input_kind,
        )
        return result

    def _run_trial(self, spec: RowSpec) -> dict:
        """A tuning trial (:mod:`condense.tune`): trained as a ``"train"`` row, judged on the validation
        split alone; no file is kept and the test split is never scored."""
        config, _, _, record = self._train(spec, score_test=False)
        val = record["metrics"]["val"]
        distillation = record.get("distillation") or {}
        return {"val_auroc": val["auroc"], "val_auprc": val["auprc"], "val_brier": val["brier"], "val_ece": val["ece"],
                "params": record["params"], "epochs_run": len(record["epoch_seconds"]),
                "selected_epoch": record["selected_epoch"], "train_seconds": record["train_seconds"],
                "teacher_train_auroc": distillation.get("teacher_train_auroc"), "input_kind": config.input_kind}

    def _run_peer(self, spec: RowSpec) -> dict:
        """A peer on hand-made features (LR, GBM): its deployable form is its own model file (the
        LR's JSON, the GBM's LightGBM text; the GBM's metadata JSON beside it is not counted)."""

        config, record, model_dir = self._train_and_save(spec)
        result = self._metrics(self.scores[spec.row])
        result.update(self._recalibrated(spec.row, self.scores[spec.row]))
        model_file = load_manifest(model_dir)["model_file"]
        result.update(params=record["params"], train_seconds=record["train_seconds"],
                      deploy_bytes=measure.file_bytes(model_dir / model_file), model_dir=self._relative(model_dir),
                      input_kind=config.input_kind)
        return result

    def _run_score(self, spec: RowSpec) -> dict:
        """A reference score shipped with the data, scored on the test records that have one."""
        column = spec.train["score"]
        score = np.asarray(self.ctx.dataset.extras[column]["test"], dtype=np.float64)
        known = np.isfinite(score)
        if not known.any():
            raise RuntimeError(f"no test record has a {spec.model} score")
        self.scores[spec.row] = score
        return self._metrics(score[known], y=self.y_test[known], probabilities=False)

    def _run_tfmot(self, spec: RowSpec) -> dict:
        name = spec.train["peer"]
        seq, feat = self.ctx.arrays("sequence"), self.ctx.arrays("features")
        arrays = {f"seq_{k}": v for k, v in seq.items()} | {f"feat_{k}": v for k, v in feat.items()}
        arrays |= {f"y_{k}": self.ctx.dataset.split(k).y for k in ("train", "val", "test")}
        self.say(f"  {spec.row} (seed {self.seed}): training in a child process (tf_keras)")
        [peer] = run_tfmot_peers(
            arrays, self._model_dir(spec.row), peers=[name],
            epochs=self.profile.epochs, batch_size=self.profile.batch_size, seed=self.seed,
            select=self.profile.select, patience=self.profile.patience, quiet=True,
        )
        if peer.get("status") != "ok":
            raise RuntimeError(peer.get("error", "peer did not run"))
        p = np.asarray(peer.get("p_test_tflite") or peer["p_test"], dtype=np.float64)
        self.scores[spec.row] = p
        p_val = peer.get("p_val_tflite") or peer.get("p_val")
        if p_val is not None:
            self._fit_recalibration(spec.row, np.asarray(p_val, dtype=np.float64))
        result = self._metrics(p)
        result.update(self._recalibrated(spec.row, p))
        result.update(
            params=peer["params"], nonzero_params=peer.get("nonzero_params"),
            tflite_format="int8" if name.startswith("qat") else "float32",
            tflite_bytes=peer.get("tflite_bytes"), tflite_gzip_bytes=peer.get("tflite_gzip_bytes"),
            deploy_bytes=peer.get("tflite_bytes"), train_seconds=peer.get("train_seconds"),
            epochs_run=len(peer.get("epoch_seconds") or []),
        )
        if peer.get("tflite_path"):
            result.update(tflite_file=self._relative(peer["tflite_path"]),
                          latency_input="features" if spec.family == "dnn" else "sequence",
                          tflite_gzip_bytes=measure.gzip_bytes(peer["tflite_path"]))
        return result

    # -- .tflite files ---------------------------------------------------------------------------
    def _export(self, main: RowSpec, specs: list[RowSpec]) -> dict:
        """Convert the files of ``specs`` (made from ``main``'s model) in one child process.

        Every job gets the row's first training inputs: int8 calibrates on them, and recurrent
        models are checked on them before ``Masking`` is dropped. Export is all or nothing per
        child, so when the batch fails each file is retried on its own: the one that crashes is
        recorded against its row, the others still convert. Returns row -> (path, info) or the
        exception.
        """

        model_dir = self._model_dir(main.row)
        calibration = self.ctx.arrays(self.results[main.row]["input_kind"])["train"][: self.profile.calibration]
        jobs = {}
        for spec in specs:
            fmt = "float32" if spec.kind == "train" else spec.fmt
            name = tflite_file(fmt, spec.form) if spec.route == "auto" else f"model.{spec.route}.{fmt}.tflite"
            jobs[spec.row] = ExportJob(model_dir / KERAS_FILE, model_dir / name, fmt, calibration_x=calibration,
                                       route=spec.route, form=spec.form)
        self.say(f"  {main.row} (seed {self.seed}): converting {len(jobs)} .tflite file(s) in a child process")
        try:
            exported = dict(zip(jobs, export_tflite_many(list(jobs.values()), details=True)))
        except Exception as batch_error:  # noqa: BLE001
            exported = {row: batch_error for row in jobs}
            if len(jobs) > 1:
                self.say(f"  batch conversion failed ({error_text(batch_error)}); converting one file at a time")
                for row, job in jobs.items():
                    try:
                        exported[row] = export_tflite_many([job], details=True)[0]
                    except Exception as exc:  # noqa: BLE001
                        exported[row] = exc
        for row, job in jobs.items():  # listed in the model directory's manifest, with their source's hash
            if not isinstance(exported[row], Exception):
                out = Path(job.out_path)
                record_file(out.parent, out.name, source_sha256=sha256_file(job.model_path))
        return exported

    def _measure_converted(self, spec: RowSpec, main: RowSpec, exported: dict) -> dict:
        source = self.results[main.row]
        measured, p = self._file_measurements(spec, exported, spec.fmt, source["input_kind"], self.scores[main.row])
        self.scores[spec.row] = p
        result = self._metrics(p)
        result.update(self._recalibrated(spec.row, p, source=main.row))
        result.update(measured, params=source["params"], train_seconds=source["train_seconds"])
        return result

    def _file_measurements(self, spec: RowSpec, exported: dict, fmt: str, kind: str,
                           p_keras: np.ndarray) -> tuple[dict, np.ndarray]:
        """Everything measured on one .tflite file but its timings: size, route, parity with
        Keras on the whole test split, ties among the probabilities, TFLM."""

        out = exported.get(spec.row)
        if isinstance(out, Exception):
            raise out
        path, info = out
        x_test = self.ctx.arrays(kind)["test"]
        p = np.asarray(open_tflite(path).predict(x_test), dtype=np.float64).reshape(-1)
        measured = {
            "tflite_format": fmt, "tflite_bytes": measure.file_bytes(path), "deploy_bytes": measure.file_bytes(path),
            "route": info.get("route", ""), "cell_state_max_abs": info.get("cell_state_max_abs"),
            "parity_max_abs": float(np.max(np.abs(p - p_keras))), "p_ties": int(len(p) - len(np.unique(p))),
            "tflite_file": self._relative(path), "latency_input": kind,
        }
        measured.update(_micro(path, x_test[:TFLM_SAMPLES], p[:TFLM_SAMPLES]))
        return measured, p


def _micro(path: Path, x: np.ndarray, p_litert: np.ndarray) -> dict:
    """TFLM arena and agreement with LiteRT, or why the file cannot run there."""

    if not micro.available():
        return {"tflm_note": "tflite-micro not installed"}
    try:
        run = micro.run_micro(path, x)
    except micro.MicroError as exc:
        return {"tflm_note": str(exc)[:200]}
    deviation = float(np.max(np.abs(run["outputs"].reshape(len(x), -1)[:, 0] - p_litert)))
    if not np.isfinite(deviation):
        return {"tflm_note": "TFLM returns non-finite outputs"}
    return {"tflm_arena_bytes": run["arena_bytes"], "tflm_max_abs": deviation}
