"""Surgeons: what pruning knows about one layer kind, and the registry that finds them.

A :class:`Surgeon` names a layer kind's weights, gives each unit's incoming weights (for the
weight criteria), cuts the layer's own units and cuts the input rows of its kernel when the
layer feeding it loses units. :func:`register_surgeon` makes a layer class prunable; Dense,
LSTM and HLSTM are registered here. The cuts are pure numpy. See docs/pruning.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from condense.layers.hlstm import HLSTM

__all__ = [
    "GATES",
    "Surgeon",
    "DenseSurgeon",
    "LSTMSurgeon",
    "HLSTMSurgeon",
    "register_surgeon",
    "surgeon_for",
    "registered_kinds",
    "gate_columns",
    "prune_dense_units",
    "prune_lstm_units",
    "prune_hlstm_units",
    "prune_input_rows",
]

#: Number of gate blocks in an LSTM / hLSTM weight matrix (i, f, g, o).
GATES = 4


def check_keep(keep, units: int, what: str) -> np.ndarray:
    """``keep`` as sorted int64 indices into ``units`` units; ``what`` names them in errors."""
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


def layer_arrays(layer) -> dict[str, np.ndarray]:
    """``{variable name: value}`` of every weight of ``layer``."""
    return {v.name: np.asarray(keras.ops.convert_to_numpy(v)) for v in layer.weights}


def weight_names(layer) -> list[str]:
    return [v.name for v in layer.weights]


# ---------------------------------------------------------------------------------------------
# The per-layer verbs (pure numpy)
# ---------------------------------------------------------------------------------------------


def gate_columns(keep, units: int) -> np.ndarray:
    """Column indices of units ``keep`` in a gate-blocked ``(rows, 4 * units)`` matrix.

    ``gate_columns([0, 2], 4) -> [0, 2, 4, 6, 8, 10, 12, 14]`` (i, f, g, o blocks in order).
    """
    k = check_keep(keep, units, f"a {units}-unit layer")
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
    w = _split(weights, DenseSurgeon.weights, "prune_dense_units")
    kernel = w[0]
    if kernel.ndim != 2:
        raise ValueError(f"prune_dense_units expects a 2-D kernel, got shape {kernel.shape}.")
    units = kernel.shape[1]
    k = check_keep(keep, units, f"a {units}-unit Dense layer")
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
    w = _split(weights, LSTMSurgeon.weights, "prune_lstm_units")
    units = _recurrent_units(w, "prune_lstm_units")
    k = check_keep(keep, units, f"a {units}-unit LSTM layer")
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
    w = _split(weights, HLSTMSurgeon.weights, "prune_hlstm_units")
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
    k = check_keep(keep, units, f"a {units}-unit HLSTM layer")
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
    k = check_keep(keep, units, f"a {units}-unit producer")
    if positions == 1:
        return kernel[k]
    return kernel.reshape(positions, units, -1)[:, k, :].reshape(positions * k.size, -1)


def _per_unit(matrix: np.ndarray, units: int) -> np.ndarray:
    """``(rows, 4u)`` gate-blocked columns -> ``(4 * rows, u)``: each unit's weights in one column."""
    rows = matrix.shape[0]
    return matrix.reshape(rows, GATES, units).transpose(1, 0, 2).reshape(GATES * rows, units)


# ---------------------------------------------------------------------------------------------
# Surgeons
# ---------------------------------------------------------------------------------------------


