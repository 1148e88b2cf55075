"""Counts tables: the scores reduced to negative / positive counts per score bin, and AUROC and
AUPRC read from them (integer-exact). The point metrics (:mod:`condense.evaluate.metrics`) and
every bootstrap (:mod:`condense.evaluate.bootstrap`) compute on these tables: a resample is one
gather and one ``bincount``, with no per-resample sort (see the metrics module's docstring)."""

from __future__ import annotations

import numpy as np

__all__ = ["score_bins", "counts_full", "counts_resampled", "auroc_from_counts", "auprc_from_counts"]


def score_bins(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-sample code ``y * K + bin`` and the number of bins K, bins ascending in score.

    A bin is one tie group of equal scores, except that consecutive tie groups holding only
    negatives are merged into one bin: no positive lies between or ties with them, so AUROC
    (each positive counts the negatives below it) and the PR curve (a run of negatives adds
    points of equal recall, i.e. zero-width trapezoids) are unchanged. With a rare positive
    class this shrinks the per-resample tables from ~N to ~2 * positives bins.
    """
    uniq, groups = np.unique(p, return_inverse=True)
    groups = groups.reshape(-1)
    has_pos = np.bincount(groups, weights=y, minlength=uniq.size) > 0
    starts = np.ones(uniq.size, dtype=bool)
    starts[1:] = has_pos[1:] | has_pos[:-1]
    bin_of_group = np.cumsum(starts) - 1
    n_bins = int(bin_of_group[-1]) + 1
    codes = bin_of_group[groups] + n_bins * y.astype(np.int64)
    return codes.astype(np.int64), n_bins


def counts_full(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """(1, 2, K) table: negatives (row 0) and positives (row 1) per score bin, whole set."""
    return np.bincount(codes, minlength=2 * n_bins).reshape(1, 2, n_bins)


def counts_resampled(codes: np.ndarray, idx: np.ndarray, n_bins: int) -> np.ndarray:
    """(B, 2, K) tables for a (B, n) matrix of resample indices (one gather, one bincount)."""
    b = idx.shape[0]
    width = 2 * n_bins
    flat = codes[idx]
    flat += (np.arange(b, dtype=np.int64) * width)[:, None]
    return np.bincount(flat.ravel(), minlength=b * width).reshape(b, 2, n_bins)


def auroc_from_counts(counts: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC per row of a (B, 2, K) table with bins in ascending score order.

    ``2U = sum_k pos_k * (2 * negatives below k + neg_k)`` in exact integer arithmetic.
    """
    neg = counts[:, 0, :]
    pos = counts[:, 1, :]
    twice_below = 2 * np.cumsum(neg, axis=1) - neg
    u2 = (pos * twice_below).sum(axis=1)
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    denom = 2.0 * n_pos.astype(np.float64) * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        value = u2 / denom
    value[(n_pos == 0) | (n_neg == 0)] = np.nan
    return value


def auprc_from_counts(counts: np.ndarray) -> np.ndarray:
    """Trapezoidal PR-curve area per row of a (B, 2, K) table with bins in ascending order.

    Thresholds run from the highest score down, one per bin; the curve starts at (recall 0,
    precision 1) as in ``sklearn.metrics.precision_recall_curve``. Bins absent from a resample
    repeat the previous point (zero width), and leading empty bins sit on the start point, so
    the area equals the one computed on the resampled arrays themselves.

    Recall moves by ``pos_k / P`` at bin ``k``, so the trapezoid sum is
    ``sum_k pos_k * (precision_k + precision_{k-1}) / (2 P)``.
    """
    pos = counts[:, 1, ::-1]
    tps = np.cumsum(pos, axis=1)
    predicted = np.cumsum(counts[:, 0, ::-1] + pos, axis=1)
    # precision is tps / predicted; before the first resampled patient the curve sits on its
    # start point, whose precision is 1.
    precision = (tps + (predicted == 0)) / np.maximum(predicted, 1)
    n_pos = tps[:, -1]
    n_all = predicted[:, -1]
    twice = (pos * precision).sum(axis=1) + pos[:, 0] + (pos[:, 1:] * precision[:, :-1]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = twice / (2.0 * n_pos)
    area[(n_pos == 0) | (n_pos == n_all)] = np.nan
    return area
