"""condense.prune: importance, selection and surgery for Dense, LSTM and hLSTM units.

Every surgery path is checked by behaviour: parameter counts of the paper's models, the kept
weights being exactly the kept slices, and removing a unit whose outgoing weights are zero
leaving every model output unchanged (with masked steps in the input).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import condense.layers  # noqa: F401  (registers the hLSTM for safe_mode loading)
from condense.models import build_dnn, build_hlstm, build_lstm
from condense.prune import (
    CRITERIA,
    Surgeon,
    gate_columns,
    incoming_weights,
    prunable_layers,
    prune_dense_units,
    prune_hlstm_units,
    prune_input_rows,
    prune_lstm_units,
    prune_model,
    prune_units,
    register_surgeon,
    select_model_units,
    select_units,
    unit_importance,
)
from condense.prune import surgeons

FEATURES = 76
STEPS = 8  # enough to exercise masking; parameter counts do not depend on it
ATOL = 1e-6


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def randomize(model: keras.Model, seed: int = 0, scale: float = 0.5) -> keras.Model:
    """Give every weight (biases included) random non-zero values, so no unit is trivially dead."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in model.get_weights()])
    return model


def sequences(n: int = 6, steps: int = STEPS, features: int = FEATURES, seed: int = 1) -> np.ndarray:
    """Random episodes with masked (all-zero) steps: trailing padding and a gap in the middle."""
    x = np.random.default_rng(seed).normal(size=(n, steps, features)).astype("float32")
    x[0, -3:] = 0.0
    x[1, 2] = 0.0
    x[2, 0] = 0.0
    return x


def snapshot(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


def weights(model: keras.Model, layer: str) -> dict[str, np.ndarray]:
    return {v.name: v.numpy() for v in model.get_layer(layer).weights}


def cols(keep, units: int) -> np.ndarray:
    """Gate-blocked columns of units ``keep``, written out independently of the module."""
    return np.concatenate([g * units + np.asarray(keep) for g in range(4)])


def all_but(units: int, drop) -> list[int]:
    return [j for j in range(units) if j not in set(drop)]


def _zero_rows(variable, rows) -> None:
    """Set rows ``rows`` of a weight to zero (a unit's outgoing weights live in rows)."""
    value = variable.numpy()
    value[list(rows)] = 0.0
    variable.assign(value)


def outputs(model: keras.Model, x) -> list[np.ndarray]:
    """The model's outputs on ``x`` in inference mode (an eager call: no tracing, fast for tests)."""
    y = model(x, training=False)
    return [keras.ops.convert_to_numpy(t) for t in (y if isinstance(y, (list, tuple)) else [y])]


def assert_same_outputs(before: keras.Model, after: keras.Model, x) -> None:
    a, b = outputs(before, x), outputs(after, x)
    assert len(a) == len(b)
    for ya, yb in zip(a, b):
        assert ya.shape == yb.shape
        np.testing.assert_allclose(yb, ya, rtol=0, atol=ATOL)


# --------------------------------------------------------------------------------------------
# The paper's models: which layers, how many parameters
# --------------------------------------------------------------------------------------------


def test_prunable_layers_are_the_hidden_layers_never_the_output():
    assert prunable_layers(build_lstm(FEATURES, timesteps=STEPS)) == ["lstm_1", "lstm_2"]
    assert prunable_layers(build_hlstm(FEATURES, timesteps=STEPS)) == ["hlstm"]
    assert prunable_layers(build_dnn(FEATURES)) == ["dense_1", "dense_2", "dense_3"]
    only_head = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    assert prunable_layers(only_head) == []


@pytest.mark.parametrize(
    "build, quantile, before, after, units",
    [
        (build_lstm, 0.5, 8081, 3273, {"lstm_1": [8, 16], "lstm_2": [8, 16]}),
        (build_lstm, 0.25, 8081, 5485, {"lstm_1": [12, 16], "lstm_2": [12, 16]}),
        (build_hlstm, 0.5, 6993, 2985, {"hlstm": [8, 16]}),
        (build_hlstm, 0.25, 6993, 4861, {"hlstm": [12, 16]}),
        (build_dnn, 0.5, 60929, 20225, {"dense_1": [128, 256], "dense_2": [64, 128], "dense_3": [32, 64]}),
        (build_dnn, 0.25, 60929, 38017, {"dense_1": [192, 256], "dense_2": [96, 128], "dense_3": [48, 64]}),
    ],
)
def test_pruned_paper_models_have_the_expected_parameter_counts(build, quantile, before, after, units):
    model = build(FEATURES)
    pruned, report = prune_units(model, quantile=quantile, return_report=True)
    assert model.count_params() == before
    assert pruned.count_params() == after
    assert report["params_before"] == before and report["params_after"] == after
    assert report["units_kept"] == units
    assert report["criterion"] == "mean_abs" and report["quantile"] == quantile
    for name, (kept, _total) in units.items():
        assert pruned.get_layer(name).units == kept
        assert len(report["kept_indices"][name]) == kept
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in model.layers]
    assert pruned.name == model.name and not pruned.compiled


