"""TensorFlow Model Optimization (tfmot) peers, run in child processes (legacy Keras 2).

The parent side, imported by the benchmark: it never imports TensorFlow, tf_keras or tfmot. It
writes the preprocessed arrays once, runs one child per peer (:mod:`condense.peers._tfmot_child`
through :mod:`condense._child`) and reads back one result per peer. Peers: ``"prune_dnn"``,
``"prune_lstm"`` (magnitude pruning, float32 ``.tflite``) and ``"qat_dnn"`` (quantization-aware
training, int8 ``.tflite``). Failures never raise: each becomes a result with ``status ==
"failed"`` and a readable ``error``; invalid common arguments raise ``ValueError`` up front.
Details: ``docs/peers.md``.

Example::

    from condense.peers.tfmot_bridge import run_tfmot_peers, tfmot_available

    if tfmot_available():
        rows = run_tfmot_peers(arrays, "models/peers", epochs=20, batch_size=8, seed=0)
"""

from __future__ import annotations

import importlib.util
import numbers
import os
import shlex
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from condense._child import exit_description, output_tail, run_child
from condense.io import work_folder

__all__ = [
    "CHILD_PATH",
    "DEFAULT_PEERS",
    "INSTALL_COMMAND",
    "PEER_REQUIREMENTS",
    "PEERS",
    "RESULT_KEYS",
    "missing_packages",
    "pruning_schedule",
    "run_tfmot_peers",
    "tfmot_available",
]

#: The child program (run through :mod:`condense._child`).
CHILD_MODULE = "condense.peers._tfmot_child"
CHILD_PATH = Path(__file__).resolve().with_name("_tfmot_child.py")

#: Every peer the child knows, and the arrays (besides ``y_*``) each one needs.
PEERS: dict[str, str] = {"prune_dnn": "feat", "prune_lstm": "seq", "qat_dnn": "feat"}
DEFAULT_PEERS = ("prune_dnn", "prune_lstm", "qat_dnn")
SPLITS = ("train", "val", "test")

#: Modules the child imports, with the pip distribution that provides each.
_REQUIRED_MODULES: dict[str, str] = {
    "tensorflow": "tensorflow",
    "tf_keras": "tf-keras",
    "tensorflow_model_optimization": "tensorflow-model-optimization",
}

#: The optional packages the peers need, pinned as ``requirements/peers.txt`` pins them (a wheel
#: install has no ``requirements/`` folder to read; a test keeps the two equal).
PEER_REQUIREMENTS = ("tf-keras==2.21.0", "tensorflow-model-optimization==0.8.1", "dm-tree>=0.1.8", "mock>=5",
                     "scipy>=1.11", "six>=1.16")
#: The one command that installs them safely: ``--no-deps``, as the Makefile does, because tf-keras
#: declares the full ``tensorflow`` wheel, which plain ``pip install tf-keras`` lays over ``tensorflow-cpu``.
INSTALL_COMMAND = "python -m pip install --no-deps " + " ".join(shlex.quote(r) for r in PEER_REQUIREMENTS)

#: Keys every result dict carries (``None`` where a value does not apply or the peer failed).
RESULT_KEYS = (
    "peer",
    "status",
    "error",
    "method",
    "model",
    "params",
    "nonzero_params",
    "sparsity_reached",
    "target_sparsity",
    "sparsity_per_weight",
    "pruning_schedule",
    "steps_per_epoch",
    "calibration_samples",
    "keras_path",
    "keras_format",
    "keras_bytes",
    "keras_includes_optimizer",
    "tflite_path",
    "tflite_bytes",
    "tflite_gzip_bytes",
    "tflite_quantization",
    "tflite_io",
    "tflite_batch",
    "tflite_ops",
    "tflite_runtime",
    "tflite_max_abs_diff",
    "train_seconds",
    "wall_seconds",
    "epoch_seconds",
    "val_auroc",
    "selected_epoch",
    "stopped_early",
    "eligible_from_epoch",
    "history",
    "p_test",
    "p_val",
    "p_test_tflite",
    "p_val_tflite",
    "library_versions",
    "config",
    "phase_seconds",
    "child_seconds",
    "returncode",
    "traceback",
)


#: tfmot's default mask-update frequency; also our upper bound (fewer, larger steps on long runs).
MAX_PRUNING_FREQUENCY = 100


