"""PhysioNet/CinC Challenge 2012 ("Predicting Mortality of ICU Patients") raw records -> arrays.

Input (``PATH`` in ``--data physionet2012:PATH``) is one of

- the challenge archive (``set-a.tar.gz``; any tar compression), read as a stream, never
  extracted to disk;
- a folder holding exactly one ``set-*/`` folder of ``<RecordID>.txt`` files, with the matching
  ``Outcomes-*.txt`` beside it;
- the ``set-*/`` folder itself (the outcomes file is looked for inside it and beside it).

Each record file has the header ``Time,Parameter,Value`` and one row per measurement, ``Time``
``HH:MM`` since ICU admission. The outcomes file (``RecordID,SAPS-I,SOFA,Length_of_stay,
Survival,In-hospital_death``) is optional: without it every label is ``-1`` so unlabelled records
can still be scored. A value of ``-1`` means "not recorded".

Discretization (the IHM benchmark's rules, ``shared/reference/ihm-format.md``)
----------------------------------------------------------------------------
- 48 hourly bins; a row at ``t = HH + MM/60`` hours goes to bin ``int(t - 1e-6)``
  (``00:00`` and ``01:00`` -> bin 0, ``01:30`` -> bin 1, ``48:00`` -> bin 47); rows after 48 h are
  dropped and counted (``after_48h``).
- Several values of a variable in one bin: the last one in time order (then file order) wins.
- Empty bins carry the last observed value forward; before a variable's first observation the
  fitted imputation value is used (see "Fitted state").
- Static descriptors are repeated in every bin.

Channels (82), in tensor order (:data:`PHYSIONET_LAYOUT`)
--------------------------------------------------------
=======  ===================================================================================
0-36     the 37 time-series variables, in :data:`TIME_SERIES_VARIABLES` order: ALP, ALT, AST,
         Albumin, BUN, Bilirubin, Cholesterol, Creatinine, DiasABP, FiO2, GCS, Glucose, HCO3,
         HCT, HR, K, Lactate, MAP, MechVent, Mg, NIDiasABP, NIMAP, NISysABP, Na, PaCO2, PaO2,
         Platelets, RespRate, SaO2, SysABP, Temp, TroponinI, TroponinT, Urine, WBC, Weight, pH
37-73    ``mask-><variable>`` for the same 37 variables: 1 where the bin held a real (valid)
         measurement, 0 where the value was carried forward or imputed
74       ``Age`` (years)
75       ``Gender`` (0 female, 1 male)
76       ``Height`` (cm)
77       ``AdmissionWeight`` (kg): the ``Weight`` descriptor row at ``00:00``
78-81    ``ICUType->1`` .. ``ICUType->4`` one-hot (1 coronary care, 2 cardiac surgery recovery,
         3 medical ICU, 4 surgical ICU)
=======  ===================================================================================

``Weight`` is both a descriptor and a time series: in the challenge files every record has
exactly one ``Weight`` row at ``00:00``, the admission weight; that row is the static
``AdmissionWeight`` and every later ``Weight`` row belongs to the ``Weight`` time series.
``MechVent`` is an indicator (1 while ventilated), imputed with 0 before its first row.

Continuous channels (standardized by the normalizer): the 36 time-series variables other than
``MechVent``, plus ``Age``, ``Height`` and ``AdmissionWeight``. ``observed_by`` points every
time-series channel at its mask; masks and static channels have ``-1``.

Fitted state: outliers and imputation (:class:`PhysioNetState`), fitted on TRAIN records only
---------------------------------------------------------------------------------------------
1. Impossible values: a value outside the fixed per-variable range :data:`VALID_RANGES`
   (e.g. ``Temp`` -17.8 degC, ``pH`` 735, ``HR`` 0, ``Height`` 431.8 cm) is treated as missing
   and counted as ``out_of_range:<var>``. ``-1`` in a time series is counted as
   ``missing_marker:<var>``; ``-1`` in a descriptor is the format's "not recorded" and is not
   an issue.
2. Gross outliers: valid values are winsorized to the 0.1 / 99.9 percentiles of the valid
   training measurements of that variable (every measurement in the 48 h window, all training
   records pooled); each clipped value is counted as ``winsorized:<var>``.
3. Imputation before the first observation: the median of the cleaned training measurements
   (``MechVent``: 0; ``Gender`` and ``ICUType``: the most frequent training value). A variable
   with no training measurement falls back to :data:`NORMAL_VALUES`.

The state is a JSON-serializable object (:meth:`PhysioNetState.to_json`) saved with a model;
:func:`load_physionet2012_records` applies a saved state to records it has never seen, never
refitting. The arrays of a record depend only on that record and the state, so nothing about
the validation or test records leaks into the training arrays.

Splits
------
Seeded record-level split (a record is one ICU stay of one patient), stratified by label
(``-1`` unlabelled records form their own stratum), 70 / 15 / 15 by default. Totals are exact
to within one record of ``n * fraction``; each split lists its records in ascending RecordID.

Bad input
---------
Malformed lines (not three fields, a time that is not ``HH:MM``, a value that is not a finite
number), unknown parameter names, a missing header, a ``RecordID`` row that disagrees with the
file name, bad outcome rows and labels are counted in ``Dataset.issues`` and treated as missing;
with ``strict=True`` the first of them raises :class:`DataError` naming ``file:line`` and the
value. Value plausibility (steps 1-2 above) is a cleaning rule, not a format error: it always
applies and is always counted. A truncated or corrupt archive raises one :class:`DataError`
naming the archive.

Speed: the archive is decompressed once in memory; clean records are parsed together by the
pandas C parser, and only records with a problem go through the line-by-line reference parser
(which words every message). :func:`load_physionet2012` caches its arrays
(:mod:`condense.data.cache`) under a key made of the data's SHA-256 and every setting above.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import re
import sys
import tarfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from condense.data.cache import ArrayCache, cache_key
from condense.data.dataset import DataError, Dataset, Split
from condense.data.layout import ChannelLayout
from condense.data.progress import Progress

__all__ = [
    "ICU_TYPES",
    "NORMAL_VALUES",
    "NUM_BINS",
    "PHYSIONET_LAYOUT",
    "PhysioNetState",
    "RawRecords",
    "STATIC_DESCRIPTORS",
    "TIME_SERIES_VARIABLES",
    "VALID_RANGES",
    "WINSOR_QUANTILES",
    "fit_state_from_train",
    "load_physionet2012",
    "load_physionet2012_records",
    "read_records",
    "split_records",
]

#: Bumped whenever the arrays produced for the same input and settings change (cache key).
FORMAT_VERSION = 1
NUM_BINS = 48
HOURS = 48.0

#: The 37 time-series variables of the challenge (``sorted`` order, which is the tensor order).
TIME_SERIES_VARIABLES: tuple[str, ...] = (
    "ALP", "ALT", "AST", "Albumin", "BUN", "Bilirubin", "Cholesterol", "Creatinine", "DiasABP",
    "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "MAP", "MechVent", "Mg",
    "NIDiasABP", "NIMAP", "NISysABP", "Na", "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2",
    "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC", "Weight", "pH",
)
#: Static descriptors after ``RecordID``, as they are named in the state and the layout.
STATIC_DESCRIPTORS: tuple[str, ...] = ("Age", "Gender", "Height", "AdmissionWeight", "ICUType")
#: Continuous static descriptors (one channel each, standardized by the normalizer).
STATIC_CONTINUOUS: tuple[str, ...] = ("Age", "Height", "AdmissionWeight")
#: ``ICUType`` codes, in one-hot order.
ICU_TYPES: tuple[int, ...] = (1, 2, 3, 4)
#: Time-series variables that are indicators, not measurements: not standardized, imputed 0.
INDICATORS: tuple[str, ...] = ("MechVent",)
#: Winsorizing percentiles (as quantiles) fitted on the valid training measurements.
WINSOR_QUANTILES: tuple[float, float] = (0.001, 0.999)

#: Physiologically possible range per variable (inclusive, challenge units); outside -> missing.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "ALP": (1.0, 10000.0),          # U/L
    "ALT": (1.0, 20000.0),          # U/L
    "AST": (1.0, 30000.0),          # U/L
    "Albumin": (0.5, 8.0),          # g/dL
    "BUN": (1.0, 300.0),            # mg/dL
    "Bilirubin": (0.1, 80.0),       # mg/dL
    "Cholesterol": (20.0, 1000.0),  # mg/dL
    "Creatinine": (0.1, 40.0),      # mg/dL
    "DiasABP": (1.0, 300.0),        # mmHg, invasive
    "FiO2": (0.21, 1.0),            # fraction
    "GCS": (3.0, 15.0),
    "Glucose": (10.0, 2500.0),      # mg/dL
    "HCO3": (1.0, 60.0),            # mmol/L
    "HCT": (5.0, 75.0),             # %
    "HR": (1.0, 300.0),             # bpm
    "K": (1.0, 15.0),               # mEq/L
    "Lactate": (0.1, 40.0),         # mmol/L
    "MAP": (1.0, 300.0),            # mmHg, invasive
    "MechVent": (0.0, 1.0),         # indicator
    "Mg": (0.1, 10.0),              # mmol/L
    "NIDiasABP": (1.0, 300.0),      # mmHg, non-invasive
    "NIMAP": (1.0, 300.0),
    "NISysABP": (1.0, 350.0),
    "Na": (90.0, 200.0),            # mEq/L
    "PaCO2": (5.0, 200.0),          # mmHg
    "PaO2": (1.0, 800.0),           # mmHg
    "Platelets": (1.0, 3000.0),     # 10^3/uL
    "RespRate": (1.0, 100.0),       # breaths/min
    "SaO2": (1.0, 100.0),           # %
    "SysABP": (1.0, 350.0),         # mmHg, invasive
    "Temp": (25.0, 45.0),           # degC
    "TroponinI": (0.0, 100.0),      # ug/L
    "TroponinT": (0.0, 100.0),      # ug/L
    "Urine": (0.0, 20000.0),        # mL per charting interval
    "WBC": (0.1, 500.0),            # 10^3/uL
    "Weight": (10.0, 400.0),        # kg
    "pH": (6.5, 8.0),
    "Age": (0.0, 120.0),            # years (the challenge caps at 90)
    "Gender": (0.0, 1.0),           # 0 female, 1 male
    "Height": (100.0, 250.0),       # cm
    "AdmissionWeight": (10.0, 400.0),  # kg
    "ICUType": (1.0, 4.0),
}

#: Imputation fallback for a variable with no valid training measurement (adult normal values).
NORMAL_VALUES: dict[str, float] = {
    "ALP": 80.0, "ALT": 25.0, "AST": 30.0, "Albumin": 3.5, "BUN": 15.0, "Bilirubin": 0.7,
    "Cholesterol": 170.0, "Creatinine": 1.0, "DiasABP": 60.0, "FiO2": 0.21, "GCS": 15.0,
    "Glucose": 120.0, "HCO3": 24.0, "HCT": 40.0, "HR": 80.0, "K": 4.2, "Lactate": 1.2,
    "MAP": 80.0, "MechVent": 0.0, "Mg": 2.0, "NIDiasABP": 60.0, "NIMAP": 80.0, "NISysABP": 120.0,
    "Na": 140.0, "PaCO2": 40.0, "PaO2": 95.0, "Platelets": 250.0, "RespRate": 16.0, "SaO2": 97.0,
    "SysABP": 120.0, "Temp": 37.0, "TroponinI": 0.5, "TroponinT": 0.05, "Urine": 60.0,
    "WBC": 8.0, "Weight": 80.0, "pH": 7.4,
    "Age": 65.0, "Gender": 1.0, "Height": 170.0, "AdmissionWeight": 80.0, "ICUType": 3.0,
}

_V = len(TIME_SERIES_VARIABLES)
_TS_INDEX = {name: k for k, name in enumerate(TIME_SERIES_VARIABLES)}
# Static columns in RawRecords.static: Age, Gender, Height, AdmissionWeight, ICUType.
_S = len(STATIC_DESCRIPTORS)
_STATIC_COLUMN = {"Age": 0, "Gender": 1, "Height": 2, "ICUType": 4}  # "Weight" at 00:00 -> 3
_ADMISSION_WEIGHT = 3
_WEIGHT = _TS_INDEX["Weight"]
_HEADER = "Time,Parameter,Value"
#: The outcomes file's bedside severity scores: ``Dataset.extras`` key -> name in tables.
#: Higher means sicker, so each score is used as-is as a risk score (AUROC on records with a score).
REFERENCE_SCORES = {"saps_i": "SAPS-I", "sofa": "SOFA"}
_TIME_RE = re.compile(r"^(\d{1,4}):([0-5]\d)$")
_SET_DIR_RE = re.compile(r"^set-[^/]+$")
_OUTCOMES_RE = re.compile(r"^Outcomes-([^/]+)\.txt$")
_RECORD_RE = re.compile(r"^(\d+)\.txt$")
_STATE_FORMAT = "condense.physionet2012.state"


def _build_layout() -> ChannelLayout:
    names = list(TIME_SERIES_VARIABLES)
    variables = list(TIME_SERIES_VARIABLES)
    names += [f"mask->{v}" for v in TIME_SERIES_VARIABLES]
    variables += list(TIME_SERIES_VARIABLES)
    names += ["Age", "Gender", "Height", "AdmissionWeight"] + [f"ICUType->{k}" for k in ICU_TYPES]
    variables += ["Age", "Gender", "Height", "AdmissionWeight"] + ["ICUType"] * len(ICU_TYPES)
    observed_by = [_V + k for k in range(_V)] + [-1] * (len(names) - _V)
    continuous = [k for k, v in enumerate(TIME_SERIES_VARIABLES) if v not in INDICATORS]
    continuous += [names.index(v) for v in STATIC_CONTINUOUS]
    return ChannelLayout(
        name="physionet2012",
        names=tuple(names),
        continuous=tuple(continuous),
        observed_by=tuple(observed_by),
        variables=tuple(variables),
    )


#: The 82-channel layout of PhysioNet 2012 arrays (see the module docstring).
PHYSIONET_LAYOUT = _build_layout()
NUM_CHANNELS = PHYSIONET_LAYOUT.width
assert NUM_CHANNELS == 82
assert set(VALID_RANGES) == set(TIME_SERIES_VARIABLES) | set(STATIC_DESCRIPTORS) == set(NORMAL_VALUES)


# --------------------------------------------------------------------------------------------
# Reading


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


@dataclass
class _Files:
    """The bytes of one set: record files and the optional outcomes file, plus a content hash."""

    source: str
    records: list[tuple[str, str, bytes]]  # (where, RecordID, bytes)
    outcomes: tuple[str, bytes] | None
    data_hash: str
    ignored: int


def _decompress(raw: bytes) -> bytes:
    """The tar bytes inside a gzip, bzip2 or xz archive (by magic number); plain tar as is."""
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw)
    return raw


def _read_archive(path: Path) -> _Files:
    """Stream every member of a tar archive (any compression) into memory, then pick the set."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read archive: {exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    members: dict[str, bytes] = {}
    try:
        # Decompress the whole stream first: the compressors check their end-of-stream marker
        # and checksum, which tarfile's streaming reader does not (a cut-off archive could
        # otherwise end cleanly on a member boundary and pass for a smaller one).
        with tarfile.open(fileobj=io.BytesIO(_decompress(raw)), mode="r:") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                fh = tf.extractfile(member)
                members[member.name] = fh.read() if fh is not None else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from None
    return _pick_set(path, members, digest, lambda name: f"{path}:{name}")


