"""Size and speed of a model: parameters, bytes on disk, compressed bytes, per-sample latency.

Sizes
-----
:func:`param_count` counts a Keras model's weights; :func:`file_bytes` is the size of a file as a
phone would store it; :func:`gzip_bytes` is its size after gzip (level 9). Use the gzip size for
models whose weights were only *zeroed* (magnitude pruning, e.g. the tfmot peers): their file
keeps its size, only a compressed download shrinks. Channel-pruned models are physically smaller
and need no such help.

Latency protocol (the same for Keras and LiteRT)
-------------------------------------------------
One sample (batch 1), one thread, ``warmup`` untimed calls, then ``repeats`` calls each timed
with :func:`time.perf_counter_ns`; the result is the median and the 95th percentile in
**microseconds per sample** (:func:`measure_latency`). What one call is:

- :func:`tflite_latency`: ``set_tensor`` + ``invoke`` + ``get_tensor`` of one prepared sample
  with a LiteRT ``Interpreter(num_threads=1)`` (XNNPACK on, LiteRT's default), i.e. what an
  app does per prediction, preceded by the reset of the LSTM state for files that keep one
  (fused LSTM ops). For files with int8 input the sample is quantized once, beforehand.
  :func:`tflite_latency_interleaved` times several files in interleaved rounds, so that their
  ratios survive a machine whose load changes (the benchmark uses it for every file of a run).
- :func:`keras_latency`: a ``tf.function`` around ``model(x, training=False)``, traced once for
  the batch-1 shape, called on a constant tensor and fetched to numpy. This is the fastest way
  TensorFlow runs one sample from Python. It is *not* ``model.predict`` (whose per-call data
  pipeline costs about a millisecond, more than the model) and not an eager call (much slower).

Threads for Keras: TensorFlow's intra-op and inter-op thread pools are process-wide and fixed
when its runtime initializes (``tf.config.threading`` raises after that). So
``keras_latency(path)`` (a ``.keras`` file) measures in a fresh child process whose pools are set
to ``num_threads`` before anything runs: a true one-thread number. ``keras_latency(model)`` (a
model in memory) measures in this process: it sets the pools to ``num_threads`` when TensorFlow
has not initialized yet and otherwise uses the process's pools; the result says which
(``intra_op_threads``: the setting in force, 0 meaning TensorFlow's default of one per core;
``process``: ``"child"`` or ``"this"``).
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from condense._child import child_main, child_result
from condense.export.litert_runner import TFLiteModel, open_tflite
from condense.export.step_runner import StepModel
from condense.io import work_folder

# Deferred on purpose: Keras, condense.layers and TensorFlow are imported inside the functions that use them,
# so importing this module stays light.

__all__ = [
    "param_count",
    "file_bytes",
    "gzip_bytes",
    "measure_latency",
    "keras_latency",
    "tflite_latency",
    "tflite_latency_interleaved",
]

#: Defaults of the latency protocol.
DEFAULT_WARMUP = 20
DEFAULT_REPEATS = 200


def param_count(model) -> int:
    """Number of parameters of a Keras model: trainable plus non-trainable weights."""
    weights = getattr(model, "weights", None)
    if weights is None:
        raise ValueError(f"param_count needs a Keras model, got {type(model).__name__}")
    return int(sum(int(np.prod(w.shape)) for w in weights))


def file_bytes(path) -> int:
    """Size of the file at ``path`` in bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"File not found: {path}")
    return path.stat().st_size


