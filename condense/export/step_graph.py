"""One time step of a recurrent model as a graph: one hour in, the risk and the new state out.

A whole-sequence ``.tflite`` file recomputes all 48 hours for every new hour, keeps its state in
variable tensors (fused LSTM) or loops in a ``WHILE`` (hLSTM), and neither runs everywhere: TFLM
cannot run a ``WHILE``, LiteRT.js refuses variable tensors, and calibrating a ``WHILE`` loop to
full int8 crashes the converter. :class:`StepGraph` rebuilds a model's recurrent chain (read by
:func:`condense.export.recurrent_graphs.analyse`) as the equations of one step, with the trained
weights as constants and the recurrent state as explicit float inputs and outputs, at batch 1:

* inputs ``x`` (one hour, ``(1, C)``) and ``h1, c1, h2, c2, ...`` (each recurrent layer's output
  and carry state, ``(1, units)``; zero at the start of a patient);
* outputs ``p`` (the model's output after this hour, ``(1, 1)``) and ``h1_out, c1_out, ...``
  (the state to feed into the next call).

After 48 calls from zero state, ``p`` is what the sequence model computes for the 48 hours. The
file holds no state of its own: the caller owns it (a new patient is a new zero state).

The equations per recurrent layer (Keras' gate order ``i, f, g, o``; the columns of ``W``, ``U``
and ``b`` reordered to ``i, f, o | g`` so that one activation covers the three gates; the bias
added as ``(x W + b) + h U`` so that the converter folds it into the first product):

* ``LSTM``: ``i, f, o = rec_act(z_ifo)``, ``g = act(z_g)`` with ``z = (x W + b) + h U``;
* ``HLSTM(hidden="gates")``: ``z = hidden_act((x W + b) + h U)``, ``a_k = z_k V_k`` per gate (four
  separate ``(u, u)`` products: smaller int8 files than one block-diagonal ``(4u, 4u)``);
* ``HLSTM(hidden="input")``: ``a_k = hidden_act(x W)_k V_k + (h U + b)_k``;

then ``c = f * c + i * g`` and ``h = o * act(c)`` (the cell's own activations). With ``normalizer``
(``(mean, scale)`` per input feature) the graph takes un-normalized inputs: the first layer's input
weights become ``W / scale`` and ``-(mean / scale) W`` joins its bias (float32 files only: one int8
input scale cannot span clinical units from pH to platelets). ``Masking`` is left
out: exact when no time step is all mask values (:func:`~condense.export.recurrent_graphs.masked_steps`;
true for the IHM and PhysioNet pipelines by construction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from condense.export.recurrent_graphs import Chain, _kind, _weights

# Deferred on purpose: TensorFlow is imported inside the functions that use it, so importing this module stays light.

__all__ = ["StepGraph", "StateTensor", "step_problem", "OUTPUT_NAME", "INPUT_NAME"]

#: Name of the one-hour input of a step file.
INPUT_NAME = "x"
#: Name of the model's output in a step file.
OUTPUT_NAME = "p"
#: Suffix of a state output: the state input ``h1`` comes back as ``h1_out``.
STATE_OUT_SUFFIX = "_out"


@dataclass(frozen=True)
class StateTensor:
    """One recurrent state of a step file: input ``name``, output ``name + "_out"``, ``(1, units)``."""

    name: str
    units: int
    layer: str

    @property
    def output(self) -> str:
        return self.name + STATE_OUT_SUFFIX


def step_problem(chain: Chain) -> str:
    """Why the chain cannot be stepped one hour at a time ('' when it can)."""
    if chain.problem:
        return chain.problem
    for layer in chain.recurrent:
        if layer.go_backwards or layer.stateful or layer.return_state:
            return f"layer {layer.name!r} is go_backwards, stateful or returns its state (cannot be stepped)"
    return ""


def _gate_order(units: int) -> np.ndarray:
    """Column order ``i, f, o, g`` of a ``(., 4u)`` matrix in Keras' ``i, f, g, o`` order."""
    u = units
    return np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]


