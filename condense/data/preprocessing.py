"""From IHM episode files to model inputs: discretize, normalize, and the DNN's per-channel means.

* :class:`Discretizer` turns one episode (an IHM ``*_timeseries.csv`` file, or its rows) into the
  benchmark's (48, 76) tensor, exactly as Harutyunyan et al.'s ``Discretizer(timestep=1.0,
  store_masks=True, impute_strategy="previous", start_time="zero")`` does with ``end=48``.
  :meth:`Discretizer.transform_files` does a batch of files at once: each file is parsed with
  a few C-level string operations, then binning, last-value-wins and carry-forward run as NumPy
  array operations over the whole batch.
* :class:`IssueLog` counts bad input by kind (:data:`ISSUE_KINDS`): a bad cell is treated as
  missing and counted; ``strict`` mode turns the first problem into a :class:`DataError`.
* :class:`Normalizer` standardizes the continuous channels; fitted on training episodes only.
* :func:`dnn_features` gives the DNN input: per channel, the mean over the bins where it was
  observed.
* :func:`discretize_reference` is a line-by-line port of the benchmark's per-row discretizer:
  the oracle the tests compare against and the baseline of ``condense data speed``.

This module knows nothing of Keras.
"""

from __future__ import annotations

import csv
import io
import math
from operator import itemgetter
import os
from dataclasses import dataclass
from itertools import compress, repeat
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from condense.data.channels import (
    CATEGORICAL_VALUES,
    CHANNEL_SPANS,
    HEADER,
    IHM_LAYOUT,
    MASK_INDEX,
    NORMAL_VALUES,
    NUM_CHANNELS,
    VARIABLES,
)
from condense.data.dataset import DataError, Dataset, Split
from condense.data.layout import ChannelLayout
from condense.io import read_json, write_json

__all__ = [
    "DISCRETIZER_VERSION",
    "ISSUE_KINDS",
    "Discretizer",
    "Issue",
    "IssueLog",
    "Normalizer",
    "discretize_reference",
    "dnn_features",
]

#: Bumped whenever the same input and settings would give different tensors; part of every
#: cache key and dataset fingerprint, so arrays from an older discretizer are never reused.
DISCRETIZER_VERSION = 1

#: The benchmark's tolerance in ``int(t / timestep - eps)`` and ``t > end + eps``.
EPS = 1e-6

#: Every kind of bad input the IHM reader counts, and what it does about it. Cell and row
#: problems never stop a lenient run; whole-file problems skip the episode (counted, never
#: silent). ``strict`` mode raises a :class:`DataError` at the first problem of any kind except
#: those in :data:`NOT_ERRORS`.
ISSUE_KINDS: dict[str, str] = {
    "missing_file": "episode file named in a listfile does not exist; episode skipped",
    "unreadable_file": "episode file cannot be read or is not UTF-8 text; episode skipped",
    "bad_header": "episode header has no 'Hours' column; episode skipped",
    "empty_episode": "episode file is empty or header-only; kept, every value imputed (masks 0)",
    "unknown_column": "header column that is not one of the 17 variables, or repeats one; ignored",
    "missing_column": "one of the 17 variables has no column; treated as never measured",
    "ragged_row": "row with more or fewer cells than the header; row dropped",
    "duplicate_row": "row identical to an earlier row of the same file; dropped (no effect on the tensor)",
    "bad_hours": "Hours empty, not a number, negative or not finite; row dropped",
    "bad_number": "continuous cell that is not a finite number; treated as missing",
    "unknown_category": "categorical cell outside the benchmark's values; treated as missing",
    "after_end": "row after the 48-hour window; dropped as the benchmark does (not an error)",
    "bad_label": "listfile label that is not 0 or 1; episode skipped",
    "bad_listfile_row": "listfile row without exactly two cells or with a bad file name; skipped",
    "duplicate_stay": "episode file listed twice; the later row skipped",
    "patient_overlap": "episode whose patient is also in val or test; dropped from the earlier split",
}
#: Kinds that are counted but never stop a ``strict`` run (the format defines what to do).
NOT_ERRORS = frozenset({"after_end"})

_HEADER_LINE = ",".join(HEADER)
_NUM_VARS = len(VARIABLES)
_IS_CATEGORICAL = np.array([v in CATEGORICAL_VALUES for v in VARIABLES])
#: Exact spelling -> one-hot position, per categorical variable index.
_CODES: dict[int, dict[str, int]] = {
    k: {text: i for i, text in enumerate(CATEGORICAL_VALUES[v])} for k, v in enumerate(VARIABLES) if v in CATEGORICAL_VALUES
}
#: For the numeric categoricals (capillary refill, GCS total): number -> one-hot position, so
#: that ``1`` or ``15.0`` are read as the benchmark's ``1.0`` and ``15``.
_NUMERIC_CODES: dict[int, dict[float, int]] = {}
for _k, _table in _CODES.items():
    try:
        _NUMERIC_CODES[_k] = {float(text): i for text, i in _table.items()}
    except ValueError:
        pass
#: Columns per row: Hours and the 17 variables.
_WIDTH = len(HEADER)
_STANDARD_COLUMNS = list(range(_WIDTH))
_CONTINUOUS_VARS = [k for k in range(_NUM_VARS) if not _IS_CATEGORICAL[k]]
_CONTINUOUS_CHANNELS = [CHANNEL_SPANS[VARIABLES[k]].start for k in _CONTINUOUS_VARS]
_CATEGORICAL_STARTS = [(k, CHANNEL_SPANS[VARIABLES[k]].start) for k in range(_NUM_VARS) if _IS_CATEGORICAL[k]]
_MASK_START = MASK_INDEX[VARIABLES[0]]
#: Imputation default per variable: a float for continuous variables, the one-hot position for
#: categorical ones.
_NORMAL = np.array(
    [_CODES[k][NORMAL_VALUES[v]] if k in _CODES else float(NORMAL_VALUES[v]) for k, v in enumerate(VARIABLES)],
    dtype=np.float64,
)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    """One bad-input problem: its kind, the file and 1-based line, and what was wrong.

    ``order`` sorts problems in reading order (listfiles first, then episodes in reading order,
    then lines), so "the first problem" is the same however the work was split among processes.
    """

    kind: str
    file: str
    line: int
    message: str
    order: tuple = ()

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {self.message}"


