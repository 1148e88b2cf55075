"""Channel pruning: remove whole units from Dense, LSTM and hLSTM layers, physically.

Three separate ideas, each with its own functions (as in Torch-Pruning):

1. **Importance** — a score per unit of a prunable layer: :func:`unit_importance`, with the
   criteria in :data:`CRITERIA`:

   - ``"mean_abs"`` (default, the paper's): mean absolute weight of the unit's incoming
     connections. Dense: the unit's ``kernel`` column. LSTM: the unit's column in each of
     the four gate blocks of ``kernel`` and of ``recurrent_kernel``. hLSTM: the same plus
     the unit's column in each gate block of ``hidden_kernel``. Biases are not connections
     and are left out.
   - ``"l2"``: L2 norm of the same weights.
   - ``"signed_mean"``: plain mean of the same weights (the paper's words taken literally).
   - ``"activation"``: mean absolute value of the unit's output over a calibration batch
     (``calibration_x``), averaged over samples and, for sequence outputs, time steps.

2. **Selection** — which units stay: :func:`select_units` per layer (the quantile rule
   below), :func:`select_model_units` for every layer of :func:`prunable_layers`. A layer is
   prunable when it is a Dense, LSTM or HLSTM layer whose output reaches other Dense / LSTM /
   HLSTM layers only (directly or through the pass-through layers :data:`PASS_THROUGH`, or a
   ``Flatten``), and never the model's output: the output layer keeps its units.

3. **Surgery** — a new, physically smaller model: :func:`prune_model` (given explicit kept
   indices) and :func:`prune_units` (importance + selection + surgery). The new model is
   rebuilt from the original's config with smaller ``units`` and receives the kept slices of
   the weights, cut by the pure-numpy verbs :func:`prune_dense_units`,
   :func:`prune_lstm_units`, :func:`prune_hlstm_units` (a layer's own units) and
   :func:`prune_input_rows` (the matching input rows of each layer fed by it). The original
   model is never modified; the result contains only plain Keras layers (and ``HLSTM``) with
   fewer units, so it saves, reloads and converts like any other model.

Weight layout (Keras, gate order ``i, f, g, o``; ``d`` inputs, ``u`` units): an LSTM's
``kernel`` is ``(d, 4u)``, ``recurrent_kernel`` ``(u, 4u)``, ``bias`` ``(4u,)``; unit ``j`` owns
columns ``j, u + j, 2u + j, 3u + j`` of each, plus row ``j`` of ``recurrent_kernel`` (its
outgoing recurrent connections). The hLSTM's ``hidden_kernel`` ``(u, 4u)`` is four ``(u, u)``
blocks whose rows index the unit of the gate pre-activation and whose columns index the gate
output unit, so unit ``j`` owns row ``j`` and columns ``j, u + j, 2u + j, 3u + j``.

The quantile rule. For a layer of ``n`` units and quantile ``q`` in ``(0, 1)``,
:func:`select_units` removes the ``k = min(floor(q * n), n - 1)`` lowest-scoring units,
ties broken by index (of equal scores the lower index is removed first), and keeps the rest.
So ``q = 0.5`` keeps exactly 8 of 16 units and 128 of 256, ``q = 0.25`` keeps 12 of 16, and
at least one unit always stays. With distinct scores this is exactly "remove the units whose
score is strictly below ``numpy.quantile(scores, q, method="averaged_inverted_cdf")``"
(Hyndman & Fan definition 2: the empirical CDF inverted, averaging at its jumps); the rank
form is what makes ties deterministic.

Example::

    pruned, report = prune_units(model, quantile=0.5, return_report=True)
    report["units_kept"]    # {"lstm_1": [8, 16], "lstm_2": [8, 16]}
    report["params_after"]  # 3273
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import keras
import numpy as np

from condense.layers.hlstm import HLSTM

__all__ = [
    "CRITERIA",
    "PASS_THROUGH",
    "PruneReport",
    "Criterion",
    "weight_criterion",
    "activation_importance",
    "incoming_weights",
    "unit_importance",
    "select_units",
    "select_model_units",
    "prunable_layers",
    "gate_columns",
    "prune_dense_units",
    "prune_lstm_units",
    "prune_hlstm_units",
    "prune_input_rows",
    "prune_model",
    "prune_units",
]

#: Number of gate blocks in an LSTM / hLSTM weight matrix (i, f, g, o).
GATES = 4

#: Layers a pruned layer's output may pass through unchanged on its way to the next prunable
#: layer: they act element-wise (or not at all) on the unit axis. ``Activation`` qualifies
#: unless its activation mixes units (softmax). ``Flatten`` is handled separately.
PASS_THROUGH: tuple[type, ...] = tuple(
    cls
    for cls in (
        keras.layers.InputLayer,
        keras.layers.Masking,
        keras.layers.Dropout,
        keras.layers.SpatialDropout1D,
        keras.layers.GaussianNoise,
        keras.layers.GaussianDropout,
        keras.layers.AlphaDropout,
        keras.layers.ActivityRegularization,
        getattr(keras.layers, "Identity", None),
        keras.layers.ReLU,
        keras.layers.LeakyReLU,
        keras.layers.ELU,
        keras.layers.Activation,
    )
    if cls is not None
)

# The weights (by Keras variable name, in canonical order) of each prunable layer kind; the
# trailing "bias" is optional (use_bias=False).
_WEIGHT_NAMES = {
    "dense": ("kernel", "bias"),
    "lstm": ("kernel", "recurrent_kernel", "bias"),
    "hlstm": ("kernel", "recurrent_kernel", "hidden_kernel", "bias"),
}

# ---------------------------------------------------------------------------------------------
# Layer kinds and the model graph
# ---------------------------------------------------------------------------------------------


def _weight_names(layer) -> list[str]:
    return [v.name for v in layer.weights]


def _kind(layer) -> str | None:
    """``"dense"``, ``"lstm"``, ``"hlstm"`` for a layer we know how to cut, else ``None``.

    The weight names must be exactly the expected ones: a quantized or LoRA-enabled Dense
    (extra weights) is not something this module knows how to slice.
    """
    if layer is None:
        return None
    if isinstance(layer, HLSTM):
        kind = "hlstm"
    elif isinstance(layer, keras.layers.LSTM):
        kind = "lstm"
    elif isinstance(layer, keras.layers.Dense):
        kind = "dense"
    else:
        return None
    expected = _WEIGHT_NAMES[kind]
    if sorted(_weight_names(layer)) not in (sorted(expected), sorted(expected[:-1])):
        return None
    return kind


def _is_pass_through(layer) -> bool:
    if not isinstance(layer, PASS_THROUGH):
        return False
    if isinstance(layer, keras.layers.Activation):
        name = keras.activations.serialize(layer.activation)
        name = name if isinstance(name, str) else str(name)
        return "softmax" not in name
    return True


def _describe(name: str, layer, class_name: str | None = None) -> str:
    if layer is None:  # a Keras operation recorded in a functional graph (keras.ops.*), not a layer
        noun = "layer" if class_name == "InputLayer" else "operation"
        return f"{noun} {name!r} ({class_name})"
    cls = type(layer).__name__
    if _kind(layer) is None and isinstance(layer, (keras.layers.Dense, keras.layers.LSTM, HLSTM)):
        return f"layer {name!r} ({cls} with weights {_weight_names(layer)})"
    return f"layer {name!r} ({cls})"


@dataclass
class _Edge:
    consumer: str
    main: bool  # the producer's tensor is the consumer's first positional argument


@dataclass
class _Trace:
    """Where a layer's output goes, following pass-through layers and Flatten."""

    reaches_output: bool = False
    # (consumer layer name, positions): positions > 1 when a Flatten sits in between, the
    # consumer's input rows then being laid out as (positions, units).
    terminals: list[tuple[str, int]] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # pass-through layers and Flattens crossed
    problems: list[str] = field(default_factory=list)


