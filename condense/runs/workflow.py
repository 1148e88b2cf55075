"""One model, end to end: data -> fitted inputs -> training -> metrics -> model directory.

``condense train`` and ``condense evaluate`` are thin wrappers around :func:`train_run` and
:func:`evaluate_run`; the benchmark calls the same functions, so a row of its table and a model
trained by hand from the README are produced by identical code.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from condense.calibrate import recalibrate
from condense.checks import invalid_argument
from condense.data import Dataset, load_dataset, load_records, resolve_data_spec
from condense.data.inputs import PREPROCESSING_FILE, fit_inputs, prepared_splits
from condense import distill
from condense.evaluate.measure import measure_latency, param_count
from condense.evaluate.metrics import auroc
from condense.evaluate.summary import summarize
from condense.export import micro
from condense.export.convert import ExportJob, export_tflite_many
from condense.export.litert_runner import open_tflite
from condense.export.metadata import file_metadata
from condense.io import atomic_write, read_json, sha256_file
from condense.peers.kinds import PEERS, fit_peer
from condense.runs.model_dir import KERAS_FILE, record_file, tflite_file
from condense.runs.scoring import SavedModel
from condense.train import PRUNABLE_MODELS, TrainConfig, fit, predict_proba
from condense.runs.model_dir import (
    check_output_dir, git_commit, library_versions, load_manifest, model_dir_lock, save_run,
)

#: Bootstrap settings of every reported interval (the benchmark's: 10,000 resamples).
BOOTSTRAP_RESAMPLES = 10_000


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def data_summary(dataset: Dataset, spec: str) -> dict:
    return {
        "spec": spec,
        "resolved": resolve_data_spec(spec),
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "layout": dataset.layout.name,
        "n": {name: len(dataset.split(name)) for name in ("train", "val", "test")},
        "deaths": {name: int(np.count_nonzero(dataset.split(name).y == 1)) for name in ("train", "val", "test")},
        "issues": dict(dataset.issues),
    }


def train_base_rate(data: dict) -> float | None:
    """The training split's death rate from a manifest's ``data`` entry (:func:`data_summary`); None for a
    manifest written before it recorded deaths. The challenge's event-1 threshold (no test label used)."""
    deaths, n = (data.get("deaths") or {}).get("train"), (data.get("n") or {}).get("train")
    return deaths / n if isinstance(deaths, int) and isinstance(n, int) and 0 < deaths < n else None


def score_metrics(y: np.ndarray, p: np.ndarray, seed: int, base_rate: float | None = None) -> dict:
    return summarize(y, p, n_resamples=BOOTSTRAP_RESAMPLES, seed=seed, base_rate=base_rate)


def train_on_dataset(config: TrainConfig, dataset: Dataset, *, verbose: int = 1, on_epoch=None, prepared=None,
                     log=None, score_test: bool = True):
    """Train one model on a loaded dataset; returns (model, inputs, record) without writing.

    ``record`` is the manifest body: config, params, timings, selection, pruning, metrics and
    the validation and test probabilities under ``"p_val"`` and ``"p_test"`` (dropped before writing
    the manifest).
    ``prepared``: ``(inputs, arrays)`` of :func:`fit_inputs` / :func:`prepared_splits` for the
    config's input kind, when the caller already made them (the benchmark prepares each kind once).
    ``log(message)`` reports the distillation teachers (:mod:`condense.distill`), if any.
    ``score_test=False`` leaves the test split untouched (no ``"test"`` metrics, no ``"p_test"``):
    what a tuning trial (:mod:`condense.tune`) needs, as its choices are made on validation only.
    """

    if prepared is None:
        inputs = fit_inputs(dataset, config.input_kind)
        x = prepared_splits(dataset, inputs)
    else:
        inputs, x = prepared
    y = {name: dataset.split(name).y for name in ("train", "val", "test")}
    record = {"model": config.model, "seed": config.seed, "protocol": config.protocol, "config": config.to_json()}
    if config.model in PEERS:  # a peer on hand-made features: fitted once (GBM: early stopping on val)
        model, seconds = fit_peer(config.model, config.seed, x["train"], y["train"], x["val"], y["val"],
                                  dataset.layout)
        record.update(model.training_record(seconds), prune=None)
        predict = model.predict_proba
    else:
        y_fit = y["train"]
        if config.distilled:  # the student learns from the labels mixed with its teachers' probabilities

            p_teacher, record["distillation"] = distill.teacher_probabilities(config, dataset, prepared=(inputs, x),
                                                                               log=log)
            y_fit = distill.distill_targets(y_fit, p_teacher, config.distill_alpha, config.distill_temperature)
        result = fit(config, x["train"], y_fit, x["val"], y["val"], verbose=verbose, on_epoch=on_epoch)
        model = result.model
        record.update(
            params=param_count(model), epoch_seconds=result.epoch_seconds, train_seconds=result.train_seconds,
            val_auroc_history=result.val_auroc, selected_epoch=result.selected_epoch,
            stopped_early=result.stopped_early, prune=result.prune, masking_in_training=result.masking,
        )
        if config.calibrate != "none":  # fitted on validation only, folded into the output layer
            record["calibration"] = recalibrate(model, x["val"], y["val"], config.calibrate)
        predict = lambda a: predict_proba(model, a)  # noqa: E731
    base_rate = dataset.train_death_rate
    p_val = predict(x["val"])
    record["metrics"] = {"val": score_metrics(y["val"], p_val, config.seed, base_rate)}
    record["p_val"] = p_val
    if score_test:
        p_test = predict(x["test"])
        record["metrics"]["test"] = score_metrics(y["test"], p_test, config.seed, base_rate)
        record["p_test"] = p_test
    return model, inputs, record