class IssueLog:
    """Counts of bad input by kind, with the first problem of each kind (in reading order).

    ``counts`` maps kind -> number of problems; ``first`` maps kind -> :class:`Issue`.
    """

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.first: dict[str, Issue] = {}

    def add(self, kind: str, file, line: int, message: str, order: tuple = ()) -> Issue:
        """Count one problem of ``kind`` at ``file``:``line``."""
        if kind not in ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {kind!r}; expected one of {sorted(ISSUE_KINDS)}")
        issue = Issue(kind, str(file), int(line), message, tuple(order))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        known = self.first.get(kind)
        if known is None or issue.order < known.order:
            self.first[kind] = issue
        return issue

    def merge(self, other: "IssueLog") -> "IssueLog":
        """Add ``other``'s counts and keep the earlier first example per kind; returns self."""
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
            theirs, ours = other.first[kind], self.first.get(kind)
            if ours is None or theirs.order < ours.order:
                self.first[kind] = theirs
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def earliest_error(self) -> Issue | None:
        """The first problem in reading order that ``strict`` mode stops at (None if none)."""
        errors = [issue for kind, issue in self.first.items() if kind not in NOT_ERRORS]
        return min(errors, key=lambda issue: issue.order) if errors else None

    def raise_first(self) -> None:
        """Raise :class:`DataError` for :meth:`earliest_error`, if there is one."""
        issue = self.earliest_error()
        if issue is not None:
            raise DataError(str(issue))

    def as_dict(self) -> dict[str, int]:
        """Counts in :data:`ISSUE_KINDS` order (what :attr:`Dataset.issues` holds)."""
        return {kind: self.counts[kind] for kind in ISSUE_KINDS if self.counts.get(kind)}

    def summary(self) -> str:
        """One line: each kind's count and first example, or ``""`` when nothing was counted."""
        counts = self.as_dict()
        errors = {k: n for k, n in counts.items() if k not in NOT_ERRORS}
        parts = []
        if errors:
            parts.append(
                f"bad input: {sum(errors.values())} problem(s) counted, treated as missing or skipped "
                "(--strict stops at the first): "
                + "; ".join(f"{kind} x{n} (first {_where(self.first[kind])})" for kind, n in errors.items())
            )
        if counts.get("after_end"):
            parts.append(
                f"{counts['after_end']} row(s) after the 48-hour window dropped, as the benchmark does "
                f"(first {_where(self.first['after_end'])})"
            )
        return " | ".join(parts)

    def to_json(self) -> dict:
        """Counts and first examples as plain JSON types (stored with cached arrays)."""
        return {
            "counts": self.as_dict(),
            "first": {
                kind: {"file": i.file, "line": i.line, "message": i.message, "order": list(i.order)}
                for kind, i in self.first.items()
            },
        }

    @classmethod
    def from_json(cls, obj: dict) -> "IssueLog":
        log = cls()
        log.counts = {str(k): int(v) for k, v in obj.get("counts", {}).items()}
        log.first = {
            str(kind): Issue(str(kind), d["file"], int(d["line"]), d["message"], tuple(d["order"]))
            for kind, d in obj.get("first", {}).items()
        }
        return log


def _where(issue: Issue) -> str:
    return f"{issue.file}:{issue.line}" if issue.line > 0 else issue.file