def _read_folder(path: Path) -> _Files:
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
    for p in sorted(set_dir.iterdir()):
        if p.is_file() and not _OUTCOMES_RE.match(p.name):
            name = f"{set_dir.name}/{p.name}"
            members[name], where[name] = p.read_bytes(), str(p)
    for folder in outcome_dirs:
        for p in sorted(folder.glob("Outcomes-*.txt")):
            if p.is_file() and p.name not in members:  # the set folder's own copy wins
                members[p.name], where[p.name] = p.read_bytes(), str(p)
    digest = hashlib.sha256()
    for name in sorted(members):
        digest.update(PurePosixPath(name).name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    return _pick_set(path, members, digest.hexdigest(), where.__getitem__, set_name=set_dir.name)


def _pick_set(path: Path, members: dict[str, bytes], digest: str, where_of, set_name: str | None = None) -> _Files:
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
    return _Files(
        source=str(path),
        records=records,
        outcomes=(where_of(chosen), members[chosen]) if chosen else None,
        data_hash=digest,
        ignored=ignored,
    )


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
        out = np.empty(len(values), dtype=np.float64)
        for k, text in enumerate(values):
            try:
                out[k] = float(text)
            except ValueError:
                out[k] = math.nan
        return out


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


def _read_files(path: str | os.PathLike) -> _Files:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"{p}: no such file or folder (expected set-a.tar.gz, a folder with set-*/, or a set-*/ folder)"
        )
    return _read_archive(p) if p.is_file() else _read_folder(p)


