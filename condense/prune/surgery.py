"""Surgery: a new, physically smaller model with the chosen units removed.

The new model is rebuilt from the original's config with smaller ``units`` and receives the
kept slices of the weights, cut by each layer kind's surgeon (:mod:`condense.prune.surgeons`):
a pruned layer's own units, and the matching input rows of each layer it feeds. The original
model is never modified. See docs/pruning.md.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TypedDict

import keras
import numpy as np

from condense.checks import check_fraction
from condense.prune.graph import ModelGraph, prune_plan
from condense.prune.importance import check_criterion
from condense.prune.selection import select_model_units
from condense.prune.surgeons import check_keep, layer_arrays, registered_kinds, surgeon_for, unit_count

__all__ = ["PruneReport", "prune_model", "prune_units"]


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
    kept slices of the pruned layers' weights (their surgeon's ``cut_units``: for the built-in
    kinds :func:`prune_dense_units`, :func:`prune_lstm_units`, :func:`prune_hlstm_units`), the
    matching input rows of every layer they feed (its surgeon's ``cut_inputs``:
    :func:`prune_input_rows`), and every other weight unchanged. ``model`` is not modified.
    The new model is not compiled.

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
    graph = ModelGraph(model)
    plan = prune_plan(graph)
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
                if surgeon_for(layer) is not None
                else f"only {registered_kinds()} layers can be pruned"
            )
            raise ValueError(
                f"Argument `keep` names {graph.describe(name)}, which is not prunable: {why}. "
                f"Prunable layers: {list(plan)}."
            )
        kept[name] = check_keep(indices, unit_count(graph.layer(name)), f"layer {name!r}")

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
            surgeon_for(graph.layer(name)).resize(entry["config"], kept[name].size)

    cls = keras.Sequential if graph.sequential else keras.Model
    new = cls.from_config(config)

    for layer in model.layers:
        target = new.get_layer(layer.name)
        if layer.name not in touched or not layer.weights:
            target.set_weights(layer.get_weights())
            continue
        arrays = layer_arrays(layer)
        surgeon = surgeon_for(layer)
        if layer.name in kept:
            arrays = surgeon.cut_units(arrays, kept[layer.name])
        if layer.name in feeds:
            producer, positions = feeds[layer.name]
            arrays = surgeon.cut_inputs(arrays, kept[producer], unit_count(graph.layer(producer)), positions)
        _assign(target, arrays)

    if not return_report:
        return new
    total = {name: unit_count(graph.layer(name)) for name in plan}
    final = {name: kept.get(name, np.arange(total[name])) for name in plan}
    report = PruneReport(
        params_before=_params(model),
        params_after=_params(new),
        units_kept={name: [int(final[name].size), total[name]] for name in plan},
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
    check_fraction("quantile", quantile)
    check_criterion(criterion)
    keep = select_model_units(model, quantile=quantile, criterion=criterion, calibration_x=calibration_x)
    if not keep:
        raise ValueError(
            f"Model {model.name!r} has no prunable layer (a {registered_kinds()} layer whose output "
            "feeds another such layer rather than the model output)."
        )
    result = prune_model(model, keep, return_report=return_report)
    if not return_report:
        return result
    new, report = result
    report["criterion"] = criterion
    report["quantile"] = float(quantile)
    return new, report
