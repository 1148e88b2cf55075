"""Find and read one PhysioNet 2012 set: record files, outcomes file, content hash.

``PATH`` is the challenge archive (``set-a.tar.gz``; any tar compression: decompressed whole in
memory, checked, never extracted to disk), a folder holding exactly one ``set-*/`` folder, or the
``set-*/`` folder itself; ``Outcomes-<X>.txt`` pairs with ``set-<X>/`` (``docs/physionet2012.md``).
Only bytes come out of here; :mod:`condense.data.physionet2012.parse` reads them.

An archive is streamed: decompressed in steps, member by member, and refused with a
:class:`DataError` naming it as soon as its uncompressed bytes pass :func:`max_archive_bytes`
(:data:`DEFAULT_MAX_ARCHIVE_BYTES`, or ``$CONDENSE_MAX_ARCHIVE_BYTES``): a small archive that
expands to gigabytes stops there, before memory runs out. The real set A is 31 MB uncompressed.
Every file (a record or the outcomes file) is also bounded on its own by :func:`max_record_bytes`
(:data:`DEFAULT_MAX_RECORD_BYTES`, or ``$CONDENSE_MAX_RECORD_BYTES``), checked from its size
before it is read (a folder's ``stat``, a tar member's header): reading and parsing take about
15x a file's bytes at their peak, and the largest real file is 79 KB.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from condense.data.dataset import DataError

__all__ = ["DEFAULT_MAX_ARCHIVE_BYTES", "DEFAULT_MAX_RECORD_BYTES", "MAX_ARCHIVE_BYTES_ENV", "MAX_RECORD_BYTES_ENV",
           "SetFiles", "max_archive_bytes", "max_record_bytes", "read_files"]

#: The most uncompressed bytes an archive may hold (2 GiB) unless ``$CONDENSE_MAX_ARCHIVE_BYTES``
#: says otherwise.
DEFAULT_MAX_ARCHIVE_BYTES = 2 * 1024**3
#: The environment variable that sets the bound, in bytes.
MAX_ARCHIVE_BYTES_ENV = "CONDENSE_MAX_ARCHIVE_BYTES"
#: The most bytes one file of a set may hold (8 MiB: 100x the largest real one) unless
#: ``$CONDENSE_MAX_RECORD_BYTES`` says otherwise.
DEFAULT_MAX_RECORD_BYTES = 8 * 1024**2
#: The environment variable that sets the per-file bound, in bytes.
MAX_RECORD_BYTES_ENV = "CONDENSE_MAX_RECORD_BYTES"
#: Bytes decompressed per step.
_STEP = 1 << 20

_SET_DIR_RE = re.compile(r"^set-[^/]+$")
_OUTCOMES_RE = re.compile(r"^Outcomes-([^/]+)\.txt$")
_RECORD_RE = re.compile(r"^(\d+)\.txt$")


@dataclass
class SetFiles:
    """The bytes of one set: record files and the optional outcomes file, plus a content hash."""

    source: str
    records: list[tuple[str, str, bytes]]  # (where, RecordID, bytes)
    outcomes: tuple[str, bytes] | None
    data_hash: str
    ignored: int


def _bound(env: str, default: int) -> int:
    """``$env`` (a whole number of bytes > 0) when set, else ``default``."""
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"{env} must be a whole number of bytes > 0, got {text!r}")
    return value


def max_archive_bytes() -> int:
    """The bound on an archive's uncompressed bytes: ``$CONDENSE_MAX_ARCHIVE_BYTES`` (a whole
    number of bytes > 0) when set, else :data:`DEFAULT_MAX_ARCHIVE_BYTES`."""
    return _bound(MAX_ARCHIVE_BYTES_ENV, DEFAULT_MAX_ARCHIVE_BYTES)


def max_record_bytes() -> int:
    """The bound on one file of a set (a record or the outcomes file): ``$CONDENSE_MAX_RECORD_BYTES``
    (a whole number of bytes > 0) when set, else :data:`DEFAULT_MAX_RECORD_BYTES`."""
    return _bound(MAX_RECORD_BYTES_ENV, DEFAULT_MAX_RECORD_BYTES)


def _check_file_size(where: str, size: int, limit: int) -> None:
    """:class:`DataError` naming the file when it is past the per-file bound (before it is read)."""
    if size > limit:
        raise DataError(f"{where}: {_size(size)}, past the bound of {_size(limit)} for one record file; not read "
                        f"(a real record is under 100 KB; set {MAX_RECORD_BYTES_ENV} to allow more)")


def _size(n: int) -> str:
    """Bytes in words: ``2147483648`` -> ``"2147483648 bytes (2.0 GiB)"``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n} bytes ({n / scale:.1f} {unit})"
    return f"{n} bytes"


