"""Small file helpers every writer uses: atomic writes and content hashes.

Every file condense writes goes through :func:`atomic_write` (write to a temporary file in the
same folder, then rename), so an interrupted run never leaves a truncated artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the target's suffix (some writers, like ``keras.Model.save``,
    insist on it). On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}-", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; artifacts get normal permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is None and exc.strerror:  # a failed write (disk full) names no file: name the target
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: The temporary files :func:`atomic_path` makes: ``.<stem>.<pid>-<random>.tmp<suffix>``.
_TEMP_NAME = re.compile(r"^\.[^/]*?\.(\d+)-[A-Za-z0-9_]+\.tmp(\.[^/]*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` whose writing process is
    gone (a killed run); returns what was removed. Files of live processes are left alone."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


#: The private work folders of :func:`work_folder`: ``condense-<kind>-<pid>-<random>``.
_WORK_NAME = re.compile(r"^condense-[a-z]+-(\d+)-[A-Za-z0-9_]+$")


@contextlib.contextmanager
def work_folder(kind: str) -> Iterator[Path]:
    """A private temporary folder (``condense-<kind>-<pid>-...`` in the system temp folder),
    removed afterwards. Folders left by killed condense processes are removed first, so a
    ``kill -9`` costs disk space only until the next run."""
    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            match = _WORK_NAME.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"condense-{kind}-{os.getpid()}-") as tmp:
        yield Path(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes or text, UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_format_header(obj, *, name: str, version: int, what: str, version_key: str = "format_version") -> dict:
    """``obj`` (read from a JSON file condense wrote) when its ``format`` is ``name`` and its
    ``version_key`` is ``version``; a ValueError saying what it is instead otherwise."""
    if not isinstance(obj, dict) or obj.get("format") != name:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"not {what} (format {found!r})")
    if obj.get(version_key) != version:
        raise ValueError(f"{name} {version_key} {obj.get(version_key)!r} is not supported (this condense reads {version})")
    return obj


def read_state(path: str | os.PathLike, from_json, what: str):
    """``from_json(obj)`` of the JSON file at ``path``: FileNotFoundError "no WHAT at PATH" when it is
    absent, ValueError "PATH: not a condense WHAT (why)" when it cannot be read as one."""
    try:
        return from_json(read_json(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a condense {what} ({exc})") from None
