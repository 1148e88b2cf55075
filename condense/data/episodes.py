"""Reading IHM episode files: CSV text -> (row, variable, value) observations, bad input counted.

An :class:`EpisodeBatch` collects episodes (files, file text, or rows given in memory) and turns
them all at once into :class:`Observations`: one entry per row (episode, time, line) and one per
non-empty usable cell (row, variable, value; categorical values as their one-hot position). Two
ways in, one result:

* the bulk path: a file in the exact IHM form (standard header, 18 cells on every line, no
  quotes, no blank or repeated lines) is kept as bytes, and all such files of a batch are parsed
  with one ``pandas.read_csv`` call (:func:`_parse_bulk`). Anything unusual in that parse sends
  those files to the careful path, so the bulk path never decides about bad input;
* the careful path: every other file is split with Python string operations into the standard
  column order and each cell is validated with Python's ``float`` and its variable's
  :data:`~condense.data.channels.PLAUSIBLE_RANGES` (a number float32 cannot hold, like
  ``1e308``, is outside every range); every problem is counted in
  an :class:`~condense.data.issues.IssueLog` (a bad cell is treated as missing, a bad row
  dropped, a file that cannot be used skipped).

Binning, last-value-wins and carry-forward happen downstream, in
:class:`~condense.data.preprocessing.Discretizer`. This module knows nothing of Keras.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from typing import Iterable, Sequence

import numpy as np

from condense.data.channels import CATEGORICAL_VALUES, EPS, HEADER, PLAUSIBLE_RANGES, VARIABLES
from condense.data.issues import IssueLog
from condense.data.numbers import floats_or_nan

# Deferred on purpose: pandas is imported inside the functions that use it, so importing this module stays light.

__all__ = ["EpisodeBatch", "Observations"]

_HEADER_LINE = ",".join(HEADER)

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
#: The plausible range of each continuous variable, by variable index (see
#: :data:`~condense.data.channels.PLAUSIBLE_RANGES`).
_RANGES: dict[int, tuple[float, float]] = {VARIABLES.index(v): bounds for v, bounds in PLAUSIBLE_RANGES.items()}
#: The largest float64 that float32 still holds as a finite number (rounding to nearest: up to
#: half a float32 step above float32's maximum rounds down to it).
_FLOAT32_MAX = float(np.nextafter(np.float64(np.finfo(np.float32).max) + 2.0 ** 103, 0.0))


def _implausible(var: int, numbers: np.ndarray) -> np.ndarray:
    """Positions of ``numbers`` (finite float64 or NaN) that variable ``var`` cannot hold: outside
    its plausible range, or not finite once stored as float32 (NaN is never implausible)."""
    low, high = _RANGES[var]
    return np.flatnonzero((numbers < low) | (numbers > high) | (np.abs(numbers) > _FLOAT32_MAX))


class EpisodeBatch:
    """A batch of episodes, parsed together into :class:`Observations` by :meth:`observations`.

    Two ways in, one result:

    * the bulk path: a file in the exact IHM form (standard header, 18 cells on every line, no
      quotes, no blank or repeated lines) is kept as bytes; :meth:`observations` parses all such
      files of the batch with one ``pandas.read_csv`` call (C tokenizer and float parser).
      Anything unusual in that parse (a cell that is not a clean number, a number outside its
      plausible range, an unknown category, a bad time) sends those files to the careful path
      instead, so the bulk path never decides about bad input;
    * the careful path: the file is split with Python string operations into the standard column
      order, keeping each row's ``Hours`` text and line number and the flat positions and texts
      of its non-empty cells; :meth:`observations` validates each of them with Python's
      ``float`` and counts every problem.

    Args:
        log: where problems are counted.
        end: the window's end in hours: cells of rows after it (which the discretizer drops)
            are not validated, so their problems are not counted.
        bulk: use the bulk path for clean files (False: the careful path for every file).
    """

    def __init__(self, log: IssueLog, *, end: float, bulk: bool = True):
        self.log = log
        self.end = end
        self.use_bulk = bool(bulk)
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

    @property
    def num_episodes(self) -> int:
        return len(self.labels)

    def count(self, kind: str, episode: int, line: int, message: str) -> None:
        """Count one problem of ``kind`` at ``line`` of ``episode`` (in reading order)."""
        self.log.add(kind, self.labels[episode], line, message, self.orders[episode] + (line,))

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
        bulk = _bulk_body(data) if self.use_bulk else None
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
    def observations(self) -> Observations:
        """Every row and usable cell of the batch: the bulk path's parse, then the careful path's.

        Rows keep their times (NaN where the time is unusable), including rows after ``end``:
        dropping those (and counting them) is the discretizer's business.
        """
        bulk = self._bulk_observations()  # first: it may hand files to the careful path
        obs = self._careful_observations()
        return obs if bulk is None else obs.concat(bulk)

    def _bulk_observations(self) -> Observations | None:
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

    def _careful_observations(self) -> Observations:
        """Validate the careful path's cells one by one, counting every problem."""

        def report(kind: str, row: int, message: str) -> None:
            self.count(kind, self.row_ep[row], self.row_lines[row], message)

        hours, bad, blank = _parse_floats(self.row_hours)
        for row in sorted(bad + blank):
            report("bad_hours", row, f"Hours is not a number: {self.row_hours[row]!r}; row dropped")
        for row in np.flatnonzero(hours < -EPS).tolist():  # the benchmark keeps -1e-6 < t < 0 (bin 0)
            report("bad_hours", row, f"Hours is negative: {self.row_hours[row]!r}; row dropped")
        usable = np.isfinite(hours) & (hours >= -EPS) & (hours <= self.end + EPS)

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
                implausible = _implausible(var, numbers)
                if len(implausible):
                    low, high = _RANGES[var]
                    for k in implausible.tolist():
                        if usable[cell_row[cells[k]]]:
                            why = ("does not fit in float32" if abs(numbers[k]) > _FLOAT32_MAX
                                   else f"is outside the plausible range [{low:g}, {high:g}]")
                            report(f"implausible_value:{name}", int(cell_row[cells[k]]),
                                   f"{name!r} value {cell_texts[k]!r} {why}; treated as missing")
                    numbers[implausible] = np.nan
                value[cells] = numbers
        keep = (column > 0) & ~np.isnan(value)
        return Observations(
            row_ep=np.asarray(self.row_ep, dtype=np.int64),
            row_hours=np.where(np.isfinite(hours) & (hours >= -EPS), hours, np.nan),
            row_lines=np.asarray(self.row_lines, dtype=np.int64),
            cell_row=cell_row[keep],
            cell_var=column[keep] - 1,
            cell_value=value[keep],
        )


