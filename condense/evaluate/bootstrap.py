"""The bootstrap over patients (and seeds): intervals, paired differences, p-values, Holm.

One engine serves the table's intervals (:func:`bootstrap_ci`, :func:`paired_bootstrap_diff`,
:func:`condense.evaluate.summary.summarize`) and ``condense compare`` (:class:`AurocResamples`,
:func:`paired_auroc`): a resample draws patients with replacement from
``numpy.random.default_rng(seed)``, and the draws depend only on ``(n, n_resamples, seed)``, so
every metric of one call, both models of a paired comparison and every row of a comparison see
the same resampled patients. A resample's metric is computed from its counts table
(:mod:`condense.evaluate.counts`): one gather and one ``bincount`` per chunk of resamples.

Resamples that hold a single class have no AUROC / AUPRC. They are *skipped*: NaN in
:func:`bootstrap_distribution`, left out of percentiles and p-values, and a ``RuntimeWarning``
is raised when they exceed 5 % of the resamples (the interval is then conditional on both
classes being present). Brier is defined for every resample.

**One p-value convention** (:func:`bootstrap_p_value`). Of the ``B`` kept resampled differences
``d``, ``k`` lie at or beyond 0 on the side the alternative denies; the p-value is
``(k + 1) / (B + 1)`` (Davison & Hinkley 1997, eq. 4.11: the observed sample counts as one of
the resamples, so a p-value is never 0 and the smallest is ``1 / (B + 1)``). One-sided
``"less"`` (the alternative: the difference is below 0, e.g. an AUROC drop) counts ``d >= 0``,
``"greater"`` counts ``d <= 0``, and ``"two-sided"`` is ``min(1, 2 * min(both))``. The table's
paired differences and ``condense compare`` both use it.

Several seeds (:func:`paired_auroc`): each resample also draws seeds with replacement from the
seeds both runs have (equal seeds are paired) and averages the paired differences over the drawn
seeds, so the spread between seeds widens the interval; without common seeds each side draws its
own.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np

from condense.evaluate.counts import auroc_from_counts, counts_full, counts_resampled, auprc_from_counts, score_bins
from condense.evaluate.metrics import auprc, auroc, brier
from condense.evaluate.validate import (check_alpha, check_labels, check_resamples, check_scores, check_seed,
                                        require_both_classes)

# Deferred on purpose: SciPy is imported inside the functions that use it, so importing this module stays light.

__all__ = ["METRICS", "ALTERNATIVES", "bootstrap_distribution", "bootstrap_ci", "paired_bootstrap_diff",
           "bootstrap_p_value", "holm_adjust", "AurocResamples", "PairedAuroc", "paired_auroc", "resample_indices",
           "percentile_interval"]

#: Names accepted by the ``metric`` argument of the bootstrap functions.
METRICS: tuple[str, ...] = ("auroc", "auprc", "brier")
#: The ``alternative`` of :func:`bootstrap_p_value`.
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")
#: Resample-index elements generated per chunk (bounds memory at a few tens of MB).
_CHUNK_ELEMENTS = 1 << 21
#: Fraction of single-class resamples above which a warning is raised (or a note is added).
SKIP_NOTE_FRACTION = 0.05
#: Multiplicity tables of at most this many elements are kept for the next score vector.
_KEEP_ELEMENTS = 1 << 26
_POINT = {"auroc": auroc, "auprc": auprc, "brier": brier}


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def resample_indices(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """(rows, n) int64 index matrices, ``n_resamples`` rows in all; depends only on (n, B, seed)."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    done = 0
    while done < n_resamples:
        take = min(rows, n_resamples - done)
        yield rng.integers(0, n, size=(take, n), dtype=np.int64)
        done += take


