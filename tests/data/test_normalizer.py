"""Normalizer (continuous channels only, fitted on train only, exact JSON round trip) and the DNN features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condense.data.channels import IHM_LAYOUT
from condense.data.dataset import Dataset, Split
from condense.data.preprocessing import Normalizer, dnn_features

CONTINUOUS = [2, 3, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58]


def raw_tensor(n: int, seed: int, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 48, 76), dtype=np.float32)
    X[:, :, CONTINUOUS] = rng.normal(100 + offset, 15, (n, 48, 12))
    X[:, :, 4 + rng.integers(0, 8)] = 1.0  # a one-hot
    X[:, :, 59:] = rng.random((n, 48, 17)) < 0.3  # masks
    return X


def make_dataset(train, val, test) -> Dataset:
    split = lambda X: Split(X=X, y=np.zeros(len(X), dtype=np.int64), ids=np.array([f"{i}_episode1_timeseries.csv" for i in range(len(X))]))
    return Dataset(source="test", layout=IHM_LAYOUT, train=split(train), val=split(val), test=split(test), fingerprint="f")


def test_fit_learns_mean_and_sample_std_per_channel_over_all_bins():
    X = raw_tensor(6, 0)
    norm = Normalizer(CONTINUOUS).fit(X)
    values = X[:, :, CONTINUOUS].reshape(-1, 12).astype(np.float64)
    np.testing.assert_allclose(norm.mean_, values.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(norm.std_, values.std(axis=0, ddof=1), rtol=0, atol=1e-12)
    assert norm.n_samples_ == 6 * 48


def test_transform_changes_only_the_continuous_channels():
    X = raw_tensor(5, 1)
    Z = Normalizer(CONTINUOUS).fit(X).transform(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    others = [c for c in range(76) if c not in CONTINUOUS]
    np.testing.assert_array_equal(Z[:, :, others], X[:, :, others])
    flat = Z[:, :, CONTINUOUS].reshape(-1, 12).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0, ddof=1), 1.0, atol=1e-5)
    assert not np.shares_memory(Z, X)


def test_a_constant_channel_gets_the_floor_std_and_maps_to_zero():
    X = raw_tensor(3, 2)
    X[:, :, 51] = 170.0  # height never varies
    norm = Normalizer(CONTINUOUS).fit(X)
    assert norm.std_[CONTINUOUS.index(51)] == 1e-7
    assert np.all(norm.transform(X)[:, :, 51] == 0.0)


def test_fit_on_a_dataset_uses_the_train_split_only():
    train, val, test = raw_tensor(4, 3), raw_tensor(4, 4, offset=500.0), raw_tensor(4, 5, offset=-500.0)
    from_dataset = Normalizer(CONTINUOUS).fit(make_dataset(train, val, test))
    from_train = Normalizer(CONTINUOUS).fit(train)
    np.testing.assert_array_equal(from_dataset.mean_, from_train.mean_)
    np.testing.assert_array_equal(from_dataset.std_, from_train.std_)
    assert np.all(np.abs(from_dataset.mean_ - 100) < 5)  # val/test (means 600 and -400) left no trace


def test_json_round_trip_gives_identical_output(tmp_path):
    X = raw_tensor(4, 6)
    norm = Normalizer(CONTINUOUS).fit(X)
    again = Normalizer.from_json(json.loads(json.dumps(norm.to_json())))
    np.testing.assert_array_equal(again.transform(X), norm.transform(X))
    path = norm.save(tmp_path / "normalizer.json")
    loaded = Normalizer.load(path)
    np.testing.assert_array_equal(loaded.transform(X), norm.transform(X))
    state = json.loads(path.read_text())
    assert state["robust"] is False and state["channels"] == CONTINUOUS and len(state["mean"]) == 12


def test_robust_statistics_are_opt_in_and_recorded():
    X = np.zeros((1, 5, 76), dtype=np.float32)
    X[0, :, 2] = [1, 2, 3, 4, 1000]  # one gross outlier
    X[0, :, 3] = [0.21, 0.21, 0.4, 0.5, 0.6]
    robust = Normalizer([2, 3], robust=True).fit(X)
    assert robust.mean_[0] == 3.0  # the median
    assert robust.std_[0] == pytest.approx((4 - 2) / 1.3489795003921634)  # IQR / 1.349
    plain = Normalizer([2, 3]).fit(X)
    assert plain.mean_[0] == pytest.approx(202.0)
    state = robust.to_json()
    assert state["robust"] is True and "median" in state["statistics"]
    np.testing.assert_array_equal(Normalizer.from_json(state).transform(X), robust.transform(X))


def test_transform_before_fit_and_bad_state_are_clear_errors():
    with pytest.raises(ValueError, match="not fitted yet; call fit"):
        Normalizer(CONTINUOUS).transform(raw_tensor(1, 0))
    with pytest.raises(ValueError, match="not a condense normalizer state: format 'other'"):
        Normalizer.from_json({"format": "other"})
    with pytest.raises(ValueError, match="channels up to 58 need a last axis of at least 59"):
        Normalizer(CONTINUOUS).fit(np.zeros((2, 48, 10), dtype=np.float32))


# -- DNN features ----------------------------------------------------------------------------
def test_dnn_features_average_observed_bins_only():
    X = np.zeros((1, 48, 76), dtype=np.float32)
    X[0, :, 2] = 50.0  # diastolic BP, imputed...
    X[0, [0, 2], 2] = [60.0, 70.0]  # ...except two real measurements
    X[0, 3:, 2] = 70.0  # carried forward (not observed)
    X[0, [0, 2], 60] = 1.0  # its mask
    X[0, :, 50] = 86.0  # heart rate never observed: its imputed value
    X[0, :, 4 + 3] = 1.0  # eye opening: normal one-hot everywhere...
    X[0, 10, 4 + 3], X[0, 10, 4 + 5] = 0.0, 1.0  # ...but observed "To Speech" once
    X[0, 10, 62] = 1.0
    f = dnn_features(X, IHM_LAYOUT)
    assert f.shape == (1, 76) and f.dtype == np.float32
    assert f[0, 2] == 65.0  # mean of 60 and 70, not of all 48 bins
    assert f[0, 60] == np.float32(2 / 48)  # a mask channel: fraction of observed hours
    assert f[0, 50] == 86.0  # never observed: mean over all bins
    assert f[0, 4 + 5] == 1.0 and f[0, 4 + 3] == 0.0  # one-hots over the observed bin only
    assert f[0, 62] == np.float32(1 / 48)
    assert f[0, 3] == 0.0  # FiO2 never observed, all bins 0 here


def test_dnn_features_equal_a_per_episode_loop_and_ignore_batching():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(7, 48, 76)).astype(np.float32)
    X[:, :, 59:] = rng.random((7, 48, 17)) < 0.2
    X[2, :, 59 + 8] = 0.0  # heart rate never observed in episode 2
    expected = np.zeros((7, 76))
    for n in range(7):
        for c in range(76):
            m = IHM_LAYOUT.observed_by[c]
            observed = X[n, :, m] > 0.5 if m >= 0 else np.ones(48, dtype=bool)
            expected[n, c] = X[n, observed, c].astype(np.float64).mean() if observed.any() else X[n, :, c].astype(np.float64).mean()
    np.testing.assert_allclose(dnn_features(X, IHM_LAYOUT), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(dnn_features(X, IHM_LAYOUT, batch=3), dnn_features(X, IHM_LAYOUT))


def test_dnn_features_reject_a_tensor_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"expected X of shape \(N, T, 76\) for layout 'ihm-76', got \(2, 48, 75\)"):
        dnn_features(np.zeros((2, 48, 75), dtype=np.float32), IHM_LAYOUT)


@pytest.mark.parametrize("value, what, shown", [(np.inf, "mean", "inf"), (-np.inf, "mean", "-inf"), (np.nan, "mean", "nan")])
def test_fit_refuses_non_finite_statistics_naming_the_channel(value, what, shown):
    X = raw_tensor(4, 1)
    X[2, 7, 50] = value  # Heart Rate
    with pytest.raises(ValueError, match=rf"^Normalizer\.fit: channel 'Heart Rate' has a non-finite {what} \({shown}\) on the training data$"):
        Normalizer.for_layout(IHM_LAYOUT).fit(X)
    with pytest.raises(ValueError, match=r"^Normalizer\.fit: channel 50 has a non-finite mean"):
        Normalizer(CONTINUOUS).fit(X)  # no names given: the index


def test_fit_refuses_a_standard_deviation_that_overflows():
    X = raw_tensor(4, 1).astype(np.float64)
    X[0, 0, 2], X[1, 0, 2] = 1e200, -1e200  # a finite mean, an infinite spread
    with pytest.raises(ValueError, match=r"channel 'Diastolic blood pressure' has a non-finite standard deviation \(inf\)"):
        Normalizer.for_layout(IHM_LAYOUT).fit(X)


def test_robust_fit_refuses_a_channel_that_is_mostly_infinite():
    X = raw_tensor(4, 1)
    X[:, :40, 50] = np.inf
    with pytest.raises(ValueError, match=r"channel 'Heart Rate' has a non-finite median \(nan\)"):
        Normalizer.for_layout(IHM_LAYOUT, robust=True).fit(X)


def test_model_inputs_refuse_an_infinite_training_value_naming_the_channel():
    from condense.data.inputs import ModelInputs

    X = raw_tensor(4, 1)
    with np.errstate(over="ignore"):
        X[0, 3, 56] = np.float32(1e308)  # what float32 makes of a cell of 1e308: inf
    with pytest.raises(ValueError, match=r"^Normalizer\.fit: channel 'Temperature' has a non-finite mean \(inf\) on the training data$"):
        ModelInputs.fit("sequence", X, IHM_LAYOUT)
