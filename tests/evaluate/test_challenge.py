"""The PhysioNet/CinC 2012 challenge's scores: event 1 (min(Se, +P), threshold from the training base
rate, no test label) and event 2 (Hosmer-Lemeshow H over deciles of risk), against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from condense.evaluate.metrics import challenge_event1, hosmer_lemeshow


def test_event1_by_hand():
    y = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.05, 0.4, 0.15, 0.25])
    out = challenge_event1(y, p, base_rate=0.3)  # the top 3 scores predicted positive: 0.9, 0.8, 0.7
    assert out["predicted_positive"] == 3 and out["threshold"] == 0.7
    assert out["sensitivity"] == pytest.approx(2 / 3) and out["ppv"] == pytest.approx(2 / 3)
    assert out["event1"] == pytest.approx(2 / 3)
    few = challenge_event1(y, p, base_rate=0.1)  # only 0.9: Se 1/3, +P 1
    assert (few["sensitivity"], few["ppv"], few["event1"]) == pytest.approx((1 / 3, 1.0, 1 / 3))
    tied = challenge_event1(y, np.where(p > 0.6, 0.5, p), base_rate=0.1)  # ties with the top score count too
    assert tied["predicted_positive"] == 3
    assert challenge_event1(y, 10 * p - 3, base_rate=0.3)["event1"] == out["event1"]  # ranks only
    with pytest.raises(ValueError, match=r"base_rate must be a death rate in \(0, 1\), got 1.5"):
        challenge_event1(y, p, base_rate=1.5)


def test_hosmer_lemeshow_by_hand_and_its_growth_with_patients():
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    out = hosmer_lemeshow(y, p, n_groups=2)  # groups {0.1, 0.2, 0.3} and {0.6, 0.7, 0.8}
    e1, e2 = 0.6, 2.1
    expected = (1 - e1) ** 2 / (e1 * (1 - e1 / 3)) + (2 - e2) ** 2 / (e2 * (1 - e2 / 3))
    assert out["hl_h"] == pytest.approx(expected) and out["groups"] == 2 and out["n"] == 6
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.6, 2000)
    y = (rng.random(2000) < p).astype(int)  # outcomes drawn from the risks: calibrated
    well = hosmer_lemeshow(y, p)["hl_h"]
    assert well < 20  # about chi-square with 8 degrees of freedom
    under = hosmer_lemeshow(y, p * 0.6)["hl_h"]  # every risk underestimated: H grows
    assert under > 5 * well
    twice = hosmer_lemeshow(np.concatenate([y, y]), np.concatenate([p, p]))["hl_h"]
    assert twice == pytest.approx(2 * well, rel=1e-9)  # the same miscalibration on twice the patients
    with pytest.raises(ValueError, match="must hold probabilities"):
        hosmer_lemeshow(y, p * 3)


def test_the_calibrated_floor_is_the_ece_of_outcomes_drawn_from_the_probabilities():
    from condense.evaluate.metrics import calibrated_floor, calibration

    rng = np.random.default_rng(5)
    p = rng.beta(1, 6, 600)
    floor = calibrated_floor(p, seed=3)
    assert floor == calibrated_floor(p, seed=3) and floor != calibrated_floor(p, seed=4)
    drawn = [calibration((np.random.default_rng(k).random(p.size) < p).astype(int), p)["ece"] for k in range(400)]
    assert floor["ece_floor"] == pytest.approx(np.median(drawn), rel=0.08)
    assert floor["ece_floor_high"] == pytest.approx(np.quantile(drawn, 0.95), rel=0.1)
    assert 0.9 <= np.mean(np.array(drawn) <= floor["ece_floor_high"]) <= 0.99
    # sampling noise: four times the patients, about half the floor
    bigger = calibrated_floor(np.tile(p, 4), seed=3)
    assert 0.4 < bigger["ece_floor"] / floor["ece_floor"] < 0.6
