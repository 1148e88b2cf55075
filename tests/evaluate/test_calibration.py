"""condense.evaluate.metrics.calibration: ECE by hand, slope / intercept on synthetic cohorts whose
calibration is known, against an independent logistic fit, bad inputs, fits without a maximum."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from condense.evaluate.metrics import calibration
from condense.evaluate.summary import summarize

# A tiny case worked by hand below.
P_HAND = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
Y_HAND = np.array([0, 0, 1, 0, 1, 1, 0, 1])


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def calibrated():
    """y drawn from Bernoulli(p): p is perfectly calibrated by construction (prevalence about 15 %)."""
    rng = np.random.default_rng(0)
    p = _sigmoid(rng.normal(-2.2, 1.2, 200_000))
    y = (rng.random(p.size) < p).astype(int)
    return y, p


def test_a_perfectly_calibrated_model_has_slope_one_intercept_zero_and_small_ece(calibrated):
    y, p = calibrated
    out = calibration(y, p)
    assert out["slope"] == pytest.approx(1.0, abs=0.03)
    assert out["intercept"] == pytest.approx(0.0, abs=0.05)
    assert out["ece"] < 0.005
    assert out["fit_note"] is None and out["strategy"] == "quantile" and out["n_bins"] == 10
    points = out["reliability"]
    assert points["count"] == [20_000] * 10, "equal-frequency bins"
    assert points["mean_predicted"] == sorted(points["mean_predicted"])
    assert np.allclose(points["observed"], points["mean_predicted"], atol=0.015)


def test_over_and_under_confidence_move_the_slope_the_right_way(calibrated):
    y, p = calibrated
    base = calibration(y, p)
    # too extreme (over-confident): slope < 1; too timid: slope > 1
    sharp, timid = calibration(y, _sigmoid(2.0 * _logit(p))), calibration(y, _sigmoid(0.5 * _logit(p)))
    assert sharp["slope"] == pytest.approx(0.5, abs=0.02) and sharp["intercept"] == pytest.approx(0.0, abs=0.05)
    assert timid["slope"] == pytest.approx(2.0, abs=0.06)
    cubed, root = calibration(y, p ** 3), calibration(y, np.sqrt(p))
    assert cubed["slope"] < 0.6 and root["slope"] > 1.2
    for worse in (sharp, timid, cubed, root):
        assert worse["ece"] > 5 * base["ece"]
    # over-prediction by a constant on the logit scale: slope stays 1, the intercept takes the shift
    high = calibration(y, _sigmoid(_logit(p) + 1.0))
    assert high["slope"] == pytest.approx(1.0, abs=0.03) and high["intercept"] == pytest.approx(-1.0, abs=0.05)
    assert all(o < m for o, m in zip(high["reliability"]["observed"], high["reliability"]["mean_predicted"]))


def test_slope_and_intercept_equal_an_independent_unpenalized_logistic_fit():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    p = rng.beta(1.0, 6.0, 3000)
    p[:3] = [0.0, 1.0, 1e-9]  # clipped to [1e-7, 1 - 1e-7] before the logit
    y = (rng.random(p.size) < np.clip(1.3 * p, 0, 1)).astype(int)
    out = calibration(y, p)
    x = _logit(np.clip(p, 1e-7, 1 - 1e-7))[:, None]
    fit = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x, y)
    assert out["slope"] == pytest.approx(fit.coef_[0, 0], abs=1e-5)
    assert out["intercept"] == pytest.approx(fit.intercept_[0], abs=1e-5)


def test_ece_and_reliability_points_by_hand():
    out = calibration(Y_HAND, P_HAND, n_bins=2)  # {.1,.2,.3,.4}: 1/4 observed, 0.25 predicted; same above
    assert out["ece"] == pytest.approx(0.0, abs=1e-12)
    assert out["reliability"] == {"mean_predicted": pytest.approx([0.25, 0.75]), "observed": [0.25, 0.75],
                                  "count": [4, 4]}
    # pairs: (.15 predicted, 0 observed), (.35, .5), (.65, 1), (.85, .5): |diff| .15, .15, .35, .35
    out = calibration(Y_HAND, P_HAND, n_bins=4)
    assert out["ece"] == pytest.approx(0.25)
    assert out["reliability"]["mean_predicted"] == pytest.approx([0.15, 0.35, 0.65, 0.85])
    assert out["reliability"]["observed"] == [0.0, 0.5, 1.0, 0.5]
    # equal-width fifths: {.1} 0, {.2,.3} .5, {.4} 0, {.6,.7} 1, {.8,.9} .5
    out = calibration(Y_HAND, P_HAND, n_bins=5, strategy="uniform")
    assert out["ece"] == pytest.approx((0.1 + 2 * 0.25 + 0.4 + 2 * 0.35 + 2 * 0.35) / 8)
    assert out["reliability"]["count"] == [1, 2, 1, 2, 2]
    # the order of the patients does not matter
    order = np.random.default_rng(1).permutation(8)
    shuffled, out = calibration(Y_HAND[order], P_HAND[order], n_bins=4), calibration(Y_HAND, P_HAND, n_bins=4)
    assert shuffled["reliability"] == out["reliability"] and shuffled["ece"] == out["ece"]
    assert (shuffled["slope"], shuffled["intercept"]) == pytest.approx((out["slope"], out["intercept"]), abs=1e-12)


def test_tied_probabilities_stay_in_one_bin_and_empty_bins_are_dropped():
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.8, 0.9])
    y = np.array([1, 0, 0, 0, 0, 1, 1, 0])
    out = calibration(y, p, n_bins=4)  # positions 0-5 tie: bins 1 and 2 are swallowed by bin 0
    assert out["reliability"]["count"] == [6, 2]
    assert out["reliability"]["observed"] == pytest.approx([2 / 6, 0.5])
    assert out["ece"] == pytest.approx((6 * abs(2 / 6 - 0.2) + 2 * abs(0.5 - 0.85)) / 8)
    assert calibration(y, np.ones(8) * 0.5 + 0.5 * (p > 0.5), n_bins=3, strategy="uniform")["reliability"]["count"] \
        == [6, 2], "p = 1 falls in the last equal-width bin"


def test_fits_without_a_maximum_give_nan_and_the_reason():
    y = np.array([0, 1, 0, 1, 0])
    constant = calibration(y, np.full(5, 0.3))
    assert math.isnan(constant["slope"]) and math.isnan(constant["intercept"])
    assert "every predicted probability is the same" in constant["fit_note"]
    assert constant["ece"] == pytest.approx(abs(0.4 - 0.3))
    separated = calibration(y, np.array([0.1, 0.6, 0.2, 0.9, 0.3]))
    assert math.isnan(separated["slope"]) and "separate the classes" in separated["fit_note"]
    summary = summarize(y, np.array([0.1, 0.6, 0.2, 0.9, 0.3]), n_resamples=0)
    assert summary["cal_slope"] is None and summary["cal_intercept"] is None and summary["ece"] is not None
    json.dumps(summary, allow_nan=False)


def test_summarize_reports_the_calibration_of_its_default_bins(calibrated):
    y, p = calibrated[0][:3000], calibrated[1][:3000]
    out, cal = summarize(y, p, n_resamples=0), calibration(y, p)
    assert (out["ece"], out["cal_slope"], out["cal_intercept"]) == (cal["ece"], cal["slope"], cal["intercept"])
    json.loads(json.dumps(calibration(y, p)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y": np.zeros(5), "p": np.full(5, 0.1)}, r"^calibration needs both classes in y, got only negatives \(0\)"),
        ({"y": np.ones(4), "p": np.full(4, 0.1)}, r"^calibration needs both classes in y, got only positives \(1\)"),
        ({"y": Y_HAND, "p": P_HAND * 2}, r"^p must hold probabilities in \[0, 1\], got values in \[0.2, 1.8\]"),
        ({"y": Y_HAND, "p": P_HAND - 0.5}, r"^p must hold probabilities in \[0, 1\]"),
        ({"y": Y_HAND, "p": P_HAND[:3]}, r"^p has 3 entries but the labels y have 8"),
        ({"y": Y_HAND, "p": np.where(Y_HAND, np.nan, 0.5)}, r"^p contains 4 NaN value\(s\)"),
        ({"y": Y_HAND * 2, "p": P_HAND}, r"^y must hold only 0/1 labels"),
        ({"y": Y_HAND, "p": P_HAND, "n_bins": 0}, r"^n_bins must be a whole number >= 1, got 0"),
        ({"y": Y_HAND, "p": P_HAND, "n_bins": 2.5}, r"^n_bins must be a whole number >= 1, got 2.5"),
        ({"y": Y_HAND, "p": P_HAND, "strategy": "kmeans"},
         r"^strategy must be one of \('quantile', 'uniform'\), got 'kmeans'"),
    ],
)
def test_bad_input_raises_naming_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration(**kwargs)