def test_pruned_lstm_has_half_the_units_and_matching_shapes():
    pruned = prune_units(build_lstm(FEATURES, timesteps=STEPS), quantile=0.5)
    assert {k: v.shape for k, v in weights(pruned, "lstm_1").items()} == {
        "kernel": (FEATURES, 32), "recurrent_kernel": (8, 32), "bias": (32,)}
    assert {k: v.shape for k, v in weights(pruned, "lstm_2").items()} == {
        "kernel": (8, 32), "recurrent_kernel": (8, 32), "bias": (32,)}
    assert weights(pruned, "output")["kernel"].shape == (8, 1)
    assert outputs(pruned, sequences())[0].shape == (6, 1)


def test_pruning_leaves_the_original_model_untouched():
    model = randomize(build_lstm(FEATURES, timesteps=STEPS))
    before = snapshot(model)
    prune_units(model, quantile=0.5)
    after = snapshot(model)
    assert model.get_layer("lstm_1").units == 16 and model.count_params() == 8081
    for name in before:
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name]))


# --------------------------------------------------------------------------------------------
# Exactness: removing a unit with zero outgoing weights changes no output
# --------------------------------------------------------------------------------------------


def test_dense_unit_with_zero_outgoing_weights_is_removed_exactly():
    model = randomize(build_dnn(FEATURES, units=(12, 10, 8)))
    drop = {"dense_1": [3], "dense_2": [0, 9], "dense_3": [5]}
    next_layer = {"dense_1": "dense_2", "dense_2": "dense_3", "dense_3": "output"}
    for name, units in drop.items():
        _zero_rows(model.get_layer(next_layer[name]).kernel, units)
    keep = {name: all_but(model.get_layer(name).units, units) for name, units in drop.items()}
    pruned = prune_model(model, keep)
    assert [pruned.get_layer(n).units for n in drop] == [11, 8, 7]
    x = np.random.default_rng(2).normal(size=(16, FEATURES)).astype("float32")
    assert_same_outputs(model, pruned, x)


def test_lstm_units_with_zero_outgoing_weights_are_removed_exactly_with_masked_steps():
    model = randomize(build_lstm(FEATURES, timesteps=STEPS, units=(6, 5)))
    l1, l2, head = (model.get_layer(n) for n in ("lstm_1", "lstm_2", "output"))
    # Unit 2 of lstm_1: its row of its own recurrent_kernel and of lstm_2's kernel.
    _zero_rows(l1.cell.recurrent_kernel, [2])
    _zero_rows(l2.cell.kernel, [2])
    # Units 0 and 4 of lstm_2: their rows of its recurrent_kernel and of the Dense head.
    _zero_rows(l2.cell.recurrent_kernel, [0, 4])
    _zero_rows(head.kernel, [0, 4])
    keep = {"lstm_1": [0, 1, 3, 4, 5], "lstm_2": [1, 2, 3]}
    pruned = prune_model(model, keep)
    x = sequences()
    assert_same_outputs(model, pruned, x)
    # The kept units' own sequence outputs are unchanged too, not just the model output.
    probe = keras.Model(model.input, model.get_layer("lstm_1").output)
    probe_pruned = keras.Model(pruned.input, pruned.get_layer("lstm_1").output)
    np.testing.assert_allclose(
        outputs(probe_pruned, x)[0], outputs(probe, x)[0][..., keep["lstm_1"]], rtol=0, atol=ATOL
    )