def train_run(*, data: str, out_dir, strict: bool = False, cache_dir=None, verbose: int = 1, quiet: bool | None = None,
              on_epoch=None, log=_stderr, **config_kwargs) -> dict:
    """Load ``data``, train the model ``config_kwargs`` describe and write ``out_dir``.

    ``verbose`` is Keras's progress output (1 bar, 2 a line per epoch, 0 none); ``quiet`` silences
    the data loading's (default: ``verbose == 0``); ``on_epoch(epoch, seconds, loss, val_auroc)``
    is called after every epoch. Returns the manifest that was written.
    """
    quiet = verbose == 0 if quiet is None else quiet
    check_output_dir(out_dir)  # a file there, a foreign folder, no write permission: before any work
    # A second writer of out_dir fails here, at once (before the configuration's Keras import).
    with model_dir_lock(out_dir):
        config = TrainConfig(**config_kwargs)  # validate arguments before the (slow) data load
        if config.distilled:
            distill.check_teacher_dirs(config, out_dir)
        dataset = load_dataset(data, seed=config.seed, strict=strict, cache_dir=cache_dir, quiet=quiet)
        dataset.require_labels()  # unlabelled records or a single-class split: refused before training
        log(f"data {dataset.source}: train {len(dataset.train)}, val {len(dataset.val)}, test {len(dataset.test)} "
            f"episodes; {_training_text(config)}")
        model, inputs, record = train_on_dataset(config, dataset, verbose=verbose, on_epoch=on_epoch, log=log)
        record.pop("p_test")
        record.pop("p_val")
        manifest = {
            **record,
            "git_commit": git_commit(),
            "data": data_summary(dataset, data),
            "library_versions": library_versions(),
        }
        save_run(out_dir, model=model, inputs=inputs, manifest=manifest)
        return load_manifest(out_dir)


def _training_text(config: TrainConfig) -> str:
    """What is about to be trained, and how (the protocol only where there are epochs)."""
    if config.model not in PRUNABLE_MODELS:
        return f"fitting {config.model}"
    stopping = "no early stopping" if config.patience is None else f"early stopping after {config.patience}"
    text = (f"training {config.model} for {config.epochs} epoch(s), batch {config.batch_size}, protocol "
            f"{config.protocol} ({config.select} epoch, {stopping})")
    if config.time_since_last:
        text += ", with time-since-last-observation channels"
    if config.distilled:
        folds = f"{config.teacher_folds}-fold out-of-fold" if config.teacher_folds else "in-sample"
        text += (f", distilled from {len(config.teachers)} teacher(s) (alpha {config.distill_alpha:g}, temperature "
                 f"{config.distill_temperature:g}, {folds} teacher predictions)")
    return text


def _training_data(manifest: dict, model_dir) -> tuple[str, str | None]:
    """(spec, fingerprint) of the data a model directory was trained on, as its manifest records
    them: the resolved spec where recorded (older manifests: the spec as typed)."""
    data = manifest.get("data")
    data = data if isinstance(data, dict) else {}
    spec = data.get("resolved") or data.get("spec")
    if not spec or not isinstance(spec, str):
        raise ValueError(f"{model_dir}/manifest.json does not record the data it was trained on: give the `data` argument")
    fingerprint = data.get("fingerprint")
    return spec, fingerprint if isinstance(fingerprint, str) and fingerprint else None


