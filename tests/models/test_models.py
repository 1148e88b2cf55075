"""Model builders: the paper's parameter counts, stable layer names, masking, fixed-batch rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense import models  # noqa: E402
from condense.models import (  # noqa: E402
    MODEL_FAMILIES,
    build_dnn,
    build_hlstm,
    build_lstm,
    build_model,
    rebuild_with_batch,
)
from condense.evaluate.measure import param_count  # noqa: E402

FEATURES = 76  # the IHM benchmark's input width: the paper's counts are for it
D, T = 6, 10  # small shapes for the behavioural tests


def _randomize(model, seed=0):
    """Give every weight random values (zero-initialised biases would hide slicing mistakes)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _sequences(batch=3, t=T, d=D, seed=1):
    x = np.random.default_rng(seed).normal(size=(batch, t, d)).astype("float32")
    x[0, -3:] = 0.0  # padded tail
    x[1, 4] = 0.0  # a masked gap
    return x


# -- the paper's parameter counts --------------------------------------------------------------------


def test_baseline_lstm_has_8081_parameters():
    assert param_count(build_lstm(FEATURES)) == 8081


@pytest.mark.parametrize("hidden", ["gates", "input"])
def test_hlstm_has_6993_parameters_in_both_readings(hidden):
    assert param_count(build_hlstm(FEATURES, hidden=hidden)) == 6993


def test_baseline_dnn_has_60929_parameters():
    assert param_count(build_dnn(FEATURES)) == 60929


def test_half_width_models_have_the_pruned_counts():
    assert param_count(build_lstm(FEATURES, units=(8, 8))) == 3273
    assert param_count(build_dnn(FEATURES, units=(128, 64, 32))) == 20225


def test_param_count_matches_keras_and_counts_non_trainable_weights():
    model = build_dnn(D, units=(4,))
    assert param_count(model) == model.count_params() == (D * 4 + 4) + (4 + 1)
    model.get_layer("dense_1").trainable = False
    assert param_count(model) == (D * 4 + 4) + (4 + 1)


# -- architecture ------------------------------------------------------------------------------------


def test_lstm_layers_names_and_shapes():
    model = build_lstm(FEATURES, units=(12, 5))
    assert [layer.name for layer in model.layers] == ["input", "masking", "lstm_1", "lstm_2", "dropout", "output"]
    assert model.name == "lstm"
    assert model.input_shape == (None, 48, FEATURES) and model.output_shape == (None, 1)
    lstm_1, lstm_2 = model.get_layer("lstm_1"), model.get_layer("lstm_2")
    assert (lstm_1.units, lstm_1.return_sequences, lstm_2.units, lstm_2.return_sequences) == (12, True, 5, False)
    assert model.get_layer("masking").mask_value == 0.0
    assert model.get_layer("dropout").rate == 0.3
    assert model.get_layer("output").activation is keras.activations.sigmoid


@pytest.mark.parametrize("hidden", ["gates", "input"])
def test_hlstm_layers_names_and_settings(hidden):
    model = build_hlstm(FEATURES, hidden=hidden, timesteps=24)
    assert [layer.name for layer in model.layers] == ["input", "masking", "hlstm", "dropout", "output"]
    layer = model.get_layer("hlstm")
    assert (layer.units, layer.hidden, layer.return_sequences) == (16, hidden, False)
    assert layer.hidden_activation is keras.activations.relu
    assert model.input_shape == (None, 24, FEATURES)
    assert model.get_layer("dropout").rate == 0.3


def test_dnn_layers_names_and_settings():
    model = build_dnn(FEATURES)
    assert [layer.name for layer in model.layers] == ["input", "dense_1", "dense_2", "dense_3", "dropout", "output"]
    assert [model.get_layer(f"dense_{k}").units for k in (1, 2, 3)] == [256, 128, 64]
    assert all(model.get_layer(f"dense_{k}").activation is keras.activations.relu for k in (1, 2, 3))
    assert model.get_layer("dropout").rate == 0.5
    assert model.input_shape == (None, FEATURES)


def test_build_model_dispatches_to_the_family_builders():
    assert MODEL_FAMILIES == ("lstm", "hlstm", "dnn")
    for family, builder in zip(MODEL_FAMILIES, (build_lstm, build_hlstm, build_dnn)):
        assert param_count(build_model(family, D)) == param_count(builder(D))
    assert build_model("hlstm", D, hidden="input", units=4).get_layer("hlstm").hidden == "input"