@dataclass
class Observations:
    """Rows (episode, time or NaN when unusable, 1-based line) and cells (row, variable, value).

    ``cell_var`` is the variable's index in :data:`~condense.data.channels.VARIABLES`;
    ``cell_value`` a number, or for a categorical variable its one-hot position.
    """

    row_ep: np.ndarray
    row_hours: np.ndarray
    row_lines: np.ndarray
    cell_row: np.ndarray
    cell_var: np.ndarray
    cell_value: np.ndarray

    def concat(self, other: "Observations") -> "Observations":
        offset = len(self.row_ep)
        return Observations(
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


#: pandas column types of the bulk parse: numbers as float64; categorical variables as pandas
#: categoricals (few distinct texts, each looked up once; see :func:`_bulk_code`).
_BULK_DTYPES = {name: ("category" if name in CATEGORICAL_VALUES else np.float64) for name in HEADER}


def _exact_floats(pd) -> dict:
    """read_csv options that make its numbers exactly Python's ``float(text)``: pandas >= 3.1
    always parses with fast_float (correctly rounded); older versions need ``round_trip``."""
    major, minor = (int(part) for part in pd.__version__.split(".")[:2])
    return {} if (major, minor) >= (3, 1) else {"float_precision": "round_trip"}


def _bulk_code(var: int, category) -> int:
    """One-hot position of a pandas category: the exact text, or (capillary refill, GCS total,
    whose categories pandas reads as numbers when every text is one) the number; -1 if neither."""
    if isinstance(category, str):
        return _CODES[var].get(category, -1)
    return _NUMERIC_CODES.get(var, {}).get(float(category), -1)


def _parse_bulk(buffer: bytes, counts: Sequence[int]) -> Observations | None:
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
            keep_default_na=False, na_values=[""], engine="c", low_memory=False, **_exact_floats(pd),
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
            if not np.isfinite(codes).all() or len(_implausible(var, codes)):  # counted by the careful path
                return None
        rows.append(where)
        variables.append(np.full(len(where), var, dtype=np.int64))
        values.append(codes)
    return Observations(
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


def _parse_floats(strings: list[str]) -> tuple[np.ndarray, list[int], list[int]]:
    """Strings -> float64 array, positions that are not finite numbers, positions that are blank.

    Bad and blank positions hold NaN. The common case (all good) is one C-level pass.
    """
    try:
        values = np.fromiter(map(float, strings), dtype=np.float64, count=len(strings))
    except ValueError:
        values = floats_or_nan(strings)
    bad: list[int] = []
    blank: list[int] = []
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        values[i] = np.nan
        (blank if not strings[i].strip() else bad).append(i)
    return values, bad, blank


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
