"""The model directory: what ``condense train`` writes and every later command reads.

::

    DIR/model.keras            the Keras model (or model.lr.json for the logistic regression)
    DIR/preprocessing.json     fitted input state (condense.data.inputs.ModelInputs)
    DIR/manifest.json          config, seed, git commit, data fingerprint, timings, metrics, hashes
    DIR/model.<format>.tflite  exports (condense export)

Loading never executes code from a file: Keras models load with ``safe_mode=True`` (the
custom hLSTM is registered by ``import condense.layers``); the logistic regression is plain JSON.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from condense.data.inputs import PREPROCESSING_FILE, ModelInputs
from condense.io import atomic_path, read_json, sha256_file, write_json

MANIFEST_FILE = "manifest.json"
KERAS_FILE = "model.keras"
LR_FILE = "model.lr.json"


def tflite_file(fmt: str) -> str:
    return f"model.{fmt}.tflite"


def git_commit() -> str | None:
    """The project's git commit (with ``+dirty`` when the work tree differs), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def library_versions() -> dict:
    """Versions of the libraries that decide the numbers."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy", "scikit-learn", "condense"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_keras_model(model, path) -> Path:
    """Save a Keras model atomically (``.keras`` zip)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def load_keras_model(path):
    """Load a ``.keras`` file with ``safe_mode=True`` (no code from the file is executed)."""
    import keras

    import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no Keras model at {path}")
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def save_run(out_dir, *, model, inputs: ModelInputs, manifest: dict) -> Path:
    """Write a model directory: model file, preprocessing state and a manifest with file hashes.

    ``model`` is a Keras model or a :class:`~condense.peers.logistic.LogisticRegressionPeer`.
    The manifest is written last, so a directory with a manifest is complete.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save") and hasattr(model, "get_weights"):
        model_file = KERAS_FILE
        save_keras_model(model, out / model_file)
    else:
        model_file = LR_FILE
        model.save(out / model_file)
    inputs.save(out / PREPROCESSING_FILE)
    manifest = dict(manifest)
    manifest["files"] = {
        name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
        for name in (model_file, PREPROCESSING_FILE)
    }
    manifest["model_file"] = model_file
    write_json(out / MANIFEST_FILE, manifest)
    return out


def load_manifest(model_dir) -> dict:
    path = Path(model_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{model_dir}: not a condense model directory (no {MANIFEST_FILE})")
    return read_json(path)


def record_file(model_dir, name: str) -> None:
    """Add (or refresh) a file's hash and size in the manifest (used after an export)."""
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    manifest.setdefault("files", {})[name] = {
        "sha256": sha256_file(model_dir / name),
        "bytes": (model_dir / name).stat().st_size,
    }
    write_json(model_dir / MANIFEST_FILE, manifest)


def load_run(model_dir):
    """(model, inputs, manifest) of a model directory; the model is Keras or the LR peer."""
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    inputs = ModelInputs.load(model_dir / PREPROCESSING_FILE)
    if manifest.get("model_file") == LR_FILE:
        from condense.peers.logistic import LogisticRegressionPeer

        model = LogisticRegressionPeer.load(model_dir / LR_FILE)
    else:
        model = load_keras_model(model_dir / KERAS_FILE)
    return model, inputs, manifest
