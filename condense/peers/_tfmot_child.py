"""Child program of the tfmot peer bridge: trains ONE TensorFlow-Model-Optimization peer.

Run by :mod:`condense.peers.tfmot_bridge` as ``python -m condense.peers._tfmot_child
REQUEST.json`` through :mod:`condense._child`, with ``TF_USE_LEGACY_KERAS=1`` (tfmot needs the
legacy Keras 2, selected before TensorFlow is imported; this module sets it again first thing).
It imports only standard-library condense helpers (:mod:`condense.io`, :mod:`condense._child`).
What each peer trains and exports, the protocol and the fault-injection hook
(``CONDENSE_TFMOT_FAULT``): ``docs/peers.md``.
"""

from __future__ import annotations

import os
import sys

_LEGACY_WAS_SET = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # must precede any TensorFlow import in this process
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from condense import io as _io  # noqa: E402  (standard library only: no TensorFlow)
from condense._child import child_main  # noqa: E402

# Deferred on purpose: LiteRT and scikit-learn are imported inside the functions that use them, so importing this
# module stays light.

PEERS = ("prune_dnn", "prune_lstm", "qat_dnn")
FAULT_ENV = "CONDENSE_TFMOT_FAULT"
LSTM_DROPOUT = 0.3
DNN_DROPOUT = 0.5
LEARNING_RATE = 1e-3
CALIBRATION_SAMPLES = 256

# Modules the child needs, with the pip distribution of each. tfmot is imported first: it
# imports TensorFlow itself, so a missing tfmot is reported without paying for TensorFlow.
_REQUIRED = (
    ("tensorflow_model_optimization", "tensorflow-model-optimization"),
    ("tensorflow", "tensorflow"),
    ("tf_keras", "tf-keras"),
)


class PeerError(RuntimeError):
    """A peer could not be trained or exported; the message says why."""


