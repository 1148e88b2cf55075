"""On-disk cache of discretized arrays, keyed by what produced them.

A cache entry is one uncompressed ``.npz`` file (loaded with ``allow_pickle=False``) under
``<cache dir>/arrays/``; its name carries the key, and the key is stored inside it as well, so an
entry is only ever returned for exactly the key it was written for. Keys are built by
:func:`cache_key` from the content digests of the data files (:func:`file_digest`) and the
settings that turn them into arrays: change a byte of a data file, a setting, or the code
version, and the key changes, so the old entry is simply not found (and the work is redone).
Entries are written atomically (:func:`condense.io.atomic_path`); nothing evicts old ones
(delete the folder to reclaim the space).

The cache folder is ``$CONDENSE_CACHE`` when set, else ``~/.cache/condense``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from condense.io import atomic_path

__all__ = ["ArrayCache", "cache_key", "default_cache_dir", "file_digest", "resolve_cache_dir"]


def default_cache_dir() -> Path:
    """``$CONDENSE_CACHE`` if set, else ``~/.cache/condense``."""
    env = os.environ.get("CONDENSE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "condense"


def resolve_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` as a path, or :func:`default_cache_dir` when None."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def file_digest(path) -> str | None:
    """SHA-256 of a file's bytes (hex); None when the file does not exist.

    A file that exists but cannot be read digests to ``"unreadable:<reason>"`` (so that it
    becomes readable -> the key changes).
    """
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable:{exc.strerror or type(exc).__name__}"


def cache_key(*parts) -> str:
    """A hex SHA-256 over ``parts`` (strings, bytes, or JSON-serializable settings), in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode("utf-8")
        else:
            data = json.dumps(part, sort_keys=True, separators=(",", ":")).encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class ArrayCache:
    """Named ``.npz`` entries in ``<cache_dir>/arrays``.

    Args:
        cache_dir: the cache root (default ``$CONDENSE_CACHE`` or ``~/.cache/condense``).

    Example:
        >>> cache = ArrayCache("/tmp/c")  # doctest: +SKIP
        >>> cache.put("ihm", key, {"X": X})  # doctest: +SKIP
        >>> cache.get("ihm", key)["X"].shape  # doctest: +SKIP
    """

    def __init__(self, cache_dir=None):
        self.root = resolve_cache_dir(cache_dir) / "arrays"

    def path(self, name: str, key: str) -> Path:
        """Where the entry ``name`` with ``key`` lives."""
        if not name or any(c in name for c in "/\\") or len(key) < 16:
            raise ValueError(f"cache entry needs a plain name and a key of >= 16 characters, got {name!r}, {key!r}")
        return self.root / f"{name}-{key[:32]}.npz"

    def get(self, name: str, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None when there is no (readable, matching) entry."""
        path = self.path(name, key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "_key" not in npz.files or str(npz["_key"]) != key:
                    return None
                return {k: npz[k] for k in npz.files if k != "_key"}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            return None  # unreadable or from an incompatible writer: recompute and overwrite

    def put(self, name: str, key: str, arrays: dict[str, np.ndarray]) -> Path:
        """Store ``arrays`` (no object arrays) under ``key``, atomically; returns the path."""
        for k, v in arrays.items():
            if np.asarray(v).dtype == object:
                raise ValueError(f"cache entry {name!r}: array {k!r} has dtype object, which cannot be stored without pickle")
        path = self.path(name, key)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, _key=np.array(key), **arrays)
        return path