@pytest.mark.parametrize("hidden", ["gates", "input"])
def test_hlstm_unit_with_zero_outgoing_weights_is_removed_exactly_with_masked_steps(hidden):
    model = randomize(build_hlstm(FEATURES, timesteps=STEPS, units=6, hidden=hidden))
    cell = model.get_layer("hlstm").cell
    # Unit 1 and 4: their recurrent_kernel rows, hidden_kernel rows (the unit's gate
    # pre-activations feeding the hidden layer, in all four blocks) and Dense head rows.
    for var in (cell.recurrent_kernel, cell.hidden_kernel, model.get_layer("output").kernel):
        _zero_rows(var, [1, 4])
    pruned = prune_model(model, {"hlstm": [0, 2, 3, 5]})
    assert pruned.get_layer("hlstm").units == 4 and pruned.get_layer("hlstm").hidden == hidden
    assert_same_outputs(model, pruned, sequences())


def test_removing_a_unit_with_outgoing_weights_does_change_the_output():
    # The exactness tests above are not vacuous: the same surgery without zeroing changes things.
    model = randomize(build_hlstm(FEATURES, timesteps=STEPS, units=6))
    pruned = prune_model(model, {"hlstm": [0, 2, 3, 5]})
    x = sequences()
    assert not np.allclose(outputs(model, x)[0], outputs(pruned, x)[0], atol=1e-3)


# --------------------------------------------------------------------------------------------
# The kept weights are exactly the kept slices
# --------------------------------------------------------------------------------------------


def test_lstm_surgery_copies_exactly_the_kept_slices():
    model = randomize(build_lstm(FEATURES, timesteps=STEPS))
    keep = {"lstm_1": [0, 3, 4, 9, 15], "lstm_2": [1, 2, 7, 8, 10, 14]}
    pruned = prune_model(model, keep)
    k1, k2 = np.array(keep["lstm_1"]), np.array(keep["lstm_2"])
    old1, new1 = weights(model, "lstm_1"), weights(pruned, "lstm_1")
    assert np.array_equal(new1["kernel"], old1["kernel"][:, cols(k1, 16)])
    assert np.array_equal(new1["recurrent_kernel"], old1["recurrent_kernel"][k1][:, cols(k1, 16)])
    assert np.array_equal(new1["bias"], old1["bias"][cols(k1, 16)])
    old2, new2 = weights(model, "lstm_2"), weights(pruned, "lstm_2")
    assert np.array_equal(new2["kernel"], old2["kernel"][k1][:, cols(k2, 16)])  # rows: lstm_1's kept units
    assert np.array_equal(new2["recurrent_kernel"], old2["recurrent_kernel"][k2][:, cols(k2, 16)])
    assert np.array_equal(new2["bias"], old2["bias"][cols(k2, 16)])
    assert np.array_equal(weights(pruned, "output")["kernel"], weights(model, "output")["kernel"][k2])
    assert np.array_equal(weights(pruned, "output")["bias"], weights(model, "output")["bias"])


def test_hlstm_surgery_copies_exactly_the_kept_slices():
    model = randomize(build_hlstm(FEATURES, timesteps=STEPS))
    k = np.array([1, 2, 5, 6, 11, 13, 14])
    pruned = prune_model(model, {"hlstm": k})
    old, new = weights(model, "hlstm"), weights(pruned, "hlstm")
    c = cols(k, 16)
    assert np.array_equal(new["kernel"], old["kernel"][:, c])
    assert np.array_equal(new["recurrent_kernel"], old["recurrent_kernel"][k][:, c])
    assert np.array_equal(new["hidden_kernel"], old["hidden_kernel"][k][:, c])
    assert np.array_equal(new["bias"], old["bias"][c])
    assert np.array_equal(weights(pruned, "output")["kernel"], weights(model, "output")["kernel"][k])


def test_dense_surgery_copies_exactly_the_kept_slices():
    model = randomize(build_dnn(FEATURES, units=(10, 6, 4)))
    keep = {"dense_1": [0, 2, 9], "dense_2": [5], "dense_3": [1, 3]}
    pruned = prune_model(model, keep)
    rows = {"dense_1": slice(None), "dense_2": keep["dense_1"], "dense_3": keep["dense_2"]}
    for name in keep:
        old, new = weights(model, name), weights(pruned, name)
        assert np.array_equal(new["kernel"], old["kernel"][rows[name]][:, keep[name]])
        assert np.array_equal(new["bias"], old["bias"][keep[name]])
    head_rows = weights(model, "output")["kernel"][keep["dense_3"]]
    assert np.array_equal(weights(pruned, "output")["kernel"], head_rows)


