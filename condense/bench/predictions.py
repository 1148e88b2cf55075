"""The benchmark's stored test-set predictions: ``predictions.npz`` beside ``table.csv``.

``condense compare`` uses them to test an AUROC change with a paired bootstrap instead of a fixed
tolerance. The file is a plain ``numpy.savez_compressed`` archive, read without pickle:

* ``ids``: (N,) unicode strings, the test split's record ids, in order;
* ``y``: (N,) int8 labels, 0 or 1;
* ``<row>@<seed>`` (e.g. ``lstm@0``, ``hlstm-prune50-int8@2``): (N,) float64, one row's test
  scores from one seed; NaN where the row has no score for a record (reference-score rows such
  as SAPS-I cover only some records).

:func:`write_predictions` (called by the benchmark runner) writes it atomically,
:func:`read_predictions` reads and checks it, :func:`predictions_beside` finds the one of a table.

Memory is bounded before anything is loaded: :func:`load_npz` reads every array's ``.npy``
header (shape, dtype) from the archive first and refuses, naming the file and the array, one
that is not 1-D of the ids' length, of the wrong kind, or that would take the file past
:data:`MAX_NPZ_BYTES` in all (a 2 MB crafted file declaring a (300000000,) array took
``compare`` to 2.4 GB before its shape was refused).
"""

from __future__ import annotations

import numbers
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from condense.io import atomic_path

__all__ = ["PREDICTIONS_FILE", "MAX_NPZ_BYTES", "Predictions", "write_predictions", "read_predictions",
           "predictions_beside", "file_beside", "npz_headers", "load_npz"]

#: The most an ``.npz`` read here may declare in all (its arrays' shapes x item sizes), checked from
#: the headers before any array is loaded: far above a real run (10^5 test records x 40 rows x
#: 5 seeds of float64 is 160 MB).
MAX_NPZ_BYTES = 256 * 2**20

#: The file name the benchmark writes beside ``table.csv``.
PREDICTIONS_FILE = "predictions.npz"
_RESERVED = ("ids", "y")


def _key(row: str, seed: int) -> str:
    return f"{row}@{seed}"


def _parse_key(key: str) -> tuple[str, int] | None:
    """``"lstm@2"`` -> ``("lstm", 2)``; None for anything else (the row may itself hold ``@``)."""
    row, at, seed = key.rpartition("@")
    if not at or not row or not seed.isdigit() or not seed.isascii():
        return None
    return row, int(seed)


@dataclass(frozen=True, eq=False)
class Predictions:
    """One benchmark run's test-set scores: ``scores[(row, seed)]`` is an (N,) float64 array."""

    ids: np.ndarray
    y: np.ndarray
    scores: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def n(self) -> int:
        """The number of test records."""
        return int(self.ids.shape[0])

    def rows(self) -> list[str]:
        """The rows with at least one stored score array, in first-stored order."""
        return list(dict.fromkeys(row for row, _ in self.scores))

    def seeds(self, row: str) -> list[int]:
        """The seeds stored for ``row``, ascending (empty when the row has none)."""
        return sorted(seed for r, seed in self.scores if r == row)

    def score(self, row: str, seed: int) -> np.ndarray:
        """The (N,) scores of ``row`` from ``seed``; KeyError naming the file when absent."""
        try:
            return self.scores[(row, seed)]
        except KeyError:
            where = f" in {self.path}" if self.path is not None else ""
            raise KeyError(f"no scores of row {row!r}, seed {seed}{where}") from None

    def same_patients(self, other: "Predictions") -> str | None:
        """None when both scored the same records with the same labels, else why not (a phrase)."""
        if self.n != other.n:
            return f"{self.n} vs {other.n} test records"
        if not np.array_equal(self.ids, other.ids):
            return "ids differ"
        if not np.array_equal(self.y, other.y):
            return f"labels differ on {int(np.sum(self.y != other.y))} record(s)"
        return None


def _check_ids(ids, where: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{where}: ids must be a 1-D array of record ids, got shape {arr.shape}")
    if arr.size and arr.dtype.kind != "U":
        if arr.dtype.kind == "O" and all(isinstance(v, str) for v in arr):
            arr = arr.astype(str)
        else:
            raise ValueError(f"{where}: ids must be strings, got dtype {arr.dtype}")
    return arr.astype(str) if arr.size == 0 else arr


def _check_y(y, n: int, where: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{where}: y must be a 1-D array of {n} labels (one per id), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: y must hold 0/1 labels, got dtype {arr.dtype}")
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        raise ValueError(f"{where}: y must hold only 0/1 labels, got {int(bad.sum())} other value(s)")
    return arr.astype(np.int8)


def _check_scores(p, n: int, where: str, name: str) -> np.ndarray:
    arr = np.asarray(p)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{where}: scores {name!r} must be a 1-D array of {n} values (one per id), "
                         f"got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: scores {name!r} must be numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)  # NaN: no score for that record (an infinite score is kept, never paired)


def write_predictions(path, ids, y, scores: dict[tuple[str, int], np.ndarray]) -> Path:
    """Write ``predictions.npz`` atomically and return its path.

    Args:
        path: the file to write (normally ``out_dir / PREDICTIONS_FILE``).
        ids: (N,) record ids of the test split, in order (strings).
        y: (N,) labels, 0 or 1.
        scores: ``{(row, seed): (N,) scores}``; NaN where the row has no score for a record.

    Raises:
        ValueError: a length, label or key that does not fit the format (nothing is written).
    """
    path = Path(path)
    where = str(path)
    ids = _check_ids(ids, where)
    n = ids.shape[0]
    arrays: dict[str, np.ndarray] = {"ids": ids, "y": _check_y(y, n, where)}
    for key, p in scores.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"{where}: score keys must be (row, seed) pairs, got {key!r}")
        row, seed = key
        if not isinstance(row, str) or not row or row in _RESERVED:
            raise ValueError(f"{where}: a row id must be a non-empty string other than {_RESERVED}, got {row!r}")
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"{where}: the seed of row {row!r} must be a whole number >= 0, got {seed!r}")
        name = _key(row, int(seed))
        if name in arrays:
            raise ValueError(f"{where}: scores {name!r} given twice")
        arrays[name] = _check_scores(p, n, where, name)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: savez would otherwise append its own ".npz"
            np.savez_compressed(fh, **arrays)
    return path


