"""PhysioNet 2012 record and outcomes text -> raw observations (:class:`RawRecords`).

Format problems (malformed lines, unknown parameters, a missing header, a ``RecordID`` that
disagrees with the file name, bad outcome rows) are counted and the row treated as missing, or
with ``strict`` the first one raises :class:`DataError` naming ``file:line``. Values are kept as
read (``-1`` and impossible values included): cleaning them is the fitted state's job
(:mod:`condense.data.physionet2012.state`). Clean records are parsed together by the pandas C
parser; a record with any problem goes through the line-by-line reference parser, which words
every message (``docs/physionet2012.md``).
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from condense.data.dataset import DataError
from condense.data.numbers import floats_or_nan
from condense.data.physionet2012.channels import HOURS, STATIC_DESCRIPTORS, TIME_SERIES_VARIABLES
from condense.data.physionet2012.files import SetFiles, read_files
from condense.data.progress import Progress

# Deferred on purpose: pandas is imported inside the functions that use it, so importing this module stays light.

__all__ = ["RawRecords", "parse_files", "read_records"]

_V = len(TIME_SERIES_VARIABLES)
_TS_INDEX = {name: k for k, name in enumerate(TIME_SERIES_VARIABLES)}
# Static columns in RawRecords.static: Age, Gender, Height, AdmissionWeight, ICUType.
_S = len(STATIC_DESCRIPTORS)
_STATIC_COLUMN = {"Age": 0, "Gender": 1, "Height": 2, "ICUType": 4}  # "Weight" at 00:00 -> 3
_ADMISSION_WEIGHT = 3
_WEIGHT = _TS_INDEX["Weight"]
_HEADER = "Time,Parameter,Value"
_TIME_RE = re.compile(r"^(\d{1,4}):([0-5]\d)$")


@dataclass
class RawRecords:
    """Every record of one set, parsed but not yet discretized (``read_records`` builds it).

    Records are in ascending RecordID order. Events (one per valid time-series row within 48 h)
    are flat arrays: ``event_record`` (row in ``ids``), ``event_variable`` (index into
    :data:`TIME_SERIES_VARIABLES`), ``event_hours`` and ``event_value`` (raw, ``-1`` and
    outliers still in), ``event_order`` (file order, for "last wins" among equal times).
    ``static`` is (N, 5) raw descriptors in :data:`STATIC_DESCRIPTORS` order (NaN = no row).
    ``y`` is the in-hospital death label (``-1`` unknown); ``saps_i`` and ``sofa`` are the
    outcomes file's scores (NaN where ``-1`` or absent).
    """

    source: str
    ids: np.ndarray
    static: np.ndarray
    event_record: np.ndarray
    event_variable: np.ndarray
    event_hours: np.ndarray
    event_value: np.ndarray
    event_order: np.ndarray
    y: np.ndarray
    saps_i: np.ndarray
    sofa: np.ndarray
    has_outcomes: bool
    data_hash: str
    issues: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class _Problems:
    """Counts bad-input problems; in strict mode the first format problem raises instead."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.counts: Counter = Counter()

    def format(self, key: str, where: str, message: str) -> None:
        if self.strict:
            raise DataError(f"{where}: {message}")
        self.counts[key] += 1