class StepGraph:
    """The step equations of a recurrent chain with its weights as constants (see the module docstring).

    ``normalizer=(mean, scale)`` (arrays of the input's width; 0 and 1 for channels the model takes as
    they are) folds the input standardization ``(x - mean) / scale`` into the first layer.
    ``head=False`` stops before the final Dense layer: ``p`` is then the features it takes (the
    converter's caller appends the head in float, see :func:`condense.export.tflite_edit.append_dense_head`).
    ``step(x, state)`` runs on TensorFlow tensors of any batch (eagerly or traced);
    :meth:`concrete_function` is the batch-1 function the converter takes; :meth:`run` chains the
    steps over whole sequences in NumPy in, NumPy out (parity checks, calibration pairs).
    """

    def __init__(self, chain: Chain, head: bool = True, normalizer: tuple | None = None):
        problem = step_problem(chain)
        if problem:
            raise ValueError(f"cannot build a step graph: {problem}")
        if not head and chain.head is None:
            raise ValueError("the model does not end in a sigmoid or linear Dense head to stop before")
        self.chain = chain
        self.features = chain.features
        self.layers = [layer for layer in chain.layers if _kind(layer) != "masking"]
        if not head:  # the caller appends the head in float (full int8: untied probabilities)
            self.layers = self.layers[: self.layers.index(chain.head)]
        self.weights = {id(layer): _weights(layer) for layer in self.layers}
        self.states: list[StateTensor] = []
        for k, layer in enumerate(chain.recurrent, start=1):
            units = int(layer.cell.units)
            self.states += [StateTensor(f"h{k}", units, layer.name), StateTensor(f"c{k}", units, layer.name)]
        self._params = {id(layer): self._layer_params(layer) for layer in chain.recurrent}
        self.normalizer_folded = normalizer is not None
        if normalizer is not None:
            self._fold(*normalizer)

    # -- the equations ------------------------------------------------------------------------------
    def _layer_params(self, layer) -> dict:
        """Constant arrays of one recurrent layer, columns in gate order i, f, o | g."""
        w, cell = self.weights[id(layer)], layer.cell
        u = int(cell.units)
        order = _gate_order(u)
        bias = w.get("bias", np.zeros(4 * u, np.float32))[order]
        params = {"units": u, "W": w["kernel"][:, order], "U": w["recurrent_kernel"][:, order], "b": bias,
                  "kind": "lstm" if _kind(layer) == "lstm" else f"hlstm-{cell.hidden}"}
        if "hidden_kernel" in w:  # hLSTM: V's (u, u) blocks in gate order i, f, o, g
            params["V"] = [w["hidden_kernel"][:, k * u:(k + 1) * u] for k in (0, 1, 3, 2)]
        return params

    def _fold(self, mean, scale) -> None:
        """Fold ``(x - mean) / scale`` into the first layer: ``x W' + o`` with ``W' = W / scale`` and
        ``o = -(mean / scale) W`` (float64 arithmetic, float32 constants)."""
        mean, scale = (np.asarray(v, np.float64).reshape(-1) for v in (mean, scale))
        if mean.shape != (self.features,) or scale.shape != mean.shape or not np.all(scale > 0):
            raise ValueError(f"the normalizer to fold needs {self.features} means and positive scales, "
                             f"got {mean.size} and {scale.size}")
        first = next(layer for layer in self.layers if _kind(layer) in ("lstm", "hlstm", "dense"))
        params = self._params.get(id(first))
        weights = params if params is not None else self.weights[id(first)]
        key = "W" if params is not None else "kernel"
        kernel = np.asarray(weights[key], np.float64)
        offset = -(mean / scale) @ kernel
        folded = dict(weights)
        folded[key] = (kernel / scale[:, None]).astype(np.float32)
        if params is not None and params["kind"] == "hlstm-input":  # hidden_act(x W) has no bias of its own
            folded["x_offset"] = offset.astype(np.float32)
        else:
            bias_key = "b" if params is not None else "bias"
            bias = np.asarray(weights.get(bias_key, np.zeros(kernel.shape[1])), np.float64)
            folded[bias_key] = (bias + offset).astype(np.float32)
        if params is not None:
            self._params[id(first)] = folded
        else:
            self.weights[id(first)] = folded

    def _recurrent_step(self, layer, x, h, c):
        import tensorflow as tf

        p, cell = self._params[id(layer)], layer.cell
        u = p["units"]
        if p["kind"] == "lstm":
            z = (tf.matmul(x, p["W"]) + p["b"]) + tf.matmul(h, p["U"])
            ifo, g = tf.split(z, [3 * u, u], axis=1)
            i, f, o = tf.split(cell.recurrent_activation(ifo), 3, axis=1)
            g = cell.activation(g)
        else:
            if p["kind"] == "hlstm-gates":
                z = cell.hidden_activation((tf.matmul(x, p["W"]) + p["b"]) + tf.matmul(h, p["U"]))
                a = [tf.matmul(z_k, v_k) for z_k, v_k in zip(tf.split(z, 4, axis=1), p["V"])]
            else:
                xw = tf.matmul(x, p["W"]) + p["x_offset"] if "x_offset" in p else tf.matmul(x, p["W"])
                xa = tf.split(cell.hidden_activation(xw), 4, axis=1)
                r = tf.split(tf.matmul(h, p["U"]) + p["b"], 4, axis=1)
                a = [tf.matmul(x_k, v_k) + r_k for x_k, v_k, r_k in zip(xa, p["V"], r)]
            i, f, o = (cell.recurrent_activation(a_k) for a_k in a[:3])
            g = cell.activation(a[3])
        c = f * c + i * g
        h = o * cell.activation(c)
        return h, c

    def step(self, x, state: dict) -> tuple:
        """``(output, new_state)`` after one time step ``x`` ``(batch, features)`` from ``state``
        (``{name: (batch, units)}``, every :attr:`states` name)."""
        import tensorflow as tf

        new_state, k = {}, 0
        for layer in self.layers:
            kind = _kind(layer)
            if kind in ("lstm", "hlstm"):
                k += 1
                h, c = self._recurrent_step(layer, x, state[f"h{k}"], state[f"c{k}"])
                new_state[f"h{k}"], new_state[f"c{k}"] = h, c
                x = h
            elif kind == "dense":
                w = self.weights[id(layer)]
                x = tf.matmul(x, w["kernel"])
                if "bias" in w:
                    x = x + w["bias"]
                x = layer.activation(x)
            # "identity" layers (dropout, noise) do nothing at inference
        return x, new_state

    # -- batch-1 function for the converter ---------------------------------------------------------
    def concrete_function(self):
        """``(concrete function, module)`` with inputs ``x, h1, c1, ...`` and outputs ``p, h1_out, ...``."""
        import tensorflow as tf

        specs = [tf.TensorSpec([1, self.features], tf.float32, name=INPUT_NAME)]
        specs += [tf.TensorSpec([1, s.units], tf.float32, name=s.name) for s in self.states]
        names = [s.name for s in self.states]

        def serve(x, *state):
            out, new = self.step(x, dict(zip(names, state)))
            return {OUTPUT_NAME: out, **{s.output: new[s.name] for s in self.states}}

        module = tf.Module()
        module.serve = tf.function(serve, input_signature=specs, autograph=False)
        return module.serve.get_concrete_function(), module

    # -- whole sequences in NumPy -------------------------------------------------------------------
    def zero_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {s.name: np.zeros((batch, s.units), np.float32) for s in self.states}

    def run(self, x: np.ndarray, *, pairs: bool = False, batch: int = 256):
        """Chain the steps over ``x`` ``(N, T, C)`` from zero state, eagerly in TensorFlow.

        Returns the outputs after the last step ``(N,)`` float64, and with ``pairs=True`` also the
        ``(x_t, state_t)`` inputs of every step as ``{name: (N*T, width)}`` (calibration data).
        """
        import tensorflow as tf

        x = np.asarray(x, np.float32)
        outputs, seen = [], {name: [] for name in (INPUT_NAME, *[s.name for s in self.states])}
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            state = {k: tf.constant(v) for k, v in self.zero_state(len(chunk)).items()}
            out = None
            for t in range(chunk.shape[1]):
                xt = tf.constant(chunk[:, t])
                if pairs:
                    seen[INPUT_NAME].append(chunk[:, t])
                    for name, value in state.items():
                        seen[name].append(value.numpy())
                out, state = self.step(xt, state)
            outputs.append(np.asarray(out, np.float64).reshape(len(chunk), -1)[:, 0])
        p = np.concatenate(outputs) if outputs else np.zeros(0)
        if not pairs:
            return p
        return p, {name: np.concatenate(v) for name, v in seen.items()}