def _injected_abort(peer: str | None) -> bool:
    """True when ``CONDENSE_TFMOT_FAULT`` asks this peer's child to abort (tests only)."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        name, _, kind = item.strip().partition(":")
        if name.strip() == peer and kind.strip() in ("", "abort"):
            return True
    return False


def _import_libraries(install_command: str):
    """Import TensorFlow, tf_keras and tfmot; raise :class:`PeerError` naming what is missing."""
    if not _LEGACY_WAS_SET and any(
        name in sys.modules for name in ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization")
    ):
        raise PeerError(
            "TensorFlow/Keras was imported in the tfmot child before TF_USE_LEGACY_KERAS=1 was set "
            "(did something imported before this module load Keras 3?). Set TF_USE_LEGACY_KERAS=1 "
            "in the environment before starting the child (condense.peers.tfmot_bridge does)."
        )
    pip_names = dict(_REQUIRED)
    modules = {}
    for module_name, pip_name in _REQUIRED:
        try:
            modules[module_name] = importlib.import_module(module_name)
        except ImportError as exc:
            # e.g. importing tfmot without TensorFlow installed names "tensorflow"
            root = (getattr(exc, "name", None) or module_name).split(".")[0]
            culprit = pip_names.get(root, pip_name)
            install = "pip install 'tensorflow-cpu>=2.21,<2.22'" if culprit == "tensorflow" else install_command
            raise PeerError(
                f"{culprit} is not importable in the tfmot child ({type(exc).__name__}: {exc}); "
                f"install it in this environment: {install}"
            ) from exc
    tf = modules["tensorflow"]
    tf_keras = modules["tf_keras"]
    tfmot = modules["tensorflow_model_optimization"]
    if tf.keras.__name__.split(".")[0] != "tf_keras":
        raise PeerError(
            f"tf.keras resolves to {tf.keras.__name__!r}, not tf_keras, although TF_USE_LEGACY_KERAS=1; "
            "tfmot needs the legacy Keras 2"
        )
    return tf, tf_keras, tfmot


def _library_versions(tf, tf_keras, tfmot) -> dict:
    from importlib import metadata

    def dist_version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "tensorflow_model_optimization": getattr(tfmot, "__version__", None)
        or dist_version("tensorflow-model-optimization"),
        "ai_edge_litert": dist_version("ai-edge-litert"),
    }


# ----------------------------------------------------------------------------------------------
# models (the paper's architectures, in tf_keras)


def build_lstm(tf_keras, timesteps: int, channels: int, units, *, batch_size=None):
    """Masking(0) -> LSTM(u1, return_sequences) -> ... -> LSTM(uk) -> Dropout(0.3) -> Dense(1, sigmoid)."""
    layers = [tf_keras.Input(shape=(timesteps, channels), batch_size=batch_size), tf_keras.layers.Masking(0.0)]
    for i, u in enumerate(units):
        layers.append(tf_keras.layers.LSTM(int(u), return_sequences=i < len(units) - 1))
    layers += [tf_keras.layers.Dropout(LSTM_DROPOUT), tf_keras.layers.Dense(1, activation="sigmoid")]
    return tf_keras.Sequential(layers, name="lstm")


def build_dnn(tf_keras, features: int, units, *, batch_size=None):
    """Dense(u1, relu) -> ... -> Dense(uk, relu) -> Dropout(0.5) -> Dense(1, sigmoid)."""
    layers = [tf_keras.Input(shape=(features,), batch_size=batch_size)]
    layers += [tf_keras.layers.Dense(int(u), activation="relu") for u in units]
    layers += [tf_keras.layers.Dropout(DNN_DROPOUT), tf_keras.layers.Dense(1, activation="sigmoid")]
    return tf_keras.Sequential(layers, name="dnn")


# ----------------------------------------------------------------------------------------------
# helpers


def _epoch_timer(tf_keras):
    """A tf_keras callback whose ``seconds`` list collects the wall time of each epoch."""

    class EpochTimer(tf_keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def _make_schedule(tfmot, params: dict):
    sk = tfmot.sparsity.keras
    if params["kind"] == "constant":
        return sk.ConstantSparsity(params["target_sparsity"], begin_step=0, end_step=-1, frequency=1)
    return sk.PolynomialDecay(
        initial_sparsity=params["initial_sparsity"],
        final_sparsity=params["target_sparsity"],
        begin_step=params["begin_step"],
        end_step=params["end_step"],
        frequency=params["frequency"],
    )


def sparse_from_epoch(schedule: dict, steps_per_epoch: int) -> int:
    """The first epoch (1-based) that ends with the target sparsity in place.

    tfmot's step counter runs from 0; the masks reach the target on step ``end_step``, and epoch
    ``e`` ends after step ``e * steps_per_epoch - 1``.
    """
    if schedule["kind"] == "constant":
        return 1
    return max(1, -(-(schedule["end_step"] + 1) // steps_per_epoch))


def _weight_name(weight) -> str:
    return getattr(weight, "path", None) or weight.name


def _is_pruned_weight(name: str) -> bool:
    leaf = name.split("/")[-1].split(":")[0]
    return leaf in ("kernel", "recurrent_kernel")


def _sparsity_report(model) -> tuple[float, dict]:
    """Fraction of exact zeros over all kernels (Dense kernel, LSTM kernel + recurrent_kernel)."""

    zeros = total = 0
    per_weight = {}
    for w in model.weights:
        name = _weight_name(w)
        if not _is_pruned_weight(name):
            continue
        values = w.numpy()
        z = int(values.size - np.count_nonzero(values))
        per_weight[name] = z / values.size
        zeros += z
        total += values.size
    return (zeros / total if total else 0.0), per_weight


def _count(weights) -> tuple[int, int]:
    params = nonzero = 0
    for w in weights:
        values = w.numpy()
        params += int(values.size)
        nonzero += int(np.count_nonzero(values))
    return params, nonzero


def _predict_keras(model, x, batch_size: int) -> list[float]:
    return [float(v) for v in model.predict(x, batch_size=max(batch_size, 256), verbose=0).reshape(-1)]


def _interpreter(tf, tflite_bytes: bytes):
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai_edge_litert"
    except ImportError:  # pragma: no cover - ai-edge-litert is a declared dependency
        Interpreter = tf.lite.Interpreter
        runtime = "tf.lite"
    interp = Interpreter(model_content=tflite_bytes, num_threads=1)
    interp.allocate_tensors()
    return interp, runtime


def _tflite_ops(interp) -> list[str] | None:
    try:
        return sorted({d["op_name"] for d in interp._get_ops_details()})
    except Exception:  # pragma: no cover - private API, informative only
        return None


def _predict_tflite(interp, x) -> list[float]:
    """Run the interpreter one sample at a time (batch 1), float32 in, float32 out."""

    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    if np.dtype(inp["dtype"]) != np.float32 or np.dtype(out["dtype"]) != np.float32:
        raise PeerError(f"expected float32 TFLite I/O, got {inp['dtype']} -> {out['dtype']}")
    expected = (1,) + tuple(x.shape[1:])
    if tuple(inp["shape"]) != expected:
        interp.resize_tensor_input(inp["index"], list(expected))
        interp.allocate_tensors()
    preds = []
    for i in range(x.shape[0]):
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        preds.append(float(np.asarray(interp.get_tensor(out["index"])).reshape(-1)[0]))
    return preds


def _save_keras(model, path: Path, *, h5: bool) -> tuple[Path, bool]:
    """Save ``model`` atomically; return the path and whether optimizer state was included.

    HDF5 is written with ``include_optimizer=False``; the native ``.keras`` format takes no such
    argument and stores the optimizer only of a compiled model (``strip_pruning`` returns an
    uncompiled clone, so pruned peers are saved without it).
    """
    with _io.atomic_path(path) as tmp:
        if h5:
            model.save(str(tmp), include_optimizer=False, save_format="h5")
            with_optimizer = False
        else:
            model.save(str(tmp))
            with_optimizer = getattr(model, "optimizer", None) is not None
    return path, with_optimizer


def _seed_everything(tf, tf_keras, seed: int) -> None:
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _best_epoch_tracker(tf_keras, x_val, y_val, cfg, eligible_from: int):
    """A tf_keras callback scoring validation AUROC after every epoch (``select``/``patience``).

    Only epochs from ``eligible_from`` on (1-based) can be selected or restart the patience
    count: a pruned peer is eligible once its schedule has reached the target sparsity, so the
    weights it restores are as sparse as the last epoch's.
    """
    from sklearn.metrics import roc_auc_score

    patience = cfg.get("patience")

    class BestEpoch(tf_keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.val_auroc: list[float] = []
            self.best = (-np.inf, 0, None)  # (auroc, epoch, weights)
            self.stopped_early = False

        def on_epoch_end(self, epoch, logs=None):
            p = self.model.predict(x_val, batch_size=256, verbose=0).reshape(-1)
            score = float(roc_auc_score(y_val, p))
            self.val_auroc.append(score)
            if epoch + 1 >= eligible_from and score > self.best[0]:
                self.best = (score, epoch + 1, self.model.get_weights())
            if patience is not None and self.best[1] and epoch + 1 - self.best[1] >= patience:
                self.stopped_early = True
                self.model.stop_training = True

    return BestEpoch()


def _fit(tf_keras, model, x, y, cfg, callbacks, *, x_val, y_val, eligible_from: int = 1) -> dict:
    """Train with the caller's protocol; with ``select == "best"`` restore the best eligible epoch."""
    timer = _epoch_timer(tf_keras)
    tracker = _best_epoch_tracker(tf_keras, x_val, y_val, cfg, eligible_from)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="binary_crossentropy",
    )
    start = time.perf_counter()
    history = model.fit(
        x,
        y,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        shuffle=True,
        callbacks=list(callbacks) + [timer, tracker],  # the timer stops before validation scoring
        verbose=0 if cfg["quiet"] else 2,
    )
    train_seconds = float(sum(timer.seconds))
    selected = len(timer.seconds)
    if cfg.get("select", "last") == "best" and tracker.best[2] is not None:
        model.set_weights(tracker.best[2])
        selected = tracker.best[1]
    return {
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "epoch_seconds": list(timer.seconds),
        "val_auroc": list(tracker.val_auroc),
        "selected_epoch": selected,
        "stopped_early": tracker.stopped_early,
        "eligible_from_epoch": eligible_from,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }


