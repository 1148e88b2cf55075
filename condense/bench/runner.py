"""``condense bench``: train, condense, export and measure every variant in one run.

The benchmark orchestrates and owns no math: models come from :mod:`condense.runs.workflow`
(the same code as ``condense train``), pruning from :mod:`condense.prune`, files from
:mod:`condense.export.convert`, timings and sizes from :mod:`condense.evaluate.measure`, statistics from
:mod:`condense.evaluate.metrics`, peers from :mod:`condense.peers`, and the outputs from
:mod:`condense.bench.report`.

Every row is trained/condensed/measured in the same run, on the same data, with the same seed.
A row that fails (a converter crash, a missing optional peer) is kept in the table with its
reason; the run goes on and the exit code says that something failed.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from condense.bench.profiles import Profile
from condense.checks import check_int
from condense.io import remove_stale_temp_files
from condense.bench.rows import LATENCY_REFERENCE, PAIRED_REFERENCE, RowSpec, plan_rows
from condense.data import Dataset, load_dataset

#: Test samples every .tflite file runs on TFLM (compared with LiteRT's outputs).
TFLM_SAMPLES = 16


class Progress:
    """Prints which row, which epoch, and an estimate of the time left (stderr)."""

    def __init__(self, rows: list[RowSpec], epochs: int, quiet: bool):
        self.quiet = quiet
        self.epochs = epochs
        self.total = sum(self.units(r) for r in rows)
        self.done = 0.0
        self.t0 = time.perf_counter()
        self.n_rows = len(rows)
        self.index = 0
        self.row = ""

    def units(self, spec: RowSpec) -> float:
        """A row's share of the work: its weight, times the epochs for rows that train per epoch."""
        return spec.weight * (self.epochs if spec.kind in ("train", "tfmot") else 1)

    def eta(self) -> str:
        if self.done <= 0:
            return "estimating"
        left = (time.perf_counter() - self.t0) / self.done * max(self.total - self.done, 0.0)
        return f"~{left / 60:.1f} min left"

    def start_row(self, spec: RowSpec) -> None:
        self.index += 1
        self.row = spec.row
        self.say(f"[{self.index}/{self.n_rows}] {spec.row}: {spec.method} ({self.eta()})")

    def advance(self, units: float) -> None:
        self.done += units

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


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
        import platform

        cpu = platform.processor() or cpu
    return {"cpu": cpu, "cores": os.cpu_count()}