class _Graph:
    """The layer graph of a Sequential or functional model, read from its config."""

    def __init__(self, model):
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"Argument `model` must be a keras.Model, got model of type {type(model).__name__!r}."
            )
        self.sequential = isinstance(model, keras.Sequential)
        try:
            config = model.get_config()
        except NotImplementedError:
            config = {}
        functional = isinstance(config, dict) and {"layers", "input_layers", "output_layers"} <= set(config)
        if not (self.sequential or functional):
            raise ValueError(
                "Pruning needs a Sequential or functional model (its graph is read from the config), "
                f"got model {model.name!r} of type {type(model).__name__!r}."
            )
        if not model.built or not model.weights:
            raise ValueError(f"Model {model.name!r} is not built: build it (or call it once) before pruning.")
        self.model = model
        self.config = config
        self.objects = {layer.name: layer for layer in model.layers}
        self.order: list[str] = []
        self.entries: dict[str, dict] = {}
        self.classes: dict[str, str] = {}
        self.consumers: dict[str, list[_Edge]] = {}
        self.calls: dict[str, int] = {}
        self.outputs: set[str] = set()
        if self.sequential:
            self._read_sequential(config)
        else:
            self._read_functional(config)

    def _add(self, name: str, entry: dict, calls: int):
        self.order.append(name)
        self.entries[name] = entry
        self.classes[name] = entry.get("class_name", "?")
        self.consumers.setdefault(name, [])
        self.calls[name] = calls

    def _read_sequential(self, config):
        previous = None
        for entry in config["layers"]:
            name = entry["config"]["name"]
            self._add(name, entry, 1)
            if previous is not None:
                self.consumers[previous].append(_Edge(name, True))
            previous = name
        self.outputs.add(previous)

    def _read_functional(self, config):
        for entry in config["layers"]:
            name = entry["name"]
            nodes = entry.get("inbound_nodes", [])
            self._add(name, entry, max(len(nodes), 1))
            for node in nodes:
                args = node.get("args", [])
                for position, arg in enumerate(args):
                    for producer in _tensor_refs(arg):
                        self.consumers.setdefault(producer, []).append(
                            _Edge(name, position == 0 and _is_tensor_ref(arg))
                        )
                for producer in _tensor_refs(node.get("kwargs", {})):
                    self.consumers.setdefault(producer, []).append(_Edge(name, False))
        self.outputs.update(_output_names(config["output_layers"]))

    def layer(self, name: str):
        """The layer object called ``name``; ``None`` for recorded operations (keras.ops.*) and
        for the InputLayer of a Sequential model (not among ``model.layers``)."""
        return self.objects.get(name)

    def describe(self, name: str) -> str:
        return _describe(name, self.layer(name), self.classes[name])

    def trace(self, name: str) -> _Trace:
        """Follow ``name``'s output downstream to the next layers that would need new input rows."""
        out = _Trace()
        stack = [(name, 1)]
        while stack:
            node, positions = stack.pop()
            if node in self.outputs:
                out.reaches_output = True
            for edge in self.consumers.get(node, []):
                consumer = edge.consumer
                layer = self.layer(consumer)
                what = self.describe(consumer)
                if not edge.main:
                    out.problems.append(f"{what}, which takes it as a secondary input, not its first argument")
                elif self.calls[consumer] > 1:
                    out.problems.append(f"{what}, which is called more than once (a shared layer)")
                elif layer is None:
                    out.problems.append(f"{what}, which pruning does not support")
                elif _kind(layer) is not None:
                    out.terminals.append((consumer, positions))
                elif _is_pass_through(layer):
                    out.path.append(consumer)
                    stack.append((consumer, positions))
                elif isinstance(layer, keras.layers.Flatten):
                    inner = _flatten_positions(layer)
                    if inner is None:
                        out.problems.append(
                            f"{what}, which flattens a shape pruning cannot map unit by unit "
                            f"(input shape {tuple(layer.input.shape)}, data_format={layer.data_format!r})"
                        )
                    else:
                        out.path.append(consumer)
                        stack.append((consumer, positions * inner))
                else:
                    out.problems.append(f"{what}, which pruning does not support")
        return out


