"""The graph the TFLite converter sees for a recurrent model, and when it may differ from Keras'.

A Keras 3 recurrent model converted as it is becomes a ``WHILE`` loop (or, unrolled, one copy of
the step per time step), both with the ``Masking`` logic inside. Much smaller and faster files
come from rebuilding the same weights as a TensorFlow graph the converter understands better.
This module reads a model as a **chain** of layers (:func:`analyse`) and builds those graphs:

:class:`FusedGraph`
    Every ``keras.layers.LSTM`` (and the hLSTM's ``input`` form, which is exactly
    ``Dense(4u, hidden_activation, no bias)`` followed by an LSTM whose input kernel is the
    block-diagonal of ``V``) becomes a ``tf.function`` carrying ``api_implements="lstm_<id>"``,
    the attribute by which the converter replaces a function with its fused
    ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op (what tf_keras' LSTM emits and Keras 3 lost). Its
    signature is the converter's: ``(inputs, init_h, init_c, kernel, recurrent_kernel, bias)``
    returning five results of which only the last output and the sequence are used; weights
    enter as constant tensors and the batch is fixed to 1. No tf_keras is involved.
:class:`HoistedGatesGraph`
    The hLSTM's ``gates`` form cannot fuse (a ReLU and a matrix product sit inside each gate).
    For full int8 its input projection ``x_t W + b`` is computed for all time steps at once
    (one matrix product outside the recurrence), the four ``V`` blocks become one
    block-diagonal product, and the time loop is unrolled (the converter cannot calibrate a
    ``WHILE`` loop to int8; it crashes).
:func:`keras_chain`
    The model's own Keras layers at batch 1 (``WHILE`` loop, or unrolled), optionally without
    its ``Masking`` layer: the route for recurrent layers that have no faster graph.

Masking
-------
The fused op has no mask input, and every graph above leaves ``Masking`` out. That is exact
only when no time step is masked, i.e. no step has *all* features equal to the mask value:
Keras then never skips a step (multiplying by a mask instead is not equivalent: a zero step
still moves the state). :func:`masked_steps` counts such steps in data; the export drops
``Masking`` only when the data it is given has none. For the IHM and PhysioNet pipelines this
holds by construction (see ``tests/export/test_masking_exactness.py``): each has a group of
categorical one-hot channels that are never normalized and carry exactly one 1 at every step
(missing values are imputed to a category).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Chain",
    "analyse",
    "masked_steps",
    "FusedGraph",
    "HoistedGatesGraph",
    "keras_chain",
    "lstm_cell_state_max",
]


@dataclass
class Chain:
    """A model read as a chain of layers, input to output.

    Attributes:
        layers: the layers in order (input layer excluded).
        masking: the ``Masking`` layer, or None.
        timesteps, features: the input's time steps (``None`` if variable) and width.
        problem: why the model is not a supported chain (empty when it is).
        fused_problem: why :class:`FusedGraph` cannot build it (empty when it can).
        hoist_problem: why :class:`HoistedGatesGraph` cannot build it (empty when it can).
        head: the final ``Dense`` layer when its activation is sigmoid or linear (the graphs
            can stop before it, see :class:`FusedGraph`), else None.
    """

    layers: list = field(default_factory=list)
    masking: object = None
    timesteps: int | None = None
    features: int = 0
    problem: str = ""
    fused_problem: str = ""
    hoist_problem: str = ""
    head: object = None

    @property
    def head_activation(self) -> str:
        """The head's activation name (``"sigmoid"`` or ``"linear"``), '' without a head."""
        return _activation_name(self.head.activation) if self.head is not None else ""

    @property
    def recurrent(self) -> list:
        return [layer for layer in self.layers if _kind(layer) in ("lstm", "hlstm")]


def _kind(layer) -> str:
    import keras

    from condense.layers.hlstm import HLSTM

    if isinstance(layer, keras.layers.Masking):
        return "masking"
    if type(layer) is keras.layers.LSTM:
        return "lstm"
    if isinstance(layer, HLSTM):
        return "hlstm"
    if type(layer) is keras.layers.Dense:
        return "dense"
    if isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                          keras.layers.SpatialDropout1D)):
        return "identity"  # inference-time identity
    return "unsupported"


def _producer(tensor):
    """The layer that produced a symbolic Keras tensor."""
    history = getattr(tensor, "_keras_history", None)
    return getattr(history, "operation", None) if history is not None else None


def _activation_name(fn) -> str:
    import keras

    try:
        return keras.activations.serialize(fn)
    except (ValueError, TypeError):
        return getattr(fn, "__name__", repr(fn))


