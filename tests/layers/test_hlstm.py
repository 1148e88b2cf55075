"""HLSTMCell / HLSTM: the shared layer checks, reduction to a plain LSTM, masking, dropout, errors."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import condense.layers  # noqa: E402,F401  (registers the custom objects)
from condense.layers.hlstm import HIDDEN_FORMS, HLSTM, HLSTMCell  # noqa: E402
from layer_checks import check_custom_layers  # noqa: E402

D, U, T = 5, 3, 7  # input width, units, time steps: small and fast
ATOL = 1e-6


def _random_lstm_weights(rng, d=D, u=U):
    kernel = rng.normal(0, 0.5, (d, 4 * u)).astype("float32")
    recurrent = rng.normal(0, 0.5, (u, 4 * u)).astype("float32")
    bias = rng.normal(0, 0.5, (4 * u,)).astype("float32")
    return kernel, recurrent, bias


def _identity_hidden(u=U):
    return np.tile(np.eye(u, dtype="float32"), (1, 4))


def _masked_batch(rng, batch=4, t=T, d=D):
    """Random inputs with all-zero (masked) steps: leading, inside and trailing."""
    x = rng.normal(size=(batch, t, d)).astype("float32")
    x[0, -2:] = 0.0  # trailing padding
    x[1, 2] = 0.0  # a gap inside the sequence
    x[2, 0] = 0.0  # a leading masked step
    x[3, 1:3] = 0.0
    return x


def _sequence_model(layer):
    inputs = keras.Input(shape=(T, D))
    outputs = layer(keras.layers.Masking(mask_value=0.0)(inputs))
    return keras.Model(inputs, outputs)


# -- the shared helper ---------------------------------------------------------------------------


@pytest.mark.slow
def test_hlstm_in_both_forms_and_the_cell_in_an_rnn_pass_the_custom_layer_checks(tmp_path):
    """Config round trip, build, call, one training step, .keras reload in a fresh process."""
    def hlstm(hidden, **kwargs):
        return lambda: HLSTM(U, hidden=hidden, dropout=0.1, recurrent_dropout=0.1, seed=3, **kwargs)

    models = check_custom_layers(
        [
            (hlstm("gates", return_sequences=True), (4, T, D)),
            (hlstm("input", return_state=True), (4, T, D)),
            (lambda: keras.layers.RNN(HLSTMCell(U, hidden="input", hidden_activation="tanh")), (4, T, D)),
        ],
        tmp_dir=tmp_path,
    )
    assert [type(m.layers[1]).__name__ for m in models] == ["HLSTM", "HLSTM", "RNN"]


def test_cell_config_round_trip_and_registration():
    cell = HLSTMCell(U, hidden="input", hidden_activation="tanh", dropout=0.2, seed=5)
    config = cell.get_config()
    assert HLSTMCell.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(HLSTMCell) == "condense>HLSTMCell"
    assert keras.saving.get_registered_name(HLSTM) == "condense>HLSTM"
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert isinstance(revived, HLSTMCell) and revived.get_config() == config


# -- weights ---------------------------------------------------------------------------------------


def test_weights_have_stable_names_and_shapes():
    layer = HLSTM(16)
    layer.build((None, 48, 76))
    assert [(w.name, tuple(w.shape)) for w in layer.weights] == [
        ("kernel", (76, 64)),
        ("recurrent_kernel", (16, 64)),
        ("hidden_kernel", (16, 64)),
        ("bias", (64,)),
    ]
    assert layer.count_params() == 6976
    assert layer.cell.hidden_kernel is layer.weights[2]


def test_unit_forget_bias_starts_the_forget_block_at_one():
    layer = HLSTM(U, bias_initializer="zeros")
    layer.build((None, T, D))
    np.testing.assert_array_equal(layer.cell.bias.numpy(), np.repeat([0.0, 1.0, 0.0, 0.0], U))
    plain = HLSTM(U, unit_forget_bias=False, bias_initializer="zeros")
    plain.build((None, T, D))
    np.testing.assert_array_equal(plain.cell.bias.numpy(), np.zeros(4 * U))


def test_no_bias_means_three_weights():
    layer = HLSTM(U, use_bias=False)
    layer.build((None, T, D))
    assert [w.name for w in layer.weights] == ["kernel", "recurrent_kernel", "hidden_kernel"]
    assert layer.cell.bias is None


def test_layer_properties_expose_the_cell_arguments():
    layer = HLSTM(U, hidden="input", hidden_activation="tanh", dropout=0.25, recurrent_dropout=0.5, seed=9)
    assert (layer.units, layer.hidden, layer.dropout, layer.recurrent_dropout, layer.seed) == (
        U, "input", 0.25, 0.5, 9,
    )
    assert layer.hidden_activation is keras.activations.tanh
    assert layer.activation is keras.activations.tanh
    assert layer.recurrent_activation is keras.activations.sigmoid
    assert layer.cell.name == "hlstm_cell"


# -- reduction to a plain LSTM ---------------------------------------------------------------------


@pytest.mark.parametrize("hidden", HIDDEN_FORMS)
def test_cell_step_with_identity_hidden_kernel_and_linear_activation_equals_lstm_cell(hidden):
    rng = np.random.default_rng(0)
    kernel, recurrent, bias = _random_lstm_weights(rng)
    x = rng.normal(size=(4, D)).astype("float32")
    h0 = rng.normal(size=(4, U)).astype("float32")
    c0 = rng.normal(size=(4, U)).astype("float32")

    lstm_cell = keras.layers.LSTMCell(U)
    lstm_cell.build((None, D))
    lstm_cell.set_weights([kernel, recurrent, bias])
    cell = HLSTMCell(U, hidden=hidden, hidden_activation="linear")
    cell.build((None, D))
    cell.set_weights([kernel, recurrent, _identity_hidden(), bias])

    h_ref, (_, c_ref) = lstm_cell(x, [h0, c0])
    h, (h_state, c) = cell(x, [h0, c0])
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(c, c_ref, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(h, h_state)


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("hidden", HIDDEN_FORMS)
def test_hlstm_with_identity_hidden_kernel_equals_lstm_over_a_masked_sequence(hidden, unroll):
    rng = np.random.default_rng(1)
    kernel, recurrent, bias = _random_lstm_weights(rng)
    x = _masked_batch(rng)
    kw = dict(return_sequences=True, return_state=True, unroll=unroll)

    lstm = _sequence_model(keras.layers.LSTM(U, **kw))
    lstm.set_weights([kernel, recurrent, bias])
    hlstm = _sequence_model(HLSTM(U, hidden=hidden, hidden_activation="linear", **kw))
    hlstm.set_weights([kernel, recurrent, _identity_hidden(), bias])

    for got, ref, what in zip(hlstm(x), lstm(x), ("sequence", "h", "c")):
        np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL, err_msg=what)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _reference_step(hidden, x, h, c, W, U, V, b):
    """The paper's equations in NumPy (float64), gate order i, f, g, o, ReLU hidden layer."""
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    blocks = lambda m: np.split(m, 4, axis=-1)  # noqa: E731
    if hidden == "gates":  # gate_k = act_k(relu(x W_k + h U_k + b_k) V_k)
        a = [relu(z_k) @ v_k for z_k, v_k in zip(blocks(x @ W + h @ U + b), blocks(V))]
    else:  # a_k = relu(x W_k) V_k + h U_k + b_k
        a = [relu(xw_k) @ v_k + r_k for xw_k, v_k, r_k in zip(blocks(x @ W), blocks(V), blocks(h @ U + b))]
    i, f, g, o = _sigmoid(a[0]), _sigmoid(a[1]), np.tanh(a[2]), _sigmoid(a[3])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


