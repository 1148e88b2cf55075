"""The hLSTM: an LSTM whose gates carry an extra bias-free hidden layer (the "hidden kernel").

Two Keras 3 classes, registered as serializable under the package name ``condense`` so that a
saved model reloads with ``keras.saving.load_model(path, safe_mode=True)`` after
``import condense``, without ``custom_objects``:

- :class:`HLSTMCell`, one time step (like ``keras.layers.LSTMCell``);
- :class:`HLSTM`, the whole sequence (like ``keras.layers.LSTM``; a ``keras.layers.RNN`` around
  the cell, so masking, ``return_sequences``, ``return_state``, ``go_backwards``, ``stateful``
  and ``unroll`` behave exactly as for the built-in layer).

Weights (stable names that pruning and export key on), ``d`` inputs, ``u`` units, gate order
``i, f, g, o`` as in Keras:

- ``kernel`` ``(d, 4u)``: ``W = [W_i W_f W_g W_o]``, the input path;
- ``recurrent_kernel`` ``(u, 4u)``: ``U = [U_i U_f U_g U_o]``, the recurrent path;
- ``hidden_kernel`` ``(u, 4u)``: ``V = [V_i V_f V_g V_o]``, one bias-free ``(u, u)`` block per gate;
- ``bias`` ``(4u,)``: ``b = [b_i b_f b_g b_o]`` (absent when ``use_bias=False``).

The cell uses only matmul, add, multiply, split and element-wise activations, so it converts to
TFLite both as a WHILE loop (fixed batch) and unrolled.
"""

from __future__ import annotations

import keras
from keras import activations, constraints, initializers, ops, regularizers
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

__all__ = ["HIDDEN_FORMS", "HLSTMCell", "HLSTM"]

#: The two readings of the paper's hidden layer; ``"gates"`` is the adopted default.
HIDDEN_FORMS = ("gates", "input")


def _check_units(units):
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(
            "Received an invalid value for argument `units`, expected a positive integer, "
            f"got units={units!r}."
        )


def _check_hidden(hidden):
    if hidden not in HIDDEN_FORMS:
        raise ValueError(
            f"Received an invalid value for argument `hidden`, expected one of {HIDDEN_FORMS}, "
            f"got hidden={hidden!r}."
        )


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a float in [0, 1), "
            f"got {name}={value!r}."
        )