class BenchRun:
    """One seed of a benchmark: trains and measures every row into ``out_dir``."""

    def __init__(self, profile: Profile, dataset: Dataset, out_dir: Path, seed: int, progress: Progress):
        self.profile = profile
        self.dataset = dataset
        self.out_dir = out_dir
        self.seed = seed
        self.progress = progress
        self.results: dict[str, dict] = {}
        self.p_test: dict[str, np.ndarray] = {}  # test-set probabilities of the model rows
        self.curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # (y, score) per row, for the ROC plot
        self.inputs: dict[str, object] = {}
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.tfmot_results: dict[str, dict] | None = None  # all tfmot peers run in one child session
        self.exported: dict[str, tuple[Path, dict] | Exception] = {}
        self.latency_inputs: dict[str, tuple[Path, np.ndarray]] = {}  # row -> (file, one sample), timed at the end

    # -- inputs --------------------------------------------------------------------------------
    def model_inputs(self, kind: str):
        """Fitted preprocessing and prepared arrays per input kind (shared by every row)."""
        if kind not in self.inputs:
            from condense.runs.workflow import fit_inputs, prepared_splits

            self.inputs[kind] = fit_inputs(self.dataset, kind)
            self.arrays[kind] = prepared_splits(self.dataset, self.inputs[kind])
        return self.inputs[kind], self.arrays[kind]

    @property
    def y_test(self) -> np.ndarray:
        return self.dataset.test.y

    # -- rows ----------------------------------------------------------------------------------
    def run(self, rows: list[RowSpec]) -> list[dict]:
        """Train every model row, convert every file in one child process, then measure."""
        trained = [s for s in rows if s.kind != "convert"]
        for spec in trained:
            self._guarded(spec, getattr(self, f"_run_{spec.kind}"))
        self._export_all(rows)
        for spec in rows:
            if spec.kind == "train" and self.results[spec.row]["status"] == "ok":
                self._guarded(spec, self._measure_trained, announce=False)
            elif spec.kind == "convert":
                self._guarded(spec, self._run_convert)
        self._measure_litert_latencies()
        self._add_differences(rows)
        self._add_file_ratios(rows)
        return [self.results[s.row] for s in rows]

    def _guarded(self, spec: RowSpec, step, announce: bool = True) -> None:
        """Run one step of a row; a failure is recorded in the row and the run goes on."""
        if announce:
            self.progress.start_row(spec)
        t0 = time.perf_counter()
        result = self.results.get(spec.row, {})
        try:
            result.update(step(spec))
            result["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 - a failing row is reported, the run goes on
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            self.progress.say(f"  {spec.row} FAILED: {detail}")
            if os.environ.get("CONDENSE_DEBUG"):
                traceback.print_exc()
            result.update(status="failed", error=detail)
        result.update(row=spec.row, model=spec.model, method=spec.method, family=spec.family,
                      baseline=spec.baseline or "", seed=self.seed,
                      row_seconds=result.get("row_seconds", 0.0) + time.perf_counter() - t0)
        self.results[spec.row] = result

    def _train_config(self, spec: RowSpec):
        return train_config(self.profile, spec, self.seed)

    def _on_epoch(self, spec: RowSpec, epochs: int):
        def report(epoch, seconds, loss, val_auroc):
            self.progress.advance(spec.weight)
            self.progress.say(
                f"  {spec.row} epoch {epoch}/{epochs}: {seconds:.1f} s, loss {loss:.4f}, "
                f"val AUROC {val_auroc:.4f} ({self.progress.eta()})"
            )

        return report

    def _data_record(self) -> dict:
        """What a row's model directory records of its data (``condense export`` / ``evaluate``
        reload it from ``spec`` when no ``--data`` is given)."""
        from condense.runs.workflow import resolve_data_spec

        return {"spec": self.profile.data, "resolved": resolve_data_spec(self.profile.data),
                "fingerprint": self.dataset.fingerprint}

    def _model_dir(self, row: str) -> Path:
        return self.out_dir / "models" / f"seed{self.seed}" / row

    def _run_train(self, spec: RowSpec) -> dict:
        from condense.evaluate import measure
        from condense.runs.model_dir import KERAS_FILE, save_run
        from condense.runs.workflow import train_on_dataset

        config = self._train_config(spec)
        model, inputs, record = train_on_dataset(
            config, self.dataset, verbose=0, on_epoch=self._on_epoch(spec, config.epochs)
        )
        model_dir = self._model_dir(spec.row)
        self.p_test[spec.row] = record.pop("p_test")
        save_run(model_dir, model=model, inputs=inputs, manifest={**record, "data": self._data_record()})
        result = self._metrics(spec, self.p_test[spec.row])
        result.update(
            params=record["params"], keras_bytes=measure.file_bytes(model_dir / KERAS_FILE),
            train_seconds=record["train_seconds"], epochs_run=len(record["epoch_seconds"]),
            model_dir=str(model_dir), prune=record.get("prune"), input_kind=config.input_kind,
        )
        return result

    def _export_all(self, rows: list[RowSpec]) -> None:
        """Convert every file the table needs in one child process (TensorFlow starts once).

        Every job gets the row's first training inputs: int8 calibrates on them, and recurrent
        models are checked on them before ``Masking`` is dropped. Export is all or nothing per
        child, so when the batch fails each job is retried on its own: the one that crashes is
        recorded against its row, the others still convert.
        """
        from condense.export.convert import ExportJob, export_tflite_many
        from condense.io import sha256_file
        from condense.runs.model_dir import KERAS_FILE, record_file, tflite_file

        jobs: dict[str, ExportJob] = {}
        for spec in rows:
            source = spec.row if spec.kind == "train" else spec.source
            fmt = "float32" if spec.kind == "train" else spec.fmt
            src = self.results.get(source or "", {})
            if spec.kind not in ("train", "convert") or src.get("status") != "ok":
                continue
            model_dir = Path(src["model_dir"])
            _, arrays = self.model_inputs(src["input_kind"])
            calibration = arrays["train"][: self.profile.calibration]
            name = tflite_file(fmt) if spec.route == "auto" else f"model.{spec.route}.{fmt}.tflite"
            jobs[spec.row] = ExportJob(model_dir / KERAS_FILE, model_dir / name, fmt, calibration_x=calibration,
                                       route=spec.route)
        if not jobs:
            return
        self.progress.say(f"converting {len(jobs)} .tflite file(s) in a child process")
        t0 = time.perf_counter()
        try:
            done = export_tflite_many(list(jobs.values()), details=True)
            self.exported = dict(zip(jobs, done))
        except Exception as batch_error:  # noqa: BLE001
            self.progress.say(f"  batch conversion failed ({batch_error}); converting one file at a time")
            for row, job in jobs.items():
                try:
                    self.exported[row] = export_tflite_many([job], details=True)[0]
                except Exception as exc:  # noqa: BLE001
                    self.exported[row] = exc
        for row, job in jobs.items():  # listed in the model directory's manifest, with their source's hash
            if row in self.exported and not isinstance(self.exported[row], Exception):
                out = Path(job.out_path)
                record_file(out.parent, out.name, source_sha256=sha256_file(job.model_path))
        self.progress.advance(sum(s.weight for s in rows if s.kind == "convert"))
        self.progress.say(f"  converted in {time.perf_counter() - t0:.0f} s")

    def _exported(self, row: str) -> tuple[Path, dict]:
        out = self.exported.get(row)
        if out is None:
            raise RuntimeError("no .tflite file was converted for this row")
        if isinstance(out, Exception):
            raise out
        return out

    def _measure_trained(self, spec: RowSpec) -> dict:
        """Keras latency (1 thread, child process), and the float32 file's measurements."""
        from condense.evaluate import measure
        from condense.runs.model_dir import KERAS_FILE

        result = self.results[spec.row]
        _, arrays = self.model_inputs(result["input_kind"])
        x_test = arrays["test"]
        lat = measure.keras_latency(Path(result["model_dir"]) / KERAS_FILE, x_test[:1], num_threads=1,
                                    warmup=self.profile.latency_warmup, repeats=self.profile.latency_repeats)
        out = {"keras_latency_us_median": lat["median_us"], "keras_latency_us_p95": lat["p95_us"]}
        tfl, info = self._exported(spec.row)
        out.update(self._file_measurements(spec.row, tfl, info, "float32", x_test, self.p_test[spec.row])[0])
        return out

    def _run_convert(self, spec: RowSpec) -> dict:
        source = self.results.get(spec.source, {})
        if source.get("status") != "ok":
            raise RuntimeError(f"source row {spec.source!r} did not train")
        path, info = self._exported(spec.row)
        _, arrays = self.model_inputs(source["input_kind"])
        measured, p = self._file_measurements(spec.row, path, info, spec.fmt, arrays["test"],
                                               self.p_test[spec.source])
        self.p_test[spec.row] = p
        result = self._metrics(spec, p)
        result.update(measured, params=source["params"], train_seconds=source["train_seconds"])
        return result

    def _file_measurements(self, row: str, path: Path, info: dict, fmt: str, x_test: np.ndarray,
                           p_keras: np.ndarray) -> tuple[dict, np.ndarray]:
        """Everything measured on one .tflite file: size, route, parity with Keras on the whole
        test split, batched LiteRT time, ties among the probabilities, TFLM (its batch-1 latency
        is measured with every other file at the end of the run)."""
        from condense.evaluate import measure
        from condense.export.convert import TFLiteModel

        runner = TFLiteModel(path)
        t0 = time.perf_counter()
        p = np.asarray(runner.predict(x_test), dtype=np.float64).reshape(-1)
        batch_us = (time.perf_counter() - t0) / len(x_test) * 1e6
        out = {
            "tflite_format": fmt, "tflite_bytes": measure.file_bytes(path), "deploy_bytes": measure.file_bytes(path),
            "route": info.get("route", ""), "cell_state_max_abs": info.get("cell_state_max_abs"),
            "parity_max_abs": float(np.max(np.abs(p - p_keras))), "litert_batch_us": batch_us,
            "p_ties": int(len(p) - len(np.unique(p))),
        }
        self.latency_inputs[row] = (path, x_test[:1])
        out.update(self._micro(path, x_test[:TFLM_SAMPLES], p[:TFLM_SAMPLES]))
        return out, p

    def _micro(self, path: Path, x: np.ndarray, p_litert: np.ndarray) -> dict:
        """TFLM arena and agreement with LiteRT, or why the file cannot run there."""
        from condense.export import micro

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

    def _run_tfmot(self, spec: RowSpec) -> dict:
        from condense.evaluate import measure

        if self.tfmot_results is None:
            self.tfmot_results = self._run_all_tfmot()
        peer = self.tfmot_results.get(spec.train["peer"])
        self.progress.advance(self.progress.units(spec))
        if peer is None or peer.get("status") != "ok":
            raise RuntimeError((peer or {}).get("error", "peer did not run"))
        p = np.asarray(peer.get("p_test_tflite") or peer["p_test"], dtype=np.float64)
        self.p_test[spec.row] = p
        result = self._metrics(spec, p)
        result.update(
            params=peer["params"], nonzero_params=peer.get("nonzero_params"),
            tflite_format="int8" if spec.train["peer"].startswith("qat") else "float32",
            tflite_bytes=peer.get("tflite_bytes"), tflite_gzip_bytes=peer.get("tflite_gzip_bytes"),
            deploy_bytes=peer.get("tflite_bytes"), train_seconds=peer.get("train_seconds"),
            epochs_run=len(peer.get("epoch_seconds") or []),
        )
        if peer.get("tflite_path"):
            kind = "features" if spec.family == "dnn" else "sequence"
            _, arrays = self.model_inputs(kind)
            self.latency_inputs[spec.row] = (peer["tflite_path"], arrays["test"][:1])
            result["tflite_gzip_bytes"] = measure.gzip_bytes(peer["tflite_path"])
        return result

    def _run_all_tfmot(self) -> dict:
        from condense.peers.tfmot_bridge import run_tfmot_peers

        _, seq = self.model_inputs("sequence")
        _, feat = self.model_inputs("features")
        arrays = {f"seq_{k}": v for k, v in seq.items()} | {f"feat_{k}": v for k, v in feat.items()}
        arrays |= {f"y_{k}": self.dataset.split(k).y for k in ("train", "val", "test")}
        self.progress.say("  tfmot peers: training in a child process (tf_keras)")
        results = run_tfmot_peers(
            arrays, self._model_dir("tfmot"),
            epochs=self.profile.epochs, batch_size=self.profile.batch_size, seed=self.seed,
            select=self.profile.select, patience=self.profile.patience, quiet=self.progress.quiet,
        )
        return {r["peer"]: r for r in results}

    def _run_lr(self, spec: RowSpec) -> dict:
        from condense.evaluate import measure
        from condense.runs.model_dir import LR_FILE, save_run
        from condense.runs.workflow import train_on_dataset

        config = self._train_config(spec)
        model, inputs, record = train_on_dataset(config, self.dataset, verbose=0)
        self.progress.advance(self.progress.units(spec))
        model_dir = self._model_dir(spec.row)
        self.p_test[spec.row] = record.pop("p_test")
        save_run(model_dir, model=model, inputs=inputs, manifest={**record, "data": self._data_record()})
        result = self._metrics(spec, self.p_test[spec.row])
        result.update(params=record["params"], train_seconds=record["train_seconds"],
                      deploy_bytes=measure.file_bytes(model_dir / LR_FILE), model_dir=str(model_dir))
        return result

    # -- measurements --------------------------------------------------------------------------
    def _run_score(self, spec: RowSpec) -> dict:
        """A reference score shipped with the data, scored on the test records that have one."""
        column = spec.train["score"]
        score = np.asarray(self.dataset.extras[column]["test"], dtype=np.float64)
        known = np.isfinite(score)
        if not known.any():
            raise RuntimeError(f"no test record has a {spec.model} score")
        self.progress.advance(self.progress.units(spec))
        return self._metrics(spec, score[known], y=self.y_test[known], probabilities=False)

    def _metrics(self, spec: RowSpec, p: np.ndarray, y: np.ndarray | None = None, probabilities: bool = True) -> dict:
        from condense.evaluate.metrics import summarize

        y = self.y_test if y is None else y
        self.curves[spec.row] = (y, p)
        s = summarize(y, p, n_resamples=self.profile.bootstrap_resamples, seed=self.seed, probabilities=probabilities)
        return {"auroc": s["auroc"], "auroc_low": s["auroc_ci"][0], "auroc_high": s["auroc_ci"][1],
                "auprc": s["auprc"], "brier": s["brier"], "n_test": s["n"]}

    def _measure_litert_latencies(self) -> None:
        """Batch-1 LiteRT latency of every file of the run, in interleaved rounds (one pass at the
        end, nothing else running): the ratios between files are what the table compares."""
        from condense.evaluate import measure

        files = {row: item for row, item in self.latency_inputs.items() if self.results[row].get("status") == "ok"}
        if not files:
            return
        self.progress.say(f"timing {len(files)} .tflite file(s) in interleaved rounds")
        lat = measure.tflite_latency_interleaved(files, num_threads=1, warmup=self.profile.latency_warmup,
                                                 repeats=self.profile.latency_repeats)
        for row, result in lat.items():
            self.results[row].update(litert_latency_us_median=result["median_us"], litert_latency_us_p95=result["p95_us"])

    def _add_differences(self, rows: list[RowSpec]) -> None:
        """Paired bootstrap AUROC differences: vs the row's baseline, and vs the logistic regression.

        The second is the honest test on real data: a deep row is worth deploying only if it beats
        the LR peer on the same patients.
        """
        for spec in rows:
            res = self.results[spec.row]
            if res.get("status") != "ok" or spec.row not in self.p_test:
                continue
            for ref, prefix in ((spec.baseline, "auroc_diff"), (PAIRED_REFERENCE, "auroc_diff_lr")):
                base = self.results.get(ref or "")
                if ref == spec.row or not base or base.get("status") != "ok" or ref not in self.p_test:
                    continue
                res.update(self._paired_diff(ref, spec.row, prefix))
            base = self.results.get(spec.baseline or "", {})
            if base.get("status") == "ok" and res.get("train_seconds") and base.get("train_seconds") \
                    and spec.kind in ("train", "tfmot"):
                res["train_ratio"] = res["train_seconds"] / base["train_seconds"]

    def _add_file_ratios(self, rows: list[RowSpec]) -> None:
        """``latency_ratio``: LiteRT batch-1 latency / the baseline LSTM's float32 file's;
        ``file_ratio``: file bytes / the float32 file of the same model (the source row's)."""
        reference = self.results.get(LATENCY_REFERENCE, {}).get("litert_latency_us_median")
        for spec in rows:
            res = self.results[spec.row]
            if res.get("status") != "ok" or not res.get("tflite_bytes"):
                continue
            if reference and res.get("litert_latency_us_median"):
                res["latency_ratio"] = res["litert_latency_us_median"] / reference
            own = self.results.get(spec.source or spec.row, {})
            if spec.kind in ("train", "convert") and own.get("status") == "ok" and own.get("tflite_bytes"):
                res["file_ratio"] = res["tflite_bytes"] / own["tflite_bytes"]

    def _paired_diff(self, reference: str, row: str, prefix: str) -> dict:
        from condense.evaluate.metrics import paired_bootstrap_diff

        d = paired_bootstrap_diff(self.y_test, self.p_test[reference], self.p_test[row], metric="auroc",
                                  n_resamples=self.profile.bootstrap_resamples, seed=self.seed)
        return {prefix: d["diff"], f"{prefix}_low": d["low"], f"{prefix}_high": d["high"]}


def train_config(profile: Profile, spec: RowSpec, seed: int):
    """The :class:`~condense.train.TrainConfig` of a ``"train"`` row (validated on construction)."""
    from condense.train import TrainConfig

    return TrainConfig(epochs=profile.epochs, batch_size=profile.batch_size, seed=seed, select=profile.select,
                       patience=profile.patience, prune_after=profile.prune_after, **spec.train)


def run_benchmark(profile: Profile, *, out_dir, seeds: int = 1, cache_dir=None, quiet: bool = False,
                  only: list[str] | None = None) -> tuple[Path, bool]:
    """Run every row of ``profile`` for ``seeds`` seeds and write the outputs into ``out_dir``.

    Returns (out_dir, all_ok).
    """
    from condense.bench import report as bench_report
    from condense.runs.model_dir import git_commit, library_versions

    check_int("seeds", seeds, 1)
    for spec in plan_rows(profile):  # a bad setting fails here, before the data is read
        for seed in range(seeds):
            if spec.kind == "train":
                train_config(profile, spec, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # hidden temporary files that killed earlier runs left beside their results (models/seed*/<row>/)
    for folder in [out_dir.parent, *out_dir.parent.glob("*"), *out_dir.parent.glob("*/models/seed*/*")]:
        if folder.is_dir():
            remove_stale_temp_files(folder)
    t0 = time.perf_counter()
    dataset = load_dataset(profile.data, seed=0, cache_dir=cache_dir, quiet=quiet)
    dataset.require_labels()  # before any row trains
    rows = plan_rows(profile, dataset.extras.get("reference_scores"))
    if only:
        unknown = sorted(set(only) - {r.row for r in rows})
        if unknown:
            raise ValueError(f"unknown row(s) {unknown}; known: {[r.row for r in rows]}")
        rows = [r for r in rows if r.row in only]
    progress = Progress(rows * seeds, profile.epochs, quiet)
    progress.say(
        f"benchmark {profile.name}: {len(rows)} rows x {seeds} seed(s) on {dataset.source} "
        f"(train {len(dataset.train)}, val {len(dataset.val)}, test {len(dataset.test)}), "
        f"{profile.epochs} epochs, batch {profile.batch_size} -> {out_dir}"
    )
    per_seed: list[list[dict]] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for seed in range(seeds):
        run = BenchRun(profile, dataset, out_dir, seed, progress)
        per_seed.append(run.run(rows))
        if seed == 0:
            curves = dict(run.curves)
    header = {
        "profile": profile.to_json(),
        "seeds": list(range(seeds)),
        "machine": machine_info(),
        "library_versions": library_versions(),
        "git_commit": git_commit(),
        "data": {"spec": profile.data, "source": dataset.source, "fingerprint": dataset.fingerprint,
                 "n": {s: len(dataset.split(s)) for s in ("train", "val", "test")},
                 "issues": dict(dataset.issues)},
        "wall_seconds": time.perf_counter() - t0,
    }
    table = bench_report.aggregate(per_seed)
    bench_report.write_outputs(out_dir, table, header, curves, per_seed)
    all_ok = all(r.get("status") == "ok" for seed_rows in per_seed for r in seed_rows)
    progress.say(f"benchmark done in {header['wall_seconds'] / 60:.1f} min: {out_dir / 'table.md'}")
    return out_dir, all_ok
