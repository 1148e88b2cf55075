"""condense.evaluate.metrics: point estimates against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from condense.evaluate.metrics import auprc, auroc, brier
from scored_cohorts import cohort, sklearn_auprc

# A small case with ties across classes, worked by hand in the tests below.
Y_HAND = np.array([0, 0, 1, 1, 0, 1])
P_HAND = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.3])



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