def gzip_bytes(path, *, level: int = 9) -> int:
    """Size in bytes of the file at ``path`` after gzip compression (in memory; level 9, no
    time stamp, so the number is reproducible)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"File not found: {path}")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"Argument `level` must be an integer in 0..9, got level={level!r}.")
    return len(gzip.compress(path.read_bytes(), compresslevel=level, mtime=0))


def _check_counts(warmup, repeats) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"Argument `warmup` must be a non-negative integer, got warmup={warmup!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"Argument `repeats` must be a positive integer, got repeats={repeats!r}.")


def measure_latency(
    predict_one: Callable, sample=None, *, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS
) -> dict:
    """Time ``predict_one(sample)`` (or ``predict_one()`` when ``sample`` is None).

    Args:
        predict_one: The call to time; it must do the whole per-sample work (including
            fetching the result).
        sample: Its argument, prepared beforehand.
        warmup: Untimed calls first (tracing, allocation, caches). Default 20.
        repeats: Timed calls. Default 200.

    Returns:
        ``{"median_us", "p95_us", "mean_us", "min_us", "repeats"}``: microseconds per call.
    """
    if not callable(predict_one):
        raise ValueError(f"Argument `predict_one` must be callable, got {type(predict_one).__name__}.")
    _check_counts(warmup, repeats)
    call = predict_one if sample is None else (lambda: predict_one(sample))
    for _ in range(warmup):
        call()
    times = np.empty(repeats, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(repeats):
        start = clock()
        call()
        times[i] = clock() - start
    times /= 1e3
    return {
        "median_us": float(np.median(times)),
        "p95_us": float(np.percentile(times, 95)),
        "mean_us": float(times.mean()),
        "min_us": float(times.min()),
        "repeats": int(repeats),
    }


def _one_sample(x_one, sample_shape: tuple | None = None) -> np.ndarray:
    x = np.asarray(x_one, dtype=np.float32)
    if sample_shape is not None and x.shape == tuple(sample_shape):
        x = x[None, ...]
    if x.ndim < 2 or x.shape[0] != 1:
        raise ValueError(f"Latency is measured on one sample: expected shape (1, ...), got {x.shape}")
    return np.ascontiguousarray(x)


def tflite_latency(
    path, x_one, *, num_threads: int = 1, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS
) -> dict:
    """LiteRT latency of the ``.tflite`` file ``path`` for one sample, in microseconds.

    Args:
        path: A ``.tflite`` file.
        x_one: One preprocessed sample, shape ``(1, *sample_shape)`` or ``sample_shape``.
        num_threads: Interpreter threads. Default 1.
        warmup, repeats: See :func:`measure_latency`.

    Returns:
        :func:`measure_latency`'s dict plus ``"num_threads"``.
    """

    _check_counts(warmup, repeats)
    runner = TFLiteModel(path, num_threads=num_threads)
    call = runner.single_sample_call(x_one)
    return {**measure_latency(call, warmup=warmup, repeats=repeats), "num_threads": num_threads}


def _single_call(path, x_one, num_threads: int):
    """One prediction of a whole-sequence file, or one hour of a step file (the last hour of
    ``x_one``, the state carried from call to call as an app does)."""

    runner = open_tflite(path, num_threads=num_threads)
    if isinstance(runner, StepModel):
        return runner.single_step_call(np.asarray(x_one).reshape(-1, runner.features)[-1])
    return runner.single_sample_call(x_one)


def tflite_latency_interleaved(
    files: dict, *, num_threads: int = 1, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
    block: int = 10,
) -> dict:
    """LiteRT latency of several ``.tflite`` files measured in **interleaved rounds**: every round
    times ``block`` calls of each file in turn (the order rotating per round), until each file
    has ``repeats`` timed calls. A machine whose load drifts during the measurement then slows
    every file alike, so the *ratios* between files stay comparable (measured one after the
    other, a file timed during a busy minute looks slower than it is).

    Args:
        files: ``{key: (path, x_one)}``: each file and one sample for it.
        num_threads, warmup, repeats: as in :func:`tflite_latency` (``warmup`` calls per file
            before the first round).
        block: calls per file per round.

    Returns:
        ``{key: measure_latency's dict + "num_threads"}``.
    """
    _check_counts(warmup, repeats)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"Argument `block` must be a positive integer, got block={block!r}.")
    keys = list(files)
    calls = {key: _single_call(path, x_one, num_threads) for key, (path, x_one) in files.items()}
    for key in keys:
        for _ in range(warmup):
            calls[key]()
    times = {key: [] for key in keys}
    clock = time.perf_counter_ns
    rounds = -(-repeats // block)
    for r in range(rounds):
        n = min(block, repeats - r * block)
        for key in keys[r % len(keys):] + keys[:r % len(keys)] if keys else []:
            call, sink = calls[key], times[key]
            for _ in range(n):
                start = clock()
                call()
                sink.append(clock() - start)
    out = {}
    for key in keys:
        us = np.asarray(times[key], dtype=np.float64) / 1e3
        out[key] = {"median_us": float(np.median(us)), "p95_us": float(np.percentile(us, 95)),
                    "mean_us": float(us.mean()), "min_us": float(us.min()), "repeats": int(len(us)),
                    "num_threads": num_threads}
    return out


def keras_latency(
    model, x_one, *, num_threads: int = 1, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
    timeout: float = 900.0,
) -> dict:
    """Keras (TensorFlow) latency of one sample, in microseconds, measured as the module
    docstring describes (a traced ``tf.function`` call, not ``model.predict``).

    Args:
        model: A ``keras.Model`` (measured in this process) or the path of a ``.keras`` file
            (measured in a child process with exactly ``num_threads`` TensorFlow threads).
        x_one: One preprocessed sample, shape ``(1, *sample_shape)`` or ``sample_shape``.
        num_threads: TensorFlow intra-op threads (inter-op: 1). Default 1.
        warmup, repeats: See :func:`measure_latency`.
        timeout: Seconds the child process may take (``.keras`` path only).

    Returns:
        :func:`measure_latency`'s dict plus ``"intra_op_threads"`` (the setting in force; 0 is
        TensorFlow's default, one thread per core) and ``"process"`` (``"child"`` or ``"this"``).
    """
    _check_counts(warmup, repeats)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"Argument `num_threads` must be a positive integer, got num_threads={num_threads!r}.")
    if isinstance(model, (str, os.PathLike)):
        return _keras_latency_in_child(Path(model), x_one, num_threads, warmup, repeats, timeout)
    return {**_keras_latency_here(model, x_one, num_threads, warmup, repeats), "process": "this"}


def _keras_latency_here(model, x_one, num_threads: int, warmup: int, repeats: int) -> dict:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is already initialized: its pools stay as they are
        pass
    sample_shape = tuple(int(d) for d in model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    x = tf.constant(_one_sample(x_one, sample_shape))
    forward = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def call():
        return forward(x).numpy()

    result = measure_latency(call, warmup=max(warmup, 1), repeats=repeats)
    result["intra_op_threads"] = int(tf.config.threading.get_intra_op_parallelism_threads())
    return result


def _keras_latency_in_child(path: Path, x_one, num_threads: int, warmup: int, repeats: int, timeout: float) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Keras model not found: {path}")
    x = _one_sample(x_one)
    with work_folder("latency") as work:
        np.save(Path(work) / "sample.npy", x)
        request = {"model_path": str(path.resolve()), "sample": str(Path(work) / "sample.npy"),
                   "num_threads": num_threads, "warmup": warmup, "repeats": repeats}
        return child_result("condense.evaluate.measure", request, what=f"Measuring the Keras latency of {path}",
                            timeout=timeout, work=work)


def keras_latencies(models: dict, *, num_threads: int = 1, warmup: int = DEFAULT_WARMUP,
                    repeats: int = DEFAULT_REPEATS, timeout: float = 1800.0) -> dict[str, dict]:
    """:func:`keras_latency` of several ``.keras`` files in one child process (TensorFlow starts
    once, its pools set before any op): ``models`` maps a name to ``(path, x_one)``. Returns per
    name :func:`keras_latency`'s dict, or ``{"error": message}`` for a model that failed."""
    _check_counts(warmup, repeats)
    with work_folder("latency") as work:
        entries = []
        for k, (name, (path, x_one)) in enumerate(models.items()):
            if not Path(path).is_file():
                raise FileNotFoundError(f"Keras model not found: {path}")
            sample = Path(work) / f"sample{k}.npy"
            np.save(sample, _one_sample(x_one))
            entries.append({"name": str(name), "model_path": str(Path(path).resolve()), "sample": str(sample)})
        request = {"task": "latencies", "models": entries, "num_threads": int(num_threads), "warmup": int(warmup),
                   "repeats": int(repeats)}
        return child_result("condense.evaluate.measure", request, what=f"Measuring the Keras latency of "
                            f"{len(entries)} model(s)", timeout=timeout, work=work)["models"]


def _latencies_child(request: dict) -> dict:
    """Keras latency of each model of the request, one after the other (:func:`keras_latencies`)."""
    import keras

    out = {}
    for entry in request["models"]:
        try:
            model = keras.saving.load_model(entry["model_path"], safe_mode=True, compile=False)
            out[entry["name"]] = {**_keras_latency_here(model, np.load(entry["sample"]), int(request["num_threads"]),
                                                        int(request["warmup"]), int(request["repeats"])),
                                  "process": "child"}
        except Exception as exc:  # noqa: BLE001 - one model's failure is its row's, not the others'
            out[entry["name"]] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        keras.backend.clear_session()
    return {"models": out}


def _keras_latency_child(request: dict) -> dict:
    """The child's handler (``python -m condense.evaluate.measure REQUEST.json``): Keras latency
    in a fresh process, its thread pools set before any op runs (``"task": "latencies"``: several
    models, :func:`keras_latencies`)."""
    import tensorflow as tf

    # Before any op runs: this is what makes the number a true `num_threads` number.
    tf.config.threading.set_intra_op_parallelism_threads(int(request["num_threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

    if request.get("task") == "latencies":
        return _latencies_child(request)

    model = keras.saving.load_model(request["model_path"], safe_mode=True, compile=False)
    result = _keras_latency_here(model, np.load(request["sample"]), int(request["num_threads"]),
                                 int(request["warmup"]), int(request["repeats"]))
    return {**result, "process": "child"}


if __name__ == "__main__":
    raise SystemExit(child_main(_keras_latency_child))
