"""condense.evaluate.summary: every number a table needs in one call."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condense.evaluate.bootstrap import bootstrap_ci
from condense.evaluate.metrics import auprc, auroc, brier, challenge_event1
from condense.evaluate.summary import summarize
from scored_cohorts import cohort


def test_summarize_returns_plain_json_ready_values():
    y, p = cohort(300, 13)
    out = summarize(y, p, n_resamples=500, seed=0)
    assert set(out) == {"auroc", "auroc_ci", "auprc", "auprc_ci", "brier", "n", "positives",
                        "ece", "cal_slope", "cal_intercept", "event1", "hl_h", "ece_floor", "ece_floor_high"}
    assert out["event1"] is None and type(out["hl_h"]) is float  # event 1 needs the training base rate
    assert summarize(y, p, n_resamples=0, base_rate=0.2)["event1"] == challenge_event1(y, p, base_rate=0.2)["event1"]
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