def _is_tensor_ref(obj) -> bool:
    return isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__"


def _tensor_refs(obj):
    """Producer layer names of every Keras tensor referenced in a serialized call argument."""
    if _is_tensor_ref(obj):
        yield obj["config"]["keras_history"][0]
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensor_refs(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensor_refs(value)


def _output_names(spec):
    """Layer names in a functional config's ``output_layers`` ([name, node, tensor] or nests)."""
    is_triple = isinstance(spec, (list, tuple)) and len(spec) == 3
    if is_triple and isinstance(spec[0], str) and isinstance(spec[1], int):
        yield spec[0]
    elif isinstance(spec, dict):
        for value in spec.values():
            yield from _output_names(value)
    elif isinstance(spec, (list, tuple)):
        for value in spec:
            yield from _output_names(value)


def _flatten_positions(layer) -> int | None:
    """How many positions a Flatten folds into each unit (``T`` for ``(batch, T, u)``)."""
    try:
        shape = tuple(layer.input.shape)[1:]
    except (AttributeError, ValueError):
        return None
    if len(shape) == 0 or any(d is None for d in shape):
        return None
    if len(shape) > 1 and layer.data_format == "channels_first":
        return None
    return int(np.prod(shape[:-1], dtype=np.int64))


def _unit_blocker(graph: _Graph, name: str) -> str | None:
    """Why ``name`` (a Dense / LSTM / HLSTM layer) cannot lose units, or ``None``."""
    layer = graph.layer(name)
    if graph.calls[name] > 1:
        return "it is called more than once (a shared layer)"
    if isinstance(layer, keras.layers.RNN):
        if layer.return_state:
            return "it has return_state=True"
        if layer.stateful:
            return "it is stateful"
    return None


def _plan(graph: _Graph) -> dict[str, _Trace]:
    """The prunable layers of ``graph`` (in graph order) with their downstream traces.

    Raises ValueError when a Dense / LSTM / HLSTM layer that is not the output feeds a layer
    pruning cannot follow.
    """
    plan = {}
    for name in graph.order:
        layer = graph.layer(name)
        if _kind(layer) is None:
            continue
        trace = graph.trace(name)
        if trace.reaches_output:
            continue  # the output layer (or one feeding the output): its units are the model's output
        blocker = _unit_blocker(graph, name)
        if trace.problems or blocker:
            problem = trace.problems[0] if trace.problems else blocker
            where = f"its output reaches {problem}" if trace.problems else problem
            raise ValueError(
                f"Cannot prune {graph.describe(name)} in model {graph.model.name!r}: {where}. "
                "Pruning follows Dense, LSTM and HLSTM layers through "
                f"{', '.join(sorted({c.__name__ for c in PASS_THROUGH}))} and Flatten only."
            )
        plan[name] = trace
    return plan


def prunable_layers(model: keras.Model) -> list[str]:
    """Names of the layers of ``model`` whose units can be pruned, in graph order.

    A layer is prunable when it is a Dense, LSTM or HLSTM layer whose output feeds only other
    Dense / LSTM / HLSTM layers (directly or through :data:`PASS_THROUGH` layers or a
    ``Flatten``) and is not (and does not pass unchanged into) a model output.

    Raises:
        ValueError: ``model`` is not a built Sequential or functional model, or a Dense / LSTM
            / HLSTM layer that is not the output feeds an unsupported layer (a Conv1D,
            BatchNormalization, GRU, Bidirectional, a merge, ...): the error names both
            layers and their classes.
    """
    return list(_plan(_Graph(model)))


# ---------------------------------------------------------------------------------------------
# 1. Importance
# ---------------------------------------------------------------------------------------------


def _arrays(layer) -> dict[str, np.ndarray]:
    return {v.name: np.asarray(keras.ops.convert_to_numpy(v)) for v in layer.weights}


def _per_unit(matrix: np.ndarray, units: int) -> np.ndarray:
    """``(rows, 4u)`` gate-blocked columns -> ``(4 * rows, u)``: each unit's weights in one column."""
    rows = matrix.shape[0]
    return matrix.reshape(rows, GATES, units).transpose(1, 0, 2).reshape(GATES * rows, units)


def incoming_weights(layer) -> np.ndarray:
    """All incoming weights of each unit of ``layer``, one column per unit: ``(fan_in, units)``.

    Dense: ``kernel`` itself. LSTM: the unit's column in each gate block of ``kernel`` and
    ``recurrent_kernel`` (``4d + 4u`` rows). HLSTM: also of ``hidden_kernel`` (``4d + 8u``).
    Biases are not connections and are not included.

    Raises:
        ValueError: ``layer`` is not a Dense, LSTM or HLSTM layer with the standard weights.
    """
    kind = _kind(layer)
    if kind is None:
        raise ValueError(
            "Unit importance is defined for Dense, LSTM and HLSTM layers, "
            f"got {_describe(layer.name, layer)}."
        )
    w = _arrays(layer)
    if kind == "dense":
        return w["kernel"]
    units = layer.units
    blocks = [_per_unit(w["kernel"], units), _per_unit(w["recurrent_kernel"], units)]
    if kind == "hlstm":
        blocks.append(_per_unit(w["hidden_kernel"], units))
    return np.concatenate(blocks, axis=0)


#: A criterion: ``criterion(model, layer_names, calibration_x) -> {layer_name: scores}``,
#: one score per unit, higher meaning more important.
Criterion = Callable[[keras.Model, Sequence[str], Any], dict[str, np.ndarray]]


def weight_criterion(reduce: Callable[[np.ndarray], np.ndarray]) -> Criterion:
    """A criterion scoring each unit by ``reduce(incoming_weights(layer))`` (reduced over axis 0).

    ``reduce`` maps the ``(fan_in, units)`` matrix of :func:`incoming_weights` to ``(units,)``.
    """

    def criterion(model, layer_names, calibration_x=None):
        del calibration_x  # weight-based: no data needed
        return {name: np.asarray(reduce(incoming_weights(model.get_layer(name))), dtype=np.float64)
                for name in layer_names}

    reducer = getattr(reduce, "__name__", "reduce")
    criterion.__doc__ = f"Weight-based unit importance: {reducer} of each unit's incoming weights."
    return criterion


def _mean_abs(w):
    return np.mean(np.abs(w, dtype=np.float64), axis=0)


def _l2(w):
    return np.sqrt(np.sum(np.square(w, dtype=np.float64), axis=0))


def _signed_mean(w):
    return np.mean(w, axis=0, dtype=np.float64)


_CALIBRATION_CHUNK = 256


def activation_importance(model, layer_names, calibration_x=None) -> dict[str, np.ndarray]:
    """Mean absolute output of each unit on ``calibration_x`` (inference mode).

    Averaged over samples and, for sequence outputs (``return_sequences=True`` or a Dense
    applied per time step), over every time step too. With a Masking layer, a masked step
    repeats the previous output (Keras RNN semantics) and is counted like any other step.
    """
    if calibration_x is None:
        raise ValueError(
            'The "activation" criterion needs a calibration batch: pass `calibration_x` '
            "(inputs shaped like the model's), got calibration_x=None."
        )
    x = np.asarray(calibration_x, dtype=np.float32)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"Argument `calibration_x` must hold at least one sample, got shape {x.shape}.")
    names = list(layer_names)
    if not names:
        return {}
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    n_samples = len(x)
    sums = {name: 0.0 for name in names}
    counts = {name: 0 for name in names}
    # Eager calls in chunks: a calibration batch is small, and this avoids tracing a function.
    for start in range(0, n_samples, _CALIBRATION_CHUNK):
        outputs = probe(x[start : start + _CALIBRATION_CHUNK], training=False)
        for name, out in zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]):
            out = np.abs(np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64))
            out = out.reshape(-1, out.shape[-1])
            sums[name] = sums[name] + out.sum(axis=0)
            counts[name] += out.shape[0]
    return {name: sums[name] / counts[name] for name in names}