# --------------------------------------------------------------------------------------------
# Discretizer
# --------------------------------------------------------------------------------------------
class Discretizer:
    """Turn IHM episodes into the benchmark's (48, 76) float32 tensors.

    The rules (``shared/reference/ihm-format.md``): an event at ``t`` hours goes to bin
    ``int(t / timestep - 1e-6)`` (so ``t`` in (k, k+1] -> bin k and ``t = 0`` -> bin 0); events
    after ``hours`` (beyond the benchmark's 1e-6 tolerance) are dropped; when a variable has
    several values in one bin the last in time order wins (equal times: the later row); empty
    bins carry the last observed value forward, and before the first observation hold the
    variable's normal value. Categorical variables are one-hot in the benchmark's order; the 17
    mask channels (59..75) are 1 where the bin held a real measurement.

    Bad input never crashes a lenient run: a bad cell is treated as missing, a bad row is
    dropped, a file that cannot be read is skipped, and each is counted in an :class:`IssueLog`
    (see :data:`ISSUE_KINDS`). Numeric categoricals accept other spellings of the same number
    (``1`` for ``1.0``, ``15.0`` for ``15``); text categoricals must match a benchmark spelling
    (surrounding spaces ignored).

    Args:
        timestep: bin width in hours (the benchmark's IHM task: 1.0).
        hours: length of the window in hours (48); ``int(hours / timestep + 1 - 1e-6)`` bins.
        strict: raise :class:`DataError` at the first bad input instead of counting it.

    Example:
        >>> d = Discretizer()
        >>> x = d.transform_episode([["0.5", "", "60", "", "", "", "", "", "", "90"] + [""] * 8])
        >>> x.shape, float(x[0, 2]), float(x[47, 2]), float(x[0, 60])
        ((48, 76), 60.0, 60.0, 1.0)
    """

    #: Parse clean files with one pandas call per batch (see ``_Batch``); False forces the careful
    #: per-file path everywhere (the tests use it to check that both give the same tensors).
    _BULK_PARSE = True

    def __init__(self, timestep: float = 1.0, hours: float = 48, strict: bool = False):
        if not (isinstance(timestep, (int, float)) and math.isfinite(timestep) and timestep > 0):
            raise ValueError(f"timestep must be a positive number of hours, got {timestep!r}")
        if not (isinstance(hours, (int, float)) and math.isfinite(hours) and hours >= timestep):
            raise ValueError(f"hours must be a number of hours >= timestep ({timestep}), got {hours!r}")
        self.timestep = timestep
        self.hours = hours
        self.strict = bool(strict)

    @property
    def num_bins(self) -> int:
        return int(self.hours / self.timestep + 1.0 - EPS)

    @property
    def layout(self) -> ChannelLayout:
        return IHM_LAYOUT

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {"timestep": self.timestep, "hours": self.hours, "strict": self.strict}

    def settings(self) -> dict:
        """Everything that decides the output for a given input (cache keys and fingerprints)."""
        return {
            "discretizer": "ihm",
            "version": DISCRETIZER_VERSION,
            "timestep": float(self.timestep),
            "hours": float(self.hours),
            "layout": IHM_LAYOUT.name,
        }

    def transform_episode(self, episode, *, header: Sequence[str] | None = None, issues: IssueLog | None = None) -> np.ndarray:
        """One episode -> a (bins, 76) float32 tensor.

        Args:
            episode: a path to an IHM timeseries CSV, or its data rows: a sequence of rows, each
                a sequence of cells (strings or numbers; ``""``, ``None`` or NaN = missing) in
                ``header`` order.
            header: column names of ``episode`` when it is rows (default: the IHM header).
            issues: where lenient-mode problems are counted (default: ``self.issues_``, created
                on first use and accumulated across calls).

        Raises:
            DataError: a file that cannot be read at all (missing, not text, no ``Hours``
                column), or in strict mode any bad input.
        """
        log = self._log(issues)
        local = IssueLog()
        batch = _Batch(self, local)
        if isinstance(episode, (str, os.PathLike)):
            readable = batch.add_file(episode, order=(1, 0))
        else:
            readable = batch.add_rows("<rows>", list(HEADER if header is None else header), episode, order=(1, 0))
        X = batch.finish() if readable else None
        log.merge(local)
        if X is None:
            raise DataError(str(local.earliest_error()))
        if self.strict:
            local.raise_first()
        return X[0]

    def transform_files(self, paths: Sequence, *, issues: IssueLog | None = None, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Many episode files -> ``(X, present)``.

        ``X`` is (len(paths), bins, 76) float32 in the order of ``paths``; ``present[i]`` is
        False when file ``i`` was skipped (missing, unreadable, no ``Hours`` column; its rows of
        ``X`` are zeros and the problem is counted). ``start`` is the position of ``paths[0]``
        in the caller's reading order (for "first problem" bookkeeping across batches).
        """
        log = self._log(issues)
        local = IssueLog()
        batch = _Batch(self, local)
        present = np.zeros(len(paths), dtype=bool)
        slots = []
        for i, path in enumerate(paths):
            if batch.add_file(path, order=(1, start + i)):
                present[i] = True
                slots.append(i)
        Xp = batch.finish()
        log.merge(local)
        if self.strict:
            local.raise_first()
        if len(slots) == len(paths):
            return Xp, present
        X = np.zeros((len(paths), self.num_bins, NUM_CHANNELS), dtype=np.float32)
        X[present] = Xp
        return X, present

    def _log(self, issues: IssueLog | None) -> IssueLog:
        if issues is not None:
            return issues
        if getattr(self, "issues_", None) is None:
            self.issues_ = IssueLog()
        return self.issues_

    def __repr__(self) -> str:
        return f"Discretizer(timestep={self.timestep!r}, hours={self.hours!r}, strict={self.strict!r})"


def _parse_floats(strings: list[str]) -> tuple[np.ndarray, list[int], list[int]]:
    """Strings -> float64 array, positions that are not finite numbers, positions that are blank.

    Bad and blank positions hold NaN. The common case (all good) is one C-level pass.
    """
    try:
        values = np.fromiter(map(float, strings), dtype=np.float64, count=len(strings))
    except ValueError:
        values = np.empty(len(strings), dtype=np.float64)
        for i, text in enumerate(strings):
            try:
                values[i] = float(text)
            except ValueError:
                values[i] = np.nan
    bad: list[int] = []
    blank: list[int] = []
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        values[i] = np.nan
        (blank if not strings[i].strip() else bad).append(i)
    return values, bad, blank


class _Batch:
    """A batch of episodes, discretized together by :meth:`finish`.

    Two ways in, one result:

    * the bulk path: a file in the exact IHM form (standard header, 18 cells on every line, no
      quotes, no blank or repeated lines) is kept as bytes; :meth:`finish` parses all such
      files of the batch with one ``pandas.read_csv`` call (C tokenizer and float parser).
      Anything unusual in that parse (a cell that is not a clean number, an unknown category,
      a bad time) sends those files to the careful path instead, so the bulk path never decides
      about bad input;
    * the careful path: the file is split with Python string operations into the standard column
      order, keeping each row's ``Hours`` text and line number and the flat positions and texts
      of its non-empty cells; :meth:`finish` validates each of them with Python's ``float`` and
      counts every problem.

    Both give (row, variable, value) observations; binning, last-value-wins, carry-forward and
    one-hot encoding then run as array operations over the whole batch.
    """

    def __init__(self, discretizer: Discretizer, log: IssueLog):
        self.d = discretizer
        self.log = log
        self.labels: list[str] = []  # file (or "<rows>") per episode
        self.orders: list[tuple] = []  # reading-order key per episode
        # careful path, per row and per non-empty cell
        self.row_ep: list[int] = []
        self.row_hours: list[str] = []  # Hours text
        self.row_lines: list[int] = []  # 1-based line number
        self.positions: list[int] = []  # flat position (row * 18 + column) of each non-empty cell
        self.texts: list[str] = []  # its text
        # bulk path, per file: (episode, body bytes, text, number of rows)
        self.bulk: list[tuple[int, bytes, str, int]] = []

    def _episode(self, label: str, order: tuple) -> int:
        self.labels.append(label)
        self.orders.append(order)
        return len(self.labels) - 1

    # -- adding episodes ----------------------------------------------------------------------
    def add_file(self, path, order: tuple) -> bool:
        """Read one episode file; False (and counted) when it had to be skipped."""
        label = str(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            self.log.add("missing_file", label, 0, "episode file not found", order)
            return False
        except OSError as exc:
            self.log.add("unreadable_file", label, 0, f"cannot read the file: {exc.strerror or exc}", order)
            return False
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            self.log.add("unreadable_file", label, line, f"not UTF-8 text: byte {data[exc.start]:#04x}", order + (line,))
            return False
        bulk = _bulk_body(data) if Discretizer._BULK_PARSE else None
        if bulk is not None:
            self.bulk.append((self._episode(label, order), bulk[0], text, bulk[1]))
            return True
        return self.add_text(label, text, order)

    def add_text(self, label: str, text: str, order: tuple, episode: int | None = None) -> bool:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():  # a zero-byte (or blank) file: an episode with nothing measured
            return self._add(label, list(HEADER), [], [], order, episode, raw=True, empty="empty file (no header, no rows)")
        lines = text.split("\n")
        header = list(HEADER) if lines[0] == _HEADER_LINE else next(csv.reader([lines[0]]), [])
        body = lines[1:]
        if "" in body:  # blank lines (a trailing newline, mostly) hold nothing: skip them
            line_numbers = [n for n, line in enumerate(body, start=2) if line]
            body = [line for line in body if line]
        else:
            line_numbers = list(range(2, len(body) + 2))
        if '"' in text:  # quoted cells: let the csv module split them
            return self._add(label, header, list(csv.reader(body)), line_numbers, order, episode)
        return self._add(label, header, body, line_numbers, order, episode, raw=True)

    def add_rows(self, label: str, header: list[str], rows: Iterable[Sequence], order: tuple) -> bool:
        rows = [[_cell_text(cell) for cell in row] for row in rows]
        return self._add(label, [str(h) for h in header], rows, list(range(2, len(rows) + 2)), order)

    def _add(self, label, header, rows, line_numbers, order, episode=None, raw=False, empty="header only, no data rows") -> bool:
        """The careful path; ``rows`` are raw lines when ``raw`` (no quotes), else lists of cells."""
        columns = self._columns(label, header, order)
        if columns is None:
            return False
        ncols = len(header)
        if not rows:
            self.log.add("empty_episode", label, 1, f"{empty}; every value imputed", order + (1,))
        lengths = list(map(str.count, rows, repeat(","))) if raw else list(map(len, rows))
        expected = ncols - 1 if raw else ncols
        if lengths.count(expected) != len(lengths):
            keep = []
            for row, n, line in zip(rows, lengths, line_numbers):
                if n == expected:
                    keep.append((row, line))
                else:
                    cells = n + 1 if raw else n
                    self.log.add("ragged_row", label, line, f"row has {cells} cells, the header has {ncols}; row dropped", order + (line,))
            rows = [row for row, _ in keep]
            line_numbers = [line for _, line in keep]
        keys = rows if raw else list(map(tuple, rows))
        if len(set(keys)) < len(keys):
            seen: dict = {}
            keep = []
            for row, key, line in zip(rows, keys, line_numbers):
                if key in seen:
                    self.log.add("duplicate_row", label, line, f"row repeats line {seen[key]}; dropped", order + (line,))
                else:
                    seen[key] = line
                    keep.append((row, line))
            rows = [row for row, _ in keep]
            line_numbers = [line for _, line in keep]

        if not rows:
            flat = []
        elif columns is _STANDARD_COLUMNS:
            flat = ",".join(rows).split(",") if raw else [cell for row in rows for cell in row]
        else:  # another column order, unknown or missing columns: rebuild in the standard order
            cells = [line.split(",") for line in rows] if raw else rows
            flat = [row[j] if j >= 0 else "" for row in cells for j in columns]
        if episode is None:
            episode = self._episode(label, order)
        base = len(self.row_hours) * _WIDTH
        self.row_ep.extend(repeat(episode, len(rows)))
        self.row_hours.extend(flat[0::_WIDTH])
        self.row_lines.extend(line_numbers)
        self.positions.extend(compress(range(base, base + len(flat)), flat))
        self.texts.extend(compress(flat, flat))
        return True

    def _columns(self, label, header, order) -> list[int] | None:
        """For each standard column (Hours, then the 17 variables) its index in ``header``
        (-1: absent); None when the file cannot be used (no ``Hours`` column)."""
        if tuple(header) == HEADER:
            return _STANDARD_COLUMNS
        names = [h.strip() for h in header]
        if "Hours" not in names:
            self.log.add("bad_header", label, 1, f"no 'Hours' column in the header {','.join(header)!r}; episode skipped", order + (1,))
            return None
        where = {}
        for j, name in enumerate(names):
            if name in where or (name not in HEADER):
                why = "repeats an earlier column" if name in where else "is not one of the 17 IHM variables"
                self.log.add("unknown_column", label, 1, f"column {name!r} {why}; ignored", order + (1,))
            else:
                where[name] = j
        for name in VARIABLES:
            if name not in where:
                self.log.add("missing_column", label, 1, f"no column {name!r}; treated as never measured", order + (1,))
        return [where.get(name, -1) for name in HEADER]

    # -- turning text into observations -------------------------------------------------------
    def _bulk_observations(self) -> _Observations | None:
        """Parse every bulk-path file at once; None (files moved to the careful path) if the
        parse meets anything that needs a careful look."""
        if not self.bulk:
            return None
        episodes, bodies, _, counts = zip(*self.bulk)
        obs = _parse_bulk(b"".join(bodies), counts)
        if obs is None:  # rare: bad cells somewhere in these files
            for episode, _, text, _ in self.bulk:
                self.add_text(self.labels[episode], text, self.orders[episode], episode=episode)
            self.bulk = []
            return None
        obs.row_ep = np.repeat(np.asarray(episodes, dtype=np.int64), counts)
        obs.row_lines = np.concatenate([np.arange(2, n + 2) for n in counts])
        return obs

    def _careful_observations(self) -> _Observations:
        """Validate the careful path's cells one by one, counting every problem."""

        def report(kind: str, row: int, message: str) -> None:
            line = self.row_lines[row]
            episode = self.row_ep[row]
            self.log.add(kind, self.labels[episode], line, message, self.orders[episode] + (line,))

        hours, bad, blank = _parse_floats(self.row_hours)
        for row in sorted(bad + blank):
            report("bad_hours", row, f"Hours is not a number: {self.row_hours[row]!r}; row dropped")
        for row in np.flatnonzero(hours < -EPS).tolist():  # the benchmark keeps -1e-6 < t < 0 (bin 0)
            report("bad_hours", row, f"Hours is negative: {self.row_hours[row]!r}; row dropped")
        usable = np.isfinite(hours) & (hours >= -EPS) & (hours <= self.d.hours + EPS)

        positions = np.asarray(self.positions, dtype=np.int64)
        cell_row, column = np.divmod(positions, _WIDTH)
        value = np.full(len(positions), np.nan)
        # cells grouped by column (a stable sort keeps reading order within a column)
        by_column = np.argsort(column, kind="stable")
        sorted_texts = _pick(self.texts, by_column)
        bounds = np.searchsorted(column[by_column], np.arange(_WIDTH + 1))
        for var, name in enumerate(VARIABLES):
            lo, hi = bounds[var + 1], bounds[var + 2]
            if lo == hi:
                continue
            cells, cell_texts = by_column[lo:hi], sorted_texts[lo:hi]
            if var in _CODES:  # categorical: exact spelling, else another look (numbers, spaces)
                codes = np.fromiter(map(_CODES[var].get, cell_texts, repeat(-1)), dtype=np.float64, count=len(cells))
                for k in np.flatnonzero(codes < 0).tolist():
                    code = _category_code(var, cell_texts[k])
                    codes[k] = np.nan if code is None or code < 0 else code
                    if code is None and usable[cell_row[cells[k]]]:
                        report("unknown_category", int(cell_row[cells[k]]), f"{name!r} has no category {cell_texts[k]!r}; treated as missing")
                value[cells] = codes
            else:
                numbers, bad, _ = _parse_floats(cell_texts)
                for k in bad:
                    if usable[cell_row[cells[k]]]:
                        report("bad_number", int(cell_row[cells[k]]), f"{name!r} is not a number: {cell_texts[k]!r}; treated as missing")
                value[cells] = numbers
        keep = (column > 0) & ~np.isnan(value)
        return _Observations(
            row_ep=np.asarray(self.row_ep, dtype=np.int64),
            row_hours=np.where(np.isfinite(hours) & (hours >= -EPS), hours, np.nan),
            row_lines=np.asarray(self.row_lines, dtype=np.int64),
            cell_row=cell_row[keep],
            cell_var=column[keep] - 1,
            cell_value=value[keep],
        )

    # -- the vectorized part -------------------------------------------------------------------
    def finish(self) -> np.ndarray:
        """All observations of the batch -> the (episodes, bins, 76) float32 tensor."""
        d = self.d
        bulk = self._bulk_observations()  # first: it may hand files to the careful path
        obs = self._careful_observations()
        if bulk is not None:
            obs = obs.concat(bulk)
        hours = obs.row_hours
        for row in np.flatnonzero(hours > d.hours + EPS).tolist():
            episode, line = int(obs.row_ep[row]), int(obs.row_lines[row])
            self.log.add(
                "after_end", self.labels[episode], line,
                f"Hours {float(hours[row])!r} is after the {d.hours:g}-hour window; row dropped",
                self.orders[episode] + (line,),
            )
        usable = ~np.isnan(hours) & (hours <= d.hours + EPS)
        keep = usable[obs.cell_row]
        row, var, value = obs.cell_row[keep], obs.cell_var[keep], obs.cell_value[keep]
        bins = (hours[row] / d.timestep - EPS).astype(np.int64)  # truncation toward zero, as int()
        rank = _time_rank(obs.row_ep, np.nan_to_num(hours, nan=np.inf))[row]
        return _discretize(len(self.labels), d.num_bins, ep=obs.row_ep[row], bins=bins, var=var, value=value, rank=rank)


@dataclass
class _Observations:
    """Rows (episode, time or NaN when unusable, line) and cells (row, variable, value)."""

    row_ep: np.ndarray
    row_hours: np.ndarray
    row_lines: np.ndarray
    cell_row: np.ndarray
    cell_var: np.ndarray
    cell_value: np.ndarray

    def concat(self, other: "_Observations") -> "_Observations":
        offset = len(self.row_ep)
        return _Observations(
            row_ep=np.concatenate([self.row_ep, other.row_ep]),
            row_hours=np.concatenate([self.row_hours, other.row_hours]),
            row_lines=np.concatenate([self.row_lines, other.row_lines]),
            cell_row=np.concatenate([self.cell_row, other.cell_row + offset]),
            cell_var=np.concatenate([self.cell_var, other.cell_var]),
            cell_value=np.concatenate([self.cell_value, other.cell_value]),
        )


_HEADER_BYTES = _HEADER_LINE.encode() + b"\n"
_BOM = b"\xef\xbb\xbf"


def _bulk_body(data: bytes) -> tuple[bytes, int] | None:
    """(body, rows) of a file in the exact IHM form, else None (the careful path reads it)."""
    if data.startswith(_BOM):
        data = data[3:]
    if not data.startswith(_HEADER_BYTES) or b'"' in data or b"\r" in data:
        return None
    body = data[len(_HEADER_BYTES) :]
    if not body:
        return None
    if not body.endswith(b"\n"):
        body += b"\n"
    rows = body.count(b"\n")
    if body.count(b",") != (_WIDTH - 1) * rows:
        return None
    if len(set(body.split(b"\n"))) != rows + 1:  # a repeated or blank line
        return None
    return body, rows


#: pandas column types of the bulk parse: numbers as float64, categories as the exact text.
_BULK_DTYPES = {name: ("category" if name in CATEGORICAL_VALUES else np.float64) for name in HEADER}


def _bulk_code(var: int, category) -> int:
    """One-hot position of a pandas category: the exact text, or (capillary refill, GCS total,
    whose categories pandas reads as numbers when every text is one) the number; -1 if neither."""
    if isinstance(category, str):
        return _CODES[var].get(category, -1)
    return _NUMERIC_CODES.get(var, {}).get(float(category), -1)


def _parse_bulk(buffer: bytes, counts: Sequence[int]) -> _Observations | None:
    """Clean IHM bodies -> observations (rows unassigned to episodes), or None when any line,
    number, time or category needs the careful path."""
    import pandas as pd

    data = np.frombuffer(buffer, dtype=np.uint8)
    line_ends = np.flatnonzero(data == 10)
    if len(line_ends) != sum(counts):
        return None
    commas = np.searchsorted(np.flatnonzero(data == 44), line_ends)  # commas before each line end
    if np.any(np.diff(commas, prepend=0) != _WIDTH - 1):  # every line exactly 18 cells
        return None
    try:
        frame = pd.read_csv(
            io.BytesIO(buffer), header=None, names=list(HEADER), dtype=_BULK_DTYPES, index_col=False,
            keep_default_na=False, na_values=[""], engine="c", low_memory=False,
        )
    except (ValueError, pd.errors.ParserError):  # a cell that is not a clean number
        return None
    if len(frame) != len(line_ends):
        return None
    hours = frame["Hours"].to_numpy(dtype=np.float64)
    if np.isnan(hours).any() or np.any(hours < -EPS) or not np.isfinite(hours).all():
        return None
    rows, variables, values = [], [], []
    for var, name in enumerate(VARIABLES):
        column = frame[name]
        if var in _CODES:  # a pandas categorical: map its (few) distinct texts, then the codes
            lookup = np.array([_bulk_code(var, c) for c in column.cat.categories], dtype=np.float64)
            if np.any(lookup < 0):  # another spelling or an unknown category
                return None
            found = column.cat.codes.to_numpy()
            where = np.flatnonzero(found >= 0)
            codes = lookup[found[where]]
        else:
            numbers = column.to_numpy(dtype=np.float64)
            where = np.flatnonzero(~np.isnan(numbers))
            codes = numbers[where]
            if not np.isfinite(codes).all():
                return None
        rows.append(where)
        variables.append(np.full(len(where), var, dtype=np.int64))
        values.append(codes)
    return _Observations(
        row_ep=np.zeros(0, dtype=np.int64),
        row_hours=hours,
        row_lines=np.zeros(0, dtype=np.int64),
        cell_row=np.concatenate(rows),
        cell_var=np.concatenate(variables),
        cell_value=np.concatenate(values),
    )


def _pick(items: list, index: np.ndarray) -> list:
    """``[items[i] for i in index]`` at C speed."""
    if len(index) == 0:
        return []
    if len(index) == 1:
        return [items[int(index[0])]]
    return list(itemgetter(*index.tolist())(items))


def _time_rank(row_ep: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Rank of each row in (episode, time, file order) order.

    Each episode's rows are contiguous; when their times never decrease (the normal case) the
    row index already is that order.
    """
    n = len(hours)
    if n < 2 or np.all((np.diff(hours) >= 0) | (np.diff(row_ep) != 0)):
        return np.arange(n, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), hours, row_ep))] = np.arange(n)
    return rank


def _cell_text(cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, (float, np.floating)) and math.isnan(cell):
        return ""
    return str(cell)


def _category_code(var: int, text: str) -> int | None:
    """One-hot position of a non-exact spelling; -1 for a blank cell, None when unknown."""
    stripped = text.strip()
    if not stripped:
        return -1
    code = _CODES[var].get(stripped)
    if code is None and var in _NUMERIC_CODES:
        try:
            code = _NUMERIC_CODES[var].get(float(stripped))
        except ValueError:
            code = None
    return code


def _discretize(n_eps: int, n_bins: int, *, ep, bins, var, value, rank) -> np.ndarray:
    """Observations -> (n_eps, n_bins, 76) float32: last value per bin, carry forward, one-hot, masks.

    ``rank`` orders the observations in time (ties: file order); in each (episode, bin,
    variable) cell the observation of highest rank wins.
    """
    X = np.zeros((n_eps * n_bins, NUM_CHANNELS), dtype=np.float32)
    size = n_eps * n_bins * _NUM_VARS
    grid = np.zeros(size, dtype=np.float64)
    seen = np.zeros(size, dtype=bool)
    if len(value):
        cell = (ep * n_bins + bins) * _NUM_VARS + var
        best = np.full(size, -1, dtype=np.int64)
        np.maximum.at(best, cell, rank)
        wins = rank == best[cell]  # (row, variable) pairs are unique, so one winner per cell
        grid[cell[wins]] = value[wins]
        seen[cell[wins]] = True
    grid = grid.reshape(n_eps, n_bins, _NUM_VARS)
    seen = seen.reshape(n_eps, n_bins, _NUM_VARS)
    # carry forward: the latest observed bin at or before each bin (-1: none yet -> normal value)
    latest = np.where(seen, np.arange(n_bins, dtype=np.int32)[None, :, None], np.int32(-1))
    np.maximum.accumulate(latest, axis=1, out=latest)
    filled = np.where(latest >= 0, np.take_along_axis(grid, np.maximum(latest, 0), axis=1), _NORMAL)
    filled = filled.reshape(n_eps * n_bins, _NUM_VARS)
    X[:, _CONTINUOUS_CHANNELS] = filled[:, _CONTINUOUS_VARS]
    every = np.arange(n_eps * n_bins)
    for k, start in _CATEGORICAL_STARTS:
        X[every, start + filled[:, k].astype(np.int64)] = 1.0
    X[:, _MASK_START:] = seen.reshape(n_eps * n_bins, _NUM_VARS)
    return X.reshape(n_eps, n_bins, NUM_CHANNELS)


def discretize_reference(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER, *, timestep: float = 1.0, hours: float = 48.0) -> np.ndarray:
    """The benchmark's own per-row discretizer, ported line by line (the oracle and speed baseline).

    Harutyunyan et al.'s ``Discretizer.transform(X, header, end=hours)`` with ``timestep``,
    ``store_masks=True``, ``impute_strategy="previous"``, ``start_time="zero"``. Like the
    original it needs clean input: times in order, known categories, numbers that parse (it
    raises ``ValueError`` otherwise). Use :class:`Discretizer` for real work.
    """
    if header[0] != "Hours":
        raise ValueError(f"header must start with 'Hours', got {header[0]!r}")
    eps = 1e-6
    channels = list(VARIABLES)
    channel_id = {c: i for i, c in enumerate(channels)}
    ts = [float(r[0]) for r in rows]
    for i in range(len(ts) - 1):
        if not ts[i] < ts[i + 1] + eps:
            raise ValueError(f"times must be in order: {ts[i]} then {ts[i + 1]}")
    max_hours = hours
    n_bins = int(max_hours / timestep + 1.0 - eps)
    begin = [CHANNEL_SPANS[c].start for c in channels]
    data = np.zeros((n_bins, MASK_INDEX[channels[0]]), dtype=float)
    mask = np.zeros((n_bins, len(channels)), dtype=int)
    original = [["" for _ in channels] for _ in range(n_bins)]

    def write(bin_id, channel, value):
        if channel in CATEGORICAL_VALUES:
            values = CATEGORICAL_VALUES[channel]
            one_hot = np.zeros(len(values))
            one_hot[values.index(value)] = 1
            for pos in range(len(values)):
                data[bin_id, begin[channel_id[channel]] + pos] = one_hot[pos]
        else:
            data[bin_id, begin[channel_id[channel]]] = float(value)

    for r in rows:
        t = float(r[0])
        if t > max_hours + eps:
            continue
        bin_id = int(t / timestep - eps)
        for j in range(1, len(r)):
            if r[j] == "":
                continue
            channel = header[j]
            mask[bin_id][channel_id[channel]] = 1
            write(bin_id, channel, r[j])
            original[bin_id][channel_id[channel]] = r[j]

    previous = [[] for _ in channels]
    for bin_id in range(n_bins):
        for channel in channels:
            cid = channel_id[channel]
            if mask[bin_id][cid] == 1:
                previous[cid].append(original[bin_id][cid])
                continue
            value = NORMAL_VALUES[channel] if not previous[cid] else previous[cid][-1]
            write(bin_id, channel, value)
    return np.hstack([data, mask.astype(np.float32)]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Normalizer
# --------------------------------------------------------------------------------------------
#: The floor of a fitted scale (the benchmark's ``eps``).
MIN_SCALE = 1e-7
#: IQR of a standard normal distribution: IQR / 1.349 estimates the standard deviation.
IQR_TO_STD = 1.3489795003921634


class Normalizer:
    """Standardize some channels of (N, T, C) tensors: ``(x - mean_) / std_``.

    ``fit`` learns, per channel, the mean and the sample standard deviation (ddof 1, floored at
    1e-7) over every bin of every training episode, as the benchmark does. With
    ``robust=True`` (opt-in; the choice is recorded in the saved JSON) ``mean_`` holds the median
    and ``std_`` the interquartile range / 1.349, which the real data's gross outliers do not
    inflate. Other channels (one-hots, masks) pass through unchanged.

    Args:
        channels: indices of the channels to standardize (``layout.continuous``).
        robust: median and scaled IQR instead of mean and standard deviation.

    Example:
        >>> norm = Normalizer(IHM_LAYOUT.continuous).fit(dataset)  # doctest: +SKIP  (train only)
        >>> Z = norm.transform(dataset.test.X)  # doctest: +SKIP
        >>> norm.save("models/x/normalizer.json")  # doctest: +SKIP
    """

    FORMAT = "condense.normalizer"
    FORMAT_VERSION = 1

    def __init__(self, channels: Sequence[int], robust: bool = False):
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("channels must name at least one channel, got none")
        if len(set(channels)) != len(channels) or min(channels) < 0:
            raise ValueError(f"channels must be distinct non-negative indices, got {list(channels)}")
        self.channels = channels
        self.robust = bool(robust)

    @classmethod
    def for_layout(cls, layout: ChannelLayout, robust: bool = False) -> "Normalizer":
        """A normalizer of ``layout``'s continuous channels."""
        return cls(layout.continuous, robust=robust)

    def fit(self, X) -> "Normalizer":
        """Learn ``mean_`` and ``std_`` from training data; returns self.

        ``X`` is a raw (N, T, C) array, a :class:`Split`, or a :class:`Dataset` (then only its
        ``train`` split is used: validation and test data never leak into the statistics).
        """
        X = _training_array(X)
        self._check(X, "fit")
        values = X[..., list(self.channels)].reshape(-1, len(self.channels)).astype(np.float64)
        if len(values) < 2:
            raise ValueError(f"fit needs at least 2 bins of data, got X of shape {X.shape}")
        if self.robust:
            q25, median, q75 = np.percentile(values, [25, 50, 75], axis=0)
            center, scale = median, (q75 - q25) / IQR_TO_STD
        else:
            center, scale = values.mean(axis=0), values.std(axis=0, ddof=1)
        self.mean_ = center
        self.std_ = np.maximum(scale, MIN_SCALE)
        self.n_samples_ = int(len(values))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """A float32 copy of ``X`` with the fitted channels standardized."""
        if not hasattr(self, "mean_"):
            raise ValueError("this Normalizer is not fitted yet; call fit(X_train) first")
        X = np.asarray(X)
        self._check(X, "transform")
        out = np.array(X, dtype=np.float32, copy=True)
        ch = list(self.channels)
        out[..., ch] = ((X[..., ch].astype(np.float64) - self.mean_) / self.std_).astype(np.float32)
        return out

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def _check(self, X: np.ndarray, what: str) -> None:
        if X.ndim < 2 or X.shape[-1] <= max(self.channels):
            raise ValueError(
                f"{what}: X has shape {X.shape}; channels up to {max(self.channels)} need a last "
                f"axis of at least {max(self.channels) + 1}"
            )

    def to_json(self) -> dict:
        """The constructor arguments and the fitted state, as plain JSON types."""
        if not hasattr(self, "mean_"):
            raise ValueError("this Normalizer is not fitted yet; nothing to save")
        return {
            "format": self.FORMAT,
            "version": self.FORMAT_VERSION,
            "channels": list(self.channels),
            "robust": self.robust,
            "statistics": "median / (IQR / 1.349)" if self.robust else "mean / sample std (ddof 1)",
            "min_scale": MIN_SCALE,
            "n_samples": self.n_samples_,
            "mean": [float(v) for v in self.mean_],
            "std": [float(v) for v in self.std_],
        }

    @classmethod
    def from_json(cls, obj: dict) -> "Normalizer":
        if not isinstance(obj, dict) or obj.get("format") != cls.FORMAT:
            got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"not a condense normalizer state: format {got!r}, expected {cls.FORMAT!r}")
        if obj.get("version") != cls.FORMAT_VERSION:
            raise ValueError(f"normalizer state version {obj.get('version')!r} is not supported (expected {cls.FORMAT_VERSION})")
        norm = cls(obj["channels"], robust=obj["robust"])
        mean = np.asarray(obj["mean"], dtype=np.float64)
        std = np.asarray(obj["std"], dtype=np.float64)
        if mean.shape != (len(norm.channels),) or std.shape != mean.shape:
            raise ValueError(f"normalizer state has {mean.size} means and {std.size} stds for {len(norm.channels)} channels")
        if not (np.all(np.isfinite(mean)) and np.all(std > 0)):
            raise ValueError("normalizer state has non-finite means or non-positive stds")
        norm.mean_, norm.std_ = mean, std
        norm.n_samples_ = int(obj.get("n_samples", 0))
        return norm

    def save(self, path) -> Path:
        """Write the state as JSON (atomically)."""
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "Normalizer":
        try:
            return cls.from_json(read_json(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"no normalizer state at {path}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "mean_") else "not fitted"
        return f"Normalizer(channels={list(self.channels)}, robust={self.robust}) [{fitted}]"


def _training_array(X) -> np.ndarray:
    if isinstance(X, Dataset):
        X = X.train
    if isinstance(X, Split):
        X = X.X
    return np.asarray(X)


# --------------------------------------------------------------------------------------------
# DNN features
# --------------------------------------------------------------------------------------------
def dnn_features(X: np.ndarray, layout: ChannelLayout, *, batch: int = 2048) -> np.ndarray:
    """(N, T, C) tensors -> (N, C) float32: each channel's mean over the bins where it was observed.

    A channel's "observed" bins are those where its mask channel (``layout.observed_by``) is 1.
    Channels with ``observed_by == -1`` (the masks themselves) average over all bins, which makes
    a mask's feature the fraction of observed bins. A channel never observed in an episode gets
    its mean over all bins (its imputed value). Works on raw or normalized tensors (the
    normalizer leaves masks alone). ``batch`` bounds the memory used (episodes at a time).
    """
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[-1] != layout.width:
        raise ValueError(f"dnn_features: expected X of shape (N, T, {layout.width}) for layout {layout.name!r}, got {X.shape}")
    observed_by = np.asarray(layout.observed_by, dtype=np.int64)
    has_mask = observed_by >= 0
    mask_of = np.where(has_mask, observed_by, 0)
    out = np.empty((X.shape[0], X.shape[2]), dtype=np.float32)
    for start in range(0, X.shape[0], batch):
        x = X[start : start + batch].astype(np.float64)
        observed = (x[:, :, mask_of] > 0.5) | ~has_mask[None, None, :]
        counts = observed.sum(axis=1)
        sums = np.where(observed, x, 0.0).sum(axis=1)
        mean_all = x.mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + batch] = np.where(counts > 0, sums / np.maximum(counts, 1), mean_all)
    return out