class _Resampler:
    """Per-score precomputation so that each chunk of resamples costs one gather + one bincount."""

    def __init__(self, y: np.ndarray, p: np.ndarray, metrics: tuple[str, ...]):
        self.metrics = metrics
        self.curve = any(m in ("auroc", "auprc") for m in metrics)
        if self.curve:
            self.codes, self.n_bins = score_bins(y, p)
        if "brier" in metrics:
            self.sq = (p - y) ** 2

    def values(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.curve:
            counts = counts_resampled(self.codes, idx, self.n_bins)
            if "auroc" in self.metrics:
                out["auroc"] = auroc_from_counts(counts)
            if "auprc" in self.metrics:
                out["auprc"] = auprc_from_counts(counts)
        if "brier" in self.metrics:
            out["brier"] = self.sq[idx].mean(axis=1)
        return out


def bootstrap_values(y: np.ndarray, ps: list[np.ndarray], metrics: tuple[str, ...], n_resamples: int, seed: int):
    """Bootstrap values: list (one per score vector) of {metric: (B,) array, NaN = skipped}."""
    resamplers = [_Resampler(y, p, metrics) for p in ps]
    parts: list[dict[str, list[np.ndarray]]] = [{m: [] for m in metrics} for _ in ps]
    for idx in resample_indices(y.size, n_resamples, seed):
        for resampler, store in zip(resamplers, parts):
            for m, v in resampler.values(idx).items():
                store[m].append(v)
    return [{m: np.concatenate(v) for m, v in store.items()} for store in parts]


def check_skipped(values: np.ndarray, metric: str) -> int:
    skipped = int(np.isnan(values).sum())
    if skipped == values.size:
        raise ValueError(
            f"every one of the {values.size} bootstrap resamples holds a single class; "
            f"{metric} has no interval on this test set"
        )
    if skipped > SKIP_NOTE_FRACTION * values.size:
        warnings.warn(
            f"{skipped} of {values.size} bootstrap resamples held a single class and were skipped "
            f"for {metric}; the interval is conditional on both classes being present",
            RuntimeWarning,
            stacklevel=3,
        )
    return skipped


def percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    kept = values[~np.isnan(values)]
    low, high = np.percentile(kept, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)


def bootstrap_distribution(y, p, metric: str = "auroc", n_resamples: int = 10_000, seed: int = 0) -> np.ndarray:
    """The metric on each of ``n_resamples`` resamples (with replacement) of the test set.

    Args:
        y: (N,) labels, 0 or 1.
        p: (N,) scores (probabilities for ``"brier"``).
        metric: ``"auroc"``, ``"auprc"`` or ``"brier"``.
        n_resamples: number of resamples B.
        seed: seed of ``numpy.random.default_rng``; the resamples depend only on (N, B, seed).

    Returns:
        (B,) float64 array; NaN marks a resample holding a single class (no AUROC / AUPRC).
    """
    metric = check_metric(metric)
    n_resamples = check_resamples(n_resamples)
    seed = check_seed(seed)
    y = check_labels(y)
    p = check_scores(p, y.size, probabilities=metric == "brier")
    return bootstrap_values(y, [p], (metric,), n_resamples, seed)[0][metric]


def bootstrap_ci(
    y, p, metric: str = "auroc", n_resamples: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``metric`` at level ``1 - alpha``.

    Resamples the test set with replacement ``n_resamples`` times (seeded) and returns the
    ``alpha / 2`` and ``1 - alpha / 2`` percentiles (linear interpolation) of the metric over
    the resamples. Single-class resamples are skipped for AUROC / AUPRC (see the module
    docstring). 10,000 resamples of a 3,000-patient test set take a fraction of a second.

    Example:
        >>> low, high = bootstrap_ci(y_test, p_test, "auroc", seed=0)
    """
    metric = check_metric(metric)
    alpha = check_alpha(alpha)
    y = check_labels(y)
    if metric != "brier":
        require_both_classes(y, metric)
    values = bootstrap_distribution(y, p, metric, n_resamples, seed)
    check_skipped(values, metric)
    return percentile_interval(values, alpha)


def paired_bootstrap_diff(
    y, p_a, p_b, metric: str = "auroc", n_resamples: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Difference ``metric(b) - metric(a)`` with a paired bootstrap interval.

    Both models are scored on the same resampled patients, so the interval reflects the
    uncertainty of the *difference* (much narrower than comparing two separate intervals when
    the models agree on most patients).

    Args:
        y: (N,) labels, 0 or 1.
        p_a: (N,) scores of the reference model A.
        p_b: (N,) scores of the candidate model B.
        metric: ``"auroc"``, ``"auprc"`` or ``"brier"`` (for Brier a negative diff is better).
        n_resamples, alpha, seed: as in :func:`bootstrap_ci`.

    Returns:
        ``{"metric", "a", "b", "diff", "low", "high", "p_value", "n_resamples", "skipped"}``:
        point estimates on the full set, ``diff = b - a``, the percentile interval of the
        resampled differences, and the two-sided bootstrap p-value of "no difference"
        (:func:`bootstrap_p_value`). Plain floats/ints.
    """
    metric = check_metric(metric)
    n_resamples = check_resamples(n_resamples)
    alpha = check_alpha(alpha)
    seed = check_seed(seed)
    y = check_labels(y)
    probabilities = metric == "brier"
    p_a = check_scores(p_a, y.size, "p_a", probabilities=probabilities)
    p_b = check_scores(p_b, y.size, "p_b", probabilities=probabilities)
    point_a = _POINT[metric](y, p_a)
    point_b = _POINT[metric](y, p_b)
    va, vb = (r[metric] for r in bootstrap_values(y, [p_a, p_b], (metric,), n_resamples, seed))
    diffs = vb - va
    skipped = check_skipped(diffs, metric)
    low, high = percentile_interval(diffs, alpha)
    p_value = bootstrap_p_value(diffs, "two-sided")
    return {
        "metric": metric,
        "a": point_a,
        "b": point_b,
        "diff": point_b - point_a,
        "low": low,
        "high": high,
        "p_value": p_value,
        "n_resamples": n_resamples,
        "skipped": skipped,
    }

def bootstrap_p_value(diffs, alternative: str = "two-sided") -> float:
    """The bootstrap p-value of "no difference" from resampled differences ``diffs`` (NaN =
    skipped resample), ``(k + 1) / (B + 1)`` as the module docstring defines it.

    Args:
        diffs: resampled differences (new - base, or b - a).
        alternative: ``"less"`` (the difference is below 0), ``"greater"`` or ``"two-sided"``.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    values = np.asarray(diffs, dtype=np.float64)
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        raise ValueError("no resampled difference to compute a p-value from (every resample was skipped)")
    below = (int(np.count_nonzero(kept <= 0.0)) + 1) / (kept.size + 1)  # evidence against "greater"
    above = (int(np.count_nonzero(kept >= 0.0)) + 1) / (kept.size + 1)  # evidence against "less"
    if alternative == "less":
        return above
    if alternative == "greater":
        return below
    return min(1.0, 2.0 * min(below, above))


def holm_adjust(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    With the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted ``p_(i)`` is
    ``max over j <= i of min(1, (m - j + 1) * p_(j))``. Rejecting every hypothesis whose adjusted
    p-value is below ``alpha`` is Holm's step-down procedure: the probability of rejecting any
    true null hypothesis is at most ``alpha``, whatever the dependence between the tests. Ties get
    equal adjusted values.
    """
    values = []
    for k, value in enumerate(pvalues):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"Argument `pvalues` must hold numbers in [0, 1]; got {value!r} at position {k}.")
        values.append(float(value))
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=values.__getitem__)):  # rank = j - 1
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted


class _Bins(NamedTuple):
    codes: np.ndarray  # per patient: bin + K * label
    n_bins: int  # K
    key: bytes  # digest of (codes, K, n)


class AurocResamples:
    """AUROC of score vectors on shared patient resamples.

    The resamples of ``n`` patients are those of :func:`resample_indices`
    (they depend only on ``(n, n_resamples, seed)``), held as (n, b) multiplicity blocks shared by
    every score vector. A vector's (b, 2, K) counts table over its score bins
    (:func:`~condense.evaluate.counts.score_bins`) is one sparse product, (2K, n) bin indicator
    times (n, b) multiplicities, and its AUROC that of
    :func:`~condense.evaluate.counts.auroc_from_counts`: the same values as
    ``counts_resampled`` on the same resamples, several times faster when many vectors share them.
    Vectors with the same bins (the same ranking of the same labels) are computed once, and
    :func:`paired_auroc` skips a seed whose two runs rank the patients identically (their
    difference is 0 on every resample).
    """

    def __init__(self, n_resamples: int, seed: int):
        self.n_resamples = n_resamples
        self.seed = seed
        self._blocks: dict[int, list[np.ndarray]] = {}
        self._done: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _dtype(n: int):
        return np.int16 if n < np.iinfo(np.int16).max else np.int32  # a bin's count is at most n

    def _multiplicities(self, n: int):
        if n in self._blocks:
            yield from self._blocks[n]
            return
        keep = n * self.n_resamples <= _KEEP_ELEMENTS
        blocks = []
        for idx in resample_indices(n, self.n_resamples, self.seed):
            b = idx.shape[0]
            idx += (np.arange(b, dtype=np.int64) * n)[:, None]
            counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
            block = np.ascontiguousarray(counts.T, dtype=self._dtype(n))
            if keep:
                blocks.append(block)
            yield block
        if keep:
            self._blocks[n] = blocks

    @staticmethod
    def bins(y: np.ndarray, p: np.ndarray) -> _Bins:
        """The score bins of ``p``; equal keys mean equal AUROC on every resample."""
        codes, n_bins = score_bins(y, p)
        key = hashlib.sha1(codes.tobytes()).digest() + n_bins.to_bytes(8, "little") + y.size.to_bytes(8, "little")
        return _Bins(codes, n_bins, key)

    @staticmethod
    def full(bins: _Bins) -> float:
        """AUROC on all patients."""
        return float(auroc_from_counts(counts_full(bins.codes, bins.n_bins))[0])

    def resampled(self, bins: _Bins) -> np.ndarray:
        """(n_resamples,) AUROC per resample, NaN for a single-class resample."""
        from scipy import sparse  # scikit-learn's dependency; imported only when a paired test runs

        if bins.key in self._done:
            return self._done[bins.key]
        codes, n_bins = bins.codes, bins.n_bins
        n = codes.size
        dtype = self._dtype(n)
        indicator = sparse.csr_array((np.ones(n, dtype=dtype), (codes, np.arange(n))), shape=(2 * n_bins, n))
        parts = []
        for block in self._multiplicities(n):
            table = np.asarray(indicator @ block)  # (2K, b): negatives then positives per bin
            parts.append(auroc_from_counts(table.reshape(2, n_bins, block.shape[1]).transpose(2, 0, 1)))
        self._done[bins.key] = result = np.concatenate(parts)
        return result


