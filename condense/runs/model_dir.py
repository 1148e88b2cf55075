"""The model directory: what ``condense train`` writes and every later command reads.

::

    DIR/model.keras            the Keras model (or model.lr.json for the logistic regression, or
                               model.gbm.txt + model.gbm.json for the gradient-boosting peer)
    DIR/preprocessing.json     fitted input state (condense.data.inputs.ModelInputs)
    DIR/manifest.json          config, seed, git commit, data (resolved spec, fingerprint), timings,
                               metrics, and the sha256 and size of every file
    DIR/model.<format>.tflite  exports (condense export); their manifest entry also records the
                               sha256 of the model.keras they were converted from

A directory is written as one unit: :func:`save_run` builds it in a hidden sibling
(``.DIR.tmp-<pid>-<random>``) and swaps it onto DIR at the end (an atomic exchange where the
file system has one, else: old aside as ``.DIR.old-<pid>-<random>``, new in, old removed), so an
interruption leaves the old complete directory or the new complete one. Writers (training,
export) hold :func:`model_dir_lock`, an exclusive ``flock`` on ``.DIR.lock``: a second writer
fails at once naming the first one's pid. Under the lock, what a killed writer left is cleaned
(and an old directory moved aside but not replaced is moved back).

Loading checks what it reads: the manifest's shape, the model and preprocessing files against
their recorded sha256, and a ``.tflite`` against its own hash and the hash of the model.keras it
came from (a stale export is an error naming the command that refreshes it). Loading never
executes code from a file: Keras models load with ``safe_mode=True`` (the custom hLSTM is
registered by ``import condense.layers``); the logistic regression is plain JSON; the
gradient-boosting peer is LightGBM's text format plus plain JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import platform
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

from condense.data.inputs import PREPROCESSING_FILE, ModelInputs
from condense.io import atomic_path, read_json, sha256_file, write_json
from condense.peers.kinds import PEERS, peer_of_file

# Deferred on purpose: Keras and condense.layers are imported inside the functions that use them, so importing
# this module stays light.

MANIFEST_FILE = "manifest.json"
KERAS_FILE = "model.keras"


def model_files() -> tuple[str, ...]:
    """Every model file a manifest's ``model_file`` may name: Keras's, and each registered peer's
    (:data:`condense.peers.kinds.PEERS`; the gradient-boosting peer's LightGBM text has its metadata beside it)."""
    return (KERAS_FILE, *(kind.files[0] for kind in PEERS.values()))

#: Keys every manifest written by :func:`save_run` has (older ones included).
REQUIRED_KEYS = ("model", "seed", "files", "model_file")

#: 2: every export is recorded in ``files`` with its ``source_sha256`` (a ``.tflite`` the manifest
#: does not list is not this model's); manifests without the key are older, their exports unchecked.
MANIFEST_VERSION = 2


class ModelDirError(ValueError):
    """A model directory that cannot be used as it is; the message names the file at fault."""


class ModelDirBusy(ModelDirError):
    """Another process holds the model directory's lock."""


def tflite_file(fmt: str, form: str = "sequence") -> str:
    """``model.<fmt>.tflite`` (the whole sequence) or ``model.<fmt>.step.tflite`` (one step)."""
    return f"model.{fmt}.tflite" if form == "sequence" else f"model.{fmt}.{form}.tflite"


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
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy", "scikit-learn", "lightgbm",
                 "condense"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


# -- where a directory's siblings live ----------------------------------------------------------

def _target(model_dir) -> Path:
    """The absolute path writers work on (a symlink to a folder: the folder it points to)."""
    path = Path(os.path.abspath(os.path.expanduser(str(model_dir))))
    if path.is_symlink() and path.resolve().is_dir():
        path = path.resolve()
    if path == path.parent:
        raise ModelDirError(f"{model_dir}: a model directory cannot be the root folder")
    return path


def _lock_file(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _siblings(target: Path) -> list[tuple[Path, str]]:
    """The work folders of writers of ``target``: [(path, "tmp" | "old")], oldest first."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-\d+-[0-9a-f]+$")
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = pattern.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False):
                found.append((Path(entry.path), match.group(1), entry.stat(follow_symlinks=False).st_mtime))
    return [(p, kind) for p, kind, _ in sorted(found, key=lambda t: t[2])]


def _new_sibling(target: Path, kind: str) -> Path:
    while True:
        path = target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        if not os.path.lexists(path):
            return path


#: What condense itself writes into a model directory (an older, interrupted run may have left
#: these without a manifest): model files, preprocessing, exports, hidden temporary files.
_OURS = re.compile(r"^(model\.keras|model\.lr\.json|model\.gbm\.(txt|json)|preprocessing\.json|model\.[\w.]+\.tflite|\..*\.tmp(\.\w+)?)$")


def check_output_dir(out_dir) -> Path:
    """``out_dir`` if a model directory can be written there, checked before any work.

    It must not be a file, nor a folder holding anything but a model directory (the whole folder
    is replaced), and the folder it sits in must be writable (the new directory is built beside
    it). Missing parent folders are fine (they are created).
    """
    target = _target(out_dir)
    if target.exists() and not target.is_dir():
        raise ModelDirError(f"{out_dir} is a file; give the path of a folder")
    if target.is_dir():
        with contextlib.suppress(OSError):
            foreign = [e.name for e in os.scandir(target) if not _OURS.match(e.name)]
            if foreign and not (target / MANIFEST_FILE).exists():
                raise ModelDirError(
                    f"{out_dir} is a folder that is not a condense model directory (no {MANIFEST_FILE}); it would be "
                    "replaced as a whole: give a new or empty folder"
                )
    base = target.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ModelDirError(f"{out_dir}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ModelDirError(f"{out_dir}: cannot write in {base} (permission denied); the model directory is "
                            "built beside its final place")
    return target


# -- the lock -----------------------------------------------------------------------------------

#: Locks this process holds: lock file -> [fd, depth] (the lock is re-entrant within a process).
_HELD: dict[str, list[int]] = {}


def _holder(path: Path) -> str:
    for _ in range(20):  # the holder writes its pid right after taking the lock
        with contextlib.suppress(OSError, ValueError):
            return str(int(path.read_text().strip()))
        time.sleep(0.01)
    return "unknown"


def _recover(target: Path) -> None:
    """Under the lock: undo what a killed writer left (its work folders; an old directory moved
    aside but never replaced is moved back, so DIR is the last complete directory)."""
    siblings = _siblings(target)
    if not os.path.lexists(target):
        olds = [p for p, kind in siblings if kind == "old"]
        if olds:
            os.rename(olds[-1], target)
            siblings = [(p, kind) for p, kind in siblings if p != olds[-1]]
    for path, _ in siblings:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def model_dir_lock(model_dir, *, create: bool = True) -> Iterator[Path]:
    """Hold the write lock of ``model_dir`` (``flock`` on the sibling ``.DIR.lock``); yields the
    directory's absolute path.

    Fails at once with :class:`ModelDirBusy` when another process holds it. Re-entrant within a
    process. Missing parent folders are created (``create``) and removed again on the way out
    when nothing was written into them. The lock file is removed on release.
    """
    target = _target(model_dir)
    lock = _lock_file(target)
    key = str(lock)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield target
        finally:
            _HELD[key][1] -= 1
        return
    made: list[Path] = []
    if create:
        missing = target.parent
        while not missing.exists() and missing != missing.parent:
            made.append(missing)
            missing = missing.parent
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelDirError(f"{model_dir}: cannot create {target.parent} ({exc.strerror})") from None
    try:
        fd = acquire_lock(lock, model_dir)
    except BaseException:
        _remove_empty(made, target)
        raise
    _HELD[key] = [fd, 1]
    try:
        _recover(target)
        yield target
    finally:
        del _HELD[key]
        release_lock(lock, fd)
        _remove_empty(made, target)


def _remove_empty(made: list[Path], target: Path) -> None:
    """Remove the parent folders the lock created (innermost first) when nothing was written."""
    if not os.path.lexists(target):
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def acquire_lock(lock: Path, name, *, busy: type[Exception] = ModelDirBusy, error: type[Exception] = ModelDirError,
                 held_by: str = "is being written by another condense process") -> int:
    """Take the exclusive ``flock`` on the file ``lock`` and write our pid into it; the open fd.

    Another holder: ``busy("<name> <held_by> (pid N)")`` at once; any other failure: ``error``.
    Release with :func:`release_lock`.
    """
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise error(f"{name}: cannot take its lock {lock} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy(f"{name} {held_by} (pid {_holder(lock)})") from None
            raise error(f"{name}: cannot take its lock {lock} ({exc.strerror})") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file between our open and our flock
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd


def release_lock(lock: Path, fd: int) -> None:
    """Remove ``lock`` (still holding it: a waiter that opened this file retries on the new one), then close ``fd``."""
    with contextlib.suppress(OSError):
        os.unlink(lock)
    os.close(fd)


# -- writing ------------------------------------------------------------------------------------

def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(new: Path, target: Path) -> None:
    """Make the complete directory ``new`` be ``target``; an existing ``target`` is removed."""
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    if _rename_exchange(new, target):  # now ``new`` holds the old directory
        shutil.rmtree(new, ignore_errors=True)
        return
    aside = _new_sibling(target, "old")
    os.rename(target, aside)
    os.rename(new, target)  # killed before this line: the next writer moves ``aside`` back
    shutil.rmtree(aside, ignore_errors=True)


def save_keras_model(model, path) -> Path:
    """Save a Keras model atomically (``.keras`` zip)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def _write_files(folder: Path, *, model, inputs: ModelInputs, manifest: dict) -> None:
    extra: tuple[str, ...] = ()
    if hasattr(model, "save") and hasattr(model, "get_weights"):
        model_file = KERAS_FILE
        save_keras_model(model, folder / model_file)
    else:  # a peer: its kind names its files (the first is the one save() takes)
        kind = next((k for k in PEERS.values() if isinstance(model, k.peer_class())), None)
        if kind is None:
            raise TypeError(f"cannot save a {type(model).__name__}: not a Keras model or a registered peer")
        model_file, extra = kind.files[0], kind.files[1:]
        model.save(folder / model_file)
    inputs.save(folder / PREPROCESSING_FILE)
    manifest = dict(manifest)
    manifest["files"] = {name: _file_entry(folder / name) for name in (model_file, *extra, PREPROCESSING_FILE)}
    manifest["model_file"] = model_file
    manifest["manifest_version"] = MANIFEST_VERSION
    write_json(folder / MANIFEST_FILE, manifest)


def save_run(out_dir, *, model, inputs: ModelInputs, manifest: dict) -> Path:
    """Write a model directory as one unit: model file, preprocessing state, manifest with hashes.

    ``model`` is a Keras model, a :class:`~condense.peers.logistic.LogisticRegressionPeer` or a
    :class:`~condense.peers.gbm.GradientBoostingPeer`.
    Everything is written into a hidden sibling folder that then replaces ``out_dir`` whole (its
    exports, made from the previous model, go with it). Holds the directory's lock.
    """
    check_output_dir(out_dir)
    with model_dir_lock(out_dir) as target:
        work = _new_sibling(target, "tmp")
        work.mkdir()
        try:
            _write_files(work, model=model, inputs=inputs, manifest=manifest)
            _swap_in(work, target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return Path(out_dir)


def write_folder(out_dir, files: dict[str, bytes]) -> Path:
    """Write ``files`` ({path relative to ``out_dir``: bytes}, a model directory made elsewhere,
    e.g. by a benchmark job on a Ray worker) as ``out_dir``, replacing it whole, under its lock."""
    with model_dir_lock(out_dir) as target:
        work = _new_sibling(target, "tmp")
        work.mkdir()
        try:
            root = work.resolve()
            for name, data in files.items():
                path = root / name
                if root not in path.resolve().parents:
                    raise ModelDirError(f"{out_dir}: refusing to write {name!r} outside the folder")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            _swap_in(work, target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return Path(out_dir)


def _file_entry(path: Path, **extra) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size, **extra}


def record_file(model_dir, name: str, *, source_sha256: str | None = None) -> None:
    """Add (or refresh) a file's hash and size in the manifest (used after an export).

    ``source_sha256`` is the hash of the model file the export was converted from.
    """
    with model_dir_lock(model_dir, create=False):
        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir)
        extra = {"source_sha256": source_sha256} if source_sha256 else {}
        manifest["files"][name] = _file_entry(model_dir / name, **extra)
        write_json(model_dir / MANIFEST_FILE, manifest)


# -- reading ------------------------------------------------------------------------------------

def load_manifest(model_dir) -> dict:
    """The manifest of ``model_dir``, checked to be one (a clear :class:`ModelDirError` if not)."""
    path = Path(model_dir) / MANIFEST_FILE
    if not path.exists():
        if not Path(model_dir).exists():
            aside = [p for p, kind in _siblings(_target(model_dir)) if kind == "old"]
            if aside:
                raise FileNotFoundError(
                    f"{model_dir}: no such model directory; a condense process was killed while replacing it, and the "
                    f"previous one is at {aside[-1]} (rename it to {model_dir} to use it)"
                )
            raise FileNotFoundError(f"{model_dir}: no such model directory")
        raise FileNotFoundError(f"{model_dir}: not a condense model directory (no {MANIFEST_FILE})")
    try:
        manifest = read_json(path)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ModelDirError(f"{path} is not a condense manifest: not valid JSON ({exc})") from None
    except OSError as exc:
        raise ModelDirError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict):
        raise ModelDirError(f"{path} is not a condense manifest: a JSON {type(manifest).__name__}, not an object")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ModelDirError(f"{path} is not a condense manifest: no {', '.join(repr(k) for k in missing)}")
    files = manifest["files"]
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise ModelDirError(f"{path} is not a condense manifest: 'files' is not an object of file entries")
    seed = manifest["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ModelDirError(f"{path} is not a condense manifest: 'seed' is {seed!r}, not an integer")
    if manifest["model_file"] not in model_files():
        raise ModelDirError(f"{path} is not a condense manifest: unknown model_file {manifest['model_file']!r}")
    return manifest


def check_recorded_hash(model_dir, manifest: dict, name: str) -> None:
    """Raise :class:`ModelDirError` when ``name`` differs from the sha256 its manifest records."""
    recorded = (manifest["files"].get(name) or {}).get("sha256")
    if not recorded:
        return  # an older manifest, or a file it does not list
    actual = sha256_file(Path(model_dir) / name)
    if actual != recorded:
        raise ModelDirError(
            f"{Path(model_dir) / name} does not match {MANIFEST_FILE} (sha256 {actual[:12]}… on disk, "
            f"{recorded[:12]}… recorded): it was changed after condense wrote it"
        )


def check_export(model_dir, manifest: dict, fmt: str, form: str = "sequence") -> Path:
    """The path of ``model.<fmt>.tflite``, checked to be the current model's export.

    A file the manifest does not list, whose own hash differs from its entry, or whose recorded
    source hash is not the hash of the current model file, is stale: :class:`ModelDirError`
    names the command that refreshes it. Directories written before exports were recorded
    (no ``manifest_version``) use an unlisted file as it is.
    """
    model_dir = Path(model_dir)
    path = model_dir / tflite_file(fmt, form)
    command = f"condense export --model {model_dir} --format {fmt}" + (f" --form {form}" if form != "sequence" else "")
    refresh = f"re-run {command}"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `{command}` first")
    entry = manifest["files"].get(path.name)
    if not entry:
        if manifest.get("manifest_version", 1) >= 2:
            raise ModelDirError(
                f"{path} is stale: {MANIFEST_FILE} does not list it, so it was not exported from this "
                f"{manifest['model_file']} ({refresh})"
            )
        return path
    stale = entry.get("sha256") and sha256_file(path) != entry["sha256"]
    source = entry.get("source_sha256")
    stale = stale or (source and sha256_file(model_dir / manifest["model_file"]) != source)
    if stale:
        raise ModelDirError(
            f"{path} is stale: it was exported from another {manifest['model_file']} ({refresh})"
        )
    return path


def load_keras_model(path):
    """Load a ``.keras`` file with ``safe_mode=True`` (no code from the file is executed)."""
    import keras

    import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: no Keras model there")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001  (Keras raises ValueError, zipfile/h5 errors, KeyError...)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelDirError(f"{path} cannot be loaded (truncated or not a Keras file): {reason[:300]}") from None


def load_run(model_dir):
    """(model, inputs, manifest) of a model directory; the model is Keras, the LR or the GBM peer.

    Every file read is checked: the manifest's shape, then each file loads and matches the sha256
    the manifest records (:class:`ModelDirError` naming the file otherwise).
    """
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    prep = model_dir / PREPROCESSING_FILE
    if not prep.exists():
        raise ModelDirError(f"{prep} is missing: {model_dir} is not a complete model directory")
    inputs = ModelInputs.load(prep)
    model_file = manifest["model_file"]
    checked = (model_file, PREPROCESSING_FILE)
    kind = peer_of_file(model_file)
    if kind is not None:
        checked = (*kind.files, PREPROCESSING_FILE)
        for name in kind.files:
            if not (model_dir / name).exists():
                raise ModelDirError(f"{model_dir / name} is missing: {model_dir} is not a complete model directory")
        try:
            model = kind.peer_class().load(model_dir / model_file)
        except ValueError as exc:
            raise ModelDirError(str(exc)) from None
    else:
        if not (model_dir / KERAS_FILE).exists():
            raise ModelDirError(f"{model_dir / KERAS_FILE} is missing: {model_dir} is not a complete model directory")
        model = load_keras_model(model_dir / KERAS_FILE)
    for name in checked:
        check_recorded_hash(model_dir, manifest, name)
    return model, inputs, manifest
