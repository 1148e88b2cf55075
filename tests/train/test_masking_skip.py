"""Training without a Masking computation that masks nothing: the same weights, bit for bit.

When no training or validation time step is all mask values, :func:`condense.train.fit` trains a
twin of the model without its ``Masking`` layer (the same layer objects) and the saved model keeps
the layer; otherwise Masking stays in the loop. Pruning after epoch one rebuilds the twin.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense import train  # noqa: E402
from condense.train import TrainConfig, fit  # noqa: E402

T, C = 48, 20


def data(n: int, seed: int, masked: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, C)).astype(np.float32)
    x[:, :, -5:] = rng.random((n, T, 5)) < 0.3
    x[:masked, 7, :] = 0.0  # one all-zero hour in the first `masked` samples
    y = (x[:, -6:, 0].mean(axis=1) + 0.5 * rng.normal(size=n) > 0.4).astype(np.float32)
    return x, y


def trained(config, monkeypatch=None, keep_masking=False, masked=0):
    x, y = data(160, 0, masked)
    xv, yv = data(60, 1)
    keras.backend.clear_session()  # Keras' name counters: both runs name their ops as a fresh process does
    if keep_masking:
        monkeypatch.setattr(train, "masking_plan", lambda model, *a: {"skipped": False, "reason": "forced"})
    return fit(config, x, y, xv, yv, verbose=0)


@pytest.mark.parametrize("model, prune", [("lstm", None), ("hlstm", 0.5)])
def test_the_unmasked_twin_gives_the_same_weights_and_the_saved_model_keeps_masking(model, prune, monkeypatch,
                                                                                   tmp_path):
    config = TrainConfig(model=model, epochs=2, batch_size=32, prune_quantile=prune)
    fast = trained(config)
    assert fast.masking["skipped"] and "masks nothing" in fast.masking["reason"]
    with monkeypatch.context() as m:
        slow = trained(config, m, keep_masking=True)
    assert not slow.masking["skipped"]
    assert all(np.array_equal(a, b) for a, b in zip(fast.model.get_weights(), slow.model.get_weights()))
    assert fast.val_auroc == slow.val_auroc and fast.params_history == slow.params_history
    assert any(isinstance(layer, keras.layers.Masking) for layer in fast.model.layers)
    # the saved file is the model with Masking and the optimizer that trained it
    assert int(fast.model.optimizer.iterations.numpy()) == int(slow.model.optimizer.iterations.numpy()) > 0
    fast.model.save(tmp_path / "fast.keras")
    slow.model.save(tmp_path / "slow.keras")
    assert (tmp_path / "fast.keras").stat().st_size == (tmp_path / "slow.keras").stat().st_size
    reloaded = keras.saving.load_model(tmp_path / "fast.keras")
    assert all(np.array_equal(a, b) for a, b in zip(reloaded.get_weights(), slow.model.get_weights()))


def test_masking_stays_when_the_data_has_a_masked_hour():
    result = trained(TrainConfig(model="lstm", epochs=1, batch_size=32), masked=3)
    assert result.masking == {"skipped": False, "reason": "3 training sample(s) have 3 time step(s) of mask values 0: "
                                                          "Masking is needed"}


def test_a_model_without_masking_or_without_a_time_axis_is_trained_as_it_is():
    x, y = data(64, 0)
    model = keras.Sequential([keras.Input((T, C)), keras.layers.LSTM(4), keras.layers.Dense(1, activation="sigmoid")])
    result = fit(TrainConfig(model="lstm", epochs=1, batch_size=32), x, y, x[:20], y[:20], verbose=0, model=model)
    assert result.masking == {"skipped": False, "reason": "the model has no Masking layer"}
    flat = fit(TrainConfig(model="dnn", epochs=1, batch_size=32), x[:, 0], y, x[:20, 0], y[:20], verbose=0)
    assert flat.masking == {"skipped": False, "reason": "no time axis"}