def _cell_problem(layer) -> str:
    """Why a recurrent layer's cell is not an LSTM the fused op computes ('' when it is)."""
    cell = layer.cell
    if _activation_name(cell.activation) != "tanh" or _activation_name(cell.recurrent_activation) != "sigmoid":
        return (f"layer {layer.name!r} uses activation={_activation_name(cell.activation)!r}, "
                f"recurrent_activation={_activation_name(cell.recurrent_activation)!r} (the fused op computes "
                "tanh / sigmoid)")
    if layer.go_backwards or layer.stateful or layer.return_state:
        return f"layer {layer.name!r} is go_backwards, stateful or returns its state"
    return ""


def analyse(model) -> Chain:
    """Read ``model`` as a chain of supported layers (see :class:`Chain`)."""
    import keras

    chain = Chain()
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 3 or len(model.inputs) != 1 or len(model.outputs) != 1:
        chain.problem = "not a single-input, single-output sequence model"
        return chain
    chain.timesteps = None if shape[1] is None else int(shape[1])
    chain.features = int(shape[2])
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = _producer(model.inputs[0])
    for layer in layers:
        nodes = getattr(layer, "_inbound_nodes", ())
        # the first input tensor is the data; others are the mask Masking propagates
        if len(nodes) != 1 or not nodes[0].input_tensors or _producer(nodes[0].input_tensors[0]) is not previous:
            chain.problem = f"layer {layer.name!r} does not take the previous layer's output (not a chain)"
            return chain
        kind = _kind(layer)
        if kind == "unsupported":
            chain.problem = f"layer {layer.name!r} ({type(layer).__name__}) has no rebuilt graph"
            return chain
        if kind == "masking":
            if chain.masking is not None or chain.recurrent:
                chain.problem = f"Masking layer {layer.name!r} is not the first recurrent input"
                return chain
            chain.masking = layer
        previous = layer
        chain.layers.append(layer)
    if _producer(model.outputs[0]) is not previous:
        chain.problem = "the last layer is not the model's output"
        return chain
    recurrent = chain.recurrent
    if not recurrent:
        chain.problem = "no recurrent layer"
        return chain
    for k, layer in enumerate(recurrent):
        last = k == len(recurrent) - 1
        if layer.return_sequences == last:
            chain.problem = (f"recurrent layer {layer.name!r} has return_sequences={layer.return_sequences}: "
                             "every recurrent layer but the last must return sequences and the last must not")
            return chain
    tail = chain.layers[chain.layers.index(recurrent[-1]) + 1:]
    dense = [layer for layer in tail if _kind(layer) == "dense"]
    if dense and _activation_name(dense[-1].activation) in ("sigmoid", "linear") \
            and all(_kind(layer) == "identity" for layer in tail[tail.index(dense[-1]) + 1:]):
        chain.head = dense[-1]
    problems = []
    for layer in recurrent:
        problem = _cell_problem(layer)
        if not problem and _kind(layer) == "hlstm" and layer.cell.hidden != "input":
            problem = f"hLSTM layer {layer.name!r} has its hidden layer in the gates (cannot fuse)"
        if problem:
            problems.append(problem)
    chain.fused_problem = "; ".join(problems)
    hoist = [layer for layer in recurrent if _kind(layer) != "hlstm" or layer.cell.hidden != "gates"
             or _cell_problem(layer)]
    chain.hoist_problem = "" if not hoist else f"layer {hoist[0].name!r} is not an hLSTM with its hidden layer in the gates"
    if chain.timesteps is None:
        chain.hoist_problem = chain.hoist_problem or "the time dimension is variable (cannot unroll)"
    return chain


