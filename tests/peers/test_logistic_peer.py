"""condense.peers.logistic: hand-made features on hand-made tensors, and the LR peer end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import skew as scipy_skew
from sklearn.exceptions import NotFittedError

from condense.data.channels import CHANNEL_SPANS, IHM_LAYOUT, MASK_INDEX, VARIABLES
from condense.data.layout import ChannelLayout
from condense.evaluate.metrics import auroc
from condense.peers.features import STATISTICS, WINDOWS, category_codes, feature_names, hand_features
from condense.peers.logistic import LogisticRegressionPeer

HR = CHANNEL_SPANS["Heart Rate"].start
HR_MASK = MASK_INDEX["Heart Rate"]
GCS_TOTAL = CHANNEL_SPANS["Glascow coma scale total"]
GCS_TOTAL_MASK = MASK_INDEX["Glascow coma scale total"]
NAMES = feature_names(IHM_LAYOUT)


def feature(F: np.ndarray, row: int, variable: str, window: str, stat: str) -> float:
    return F[row, NAMES.index(f"{variable}:{window}:{stat}")]


def hand_tensor() -> np.ndarray:
    """Two episodes of 10 bins. Episode 0: heart rate measured at bins 1, 3, 4, 8 (80, 90, 70, 120),
    other bins hold carried-forward junk (999); GCS total "15" at bin 0 and "3" at bin 9.
    Episode 1: nothing measured."""
    X = np.zeros((2, 10, IHM_LAYOUT.width), dtype=np.float32)
    X[:, :, HR] = 999.0
    for t, value in zip((1, 3, 4, 8), (80.0, 90.0, 70.0, 120.0)):
        X[0, t, HR] = value
        X[0, t, HR_MASK] = 1.0
    fifteen = GCS_TOTAL.start + IHM_LAYOUT.names[GCS_TOTAL].index("Glascow coma scale total->15")
    three = GCS_TOTAL.start + IHM_LAYOUT.names[GCS_TOTAL].index("Glascow coma scale total->3")
    X[:, :, fifteen] = 1.0  # the normal value, carried everywhere ...
    X[0, 9, fifteen] = 0.0
    X[0, 9, three] = 1.0  # ... except the last bin of episode 0
    X[0, 0, GCS_TOTAL_MASK] = 1.0
    X[0, 9, GCS_TOTAL_MASK] = 1.0
    return X


# ----------------------------------------------------------------------------- features


def test_feature_names_cover_every_variable_window_and_statistic():
    assert len(NAMES) == len(VARIABLES) * len(WINDOWS) * len(STATISTICS) == 17 * 7 * 7
    assert len(set(NAMES)) == len(NAMES)
    assert NAMES[:3] == ["Capillary refill rate:all:min", "Capillary refill rate:all:max", "Capillary refill rate:all:mean"]
    assert NAMES[-1] == "pH:last10:last"
    assert not any(name.startswith("mask->") for name in NAMES)


def test_category_codes_follow_the_benchmark_ordinals():
    assert category_codes(IHM_LAYOUT, "Capillary refill rate").tolist() == [0.0, 1.0]
    assert category_codes(IHM_LAYOUT, "Glascow coma scale total").tolist() == [
        11, 10, 13, 12, 15, 14, 3, 5, 4, 7, 6, 9, 8,
    ]
    # To Pain, 3 To speech, 1 No Response, 4 Spontaneously, None, To Speech, Spontaneously, 2 To pain
    assert category_codes(IHM_LAYOUT, "Glascow coma scale eye opening").tolist() == [2, 3, 1, 4, 0, 3, 4, 2]
    motor = category_codes(IHM_LAYOUT, "Glascow coma scale motor response")
    assert motor.tolist() == [1, 3, 2, 1, 4, 5, 4, 6, 3, 6, 5, 2]
    verbal = category_codes(IHM_LAYOUT, "Glascow coma scale verbal response")
    assert verbal.tolist() == [1, 1, 4, 3, 5, 1, 5, 2, 1, 4, 2, 3]


def test_category_codes_fall_back_to_position_when_a_label_has_no_number():
    layout = ChannelLayout(
        name="toy",
        names=("unit->ICU", "unit->CCU", "unit->3 SICU", "mask->unit"),
        continuous=(),
        observed_by=(3, 3, 3, -1),
        variables=("unit", "unit", "unit", "unit"),
    )
    assert category_codes(layout, "unit").tolist() == [0.0, 1.0, 2.0]


def test_heart_rate_statistics_over_observed_bins_and_windows():
    F = hand_features(hand_tensor(), IHM_LAYOUT)
    assert F.shape == (2, len(NAMES)) and F.dtype == np.float64
    hr = "Heart Rate"
    # Whole stay: 80, 90, 70, 120 (the junk 999 in unobserved bins never counts).
    values = np.array([80.0, 90.0, 70.0, 120.0])
    assert feature(F, 0, hr, "all", "min") == 70.0
    assert feature(F, 0, hr, "all", "max") == 120.0
    assert feature(F, 0, hr, "all", "mean") == 90.0
    assert feature(F, 0, hr, "all", "std") == pytest.approx(np.sqrt(350.0))  # (100+0+400+900)/4
    assert feature(F, 0, hr, "all", "skew") == pytest.approx(4500.0 / 350.0**1.5)  # m3 = (-1000-8000+27000)/4
    assert feature(F, 0, hr, "all", "skew") == pytest.approx(scipy_skew(values))
    assert feature(F, 0, hr, "all", "count") == 4.0
    assert feature(F, 0, hr, "all", "last") == 120.0
    # Span 1..8 (7 h). first10 = [1, 1.7] and first25 = [1, 2.75]: only bin 1 (80).
    for window in ("first10", "first25"):
        assert feature(F, 0, hr, window, "count") == 1.0
        for stat in ("min", "max", "mean", "last"):
            assert feature(F, 0, hr, window, stat) == 80.0
        assert feature(F, 0, hr, window, "std") == 0.0
        assert np.isnan(feature(F, 0, hr, window, "skew"))  # undefined for constant values
    # first50 = [1, 4.5]: bins 1, 3, 4 -> 80, 90, 70.
    assert feature(F, 0, hr, "first50", "count") == 3.0
    assert feature(F, 0, hr, "first50", "mean") == 80.0
    assert feature(F, 0, hr, "first50", "min") == 70.0
    assert feature(F, 0, hr, "first50", "max") == 90.0
    assert feature(F, 0, hr, "first50", "std") == pytest.approx(np.sqrt(200.0 / 3.0))
    assert feature(F, 0, hr, "first50", "skew") == pytest.approx(0.0, abs=1e-12)
    assert feature(F, 0, hr, "first50", "last") == 70.0
    # last50 = [4.5, 8], last25 = [6.25, 8], last10 = [7.3, 8]: only bin 8 (120).
    for window in ("last50", "last25", "last10"):
        assert feature(F, 0, hr, window, "count") == 1.0
        assert feature(F, 0, hr, window, "mean") == 120.0
        assert feature(F, 0, hr, window, "last") == 120.0


def test_never_observed_variable_gives_nan_statistics_and_zero_counts():
    F = hand_features(hand_tensor(), IHM_LAYOUT)
    for window, _, _ in WINDOWS:
        for stat in STATISTICS:
            value = feature(F, 1, "Heart Rate", window, stat)
            assert value == 0.0 if stat == "count" else np.isnan(value)
    # Episode 0 measured no glucose either, whatever the tensor holds there.
    assert feature(F, 0, "Glucose", "all", "count") == 0.0
    assert np.isnan(feature(F, 0, "Glucose", "all", "mean"))


def test_categorical_variable_uses_the_code_of_the_active_category():
    F = hand_features(hand_tensor(), IHM_LAYOUT)
    total = "Glascow coma scale total"
    assert feature(F, 0, total, "all", "count") == 2.0
    assert feature(F, 0, total, "all", "min") == 3.0
    assert feature(F, 0, total, "all", "max") == 15.0
    assert feature(F, 0, total, "all", "mean") == 9.0
    assert feature(F, 0, total, "all", "last") == 3.0
    assert feature(F, 0, total, "first10", "last") == 15.0  # span 0..9: first10 = [0, 0.9]
    assert feature(F, 0, total, "last10", "last") == 3.0  # last10 = [8.1, 9]
    assert feature(F, 1, total, "all", "count") == 0.0


def test_features_do_not_depend_on_chunking_or_dtype():
    rng = np.random.default_rng(0)
    X = random_cohort(rng, 37)[0]
    whole = hand_features(X, IHM_LAYOUT)
    assert np.array_equal(hand_features(X.astype(np.float64), IHM_LAYOUT, chunk_size=5), whole, equal_nan=True)


def test_static_channels_and_layouts_without_variables():
    layout = ChannelLayout(
        name="toy",
        names=("hr", "age", "mask->hr"),
        continuous=(0, 1),
        observed_by=(2, -1, -1),
    )
    names = feature_names(layout)
    assert names[-1] == "age:static" and len(names) == len(WINDOWS) * len(STATISTICS) + 1
    X = np.zeros((1, 4, 3))
    X[0, :, 1] = 61.0
    X[0, :, 0] = [50.0, 60.0, 70.0, 80.0]
    X[0, :, 2] = [0.0, 1.0, 0.0, 1.0]
    F = hand_features(X, layout)
    assert F[0, -1] == 61.0
    assert F[0, names.index("hr:all:mean")] == 70.0
    assert F[0, names.index("hr:all:last")] == 80.0


def test_feature_input_validation():
    with pytest.raises(ValueError, match=r"X must have shape \(N, T, 76\) for layout 'ihm-76', got \(2, 10, 5\)"):
        hand_features(np.zeros((2, 10, 5)), IHM_LAYOUT)
    X = hand_tensor()
    X[1, 2, HR] = np.nan
    with pytest.raises(ValueError, match=r"X holds 1 non-finite value"):
        hand_features(X, IHM_LAYOUT)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive whole number, got 0"):
        hand_features(hand_tensor(), IHM_LAYOUT, chunk_size=0)
    with pytest.raises(ValueError, match=r"layout must be a ChannelLayout"):
        hand_features(hand_tensor(), "ihm-76")
    bad = ChannelLayout(name="bad", names=("a->x", "a->y", "m1", "m2"), continuous=(),
                        observed_by=(2, 3, -1, -1), variables=("a", "a", "m1", "m2"))
    with pytest.raises(ValueError, match=r"variable 'a' are observed by different mask channels \[2, 3\]"):
        feature_names(bad)


# ----------------------------------------------------------------------------- the peer


def random_cohort(rng: np.random.Generator, n: int, signal: float = 0.0):
    """(n, 48, 76) IHM-layout tensor: noisy continuous channels, one valid one-hot per categorical
    variable and bin, random masks; positives' heart rate is higher in the last 12 hours."""
    X = np.zeros((n, 48, IHM_LAYOUT.width), dtype=np.float32)
    X[:, :, list(IHM_LAYOUT.continuous)] = rng.standard_normal((n, 48, len(IHM_LAYOUT.continuous)))
    for variable, span in CHANNEL_SPANS.items():
        width = span.stop - span.start
        if width > 1:
            active = rng.integers(0, width, size=(n, 48))
            X[:, :, span] = np.eye(width, dtype=np.float32)[active]
    X[:, :, 59:] = rng.random((n, 48, 17)) < 0.4
    y = (rng.random(n) < 0.3).astype(np.int64)
    X[:, 36:, HR] += signal * y[:, None]
    return X, y


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(42)
    X_train, y_train = random_cohort(rng, 500, signal=1.5)
    X_test, y_test = random_cohort(rng, 300, signal=1.5)
    peer = LogisticRegressionPeer(C=0.05, seed=0).fit(X_train, y_train, IHM_LAYOUT)
    return peer, X_train, y_train, X_test, y_test