#: The unit-importance criteria by name (see the module docstring); add an entry to register
#: a new one.
CRITERIA: dict[str, Criterion] = {
    "mean_abs": weight_criterion(_mean_abs),
    "l2": weight_criterion(_l2),
    "signed_mean": weight_criterion(_signed_mean),
    "activation": activation_importance,
}


def _criterion(criterion: str) -> Criterion:
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(
            f"Unknown unit-importance criterion: criterion={criterion!r}. Expected one of {sorted(CRITERIA)}."
        )
    return CRITERIA[criterion]


def unit_importance(
    model: keras.Model, criterion: str = "mean_abs", calibration_x=None
) -> dict[str, np.ndarray]:
    """A score per unit (higher: more important) for every layer of :func:`prunable_layers`.

    Args:
        model: A built Sequential or functional model.
        criterion: A key of :data:`CRITERIA`: ``"mean_abs"`` (default), ``"l2"``,
            ``"signed_mean"`` or ``"activation"``.
        calibration_x: Input batch for ``"activation"`` (ignored by the weight criteria).

    Returns:
        ``{layer_name: scores}`` in graph order, ``scores`` a float64 array of shape ``(units,)``.
    """
    fn = _criterion(criterion)
    names = prunable_layers(model)
    scores = fn(model, names, calibration_x)
    for name in names:
        s = np.asarray(scores[name])
        units = model.get_layer(name).units
        if s.shape != (units,):
            raise ValueError(
                f"Criterion {criterion!r} returned scores of shape {s.shape} for layer {name!r}; "
                f"expected ({units},)."
            )
    return {name: np.asarray(scores[name], dtype=np.float64) for name in names}


