"""Training epochs timed alone: the benchmark's training-time column when its jobs ran in parallel.

Jobs that share the cores disturb each other's clocks, so after the grid the driver trains each
distinct architecture for one warm-up and a few timed epochs in one child process with nothing
else running (``python -m condense.bench.epoch_timing REQUEST.json``, :mod:`condense._child`),
exactly as :func:`condense.train.fit` trains it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from condense._child import child_main, child_result
from condense.io import work_folder
from condense.train import TrainConfig, build_model, compile_model, masking_plan, model_to_train, set_determinism

# Deferred on purpose: Keras, condense.layers and TensorFlow are imported inside the functions that use them,
# so importing this module stays light.

__all__ = ["keras_epoch_seconds"]


def keras_epoch_seconds(models: list[dict], x: np.ndarray, y: np.ndarray, x_val: np.ndarray, *, batch_size: int,
                        epochs: int = 2, num_threads: int = 1, timeout: float = 3600.0) -> list[dict]:
    """Seconds per training epoch of each architecture, measured alone in one child process.

    ``models``: ``{"model_path": .keras}`` (that architecture, its weights as saved) or
    ``{"config": TrainConfig JSON}`` (a fresh model of that configuration). Each trains one warm-up
    epoch (tracing) then ``epochs`` timed epochs on ``x, y`` (Adam, ``batch_size``, shuffled,
    seed 0), exactly as :func:`condense.train.fit` trains it (the Masking twin where the data
    allows, :func:`~condense.train.masking_plan`); validation is not scored. Returns per model
    ``{"epoch_seconds": [...], "warmup_seconds", "median_s", "masking_skipped"}``. The benchmark
    uses it for the training-time column when its jobs ran in parallel (their clocks disturbed).
    """
    _positive_int("epochs", epochs)
    _positive_int("batch_size", batch_size)
    with work_folder("epochs") as work:
        arrays = {}
        for name, a in (("x", x), ("y", y), ("x_val", x_val)):
            arrays[name] = str(Path(work) / f"{name}.npy")
            np.save(arrays[name], np.asarray(a, np.float32))
        request = {"models": models, **arrays, "batch_size": int(batch_size),
                   "epochs": int(epochs), "num_threads": int(num_threads)}
        return child_result("condense.bench.epoch_timing", request, what=f"Timing training epochs of {len(models)} "
                            "architecture(s)", timeout=timeout, work=work)["models"]


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Argument `{name}` must be a positive integer, got {name}={value!r}.")


def _epochs_child(request: dict) -> dict:
    """Time training epochs alone (:func:`keras_epoch_seconds`), in the child: TensorFlow's pools set
    before any op runs, as for the latency child."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(request["num_threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

    x, y, x_val = (np.load(request[name]) for name in ("x", "y", "x_val"))
    out = []
    for item in request["models"]:
        set_determinism(0)
        if item.get("config"):
            model = build_model(TrainConfig.from_json(item["config"]), x.shape[1:])
        else:
            model = keras.saving.load_model(item["model_path"], safe_mode=True, compile=False)
        plan = masking_plan(model, x, x_val)
        trainer = model_to_train(model, plan, x[:8])
        compile_model(trainer, 1e-3)
        seconds: list[float] = []

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(time.perf_counter() - self.t0)

        trainer.fit(x, y, batch_size=int(request["batch_size"]), epochs=1 + int(request["epochs"]), verbose=0,
                    shuffle=True, callbacks=[Clock()])
        out.append({"epoch_seconds": seconds[1:], "warmup_seconds": seconds[0],
                    "median_s": float(np.median(seconds[1:])), "masking_skipped": bool(plan["skipped"])})
        keras.backend.clear_session()
    return {"models": out}


if __name__ == "__main__":
    raise SystemExit(child_main(_epochs_child))
