"""``condense bench``: train, condense, export and measure every variant in one run.

The benchmark orchestrates and owns no math: models come from :mod:`condense.runs.workflow`
(the same code as ``condense train``), pruning from :mod:`condense.prune`, files from
:mod:`condense.export.convert`, timings and sizes from :mod:`condense.evaluate.measure`, statistics from
:mod:`condense.evaluate.metrics`, peers from :mod:`condense.peers`, and the outputs from
:mod:`condense.bench.report`.

A run is a grid of jobs (:mod:`condense.bench.jobs`: one per row and seed, converted files with
their source row) that an executor runs (:mod:`condense.bench.executors`: this process, or Ray
tasks); each finished job is saved at once in the run folder's ``rows/``
(:mod:`condense.bench.store`), so ``--resume`` runs only what is missing. When the grid is done
the driver measures every timing the table compares (Keras and LiteRT latency, LiteRT batched
time) in one pass with nothing else running, adds the paired differences and ratios, and writes
the table, the figures and the per-patient test predictions.

A row that fails (a converter crash, a missing optional peer) is kept in the table with its
reason; the run goes on and the exit code says that something failed.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from condense.bench import report as bench_report
from condense.bench.epoch_timing import keras_epoch_seconds
from condense.bench.executors import GridProgress, make_executor
from condense.bench.jobs import Job, JobContext, JobResult, SKIPPED, error_text, plan_jobs, skipped_result, train_config
from condense.bench.profiles import Profile
from condense.bench.rows import LATENCY_REFERENCE, PAIRED_REFERENCES, RowSpec, plan_rows
from condense.bench.store import RunStore, RunStoreError
from condense.checks import check_int
from condense.data import Dataset, load_dataset
from condense.data.inputs import fit_inputs, prepared_splits
from condense.data.sources import resolve_data_spec
from condense.evaluate import measure
from condense.evaluate.bootstrap import paired_bootstrap_diff
from condense.evaluate.measure import measure_latency
from condense.export.litert_runner import open_tflite
from condense.io import remove_stale_temp_files
from condense.runs.model_dir import KERAS_FILE, git_commit, library_versions, load_manifest, load_run
from condense.train import set_tf_threads


def machine_info() -> dict:
    """CPU model and core count, read from the machine."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "onednn": onednn_setting()}


