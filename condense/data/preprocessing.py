"""From IHM episodes to model inputs: discretize, normalize, and the DNN's per-channel means.

* :class:`Discretizer` turns one episode (an IHM ``*_timeseries.csv`` file, or its rows) into the
  benchmark's (48, 76) tensor, exactly as Harutyunyan et al.'s ``Discretizer(timestep=1.0,
  store_masks=True, impute_strategy="previous", start_time="zero")`` does with ``end=48``.
  :meth:`Discretizer.transform_files` does a batch of files at once: the files are parsed by
  :class:`~condense.data.episodes.EpisodeBatch` (clean files with one ``pandas.read_csv`` call
  per batch, anything unusual cell by cell); binning, last-value-wins and carry-forward then run
  as NumPy array operations over the whole batch. Bad input is counted in an
  :class:`~condense.data.issues.IssueLog`.
* :class:`Normalizer` standardizes the continuous channels; fitted on training episodes only.
* :func:`dnn_features` gives the DNN input: per channel, the mean over the bins where it was
  observed.

The benchmark's own per-row algorithm, which the tests compare the :class:`Discretizer` with, is
:func:`condense.data.reference.discretize_reference`. This module knows nothing of Keras.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from condense.data.channels import (
    CATEGORICAL_VALUES,
    CHANNEL_SPANS,
    EPS,
    HEADER,
    IHM_LAYOUT,
    MASK_INDEX,
    NORMAL_VALUES,
    NUM_CHANNELS,
    PLAUSIBLE_RANGES,
    VARIABLES,
)
from condense.data.dataset import DataError, Dataset, Split
from condense.data.episodes import EpisodeBatch
from condense.data.issues import IssueLog
from condense.data.layout import ChannelLayout
from condense.io import read_state, write_json

__all__ = [
    "DISCRETIZER_VERSION",
    "Discretizer",
    "Normalizer",
    "dnn_features",
]

#: Bumped whenever the same input and settings would give different tensors; part of every
#: cache key and dataset fingerprint, so arrays from an older discretizer are never reused.
#: 2: values outside :data:`~condense.data.channels.PLAUSIBLE_RANGES` or not finite as float32
#: are missing (counted as ``implausible_value:<variable>``).
DISCRETIZER_VERSION = 2

_NUM_VARS = len(VARIABLES)
_IS_CATEGORICAL = np.array([v in CATEGORICAL_VALUES for v in VARIABLES])
_CONTINUOUS_VARS = [k for k in range(_NUM_VARS) if not _IS_CATEGORICAL[k]]
_CONTINUOUS_CHANNELS = [CHANNEL_SPANS[VARIABLES[k]].start for k in _CONTINUOUS_VARS]
_CATEGORICAL_STARTS = [(k, CHANNEL_SPANS[VARIABLES[k]].start) for k in range(_NUM_VARS) if _IS_CATEGORICAL[k]]
_MASK_START = MASK_INDEX[VARIABLES[0]]
#: Imputation default per variable: a float for continuous variables, the one-hot position for
#: categorical ones.
_NORMAL = np.array(
    [CATEGORICAL_VALUES[v].index(NORMAL_VALUES[v]) if v in CATEGORICAL_VALUES else float(NORMAL_VALUES[v]) for v in VARIABLES],
    dtype=np.float64,
)


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
    (see :data:`~condense.data.issues.ISSUE_KINDS`). A continuous value outside its variable's
    :data:`~condense.data.channels.PLAUSIBLE_RANGES` (``-1e30``, or ``1e308``, which float32 cannot
    hold) is a bad cell too. Numeric categoricals accept other spellings
    of the same number (``1`` for ``1.0``, ``15.0`` for ``15``); text categoricals must match a
    benchmark spelling (surrounding spaces ignored).

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

    #: Parse clean files with one pandas call per batch (see :class:`EpisodeBatch`); False forces
    #: the careful per-file path everywhere (the tests use it to check that both give the same tensors).
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
            "plausible_ranges": {v: list(bounds) for v, bounds in PLAUSIBLE_RANGES.items()},
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
        batch = self._batch(local)
        if isinstance(episode, (str, os.PathLike)):
            readable = batch.add_file(episode, order=(1, 0))
        else:
            readable = batch.add_rows("<rows>", list(HEADER if header is None else header), episode, order=(1, 0))
        X = self._discretize_batch(batch) if readable else None
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
        batch = self._batch(local)
        present = np.zeros(len(paths), dtype=bool)
        slots = []
        for i, path in enumerate(paths):
            if batch.add_file(path, order=(1, start + i)):
                present[i] = True
                slots.append(i)
        Xp = self._discretize_batch(batch)
        log.merge(local)
        if self.strict:
            local.raise_first()
        if len(slots) == len(paths):
            return Xp, present
        X = np.zeros((len(paths), self.num_bins, NUM_CHANNELS), dtype=np.float32)
        X[present] = Xp
        return X, present

    def _batch(self, log: IssueLog) -> EpisodeBatch:
        return EpisodeBatch(log, end=self.hours, bulk=self._BULK_PARSE)

    def _discretize_batch(self, batch: EpisodeBatch) -> np.ndarray:
        """All episodes of ``batch`` -> the (episodes, bins, 76) float32 tensor."""
        obs = batch.observations()
        hours = obs.row_hours
        for row in np.flatnonzero(hours > self.hours + EPS).tolist():
            batch.count(
                "after_end", int(obs.row_ep[row]), int(obs.row_lines[row]),
                f"Hours {float(hours[row])!r} is after the {self.hours:g}-hour window; row dropped",
            )
        usable = ~np.isnan(hours) & (hours <= self.hours + EPS)
        keep = usable[obs.cell_row]
        row, var, value = obs.cell_row[keep], obs.cell_var[keep], obs.cell_value[keep]
        bins = (hours[row] / self.timestep - EPS).astype(np.int64)  # truncation toward zero, as int()
        rank = _time_rank(obs.row_ep, np.nan_to_num(hours, nan=np.inf))[row]
        return _discretize(batch.num_episodes, self.num_bins, ep=obs.row_ep[row], bins=bins, var=var, value=value, rank=rank)

    def _log(self, issues: IssueLog | None) -> IssueLog:
        if issues is not None:
            return issues
        if getattr(self, "issues_", None) is None:
            self.issues_ = IssueLog()
        return self.issues_

    def __repr__(self) -> str:
        return f"Discretizer(timestep={self.timestep!r}, hours={self.hours!r}, strict={self.strict!r})"


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

    ``fit`` refuses training data that gives a non-finite statistic (an ``inf`` or NaN in a
    channel) with a :class:`ValueError` naming the channel, instead of a state that turns every
    input into NaN.

    Args:
        channels: indices of the channels to standardize (``layout.continuous``).
        robust: median and scaled IQR instead of mean and standard deviation.
        names: every channel's name, by index (``layout.names``; :meth:`for_layout` passes
            them), for messages; not saved.

    Example:
        >>> norm = Normalizer(IHM_LAYOUT.continuous).fit(dataset)  # train split only  # doctest: +SKIP
        >>> Z = norm.transform(dataset.test.X)  # doctest: +SKIP
        >>> norm.save("models/x/normalizer.json")  # doctest: +SKIP
    """

    FORMAT = "condense.normalizer"
    FORMAT_VERSION = 1

    def __init__(self, channels: Sequence[int], robust: bool = False, names: Sequence[str] | None = None):
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("channels must name at least one channel, got none")
        if len(set(channels)) != len(channels) or min(channels) < 0:
            raise ValueError(f"channels must be distinct non-negative indices, got {list(channels)}")
        self.channels = channels
        self.robust = bool(robust)
        self.names = tuple(names) if names is not None else None

    @classmethod
    def for_layout(cls, layout: ChannelLayout, robust: bool = False) -> "Normalizer":
        """A normalizer of ``layout``'s continuous channels."""
        return cls(layout.continuous, robust=robust, names=layout.names)

    def _channel_name(self, channel: int) -> str:
        if self.names is not None and channel < len(self.names):
            return repr(self.names[channel])
        return str(channel)

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
        with np.errstate(invalid="ignore", over="ignore"):
            if self.robust:
                q25, median, q75 = np.percentile(values, [25, 50, 75], axis=0)
                center, scale = median, (q75 - q25) / IQR_TO_STD
            else:
                center, scale = values.mean(axis=0), values.std(axis=0, ddof=1)
        for what, stat in (("median" if self.robust else "mean", center), ("scaled IQR" if self.robust else "standard deviation", scale)):
            bad = np.flatnonzero(~np.isfinite(stat))
            if len(bad):
                k = int(bad[0])
                raise ValueError(
                    f"Normalizer.fit: channel {self._channel_name(self.channels[k])} has a non-finite {what} "
                    f"({float(stat[k])}) on the training data"
                )
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
        return read_state(path, cls.from_json, "normalizer state")

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