def _decode(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


#: Descriptor column -> the parameter name it has in the record files (for issue names).
_DESCRIPTOR_FILE_NAMES = ("Age", "Gender", "Height", "Weight", "ICUType")
_RECORD_ID = -2  # parameter kinds besides 0.._V-1 (time series) and 100+column (descriptors)
_UNKNOWN = -1


class _Events:
    """Flat time-series event lists (record, line, variable, hours, value) of the reference parser."""

    def __init__(self):
        self.rec: list = []
        self.line: list = []
        self.var: list = []
        self.hours: list = []
        self.value: list = []


def _split_header(text: str) -> tuple[str, str, int]:
    """Record text -> (first line, body after the header, line number of the body's first line).

    Without a header line the whole text is the body (first line number 1)."""
    first, sep, rest = text.partition("\n")
    if first.replace(" ", "") == _HEADER:
        return first, rest, 2
    return first, text, 1


class _RecordParser:
    """The reference parser: one record file, line by line, every problem named ``file:line``.

    Used for every record the vectorized :func:`_parse_clean_records` does not accept (any
    record with a problem), so messages and counts always come from this one place.
    """

    def __init__(self, problems: _Problems, events: _Events):
        self.problems = problems
        self.events = events
        self._times: dict[str, float | None] = {}

    def hours(self, text: str) -> float | None:
        """``HH:MM`` -> hours, or None when malformed (cached: few distinct strings)."""
        try:
            return self._times[text]
        except KeyError:
            pass
        m = _TIME_RE.match(text.strip())
        hours = int(m.group(1)) + int(m.group(2)) / 60.0 if m else None
        self._times[text] = hours
        return hours

    def parse(self, index: int, rid: str, where: str, text: str, static_row: np.ndarray) -> None:
        problems = self.problems
        counts = problems.counts
        first, body, start = _split_header(text)
        if start == 1:
            problems.format("missing_header", f"{where}:1", f"expected the header {_HEADER!r}, got {first[:80]!r}")
        ev = self.events
        seen_static: set[int] = set()
        for lineno, line in enumerate(body.split("\n"), start=start):
            if not line or line.isspace():
                continue
            parts = line.split(",")
            if len(parts) != 3:
                problems.format("malformed_line", f"{where}:{lineno}",
                                f"expected 3 fields Time,Parameter,Value, got {line[:80]!r}")
                continue
            t, p, v = parts
            p = p.strip()
            hours = self.hours(t)
            if hours is None:
                problems.format("malformed_line", f"{where}:{lineno}", f"time {t!r} of {p!r} is not HH:MM")
                continue
            try:
                value = float(v)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                problems.format("malformed_line", f"{where}:{lineno}", f"value {v!r} of {p!r} is not a finite number")
                continue
            k = _TS_INDEX.get(p)
            if k is not None and not (k == _WEIGHT and hours == 0.0):  # Weight at 00:00: the descriptor
                if hours > HOURS:
                    counts["after_48h"] += 1
                    continue
                ev.rec.append(index)
                ev.line.append(lineno)
                ev.var.append(k)
                ev.hours.append(hours)
                ev.value.append(value)
            elif k is not None or p in _STATIC_COLUMN:
                col = _ADMISSION_WEIGHT if k is not None else _STATIC_COLUMN[p]
                if col in seen_static:
                    counts[f"duplicate_descriptor:{_DESCRIPTOR_FILE_NAMES[col]}"] += 1  # the last row wins
                seen_static.add(col)
                static_row[col] = math.nan if value == -1 else value
            elif p == "RecordID":
                if value != int(rid):
                    problems.format("record_id_mismatch", f"{where}:{lineno}",
                                    f"RecordID {v.strip()!r} disagrees with the file name {rid}.txt")
            else:
                problems.format(f"unknown_parameter:{p or '(empty)'}", f"{where}:{lineno}", f"unknown parameter {p!r}")


def _parameter_kind(name: str) -> int:
    if name in _TS_INDEX:
        return _TS_INDEX[name]
    if name in _STATIC_COLUMN:
        return 100 + _STATIC_COLUMN[name]
    return _RECORD_ID if name == "RecordID" else _UNKNOWN


def _parse_clean_records(items, parser: _RecordParser, static: np.ndarray, counts: Counter):
    """Vectorized parse of the records that have no problem at all.

    Returns the events of the accepted records (record, line, variable, hours, value arrays)
    and the sorted indices of the records left for the reference parser.

    ``items`` are (index, rid, text). A record is accepted only when it has the header, every
    line has exactly three fields, every time is ``HH:MM``, every parameter is known, every
    value is a finite number and its ``RecordID`` row matches; its events and descriptors are
    then exactly what :class:`_RecordParser` would produce. Anything else is returned for the
    reference parser, which names and counts the problem.
    """
    import pandas as pd

    rejected: list[int] = []
    accepted: list[tuple[int, int, int]] = []  # (index, rid, number of rows)
    bodies: list[str] = []
    for index, rid, text in items:
        _, body, start = _split_header(text)
        if body.endswith("\n"):
            body = body[:-1]
        rows = body.count("\n") + 1 if body else 0
        irregular = (body and body.count(",") != 2 * rows) or '"' in body or "\n\n" in body or body.startswith("\n")
        if start != 2 or irregular:
            rejected.append(index)
            continue
        accepted.append((index, int(rid), rows))
        if body:
            bodies.append(body)
    none = tuple(np.zeros(0, dtype=d) for d in (np.int64, np.int64, np.int64, np.float64, np.float64))
    if not bodies:
        return none, sorted(rejected)
    rows = np.array([a[2] for a in accepted], dtype=np.int64)
    text = "\n".join(bodies)
    options = dict(header=None, names=["t", "p", "v"], na_filter=False, quoting=3, skip_blank_lines=False, engine="c")
    try:
        try:  # values straight to float
            frame = pd.read_csv(io.StringIO(text), dtype={"t": "category", "p": "category", "v": np.float64},
                                **options)
            value = frame["v"].to_numpy(dtype=np.float64)
        except ValueError:  # some value is not a number: parse as text, NaN where not a number
            frame = pd.read_csv(io.StringIO(text), dtype={"t": "category", "p": "category", "v": object}, **options)
            value = _to_float(frame["v"].to_numpy(dtype=object))
    except Exception:  # noqa: BLE001 - any other parser surprise: let the reference parser judge
        return none, sorted(rejected + [a[0] for a in accepted])
    if len(frame) != rows.sum():
        return none, sorted(rejected + [a[0] for a in accepted])
    owner = np.repeat(np.arange(len(accepted)), rows)  # position in `accepted` of every row
    first_row = np.concatenate([[0], np.cumsum(rows)[:-1]])
    lineno = np.arange(len(frame)) - first_row[owner] + 2
    t, p = frame["t"].cat, frame["p"].cat
    hours = np.array([parser.hours(x) for x in t.categories], dtype=np.float64)[t.codes.to_numpy()]  # None -> NaN
    kind = np.array([_parameter_kind(x) for x in p.categories], dtype=np.int64)[p.codes.to_numpy()]
    rid_of_row = np.array([a[1] for a in accepted], dtype=np.float64)[owner]
    bad = (np.isnan(hours) | (kind == _UNKNOWN) | ~np.isfinite(value)
           | ((kind == _RECORD_ID) & (value != rid_of_row)))
    bad_owner = np.zeros(len(accepted), dtype=bool)
    bad_owner[owner[bad]] = True
    rejected += [accepted[k][0] for k in np.flatnonzero(bad_owner)]
    keep = ~bad_owner[owner]
    record = np.array([a[0] for a in accepted], dtype=np.int64)[owner]
    is_ts = (kind >= 0) & (kind < _V) & ~((kind == _WEIGHT) & (hours == 0.0))
    late = keep & is_ts & (hours > HOURS)
    if late.any():
        counts["after_48h"] += int(late.sum())
    ev = keep & is_ts & ~late
    events = (record[ev], lineno[ev], kind[ev], hours[ev], value[ev])
    desc = keep & ((kind >= 100) | ((kind == _WEIGHT) & (hours == 0.0)))
    col = np.where(kind[desc] == _WEIGHT, _ADMISSION_WEIGHT, kind[desc] - 100)
    d_rec, d_val = record[desc], value[desc]
    key = d_rec * _S + col  # rows are in file order: the last row of a key wins
    last = np.ones(len(key), dtype=bool)
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    last[order[:-1]] = key_sorted[1:] != key_sorted[:-1]
    for c in np.unique(col[~last]):
        counts[f"duplicate_descriptor:{_DESCRIPTOR_FILE_NAMES[c]}"] += int(((col == c) & ~last).sum())
    static[d_rec[last], col[last]] = np.where(d_val[last] == -1, np.nan, d_val[last])
    return events, sorted(rejected)


def _to_float(values: np.ndarray) -> np.ndarray:
    """Strings -> float64 with Python's ``float`` semantics; NaN where a string is not a number."""
    try:
        return values.astype(np.float64)
    except (ValueError, TypeError):
        return floats_or_nan(values)


def _parse_outcomes(where: str, data: bytes, ids: np.ndarray, problems: _Problems):
    """``Outcomes-*.txt`` -> (y, saps_i, sofa) aligned with ``ids`` (-1 / NaN where absent)."""
    n = len(ids)
    y = np.full(n, -1, dtype=np.int64)
    saps = np.full(n, np.nan)
    sofa = np.full(n, np.nan)
    row_of = {rid: k for k, rid in enumerate(ids.tolist())}
    lines = _decode(data).split("\n")
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    if "RecordID" not in header or "In-hospital_death" not in header:
        raise DataError(f"{where}:1: outcomes header must name RecordID and In-hospital_death, got {lines[0][:120]!r}")
    c_id, c_y = header.index("RecordID"), header.index("In-hospital_death")
    c_saps = header.index("SAPS-I") if "SAPS-I" in header else None
    c_sofa = header.index("SOFA") if "SOFA" in header else None
    seen: set[int] = set()
    counts = problems.counts

    def score(fields, col, lineno):
        if col is None:
            return math.nan
        try:
            s = float(fields[col])
        except ValueError:
            problems.format("bad_outcome_value", f"{where}:{lineno}", f"{header[col]} {fields[col]!r} is not a number")
            return math.nan
        return math.nan if s == -1 or not math.isfinite(s) else s

    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(header):
            problems.format("malformed_outcome_line", f"{where}:{lineno}",
                            f"expected {len(header)} fields, got {line[:80]!r}")
            continue
        try:
            rid = int(fields[c_id])
        except ValueError:
            problems.format("malformed_outcome_line", f"{where}:{lineno}",
                            f"RecordID {fields[c_id]!r} is not a whole number")
            continue
        if rid in seen:
            problems.format("duplicate_outcome", f"{where}:{lineno}",
                            f"RecordID {rid} listed twice (the last row wins)")
        seen.add(rid)
        row = row_of.get(str(rid))
        if row is None:
            counts["outcome_without_record"] += 1
            continue
        label = fields[c_y]
        if label in ("0", "1"):
            y[row] = int(label)
        else:
            y[row] = -1
            problems.format("bad_label", f"{where}:{lineno}", f"In-hospital_death {label!r} is not 0 or 1")
        saps[row] = score(fields, c_saps, lineno)
        sofa[row] = score(fields, c_sofa, lineno)
    missing = n - sum(1 for rid in seen if str(rid) in row_of)
    if missing:
        counts["record_without_outcome"] += missing
    return y, saps, sofa


def parse_files(files: SetFiles, *, strict: bool, quiet: bool) -> RawRecords:
    """The records and outcomes of ``files`` (:func:`read_files`) as :class:`RawRecords`, problems counted."""
    problems = _Problems(strict)
    if files.ignored:
        problems.counts["ignored_file"] += files.ignored
    n = len(files.records)
    static = np.full((n, _S), np.nan)
    progress = Progress(f"physionet2012: reading {Path(files.source).name}", n, quiet=quiet, unit=" records", lines=0)
    texts = []
    for index, (_, _, data) in enumerate(files.records):
        texts.append(_decode(data))
        progress.update(index + 1)
    progress.close()
    events = _Events()
    parser = _RecordParser(problems, events)
    items = [(index, rid, texts[index]) for index, (_, rid, _) in enumerate(files.records)]
    fast, slow = _parse_clean_records(items, parser, static, problems.counts)
    for index in slow:  # the reference parser, line by line, in RecordID order
        where, rid, _ = files.records[index]
        parser.parse(index, rid, where, texts[index], static[index])
    slow_events = (events.rec, events.line, events.var, events.hours, events.value)
    rec, line, var, hours, value = (
        np.concatenate([f, np.asarray(s, dtype=f.dtype)]) for f, s in zip(fast, slow_events)
    )
    order = np.lexsort((line, rec))  # file order: record, then line
    rec, var, hours, value = rec[order], var[order], hours[order], value[order]
    empty = n - len(np.unique(rec))
    if empty:
        problems.counts["no_time_series"] += empty
    ids = np.array([rid for _, rid, _ in files.records])
    if files.outcomes is not None:
        y, saps, sofa = _parse_outcomes(files.outcomes[0], files.outcomes[1], ids, problems)
    else:
        y, saps, sofa = np.full(n, -1, dtype=np.int64), np.full(n, np.nan), np.full(n, np.nan)
    return RawRecords(
        source=files.source,
        ids=ids,
        static=static,
        event_record=rec,
        event_variable=var,
        event_hours=hours,
        event_value=value,
        event_order=np.arange(len(rec), dtype=np.int64),
        y=y,
        saps_i=saps,
        sofa=sofa,
        has_outcomes=files.outcomes is not None,
        data_hash=files.data_hash,
        issues=dict(sorted(problems.counts.items())),
    )


def read_records(path: str | os.PathLike, *, strict: bool = False, quiet: bool = True) -> RawRecords:
    """Read every record (and the outcomes file, when present) of a PhysioNet 2012 set.

    Args:
        path: a ``.tar.gz`` archive, a folder holding one ``set-*/`` folder, or the set folder.
        strict: raise :class:`DataError` (``file:line``) at the first format problem instead of
            counting it in ``issues`` and treating the row as missing.
        quiet: no progress output.
    """
    return parse_files(read_files(path), strict=strict, quiet=quiet)