def test_per_layer_verbs_slice_known_arrays():
    d, u = 2, 3
    kernel = np.arange(d * 4 * u, dtype=float).reshape(d, 4 * u)
    recurrent = 100 + np.arange(u * 4 * u, dtype=float).reshape(u, 4 * u)
    hidden = 200 + np.arange(u * 4 * u, dtype=float).reshape(u, 4 * u)
    bias = 300 + np.arange(4 * u, dtype=float)
    keep = [0, 2]
    expected_cols = [0, 2, 3, 5, 6, 8, 9, 11]
    assert gate_columns(keep, u).tolist() == expected_cols
    k, r, b = prune_lstm_units([kernel, recurrent, bias], keep)
    assert np.array_equal(k, kernel[:, expected_cols])
    assert np.array_equal(r, recurrent[[0, 2]][:, expected_cols])
    assert np.array_equal(b, bias[expected_cols])
    k, r, h, b = prune_hlstm_units([kernel, recurrent, hidden, bias], keep)
    assert np.array_equal(h, hidden[[0, 2]][:, expected_cols])
    assert len(prune_lstm_units([kernel, recurrent], keep)) == 2  # use_bias=False
    dk, db = prune_dense_units([kernel, bias], [1, 10])
    assert np.array_equal(dk, kernel[:, [1, 10]]) and np.array_equal(db, bias[[1, 10]])
    # The next layer's input rows, directly and through a Flatten of 2 positions x 3 units.
    nxt = np.arange(6, dtype=float).reshape(6, 1)
    assert prune_input_rows(nxt[:3], keep, units=3).ravel().tolist() == [0, 2]
    assert prune_input_rows(nxt, keep, units=3, positions=2).ravel().tolist() == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="positions \\* units"):
        prune_input_rows(nxt, keep, units=4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        prune_lstm_units([kernel, recurrent, bias], [0, 3])


# --------------------------------------------------------------------------------------------
# Graphs beyond our builders: plain Keras Sequential / functional models
# --------------------------------------------------------------------------------------------


def test_plain_sequential_stacked_lstm_is_pruned_exactly():
    model = randomize(keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        keras.layers.Masking(0.0),
        keras.layers.LSTM(5, return_sequences=True, name="a"),
        keras.layers.LSTM(4, name="b"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(1, activation="sigmoid", name="head"),
    ]))
    assert prunable_layers(model) == ["a", "b"]
    _zero_rows(model.get_layer("a").cell.recurrent_kernel, [3])
    _zero_rows(model.get_layer("b").cell.kernel, [3])
    pruned = prune_model(model, {"a": [0, 1, 2, 4]})
    assert isinstance(pruned, keras.Sequential)
    assert pruned.get_layer("a").units == 4 and pruned.get_layer("b").units == 4
    assert_same_outputs(model, pruned, sequences())


def test_functional_branches_and_flatten_are_followed():
    inputs = keras.Input((STEPS, FEATURES))
    seq = keras.layers.LSTM(4, return_sequences=True, name="seq")(inputs)
    flat = keras.layers.Flatten(name="flat")(seq)
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(keras.layers.Dropout(0.2)(flat))
    out_a = keras.layers.Dense(1, name="out_a")(hidden)
    out_b = keras.layers.Dense(2, name="out_b")(keras.layers.Activation("tanh")(hidden))
    model = randomize(keras.Model(inputs, [out_a, out_b]))
    assert prunable_layers(model) == ["seq", "hidden"]
    # Unit 1 of "seq": its recurrent row, and its row at every one of the STEPS flattened positions.
    _zero_rows(model.get_layer("seq").cell.recurrent_kernel, [1])
    _zero_rows(model.get_layer("hidden").kernel, [t * 4 + 1 for t in range(STEPS)])
    # Unit 3 of "hidden" feeds both heads.
    _zero_rows(model.get_layer("out_a").kernel, [3])
    _zero_rows(model.get_layer("out_b").kernel, [3])
    pruned = prune_model(model, {"seq": [0, 2, 3], "hidden": [0, 1, 2, 4]})
    assert weights(pruned, "hidden")["kernel"].shape == (STEPS * 3, 4)
    assert weights(pruned, "out_b")["kernel"].shape == (4, 2)
    assert_same_outputs(model, pruned, sequences(seed=3))


