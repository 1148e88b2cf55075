"""Selection: which units of a layer stay, by the quantile rule.

A layer of ``n`` units pruned at quantile ``q`` loses its ``min(floor(q * n), n - 1)``
lowest-scoring units, ties broken by index. See docs/pruning.md (including why the floor
carries a ``1e-9`` guard: ``0.29 * 100`` is ``28.999999999999996`` in binary).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from condense.checks import check_fraction
from condense.prune.importance import unit_importance

__all__ = ["kept_units", "select_units", "select_model_units"]


def kept_units(n: int, quantile: float) -> int:
    """How many of ``n`` units stay when a layer is pruned at ``quantile``: ``n - min(floor(q n), n - 1)``."""
    q = check_fraction("quantile", quantile)
    return n - min(math.floor(q * n + 1e-9), n - 1)


def select_units(scores, quantile: float) -> np.ndarray:
    """Indices (sorted) of the units kept when pruning one layer at ``quantile``.

    Removes the ``min(floor(q * n), n - 1)`` lowest-scoring of the ``n`` units, ties broken
    by index (of equal scores, the lower index goes first), so at least one unit always
    stays. With distinct scores these are exactly the units scoring strictly below
    ``numpy.quantile(scores, q, method="averaged_inverted_cdf")``. ``floor`` carries a
    ``1e-9`` guard so that binary rounding cannot change the count: ``0.29 * 100`` removes 29
    (numpy's quantile, rounding ``0.29 * 100`` down, would remove 28).

    Args:
        scores: One finite score per unit, shape ``(n,)``.
        quantile: ``q`` strictly between 0 and 1.

    Returns:
        An int64 array of kept indices in increasing order.

    Raises:
        ValueError: ``quantile`` outside ``(0, 1)``; ``scores`` empty, not 1-D or not finite.
    """
    q = check_fraction("quantile", quantile)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(
            f"Argument `scores` must be a non-empty 1-D array of finite numbers, got shape {s.shape} "
            f"with values {np.array2string(s, threshold=8)}."
        )
    n = s.size
    remove = n - kept_units(n, q)
    order = np.lexsort((np.arange(n), s))  # by score, then by index
    return np.sort(order[remove:]).astype(np.int64)


def select_model_units(
    model: keras.Model, quantile: float = 0.5, criterion: str = "mean_abs", calibration_x=None
) -> dict[str, np.ndarray]:
    """Kept indices for every prunable layer: :func:`unit_importance` then :func:`select_units`."""
    check_fraction("quantile", quantile)
    scores = unit_importance(model, criterion=criterion, calibration_x=calibration_x)
    return {name: select_units(s, quantile) for name, s in scores.items()}