# ---------------------------------------------------------------------------------------------
# 2. Selection
# ---------------------------------------------------------------------------------------------


def _check_quantile(quantile) -> float:
    if (
        isinstance(quantile, bool)
        or not isinstance(quantile, (int, float, np.integer, np.floating))
        or not 0.0 < float(quantile) < 1.0  # also rejects NaN
    ):
        raise ValueError(
            f"Argument `quantile` must be a number strictly between 0 and 1, got quantile={quantile!r}."
        )
    return float(quantile)


def select_units(scores, quantile: float) -> np.ndarray:
    """Indices (sorted) of the units kept when pruning one layer at ``quantile``.

    Removes the ``min(floor(q * n), n - 1)`` lowest-scoring of the ``n`` units, ties broken
    by index (of equal scores, the lower index goes first), so at least one unit always
    stays. With distinct scores these are exactly the units scoring strictly below
    ``numpy.quantile(scores, q, method="averaged_inverted_cdf")``. ``floor`` carries a
    ``1e-9`` guard so that binary rounding cannot change the count (``0.29 * 100`` removes 29).

    Args:
        scores: One finite score per unit, shape ``(n,)``.
        quantile: ``q`` strictly between 0 and 1.

    Returns:
        An int64 array of kept indices in increasing order.

    Raises:
        ValueError: ``quantile`` outside ``(0, 1)``; ``scores`` empty, not 1-D or not finite.
    """
    q = _check_quantile(quantile)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(
            f"Argument `scores` must be a non-empty 1-D array of finite numbers, got shape {s.shape} "
            f"with values {np.array2string(s, threshold=8)}."
        )
    n = s.size
    remove = min(math.floor(q * n + 1e-9), n - 1)
    order = np.lexsort((np.arange(n), s))  # by score, then by index
    return np.sort(order[remove:]).astype(np.int64)


def select_model_units(
    model: keras.Model, quantile: float = 0.5, criterion: str = "mean_abs", calibration_x=None
) -> dict[str, np.ndarray]:
    """Kept indices for every prunable layer: :func:`unit_importance` then :func:`select_units`."""
    _check_quantile(quantile)
    scores = unit_importance(model, criterion=criterion, calibration_x=calibration_x)
    return {name: select_units(s, quantile) for name, s in scores.items()}


