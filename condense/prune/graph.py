"""How a model's layers depend on each other, as pruning sees them.

Read from a Sequential or functional model's config: which layers consume a layer's output
(through pass-through layers and ``Flatten``), so which input rows a cut affects; which layers
are prunable; and what blocks pruning (a shared layer, a merge, an unsupported consumer). See
docs/pruning.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from condense.prune.surgeons import registered_kinds, registered_surgeon, surgeon_for, weight_names

__all__ = ["PASS_THROUGH", "ModelGraph", "Trace", "describe_layer", "prune_plan", "prunable_layers"]

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


def _is_pass_through(layer) -> bool:
    if not isinstance(layer, PASS_THROUGH):
        return False
    if isinstance(layer, keras.layers.Activation):
        name = keras.activations.serialize(layer.activation)
        name = name if isinstance(name, str) else str(name)
        return "softmax" not in name
    return True


def describe_layer(name: str, layer, class_name: str | None = None) -> str:
    """``"layer 'd' (Dense)"`` for error messages; a registered kind with unexpected weights
    lists them, and a recorded ``keras.ops`` call is an ``operation``."""
    if layer is None:  # a Keras operation recorded in a functional graph (keras.ops.*), not a layer
        noun = "layer" if class_name == "InputLayer" else "operation"
        return f"{noun} {name!r} ({class_name})"
    cls = type(layer).__name__
    if surgeon_for(layer) is None and registered_surgeon(layer) is not None:
        return f"layer {name!r} ({cls} with weights {weight_names(layer)})"
    return f"layer {name!r} ({cls})"


@dataclass
class _Edge:
    consumer: str
    main: bool  # the producer's tensor is the consumer's first positional argument


@dataclass
class Trace:
    """Where a layer's output goes, following pass-through layers and Flatten."""

    reaches_output: bool = False
    # (consumer layer name, positions): positions > 1 when a Flatten sits in between, the
    # consumer's input rows then being laid out as (positions, units).
    terminals: list[tuple[str, int]] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # pass-through layers and Flattens crossed
    problems: list[str] = field(default_factory=list)


class ModelGraph:
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
        return describe_layer(name, self.layer(name), self.classes[name])

    def trace(self, name: str) -> Trace:
        """Follow ``name``'s output downstream to the next layers that would need new input rows."""
        out = Trace()
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
                elif surgeon_for(layer) is not None:
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


def _is_output_ref(spec) -> bool:
    """An entry ``[layer_name, node_index, tensor_index]`` of a functional config's ``output_layers``."""
    triple = isinstance(spec, (list, tuple)) and len(spec) == 3
    return triple and isinstance(spec[0], str) and isinstance(spec[1], int)


def _find(obj, match):
    """Every part of the nested dicts / lists / tuples ``obj`` that ``match`` accepts (not looked into)."""
    if match(obj):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _find(value, match)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _find(value, match)


def _tensor_refs(obj):
    """Producer layer names of every Keras tensor referenced in a serialized call argument."""
    return (ref["config"]["keras_history"][0] for ref in _find(obj, _is_tensor_ref))


def _output_names(spec):
    """Layer names in a functional config's ``output_layers`` ([name, node, tensor] or nests)."""
    return (ref[0] for ref in _find(spec, _is_output_ref))


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


def _unit_blocker(graph: ModelGraph, name: str) -> str | None:
    """Why ``name`` (a layer with a surgeon) cannot lose units, or ``None``."""
    if graph.calls[name] > 1:
        return "it is called more than once (a shared layer)"
    layer = graph.layer(name)
    return surgeon_for(layer).blocker(layer)


def prune_plan(graph: ModelGraph) -> dict[str, Trace]:
    """The prunable layers of ``graph`` (in graph order) with their downstream traces.

    Raises ValueError when a layer with a surgeon (:mod:`condense.prune.surgeons`) that is not
    the output feeds a layer pruning cannot follow.
    """
    plan = {}
    for name in graph.order:
        layer = graph.layer(name)
        if surgeon_for(layer) is None:
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
                f"Pruning follows {registered_kinds()} layers through "
                f"{', '.join(sorted({c.__name__ for c in PASS_THROUGH}))} and Flatten only."
            )
        plan[name] = trace
    return plan


def prunable_layers(model: keras.Model) -> list[str]:
    """Names of the layers of ``model`` whose units can be pruned, in graph order.

    A layer is prunable when it has a surgeon (Dense, LSTM, HLSTM, or a kind added with
    :func:`~condense.prune.surgeons.register_surgeon`), is called once, and its output feeds
    only other such layers (directly or through :data:`PASS_THROUGH` layers or a ``Flatten``)
    and is not (and does not pass unchanged into) a model output.

    Raises:
        ValueError: ``model`` is not a built Sequential or functional model, or such a layer
            that is not the output feeds an unsupported layer (a Conv1D, BatchNormalization,
            GRU, Bidirectional, a merge, a shared layer, ...): the error names both layers and
            their classes.
    """
    return list(prune_plan(ModelGraph(model)))
