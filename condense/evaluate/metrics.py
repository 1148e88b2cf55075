"""Discrimination and calibration metrics: point estimates (numpy only).

Point estimates:

* :func:`auroc` — area under the ROC curve in its Mann-Whitney form: the probability that a
  random positive scores above a random negative, ties counted one half. Equal to
  ``sklearn.metrics.roc_auc_score``.
* :func:`auprc` — the trapezoidal area under the precision-recall curve, exactly as the MIMIC-III
  benchmark reports it (``auc(recall, precision)`` over ``precision_recall_curve``); this is *not*
  average precision (the step-wise sum), which is typically a little lower.
* :func:`brier` — mean squared error of the predicted probability against the 0/1 label.
* :func:`calibration` — whether the probabilities mean what they say: the expected calibration
  error over equal-frequency bins, the calibration slope and intercept of a logistic
  recalibration fit, and the reliability-diagram points (mean predicted, observed rate, count
  per bin). Point estimates only (no bootstrap).

Intervals and paired differences: :mod:`condense.evaluate.bootstrap`; every number a table or
manifest needs in one call: :func:`condense.evaluate.summary.summarize`.

How the metrics stay exact and fast (:mod:`condense.evaluate.counts`): both curve metrics depend
on the scores only through their order, so the scores are sorted once into ``K`` bins (tie groups,
with runs of negative-only groups merged: about ``2 * positives`` bins) and reduced to a
``(2, K)`` table of negative / positive counts per bin. AUROC is then
``sum_k pos_k * (negatives below k + neg_k / 2) / (P * N)`` (integer-exact) and AUPRC the
trapezoid over cumulative counts; a bootstrap resample is the same table built from
multiplicities, so no resample is ever sorted.
"""

from __future__ import annotations

import math

import numpy as np

from condense.evaluate.counts import auprc_from_counts, auroc_from_counts, counts_full, score_bins
from condense.evaluate.validate import check_labels, check_scores, require_both_classes

__all__ = ["auroc", "auprc", "brier", "calibration", "challenge_event1", "hosmer_lemeshow", "logistic_recalibration",
           "sigmoid", "CALIBRATION_BINNINGS",
           "CHALLENGE_BEST_EVENT1", "CHALLENGE_BEST_EVENT2"]

#: Binning strategies of :func:`calibration`.
CALIBRATION_BINNINGS: tuple[str, ...] = ("quantile", "uniform")
#: Probabilities are clipped to [eps, 1 - eps] before the logit of the recalibration fit.
_LOGIT_EPS = 1e-7
#: Newton steps of the recalibration fit at most, and the step size that counts as converged.
_FIT_MAX_ITER = 50
_FIT_TOL = 1e-10


def auroc(y, p) -> float:
    """Area under the ROC curve (Mann-Whitney U / (P * N), ties between classes count 1/2).

    Args:
        y: (N,) labels, 0 or 1 (bool, int or float).
        p: (N,) finite scores; any monotone transform of ``p`` gives the same value.

    Returns:
        A float in [0, 1]: 1.0 for a perfect ranking, 0.0 for a reversed one, 0.5 when all tie.

    Raises:
        ValueError: bad shapes or values, or only one class present in ``y``.
    """
    return _curve_metric(y, p, "auroc", auroc_from_counts)


def auprc(y, p) -> float:
    """Trapezoidal area under the precision-recall curve (the MIMIC-III benchmark's AUPRC).

    Equal to ``sklearn.metrics.auc(recall, precision)`` with ``precision, recall, _ =
    precision_recall_curve(y, p)``: one point per distinct score (ties form one threshold),
    joined by straight lines, starting at (recall 0, precision 1).

    Args:
        y: (N,) labels, 0 or 1.
        p: (N,) finite scores.

    Raises:
        ValueError: bad shapes or values, or only one class present in ``y``.
    """
    return _curve_metric(y, p, "auprc", auprc_from_counts)


def _curve_metric(y, p, name: str, from_counts) -> float:
    """A curve metric of the whole set: checked inputs, one counts table, ``from_counts`` on it."""
    y = check_labels(y)
    p = check_scores(p, y.size)
    require_both_classes(y, name)
    return float(from_counts(counts_full(*score_bins(y, p)))[0])