def _parse_files(files: _Files, *, strict: bool, quiet: bool) -> RawRecords:
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
    return _parse_files(_read_files(path), strict=strict, quiet=quiet)


# --------------------------------------------------------------------------------------------
# Fitted state


@dataclass
class PhysioNetState:
    """Per-variable cleaning and imputation fitted on training records (see the module docstring).

    ``variables`` maps every time-series variable and static descriptor to
    ``{"valid": [lo, hi], "clip": [lo, hi], "impute": value, "n_train": count}``: values outside
    ``valid`` become missing, valid values are clipped to ``clip``, and ``impute`` fills the bins
    before a variable's first observation (or a missing descriptor). Build it with
    :meth:`fit` (or :func:`fit_state_from_train`); persist exactly :meth:`to_json`.

    Example::

        state = PhysioNetState.fit(raw, train_index)
        X, issues = state.transform(raw)
        same = PhysioNetState.from_json(json.loads(json.dumps(state.to_json())))
    """

    variables: dict[str, dict]
    winsor_quantiles: tuple[float, float] = WINSOR_QUANTILES
    n_train_records: int = 0

    @classmethod
    def fit(cls, raw: RawRecords, train_index=None, *, winsor_quantiles=WINSOR_QUANTILES) -> "PhysioNetState":
        """Fit ranges, clip bounds and imputation values on the records ``train_index`` of ``raw``."""
        lo_q, hi_q = (float(q) for q in winsor_quantiles)
        if not 0.0 <= lo_q < hi_q <= 1.0:
            raise ValueError(f"winsor_quantiles must satisfy 0 <= low < high <= 1, got {winsor_quantiles}")
        index = np.arange(len(raw)) if train_index is None else np.asarray(train_index, dtype=np.int64)
        in_train = np.zeros(len(raw), dtype=bool)
        in_train[index] = True
        keep = in_train[raw.event_record]
        ev_var, ev_val = raw.event_variable[keep], raw.event_value[keep]
        order = np.argsort(ev_var, kind="stable")
        ev_var, ev_val = ev_var[order], ev_val[order]
        bounds = np.searchsorted(ev_var, np.arange(_V + 1))
        variables: dict[str, dict] = {}
        for k, name in enumerate(TIME_SERIES_VARIABLES):
            values = ev_val[bounds[k]:bounds[k + 1]]
            variables[name] = _fit_variable(name, values, lo_q, hi_q)
        static = raw.static[index]
        for col, name in enumerate(STATIC_DESCRIPTORS):
            variables[name] = _fit_variable(name, static[:, col], lo_q, hi_q)
        return cls(variables=variables, winsor_quantiles=(lo_q, hi_q), n_train_records=int(len(index)))

    def to_json(self) -> dict:
        return {
            "format": _STATE_FORMAT,
            "version": FORMAT_VERSION,
            "layout": PHYSIONET_LAYOUT.name,
            "channels": list(PHYSIONET_LAYOUT.names),
            "winsor_quantiles": list(self.winsor_quantiles),
            "n_train_records": self.n_train_records,
            "variables": {
                name: {
                    "valid": [float(v) for v in spec["valid"]],
                    "clip": [float(v) for v in spec["clip"]],
                    "impute": float(spec["impute"]),
                    "n_train": int(spec["n_train"]),
                }
                for name, spec in self.variables.items()
            },
        }

    @classmethod
    def from_json(cls, obj: dict) -> "PhysioNetState":
        if not isinstance(obj, dict) or obj.get("format") != _STATE_FORMAT:
            found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"not a PhysioNet 2012 preprocessing state (format {found!r})")
        if obj.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"PhysioNet 2012 state version {obj.get('version')!r}; this condense reads version {FORMAT_VERSION}"
            )
        if list(obj.get("channels", ())) != list(PHYSIONET_LAYOUT.names):
            raise ValueError("PhysioNet 2012 state was saved for a different channel list")
        variables = {}
        wanted = TIME_SERIES_VARIABLES + STATIC_DESCRIPTORS
        missing = [v for v in wanted if v not in obj["variables"]]
        if missing:
            raise ValueError(f"PhysioNet 2012 state lacks variables {missing}")
        for name in wanted:
            spec = obj["variables"][name]
            valid, clip = [float(v) for v in spec["valid"]], [float(v) for v in spec["clip"]]
            impute = float(spec["impute"])
            ordered = len(valid) == len(clip) == 2 and valid[0] <= clip[0] <= clip[1] <= valid[1]
            if not ordered or not math.isfinite(impute):
                raise ValueError(f"PhysioNet 2012 state: bad entry for {name!r}: {spec}")
            variables[name] = {"valid": valid, "clip": clip, "impute": impute, "n_train": int(spec.get("n_train", 0))}
        q = tuple(float(v) for v in obj.get("winsor_quantiles", WINSOR_QUANTILES))
        return cls(variables=variables, winsor_quantiles=q, n_train_records=int(obj.get("n_train_records", 0)))

    def _table(self, names) -> tuple[np.ndarray, ...]:
        spec = [self.variables[n] for n in names]
        return (np.array([s["valid"][0] for s in spec]), np.array([s["valid"][1] for s in spec]),
                np.array([s["clip"][0] for s in spec]), np.array([s["clip"][1] for s in spec]),
                np.array([s["impute"] for s in spec]))

    def transform(self, raw: RawRecords) -> tuple[np.ndarray, dict[str, int]]:
        """Discretize every record of ``raw`` with this state: (N, 48, 82) float32 and issue counts."""
        n = len(raw)
        counts: Counter = Counter()
        v_lo, v_hi, c_lo, c_hi, impute = self._table(TIME_SERIES_VARIABLES)

        var, value = raw.event_variable, raw.event_value.copy()
        marker = value == -1
        invalid = ~marker & ((value < v_lo[var]) | (value > v_hi[var]))
        _count_by(counts, "missing_marker", var[marker], TIME_SERIES_VARIABLES)
        _count_by(counts, "out_of_range", var[invalid], TIME_SERIES_VARIABLES)
        keep = ~(marker | invalid)
        var, value = var[keep], value[keep]
        low, high = value < c_lo[var], value > c_hi[var]
        _count_by(counts, "winsorized", var[low | high], TIME_SERIES_VARIABLES)
        value = np.clip(value, c_lo[var], c_hi[var])
        rec, hours, order = raw.event_record[keep], raw.event_hours[keep], raw.event_order[keep]
        bins = (hours - 1e-6).astype(np.int64)  # truncates toward zero: t = 0 -> bin 0
        cell = (rec * NUM_BINS + bins) * _V + var
        # last wins: sort by cell, then time, then file order; keep the last row of every cell
        pos = np.lexsort((order, hours, cell))
        cell, value = cell[pos], value[pos]
        last = np.ones(len(cell), dtype=bool)
        last[:-1] = cell[1:] != cell[:-1]
        X = np.empty((n, NUM_BINS, NUM_CHANNELS), dtype=np.float32)
        values = np.full((n, NUM_BINS, _V), np.nan, dtype=np.float32)
        values.reshape(-1)[cell[last]] = value[last]
        X[:, :, _V:2 * _V] = ~np.isnan(values)  # masks
        # carry forward bin by bin, then impute what precedes each variable's first observation
        previous = np.broadcast_to(impute.astype(np.float32), (n, _V))
        for b in range(NUM_BINS):
            current = values[:, b, :]
            np.copyto(current, previous, where=np.isnan(current))
            previous = current
        X[:, :, :_V] = values
        X[:, :, 2 * _V:] = self._static(raw.static, counts)[:, None, :]
        return X, dict(sorted(counts.items()))

    def _static(self, raw_static: np.ndarray, counts: Counter) -> np.ndarray:
        """(N, 5) raw descriptors -> (N, 8) channels: Age, Gender, Height, AdmissionWeight, ICUType one-hot."""
        v_lo, v_hi, c_lo, c_hi, impute = self._table(STATIC_DESCRIPTORS)
        values = raw_static.copy()
        present = ~np.isnan(values)
        invalid = present & ((values < v_lo) | (values > v_hi))
        gender, icu = STATIC_DESCRIPTORS.index("Gender"), STATIC_DESCRIPTORS.index("ICUType")
        invalid[:, gender] |= present[:, gender] & ~np.isin(values[:, gender], (0.0, 1.0))
        invalid[:, icu] |= present[:, icu] & ~np.isin(values[:, icu], ICU_TYPES)
        for col, name in enumerate(STATIC_DESCRIPTORS):
            if invalid[:, col].any():
                counts[f"out_of_range:{name}"] += int(invalid[:, col].sum())
        values[invalid] = np.nan
        clipped = (values < c_lo) | (values > c_hi)
        for col, name in enumerate(STATIC_DESCRIPTORS):
            if clipped[:, col].any():
                counts[f"winsorized:{name}"] += int(clipped[:, col].sum())
        values = np.clip(values, c_lo, c_hi)
        values = np.where(np.isnan(values), impute[None, :], values)
        onehot = (values[:, icu:icu + 1] == np.array(ICU_TYPES, dtype=np.float64)[None, :]).astype(np.float64)
        return np.concatenate([values[:, :icu], onehot], axis=1)


