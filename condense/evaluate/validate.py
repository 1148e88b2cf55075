"""Checks of the arrays the metrics take: 0/1 labels, finite scores, both classes, and the
bootstrap's settings; each raises a ValueError naming the argument."""

from __future__ import annotations

import numpy as np

__all__ = ["check_labels", "check_scores", "require_both_classes", "check_resamples", "check_alpha", "check_seed"]


def check_labels(y, name: str = "y") -> np.ndarray:
    """``y`` as a 1-D int8 array of 0/1 labels; ValueError naming ``name`` otherwise."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of 0/1 labels, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold 0/1 labels, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.isnan(arr)
        if bad.any():
            raise ValueError(f"{name} contains {int(bad.sum())} NaN value(s); labels must be 0 or 1")
    ok = (arr == 0) | (arr == 1)
    if not ok.all():
        values = np.unique(arr[~ok])[:5].tolist()
        raise ValueError(f"{name} must hold only 0/1 labels, got other values such as {values}")
    return arr.astype(np.int8)


def check_scores(p, n: int, name: str = "p", *, probabilities: bool = False) -> np.ndarray:
    """``p`` as a 1-D float64 array of ``n`` finite scores; ValueError naming ``name`` otherwise."""
    arr = np.asarray(p)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the labels y have {n}")
    nan = np.isnan(arr)
    if nan.any():
        raise ValueError(f"{name} contains {int(nan.sum())} NaN value(s)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} infinite value(s)")
    if probabilities and ((arr < 0).any() or (arr > 1).any()):
        raise ValueError(f"{name} must hold probabilities in [0, 1], got values in [{arr.min()}, {arr.max()}]")
    return arr


def require_both_classes(y: np.ndarray, metric: str, name: str = "y") -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        only = "positives (1)" if positives else "negatives (0)"
        raise ValueError(f"{metric} needs both classes in {name}, got only {only} ({y.size} samples)")


def check_resamples(n_resamples, *, allow_zero: bool = False) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise ValueError(f"n_resamples must be a whole number, got {n_resamples!r}")
    low = 0 if allow_zero else 1
    if n_resamples < low:
        raise ValueError(f"n_resamples must be >= {low}, got {n_resamples}")
    return int(n_resamples)


def check_alpha(alpha) -> float:
    if not (isinstance(alpha, (float, int, np.floating)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    return int(seed)
