"""Hand-made summary features of a (N, T, C) tensor: what the peers on hand-made features read.

Features (:func:`hand_features`, names from :func:`feature_names`). For every source variable
of the layout (``layout.variables``, in order of first appearance; mask channels excluded):

* its value per time bin: the variable's channel when it has one; for a categorical variable
  spread over one-hot channels, a numeric code of the active category (see :func:`category_codes`:
  the ordinal score for the Glasgow coma scale and capillary refill, as the benchmark's
  ``channel_info.json`` maps them);
* the bins where it was *observed* (its mask channel, ``layout.observed_by``, > 0.5); imputed
  (carried-forward) bins never enter a statistic;
* seven windows, as the benchmark's ``feature_extractor``: the whole stay and the first 10 / 25 /
  50 % and last 50 / 25 / 10 % of the span from the variable's first to its last observed bin
  (bin ``k`` at time ``k``; a bin is in a window when it lies within 1e-6 of its closed range);
* seven statistics per window: ``min``, ``max``, ``mean``, ``std`` (population, ddof 0),
  ``skew`` (biased sample skewness, ``scipy.stats.skew`` with ``bias=True``), ``count`` (observed
  bins) and ``last`` (value in the latest observed bin).

Undefined statistics are NaN: every statistic but ``count`` (which is 0) when the window holds
no observation, and ``skew`` when the values do not vary. The peer imputes them with training
means. Variables whose channels are never masked and are not masks themselves (static
descriptors, ``observed_by == -1``) give one feature per channel, ``"<channel>:static"``, the
mean of the channel over the bins.

Departures from the benchmark, on purpose: statistics run over hourly bins (the last value per
bin), not raw irregular events; ``last`` is added (the most recent value is the single most
predictive statistic for mortality); an empty window counts 0 rather than NaN.
"""

from __future__ import annotations

import re

import numpy as np

from condense.data.layout import ChannelLayout

__all__ = ["WINDOWS", "STATISTICS", "category_codes", "feature_names", "hand_features"]

#: (name, which end of the observed span, fraction of the span) — the benchmark's sub-periods.
WINDOWS: tuple[tuple[str, str, float], ...] = (
    ("all", "first", 1.00),
    ("first10", "first", 0.10),
    ("first25", "first", 0.25),
    ("first50", "first", 0.50),
    ("last50", "last", 0.50),
    ("last25", "last", 0.25),
    ("last10", "last", 0.10),
)

#: Statistics per window, in feature order.
STATISTICS: tuple[str, ...] = ("min", "max", "mean", "std", "skew", "count", "last")

#: Ordinal score of the textual Glasgow coma scale answers (lower-cased), as the MIMIC-III
#: benchmark's ``channel_info.json`` codes them. Values with a leading number use that number.
_TEXT_CODES: dict[str, float] = {
    "none": 0.0,  # eye opening: "None" (no score recorded), code 0 in the benchmark
    "no response": 1.0,
    "no response-ett": 1.0,
    "to pain": 2.0,
    "to speech": 3.0,
    "spontaneously": 4.0,
    "abnormal extension": 2.0,
    "abnormal flexion": 3.0,
    "flex-withdraws": 4.0,
    "localizes pain": 5.0,
    "obeys commands": 6.0,
    "incomprehensible sounds": 2.0,
    "inappropriate words": 3.0,
    "confused": 4.0,
    "oriented": 5.0,
}
_LEADING_NUMBER = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)")
_EPS = 1e-6


# --------------------------------------------------------------------------- layout -> variables


class _Variable:
    """One source variable: its value channels, mask channel (-1 = static) and category codes."""

    __slots__ = ("name", "channels", "mask", "codes")

    def __init__(self, name: str, channels: tuple[int, ...], mask: int, codes: np.ndarray | None):
        self.name = name
        self.channels = channels
        self.mask = mask
        self.codes = codes


def _category_label(channel_name: str) -> str:
    """The category of a one-hot channel named ``"<variable>-><value>"`` (else the whole name)."""
    return channel_name.rsplit("->", 1)[-1]