def onednn_setting() -> str:
    """Whether TensorFlow's oneDNN kernels are on, as the environment sets them for this process
    and its children (``TF_ENABLE_ONEDNN_OPTS``; on by default on x86 Linux), and any ISA cap."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    state = "on (default)" if value is None else ("off" if value.strip() in ("0", "false", "False") else "on")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return state + (f", ONEDNN_MAX_CPU_ISA={isa}" if isa else "")




def input_kinds(rows: list[RowSpec], profile: Profile) -> list[str]:
    """The model input kinds the rows read (each is prepared once, by the driver)."""
    kinds = set()
    for spec in rows:
        if spec.kind in ("train", "peer", "trial"):
            kinds.add(train_config(profile, spec, 0).input_kind)
        elif spec.kind == "tfmot":
            kinds |= {"sequence", "features"}
    return sorted(kinds)


def prepare_inputs(dataset: Dataset, kinds: list[str]) -> dict:
    """``{kind: (ModelInputs, {"train": x, "val": x, "test": x})}``, fitted on the training split."""

    prepared = {}
    for kind in kinds:
        inputs = fit_inputs(dataset, kind)
        prepared[kind] = (inputs, prepared_splits(dataset, inputs))
    return prepared


def resume_benchmark(out_dir, *, cache_dir=None, quiet: bool = False, executor: str = "local",
                     ray_address: str | None = None, workers: int | None = None) -> tuple[Path, bool]:
    """Finish the run in ``out_dir`` with the settings it started with: jobs already saved in its
    ``rows/`` are kept, the missing ones (and failed ones) run. Returns (out_dir, all_ok)."""
    settings = RunStore(out_dir).settings()
    if settings is None:
        raise RunStoreError(f"{out_dir}: no benchmark run to resume (no rows/plan.json; "
                            "a run folder made by `condense bench` holds one)")
    profile, seeds, rows = settings
    return run_benchmark(profile, out_dir=out_dir, seeds=seeds, cache_dir=cache_dir, quiet=quiet, only=rows,
                         executor=executor, ray_address=ray_address, workers=workers, resume=True)


def run_benchmark(profile: Profile, *, out_dir, seeds: int = 1, cache_dir=None, quiet: bool = False,
                  only: list[str] | None = None, executor: str = "local", ray_address: str | None = None,
                  workers: int | None = None, resume: bool = False) -> tuple[Path, bool]:
    """Run every row of ``profile`` for ``seeds`` seeds and write the outputs into ``out_dir``.

    ``executor``: ``"local"`` (this process) or ``"ray"`` (``ray_address``, ``workers``: see
    :class:`~condense.bench.executors.RayExecutor`). ``resume``: keep the jobs ``out_dir`` already
    holds (use :func:`resume_benchmark` to take the settings from the folder). Returns (out_dir, all_ok).
    """
    check_int("seeds", seeds, 1)
    check_settings(profile, seeds, only)  # a bad setting fails here, before the data is read
    runner = make_executor(executor, address=ray_address, workers=workers, threads=profile.threads)
    out_dir = Path(out_dir)
    store = RunStore(out_dir)
    with store.lock():  # one writer per run folder, from the first check to the last output
        return _run_locked(profile, store, seeds=seeds, cache_dir=cache_dir, quiet=quiet, only=only,
                           runner=runner, executor=executor, resume=resume)


def check_settings(profile: Profile, seeds: int, only: list[str] | None) -> None:
    """Every setting a run can check without its data: each selected row's training settings (row
    names are checked once the data says which reference-score rows it has; nothing is deleted
    before that)."""
    if only is not None and (isinstance(only, str) or not all(isinstance(r, str) for r in only)):
        raise ValueError(f"rows must be a list of row names, got {only!r}")
    rows = plan_rows(profile)
    selected = [r for r in rows if not only or r.row in only]
    sources = {r.source for r in selected}
    for spec in [r for r in rows if r in selected or r.row in sources]:
        if spec.kind in ("train", "peer"):
            for seed in range(seeds):
                try:
                    train_config(profile, spec, seed)
                except ValueError as exc:
                    raise ValueError(f"row {spec.row}: {exc}") from None


def select_rows(rows: list[RowSpec], only: list[str] | None) -> list[RowSpec]:
    """The rows named in ``only`` (all when None); a name that is not a row is an error."""
    if not only:
        return rows
    known = [r.row for r in rows]
    unknown = sorted(set(only) - set(known))
    if unknown:
        raise ValueError(f"unknown row(s) {unknown}; known: {known}")
    return [r for r in rows if r.row in only]


def _run_locked(profile: Profile, store: RunStore, *, seeds: int, cache_dir, quiet: bool, only, runner,
                executor: str, resume: bool) -> tuple[Path, bool]:
    """:func:`run_benchmark` under the run folder's lock."""

    out_dir = store.out_dir
    if not resume:
        store.check_new()
    out_dir.mkdir(parents=True, exist_ok=True)
    # hidden temporary files that killed earlier runs left beside their results (models/seed*/<row>/)
    for folder in [out_dir.parent, *out_dir.parent.glob("*"), *out_dir.parent.glob("*/models/seed*/*"),
                   *out_dir.glob("rows/seed*")]:
        if folder.is_dir():
            remove_stale_temp_files(folder)
    t0 = time.perf_counter()
    dataset = load_dataset(profile.data, seed=0, cache_dir=cache_dir, quiet=quiet)
    dataset.require_labels()  # before any row trains
    rows = select_rows(plan_rows(profile, dataset.extras.get("reference_scores")), only)
    jobs = plan_jobs(rows, seeds)
    if resume:
        store.check_data(dataset.fingerprint)
    else:
        store.begin({"profile": profile.to_json(), "seeds": seeds, "rows": list(only) if only else None,
                     "data": {"spec": profile.data, "fingerprint": dataset.fingerprint}})
    if executor == "local":  # training threads as on a Ray worker: the same seed gives the same numbers
        threads = set_tf_threads(profile.threads)
    else:
        threads = {"intra_op": profile.threads, "inter_op": 1, "applied": True}
    prepared = prepare_inputs(dataset, input_kinds(rows, profile))
    ctx = JobContext(profile, dataset, prepared, data_record(profile, dataset))

    results: dict[str, JobResult] = {}
    done = {job.key: r for job in jobs if resume and (r := store.load(job, len(dataset.test))) is not None}
    progress = GridProgress(jobs, profile.epochs, quiet)
    for job in jobs:
        if job.key in done:
            results[job.key] = done[job.key]
            progress.resumed(job, done[job.key])
    todo = [job for job in jobs if job.key not in done]
    progress.say(
        f"benchmark {profile.name}: {len(rows)} rows x {seeds} seed(s) = {len(jobs)} jobs"
        + (f" ({len(done)} done by the earlier run, {len(todo)} to run)" if resume else "")
        + f" on {dataset.source} (train {len(dataset.train)}, val {len(dataset.val)}, test {len(dataset.test)}), "
        f"{profile.epochs} epochs, batch {profile.batch_size}, executor {runner.name} -> {out_dir}"
    )
    # an optional peer that is not installed: its rows are skipped (not saved: a later --resume tries
    # again), unless the run named its rows (--rows), which then fail saying the same
    skipped = {} if only else {job.key: r for job in todo if (r := skipped_result(job)) is not None}
    for job in todo:
        if job.key in skipped:
            results[job.key] = skipped[job.key]
            progress.skipped(job, skipped[job.key])
    todo = [job for job in todo if job.key not in skipped]

    def on_result(job: Job, result: JobResult) -> None:
        store.save(job, result)
        results[job.key] = result
        progress.finished(job, result)

    t_grid = time.perf_counter()
    phases = {"data": t_grid - t0}  # where the wall time goes (the manifest and the last line say)
    runner.run(todo, ctx, progress, on_result)
    grid_seconds = time.perf_counter() - t_grid
    phases["grid"] = grid_seconds

    parallel = runner.name != "local" or runner.workers > 1  # the jobs' clocks disturbed each other
    per_seed = [finish_seed(profile, ctx, out_dir, seed, rows, [results[j.key] for j in jobs if j.seed == seed],
                            progress, train_time_alone=parallel, phases=phases) for seed in range(seeds)]
    header = {
        "profile": profile.to_json(),
        "seeds": list(range(seeds)),
        "machine": {**machine_info(), "tf_threads": threads},
        "library_versions": library_versions(),
        "git_commit": git_commit(),
        "data": {"spec": profile.data, "source": dataset.source, "fingerprint": dataset.fingerprint,
                 "n": {s: len(dataset.split(s)) for s in ("train", "val", "test")},
                 "issues": dict(dataset.issues)},
        "grid": {"executor": runner.name, "workers": runner.workers, "jobs": len(jobs), "resumed": len(done),
                 "grid_seconds": grid_seconds,
                 "job_seconds": sum(results[j.key].seconds for j in todo),
                 "retried": progress.retries, "nodes": progress.nodes,  # Ray: why jobs ran again, where each ran
                 "training_time": TRAIN_TIME_ALONE if parallel else TRAIN_TIME_IN_JOB},
        "wall_seconds": time.perf_counter() - t0,
        "phases_seconds": phases,
    }
    t_out = time.perf_counter()
    table = bench_report.aggregate(per_seed)
    scores = {(row, seed): p for seed in range(seeds) for row, p in _seed_scores(results, jobs, seed).items()}
    bench_report.write_outputs(out_dir, table, header, roc_curves(dataset, rows, scores), per_seed,
                               ids=dataset.test.ids, y=dataset.test.y, scores=scores)
    store.finish()
    phases["outputs"] = time.perf_counter() - t_out
    progress.say("phases: " + ", ".join(f"{name.replace('_', ' ')} {seconds:.0f} s" for name, seconds in phases.items()))
    all_ok = all(r.get("status") in ("ok", SKIPPED) for seed_rows in per_seed for r in seed_rows)
    grid = header["grid"]
    if grid["job_seconds"] > 0:
        progress.say(f"grid: {grid['grid_seconds'] / 60:.1f} min wall for {grid['job_seconds'] / 60:.1f} min of jobs "
                     f"(ratio {grid['grid_seconds'] / grid['job_seconds']:.2f}, executor {runner.name})")
    progress.say_retries()
    progress.say(f"benchmark done in {header['wall_seconds'] / 60:.1f} min: {out_dir / 'table.md'}")
    return out_dir, all_ok