def _too_big(path: Path, limit: int) -> DataError:
    return DataError(
        f"{path}: archive expands past {_size(limit)} uncompressed; stopped reading it "
        f"(set {MAX_ARCHIVE_BYTES_ENV} to allow more)"
    )


#: (magic number, reader of a file object) of each compression a tar archive may come in.
_DECOMPRESSORS = (
    (b"\x1f\x8b", lambda fh: gzip.GzipFile(fileobj=fh, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)


class _Bounded(io.RawIOBase):
    """A read-only stream over ``stream`` that raises ``_too_big`` once past ``limit`` bytes."""

    def __init__(self, stream, path: Path, limit: int):
        self.stream, self.path, self.limit, self.size = stream, path, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(min(len(buffer), _STEP))
        self.size += len(data)
        if self.size > self.limit:
            raise _too_big(self.path, self.limit)
        buffer[: len(data)] = data
        return len(data)


def _read_archive(path: Path) -> SetFiles:
    """Stream a tar archive (any compression; by magic number) member by member into memory,
    then pick the set. Each member is checked against the per-file bound from its header before
    it is read; the stream is read to its end, so the decompressor checks its end-of-stream
    marker and checksum (a cut-off archive cannot pass for a smaller one)."""
    limit, per_file = max_archive_bytes(), max_record_bytes()
    members: dict[str, bytes] = {}
    try:
        size = path.stat().st_size
        if size > limit:
            raise DataError(f"{path}: archive is {_size(size)}, past the bound of {_size(limit)}; not read "
                            f"(set {MAX_ARCHIVE_BYTES_ENV} to allow more)")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_STEP), b""):
                digest.update(block)
            fh.seek(0)
            magic = fh.read(6)
            fh.seek(0)
            opener = next((open_ for m, open_ in _DECOMPRESSORS if magic.startswith(m)), None)
            raw = opener(fh) if opener is not None else fh
            with io.BufferedReader(_Bounded(raw, path, limit), _STEP) as stream:
                with tarfile.open(fileobj=stream, mode="r|") as tf:
                    for member in tf:
                        if not member.isfile():
                            continue
                        _check_file_size(f"{path}:{member.name}", member.size, per_file)
                        data = tf.extractfile(member)
                        members[member.name] = data.read() if data is not None else b""
                while stream.read(_STEP):  # to the end of the compressed stream: its checksum is checked
                    pass
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise DataError(f"{path}: cannot read archive: {exc}") from None
        raise DataError(f"{path}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
    return _pick_set(path, members, digest.hexdigest(), lambda name: f"{path}:{name}")


def _read_folder(path: Path) -> SetFiles:
    """Read a folder holding one ``set-*/`` folder (or the set folder itself) into memory."""
    subsets = sorted(p for p in path.iterdir() if p.is_dir() and _SET_DIR_RE.match(p.name))
    if len(subsets) > 1:
        raise DataError(f"{path}: holds several set folders ({', '.join(p.name for p in subsets)}); point at one")
    if subsets:
        set_dir, outcome_dirs = subsets[0], [subsets[0], path]
    else:  # PATH is the record folder; a set-X folder's Outcomes-X.txt may sit beside it
        set_dir, outcome_dirs = path, [path] + ([path.parent] if _SET_DIR_RE.match(path.name) else [])
    members: dict[str, bytes] = {}
    where: dict[str, str] = {}
    per_file = max_record_bytes()

    def read(p: Path) -> bytes:
        _check_file_size(str(p), p.stat().st_size, per_file)
        return p.read_bytes()

    for p in sorted(set_dir.iterdir()):
        if p.is_symlink() and not p.exists():  # is_file() would say False and the record would vanish uncounted
            raise DataError(f"{p}: a symbolic link that cannot be followed (a loop, or its target is missing); "
                            "remove it or point it at a record file")
        if p.is_file() and not _OUTCOMES_RE.match(p.name):
            name = f"{set_dir.name}/{p.name}"
            members[name], where[name] = read(p), str(p)
    for folder in outcome_dirs:
        for p in sorted(folder.glob("Outcomes-*.txt")):
            if p.is_file() and p.name not in members:  # the set folder's own copy wins
                members[p.name], where[p.name] = read(p), str(p)
    digest = hashlib.sha256()
    for name in sorted(members):
        digest.update(PurePosixPath(name).name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    return _pick_set(path, members, digest.hexdigest(), where.__getitem__, set_name=set_dir.name)


def _pick_set(path: Path, members: dict[str, bytes], digest: str, where_of, set_name: str | None = None) -> SetFiles:
    """From ``{member path: bytes}``, take the records of the one set folder and its outcomes.

    ``set_name`` is the set folder a folder read already chose (its files may sit in a folder
    not named ``set-*``); an archive read finds it from the member paths.
    """
    by_set: dict[str, list[str]] = {}
    outcomes: list[str] = []
    ignored = 0
    for name in members:
        parts = PurePosixPath(name).parts
        if _OUTCOMES_RE.match(parts[-1]):
            outcomes.append(name)
        elif len(parts) >= 2 and (_SET_DIR_RE.match(parts[-2]) or parts[-2] == set_name):
            by_set.setdefault(parts[-2], []).append(name)
        else:
            ignored += 1  # a README or similar outside the set folder
    if not by_set:
        if set_name is not None:  # a folder read found the set folder: it holds no files
            raise DataError(f"{path}: no <RecordID>.txt record files in {set_name}/ (the set folder is empty)")
        raise DataError(f"{path}: no set-*/ folder of <RecordID>.txt record files found")
    if len(by_set) > 1:
        raise DataError(f"{path}: holds several set folders ({', '.join(sorted(by_set))}); point at one")
    set_dir, names = next(iter(by_set.items()))
    records: list[tuple[str, str, bytes]] = []
    seen: dict[str, str] = {}
    for name in sorted(names):
        m = _RECORD_RE.match(PurePosixPath(name).name)
        if not m:
            ignored += 1  # README, .DS_Store, ...: not a record file
            continue
        rid = str(int(m.group(1)))
        if rid in seen:
            raise DataError(f"{path}: record {rid} appears twice ({seen[rid]} and {name})")
        seen[rid] = name
        records.append((where_of(name), rid, members[name]))
    if not records:
        raise DataError(f"{path}: no <RecordID>.txt record files in {set_dir}/")
    # set-X pairs with Outcomes-X.txt only; a folder not named set-* takes a single Outcomes-*.txt
    suffix = set_dir[len("set-"):] if set_dir.startswith("set-") else None
    if suffix is not None:
        match = [n for n in outcomes if _OUTCOMES_RE.match(PurePosixPath(n).name).group(1) == suffix]
    elif len(outcomes) > 1:
        raise DataError(f"{path}: several outcomes files ({', '.join(sorted(outcomes))}) for {set_dir}/; keep one")
    else:
        match = outcomes
    chosen = match[0] if match else None
    ignored += len(outcomes) - (1 if chosen else 0)
    records.sort(key=lambda r: int(r[1]))
    return SetFiles(
        source=str(path),
        records=records,
        outcomes=(where_of(chosen), members[chosen]) if chosen else None,
        data_hash=digest,
        ignored=ignored,
    )


def read_files(path: str | os.PathLike) -> SetFiles:
    """The bytes of the one set at ``path`` (an archive or a folder; see the module docstring).

    Raises :class:`DataError` when ``path`` does not exist, holds no set or several, or is a
    corrupt or truncated archive.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"{p}: no such file or folder (expected set-a.tar.gz, a folder with set-*/, or a set-*/ folder)"
        )
    return _read_archive(p) if p.is_file() else _read_folder(p)