def _code_of(label: str) -> float | None:
    match = _LEADING_NUMBER.match(label)
    if match:
        return float(match.group(1))
    return _TEXT_CODES.get(label.strip().lower())


def category_codes(layout: ChannelLayout, variable: str) -> np.ndarray:
    """Numeric code of each one-hot channel of a categorical ``variable``, in channel order.

    A category's code is its leading number when it has one (``"4 Spontaneously"`` -> 4,
    ``"15"`` -> 15, ``"1.0 ET/Trach"`` -> 1, ``"0.0"`` -> 0), else the benchmark's ordinal score
    for the textual Glasgow coma scale answers (``"Localizes Pain"`` -> 5, ``"None"`` -> 0).
    When any category of the variable has neither, the codes fall back to the category's
    position among the variable's channels (0, 1, 2, ...) for the whole variable, so that one
    variable never mixes two scales.

    Raises:
        ValueError: ``variable`` has no non-mask channel in ``layout``.
    """
    channels = _value_channels(layout, variable)
    if not channels:
        raise ValueError(f"variable {variable!r} has no value channel in layout {layout.name!r}")
    codes = [_code_of(_category_label(layout.names[c])) for c in channels]
    if any(code is None for code in codes):
        return np.arange(len(channels), dtype=np.float64)
    return np.asarray(codes, dtype=np.float64)


def _variable_names(layout: ChannelLayout) -> list[str]:
    source = layout.variables if layout.variables else layout.names
    return list(dict.fromkeys(source))


def _value_channels(layout: ChannelLayout, variable: str) -> tuple[int, ...]:
    source = layout.variables if layout.variables else layout.names
    masks = set(layout.mask_channels)
    return tuple(c for c, v in enumerate(source) if v == variable and c not in masks)


def _variables(layout: ChannelLayout) -> list[_Variable]:
    if not isinstance(layout, ChannelLayout):
        raise ValueError(f"layout must be a ChannelLayout, got {type(layout).__name__}")
    out = []
    for name in _variable_names(layout):
        channels = _value_channels(layout, name)
        if not channels:
            continue  # a mask-only variable carries no values
        observers = {layout.observed_by[c] for c in channels}
        if len(observers) != 1:
            raise ValueError(
                f"layout {layout.name!r}: the channels of variable {name!r} are observed by different "
                f"mask channels {sorted(observers)}"
            )
        mask = observers.pop()
        codes = category_codes(layout, name) if len(channels) > 1 and mask >= 0 else None
        out.append(_Variable(name, channels, mask, codes))
    if not out:
        raise ValueError(f"layout {layout.name!r} has no value channels to summarize")
    return out


def feature_names(layout: ChannelLayout) -> list[str]:
    """Names of the columns of :func:`hand_features`, ``"<variable>:<window>:<statistic>"``.

    Time-varying variables first (variable, then window, then statistic, in :data:`WINDOWS` and
    :data:`STATISTICS` order), then static channels as ``"<channel name>:static"``.
    """
    variables = _variables(layout)
    names = [
        f"{v.name}:{window}:{stat}"
        for v in variables
        if v.mask >= 0
        for window, _, _ in WINDOWS
        for stat in STATISTICS
    ]
    names += [f"{layout.names[c]}:static" for v in variables if v.mask < 0 for c in v.channels]
    return names


# --------------------------------------------------------------------------- features


