"""The PhysioNet 2012 state fitted on the training records and saved with a model.

:meth:`PhysioNetState.fit` learns, per variable, the winsorizing bounds (0.1 / 99.9 percentiles
of the valid training values) and the value imputed before the first observation; the valid
ranges and fallbacks are fixed (:mod:`condense.data.physionet2012.channels`).
:meth:`PhysioNetState.transform` applies it to any records (training or never seen): impossible
values -> missing, outliers clipped, 48 hourly bins (last value wins, carried forward), masks and
static channels -> (N, 48, 82) float32, every cleaned value counted. A record's arrays depend
only on that record and the state. Rules and the saved JSON: ``docs/physionet2012.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from condense.data.physionet2012.channels import (
    FORMAT_VERSION,
    ICU_TYPES,
    INDICATORS,
    NORMAL_VALUES,
    NUM_BINS,
    NUM_CHANNELS,
    PHYSIONET_LAYOUT,
    STATIC_DESCRIPTORS,
    TIME_SERIES_VARIABLES,
    VALID_RANGES,
)
from condense.data.physionet2012.parse import RawRecords
from condense.io import check_format_header

__all__ = ["WINSOR_QUANTILES", "PhysioNetState"]

#: Winsorizing percentiles (as quantiles) fitted on the valid training measurements.
WINSOR_QUANTILES: tuple[float, float] = (0.001, 0.999)
_STATE_FORMAT = "condense.physionet2012.state"
_V = len(TIME_SERIES_VARIABLES)


@dataclass
class PhysioNetState:
    """Per-variable cleaning and imputation fitted on training records (see the module docstring).

    ``variables`` maps every time-series variable and static descriptor to
    ``{"valid": [lo, hi], "clip": [lo, hi], "impute": value, "n_train": count}``: values outside
    ``valid`` become missing, valid values are clipped to ``clip``, and ``impute`` fills the bins
    before a variable's first observation (or a missing descriptor). Build it with
    :meth:`fit`; persist exactly :meth:`to_json`.

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
        check_format_header(obj, name=_STATE_FORMAT, version=FORMAT_VERSION, version_key="version",
                            what="a PhysioNet 2012 preprocessing state")
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