# ---------------------------------------------------------------------------------------------
# 3. Surgery: the per-layer verbs (pure numpy)
# ---------------------------------------------------------------------------------------------


def _check_keep(keep, units: int, what: str) -> np.ndarray:
    k = np.asarray(keep)
    if k.ndim != 1 or k.size == 0 or not (np.issubdtype(k.dtype, np.integer)):
        raise ValueError(
            f"Kept indices for {what} must be a non-empty 1-D sequence of integers, got {keep!r}."
        )
    k = k.astype(np.int64)
    if k.min() < 0 or k.max() >= units:
        raise ValueError(f"Kept indices for {what} must lie in [0, {units}), got {k.tolist()}.")
    if np.unique(k).size != k.size:
        raise ValueError(f"Kept indices for {what} must be unique, got {k.tolist()}.")
    return np.sort(k)


def gate_columns(keep, units: int) -> np.ndarray:
    """Column indices of units ``keep`` in a gate-blocked ``(rows, 4 * units)`` matrix.

    ``gate_columns([0, 2], 4) -> [0, 2, 4, 6, 8, 10, 12, 14]`` (i, f, g, o blocks in order).
    """
    k = _check_keep(keep, units, f"a {units}-unit layer")
    return (np.arange(GATES)[:, None] * units + k[None, :]).reshape(-1)


def _split(weights, names: tuple[str, ...], verb: str) -> list[np.ndarray]:
    w = [np.asarray(a) for a in weights]
    if len(w) not in (len(names), len(names) - 1):
        raise ValueError(
            f"{verb} expects the weights [{', '.join(names)}] (bias optional), got {len(w)} arrays "
            f"of shapes {[a.shape for a in w]}."
        )
    return w


def prune_dense_units(weights: Sequence[np.ndarray], keep) -> list[np.ndarray]:
    """Keep units ``keep`` of a Dense layer: ``[kernel, bias]`` -> ``[kernel[:, keep], bias[keep]]``.

    ``kernel`` is ``(d, u)``, ``bias`` ``(u,)``.

    ``bias`` is optional (``use_bias=False``). The next layer's input rows are cut by
    :func:`prune_input_rows`.
    """
    w = _split(weights, _WEIGHT_NAMES["dense"], "prune_dense_units")
    kernel = w[0]
    if kernel.ndim != 2:
        raise ValueError(f"prune_dense_units expects a 2-D kernel, got shape {kernel.shape}.")
    units = kernel.shape[1]
    k = _check_keep(keep, units, f"a {units}-unit Dense layer")
    out = [kernel[:, k]]
    if len(w) == 2:
        if w[1].shape != (units,):
            raise ValueError(
                f"prune_dense_units: bias shape {w[1].shape} does not match kernel shape {kernel.shape}."
            )
        out.append(w[1][k])
    return out


def _recurrent_units(w: list[np.ndarray], verb: str) -> int:
    kernel, recurrent = w[0], w[1]
    if recurrent.ndim != 2 or recurrent.shape[1] != GATES * recurrent.shape[0]:
        raise ValueError(f"{verb}: recurrent_kernel must be (u, 4u), got shape {recurrent.shape}.")
    units = recurrent.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != GATES * units:
        raise ValueError(f"{verb}: kernel must be (d, {GATES * units}), got shape {kernel.shape}.")
    return units


def prune_lstm_units(weights: Sequence[np.ndarray], keep) -> list[np.ndarray]:
    """Keep units ``keep`` of an LSTM: ``[kernel, recurrent_kernel, bias]`` -> the kept slices.

    ``kernel (d, 4u)`` keeps the units' columns in each gate block; ``recurrent_kernel
    (u, 4u)`` keeps the units' rows and columns; ``bias (4u,)`` (optional) the units' entries
    in each gate block.
    """
    w = _split(weights, _WEIGHT_NAMES["lstm"], "prune_lstm_units")
    units = _recurrent_units(w, "prune_lstm_units")
    k = _check_keep(keep, units, f"a {units}-unit LSTM layer")
    cols = gate_columns(k, units)
    out = [w[0][:, cols], w[1][np.ix_(k, cols)]]
    if len(w) == 3:
        out.append(w[2][cols])
    return out


