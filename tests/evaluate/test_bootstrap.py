"""condense.evaluate.bootstrap: resampled values, intervals, paired differences, the one p-value convention."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from condense.evaluate.bootstrap import (METRICS, bootstrap_ci, bootstrap_distribution, bootstrap_p_value,
                                         paired_bootstrap_diff)
from sklearn.metrics import roc_auc_score

from condense.evaluate.metrics import auprc, auroc, brier
from scored_cohorts import cohort, sklearn_auprc


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


def test_the_p_value_counts_the_observed_sample_as_a_resample():
    diffs = np.array([-0.02, -0.01, 0.0, 0.01, np.nan])  # 4 kept: 2 below 0, 1 at 0, 1 above
    assert bootstrap_p_value(diffs, "less") == pytest.approx((2 + 1) / 5)  # d >= 0: 2
    assert bootstrap_p_value(diffs, "greater") == pytest.approx((3 + 1) / 5)  # d <= 0: 3
    assert bootstrap_p_value(diffs, "two-sided") == 1.0  # 2 * 0.6, clipped
    assert bootstrap_p_value(np.full(99, -1.0), "less") == pytest.approx(1 / 100)  # never 0
    assert bootstrap_p_value(np.full(99, -1.0)) == pytest.approx(2 / 100)
    with pytest.raises(ValueError, match="alternative must be one of"):
        bootstrap_p_value(diffs, "drop")
    with pytest.raises(ValueError, match="every resample was skipped"):
        bootstrap_p_value(np.array([np.nan]))


def test_the_paired_diff_p_value_follows_the_convention():
    y, p_a = cohort(300, 7)
    p_b = np.clip(p_a + 0.05 * np.random.default_rng(1).standard_normal(y.size), 0, 1)
    out = paired_bootstrap_diff(y, p_a, p_b, "auroc", n_resamples=500, seed=2)
    diffs = bootstrap_distribution(y, p_b, "auroc", 500, 2) - bootstrap_distribution(y, p_a, "auroc", 500, 2)
    assert out["p_value"] == bootstrap_p_value(diffs, "two-sided")