def masked_steps(x: np.ndarray, mask_value: float = 0.0) -> tuple[int, int]:
    """``(samples, steps)``: how many samples of ``x`` (N, T, F) have a step whose features all
    equal ``mask_value`` (a step Keras' ``Masking`` would skip), and how many such steps."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"masked_steps expects (samples, time, features), got shape {x.shape}")
    masked = np.all(x == mask_value, axis=-1)
    return int(masked.any(axis=1).sum()), int(masked.sum())


# ----------------------------------------------------------------------------------------------
# Graphs (TensorFlow is imported inside: this module is imported by the CLI without it)
# ----------------------------------------------------------------------------------------------


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.path.split("/")[-1]: np.asarray(w.numpy(), dtype=np.float32) for w in layer.weights}


def _lstm_parts(layer) -> list[tuple[str, object]]:
    """A recurrent layer as fused-LSTM parts: [("dense", (kernel, activation))?, ("lstm", (W, U, b))]."""
    w = _weights(layer)
    units = layer.cell.units
    bias = w.get("bias", np.zeros(4 * units, np.float32))
    if _kind(layer) == "lstm":
        return [("lstm", (w["kernel"], w["recurrent_kernel"], bias))]
    # hLSTM, hidden="input": a_k = act(x W_k) V_k + h U_k + b_k  ==  LSTM(input=act(x W), kernel=blockdiag(V))
    return [("dense", (w["kernel"], layer.cell.hidden_activation)),
            ("lstm", (_block_diagonal(w["hidden_kernel"]), w["recurrent_kernel"], bias))]


def _block_diagonal(hidden_kernel: np.ndarray) -> np.ndarray:
    """The hLSTM's ``V = [V_i V_f V_g V_o]`` ``(u, 4u)`` as one ``(4u, 4u)`` block-diagonal matrix."""
    units = hidden_kernel.shape[0]
    out = np.zeros((4 * units, 4 * units), np.float32)
    for k in range(4):
        out[k * units:(k + 1) * units, k * units:(k + 1) * units] = hidden_kernel[:, k * units:(k + 1) * units]
    return out