def _window_stats(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(n, V, W, S) statistics of (n, V, T) ``values`` over the observed bins of each window."""
    n, nv, t = values.shape
    time = np.arange(t, dtype=np.float64)
    any_obs = observed.any(axis=2)
    first = np.where(any_obs, np.argmax(observed, axis=2), 0).astype(np.float64)
    last = np.where(any_obs, t - 1 - np.argmax(observed[:, :, ::-1], axis=2), 0).astype(np.float64)
    span = last - first
    out = np.empty((n, nv, len(WINDOWS), len(STATISTICS)), dtype=np.float64)
    reverse_index = t - 1 - np.arange(t)
    for w, (_, end, fraction) in enumerate(WINDOWS):
        if end == "first":
            lo, hi = first, first + span * fraction
        else:
            lo, hi = last - span * fraction, last
        inside = (time > lo[..., None] - _EPS) & (time < hi[..., None] + _EPS)
        sel = observed & inside
        count = sel.sum(axis=2)
        safe = np.maximum(count, 1)
        x = np.where(sel, values, 0.0)
        mean = x.sum(axis=2) / safe
        dev = np.where(sel, values - mean[..., None], 0.0)
        dev2 = dev * dev
        m2 = dev2.sum(axis=2) / safe
        m3 = (dev2 * dev).sum(axis=2) / safe
        flat = m2 <= (np.finfo(np.float64).resolution * mean) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            skew = np.where(flat, np.nan, m3 / np.where(flat, 1.0, m2) ** 1.5)
        lowest = np.where(sel, values, np.inf).min(axis=2)
        highest = np.where(sel, values, -np.inf).max(axis=2)
        last_bin = reverse_index[np.argmax(sel[:, :, ::-1], axis=2)]
        latest = np.take_along_axis(values, last_bin[..., None], axis=2)[..., 0]
        empty = count == 0
        stats = (lowest, highest, mean, np.sqrt(m2), skew, count.astype(np.float64), latest)
        for s, value in enumerate(stats):
            out[:, :, w, s] = value
        out[:, :, w, :][empty] = np.nan
        out[:, :, w, STATISTICS.index("count")][empty] = 0.0
    return out


def hand_features(X, layout: ChannelLayout, *, chunk_size: int = 2048) -> np.ndarray:
    """Hand-made summary statistics of each episode (see the module docstring).

    Args:
        X: (N, T, C) tensor in ``layout`` (raw or normalized: masks must still be 0/1).
        layout: the :class:`~condense.data.layout.ChannelLayout` of ``X``.
        chunk_size: episodes processed at once (bounds memory; the result does not depend on it).

    Returns:
        (N, F) float64, columns named by :func:`feature_names`; NaN where a statistic is
        undefined.

    Raises:
        ValueError: ``X`` is not (N, T, layout.width) or holds non-finite values.
    """
    variables = _variables(layout)
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[2] != layout.width:
        raise ValueError(
            f"X must have shape (N, T, {layout.width}) for layout {layout.name!r}, got {X.shape}"
        )
    if X.shape[1] < 1:
        raise ValueError(f"X must have at least one time bin, got shape {X.shape}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive whole number, got {chunk_size!r}")
    dynamic = [v for v in variables if v.mask >= 0]
    static = [c for v in variables if v.mask < 0 for c in v.channels]
    n_features = len(dynamic) * len(WINDOWS) * len(STATISTICS) + len(static)
    out = np.empty((X.shape[0], n_features), dtype=np.float64)
    for start in range(0, X.shape[0], chunk_size):
        block = np.asarray(X[start : start + chunk_size], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = int((~np.isfinite(block)).sum())
            raise ValueError(f"X holds {bad} non-finite value(s) in episodes {start}..{start + len(block) - 1}")
        parts = []
        if dynamic:
            values = np.empty((len(block), len(dynamic), block.shape[1]), dtype=np.float64)
            observed = np.empty(values.shape, dtype=bool)
            for k, v in enumerate(dynamic):
                observed[:, k] = block[:, :, v.mask] > 0.5
                if v.codes is None:
                    values[:, k] = block[:, :, v.channels[0]]
                else:
                    onehot = block[:, :, list(v.channels)]
                    weight = onehot.sum(axis=2)
                    active = weight > 0
                    values[:, k] = (onehot @ v.codes) / np.where(active, weight, 1.0)
                    observed[:, k] &= active
            parts.append(_window_stats(values, observed).reshape(len(block), -1))
        if static:
            parts.append(block[:, :, static].mean(axis=1))
        out[start : start + len(block)] = np.concatenate(parts, axis=1)
    return out