# ----------------------------------------------------------------------------------------------
# peers


def _run_prune(tf, tf_keras, tfmot, data, cfg, kind: str) -> dict:
    if kind == "lstm":
        x_train, x_val, x_test = data["seq_train"], data["seq_val"], data["seq_test"]
        timesteps, channels = x_train.shape[1:]
        model = build_lstm(tf_keras, timesteps, channels, cfg["lstm_units"])
    else:
        x_train, x_val, x_test = data["feat_train"], data["feat_val"], data["feat_test"]
        model = build_dnn(tf_keras, x_train.shape[1], cfg["dnn_units"])
    y_train = data["y_train"]

    steps_per_epoch = math.ceil(x_train.shape[0] / cfg["batch_size"])
    schedule = cfg["pruning_schedule"]  # computed by the bridge (tfmot_bridge.pruning_schedule)
    if schedule is None or schedule.get("total_steps") != steps_per_epoch * cfg["epochs"]:
        raise PeerError(
            f"pruning schedule {schedule!r} does not match {steps_per_epoch} steps x {cfg['epochs']} epochs"
        )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=_make_schedule(tfmot, schedule))
    fit = _fit(tf_keras, pruned, x_train, y_train, cfg, [tfmot.sparsity.keras.UpdatePruningStep()],
               x_val=x_val, y_val=data["y_val"], eligible_from=sparse_from_epoch(schedule, steps_per_epoch))
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)

    sparsity_reached, per_weight = _sparsity_report(stripped)
    params, nonzero = _count(stripped.weights)

    if kind == "lstm":  # tf_keras LSTMs convert with a static batch; batch 1 is what we deploy
        export_model = build_lstm(tf_keras, timesteps, channels, cfg["lstm_units"], batch_size=1)
        export_model.set_weights(stripped.get_weights())
    else:
        export_model = stripped
    converter = tf.lite.TFLiteConverter.from_keras_model(export_model)
    return _convert_and_finish(
        tf, cfg, converter, stripped, x_val, x_test, fit, h5=False, facts={
            "method": "tfmot magnitude pruning (prune_low_magnitude + strip_pruning)",
            "model": kind,
            "params": params,
            "nonzero_params": nonzero,
            "sparsity_reached": sparsity_reached,
            "sparsity_per_weight": per_weight,
            "target_sparsity": cfg["sparsity"],
            "pruning_schedule": schedule,
            "steps_per_epoch": steps_per_epoch,
            "keras_format": "keras",
            "tflite_quantization": "float32",
            "tflite_io": "float32",
            "tflite_batch": 1 if kind == "lstm" else "dynamic",
        },
    )


