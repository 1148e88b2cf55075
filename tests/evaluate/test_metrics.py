"""condense.evaluate.metrics: point estimates against hand-computed cases and scikit-learn, bootstraps."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score

from condense.evaluate.metrics import (
    METRICS,
    auprc,
    auroc,
    bootstrap_ci,
    bootstrap_distribution,
    brier,
    paired_bootstrap_diff,
    summarize,
)

# A small case with ties across classes, worked by hand in the tests below.
Y_HAND = np.array([0, 0, 1, 1, 0, 1])
P_HAND = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.3])


def sklearn_auprc(y, p) -> float:
    precision, recall, _ = precision_recall_curve(y, p)
    return auc(recall, precision)


def cohort(n: int, seed: int, prevalence: float = 0.15, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-(rng.standard_normal(n) + 1.5 * y - 1.5)))
    if ties:
        p = np.round(p, 1)
    return y, p


# ----------------------------------------------------------------------------- point estimates


def test_perfect_ranking_scores_one_and_reversed_scores_zero():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert auroc(y, p) == 1.0
    assert auroc(y, 1.0 - p) == 0.0
    assert auprc(y, p) == 1.0


def test_all_tied_scores_give_half_auroc_and_prevalence_trapezoid_auprc():
    y = np.array([0, 1, 0, 1, 0, 0, 0, 1])
    p = np.full(8, 0.3)
    assert auroc(y, p) == 0.5
    # One threshold: the curve runs from (0, 1) to (1, 3/8); trapezoid = (1 + 3/8) / 2.
    assert auprc(y, p) == pytest.approx((1 + 3 / 8) / 2, abs=1e-15)


def test_auroc_hand_example_with_ties():
    # positives 0.4, 0.8, 0.3 vs negatives 0.1, 0.4, 0.8:
    # 0.4 -> 1 + 1/2 + 0; 0.8 -> 1 + 1 + 1/2; 0.3 -> 1 + 0 + 0  => 5 of 9 pairs.
    assert auroc(Y_HAND, P_HAND) == pytest.approx(5 / 9, abs=1e-15)


def test_auprc_hand_example_with_ties():
    # thresholds 0.8, 0.4, 0.3, 0.1 -> (recall, precision) = (1/3, 1/2), (2/3, 1/2), (1, 3/5), (1, 1/2)
    # trapezoids from (0, 1): 1/3 * (1 + 1/2)/2 + 1/3 * (1/2 + 1/2)/2 + 1/3 * (1/2 + 3/5)/2 + 0 = 0.6
    assert auprc(Y_HAND, P_HAND) == pytest.approx(0.6, abs=1e-15)


def test_brier_hand_example():
    # squared errors .01 .16 .36 .04 .64 .49 -> 1.70 / 6
    assert brier(Y_HAND, P_HAND) == pytest.approx(1.70 / 6, abs=1e-15)
    assert brier([0, 1], [0.0, 1.0]) == 0.0
    assert brier([0, 1], [0.5, 0.5]) == 0.25


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_point_estimates_match_sklearn_on_random_data(seed, ties):
    y, p = cohort(700, seed, ties=ties)
    assert abs(auroc(y, p) - roc_auc_score(y, p)) < 1e-12
    assert abs(auprc(y, p) - sklearn_auprc(y, p)) < 1e-12
    assert abs(brier(y, p) - np.mean((p - y) ** 2)) < 1e-15


def test_auprc_is_the_trapezoid_not_average_precision():
    from sklearn.metrics import average_precision_score

    y, p = cohort(400, 3)
    assert auprc(y, p) != pytest.approx(average_precision_score(y, p), abs=1e-6)


def test_column_vectors_and_bool_labels_are_accepted():
    y, p = cohort(50, 4)
    assert auroc(y.astype(bool), p[:, None]) == auroc(y, p)
    assert auprc(y.astype(float)[:, None], p) == auprc(y, p)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "y, p, match",
    [
        ([0, 1, 1], [0.1, 0.2], r"p has 2 entries but the labels y have 3"),
        ([0, 1, 2], [0.1, 0.2, 0.3], r"y must hold only 0/1 labels.*\[2\]"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], r"y contains 1 NaN"),
        ([0, 1, 1], [0.1, np.nan, 0.3], r"p contains 1 NaN"),
        ([0, 1, 1], [0.1, np.inf, 0.3], r"p contains 1 infinite"),
        ([1, 1, 1], [0.1, 0.2, 0.3], r"auroc needs both classes in y, got only positives"),
        ([0, 0, 0], [0.1, 0.2, 0.3], r"auroc needs both classes in y, got only negatives"),
        ([], [], r"y is empty"),
        ([[0, 1], [1, 0]], [0.1, 0.2], r"y must be a 1-D array"),
        (["a", "b"], [0.1, 0.2], r"y must hold 0/1 labels, got dtype"),
    ],
)
def test_auroc_rejects_bad_input_naming_the_argument(y, p, match):
    with pytest.raises(ValueError, match=match):
        auroc(np.asarray(y), np.asarray(p))


def test_brier_requires_probabilities_and_allows_one_class():
    with pytest.raises(ValueError, match=r"p must hold probabilities in \[0, 1\]"):
        brier([0, 1], [0.2, 1.5])
    assert brier([1, 1], [0.5, 1.0]) == pytest.approx(0.125)


def test_bootstrap_arguments_are_validated():
    y, p = cohort(60, 5)
    with pytest.raises(ValueError, match=r"metric must be one of .* got 'f1'"):
        bootstrap_ci(y, p, metric="f1")
    with pytest.raises(ValueError, match=r"n_resamples must be >= 1, got 0"):
        bootstrap_ci(y, p, n_resamples=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.5"):
        bootstrap_ci(y, p, alpha=1.5)
    with pytest.raises(ValueError, match=r"seed must be a non-negative whole number, got -1"):
        bootstrap_ci(y, p, seed=-1)
    with pytest.raises(ValueError, match=r"p_b has 59 entries"):
        paired_bootstrap_diff(y, p, p[:-1])
    with pytest.raises(ValueError, match=r"p_a contains 1 NaN"):
        paired_bootstrap_diff(y, np.where(np.arange(60) == 3, np.nan, p), p)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_values_equal_the_metric_on_the_resampled_arrays():
    # The documented resamples: rows of default_rng(seed).integers(0, n, (B, n)).
    y, p = cohort(200, 6, ties=True)
    n_resamples, seed = 40, 11
    idx = np.random.default_rng(seed).integers(0, y.size, size=(n_resamples, y.size), dtype=np.int64)
    got = {m: bootstrap_distribution(y, p, m, n_resamples, seed) for m in METRICS}
    for b in range(n_resamples):
        yb, pb = y[idx[b]], p[idx[b]]
        assert abs(got["auroc"][b] - roc_auc_score(yb, pb)) < 1e-12
        assert abs(got["auprc"][b] - sklearn_auprc(yb, pb)) < 1e-12
        assert abs(got["brier"][b] - np.mean((pb - yb) ** 2)) < 1e-15


@pytest.mark.parametrize("metric", METRICS)
def test_bootstrap_ci_contains_estimate_is_reproducible_and_moves_with_seed(metric):
    y, p = cohort(500, 7)
    point = {"auroc": auroc, "auprc": auprc, "brier": brier}[metric](y, p)
    low, high = bootstrap_ci(y, p, metric, n_resamples=2000, seed=0)
    assert low < point < high
    assert high - low < 0.5
    assert bootstrap_ci(y, p, metric, n_resamples=2000, seed=0) == (low, high)
    assert bootstrap_ci(y, p, metric, n_resamples=2000, seed=1) != (low, high)


def test_bootstrap_ci_is_the_percentile_of_the_distribution():
    y, p = cohort(300, 8)
    values = bootstrap_distribution(y, p, "auroc", 1000, 3)
    expected = tuple(np.percentile(values, [5.0, 95.0]))
    assert bootstrap_ci(y, p, "auroc", 1000, alpha=0.10, seed=3) == pytest.approx(expected, abs=0)


def test_lower_confidence_level_gives_a_nested_narrower_interval():
    y, p = cohort(300, 9)
    low95, high95 = bootstrap_ci(y, p, n_resamples=1000, alpha=0.05)
    low80, high80 = bootstrap_ci(y, p, n_resamples=1000, alpha=0.20)
    assert low95 <= low80 < high80 <= high95


def test_single_class_resamples_are_skipped_counted_and_warned():
    y = np.array([0, 0, 0, 0, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    n_resamples, seed = 500, 2
    idx = np.random.default_rng(seed).integers(0, y.size, size=(n_resamples, y.size), dtype=np.int64)
    single = (y[idx].sum(axis=1) == 0) | (y[idx].sum(axis=1) == y.size)
    values = bootstrap_distribution(y, p, "auroc", n_resamples, seed)
    assert np.array_equal(np.isnan(values), single)
    assert single.sum() > 0.05 * n_resamples  # (5/6)^6 = 33 % have no positive
    # The only positive has the top score: every kept resample ranks perfectly.
    assert np.all(values[~single] == 1.0)
    with pytest.warns(RuntimeWarning, match=r"held a single class and were skipped"):
        assert bootstrap_ci(y, p, "auroc", n_resamples, seed=seed) == (1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = bootstrap_ci(y, p, "brier", n_resamples, seed=seed)  # Brier: no class needed
    assert 0.0 <= low <= high


def test_paired_diff_of_a_model_with_itself_is_exactly_zero():
    y, p = cohort(400, 10)
    for metric in METRICS:
        out = paired_bootstrap_diff(y, p, p.copy(), metric, n_resamples=1000, seed=0)
        assert (out["diff"], out["low"], out["high"]) == (0.0, 0.0, 0.0)
        assert out["p_value"] == 1.0
        assert out["skipped"] == 0


def test_paired_diff_detects_a_better_model_on_the_same_resamples():
    y, p_a = cohort(600, 12)
    rng = np.random.default_rng(0)
    p_b = np.clip(p_a + 0.25 * (y - 0.5) + 0.02 * rng.standard_normal(y.size), 0.0, 1.0)
    out = paired_bootstrap_diff(y, p_a, p_b, "auroc", n_resamples=2000, seed=4)
    assert out["a"] == auroc(y, p_a) and out["b"] == auroc(y, p_b)
    assert out["diff"] == out["b"] - out["a"] > 0
    assert 0 < out["low"] < out["diff"] < out["high"]
    assert out["p_value"] < 0.01
    # Paired resampling: each resampled difference is metric(b) - metric(a) on the same rows.
    da = bootstrap_distribution(y, p_a, "auroc", 2000, 4)
    db = bootstrap_distribution(y, p_b, "auroc", 2000, 4)
    assert (out["low"], out["high"]) == pytest.approx(tuple(np.percentile(db - da, [2.5, 97.5])), abs=0)
    json.dumps(out)


# ----------------------------------------------------------------------------- summarize


def test_summarize_returns_plain_json_ready_values():
    y, p = cohort(300, 13)
    out = summarize(y, p, n_resamples=500, seed=0)
    assert set(out) == {"auroc", "auroc_ci", "auprc", "auprc_ci", "brier", "n", "positives",
                        "ece", "cal_slope", "cal_intercept"}
    assert type(out["n"]) is int and out["n"] == 300
    assert type(out["positives"]) is int and out["positives"] == int(y.sum())
    for key in ("auroc", "auprc", "brier", "ece", "cal_slope", "cal_intercept"):
        assert type(out[key]) is float
    for key in ("auroc", "auprc"):
        low, high = out[f"{key}_ci"]
        assert type(low) is float and type(high) is float
        assert low < out[key] < high
    assert out["auroc"] == auroc(y, p) and out["auprc"] == auprc(y, p) and out["brier"] == brier(y, p)
    assert tuple(out["auroc_ci"]) == bootstrap_ci(y, p, "auroc", 500, seed=0)
    assert tuple(out["auprc_ci"]) == bootstrap_ci(y, p, "auprc", 500, seed=0)
    assert json.loads(json.dumps(out)) == out


def test_summarize_without_bootstrap_and_its_validation():
    y, p = cohort(100, 14)
    out = summarize(y, p, n_resamples=0)
    assert out["auroc_ci"] is None and out["auprc_ci"] is None
    with pytest.raises(ValueError, match=r"summarize needs both classes"):
        summarize(np.zeros(5), np.full(5, 0.1), n_resamples=0)
    with pytest.raises(ValueError, match=r"p must hold probabilities"):
        summarize(y, p * 3, n_resamples=0)
    score = summarize(y, p * 3 - 7, n_resamples=0, probabilities=False)  # a risk score: ranks only
    assert score["auroc"] == auroc(y, p) and score["brier"] is None
    assert score["ece"] is None and score["cal_slope"] is None and score["cal_intercept"] is None
    with pytest.raises(ValueError, match=r"n_resamples must be a whole number, got 10.5"):
        summarize(y, p, n_resamples=10.5)
