"""The rules that turn one patient file into a model's input, as plain JSON: the device contract.

A device app (the scoring page of ``condense app``, or a native app) must read a patient file,
bin it into hours, clean, impute and one-hot it exactly as training did. :func:`input_rules`
writes every rule it needs from the Python constants and the model's fitted state, so that the
app carries no copy of them: it is stored in each exported file's metadata
(:mod:`condense.export.metadata`) under ``"rules"``.

Two sources, each with the channel indices spelled out (no name arithmetic on the device):

* ``"ihm"`` — an IHM episode ``*_timeseries.csv`` (``shared/reference/ihm-format.md``): the
  header, per variable its kind, one-hot values in the benchmark's order, channels, mask channel,
  the imputed value before the first measurement and (continuous) the plausible range; the
  rules of :class:`~condense.data.preprocessing.Discretizer` and
  :class:`~condense.data.episodes.EpisodeBatch`.
* ``"physionet2012"`` — a PhysioNet 2012 record ``<RecordID>.txt``: the header, the time format,
  per time-series variable its channel and mask, per descriptor its channels; valid ranges,
  winsorizing bounds and imputation values come from the fitted state
  (``preprocessing.source``, :class:`~condense.data.physionet2012.state.PhysioNetState`).
"""

from __future__ import annotations
from condense.data.channels import CATEGORICAL_VALUES, EPS, HEADER, NORMAL_VALUES, PLAUSIBLE_RANGES, VARIABLES
from condense.data.episodes import _FLOAT32_MAX
from condense.data.physionet2012.channels import (
    HOURS, ICU_TYPES, INDICATORS, NUM_BINS, STATIC_DESCRIPTORS, TIME_SERIES_VARIABLES
)
from condense.data.physionet2012.parse import _DESCRIPTOR_FILE_NAMES, _HEADER, _TIME_RE

__all__ = ["RULES_VERSION", "input_rules"]

#: Version of the rules' JSON layout (bumped when a device app would read it differently).
RULES_VERSION = 1


def input_rules(layout_name: str, names) -> dict:
    """The rules for a model trained on layout ``layout_name`` whose channels are ``names``
    (``preprocessing.layout.names``); ``{}`` for a layout without file rules (a user's arrays)."""
    names = list(names)
    if layout_name == "ihm-76":
        return _ihm_rules(names)
    if layout_name == "physionet2012":
        return _physionet_rules(names)
    return {}


def _ihm_rules(names: list[str]) -> dict:
    variables = []
    for var in VARIABLES:
        entry = {"name": var, "mask": names.index(f"mask->{var}")}
        if var in CATEGORICAL_VALUES:
            values = list(CATEGORICAL_VALUES[var])
            entry.update(kind="categorical", values=values, channels=[names.index(f"{var}->{v}") for v in values],
                         impute=values.index(NORMAL_VALUES[var]))
            try:  # capillary refill and GCS total: other spellings of the same number are that value
                entry["numeric"] = [float(v) for v in values]
            except ValueError:
                pass
        else:
            entry.update(kind="continuous", channels=[names.index(var)], impute=float(NORMAL_VALUES[var]),
                         plausible=list(PLAUSIBLE_RANGES[var]))
        variables.append(entry)
    return {
        "rules_version": RULES_VERSION,
        "source": "ihm",
        "file": "an IHM episode: <stay>_timeseries.csv, a header row then one row per charted time",
        "header": list(HEADER),
        "time_column": "Hours",
        "timestep": 1.0,
        "hours": 48.0,
        "bins": 48,
        "eps": EPS,
        "float32_max": _FLOAT32_MAX,
        "variables": variables,
    }


def _physionet_rules(names: list[str]) -> dict:
    series = [{"name": v, "channel": names.index(v), "mask": names.index(f"mask->{v}"), "indicator": v in INDICATORS}
              for v in TIME_SERIES_VARIABLES]
    descriptors = []
    for name, in_file in zip(STATIC_DESCRIPTORS, _DESCRIPTOR_FILE_NAMES):
        entry = {"name": name, "parameter": in_file}
        if name == "ICUType":
            entry.update(kind="one-hot", codes=[float(k) for k in ICU_TYPES],
                         channels=[names.index(f"ICUType->{k}") for k in ICU_TYPES])
        else:
            entry.update(kind="value", channels=[names.index(name)])
            if name == "Gender":
                entry["codes"] = [0.0, 1.0]
        descriptors.append(entry)
    return {
        "rules_version": RULES_VERSION,
        "source": "physionet2012",
        "file": "a PhysioNet 2012 record: <RecordID>.txt, rows Time,Parameter,Value (HH:MM since admission)",
        "header": _HEADER,
        "time_pattern": _TIME_RE.pattern,
        "hours": HOURS,
        "bins": NUM_BINS,
        "eps": 1e-6,
        "missing_marker": -1.0,
        "admission_weight": "a Weight row at 00:00 is the AdmissionWeight descriptor, not a measurement",
        "series": series,
        "descriptors": descriptors,
        "state": "preprocessing.source: per variable valid [lo, hi] (outside: missing), clip [lo, hi], impute",
    }