class Surgeon:
    """What pruning needs to know about one layer kind; subclass it and :func:`register_surgeon`.

    A layer is pruned along its ``units`` (the last axis of its output): the rebuilt layer gets
    ``config["units"] = len(keep)``. Override :meth:`units` and :meth:`resize` for another
    attribute. Arrays are passed as ``{variable name: numpy array}``.

    Attributes:
        weights: The layer's variable names in canonical order. A layer whose weights are not
            exactly these (less the ``optional`` ones) is not touched, e.g. a quantized Dense.
        optional: Names in ``weights`` a layer may lack (``"bias"`` with ``use_bias=False``).
        input_kernel: The variable whose rows are the layer's inputs, cut when the layer
            feeding it loses units (:meth:`cut_inputs`).
    """

    weights: tuple[str, ...] = ()
    optional: tuple[str, ...] = ("bias",)
    input_kernel: str = "kernel"

    def accepts(self, layer) -> bool:
        """Whether ``layer``'s weights are exactly the ones this surgeon knows how to cut."""
        names = weight_names(layer)
        required = [n for n in self.weights if n not in self.optional]
        return len(names) == len(set(names)) and set(required) <= set(names) <= set(self.weights)

    def units(self, layer) -> int:
        """The number of units of ``layer``."""
        return int(layer.units)

    def resize(self, config: dict, units: int) -> None:
        """Set the unit count in ``layer.get_config()``-style ``config``."""
        config["units"] = int(units)

    def blocker(self, layer) -> str | None:
        """Why ``layer`` cannot lose units (beyond the graph checks), or ``None``."""
        return None

    def incoming_weights(self, arrays: Mapping[str, np.ndarray], units: int) -> np.ndarray:
        """Each unit's incoming weights, one column per unit: ``(fan_in, units)``."""
        raise NotImplementedError(f"{type(self).__name__} does not define incoming_weights")

    def cut_units(self, arrays: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of the layer keeping only units ``keep`` (sorted, validated)."""
        raise NotImplementedError(f"{type(self).__name__} does not define cut_units")

    def cut_inputs(
        self, arrays: Mapping[str, np.ndarray], keep: np.ndarray, units: int, positions: int = 1
    ) -> dict[str, np.ndarray]:
        """The arrays of the layer when its producer (of ``units`` units) keeps only ``keep``.

        Default: the rows of :attr:`input_kernel` (:func:`prune_input_rows`).
        """
        out = dict(arrays)
        out[self.input_kernel] = prune_input_rows(arrays[self.input_kernel], keep, units, positions)
        return out


class _VerbSurgeon(Surgeon):
    """A surgeon whose own-unit cut is a list verb over ``weights`` in canonical order."""

    @staticmethod
    def verb(weights: Sequence[np.ndarray], keep) -> list[np.ndarray]:
        raise NotImplementedError

    def cut_units(self, arrays, keep):
        names = [n for n in self.weights if n in arrays]
        out = dict(arrays)
        out.update(zip(names, self.verb([arrays[n] for n in names], keep)))
        return out


class DenseSurgeon(_VerbSurgeon):
    """``keras.layers.Dense``: unit ``j`` owns column ``j`` of ``kernel (d, u)`` and ``bias[j]``."""

    weights = ("kernel", "bias")
    verb = staticmethod(prune_dense_units)

    def incoming_weights(self, arrays, units):
        return arrays["kernel"]


class LSTMSurgeon(_VerbSurgeon):
    """``keras.layers.LSTM``: unit ``j`` owns its column in each gate block and row ``j`` of
    ``recurrent_kernel``. Stateful layers and ``return_state=True`` are not pruned."""

    weights = ("kernel", "recurrent_kernel", "bias")
    verb = staticmethod(prune_lstm_units)
    gate_kernels: tuple[str, ...] = ("kernel", "recurrent_kernel")

    def blocker(self, layer):
        if layer.return_state:
            return "it has return_state=True"
        if layer.stateful:
            return "it is stateful"
        return None

    def incoming_weights(self, arrays, units):
        return np.concatenate([_per_unit(arrays[n], units) for n in self.gate_kernels], axis=0)


class HLSTMSurgeon(LSTMSurgeon):
    """:class:`condense.layers.hlstm.HLSTM`: as an LSTM, plus row ``j`` and the gate-block
    columns of ``hidden_kernel``."""

    weights = ("kernel", "recurrent_kernel", "hidden_kernel", "bias")
    verb = staticmethod(prune_hlstm_units)
    gate_kernels = ("kernel", "recurrent_kernel", "hidden_kernel")


_REGISTRY: dict[type, Surgeon] = {}


def register_surgeon(layer_class: type, surgeon: Surgeon) -> Surgeon:
    """Make layers of ``layer_class`` (and its subclasses) prunable with ``surgeon``; returns it.

    Registering a class again replaces its surgeon (unlike the named registries: a subclass's own
    surgeon is how a layer kind specializes its base's). The most specific registered class of a
    layer wins (an HLSTM surgeon is used for an HLSTM even if its base class is registered).

    Raises:
        ValueError: ``layer_class`` is not a ``keras.layers.Layer`` subclass, or ``surgeon``
            is not a :class:`Surgeon`.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(
            f"Argument `layer_class` must be a subclass of keras.layers.Layer; got layer_class={layer_class!r}."
        )
    if not isinstance(surgeon, Surgeon):
        raise ValueError(f"Argument `surgeon` must be a condense.prune.Surgeon instance; got surgeon={surgeon!r}.")
    _REGISTRY[layer_class] = surgeon
    return surgeon


def registered_surgeon(layer) -> Surgeon | None:
    """The surgeon registered for ``layer``'s class (most specific first), accepted or not."""
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def surgeon_for(layer) -> Surgeon | None:
    """The surgeon that can cut ``layer``, or ``None`` (unregistered kind or unexpected weights)."""
    if layer is None:
        return None
    surgeon = registered_surgeon(layer)
    return surgeon if surgeon is not None and surgeon.accepts(layer) else None


def unit_count(layer) -> int:
    """The number of units of ``layer``, a layer with a surgeon."""
    return surgeon_for(layer).units(layer)


def registered_kinds() -> str:
    """The registered layer classes in words: ``"Dense, LSTM and HLSTM"``."""
    names = [cls.__name__ for cls in _REGISTRY]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


register_surgeon(keras.layers.Dense, DenseSurgeon())
register_surgeon(keras.layers.LSTM, LSTMSurgeon())
register_surgeon(HLSTM, HLSTMSurgeon())