@pytest.mark.parametrize("builder", [build_lstm, build_hlstm])
def test_padded_steps_are_masked_in_the_built_models(builder):
    """The output for an episode padded with all-zero steps equals the output of the short episode."""
    long = _randomize(builder(D, timesteps=T, units=(4, 3) if builder is build_lstm else 4))
    short = builder(D, timesteps=T - 3, units=(4, 3) if builder is build_lstm else 4)
    short.set_weights(long.get_weights())
    x = _sequences()
    x[:, -3:] = 0.0
    np.testing.assert_allclose(long(x), short(x[:, :-3]), rtol=0, atol=1e-6)


# -- errors ------------------------------------------------------------------------------------------


def test_unknown_family_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"family='cnn'.*lstm.*hlstm.*dnn"):
        build_model("cnn", D)


@pytest.mark.parametrize("builder", [build_hlstm, lambda d, **kw: build_model("hlstm", d, **kw)])
def test_bad_hidden_raises_value_error_naming_it(builder):
    with pytest.raises(ValueError, match=r"hidden='both'"):
        builder(D, hidden="both")


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: build_lstm(D, units=()), "units=()"),
        (lambda: build_lstm(D, units=(16, 0)), "units=(16, 0)"),
        (lambda: build_dnn(D, units=16), "units=16"),
        (lambda: build_hlstm(D, units=0), "units=0"),
        (lambda: build_lstm(D, dropout=1.0), "dropout=1.0"),
        (lambda: build_dnn(0), "input_dim=0"),
        (lambda: build_lstm(D, timesteps=0), "timesteps=0"),
        (lambda: build_lstm(D, batch_size=0), "batch_size=0"),
        (lambda: rebuild_with_batch(build_dnn(D), batch_size=-1), "batch_size=-1"),
        (lambda: rebuild_with_batch(build_dnn(D), unroll="yes"), "unroll='yes'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value)


# -- fixed-batch rebuilds (what TFLite export needs) -----------------------------------------------


@pytest.mark.parametrize(
    "build, x",
    [
        (lambda: build_lstm(D, timesteps=T), _sequences()),
        (lambda: build_lstm(D, timesteps=T, units=(5, 3, 2)), _sequences()),
        (lambda: build_hlstm(D, timesteps=T), _sequences()),
        (lambda: build_hlstm(D, timesteps=T, units=5, hidden="input"), _sequences()),
        (lambda: build_dnn(D, units=(7, 3)), np.random.default_rng(2).normal(size=(3, D)).astype("float32")),
    ],
    ids=["lstm", "lstm-3-layers", "hlstm", "hlstm-input-5", "dnn-7-3"],
)
@pytest.mark.parametrize("unroll", [None, True])
def test_rebuild_with_batch_keeps_weights_and_predictions(build, x, unroll):
    model = _randomize(build())
    rebuilt = rebuild_with_batch(model, batch_size=1, unroll=unroll)

    assert rebuilt.input_shape == (1, *model.input_shape[1:])
    assert rebuilt.name == model.name
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    for old, new in zip(model.weights, rebuilt.weights):
        assert old.path == new.path
        np.testing.assert_array_equal(old.numpy(), new.numpy())
    recurrent = [layer for layer in rebuilt.layers if isinstance(layer, keras.layers.RNN)]
    assert all(layer.unroll is bool(unroll) for layer in recurrent)
    assert not any(layer.unroll for layer in model.layers if isinstance(layer, keras.layers.RNN))

    expected = np.asarray(model(x, training=False))
    got = np.concatenate([np.asarray(rebuilt(x[i : i + 1], training=False)) for i in range(len(x))])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_rebuild_with_batch_handles_sequential_models_and_rejects_subclassed_ones():
    model = _randomize(keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(3), keras.layers.Dense(1)]))
    rebuilt = rebuild_with_batch(model, batch_size=2, unroll=True)
    assert rebuilt.input_shape == (2, T, D) and rebuilt.layers[0].unroll
    x = _sequences(batch=2)
    np.testing.assert_allclose(rebuilt(x), model(x), rtol=0, atol=1e-6)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Subclassed"):
        rebuild_with_batch(Subclassed())


def test_saved_models_reload_with_safe_mode(tmp_path):
    x = _sequences()
    for model in (_randomize(build_hlstm(D, timesteps=T, units=3)), _randomize(build_lstm(D, timesteps=T))):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(reloaded(x), model(x), rtol=0, atol=1e-6)
        assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]


def test_module_exports_the_layer_name_constants():
    assert (models.INPUT, models.MASKING, models.DROPOUT, models.OUTPUT, models.HLSTM_LAYER) == (
        "input", "masking", "dropout", "output", "hlstm",
    )
    assert models.lstm_layer_name(2) == "lstm_2" and models.dense_layer_name(3) == "dense_3"