@pytest.mark.parametrize("hidden", HIDDEN_FORMS)
def test_cell_step_matches_the_papers_equations(hidden):
    rng = np.random.default_rng(8)
    kernel, recurrent, bias = _random_lstm_weights(rng)
    hidden_kernel = rng.normal(0, 0.5, (U, 4 * U)).astype("float32")
    x = rng.normal(size=(4, D)).astype("float32")
    h0 = rng.normal(size=(4, U)).astype("float32")
    c0 = rng.normal(size=(4, U)).astype("float32")
    cell = HLSTMCell(U, hidden=hidden)
    cell.build((None, D))
    cell.set_weights([kernel, recurrent, hidden_kernel, bias])

    h, (_, c) = cell(x, [h0, c0])
    args = (x, h0, c0, kernel, recurrent, hidden_kernel, bias)
    h_ref, c_ref = _reference_step(hidden, *(a.astype("float64") for a in args))
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, rtol=0, atol=1e-5)


def test_relu_hidden_layer_changes_the_output():
    """Guards the reduction test: with the default ReLU the hLSTM is NOT a plain LSTM."""
    rng = np.random.default_rng(2)
    kernel, recurrent, bias = _random_lstm_weights(rng)
    x = _masked_batch(rng)
    lstm = _sequence_model(keras.layers.LSTM(U))
    lstm.set_weights([kernel, recurrent, bias])
    hlstm = _sequence_model(HLSTM(U))
    hlstm.set_weights([kernel, recurrent, _identity_hidden(), bias])
    assert np.abs(np.asarray(hlstm(x)) - np.asarray(lstm(x))).max() > 1e-3