def prune_hlstm_units(weights: Sequence[np.ndarray], keep) -> list[np.ndarray]:
    """Keep units ``keep`` of an hLSTM: ``[kernel, recurrent_kernel, hidden_kernel, bias]`` -> kept slices.

    As :func:`prune_lstm_units`, plus ``hidden_kernel (u, 4u)``: the units' rows (the gate
    pre-activation units) and their columns in each gate block (the gate output units).
    """
    w = _split(weights, _WEIGHT_NAMES["hlstm"], "prune_hlstm_units")
    if len(w) < 3:
        raise ValueError(
            "prune_hlstm_units expects at least kernel, recurrent_kernel and hidden_kernel, "
            f"got {len(w)} arrays."
        )
    units = _recurrent_units(w, "prune_hlstm_units")
    if w[2].shape != (units, GATES * units):
        raise ValueError(
            f"prune_hlstm_units: hidden_kernel must be ({units}, {GATES * units}), got shape {w[2].shape}."
        )
    k = _check_keep(keep, units, f"a {units}-unit HLSTM layer")
    cols = gate_columns(k, units)
    out = [w[0][:, cols], w[1][np.ix_(k, cols)], w[2][np.ix_(k, cols)]]
    if len(w) == 4:
        out.append(w[3][cols])
    return out