@keras.saving.register_keras_serializable(package="condense")
class HLSTMCell(keras.layers.Layer, DropoutRNNCell):
    """Cell class for the :class:`HLSTM` layer: one LSTM step with a hidden layer in the gates.

    With ``z = x_t W + h_{t-1} U + b`` split per gate into ``z_i, z_f, z_g, z_o`` and the hidden
    kernel ``V = [V_i V_f V_g V_o]`` (bias-free ``(units, units)`` blocks), the step is, for
    ``hidden="gates"`` (the adopted form, H-LSTM style)::

        i = recurrent_activation(hidden_activation(z_i) V_i)
        f = recurrent_activation(hidden_activation(z_f) V_f)
        g = activation(hidden_activation(z_g) V_g)
        o = recurrent_activation(hidden_activation(z_o) V_o)

    and for ``hidden="input"`` (the hidden layer on the input path only)::

        a_k = hidden_activation(x_t W_k) V_k + h_{t-1} U_k + b_k     for k in i, f, g, o
        i, f, o = recurrent_activation(a_i, a_f, a_o);  g = activation(a_g)

    followed in both forms by ``c_t = f * c_{t-1} + i * g`` and ``h_t = o * activation(c_t)``.
    With ``hidden_activation="linear"`` and every ``V_k`` the identity, both forms are exactly
    ``keras.layers.LSTMCell``. Parameters: ``4u(d + u + u) + 4u`` (with bias), i.e. one
    ``(u, 4u)`` matrix more than an LSTM of the same width.

    Args:
        units: Positive integer, dimensionality of the output space and of each state.
        hidden: Where the hidden layer sits: ``"gates"`` (default; on each gate's
            pre-activation) or ``"input"`` (on the input projection only).
        hidden_activation: Activation of the hidden layer. Default: ``"relu"``. ``None``
            means linear.
        activation: Activation of the candidate ``g`` and of the cell output. Default:
            ``"tanh"``. ``None`` means linear.
        recurrent_activation: Activation of the gates ``i``, ``f``, ``o``. Default:
            ``"sigmoid"``. ``None`` means linear.
        use_bias: Boolean (default ``True``), whether the layer has the ``bias`` vector.
        kernel_initializer: Initializer for ``kernel``. Default: ``"glorot_uniform"``.
        recurrent_initializer: Initializer for ``recurrent_kernel``. Default:
            ``"orthogonal"``.
        hidden_initializer: Initializer for ``hidden_kernel``. Default: ``"glorot_uniform"``.
        bias_initializer: Initializer for ``bias``. Default: ``"zeros"``.
        unit_forget_bias: Boolean (default ``True``). If ``True``, the forget-gate block of
            ``bias`` starts at one and the other blocks use ``bias_initializer`` (as in
            ``keras.layers.LSTMCell``).
        kernel_regularizer: Regularizer for ``kernel``. Default: ``None``.
        recurrent_regularizer: Regularizer for ``recurrent_kernel``. Default: ``None``.
        hidden_regularizer: Regularizer for ``hidden_kernel``. Default: ``None``.
        bias_regularizer: Regularizer for ``bias``. Default: ``None``.
        kernel_constraint: Constraint for ``kernel``. Default: ``None``.
        recurrent_constraint: Constraint for ``recurrent_kernel``. Default: ``None``.
        hidden_constraint: Constraint for ``hidden_kernel``. Default: ``None``.
        bias_constraint: Constraint for ``bias``. Default: ``None``.
        dropout: Float in ``[0, 1)``. Fraction of the input units to drop (one mask per
            sequence, shared by the four gates). Default: 0.
        recurrent_dropout: Float in ``[0, 1)``. Fraction of the recurrent state units to drop
            (one mask per sequence, shared by the four gates). Default: 0.
        seed: Random seed for dropout.
        **kwargs: Base layer keyword arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: A 2D tensor with shape ``(batch, features)``.
        states: A list of two 2D tensors ``[h, c]`` with shape ``(batch, units)``, the
            previous output and carry state.
        training: Python boolean, whether the layer should behave in training mode (dropout
            on) or in inference mode. Only relevant with ``dropout`` or ``recurrent_dropout``.

    Returns:
        ``(h, [h, c])``: the new output and the new states.

    Example:

    >>> inputs = np.random.random((32, 10, 8)).astype("float32")
    >>> rnn = keras.layers.RNN(HLSTMCell(4))
    >>> tuple(rnn(inputs).shape)
    (32, 4)
    >>> cell = HLSTMCell(4, hidden="input")
    >>> h, (h, c) = cell(inputs[:, 0], cell.get_initial_state(batch_size=32))
    >>> tuple(c.shape)
    (32, 4)
    """

    def __init__(
        self,
        units,
        hidden="gates",
        hidden_activation="relu",
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        hidden_initializer="glorot_uniform",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        hidden_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        hidden_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        _check_units(units)
        _check_hidden(hidden)
        _check_rate("dropout", dropout)
        _check_rate("recurrent_dropout", recurrent_dropout)
        super().__init__(**kwargs)
        self.units = units
        self.hidden = hidden
        self.hidden_activation = activations.get(hidden_activation)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.unit_forget_bias = unit_forget_bias

        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.hidden_initializer = initializers.get(hidden_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.hidden_regularizer = regularizers.get(hidden_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.hidden_constraint = constraints.get(hidden_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)

        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        super().build(input_shape)
        input_dim = input_shape[-1]
        units = self.units
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(units, 4 * units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.hidden_kernel = self.add_weight(
            shape=(units, 4 * units),
            name="hidden_kernel",
            initializer=self.hidden_initializer,
            regularizer=self.hidden_regularizer,
            constraint=self.hidden_constraint,
        )
        if self.use_bias:
            if self.unit_forget_bias:

                def bias_initializer(_, *args, **kwargs):
                    return ops.concatenate(
                        [
                            self.bias_initializer((units,), *args, **kwargs),
                            initializers.get("ones")((units,), *args, **kwargs),
                            self.bias_initializer((2 * units,), *args, **kwargs),
                        ]
                    )

            else:
                bias_initializer = self.bias_initializer
            self.bias = self.add_weight(
                shape=(4 * units,),
                name="bias",
                initializer=bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states[0], states[1]
        if training and self.dropout > 0.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        h_in = h_tm1
        if training and self.recurrent_dropout > 0.0:
            h_in = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)

        x = ops.matmul(inputs, self.kernel)
        r = ops.matmul(h_in, self.recurrent_kernel)
        v = ops.split(self.hidden_kernel, 4, axis=1)
        if self.hidden == "gates":
            z = ops.add(x, r)
            if self.use_bias:
                z = ops.add(z, self.bias)
            z = ops.split(self.hidden_activation(z), 4, axis=1)
            a = [ops.matmul(z_k, v_k) for z_k, v_k in zip(z, v)]
        else:  # "input"
            if self.use_bias:
                r = ops.add(r, self.bias)
            x = ops.split(self.hidden_activation(x), 4, axis=1)
            r = ops.split(r, 4, axis=1)
            a = [ops.add(ops.matmul(x_k, v_k), r_k) for x_k, v_k, r_k in zip(x, v, r)]

        i = self.recurrent_activation(a[0])
        f = self.recurrent_activation(a[1])
        g = self.activation(a[2])
        o = self.recurrent_activation(a[3])
        c = f * c_tm1 + i * g
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = {
            "units": self.units,
            "hidden": self.hidden,
            "hidden_activation": activations.serialize(self.hidden_activation),
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "hidden_initializer": initializers.serialize(self.hidden_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "hidden_regularizer": regularizers.serialize(self.hidden_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "hidden_constraint": constraints.serialize(self.hidden_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        base_config = super().get_config()
        return {**base_config, **config}

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, d), dtype=self.compute_dtype) for d in self.state_size]


@keras.saving.register_keras_serializable(package="condense")
class HLSTM(keras.layers.RNN):
    """hLSTM layer: an LSTM with a hidden layer in its gates (Liu et al. 2021; Dai et al. 2020).

    A ``keras.layers.RNN`` around :class:`HLSTMCell` (see there for the equations), the way
    ``keras.layers.LSTM`` wraps ``keras.layers.LSTMCell``. One ``HLSTM(16)`` on 76 inputs has
    6,976 parameters: ``kernel`` (76, 64), ``recurrent_kernel`` (16, 64), ``hidden_kernel``
    (16, 64) and ``bias`` (64,). Masking is handled by ``keras.layers.RNN``: a masked step
    leaves both states unchanged and repeats the previous output.

    Args:
        units: Positive integer, dimensionality of the output space.
        hidden: ``"gates"`` (default) or ``"input"``; see :class:`HLSTMCell`.
        hidden_activation: Activation of the hidden layer. Default: ``"relu"``.
        activation: Activation of the candidate and of the cell output. Default: ``"tanh"``.
        recurrent_activation: Activation of the gates. Default: ``"sigmoid"``.
        use_bias: Boolean (default ``True``), whether the layer has a bias vector.
        kernel_initializer: Initializer for ``kernel``. Default: ``"glorot_uniform"``.
        recurrent_initializer: Initializer for ``recurrent_kernel``. Default:
            ``"orthogonal"``.
        hidden_initializer: Initializer for ``hidden_kernel``. Default: ``"glorot_uniform"``.
        bias_initializer: Initializer for ``bias``. Default: ``"zeros"``.
        unit_forget_bias: Boolean (default ``True``): the forget-gate bias block starts at one.
        kernel_regularizer: Regularizer for ``kernel``. Default: ``None``.
        recurrent_regularizer: Regularizer for ``recurrent_kernel``. Default: ``None``.
        hidden_regularizer: Regularizer for ``hidden_kernel``. Default: ``None``.
        bias_regularizer: Regularizer for ``bias``. Default: ``None``.
        activity_regularizer: Regularizer for the layer's output. Default: ``None``.
        kernel_constraint: Constraint for ``kernel``. Default: ``None``.
        recurrent_constraint: Constraint for ``recurrent_kernel``. Default: ``None``.
        hidden_constraint: Constraint for ``hidden_kernel``. Default: ``None``.
        bias_constraint: Constraint for ``bias``. Default: ``None``.
        dropout: Float in ``[0, 1)``, input dropout rate. Default: 0.
        recurrent_dropout: Float in ``[0, 1)``, recurrent-state dropout rate. Default: 0.
        seed: Random seed for dropout.
        return_sequences: Boolean. Return the full output sequence instead of the last
            output. Default: ``False``.
        return_state: Boolean. Also return the last ``h`` and ``c``. Default: ``False``.
        go_backwards: Boolean. Process the sequence backwards (and return the reversed
            sequence). Default: ``False``.
        stateful: Boolean. Carry the last states of each batch into the next batch.
            Default: ``False``.
        unroll: Boolean. Unroll the time loop (needs a fixed number of timesteps) instead of
            a symbolic loop. Default: ``False``.
        zero_output_for_mask: Boolean. With ``return_sequences``, output zeros at masked
            steps instead of repeating the previous output. Default: ``False``.
        **kwargs: Base layer keyword arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        sequences: A 3D tensor with shape ``(batch, timesteps, features)``.
        initial_state: Optional list ``[h, c]`` of initial states, each ``(batch, units)``;
            zeros when ``None``.
        mask: Optional boolean tensor ``(batch, timesteps)``; ``False`` marks a step to skip.
            Usually supplied by a preceding ``keras.layers.Masking``.
        training: Python boolean, training mode (dropout on) or inference mode.

    Example:

    >>> inputs = np.random.random((32, 10, 8)).astype("float32")
    >>> tuple(HLSTM(4)(inputs).shape)
    (32, 4)
    >>> layer = HLSTM(4, hidden="input", return_sequences=True, return_state=True)
    >>> seq, h, c = layer(inputs)
    >>> [tuple(t.shape) for t in (seq, h, c)]
    [(32, 10, 4), (32, 4), (32, 4)]
    """

    def __init__(
        self,
        units,
        hidden="gates",
        hidden_activation="relu",
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        hidden_initializer="glorot_uniform",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        hidden_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        hidden_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        cell = HLSTMCell(
            units,
            hidden=hidden,
            hidden_activation=hidden_activation,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            hidden_initializer=hidden_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            hidden_regularizer=hidden_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            hidden_constraint=hidden_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype", None),
            trainable=kwargs.get("trainable", True),
            name="hlstm_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        return super().call(sequences, mask=mask, training=training, initial_state=initial_state)

    @property
    def units(self):
        return self.cell.units

    @property
    def hidden(self):
        return self.cell.hidden

    @property
    def hidden_activation(self):
        return self.cell.hidden_activation

    @property
    def activation(self):
        return self.cell.activation

    @property
    def recurrent_activation(self):
        return self.cell.recurrent_activation

    @property
    def use_bias(self):
        return self.cell.use_bias

    @property
    def unit_forget_bias(self):
        return self.cell.unit_forget_bias

    @property
    def kernel_initializer(self):
        return self.cell.kernel_initializer

    @property
    def recurrent_initializer(self):
        return self.cell.recurrent_initializer

    @property
    def hidden_initializer(self):
        return self.cell.hidden_initializer

    @property
    def bias_initializer(self):
        return self.cell.bias_initializer

    @property
    def kernel_regularizer(self):
        return self.cell.kernel_regularizer

    @property
    def recurrent_regularizer(self):
        return self.cell.recurrent_regularizer

    @property
    def hidden_regularizer(self):
        return self.cell.hidden_regularizer

    @property
    def bias_regularizer(self):
        return self.cell.bias_regularizer

    @property
    def kernel_constraint(self):
        return self.cell.kernel_constraint

    @property
    def recurrent_constraint(self):
        return self.cell.recurrent_constraint

    @property
    def hidden_constraint(self):
        return self.cell.hidden_constraint

    @property
    def bias_constraint(self):
        return self.cell.bias_constraint

    @property
    def dropout(self):
        return self.cell.dropout

    @property
    def recurrent_dropout(self):
        return self.cell.recurrent_dropout

    @property
    def seed(self):
        return self.cell.seed

    def get_config(self):
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        base_config = super().get_config()
        del base_config["cell"]
        return {
            **base_config,
            **cell_config,
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