def _fit_variable(name: str, values: np.ndarray, lo_q: float, hi_q: float) -> dict:
    lo, hi = VALID_RANGES[name]
    values = values[~np.isnan(values)]
    values = values[(values >= lo) & (values <= hi)]
    if name in ("Gender", "ICUType"):
        allowed = (0.0, 1.0) if name == "Gender" else tuple(float(k) for k in ICU_TYPES)
        values = values[np.isin(values, allowed)]
    if len(values) == 0:
        return {"valid": [lo, hi], "clip": [lo, hi], "impute": NORMAL_VALUES[name], "n_train": 0}
    if name in INDICATORS or name in ("Gender", "ICUType"):
        clip = [lo, hi]  # categorical / indicator: nothing to winsorize
    else:
        clip = [float(v) for v in np.quantile(values, [lo_q, hi_q])]
    if name in INDICATORS:
        impute = 0.0  # not ventilated until the first MechVent row
    elif name in ("Gender", "ICUType"):
        kinds, freq = np.unique(values, return_counts=True)
        impute = float(kinds[np.argmax(freq)])  # the most frequent; ties -> the smallest code
    else:
        impute = float(np.median(np.clip(values, clip[0], clip[1])))
    return {"valid": [lo, hi], "clip": clip, "impute": impute, "n_train": int(len(values))}