def read_predictions(path) -> Predictions:
    """Read and check a ``predictions.npz``; ValueError naming the file when it is not one.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an npz archive, pickled content, ``ids`` / ``y`` missing, a length that does
            not match ``ids``, or a key that is not ``<row>@<seed>``.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{where}: no such predictions file")
    raw = load_npz(path, check=_check_headers, what="a predictions file")
    ids = _check_ids(raw.pop("ids"), where)
    y = _check_y(raw.pop("y"), ids.shape[0], where)
    scores: dict[tuple[str, int], np.ndarray] = {}
    for name, arr in raw.items():
        key = _parse_key(name)
        if key is None:
            raise ValueError(f"{where}: bad key {name!r}: score arrays are named '<row>@<seed>' (e.g. 'lstm@0')")
        scores[key] = _check_scores(arr, ids.shape[0], where, name)
    return Predictions(ids=ids, y=y, scores=scores, path=path)


def npz_headers(path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{array: (shape, dtype)}`` of the ``.npz`` archive at ``path``, read from the ``.npy``
    headers alone (no array data is decompressed). ValueError for a member that is not a ``.npy``
    of format 1.0 or 2.0; ``zipfile.BadZipFile`` / ``OSError`` for a file that is not a zip."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is not an .npy array")
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"member {info.filename!r}: .npy format {version} is not supported")
                shape, _, dtype = read(fh)
            headers[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    return headers


def load_npz(path, *, check=None, max_bytes: int = MAX_NPZ_BYTES, what: str = "an .npz archive") -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``, loaded only after their headers pass: no object
    (pickled) arrays, at most ``max_bytes`` declared in all, then ``check(headers)`` (raises
    ValueError to refuse). Every error is a ValueError naming the file: ``<file>: not <what>
    (<why>)``, or ``<file>: <check's message>``."""
    where = str(path)
    try:
        headers = npz_headers(path)
        _check_declared(headers, max_bytes)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{where}: not {what} ({exc})") from None
    if check is not None:
        try:
            check(headers)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # data damaged behind a sound header
        raise ValueError(f"{where}: not {what} ({exc})") from None


def _check_declared(headers: dict[str, tuple[tuple[int, ...], np.dtype]], max_bytes: int) -> None:
    size = {name: int(np.prod(shape, dtype=np.float64)) * dtype.itemsize for name, (shape, dtype) in headers.items()}
    for name, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects (pickled data is never loaded)")
    if sum(size.values()) > max_bytes:
        big = max(size, key=size.get)
        raise ValueError(f"its arrays declare {sum(size.values()):,} bytes in all, more than the {max_bytes:,} allowed "
                         f"(array {big!r}: shape {headers[big][0]}, {headers[big][1]}); refused before loading")


def _check_headers(headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """A predictions file's shapes, from its headers: ids (N,), y and every score (N,) (kinds and
    values are checked once loaded)."""
    missing = [k for k in _RESERVED if k not in headers]
    if missing:
        raise ValueError(f"not a predictions file: no {' or '.join(repr(m) for m in missing)} array")
    shape = headers["ids"][0]
    if len(shape) != 1:
        raise ValueError(f"ids must be a 1-D array of record ids, got shape {shape}")
    for name, (other, _) in headers.items():
        if name == "y" and other != shape:
            raise ValueError(f"y must be a 1-D array of {shape[0]} labels (one per id), got shape {other}")
        if name not in _RESERVED and other != shape:
            raise ValueError(f"scores {name!r} must be a 1-D array of {shape[0]} values (one per id), got shape {other}")


def file_beside(table_path, name: str) -> Path | None:
    """The file ``name`` that belongs to the table at ``table_path``, or None.

    ``<stem>.<name>`` is tried first (a table kept under another name, e.g. a CI reference
    ``smoke.csv`` with ``smoke.predictions.npz``), then ``name`` in the table's folder (what the
    benchmark writes beside ``table.csv``).
    """
    table_path = Path(table_path)
    for candidate in (table_path.with_name(f"{table_path.stem}.{name}"), table_path.with_name(name)):
        if os.path.isfile(candidate):
            return candidate
    return None


def predictions_beside(table_path) -> Predictions | None:
    """The stored predictions of the table at ``table_path`` (see :func:`file_beside`), or None.

    A file that exists but is not a valid predictions file raises ValueError naming it.
    """
    found = file_beside(table_path, PREDICTIONS_FILE)
    return None if found is None else read_predictions(found)