def test_peer_learns_a_late_window_signal_clearly_above_chance(fitted):
    peer, _, _, X_test, y_test = fitted
    p = peer.predict_proba(X_test)
    assert p.shape == (300,) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    assert auroc(y_test, p) > 0.7
    # The strongest coefficient is a late heart-rate statistic.
    top = peer.feature_names_[int(np.argmax(np.abs(peer.coef_)))]
    assert top.startswith("Heart Rate:last") or top.startswith("Heart Rate:all")


def test_peer_state_imputation_scaling_and_param_count(fitted):
    peer, X_train, _, _, _ = fitted
    F = hand_features(X_train, IHM_LAYOUT)
    assert peer.param_count == len(NAMES) + 1
    assert peer.feature_names_ == NAMES
    np.testing.assert_allclose(peer.impute_mean_, np.nanmean(F, axis=0), rtol=1e-12)
    Z = peer.transform(X_train)
    assert not np.isnan(Z).any()
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-9)
    varying = F.std(axis=0) > 0
    np.testing.assert_allclose(Z[:, varying].std(axis=0), 1.0, rtol=1e-9)
    logits = peer.decision_function(X_train)
    np.testing.assert_allclose(peer.predict_proba(X_train), 1.0 / (1.0 + np.exp(-logits)), rtol=1e-12)