def _seed_list(seeds: list[int]) -> str:
    return "[" + ", ".join(str(s) for s in seeds) + "]"


@dataclass
class PairedAuroc:
    """A paired bootstrap of ``AUROC(new) - AUROC(base)`` (:func:`paired_auroc`)."""

    base: float  # full-set AUROC, mean over the seeds used
    new: float
    diff: float  # new - base
    low: float  # two-sided (1 - alpha) percentile interval of the resampled differences
    high: float
    p_value: float  # one-sided, alternative "less" (a drop): (k + 1) / (B + 1), k = differences >= 0
    patients: int
    seeds: str  # "1 seed", "3 seeds", "seeds [0] vs [1], unpaired", ...
    resamples: int  # resamples kept (single-class resamples are skipped)
    level: float  # 1 - alpha
    #: ``p_value`` Holm-adjusted across a comparison's paired rows; None without a correction.
    p_adjusted: float | None = None

    @property
    def p_decision(self) -> float:
        """The p-value a verdict is decided on: the adjusted one when there is one."""
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    def interval_text(self) -> str:
        return f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_auroc(engine: AurocResamples, y: np.ndarray, base: dict[int, np.ndarray], new: dict[int, np.ndarray], *,
                 alpha: float, seed: int, stream: str = "") -> PairedAuroc | str:
    """The paired bootstrap of one model's AUROC change, or a phrase saying why it cannot be run.

    Args:
        engine: the shared patient resamples (every row of a comparison uses the same one).
        y: (n,) labels of the patients both runs scored.
        base, new: {seed: (n,) scores} per run; NaN marks a patient a run did not score (left out
            on both sides).
        alpha: the interval is at level ``1 - alpha`` (two-sided); the p-value is one-sided
            ("less": a drop).
        seed, stream: the seed draws come from ``default_rng([seed, crc32(stream)])`` (stream: the
            row's name, so rows draw independently and reproducibly).
    """
    base_seeds, new_seeds = list(base), list(new)
    arrays_b = [base[s] for s in base_seeds]
    arrays_n = [new[s] for s in new_seeds]
    mask = np.logical_and.reduce([np.isfinite(a) for a in arrays_b + arrays_n])
    y = y[mask]
    n = int(y.size)
    positives = int(y.sum())
    if n == 0:
        return "no record has a score in both runs"
    if positives in (0, n):
        return f"only one class among the {n} records scored in both runs"
    bins_b = [engine.bins(y, a[mask]) for a in arrays_b]
    bins_n = [engine.bins(y, a[mask]) for a in arrays_n]
    full_b = np.array([engine.full(b) for b in bins_b])
    full_n = np.array([engine.full(b) for b in bins_n])
    resamples = engine.n_resamples
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode("utf-8"))])
    common = sorted(set(base_seeds) & set(new_seeds))
    if common:
        ib = [base_seeds.index(s) for s in common]
        in_ = [new_seeds.index(s) for s in common]
        point_b, point_n = float(full_b[ib].mean()), float(full_n[in_].mean())
        m = len(common)
        paired = np.zeros((resamples, m))  # (B, seeds); 0 where both runs rank the patients alike
        for j, (b, n_) in enumerate(zip(ib, in_)):
            if bins_b[b].key != bins_n[n_].key:
                paired[:, j] = engine.resampled(bins_n[n_]) - engine.resampled(bins_b[b])
        if m == 1:
            diffs = paired[:, 0]
        else:
            draws = rng.integers(0, m, size=(resamples, m))
            diffs = np.take_along_axis(paired, draws, axis=1).mean(axis=1)
        seeds_text = "1 seed" if m == 1 else f"{m} seeds"
        left = [f"{side} seed(s) {_seed_list(s)}" for side, s in
                (("base", sorted(set(base_seeds) - set(common))), ("new", sorted(set(new_seeds) - set(common)))) if s]
        if left:
            seeds_text += f" paired; {' and '.join(left)} left out"
    else:
        point_b, point_n = float(full_b.mean()), float(full_n.mean())
        db = rng.integers(0, len(base_seeds), size=(resamples, len(base_seeds)))
        dn = rng.integers(0, len(new_seeds), size=(resamples, len(new_seeds)))
        boot_b = np.stack([engine.resampled(b) for b in bins_b], axis=1)  # (B, seeds)
        boot_n = np.stack([engine.resampled(b) for b in bins_n], axis=1)
        diffs = (np.take_along_axis(boot_n, dn, axis=1).mean(axis=1)
                 - np.take_along_axis(boot_b, db, axis=1).mean(axis=1))
        seeds_text = f"seeds {_seed_list(base_seeds)} vs {_seed_list(new_seeds)}, unpaired"
    kept = diffs[~np.isnan(diffs)]
    if kept.size == 0:
        return f"every resample of the {n} records scored in both runs held a single class"
    low, high = percentile_interval(kept, alpha)
    p_value = bootstrap_p_value(kept, "less")
    if kept.size < (1.0 - SKIP_NOTE_FRACTION) * resamples:
        seeds_text += f"; {resamples - kept.size} single-class resamples skipped"
    return PairedAuroc(base=point_b, new=point_n, diff=point_n - point_b, low=float(low), high=float(high),
                       p_value=float(p_value), patients=n, seeds=seeds_text, resamples=int(kept.size),
                       level=1.0 - alpha)