def _run_qat(tf, tf_keras, tfmot, data, cfg) -> dict:
    x_train, x_val, x_test = data["feat_train"], data["feat_val"], data["feat_test"]
    model = build_dnn(tf_keras, x_train.shape[1], cfg["dnn_units"])
    qat = tfmot.quantization.keras.quantize_model(model)
    fit = _fit(tf_keras, qat, x_train, data["y_train"], cfg, [], x_val=x_val, y_val=data["y_val"])

    # Trainable weights of the QAT model are exactly the float kernels and biases; the
    # quantizer ranges and step counters are non-trainable bookkeeping.
    params, nonzero = _count(qat.trainable_weights)

    rng = np.random.default_rng(cfg["seed"])
    n_cal = min(CALIBRATION_SAMPLES, x_train.shape[0])
    calibration = x_train[np.sort(rng.permutation(x_train.shape[0])[:n_cal])]

    def representative_dataset():
        for i in range(calibration.shape[0]):
            yield [calibration[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return _convert_and_finish(
        tf, cfg, converter, qat, x_val, x_test, fit, h5=True, facts={
            "method": "tfmot quantization-aware training (quantize_model) + full-int8 TFLite",
            "model": "dnn",
            "params": params,
            "nonzero_params": nonzero,
            "sparsity_reached": None,
            "target_sparsity": None,
            "keras_format": "h5",
            "tflite_quantization": "int8",
            "tflite_io": "float32",
            "tflite_batch": "dynamic",
            "calibration_samples": int(n_cal),
        },
    )


def _convert_and_finish(tf, cfg, converter, keras_model, x_val, x_test, fit, *, h5: bool, facts: dict) -> dict:
    """Convert (timed), save the Keras model (``.h5`` or ``.keras``), then :func:`_finish`."""
    t0 = time.perf_counter()
    tflite = converter.convert()
    fit["_phases"] = {"train": fit["train_seconds"], "convert": time.perf_counter() - t0}
    suffix = ".h5" if h5 else ".keras"
    keras_path, with_optimizer = _save_keras(keras_model, Path(cfg["out_dir"]) / f"{cfg['peer']}{suffix}", h5=h5)
    return _finish(tf, cfg, keras_model, tflite, keras_path, x_val, x_test, fit,
                   {**facts, "keras_includes_optimizer": with_optimizer})


def _finish(tf, cfg, keras_model, tflite: bytes, keras_path: Path, x_val, x_test, fit, extra) -> dict:
    peer = cfg["peer"]
    tflite_path = _io.atomic_write(Path(cfg["out_dir"]) / f"{peer}.tflite", tflite)
    interp, runtime = _interpreter(tf, tflite)
    t0 = time.perf_counter()
    p_test = _predict_keras(keras_model, x_test, cfg["batch_size"])
    p_val = _predict_keras(keras_model, x_val, cfg["batch_size"])
    t1 = time.perf_counter()
    p_test_tflite = _predict_tflite(interp, x_test)
    p_val_tflite = _predict_tflite(interp, x_val)
    fit["_phases"].update(predict_keras=t1 - t0, predict_tflite=time.perf_counter() - t1)
    result = {
        "peer": peer,
        "status": "ok",
        "error": None,
        **extra,
        "keras_path": str(keras_path),
        "keras_bytes": os.path.getsize(keras_path),
        "tflite_path": str(tflite_path),
        "tflite_bytes": len(tflite),
        "tflite_gzip_bytes": len(gzip.compress(tflite, compresslevel=9, mtime=0)),
        "tflite_ops": _tflite_ops(interp),
        "tflite_runtime": runtime,
        **fit,
        "p_test": p_test,
        "p_val": p_val,
        "p_test_tflite": p_test_tflite,
        "p_val_tflite": p_val_tflite,
        "tflite_max_abs_diff": float(np.max(np.abs(np.asarray(p_test) - np.asarray(p_test_tflite))))
        if p_test
        else None,
    }
    return result


def _load_arrays(path: str, peer: str) -> dict:
    prefix = "seq" if peer == "prune_lstm" else "feat"
    needed = [f"{prefix}_{s}" for s in ("train", "val", "test")] + [f"y_{s}" for s in ("train", "val", "test")]
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in needed if k not in npz.files]
        if missing:
            raise PeerError(f"peer {peer!r} needs arrays {missing} (not in {path})")
        data = {k: np.ascontiguousarray(npz[k], dtype=np.float32) for k in needed}
    for split in ("train", "val", "test"):
        data[f"y_{split}"] = data[f"y_{split}"].reshape(-1)
    return data


def run_peer(cfg: dict) -> dict:
    """Train, export and evaluate the peer named in ``cfg``; return its result dict."""
    peer = cfg["peer"]
    if peer not in PEERS:
        raise PeerError(f"unknown tfmot peer {peer!r}; known peers: {', '.join(PEERS)}")
    t0 = time.perf_counter()
    tf, tf_keras, tfmot = _import_libraries(cfg["install_command"])  # the bridge's safe pip command
    import_seconds = time.perf_counter() - t0
    versions = _library_versions(tf, tf_keras, tfmot)
    Path(cfg["out_dir"]).mkdir(parents=True, exist_ok=True)
    data = _load_arrays(cfg["arrays"], peer)
    _seed_everything(tf, tf_keras, int(cfg["seed"]))
    if peer == "prune_dnn":
        result = _run_prune(tf, tf_keras, tfmot, data, cfg, "dnn")
    elif peer == "prune_lstm":
        result = _run_prune(tf, tf_keras, tfmot, data, cfg, "lstm")
    else:
        result = _run_qat(tf, tf_keras, tfmot, data, cfg)
    result["library_versions"] = versions
    result["phase_seconds"] = {"import": import_seconds, **result.pop("_phases", {})}
    return result


def _child_handler(cfg: dict) -> dict:
    """The child's handler: one peer's result dict, also when the peer failed."""
    peer = cfg.get("peer")
    if _injected_abort(peer):
        sys.stderr.write(f"injected fault: aborting the tfmot child for peer {peer!r} ({FAULT_ENV})\n")
        sys.stderr.flush()
        os.abort()
    try:
        if not cfg.get("quiet", True):
            print(f"[tfmot] {peer}: training {cfg.get('epochs')} epochs (seed {cfg.get('seed')})", flush=True)
        result = run_peer(cfg)
    except Exception as exc:  # one failed peer must not lose the benchmark: report it
        message = str(exc) if isinstance(exc, PeerError) else f"{type(exc).__name__}: {exc}"
        result = {
            "peer": peer,
            "status": "failed",
            "error": f"tfmot peer {peer!r} failed: {message}",
            "traceback": traceback.format_exc(),
        }
    if not cfg.get("quiet", True):
        print(f"[tfmot] {peer}: {result['status']}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(child_main(_child_handler))