def _count_by(counts: Counter, prefix: str, var: np.ndarray, names) -> None:
    if len(var):
        for k, c in zip(*np.unique(var, return_counts=True)):
            counts[f"{prefix}:{names[k]}"] += int(c)


def fit_state_from_train(raw: RawRecords, train_index=None, *, winsor_quantiles=WINSOR_QUANTILES) -> PhysioNetState:
    """Fit a :class:`PhysioNetState` on the training records of ``raw`` (all records if None)."""
    return PhysioNetState.fit(raw, train_index, winsor_quantiles=winsor_quantiles)


# --------------------------------------------------------------------------------------------
# Splits and the Dataset


def split_records(y, *, seed: int = 0, fractions=(0.70, 0.15, 0.15)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded record-level train/val/test indices, stratified by label (``-1`` is a stratum).

    Records are ordered by (label, random key); walking that order, each record joins the split
    furthest below its share so far, so every stratum is split in proportion and each total is
    within one record of ``len(y) * fraction``. Indices come back sorted.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not math.isclose(float(f.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    y = np.asarray(y)
    n = len(y)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(n), y))
    taken = np.zeros(3)
    assign = np.empty(n, dtype=np.int64)
    for k, i in enumerate(order):
        j = int(np.argmax((k + 1) * f - taken))
        assign[i] = j
        taken[j] += 1
    return tuple(np.flatnonzero(assign == j) for j in range(3))


def _settings(seed: int, split) -> dict:
    return {
        "reader": "physionet2012",
        "format_version": FORMAT_VERSION,
        "seed": int(seed),
        "split": [float(s) for s in split],
        "winsor_quantiles": list(WINSOR_QUANTILES),
        "valid_ranges": {k: list(v) for k, v in sorted(VALID_RANGES.items())},
        "normal_values": dict(sorted(NORMAL_VALUES.items())),
    }


def load_physionet2012(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    strict: bool = False,
    cache_dir=None,
    quiet: bool = False,
    split=(0.70, 0.15, 0.15),
    use_cache: bool = True,
) -> Dataset:
    """Read a PhysioNet 2012 set into train/val/test arrays (raw values, not normalized).

    The outlier/imputation state is fitted on the training records only and returned as JSON in
    ``extras["source_state"]`` (save it with a model; score new records with
    :func:`load_physionet2012_records`). ``extras["saps_i"]`` and ``extras["sofa"]`` hold the
    outcomes file's scores per split (NaN where ``-1``); ``extras["reference_scores"]`` names
    them (:data:`REFERENCE_SCORES`) for the benchmark's reference rows. Arrays are cached on disk
    (:mod:`condense.data.cache`), keyed by the data's content hash and these settings.

    Args:
        path: ``set-a.tar.gz``, a folder holding one ``set-*/`` folder, or the set folder.
        seed: seed of the stratified record-level split.
        strict: raise at the first format problem (``file:line``) instead of counting it.
        cache_dir: cache folder; default ``$CONDENSE_CACHE`` or ``~/.cache/condense``.
        quiet: no progress output.
        split: train/val/test fractions.
        use_cache: read and write the array cache (False: always parse, write nothing).
    """
    started = time.perf_counter()
    files = _read_files(path)
    settings = _settings(seed, split)
    fingerprint = cache_key("physionet2012", files.data_hash, settings)
    key = cache_key(fingerprint, "strict" if strict else "lenient")  # strict must re-check the input
    cache = ArrayCache(cache_dir) if use_cache else None
    cached = cache.get("physionet2012", key) if cache is not None else None
    if cached is not None:
        dataset = _dataset_from_arrays(cached, fingerprint)
        _report(dataset, files.source, time.perf_counter() - started, quiet, cached=True)
        return dataset

    raw = _parse_files(files, strict=strict, quiet=quiet)
    parts = split_records(raw.y, seed=seed, fractions=split)
    state = PhysioNetState.fit(raw, parts[0])
    X, value_issues = state.transform(raw)
    issues = Counter(raw.issues)
    issues.update(value_issues)
    arrays: dict[str, np.ndarray] = {}
    for name, index in zip(("train", "val", "test"), parts):
        arrays[f"{name}/X"] = X[index]
        arrays[f"{name}/y"] = raw.y[index]
        arrays[f"{name}/ids"] = raw.ids[index]
        arrays[f"{name}/saps_i"] = raw.saps_i[index]
        arrays[f"{name}/sofa"] = raw.sofa[index]
    arrays["meta"] = np.array(json.dumps({"issues": dict(sorted(issues.items())), "state": state.to_json()}))
    if cache is not None:
        try:
            cache.put("physionet2012", key, arrays)
        except OSError as exc:  # a read-only cache must not stop the run
            print(f"physionet2012: warning: cannot write the array cache: {exc}", file=sys.stderr)
    dataset = _dataset_from_arrays(arrays, fingerprint)
    _report(dataset, files.source, time.perf_counter() - started, quiet, cached=False)
    return dataset


def _dataset_from_arrays(arrays: dict, fingerprint: str) -> Dataset:
    meta = json.loads(str(arrays["meta"]))
    splits = {
        name: Split(X=arrays[f"{name}/X"], y=arrays[f"{name}/y"].astype(np.int64), ids=arrays[f"{name}/ids"])
        for name in ("train", "val", "test")
    }
    return Dataset(
        source="physionet2012",
        layout=PHYSIONET_LAYOUT,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        fingerprint=fingerprint,
        issues=meta["issues"],
        extras={
            "saps_i": {name: arrays[f"{name}/saps_i"] for name in splits},
            "sofa": {name: arrays[f"{name}/sofa"] for name in splits},
            "reference_scores": dict(REFERENCE_SCORES),
            "source_state": meta["state"],
        },
    )


def _report(dataset: Dataset, source: str, seconds: float, quiet: bool, *, cached: bool) -> None:
    if quiet:
        return
    sizes = {name: len(dataset.split(name)) for name in ("train", "val", "test")}
    labels = np.concatenate([dataset.split(name).y for name in sizes])
    deaths = int((labels == 1).sum())
    problems = sum(dataset.issues.values())
    print(
        f"physionet2012: {Path(source).name}: {sum(sizes.values())} records "
        f"(train {sizes['train']}, val {sizes['val']}, test {sizes['test']}), {deaths} deaths, "
        f"{problems} issues{' (cached)' if cached else ''}, {seconds:.1f} s",
        file=sys.stderr,
    )
    if problems:
        grouped = Counter()
        for key, count in dataset.issues.items():
            grouped[key.split(":", 1)[0]] += count
        print("physionet2012: issues: " + ", ".join(f"{k} {v}" for k, v in sorted(grouped.items())), file=sys.stderr)


def load_physionet2012_records(
    path: str | os.PathLike,
    state: PhysioNetState | dict,
    *,
    strict: bool = False,
    quiet: bool = True,
) -> tuple[Split, dict[str, int]]:
    """Score-ready arrays for every record at ``path`` using a saved state (never refitted).

    Returns a :class:`Split` of all records in ascending RecordID (``y`` is ``-1`` where the
    folder has no outcomes file) and the issue counts of this read.
    """
    if isinstance(state, dict):
        state = PhysioNetState.from_json(state)
    raw = read_records(path, strict=strict, quiet=quiet)
    X, value_issues = state.transform(raw)
    issues = Counter(raw.issues)
    issues.update(value_issues)
    return Split(X=X, y=raw.y, ids=raw.ids), dict(sorted(issues.items()))