def test_fit_is_deterministic(fitted):
    peer, X_train, y_train, _, _ = fitted
    again = LogisticRegressionPeer(C=0.05, seed=0).fit(X_train, y_train, IHM_LAYOUT)
    assert np.array_equal(again.coef_, peer.coef_) and again.intercept_ == peer.intercept_


def test_save_load_round_trip_gives_identical_probabilities(fitted, tmp_path):
    peer, _, _, X_test, _ = fitted
    path = tmp_path / "model.lr.json"
    peer.save(path)
    text = path.read_text(encoding="utf-8")
    obj = json.loads(text)  # plain JSON: no pickle, nothing to execute
    assert "pickle" not in text and "__reduce__" not in text
    assert obj["format"] == "condense.peers.logistic" and obj["layout_name"] == "ihm-76"
    assert len(obj["coef"]) == len(obj["impute_mean"]) == len(obj["scale_std"]) == len(NAMES)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary behind
    loaded = LogisticRegressionPeer.load(path)
    assert loaded.get_config() == peer.get_config()
    assert loaded.layout_ == IHM_LAYOUT
    assert np.array_equal(loaded.predict_proba(X_test), peer.predict_proba(X_test))
    assert loaded.param_count == peer.param_count


def test_load_rejects_foreign_or_inconsistent_files(fitted, tmp_path):
    peer, _, _, _, _ = fitted
    good = peer.to_json()
    cases = {
        "format": ({**good, "format": "sklearn-pickle"}, r"not a condense.peers.logistic model"),
        "version": ({**good, "format_version": 99}, r"format_version 99 is not supported"),
        "names": ({**good, "feature_names": good["feature_names"][:-1]}, r"saved feature names \(832\) differ"),
        "coef": ({**good, "coef": good["coef"][:-1]}, r"coef has shape \(832,\), expected \(833,\)"),
        "missing": ({k: v for k, v in good.items() if k != "intercept"}, r"missing or mistypes a field"),
    }
    for name, (obj, match) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(obj), encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            LogisticRegressionPeer.load(path)
    with pytest.raises(FileNotFoundError, match=r"no logistic-regression model at"):
        LogisticRegressionPeer.load(tmp_path / "absent.json")


def test_peer_argument_validation_and_unfitted_use():
    with pytest.raises(ValueError, match=r"C must be a positive finite number, got 0"):
        LogisticRegressionPeer(C=0)
    with pytest.raises(ValueError, match=r"max_iter must be a positive whole number, got 0"):
        LogisticRegressionPeer(max_iter=0)
    with pytest.raises(ValueError, match=r"seed must be a non-negative whole number"):
        LogisticRegressionPeer(seed=-3)
    peer = LogisticRegressionPeer()
    with pytest.raises(NotFittedError):
        peer.predict_proba(hand_tensor())
    with pytest.raises(NotFittedError):
        peer.param_count
    X = hand_tensor()
    with pytest.raises(ValueError, match=r"y must hold both classes"):
        peer.fit(X, np.array([1, 1]), IHM_LAYOUT)
    with pytest.raises(ValueError, match=r"y must have shape \(2,\) to match X, got \(3,\)"):
        peer.fit(X, np.array([0, 1, 1]), IHM_LAYOUT)
    with pytest.raises(ValueError, match=r"y must hold only 0/1 labels"):
        peer.fit(X, np.array([0, 2]), IHM_LAYOUT)