def test_unsupported_layers_upstream_of_the_pruned_ones_are_copied_unchanged():
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Conv1D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.LSTM(4, name="rnn")(x)
    x = keras.layers.Dense(3, name="mid")(x)
    model = randomize(keras.Model(inputs, keras.layers.Dense(1, name="head")(x)))
    pruned, report = prune_units(model, quantile=0.5, return_report=True)
    assert report["units_kept"] == {"rnn": [2, 4], "mid": [2, 3]}
    for name in ("conv", "bn"):
        assert all(np.array_equal(a, b) for a, b in
                   zip(model.get_layer(name).get_weights(), pruned.get_layer(name).get_weights()))


def _dense_then(layer):
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d")(inputs)
    x = layer(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(x))


def _lstm_then(*layers):
    inputs = keras.Input((STEPS, 3))
    x = keras.layers.LSTM(4, return_sequences=True, name="r")(inputs)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(x))


@pytest.mark.parametrize(
    "make, layer, cls",
    [
        (lambda: _dense_then(keras.layers.BatchNormalization(name="bn")), "bn", "BatchNormalization"),
        (lambda: _dense_then(keras.layers.Activation("softmax", name="soft")), "soft", "Activation"),
        (lambda: _lstm_then(keras.layers.GRU(3, name="gru")), "gru", "GRU"),
        (lambda: _lstm_then(keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")),
         "bi", "Bidirectional"),
        (lambda: _lstm_then(keras.layers.Conv1D(3, 2, name="conv"), keras.layers.GlobalAveragePooling1D()),
         "conv", "Conv1D"),
    ],
)
def test_unsupported_layer_after_a_prunable_one_raises_naming_it(make, layer, cls):
    model = make()
    pattern = f"'{layer}' \\({cls}\\)"
    with pytest.raises(ValueError, match=pattern):
        prunable_layers(model)
    with pytest.raises(ValueError, match=pattern):
        prune_units(model, quantile=0.5)


def test_merge_layers_are_unsupported():
    inputs = keras.Input((6,))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(inputs)
    merged = keras.layers.Concatenate(name="cat")([a, b])
    model = keras.Model(inputs, keras.layers.Dense(1)(merged))
    with pytest.raises(ValueError, match="'a' \\(Dense\\).*'cat' \\(Concatenate\\)"):
        prunable_layers(model)


def test_raw_keras_ops_after_a_prunable_layer_are_unsupported():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="d")(inputs)
    x = keras.ops.sum(x, axis=-1, keepdims=True)  # mixes units: recorded as an operation node
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    with pytest.raises(ValueError, match="'d' \\(Dense\\).*operation 'sum' \\(Sum\\)"):
        prunable_layers(model)


def _shared_layer_chain():
    """``h -> shared -> shared -> head``: one Dense instance called twice."""
    inputs = keras.Input((6,))
    h = keras.layers.Dense(4, name="h")(inputs)
    shared = keras.layers.Dense(4, name="shared")
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(shared(shared(h))), name="chain")


def _shared_layer_on_two_inputs():
    """``shared`` applied to two inputs, each call feeding its own head."""
    a, b = keras.Input((6,), name="in_a"), keras.Input((6,), name="in_b")
    shared = keras.layers.Dense(4, name="shared")
    heads = [keras.layers.Dense(1, name=f"head_{i}")(shared(x)) for i, x in enumerate((a, b))]
    return keras.Model([a, b], heads, name="twin")


@pytest.mark.parametrize(
    "make, message",
    [
        (_shared_layer_chain, "Cannot prune layer 'h' (Dense) in model 'chain': its output reaches "
                              "layer 'shared' (Dense), which is called more than once (a shared layer)"),
        (_shared_layer_on_two_inputs, "Cannot prune layer 'shared' (Dense) in model 'twin': "
                                      "it is called more than once (a shared layer)"),
    ],
    ids=["feeds-a-shared-layer", "is-a-shared-layer"],
)
def test_a_shared_layer_blocks_pruning_with_a_clear_message(make, message):
    model = make()
    for call in (lambda: prunable_layers(model), lambda: prune_units(model, quantile=0.5)):
        with pytest.raises(ValueError) as info:
            call()
        assert message in str(info.value)