def prune_input_rows(kernel: np.ndarray, keep, units: int, positions: int = 1) -> np.ndarray:
    """The next layer's ``kernel`` restricted to the input rows of the kept producer units.

    ``kernel`` is the consumer's input kernel (a Dense ``kernel`` or an LSTM / HLSTM
    ``kernel``), whose rows are the producer's ``units`` outputs. With a ``Flatten`` in
    between, the rows are ``positions`` blocks of ``units`` (row ``p * units + j`` is unit
    ``j`` at position ``p``) and unit ``j``'s row is kept in every block.

    Raises:
        ValueError: ``kernel`` does not have ``positions * units`` rows, or bad ``keep``.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.shape[0] != positions * units:
        raise ValueError(
            f"prune_input_rows: kernel must have positions * units = {positions} * {units} rows, "
            f"got shape {kernel.shape}."
        )
    k = _check_keep(keep, units, f"a {units}-unit producer")
    if positions == 1:
        return kernel[k]
    return kernel.reshape(positions, units, -1)[:, k, :].reshape(positions * k.size, -1)


_UNIT_VERBS = {"dense": prune_dense_units, "lstm": prune_lstm_units, "hlstm": prune_hlstm_units}


# ---------------------------------------------------------------------------------------------
# 3. Surgery: the model
# ---------------------------------------------------------------------------------------------


class PruneReport(TypedDict):
    """What a pruning did, JSON-ready for a run manifest.

    Keys: ``params_before`` / ``params_after`` (all weights, trainable or not);
    ``units_kept``: ``{layer: [kept, total]}`` for every prunable layer; ``kept_indices``:
    ``{layer: [indices]}`` for the same layers; ``criterion`` and ``quantile``: how the
    indices were chosen (``None`` for explicit indices given to :func:`prune_model`).
    """

    params_before: int
    params_after: int
    units_kept: dict[str, list[int]]
    kept_indices: dict[str, list[int]]
    criterion: str | None
    quantile: float | None


def _params(model) -> int:
    return int(sum(int(np.prod(v.shape, dtype=np.int64)) for v in model.weights))


def prune_model(model: keras.Model, keep: Mapping[str, Sequence[int]], *, return_report: bool = False):
    """A new, smaller model keeping only the units ``keep[layer]`` of each named layer.

    The new model is rebuilt from ``model``'s config (Sequential stays Sequential, functional
    stays functional; names unchanged) with ``units = len(keep[layer])``, and receives the
    kept slices of the pruned layers' weights (:func:`prune_dense_units`,
    :func:`prune_lstm_units`, :func:`prune_hlstm_units`), the matching input rows of every
    layer they feed (:func:`prune_input_rows`), and every other weight unchanged. ``model``
    is not modified. The new model is not compiled.

    Args:
        model: A built Sequential or functional model.
        keep: ``{layer_name: kept unit indices}`` for some or all of
            :func:`prunable_layers`; layers left out keep all their units. Indices are sorted
            before use (unit order is preserved).
        return_report: Also return a :class:`PruneReport`.

    Returns:
        The pruned ``keras.Model``, or ``(model, report)`` with ``return_report=True``.

    Raises:
        ValueError: a key is not a layer of ``model`` or not prunable (the error says why),
            or its indices are empty, out of range, repeated or not integers.
    """
    graph = _Graph(model)
    plan = _plan(graph)
    if not isinstance(keep, Mapping):
        raise ValueError(
            f"Argument `keep` must be a mapping {{layer_name: indices}}, got {type(keep).__name__}."
        )
    kept: dict[str, np.ndarray] = {}
    for name, indices in keep.items():
        if name not in graph.entries:
            raise ValueError(f"Argument `keep` names layer {name!r}, which is not in model {model.name!r}.")
        if name not in plan:
            layer = graph.layer(name)
            why = (
                "it produces the model's output"
                if _kind(layer) is not None
                else "only Dense, LSTM and HLSTM layers can be pruned"
            )
            raise ValueError(
                f"Argument `keep` names {graph.describe(name)}, which is not prunable: {why}. "
                f"Prunable layers: {list(plan)}."
            )
        kept[name] = _check_keep(indices, graph.layer(name).units, f"layer {name!r}")

    # Layers whose input rows change: consumer -> (producer, positions).
    feeds: dict[str, tuple[str, int]] = {}
    touched: set[str] = set(kept)
    for name in kept:
        for consumer, positions in plan[name].terminals:
            feeds[consumer] = (name, positions)
            touched.add(consumer)
        touched.update(plan[name].path)

    config = copy.deepcopy(graph.config)  # the original model and its config stay untouched
    for name in touched:
        entry = _find_entry(config, name, graph.sequential)
        entry.pop("build_config", None)  # stale input shapes; these layers rebuild when called
        if name in kept:
            entry["config"]["units"] = int(kept[name].size)

    cls = keras.Sequential if graph.sequential else keras.Model
    new = cls.from_config(config)

    for layer in model.layers:
        target = new.get_layer(layer.name)
        if layer.name not in touched or not layer.weights:
            target.set_weights(layer.get_weights())
            continue
        arrays = _arrays(layer)
        kind = _kind(layer)
        if layer.name in kept:
            names = [n for n in _WEIGHT_NAMES[kind] if n in arrays]
            sliced = _UNIT_VERBS[kind]([arrays[n] for n in names], kept[layer.name])
            arrays.update(zip(names, sliced))
        if layer.name in feeds:
            producer, positions = feeds[layer.name]
            arrays["kernel"] = prune_input_rows(
                arrays["kernel"], kept[producer], graph.layer(producer).units, positions
            )
        _assign(target, arrays)

    if not return_report:
        return new
    final = {name: kept.get(name, np.arange(graph.layer(name).units)) for name in plan}
    report = PruneReport(
        params_before=_params(model),
        params_after=_params(new),
        units_kept={name: [int(final[name].size), int(graph.layer(name).units)] for name in plan},
        kept_indices={name: final[name].tolist() for name in plan},
        criterion=None,
        quantile=None,
    )
    return new, report


def _find_entry(config: dict, name: str, sequential: bool) -> dict:
    for entry in config["layers"]:
        if (entry["config"]["name"] if sequential else entry["name"]) == name:
            return entry
    raise KeyError(name)  # unreachable: names come from the same config


def _assign(layer, arrays: dict[str, np.ndarray]):
    variables = layer.weights
    names = [v.name for v in variables]
    if sorted(names) != sorted(arrays):
        raise ValueError(
            f"Surgery on layer {layer.name!r}: the rebuilt layer has weights {names}, "
            f"expected {sorted(arrays)}."
        )
    for v in variables:
        value = arrays[v.name]
        if tuple(v.shape) != value.shape:
            raise ValueError(
                f"Surgery on layer {layer.name!r}: weight {v.name!r} has shape {tuple(v.shape)} in the "
                f"rebuilt layer but the sliced array has shape {value.shape}."
            )
        v.assign(value.astype(v.dtype))


def prune_units(
    model: keras.Model,
    quantile: float = 0.5,
    criterion: str = "mean_abs",
    calibration_x=None,
    *,
    return_report: bool = False,
):
    """Channel pruning of every prunable layer: score, select, cut.

    Scores the units of each layer of :func:`prunable_layers` with ``criterion``
    (:func:`unit_importance`), keeps those :func:`select_units` keeps at ``quantile``, and
    returns the physically smaller model from :func:`prune_model` (uncompiled; ``model`` is
    not modified).

    Args:
        model: A built Sequential or functional model.
        quantile: Fraction of units to remove per layer, strictly between 0 and 1 (0.5: half).
        criterion: A key of :data:`CRITERIA`. Default: ``"mean_abs"`` (the paper's).
        calibration_x: Input batch, needed by ``criterion="activation"``.
        return_report: Also return a :class:`PruneReport`.

    Returns:
        The pruned ``keras.Model``, or ``(model, report)`` with ``return_report=True``.

    Raises:
        ValueError: bad ``quantile`` or ``criterion``, ``calibration_x`` missing for
            ``"activation"``, an unsupported layer in the pruned path, or no prunable layer.
    """
    _check_quantile(quantile)
    _criterion(criterion)
    keep = select_model_units(model, quantile=quantile, criterion=criterion, calibration_x=calibration_x)
    if not keep:
        raise ValueError(
            f"Model {model.name!r} has no prunable layer (a Dense, LSTM or HLSTM layer whose output "
            "feeds another such layer rather than the model output)."
        )
    result = prune_model(model, keep, return_report=return_report)
    if not return_report:
        return result
    new, report = result
    report["criterion"] = criterion
    report["quantile"] = float(quantile)
    return new, report