def pruning_schedule(n_train: int, *, epochs: int, batch_size: int, sparsity: float) -> dict:
    """The pruning schedule a pruned peer trains with, as a JSON-able dict.

    tfmot counts one step per training batch, from 0 to ``total_steps - 1``, and updates the
    masks only on steps ``begin_step + k * frequency`` up to ``end_step``. Its default frequency
    of 100 therefore never reaches the target on short runs. This schedule ramps the sparsity
    from 0 to ``sparsity`` (polynomial decay, tfmot's cubic default) over the first half of the
    steps, with ``frequency = min(100, ramp // 10)`` (at least 1) and ``end_step`` aligned to an
    update step, so the target is reached by the middle of training and the second half
    fine-tunes the surviving weights under fixed masks. A run of one step uses constant
    sparsity from step 0.

    >>> pruning_schedule(64, epochs=2, batch_size=16, sparsity=0.5)["end_step"]
    4
    >>> s = pruning_schedule(14681, epochs=20, batch_size=8, sparsity=0.5)
    >>> (s["total_steps"], s["end_step"], s["frequency"])
    (36720, 18300, 100)
    """
    n_train = _positive_int("n_train", n_train)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    total_steps = -(-n_train // batch_size) * epochs
    ramp = total_steps // 2
    if ramp < 1:
        return {
            "kind": "constant",
            "target_sparsity": float(sparsity),
            "begin_step": 0,
            "end_step": -1,
            "frequency": 1,
            "total_steps": total_steps,
        }
    frequency = max(1, min(MAX_PRUNING_FREQUENCY, ramp // 10))
    return {
        "kind": "polynomial_decay",
        "initial_sparsity": 0.0,
        "target_sparsity": float(sparsity),
        "begin_step": 0,
        "end_step": (ramp // frequency) * frequency,
        "frequency": frequency,
        "total_steps": total_steps,
    }


def missing_packages() -> list[str]:
    """pip names of the packages the child needs that are not installed (no import is done).

    Uses :func:`importlib.util.find_spec` on top-level module names, which locates a module
    without importing it, so this is cheap and keeps TensorFlow out of the calling process.
    """
    missing = []
    for module, pip_name in _REQUIRED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(pip_name)
    return missing


def missing_message(peer: str, missing: list[str]) -> str:
    """What a peer row says when its optional packages are missing: the names and the safe install command."""
    return (f"tfmot peer {peer!r} cannot run: missing optional package(s) {', '.join(missing)}; install them "
            f"without replacing tensorflow-cpu: {INSTALL_COMMAND}")


def tfmot_available() -> bool:
    """True when tensorflow, tf-keras and tensorflow-model-optimization are installed.

    This checks presence only (:func:`missing_packages`); a broken installation is still
    reported per peer, as a failed result naming the package, by :func:`run_tfmot_peers`.
    """
    return not missing_packages()


def run_tfmot_peers(
    arrays: Mapping[str, np.ndarray],
    out_dir: str | os.PathLike,
    *,
    peers: Sequence[str] = DEFAULT_PEERS,
    epochs: int = 20,
    batch_size: int = 8,
    seed: int = 0,
    select: str = "last",
    patience: int | None = None,
    sparsity: float = 0.5,
    lstm_units: Sequence[int] = (16, 16),
    dnn_units: Sequence[int] = (256, 128, 64),
    timeout: float | None = None,
    quiet: bool = True,
) -> list[dict]:
    """Train, export and evaluate tfmot peers, each in its own child process.

    Args:
        arrays: already-preprocessed arrays (cast to float32): ``"seq_train"``, ``"seq_val"``,
            ``"seq_test"`` of shape (N, T, C) for the LSTM peer, ``"feat_train"``,
            ``"feat_val"``, ``"feat_test"`` of shape (N, C) for the DNN peers, and
            ``"y_train"``, ``"y_val"``, ``"y_test"`` (N,) or (N, 1) binary labels. Only the
            arrays the requested peers need must be present.
        out_dir: folder for the artifacts ``<peer>.keras`` (``<peer>.h5`` for ``qat_dnn``) and
            ``<peer>.tflite``, written atomically; created if missing.
        peers: peer names, run in this order (a single string is one peer). Unknown names give
            a failed result.
        epochs, batch_size, seed: training protocol, the same for every peer.
        select, patience: ``"last"`` keeps the last epoch (the paper); ``"best"`` restores the
            epoch with the best validation AUROC, ``patience`` stops after that many epochs
            without improvement. A pruned peer can only select (and stop) once its schedule has
            reached the target sparsity (``eligible_from_epoch``), so it is never less sparse.
        sparsity: target fraction of zero weights in every pruned kernel, in (0, 1).
        lstm_units, dnn_units: hidden sizes of the LSTM stack and of the DNN's Dense layers.
        timeout: wall-clock limit in seconds for each peer's child (``None``: no limit).
        quiet: when False, the children's progress and logs stream to this process's
            stdout/stderr; when True they are captured (their tail appears in crash errors).

    Returns:
        One dict per requested peer, in order, with every key of :data:`RESULT_KEYS`
        (``None`` where not applicable). ``status`` is ``"ok"`` or ``"failed"`` (then ``error``
        says why). Main keys: ``params`` (total), ``nonzero_params``, ``sparsity_reached``
        (fraction of zeros in the pruned kernels), ``keras_bytes``, ``tflite_bytes``,
        ``tflite_gzip_bytes``, ``train_seconds``, ``epoch_seconds``, ``p_val``/``p_test``
        (Keras model) and ``p_val_tflite``/``p_test_tflite`` (the ``.tflite`` file, batch 1),
        ``val_auroc`` per epoch, ``selected_epoch``, ``stopped_early``,
        ``tflite_path``, ``library_versions``.

    Raises:
        ValueError: an invalid protocol argument (``epochs``, ``batch_size``, ``sparsity``,
            units, ``timeout``).
        TypeError: ``arrays`` is not a mapping.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of name -> numpy array, got {type(arrays).__name__}")
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    seed = _int("seed", seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if select not in ("last", "best"):
        raise ValueError(f"select must be 'last' or 'best', got {select!r}")
    if patience is not None:
        patience = _positive_int("patience", patience)
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0.0 < float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be a number in (0, 1), got {sparsity!r}")
    sparsity = float(sparsity)
    lstm_units = _units("lstm_units", lstm_units)
    dnn_units = _units("dnn_units", dnn_units)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    peer_list = [peers] if isinstance(peers, str) else list(peers)

    out_dir = Path(out_dir).resolve()
    config = {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "select": select,
        "patience": patience,
        "sparsity": sparsity,
        "lstm_units": list(lstm_units),
        "dnn_units": list(dnn_units),
    }

    # Per-peer checks that need no child: unknown names, missing arrays, missing packages.
    problems: dict[int, str] = {}
    missing = missing_packages()
    for i, peer in enumerate(peer_list):
        if not isinstance(peer, str) or peer not in PEERS:
            problems[i] = f"unknown tfmot peer {peer!r}; known peers: {', '.join(PEERS)}"
        elif missing:
            problems[i] = missing_message(peer, missing)
        else:
            problem = _check_arrays(arrays, peer)
            if problem:
                problems[i] = f"tfmot peer {peer!r}: {problem}"

    results: list[dict | None] = [None] * len(peer_list)
    for i, message in problems.items():
        results[i] = _failed(peer_list[i], message, config)

    runnable = [i for i in range(len(peer_list)) if results[i] is None]
    if runnable:
        out_dir.mkdir(parents=True, exist_ok=True)
        with work_folder("tfmot") as tmp:
            tmp_path = Path(tmp)
            npz_path = tmp_path / "arrays.npz"
            _write_arrays(npz_path, arrays, {peer_list[i] for i in runnable})
            for i in runnable:
                peer = peer_list[i]
                schedule = None
                if peer.startswith("prune_"):
                    n_train = len(arrays[f"{PEERS[peer]}_train"])
                    schedule = pruning_schedule(n_train, epochs=epochs, batch_size=batch_size, sparsity=sparsity)
                results[i] = _run_child(
                    peer,
                    schedule=schedule,
                    index=i,
                    npz_path=npz_path,
                    tmp_path=tmp_path,
                    out_dir=out_dir,
                    config=config,
                    timeout=timeout,
                    quiet=quiet,
                )
    return [r for r in results if r is not None]  # every slot is filled by now


# ----------------------------------------------------------------------------------------------
# argument and array checks


def _int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _positive_int(name: str, value) -> int:
    value = _int(name, value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _units(name: str, units: Iterable[int]) -> tuple[int, ...]:
    try:
        values = tuple(units)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive integers, got {units!r}") from None
    if not values or any(isinstance(u, bool) or not isinstance(u, (int, np.integer)) or u < 1 for u in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {units!r}")
    return tuple(int(u) for u in values)


def _check_arrays(arrays: Mapping[str, np.ndarray], peer: str) -> str | None:
    """Return why ``arrays`` cannot feed ``peer``, or None when they can."""
    prefix = PEERS[peer]
    ndim = 3 if prefix == "seq" else 2
    needed = [f"{prefix}_{s}" for s in SPLITS] + [f"y_{s}" for s in SPLITS]
    absent = [k for k in needed if k not in arrays]
    if absent:
        return f"missing arrays {absent} (it needs {needed})"
    width = None
    for split in SPLITS:
        x = np.asarray(arrays[f"{prefix}_{split}"])
        y = np.asarray(arrays[f"y_{split}"])
        if x.ndim != ndim:
            return f"{prefix}_{split} must have {ndim} dimensions, got shape {x.shape}"
        if x.shape[0] == 0:
            return f"{prefix}_{split} is empty"
        if width is None:
            width = x.shape[1:]
        elif x.shape[1:] != width:
            return f"{prefix}_{split} has shape {x.shape}, inconsistent with {prefix}_train's {width}"
        if y.reshape(-1).shape[0] != x.shape[0]:
            return f"y_{split} has {y.reshape(-1).shape[0]} labels for {x.shape[0]} samples in {prefix}_{split}"
        if not np.all(np.isfinite(x.astype(np.float32, copy=False))):
            return f"{prefix}_{split} contains NaN or infinite values"
    return None


def _write_arrays(path: Path, arrays: Mapping[str, np.ndarray], peers: set[str]) -> None:
    prefixes = {PEERS[p] for p in peers} | {"y"}
    payload = {
        f"{prefix}_{split}": np.ascontiguousarray(arrays[f"{prefix}_{split}"], dtype=np.float32)
        for prefix in prefixes
        for split in SPLITS
    }
    np.savez(path, **payload)


# ----------------------------------------------------------------------------------------------
# child process


def _failed(peer: str, message: str, config: dict, **extra) -> dict:
    result = dict.fromkeys(RESULT_KEYS)
    result.update(peer=peer, status="failed", error=message, config=dict(config), **extra)
    return result


def _run_child(
    peer: str,
    *,
    schedule: dict | None,
    index: int,
    npz_path: Path,
    tmp_path: Path,
    out_dir: Path,
    config: dict,
    timeout: float | None,
    quiet: bool,
) -> dict:
    request = {**config, "pruning_schedule": schedule, "peer": peer, "arrays": str(npz_path),
               "out_dir": str(out_dir), "quiet": bool(quiet), "install_command": INSTALL_COMMAND}
    try:
        run = run_child(CHILD_MODULE, request, what=f"tfmot peer {peer!r}", timeout=timeout, quiet=quiet,
                        legacy_keras=True, env={"PYTHONHASHSEED": str(config["seed"] % (2**32))},
                        work=tmp_path / f"peer-{index}-{peer}")
    except OSError as exc:
        return _failed(peer, f"tfmot peer {peer!r}: could not start the child process: {exc}", config)
    seconds, rc = run.seconds, run.returncode
    if rc is None:
        return _failed(peer, f"tfmot peer {peer!r} timed out after {timeout:g} s (child killed)", config,
                       child_seconds=seconds, returncode=rc)
    if isinstance(run.result, dict):
        result = dict.fromkeys(RESULT_KEYS)
        result.update(run.result)
        result.update(peer=peer, config=dict(config), child_seconds=seconds, returncode=rc)
        if result.get("status") not in ("ok", "failed"):
            result.update(status="failed", error=f"tfmot peer {peer!r}: child returned status {result.get('status')!r}")
        elif result["status"] == "failed" and not result.get("error"):
            result["error"] = f"tfmot peer {peer!r} failed without a message"
        return result
    tail = output_tail(run.output, 12)
    detail = "; see its output above" if not quiet else (f"; last output lines:\n{tail}" if tail else "")
    return _failed(
        peer,
        f"tfmot peer {peer!r}: the child process {exit_description(rc)} without writing a result{detail}",
        config,
        child_seconds=seconds,
        returncode=rc,
    )