def data_record(profile: Profile, dataset: Dataset) -> dict:
    """What a row's model directory records of its data (``condense export`` / ``evaluate``
    reload it from ``spec`` when no ``--data`` is given)."""

    return {"spec": profile.data, "resolved": resolve_data_spec(profile.data), "fingerprint": dataset.fingerprint}


def _seed_scores(results: dict[str, JobResult], jobs: list[Job], seed: int) -> dict[str, np.ndarray]:
    scores = {}
    for job in jobs:
        if job.seed == seed:
            result = results[job.key]
            scores.update({row: p for row, p in result.scores.items() if result.rows[row].get("status") == "ok"})
    return scores


def roc_curves(dataset: Dataset, rows: list[RowSpec], scores: dict) -> dict:
    """(y, score) per row of the first seed, for the ROC figure (records without a score left out)."""
    y = dataset.test.y
    curves = {}
    for spec in rows:
        p = scores.get((spec.row, 0))
        if p is not None:
            known = np.isfinite(p)
            curves[spec.row] = (y[known], p[known])
    return curves


#: How the training-time column was measured (said in the table's header).
TRAIN_TIME_IN_JOB = "in the job (one job at a time): the epochs' wall time, validation scoring excluded"
TRAIN_TIME_ALONE = ("by the driver after the grid (the jobs ran in parallel): epochs run x the architecture's "
                    "steady epoch time trained alone (median of 2 epochs after a warm-up; the unpruned "
                    "architecture for the epochs before pruning); peers and tfmot rows: in the job")


