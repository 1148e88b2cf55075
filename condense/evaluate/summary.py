"""Every test-set number a manifest or table needs, in one call (:func:`summarize`)."""

from __future__ import annotations

import math

from condense.evaluate.bootstrap import bootstrap_values, check_skipped, percentile_interval
from condense.evaluate.metrics import auprc, auroc, brier, calibrated_floor, calibration, challenge_event1, hosmer_lemeshow
from condense.evaluate.validate import check_alpha, check_labels, check_resamples, check_scores, check_seed, \
    require_both_classes

__all__ = ["summarize"]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summarize(y, p, *, n_resamples: int = 10_000, alpha: float = 0.05, seed: int = 0,
              probabilities: bool = True, base_rate: float | None = None) -> dict:
    """Every test-set number a manifest or table needs, as plain JSON-serializable values.

    Args:
        y: (N,) labels, 0 or 1, with both classes present.
        p: (N,) predicted probabilities in [0, 1].
        n_resamples: bootstrap resamples for the intervals; ``0`` skips the bootstrap and sets
            the intervals to ``None``.
        alpha: the intervals are at level ``1 - alpha`` (95 % by default).
        seed: bootstrap seed; AUROC and AUPRC intervals share the same resamples.
        probabilities: False for a risk score on any scale (e.g. a severity score): ranks only,
            and ``brier`` and the calibration numbers are ``None``.
        base_rate: the training split's death rate: with it, the challenge's event-1 score
            (:func:`~condense.evaluate.metrics.challenge_event1`, threshold from the base rate).

    Returns:
        ``{"auroc": float, "auroc_ci": [low, high], "auprc": float, "auprc_ci": [low, high],
        "brier": float | None, "n": int, "positives": int, "ece": float | None,
        "cal_slope": float | None, "cal_intercept": float | None}``: the last three from
        :func:`calibration` with its defaults (10 equal-frequency bins), ``None`` where the
        recalibration fit has no maximum; ``"event1"`` (None without ``base_rate``) and ``"hl_h"``
        (the Hosmer-Lemeshow H over deciles of risk, event 2; None for a score that is not a
        probability), the PhysioNet/CinC 2012 challenge's scores, on these ``n`` patients;
        ``"ece_floor"`` / ``"ece_floor_high"``: the median and 95th percentile of the ECE a perfectly
        calibrated model with these probabilities would get on these patients
        (:func:`~condense.evaluate.metrics.calibrated_floor`): an ECE below the second is sampling noise.
    """
    n_resamples = check_resamples(n_resamples, allow_zero=True)
    alpha = check_alpha(alpha)
    seed = check_seed(seed)
    y = check_labels(y)
    p = check_scores(p, y.size, probabilities=probabilities)
    require_both_classes(y, "summarize")
    out = {
        "auroc": auroc(y, p),
        "auroc_ci": None,
        "auprc": auprc(y, p),
        "auprc_ci": None,
        "brier": brier(y, p) if probabilities else None,
        "n": int(y.size),
        "positives": int(y.sum()),
        "ece": None,
        "cal_slope": None,
        "cal_intercept": None,
        "event1": None if base_rate is None else challenge_event1(y, p, base_rate=base_rate)["event1"],
        "hl_h": None,
        "ece_floor": None,
        "ece_floor_high": None,
    }
    if probabilities:
        cal = calibration(y, p)
        floor = calibrated_floor(p, seed=seed)
        out.update(ece=cal["ece"], cal_slope=_finite_or_none(cal["slope"]),
                   cal_intercept=_finite_or_none(cal["intercept"]), hl_h=hosmer_lemeshow(y, p)["hl_h"],
                   ece_floor=floor["ece_floor"], ece_floor_high=floor["ece_floor_high"])
    if n_resamples:
        values = bootstrap_values(y, [p], ("auroc", "auprc"), n_resamples, seed)[0]
        for metric in ("auroc", "auprc"):
            check_skipped(values[metric], metric)
            out[f"{metric}_ci"] = list(percentile_interval(values[metric], alpha))
    return out