def _load_data_for(model_dir, manifest: dict, data: str | None, *, cache_dir, quiet: bool) -> tuple[str, Dataset]:
    """(spec, dataset): ``data`` as given, or the training data, checked to be the same cohort."""
    if data is not None:
        return data, load_dataset(data, seed=manifest["seed"], cache_dir=cache_dir, quiet=quiet)
    spec, fingerprint = _training_data(manifest, model_dir)
    dataset = load_dataset(spec, seed=manifest["seed"], cache_dir=cache_dir, quiet=quiet)
    if fingerprint and dataset.fingerprint != fingerprint:
        raise ValueError(
            f"the data at {spec} is not the cohort {model_dir} was trained on (fingerprint {dataset.fingerprint[:12]}… "
            f"now, {fingerprint[:12]}… at training): give `data` explicitly"
        )
    return spec, dataset


def evaluate_run(model_dir, *, data: str | None = None, fmt: str = "keras", cache_dir=None, quiet: bool = False,
                 form: str = "sequence") -> dict:
    """Reload a model directory and recompute its test metrics (same bootstrap seed as training)."""

    saved = SavedModel(model_dir, fmt, form=form)
    manifest = saved.manifest
    spec, dataset = _load_data_for(model_dir, manifest, data, cache_dir=cache_dir, quiet=quiet)
    if dataset.layout.to_json() != saved.inputs.layout.to_json():
        raise ValueError(
            f"data={spec!r} has channel layout {dataset.layout.name!r} ({dataset.layout.width} channels) "
            f"but {model_dir} was trained on {saved.inputs.layout.name!r} ({saved.inputs.layout.width} channels)"
        )
    if not dataset.test.has_labels:
        raise ValueError(f"data={spec!r}: the test split has no labels to evaluate against")
    p = saved.predict_raw(dataset.test.X)
    return {"format": fmt, "form": form, "label": saved.label, "model_dir": str(Path(model_dir)), "data": spec,
            "test": score_metrics(dataset.test.y, p, manifest["seed"], dataset.train_death_rate)}


def export_run(model_dir, fmt: str, *, calibration: int = 300, data: str | None = None, cache_dir=None,
               int8_io: bool = False, route: str = "auto", quiet: bool = False, verbose: bool = False,
               form: str = "sequence", dynamic_batch: bool = False, fold_normalizer: bool = True) -> dict:
    """Export a model directory to ``model.<fmt>.tflite`` and check it against the Keras model.

    The first ``calibration`` training samples (preprocessed with the model's saved state)
    calibrate int8 and are the data on which dropping ``Masking`` from a recurrent model is
    checked to be exact (see :mod:`condense.export.convert`). The file is then checked against Keras on
    the whole test split (LiteRT) and, when ``tflite-micro`` is installed, run on TensorFlow Lite
    for Microcontrollers (smallest arena, agreement with LiteRT). Returns sizes, the route and
    the parity numbers; records the file in the manifest, with the hash of the model.keras it
    came from. ``form="step"`` writes ``model.<fmt>.step.tflite``, one time step with the state as
    inputs and outputs (:mod:`condense.export.step_graph`), checked chained over the test sequences; a float32 step
    file has the normalizer folded into its first layer (it takes the continuous channels in their units) unless
    ``fold_normalizer=False``. ``quiet`` silences the data loading's progress; the converter's own output is
    shown only with ``verbose``. Holds the directory's lock (a retrain cannot replace it meanwhile).
    """

    if calibration < 1:
        raise invalid_argument("calibration", "an integer >= 1", calibration)
    load_manifest(model_dir)  # not a model directory: say so before taking its lock
    with model_dir_lock(model_dir, create=False):
        saved = SavedModel(model_dir, "keras")
        if saved.manifest.get("model") in PEERS:
            raise ValueError(f"{model_dir}: {PEERS[saved.manifest['model']].description} has no .tflite export")
        _, dataset = _load_data_for(model_dir, saved.manifest, data, cache_dir=cache_dir, quiet=quiet)
        x_train = saved.inputs.transform(dataset.train.X[:calibration])
        source = Path(model_dir) / KERAS_FILE
        source_sha256 = sha256_file(source)  # checked against the manifest by SavedModel; the lock keeps it
        folded = bool(fold_normalizer) and form == "step" and fmt == "float32"
        metadata = file_metadata(saved.manifest, read_json(Path(model_dir) / PREPROCESSING_FILE), fmt=fmt, form=form,
                                 steps=int(x_train.shape[1]) if x_train.ndim == 3 else None, normalizer_folded=folded)
        job = ExportJob(source, Path(model_dir) / tflite_file(fmt, form), fmt, calibration_x=x_train,
                        int8_io=int8_io, route=route, form=form, metadata=metadata, dynamic_batch=dynamic_batch,
                        normalizer=saved.inputs.folded_normalizer() if folded else None)
        path, info = export_tflite_many([job], quiet=not verbose, details=True)[0]
        try:
            record_file(model_dir, path.name, source_sha256=source_sha256)
        except OSError as exc:  # e.g. disk full: an unrecorded file would only read as stale later
            path.unlink(missing_ok=True)
            raise OSError(exc.errno, f"{exc.strerror} (the new {path.name} was removed, since the manifest could not "
                                     "record it; free space and export again)", exc.filename) from exc
    x_test = saved.inputs.transform(dataset.test.X)
    p_keras = saved.predict_inputs(x_test)
    runner = open_tflite(path)
    x_file = saved.inputs.transform(dataset.test.X, normalize=not folded)  # what the file takes
    p_tfl = np.asarray(runner.predict(x_file), dtype=np.float64).reshape(-1)
    report = {
        "path": str(path), "format": fmt, "form": form, "bytes": path.stat().st_size, "n": len(x_test),
        "route": info["route"], "ops": info["ops"], "masking": info["masking"], "normalizer_folded": folded,
        "cell_state_max_abs": info.get("cell_state_max_abs"), "warnings": info.get("warnings", []),
        "max_abs_diff": float(np.max(np.abs(p_tfl - p_keras))), "tied_probabilities": int(len(p_tfl) - len(np.unique(p_tfl))),
        "auroc_keras": auroc(dataset.test.y, p_keras), "auroc_tflite": auroc(dataset.test.y, p_tfl),
        "tflm": {"note": "not checked: tflite-micro is not installed"},
    }
    if form == "step":
        x_one = np.asarray(x_file[0, 0], np.float32)
        report["states"], report["steps"] = info["states"], int(x_test.shape[1])
        report["step_latency"] = measure_latency(lambda: runner.step(x_one))
        runner.start()
    if micro.available():
        n = min(MICRO_CHECK_SAMPLES, len(x_test))
        try:
            run = micro.run_micro(path, x_file[:n])
            report["tflm"] = {"arena_bytes": run["arena_bytes"], "n": n,
                              "max_abs_vs_litert": float(np.max(np.abs(run["outputs"][:, 0] - p_tfl[:n])))}
        except micro.MicroError as exc:
            report["tflm"] = {"note": f"cannot run: {exc}"}
    return report