def brier(y, p) -> float:
    """Brier score: mean of ``(p - y) ** 2``; 0 is perfect, 0.25 is a constant 0.5 forecast.

    Args:
        y: (N,) labels, 0 or 1.
        p: (N,) predicted probabilities of the positive class, in [0, 1].
    """
    y = check_labels(y)
    p = check_scores(p, y.size, probabilities=True)
    return float(np.mean((p - y) ** 2))


def _check_bins(n_bins, strategy) -> tuple[int, str]:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a whole number >= 1, got {n_bins!r}")
    if strategy not in CALIBRATION_BINNINGS:
        raise ValueError(f"strategy must be one of {CALIBRATION_BINNINGS}, got {strategy!r}")
    return int(n_bins), strategy


def _calibration_bin_of(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """Bin index (0 .. n_bins - 1, ascending in ``p``) of every sample.

    ``quantile``: the i-th smallest of n probabilities goes to bin ``floor(i * n_bins / n)``, except
    that equal probabilities stay together, in the bin of the first of them (a bin swallowed by a
    large tie group stays empty). ``uniform``: ``[0, 1/n_bins), ...``, the last bin closed at 1.
    """
    if strategy == "uniform":
        return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    n = p.size
    order = np.argsort(p, kind="stable")
    nominal = (np.arange(n, dtype=np.int64) * n_bins) // n
    _, first, inverse = np.unique(p[order], return_index=True, return_inverse=True)
    bins = np.empty(n, dtype=np.int64)
    bins[order] = nominal[first[inverse.reshape(-1)]]
    return bins


def sigmoid(eta: np.ndarray) -> np.ndarray:
    """The logistic function, in its tanh form (no overflow for large |eta|)."""
    return 0.5 * (1.0 + np.tanh(0.5 * eta))  # no overflow for large |eta|


def _recalibration_fit(y: np.ndarray, p: np.ndarray) -> tuple[float, float, str | None]:
    """Maximum-likelihood ``(intercept, slope)`` of ``logit P(y=1) = a + b * logit(p)``, and why not.

    Newton-Raphson (IRLS) from the perfectly calibrated ``(0, 1)``, halving a step that would lower
    the log-likelihood. The maximum does not exist when every ``logit(p)`` is equal (no slope) or
    when the predictions separate the classes (the slope grows without bound); both give NaN and
    the reason.
    """
    q = np.clip(p, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return logistic_recalibration(y, np.log(q) - np.log1p(-q))


def logistic_recalibration(y: np.ndarray, x: np.ndarray) -> tuple[float, float, str | None]:
    """Maximum-likelihood ``(intercept, slope)`` of ``logit P(y=1) = a + b * x`` for logits ``x``
    (float64), and why there is none (NaN then): the fit behind :func:`calibration`'s slope and
    intercept, and behind Platt recalibration (:mod:`condense.calibrate`)."""
    if np.ptp(x) == 0.0:
        return math.nan, math.nan, "every predicted probability is the same: no slope"
    neg, pos = x[y == 0], x[y == 1]
    if neg.max() <= pos.min() or pos.max() <= neg.min():
        return math.nan, math.nan, "the predictions separate the classes: the fit has no maximum"
    design = np.column_stack([np.ones_like(x), x])
    yf = y.astype(np.float64)

    def loglik(beta):
        eta = design @ beta
        return float(np.sum(yf * eta - np.logaddexp(0.0, eta)))

    beta = np.array([0.0, 1.0])
    current = loglik(beta)
    for _ in range(_FIT_MAX_ITER):
        mu = sigmoid(design @ beta)
        gradient = design.T @ (yf - mu)
        hessian = (design * (mu * (1.0 - mu))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return math.nan, math.nan, "singular information matrix in the recalibration fit"
        scale = 1.0
        while True:
            trial = beta + scale * step
            value = loglik(trial)
            if value >= current - 1e-12 * abs(current) or scale < 1e-6:
                break
            scale *= 0.5
        beta, current = trial, value
        if np.max(np.abs(scale * step)) < _FIT_TOL * (1.0 + np.max(np.abs(beta))):
            return float(beta[0]), float(beta[1]), None
    return math.nan, math.nan, f"the recalibration fit did not converge in {_FIT_MAX_ITER} Newton steps"


def calibration(y, p, *, n_bins: int = 10, strategy: str = "quantile") -> dict:
    """Calibration of predicted probabilities: ECE, calibration slope and intercept, reliability points.

    **ECE** (expected calibration error) is ``sum_k (n_k / N) * |observed rate_k - mean predicted_k|``
    over the bins. The bins are **equal-frequency** (``strategy="quantile"``, the default: deciles of
    predicted risk for ``n_bins=10``, as in the Hosmer-Lemeshow table) rather than equal-width:
    mortality risks crowd near 0, so equal-width bins put most patients in the first one or two bins
    and leave the high-risk bins with a handful of patients each; equal-frequency bins give every
    point of the reliability diagram about ``N / n_bins`` patients, hence about the same precision.
    Equal probabilities are never split between bins (a large tie group, as int8 files produce, can
    leave a bin empty; empty bins are dropped). ``strategy="uniform"`` gives equal-width bins.

    **Calibration slope and intercept** come from logistic recalibration: the maximum-likelihood fit
    of ``logit P(y=1) = intercept + slope * logit(p)`` (``p`` clipped to ``[1e-7, 1 - 1e-7]``),
    by a few Newton (IRLS) steps. Slope 1 and intercept 0 is perfect calibration; slope < 1 means
    the predictions are too extreme (over-confident: too high for high risks, too low for low
    risks), slope > 1 too moderate. The intercept is the one of this two-parameter fit (the
    ``"calibration-in-the-large"``-style intercept at ``logit(p) = 0``, i.e. at p = 0.5), *not* the
    calibration-in-the-large of a fit with the slope fixed at 1: with slope != 1 it also reflects
    the slope. When the fit has no maximum (all ``p`` equal, or ``p`` separates the classes) both
    are NaN and ``fit_note`` says why.

    Args:
        y: (N,) labels, 0 or 1, both classes present.
        p: (N,) predicted probabilities of the positive class, in [0, 1].
        n_bins: bins of the ECE and of the reliability diagram.
        strategy: ``"quantile"`` (equal-frequency, default) or ``"uniform"`` (equal-width).

    Returns:
        ``{"ece": float, "slope": float, "intercept": float, "fit_note": str | None, "n_bins": int,
        "strategy": str, "n": int, "reliability": {"mean_predicted": [...], "observed": [...],
        "count": [...]}}``: plain floats / ints, the reliability lists one entry per non-empty bin in
        ascending order of predicted risk.

    Raises:
        ValueError: bad shapes or values, probabilities outside [0, 1], a bad ``n_bins`` or
            ``strategy``, or only one class present in ``y``.
    """
    n_bins, strategy = _check_bins(n_bins, strategy)
    y = check_labels(y)
    p = check_scores(p, y.size, probabilities=True)
    require_both_classes(y, "calibration")
    bins = _calibration_bin_of(p, n_bins, strategy)
    count = np.bincount(bins, minlength=n_bins)
    kept = count > 0
    mean_predicted = np.bincount(bins, weights=p, minlength=n_bins)[kept] / count[kept]
    observed = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)[kept] / count[kept]
    count = count[kept]
    ece = float(np.sum(count * np.abs(observed - mean_predicted)) / y.size)
    intercept, slope, note = _recalibration_fit(y, p)
    return {
        "ece": ece,
        "slope": slope,
        "intercept": intercept,
        "fit_note": note,
        "n_bins": n_bins,
        "strategy": strategy,
        "n": int(y.size),
        "reliability": {"mean_predicted": mean_predicted.tolist(), "observed": observed.tolist(),
                        "count": [int(c) for c in count]},
    }


def calibrated_floor(p, *, n_bins: int = 10, draws: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The ECE a **perfectly calibrated** model with these probabilities would get on these patients.

    Outcomes are drawn as ``y ~ Bernoulli(p)`` (``draws`` times, seeded): by construction ``p`` is then
    the true risk, and the ECE of each draw (same equal-frequency bins as :func:`calibration`) is pure
    sampling noise. On 600 patients with about 14 % deaths its median is about 0.02 and its 95th
    percentile about 0.03, so an ECE target of 0.02 on such a test set is met by a calibrated model
    only about half the time (docs/calibration.md).

    Returns ``{"ece_floor": median, "ece_floor_high": the level quantile, "draws": int}``.
    """
    n_bins, _ = _check_bins(n_bins, "quantile")
    p = check_scores(p, np.asarray(p).size, probabilities=True)
    bins = _calibration_bin_of(p, n_bins, "quantile")
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    kept = count > 0
    mean_predicted = np.bincount(bins, weights=p, minlength=n_bins)[kept] / count[kept]
    rng = np.random.default_rng([int(seed), 0xCA1B])
    onehot = np.zeros((p.size, n_bins))
    onehot[np.arange(p.size), bins] = 1.0
    deaths = (rng.random((draws, p.size)) < p).astype(np.float64) @ onehot  # (draws, bins)
    observed = deaths[:, kept] / count[kept]
    ece = np.abs(observed - mean_predicted) @ count[kept] / p.size
    return {"ece_floor": float(np.median(ece)), "ece_floor_high": float(np.quantile(ece, level)), "draws": int(draws)}


_POINT = {"auroc": auroc, "auprc": auprc, "brier": brier}


# --------------------------------------------------------------------------- the PhysioNet/CinC 2012 challenge's scores


#: The challenge's winning scores on 4,000 unseen stays (set C), for reading a table beside them.
CHALLENGE_BEST_EVENT1 = 0.5353
CHALLENGE_BEST_EVENT2 = 17.88


def challenge_event1(y, p, *, base_rate: float) -> dict:
    """The PhysioNet/CinC 2012 challenge's event 1: ``min(sensitivity, positive predictivity)`` of a
    binary prediction.

    The threshold uses no test label: the ``k = round(base_rate * n)`` highest scores (at least one)
    are predicted to die, ``base_rate`` being the death rate of the *training* split, so as many
    deaths are predicted as the training data would expect (scores tied with the k-th highest are
    predicted positive too). Any score that ranks works (risk scores included).

    Returns:
        ``{"event1", "sensitivity", "ppv", "threshold", "predicted_positive"}`` (plain numbers).
    """
    y = check_labels(y)
    p = check_scores(p, y.size)
    require_both_classes(y, "challenge_event1")
    if isinstance(base_rate, bool) or not isinstance(base_rate, (int, float, np.floating)) \
            or not 0.0 < float(base_rate) < 1.0:
        raise ValueError(f"base_rate must be a death rate in (0, 1), got {base_rate!r}")
    k = max(1, int(round(float(base_rate) * y.size)))
    threshold = float(np.sort(p)[y.size - k])
    predicted = p >= threshold
    true_positive = int(np.count_nonzero(predicted & (y == 1)))
    sensitivity = true_positive / int(y.sum())
    ppv = true_positive / int(np.count_nonzero(predicted))
    return {"event1": min(sensitivity, ppv), "sensitivity": sensitivity, "ppv": ppv, "threshold": threshold,
            "predicted_positive": int(np.count_nonzero(predicted))}


def hosmer_lemeshow(y, p, *, n_groups: int = 10) -> dict:
    """The PhysioNet/CinC 2012 challenge's event 2: the Hosmer-Lemeshow H statistic,
    ``sum over groups of (O - E)^2 / (E (1 - E / n))`` over deciles of predicted risk (the groups
    of :func:`calibration`'s quantile bins; O deaths, E expected deaths, n patients per group).

    Lower is better calibrated; H grows with the number of patients for the same miscalibration,
    so compare it only on the same patients (``n`` is returned with it). Groups whose expected
    count is 0 or n (no variance) are left out and counted in ``skipped_groups``.
    """
    n_groups, _ = _check_bins(n_groups, "quantile")
    y = check_labels(y)
    p = check_scores(p, y.size, probabilities=True)
    bins = _calibration_bin_of(p, n_groups, "quantile")
    sizes = np.bincount(bins, minlength=n_groups).astype(np.float64)
    observed = np.bincount(bins, weights=y, minlength=n_groups)
    expected = np.bincount(bins, weights=p, minlength=n_groups)
    variance = expected * (1.0 - np.divide(expected, sizes, out=np.zeros_like(expected), where=sizes > 0))
    used = (sizes > 0) & (variance > 0)
    h = float(np.sum((observed[used] - expected[used]) ** 2 / variance[used]))
    skipped = int(np.count_nonzero(sizes > 0) - np.count_nonzero(used))
    return {"hl_h": h, "groups": int(np.count_nonzero(used)), "skipped_groups": skipped, "n": int(y.size)}
