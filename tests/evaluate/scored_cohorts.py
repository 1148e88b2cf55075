"""Synthetic labelled scores for the metric and bootstrap tests."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, precision_recall_curve


def cohort(n: int, seed: int, prevalence: float = 0.15, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-(rng.standard_normal(n) + 1.5 * y - 1.5)))
    if ties:
        p = np.round(p, 1)
    return y, p


def sklearn_auprc(y, p) -> float:
    precision, recall, _ = precision_recall_curve(y, p)
    return auc(recall, precision)
