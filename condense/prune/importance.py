"""Importance: a score per unit of every prunable layer, higher meaning more important.

The criteria are in :data:`CRITERIA` (``"mean_abs"``, the paper's, by default); add an entry to
register a new one. Weight criteria reduce each unit's incoming weights, which the layer
kind's surgeon supplies (:func:`incoming_weights`). See docs/pruning.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from condense.checks import check_choice
from condense.registry import function_registrar
from condense.prune.graph import describe_layer, prunable_layers
from condense.prune.surgeons import layer_arrays, registered_kinds, surgeon_for, unit_count

__all__ = [
    "CRITERIA",
    "Criterion",
    "register_criterion",
    "weight_criterion",
    "activation_importance",
    "incoming_weights",
    "unit_importance",
    "check_criterion",
]


def incoming_weights(layer) -> np.ndarray:
    """All incoming weights of each unit of ``layer``, one column per unit: ``(fan_in, units)``.

    Dense: ``kernel`` itself. LSTM: the unit's column in each gate block of ``kernel`` and
    ``recurrent_kernel`` (``4d + 4u`` rows). HLSTM: also of ``hidden_kernel`` (``4d + 8u``).
    Biases are not connections and are not included. Other kinds: their surgeon's
    :meth:`~condense.prune.surgeons.Surgeon.incoming_weights`.

    Raises:
        ValueError: ``layer`` has no surgeon (or not the standard weights of its kind).
    """
    surgeon = surgeon_for(layer)
    if surgeon is None:
        raise ValueError(
            f"Unit importance is defined for {registered_kinds()} layers, "
            f"got {describe_layer(layer.name, layer)}."
        )
    return surgeon.incoming_weights(layer_arrays(layer), surgeon.units(layer))


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


#: The unit-importance criteria by name (:func:`register_criterion` adds one; docs/pruning.md).
CRITERIA: dict[str, Criterion] = {}


register_criterion = function_registrar(CRITERIA, "pruning criterion", """Add a unit-importance criterion
(``--prune-criterion NAME``): ``register_criterion("max_abs", fn)`` or ``@register_criterion("max_abs")``.
``fn(model, layer_names, calibration_x) -> {layer: (units,) scores}``, higher meaning more important.""")


register_criterion("mean_abs", weight_criterion(_mean_abs))
register_criterion("l2", weight_criterion(_l2))
register_criterion("signed_mean", weight_criterion(_signed_mean))
register_criterion("activation", activation_importance)


def check_criterion(criterion, name: str = "criterion") -> Criterion:
    """The criterion called ``criterion``; ``name`` is the argument named in the error.

    Raises:
        ValueError: ``Argument `criterion` must be one of ('mean_abs', ...); got criterion='x'.``
    """
    return CRITERIA[check_choice(name, criterion, CRITERIA)]


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
    fn = check_criterion(criterion)
    names = prunable_layers(model)
    scores = fn(model, names, calibration_x)
    for name in names:
        s = np.asarray(scores[name])
        units = unit_count(model.get_layer(name))
        if s.shape != (units,):
            raise ValueError(
                f"Criterion {criterion!r} returned scores of shape {s.shape} for layer {name!r}; "
                f"expected ({units},)."
            )
    return {name: np.asarray(scores[name], dtype=np.float64) for name in names}