def finish_seed(profile: Profile, ctx: JobContext, out_dir: Path, seed: int, rows: list[RowSpec],
                results: list[JobResult], progress: GridProgress, *, train_time_alone: bool = False,
                phases: dict | None = None) -> list[dict]:
    """One seed's rows in table order, with the timings measured now and the paired differences
    (``phases``: seconds per step, added up over the seeds)."""
    phases = {} if phases is None else phases
    by_row = {row: dict(fields) for result in results for row, fields in result.rows.items()}
    scores = {row: p for result in results for row, p in result.scores.items()}
    table = SeedTable(profile, ctx, out_dir, seed, by_row, scores, progress)
    steps = ([("training_alone", table.measure_training_alone)] if train_time_alone else []) + [
        ("latency", table.measure_timings), ("differences", table.add_differences), ("differences", table.add_file_ratios)]
    for name, step in steps:
        t0 = time.perf_counter()
        step(rows)
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
    return [table.results[s.row] for s in rows]


class SeedTable:
    """The rows of one seed after the grid: timings, paired differences, ratios."""

    def __init__(self, profile: Profile, ctx: JobContext, out_dir: Path, seed: int, results: dict[str, dict],
                 scores: dict[str, np.ndarray], progress: GridProgress):
        self.profile, self.ctx, self.out_dir, self.seed = profile, ctx, out_dir, seed
        self.results, self.scores, self.progress = results, scores, progress

    @property
    def y_test(self) -> np.ndarray:
        return self.ctx.dataset.test.y

    def _ok(self, row: str) -> bool:
        return self.results.get(row, {}).get("status") == "ok"

    def measure_timings(self, rows: list[RowSpec]) -> None:
        """Keras latency of every trained model (1 thread, one child process for all), the latency of every
        peer on hand-made features (``peer_latency_us_*``, this process), LiteRT batched time of
        every file, then batch-1 LiteRT latency of every file in interleaved rounds: one pass,
        nothing else running, so the ratios between rows are comparable."""

        timed = [s for s in rows if self._ok(s.row)]
        self.progress.say(f"seed {self.seed}: timing {len(timed)} row(s) (Keras and LiteRT, one thread)")
        trained = {s.row: (self.out_dir / self.results[s.row]["model_dir"] / KERAS_FILE,
                           self.ctx.arrays(self.results[s.row]["input_kind"])["test"][:1])
                   for s in timed if s.kind == "train"}
        keras_lat = measure.keras_latencies(trained, num_threads=1, warmup=self.profile.latency_warmup,
                                            repeats=self.profile.latency_repeats) if trained else {}
        files = {}
        for spec in timed:
            res = self.results[spec.row]
            try:
                if spec.kind == "train":
                    lat = keras_lat[spec.row]
                    if "error" in lat:
                        raise RuntimeError(f"Keras latency: {lat['error']}")
                    res.update(keras_latency_us_median=lat["median_us"], keras_latency_us_p95=lat["p95_us"])
                elif spec.kind == "peer":
                    lat = self._peer_latency(res)
                    res.update(peer_latency_us_median=lat["median_us"], peer_latency_us_p95=lat["p95_us"])
                if res.get("tflite_file"):
                    path = self.out_dir / res["tflite_file"]
                    x_test = self.ctx.arrays(res["latency_input"])["test"]
                    t0 = time.perf_counter()
                    open_tflite(path).predict(x_test)
                    res["litert_batch_us"] = (time.perf_counter() - t0) / len(x_test) * 1e6
                    files[spec.row] = (path, x_test[:1])
            except Exception as exc:  # noqa: BLE001 - the row is reported failed, the table is written
                res.update(status="failed", error=f"timing: {error_text(exc)}")
                self.progress.say(f"  {spec.row} (seed {self.seed}) FAILED: {res['error']}")
        if not files:
            return
        lat = measure.tflite_latency_interleaved(files, num_threads=1, warmup=self.profile.latency_warmup,
                                                 repeats=self.profile.latency_repeats)
        for row, result in lat.items():
            self.results[row].update(litert_latency_us_median=result["median_us"],
                                     litert_latency_us_p95=result["p95_us"])

    def measure_training_alone(self, rows: list[RowSpec]) -> None:
        """``train_seconds`` of every trained Keras row re-measured with nothing else running (see
        :data:`TRAIN_TIME_ALONE`); the job's own figure stays as ``train_seconds_in_grid``. Converted
        rows take their source's."""

        trained = [s for s in rows if s.kind == "train" and self._ok(s.row) and self.results[s.row].get("model_dir")]
        by_kind: dict[str, list[RowSpec]] = {}
        for spec in trained:
            by_kind.setdefault(self.results[spec.row]["input_kind"], []).append(spec)
        for kind, specs in by_kind.items():
            # one timing per architecture (family, hidden form, parameter count): a pruned row's epochs
            # before pruning trained its baseline's architecture, a distilled row its undistilled twin's
            items, index, slots = [], {}, {}
            for spec in specs:
                res = self.results[spec.row]
                model_dir = self.out_dir / res["model_dir"]
                config = load_manifest(model_dir)["config"]
                arch = (config["model"], config.get("hlstm_hidden"))
                wanted = [((*arch, res["params"]), {"model_path": str(model_dir / KERAS_FILE)})]
                if res.get("prune"):
                    wanted.append(((*arch, res["prune"]["params_before"]), {"config": config}))
                slots[spec.row] = []
                for key, item in wanted:
                    if key not in index:
                        index[key] = len(items)
                        items.append(item)
                    slots[spec.row].append(index[key])
            arrays = self.ctx.arrays(kind)
            self.progress.say(f"seed {self.seed}: timing training epochs of {len(items)} architecture(s) alone "
                              f"({kind} input)")
            y = self.ctx.dataset.train.y.astype(np.float32)
            timed = keras_epoch_seconds(items, arrays["train"], y, arrays["val"],
                                        batch_size=self.profile.batch_size, num_threads=self.profile.threads)
            for spec in specs:
                res = self.results[spec.row]
                epochs = int(res.get("epochs_run") or 0)
                final = timed[slots[spec.row][0]]["median_s"]
                before = min(int(res["prune"]["after_epoch"]), epochs) if res.get("prune") else 0
                unpruned = timed[slots[spec.row][1]]["median_s"] if before else 0.0
                res["train_seconds_in_grid"] = res.get("train_seconds")
                res["train_seconds"] = before * unpruned + (epochs - before) * final
                res["epoch_seconds_alone"] = final
        for spec in rows:  # converted files: their source model's training
            source = self.results.get(spec.source or "", {})
            if spec.kind == "convert" and self._ok(spec.row) and "train_seconds_in_grid" in source:
                self.results[spec.row]["train_seconds"] = source["train_seconds"]

    def _peer_latency(self, res: dict) -> dict:
        """Batch-1 latency of a peer on hand-made features (LR, GBM), reloaded from its model
        directory: ``predict_proba`` on one preprocessed test sequence, features included, in this
        process (NumPy; LightGBM on one thread)."""

        model, _, _ = load_run(self.out_dir / res["model_dir"])
        x_one = self.ctx.arrays(res["input_kind"])["test"][:1]
        return measure_latency(model.predict_proba, x_one, warmup=self.profile.latency_warmup,
                               repeats=self.profile.latency_repeats)

    def add_differences(self, rows: list[RowSpec]) -> None:
        """Paired bootstrap AUROC differences: vs the row's baseline, and vs the feature peers (the
        logistic regression, gradient boosting).

        The second is the honest test on real data: a deep row is worth deploying only if it beats
        the peers a careful practitioner would otherwise use, on the same patients.
        """
        paired = {s.row for s in rows if s.kind != "score" and self._ok(s.row) and s.row in self.scores}
        for spec in rows:
            res = self.results[spec.row]
            if spec.row not in paired:
                continue
            for ref, prefix in ((spec.baseline, "auroc_diff"), *PAIRED_REFERENCES.items()):
                if ref and ref != spec.row and ref in paired:
                    res.update(self._paired_diff(ref, spec.row, prefix))
            base = self.results.get(spec.baseline or "", {})
            if base.get("status") == "ok" and res.get("train_seconds") and base.get("train_seconds") \
                    and spec.kind in ("train", "tfmot"):
                res["train_ratio"] = res["train_seconds"] / base["train_seconds"]

    def add_file_ratios(self, rows: list[RowSpec]) -> None:
        """``latency_ratio``: LiteRT batch-1 latency / the baseline LSTM's float32 file's;
        ``file_ratio``: file bytes / the float32 file of the same model (the source row's).
        A step file's latency is one step's: ``step_sequence_us`` is that times the hours, and
        ``step_latency_ratio`` one step / the same model's whole-sequence file of the same format."""
        reference = self.results.get(LATENCY_REFERENCE, {}).get("litert_latency_us_median")
        by_file = {(s.source or s.row, s.fmt or "float32", s.form): s.row for s in rows
                   if s.kind in ("train", "convert") and s.route == "auto"}
        for spec in rows:
            res = self.results[spec.row]
            if res.get("status") != "ok" or not res.get("tflite_bytes"):
                continue
            if reference and res.get("litert_latency_us_median"):
                res["latency_ratio"] = res["litert_latency_us_median"] / reference
            if spec.form == "step" and res.get("litert_latency_us_median"):
                steps = int(self.ctx.arrays(res["latency_input"])["test"].shape[1])
                res["step_sequence_us"] = res["litert_latency_us_median"] * steps
                sequence = self.results.get(by_file.get((spec.source, spec.fmt, "sequence"), ""), {})
                if sequence.get("litert_latency_us_median"):
                    res["step_latency_ratio"] = res["litert_latency_us_median"] / sequence["litert_latency_us_median"]
            own = self.results.get(spec.source or spec.row, {})
            if spec.kind in ("train", "convert") and own.get("status") == "ok" and own.get("tflite_bytes"):
                res["file_ratio"] = res["tflite_bytes"] / own["tflite_bytes"]

    def _paired_diff(self, reference: str, row: str, prefix: str) -> dict:
        d = paired_bootstrap_diff(self.y_test, self.scores[reference], self.scores[row], metric="auroc",
                                  n_resamples=self.profile.bootstrap_resamples, seed=self.seed)
        return {prefix: d["diff"], f"{prefix}_low": d["low"], f"{prefix}_high": d["high"]}