def _lstm_sequence(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
    """Keras' LSTM equations (gates i, f, g, o; sigmoid / tanh) over the time axis of ``inputs``
    (batch, time, features): the lists of hidden and cell states, one per step."""
    import tensorflow as tf

    h, c = init_h, init_c
    hs, cs = [], []
    for x in tf.unstack(inputs, axis=1):
        i, f, g, o = tf.split(tf.matmul(x, kernel) + tf.matmul(h, recurrent_kernel) + bias, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        hs.append(h)
        cs.append(c)
    return hs, cs


def _fused_lstm_function():
    """A function the converter replaces by UNIDIRECTIONAL_SEQUENCE_LSTM (see the module docstring).

    Its body is a correct LSTM (TensorFlow runs it when called directly), but after conversion
    only its signature and attributes matter.
    """
    import tensorflow as tf

    def lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        hs, cs = _lstm_sequence(inputs, init_h, init_c, kernel, recurrent_kernel, bias)
        return hs[-1], tf.stack(hs, axis=1), hs[-1], cs[-1], tf.constant(0.0)

    attributes = {"api_implements": f"lstm_{uuid.uuid4()}", "api_preferred_device": "CPU",
                  "time_major": False, "go_backwards": False}
    return tf.function(lstm, autograph=False, experimental_attributes=attributes)


def _apply_tail_layer(layer, x, w: dict[str, np.ndarray]):
    """A non-recurrent chain layer at inference (Dense or an identity) with weights ``w``, on a
    TF tensor."""
    import tensorflow as tf

    if _kind(layer) == "identity":
        return x
    y = tf.tensordot(x, tf.constant(w["kernel"]), axes=1) if len(x.shape) > 2 else tf.matmul(x, w["kernel"])
    if "bias" in w:
        y = y + w["bias"]
    return layer.activation(y)


class _ChainModule:
    """Shared by the graphs: a ``tf.Module`` with a batch-1 ``serve`` function over the chain."""

    def __init__(self, chain: Chain, head: bool):
        if chain.problem:
            raise ValueError(f"cannot rebuild this model's graph: {chain.problem}")
        if not head and chain.head is None:
            raise ValueError("the model does not end in a sigmoid or linear Dense head to stop before")
        self.chain = chain
        self.layers = [layer for layer in chain.layers if _kind(layer) != "masking"]
        if not head:
            self.layers = self.layers[: self.layers.index(chain.head)]
        self.weights = {id(layer): _weights(layer) for layer in self.layers}  # read eagerly, used when tracing

    def concrete_function(self):
        import tensorflow as tf

        module = tf.Module()
        spec = tf.TensorSpec([1, self.chain.timesteps, self.chain.features], tf.float32, name="x")
        module.serve = tf.function(lambda x: self.call(x), input_signature=[spec], autograph=False)
        return module.serve.get_concrete_function(), module

    def call(self, x):
        raise NotImplementedError


class FusedGraph(_ChainModule):
    """Every recurrent layer as the converter's fused LSTM (see the module docstring).

    ``head=False`` stops before the final Dense layer (the caller appends it in float, see
    :func:`condense.export.tflite_edit.append_dense_head`).
    """

    def __init__(self, chain: Chain, head: bool = True):
        super().__init__(chain, head)
        if chain.fused_problem:
            raise ValueError(f"cannot fuse: {chain.fused_problem}")
        self.parts = {id(layer): _lstm_parts(layer) for layer in self.layers if _kind(layer) in ("lstm", "hlstm")}

    def call(self, x, lstm=None):
        """The chain on ``x``; ``lstm(layer, inputs, init_h, init_c, kernel, recurrent_kernel, bias)``
        returns ``(last output, sequence)`` (default: the converter's fused function)."""
        import tensorflow as tf

        if lstm is None:
            def lstm(layer, *args):
                return _fused_lstm_function()(*args)[:2]

        for layer in self.layers:
            if id(layer) not in self.parts:
                x = _apply_tail_layer(layer, x, self.weights[id(layer)])
                continue
            for part, args in self.parts[id(layer)]:
                if part == "dense":
                    kernel, activation = args
                    x = activation(tf.tensordot(x, tf.constant(kernel), axes=1))
                    continue
                kernel, recurrent_kernel, bias = (tf.constant(a) for a in args)
                zeros = tf.zeros([int(x.shape[0]), int(recurrent_kernel.shape[0])], tf.float32)
                last, sequence = lstm(layer, x, zeros, zeros, kernel, recurrent_kernel, bias)
                x = sequence if layer.return_sequences else last
        return x


class HoistedGatesGraph(_ChainModule):
    """hLSTM ``gates`` layers with the input projection hoisted out of an unrolled time loop."""

    def __init__(self, chain: Chain, head: bool = True):
        super().__init__(chain, head)
        if chain.hoist_problem:
            raise ValueError(f"cannot hoist: {chain.hoist_problem}")

    def call(self, x):
        import tensorflow as tf

        for layer in self.layers:
            if _kind(layer) != "hlstm":
                x = _apply_tail_layer(layer, x, self.weights[id(layer)])
                continue
            cell, w = layer.cell, self.weights[id(layer)]
            u = cell.units
            projected = tf.tensordot(x, tf.constant(w["kernel"]), axes=1)  # (1, T, 4u): every step at once
            if "bias" in w:
                projected = projected + w["bias"]
            # block-diagonal V with its output columns in gate order i, f, o, g: one sigmoid for the
            # three gates and one tanh per step (fewer ops, each with its own int8 parameters)
            order = np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]
            recurrent_kernel = tf.constant(w["recurrent_kernel"])
            blockdiag = tf.constant(_block_diagonal(w["hidden_kernel"])[:, order])
            h = c = tf.zeros([1, u], tf.float32)
            outputs = []
            for step in tf.unstack(projected, axis=1):  # one UNPACK op instead of a slice per step
                z = cell.hidden_activation(step + tf.matmul(h, recurrent_kernel))
                gates, g = tf.split(tf.matmul(z, blockdiag), [3 * u, u], axis=1)
                i, f, o = tf.split(tf.sigmoid(gates), 3, axis=1)
                c = f * c + i * tf.tanh(g)
                h = o * tf.tanh(c)
                outputs.append(h)
            x = tf.stack(outputs, axis=1) if layer.return_sequences else h
        return x


def keras_chain(model, chain: Chain, *, unroll: bool):
    """The model's layers at batch 1 without its ``Masking`` layer, as a new Keras model (the
    recurrent layers rebuilt with ``unroll``; weights copied)."""
    import keras

    from condense.models import rebuild_with_batch

    if chain.problem:
        raise ValueError(f"cannot rebuild this model without Masking: {chain.problem}")
    rebuilt = rebuild_with_batch(model, batch_size=1, unroll=unroll)
    x = inputs = keras.Input(batch_shape=(1, chain.timesteps, chain.features), name="input")
    for layer in rebuilt.layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Masking)):
            continue
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def lstm_cell_state_max(chain: Chain, x: np.ndarray, batch: int = 256) -> dict[str, float]:
    """Largest |cell state| of every recurrent layer of a fusable chain over the inputs ``x``
    (N, T, F), Masking left out: what the converter's hard-coded ``cell_clip=10`` would cut in
    an integer LSTM op. The chain of :class:`FusedGraph` run eagerly with Keras' equations."""
    import tensorflow as tf

    if chain.problem or chain.fused_problem:
        return {}
    graph = FusedGraph(chain)
    peaks: dict[str, float] = {}

    def recording_lstm(layer, *args):
        hs, cs = _lstm_sequence(*args)
        peaks[layer.name] = max(peaks.get(layer.name, 0.0), float(tf.reduce_max(tf.abs(tf.stack(cs)))))
        return hs[-1], tf.stack(hs, axis=1)

    for start in range(0, len(x), batch):
        graph.call(tf.constant(np.asarray(x[start:start + batch], np.float32)), lstm=recording_lstm)
    return peaks