def test_subclassed_model_is_rejected():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)
            self.o = keras.layers.Dense(1)

        def call(self, x):
            return self.o(self.d(x))

    model = Tiny()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="Sequential or functional.*'Tiny'"):
        prune_units(model)


# --------------------------------------------------------------------------------------------
# A new layer kind: register_surgeon
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="condense_test_prune")
class TinyDense(keras.layers.Layer):
    """A Dense-like layer that is not a keras Dense: ``x @ w + b``, weights named ``w`` and ``b``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), name="b", initializer="zeros")

    def call(self, x):
        return keras.ops.matmul(x, self.w) + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class TinySurgeon(Surgeon):
    weights = ("w", "b")
    input_kernel = "w"  # its rows are the layer's inputs

    def incoming_weights(self, arrays, units):
        return arrays["w"]

    def cut_units(self, arrays, keep):
        return {**arrays, "w": arrays["w"][:, keep], "b": arrays["b"][keep]}


@pytest.fixture
def tiny_surgeon():
    register_surgeon(TinyDense, TinySurgeon())
    yield
    surgeons._REGISTRY.pop(TinyDense)


def _tiny_model():
    inputs = keras.Input((6,))
    x = TinyDense(5, name="a")(inputs)
    x = TinyDense(4, name="b")(keras.layers.ReLU()(x))
    return randomize(keras.Model(inputs, keras.layers.Dense(1, name="head")(x)))


def test_register_surgeon_makes_a_custom_layer_prunable(tiny_surgeon):
    model = _tiny_model()
    assert prunable_layers(model) == ["a", "b"]
    # Units 1 and 3 of "a" and unit 2 of "b" have zero outgoing weights: removing them is exact.
    _zero_rows(model.get_layer("b").w, [1, 3])
    _zero_rows(model.get_layer("head").kernel, [2])
    keep = {"a": [0, 2, 4], "b": [0, 1, 3]}
    pruned = prune_model(model, keep)
    assert isinstance(pruned.get_layer("a"), TinyDense) and pruned.get_layer("a").units == 3
    assert weights(pruned, "b")["w"].shape == (3, 3)
    x = np.random.default_rng(6).normal(size=(8, 6)).astype("float32")
    for name in keep:  # the kept units' own outputs are the original's, exactly
        before = outputs(keras.Model(model.input, model.get_layer(name).output), x)[0]
        after = outputs(keras.Model(pruned.input, pruned.get_layer(name).output), x)[0]
        np.testing.assert_allclose(after, before[:, keep[name]], rtol=0, atol=ATOL)
    assert_same_outputs(model, pruned, x)
    # Importance and selection work through the surgeon too.
    w = weights(model, "a")["w"]
    np.testing.assert_allclose(unit_importance(model)["a"], np.abs(w).mean(axis=0), rtol=1e-6)
    assert prune_units(model, quantile=0.5, return_report=True)[1]["units_kept"] == {"a": [3, 5], "b": [2, 4]}


def test_an_unregistered_custom_layer_is_not_prunable():
    model = _tiny_model()
    assert prunable_layers(model) == []  # "a" and "b" have no surgeon; "head" is the output
    with pytest.raises(ValueError, match="'a' \\(TinyDense\\), which is not prunable"):
        prune_model(model, {"a": [0]})


def test_register_surgeon_validates_its_arguments():
    with pytest.raises(ValueError, match="`layer_class`.*layer_class=<class 'int'>"):
        register_surgeon(int, TinySurgeon())
    with pytest.raises(ValueError, match="`surgeon`.*surgeon='dense'"):
        register_surgeon(TinyDense, "dense")


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def test_select_units_keeps_exactly_half_at_the_median():
    rng = np.random.default_rng(0)
    assert select_units(rng.normal(size=16), 0.5).size == 8
    assert select_units(rng.normal(size=256), 0.5).size == 128
    assert select_units(rng.normal(size=16), 0.25).size == 12
    scores = np.array([0.5, 0.1, 0.9, 0.3])
    assert select_units(scores, 0.5).tolist() == [0, 2]  # sorted indices of the two best


def test_select_units_breaks_ties_by_index():
    assert select_units(np.zeros(16), 0.5).tolist() == list(range(8, 16))
    assert select_units([1.0, 2.0, 1.0, 2.0, 1.0], 0.4).tolist() == [1, 3, 4]


def test_select_units_matches_the_numpy_quantile_rule_for_distinct_scores():
    rng = np.random.default_rng(1)
    for n in (2, 3, 7, 16, 64, 256):
        scores = rng.permutation(n).astype(float) + rng.uniform(0, 0.5, n)
        for q in (0.1, 0.25, 0.29, 1 / 3, 0.5, 0.75, 0.9):
            threshold = np.quantile(scores, q, method="averaged_inverted_cdf")
            expected = np.flatnonzero(scores >= threshold)
            if expected.size == 0:  # never happens for q < 1, but the rule keeps one regardless
                expected = np.array([int(np.argmax(scores))])
            assert select_units(scores, q).tolist() == expected.tolist(), (n, q)


def test_select_units_at_n100_q029_removes_29_despite_the_float_floor():
    # 0.29 * 100 is 28.999999999999996 in binary: a bare floor would remove 28 units, not 29.
    assert 0.29 * 100 < 29 and math.floor(0.29 * 100) == 28
    scores = np.random.default_rng(5).permutation(100).astype(float)  # distinct: unit j scores scores[j]
    kept = select_units(scores, 0.29)
    assert kept.size == 71
    assert kept.tolist() == np.flatnonzero(scores >= 29).tolist()  # exactly the 29 lowest go
    # numpy's quantile meets the same rounding and would remove 28: here the rank rule is the exact one.
    assert np.sum(scores < np.quantile(scores, 0.29, method="averaged_inverted_cdf")) == 28


def test_at_least_one_unit_is_always_kept():
    assert select_units([0.3, 0.1], 0.99).tolist() == [0]
    assert select_units([0.7], 0.9).tolist() == [0]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="two"), keras.layers.Dense(1)])
    assert prune_units(model, quantile=0.99).get_layer("two").units == 1


@pytest.mark.parametrize("quantile", [0, 1, 1.5, -0.2, float("nan"), True, "0.5"])
def test_quantile_outside_the_open_unit_interval_raises(quantile):
    with pytest.raises(ValueError, match=f"`quantile`.*quantile={quantile!r}"):
        select_units(np.arange(4.0), quantile)
    model = build_dnn(FEATURES, units=(4, 2))
    with pytest.raises(ValueError, match="`quantile`"):
        prune_units(model, quantile=quantile)


def test_select_units_rejects_bad_scores():
    with pytest.raises(ValueError, match="`scores`"):
        select_units([], 0.5)
    with pytest.raises(ValueError, match="`scores`"):
        select_units([1.0, float("nan")], 0.5)


# --------------------------------------------------------------------------------------------
# Importance
# --------------------------------------------------------------------------------------------


def test_mean_abs_scores_each_units_incoming_weights():
    dnn = randomize(build_dnn(FEATURES, units=(6, 4)))
    scores = unit_importance(dnn)
    assert list(scores) == ["dense_1", "dense_2"]
    kernel = weights(dnn, "dense_1")["kernel"]
    np.testing.assert_allclose(scores["dense_1"], np.abs(kernel).mean(axis=0), rtol=1e-6)

    lstm = randomize(build_lstm(FEATURES, timesteps=STEPS, units=(5, 3)))
    w = weights(lstm, "lstm_1")
    for j, score in enumerate(unit_importance(lstm)["lstm_1"]):
        incoming = np.concatenate([w[n][:, cols([j], 5)].ravel() for n in ("kernel", "recurrent_kernel")])
        np.testing.assert_allclose(score, np.abs(incoming).mean(), rtol=1e-6)

    hlstm = randomize(build_hlstm(FEATURES, timesteps=STEPS, units=4))
    w = weights(hlstm, "hlstm")
    scores = unit_importance(hlstm, "mean_abs")["hlstm"]
    for j in range(4):
        incoming = np.concatenate(
            [w[n][:, cols([j], 4)].ravel() for n in ("kernel", "recurrent_kernel", "hidden_kernel")]
        )
        np.testing.assert_allclose(scores[j], np.abs(incoming).mean(), rtol=1e-6)
    assert incoming_weights(hlstm.get_layer("hlstm")).shape == (4 * (FEATURES + 4 + 4), 4)


def test_l2_and_signed_mean_criteria():
    model = randomize(build_dnn(FEATURES, units=(6, 4)))
    kernel = weights(model, "dense_1")["kernel"]
    l2, signed = unit_importance(model, "l2")["dense_1"], unit_importance(model, "signed_mean")["dense_1"]
    np.testing.assert_allclose(l2, np.linalg.norm(kernel, axis=0), rtol=1e-6)
    np.testing.assert_allclose(signed, kernel.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert set(CRITERIA) >= {"mean_abs", "l2", "signed_mean", "activation"}


def test_activation_criterion_uses_the_calibration_batch():
    model = randomize(build_lstm(FEATURES, timesteps=STEPS, units=(6, 4)))
    x = sequences()
    scores = unit_importance(model, "activation", calibration_x=x)
    probe = keras.Model(model.input, [model.get_layer("lstm_1").output, model.get_layer("lstm_2").output])
    seq, last = outputs(probe, x)
    np.testing.assert_allclose(scores["lstm_1"], np.abs(seq).mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(scores["lstm_2"], np.abs(last).mean(axis=0), rtol=1e-6)
    keep = select_model_units(model, 0.5, "activation", x)
    assert keep["lstm_2"].tolist() == np.sort(np.argsort(np.abs(last).mean(axis=0))[2:]).tolist()
    pruned, report = prune_units(model, 0.5, "activation", calibration_x=x, return_report=True)
    assert report["criterion"] == "activation"
    assert report["kept_indices"]["lstm_2"] == keep["lstm_2"].tolist()
    with pytest.raises(ValueError, match="calibration_x=None"):
        unit_importance(model, "activation")


def test_unknown_criterion_raises_naming_it():
    with pytest.raises(ValueError, match="criterion='entropy'"):
        prune_units(build_dnn(FEATURES, units=(4, 2)), criterion="entropy")


# --------------------------------------------------------------------------------------------
# prune_model: explicit indices are validated
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keep, message",
    [
        ({"nope": [0]}, "'nope', which is not in model"),
        ({"output": [0]}, "'output' \\(Dense\\), which is not prunable: it produces the model's output"),
        ({"dropout": [0]}, "'dropout' \\(Dropout\\), which is not prunable"),
        ({"dense_1": [0, 4]}, "layer 'dense_1' must lie in \\[0, 4\\)"),
        ({"dense_1": [1, 1]}, "layer 'dense_1' must be unique"),
        ({"dense_1": []}, "layer 'dense_1' must be a non-empty"),
        ({"dense_1": [0.5]}, "layer 'dense_1' must be a non-empty 1-D sequence of integers"),
    ],
)
def test_prune_model_validates_the_kept_indices(keep, message):
    with pytest.raises(ValueError, match=message):
        prune_model(build_dnn(FEATURES, units=(4, 2)), keep)


# --------------------------------------------------------------------------------------------
# Pruned models are ordinary models: compile, train, save, reload
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, x",
    [
        (lambda: build_lstm(FEATURES, timesteps=STEPS), sequences()),
        (lambda: build_hlstm(FEATURES, timesteps=STEPS), sequences()),
        (lambda: build_dnn(FEATURES), np.random.default_rng(4).normal(size=(6, FEATURES)).astype("float32")),
    ],
    ids=["lstm", "hlstm", "dnn"],
)
def test_pruned_model_trains_saves_and_reloads(build, x, tmp_path):
    pruned = prune_units(build(), quantile=0.5)
    # run_eagerly: the same training step without tracing a tf.function (keeps the test fast)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    y = np.array([0, 1, 0, 1, 1, 0], dtype="float32")
    before = [np.array(w) for w in pruned.get_weights()]
    loss = pruned.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, pruned.get_weights()))
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert reloaded.count_params() == pruned.count_params()
    np.testing.assert_allclose(outputs(reloaded, x)[0], outputs(pruned, x)[0], rtol=0, atol=ATOL)