def test_gates_and_input_forms_compute_different_functions():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, T, D)).astype("float32")
    gates = HLSTM(U, hidden="gates")
    gates(x)
    inputs = HLSTM(U, hidden="input")
    inputs(x)
    inputs.set_weights(gates.get_weights())
    assert np.abs(np.asarray(gates(x)) - np.asarray(inputs(x))).max() > 1e-3


# -- masking -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", HIDDEN_FORMS)
def test_masked_steps_leave_the_state_unchanged(hidden):
    rng = np.random.default_rng(4)
    real = rng.normal(size=(2, 4, D)).astype("float32")  # 4 real steps
    padded = np.zeros((2, T, D), dtype="float32")  # the same 4 steps, masked ones at 0, 2, 6
    padded[:, [1, 3, 4, 5]] = real

    keras.utils.set_random_seed(0)
    layer = HLSTM(U, hidden=hidden, return_sequences=True, return_state=True)
    seq_padded, h_padded, c_padded = layer(padded, mask=np.any(padded != 0, axis=-1))
    seq_real, h_real, c_real = layer(real)

    np.testing.assert_allclose(h_padded, h_real, rtol=0, atol=ATOL)
    np.testing.assert_allclose(c_padded, c_real, rtol=0, atol=ATOL)
    seq_padded = np.asarray(seq_padded)
    np.testing.assert_allclose(seq_padded[:, [1, 3, 4, 5]], seq_real, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(seq_padded[:, 0], 0.0)  # masked before any real step: zero state
    np.testing.assert_array_equal(seq_padded[:, 2], seq_padded[:, 1])  # masked step repeats the output
    np.testing.assert_array_equal(seq_padded[:, 6], seq_padded[:, 5])


def test_masking_layer_feeds_the_mask_to_hlstm():
    rng = np.random.default_rng(5)
    x = _masked_batch(rng)
    keras.utils.set_random_seed(0)
    model = _sequence_model(HLSTM(U))
    direct = model.get_layer(index=2)(x, mask=np.any(x != 0, axis=-1))
    np.testing.assert_allclose(model(x), direct, rtol=0, atol=ATOL)
    unmasked = model.get_layer(index=2)(x)
    assert np.abs(np.asarray(unmasked) - np.asarray(direct)).max() > 1e-4


# -- sequence options --------------------------------------------------------------------------------


def test_return_state_and_go_backwards():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, T, D)).astype("float32")
    forward = HLSTM(U, return_sequences=True, return_state=True)
    seq, h, c = forward(x)
    assert (tuple(seq.shape), tuple(h.shape), tuple(c.shape)) == ((2, T, U), (2, U), (2, U))
    np.testing.assert_array_equal(seq[:, -1], h)

    backward = HLSTM(U, go_backwards=True)
    backward(x)
    backward.set_weights(forward.get_weights())
    np.testing.assert_allclose(backward(x), forward(x[:, ::-1])[1], rtol=0, atol=ATOL)


# -- dropout -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rates", [(0.5, 0.0), (0.0, 0.5)], ids=["dropout", "recurrent_dropout"])
def test_dropout_is_active_only_in_training(rates):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, T, D)).astype("float32")
    layer = HLSTM(U, dropout=rates[0], recurrent_dropout=rates[1], seed=1)
    plain = HLSTM(U)
    plain(x)
    layer(x)
    layer.set_weights(plain.get_weights())

    inference = np.asarray(layer(x, training=False))
    np.testing.assert_array_equal(inference, np.asarray(layer(x, training=False)))
    np.testing.assert_allclose(inference, plain(x), rtol=0, atol=ATOL)
    trained = np.asarray(layer(x, training=True))
    assert np.isfinite(trained).all()
    assert np.abs(trained - inference).max() > 1e-4


# -- argument validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"units": 4, "hidden": "output"}, "hidden='output'"),
        ({"units": 0}, "units=0"),
        ({"units": 2.5}, "units=2.5"),
        ({"units": 4, "dropout": 1.5}, "dropout=1.5"),
        ({"units": 4, "recurrent_dropout": -0.1}, "recurrent_dropout=-0.1"),
    ],
)
@pytest.mark.parametrize("cls", [HLSTMCell, HLSTM])
def test_bad_arguments_raise_value_error_naming_them(cls, kwargs, needle):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert needle in str(info.value)


def test_docstring_examples_run():
    import doctest

    import condense.layers.hlstm as cells

    for obj in (cells.HLSTMCell, cells.HLSTM):
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in doctest.DocTestFinder(recurse=False).find(obj, globs={"np": np, "keras": keras, **vars(cells)}):
            runner.run(test)
        assert runner.summarize(verbose=False).failed == 0, f"{obj.__name__} docstring example failed"