#: Test samples ``export_run`` runs on TensorFlow Lite for Microcontrollers.
MICRO_CHECK_SAMPLES = 32


def predict_run(model_dir, *, data: str, out_csv, fmt: str = "keras", strict: bool = False, cache_dir=None,
                quiet: bool = False, form: str = "sequence") -> dict:
    """Score every record of ``data`` with a saved model; write ``id,probability[,label]`` rows.

    Preprocessing is the model's saved state, never refitted on ``data``. The ``label`` column is
    written when any record has a label (empty where unknown). Returns a summary: the number of
    records, how many carry a label, the input problems counted while reading, and, when the
    labelled records hold both classes, their metrics with intervals.
    """

    saved = SavedModel(model_dir, fmt, form=form)
    split, id_column, issues = load_records(data, source_state=saved.inputs.source, strict=strict,
                                            cache_dir=cache_dir, quiet=quiet)
    if split.X.shape[-1] != saved.inputs.layout.width:
        raise ValueError(
            f"data={data!r} has {split.X.shape[-1]} channels but {model_dir} expects "
            f"{saved.inputs.layout.width} ({saved.inputs.layout.name})"
        )
    p = saved.predict_raw(split.X)
    known = split.y >= 0
    label_column = bool(known.any())
    summary = {"n": len(split), "out": str(out_csv), "format": fmt, "scored_by": saved.label, "labelled": int(known.sum()),
               "issues": dict(issues), "metrics": None}
    y_known = split.y[known]
    if label_column and 0 < y_known.sum() < len(y_known):
        summary["metrics"] = score_metrics(y_known, p[known], saved.manifest["seed"],
                                           train_base_rate(saved.manifest.get("data") or {}))
    # everything is computed: only now is the CSV written (atomically: a crash leaves no file)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([id_column, "probability"] + (["label"] if label_column else []))
    for i in range(len(split)):
        label = [int(split.y[i]) if known[i] else ""] if label_column else []
        writer.writerow([split.ids[i], f"{p[i]:.6f}"] + label)
    atomic_write(out_csv, buf.getvalue())
    return summary
