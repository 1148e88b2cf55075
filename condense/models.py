"""Model definitions: the paper's baseline LSTM, hLSTM and DNN, sized from the data.

Each builder takes the input width from the data (``input_dim``, 76 for the MIMIC-III IHM
benchmark) and the paper's settings as keyword defaults, and returns an uncompiled
``keras.Model`` whose layers carry stable names that pruning and export key on:

=========  ===========================================================================  ======
family     layers (names)                                                               params
=========  ===========================================================================  ======
``lstm``   ``input`` -> ``masking`` -> ``lstm_1`` .. ``lstm_n`` -> ``dropout`` -> ``output``    8,081
``hlstm``  ``input`` -> ``masking`` -> ``hlstm`` -> ``dropout`` -> ``output``                     6,993
``dnn``    ``input`` -> ``dense_1`` .. ``dense_n`` -> ``dropout`` -> ``output``                 60,929
=========  ===========================================================================  ======

(parameter counts for 76 inputs and the default widths). ``units`` of the LSTM and DNN
builders are tuples so that pruned models can be rebuilt with other widths.
:func:`rebuild_with_batch` gives the same model with a fixed batch dimension (and optionally
unrolled recurrent layers), which is what TFLite conversion needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from condense.layers.hlstm import HIDDEN_FORMS, HLSTM
from condense.layers.hlstm import _check_rate as _check_dropout_rate  # the one rate check

__all__ = [
    "MODEL_FAMILIES",
    "INPUT",
    "MASKING",
    "DROPOUT",
    "OUTPUT",
    "HLSTM_LAYER",
    "build_lstm",
    "build_hlstm",
    "build_dnn",
    "build_model",
    "lstm_layer_name",
    "dense_layer_name",
    "rebuild_with_batch",
]

#: The model families :func:`build_model` knows.
MODEL_FAMILIES = ("lstm", "hlstm", "dnn")

#: Stable layer names shared by the builders.
INPUT = "input"
MASKING = "masking"
DROPOUT = "dropout"
OUTPUT = "output"
HLSTM_LAYER = "hlstm"


def lstm_layer_name(k: int) -> str:
    """Name of the ``k``-th LSTM layer (1-based) of :func:`build_lstm`: ``"lstm_k"``."""
    return f"lstm_{k}"


def dense_layer_name(k: int) -> str:
    """Name of the ``k``-th hidden Dense layer (1-based) of :func:`build_dnn`: ``"dense_k"``."""
    return f"dense_{k}"


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"Argument `{name}` must be a positive integer, got {name}={value!r}.")
    return value


def _check_units_tuple(units) -> tuple[int, ...]:
    if isinstance(units, (str, bytes)) or not isinstance(units, Sequence) or len(units) == 0:
        raise ValueError(
            f"Argument `units` must be a non-empty sequence of positive integers, got units={units!r}."
        )
    for u in units:
        if isinstance(u, bool) or not isinstance(u, int) or u <= 0:
            raise ValueError(
                f"Argument `units` must be a non-empty sequence of positive integers, got units={units!r}."
            )
    return tuple(units)


def _check_rate(name: str, value) -> float:
    _check_dropout_rate(name, value)
    return float(value)


def _check_batch(batch_size):
    if batch_size is not None:
        _check_positive_int("batch_size", batch_size)
    return batch_size


def _sequence_input(input_dim, timesteps, batch_size):
    _check_positive_int("input_dim", input_dim)
    _check_positive_int("timesteps", timesteps)
    return keras.Input(shape=(timesteps, input_dim), batch_size=_check_batch(batch_size), name=INPUT)


def _head(x, dropout: float):
    x = keras.layers.Dropout(dropout, name=DROPOUT)(x)
    return keras.layers.Dense(1, activation="sigmoid", name=OUTPUT)(x)


def build_lstm(
    input_dim: int,
    *,
    timesteps: int = 48,
    units: Sequence[int] = (16, 16),
    dropout: float = 0.3,
    mask_value: float = 0.0,
    batch_size: int | None = None,
    unroll: bool = False,
    name: str = "lstm",
) -> keras.Model:
    """The paper's baseline: Masking -> LSTM(16, sequences) -> LSTM(16) -> Dropout -> Dense(1).

    Args:
        input_dim: Features per time step (76 for the IHM benchmark).
        timesteps: Time steps per episode. Default: 48.
        units: Width of each stacked LSTM layer, first to last; all but the last return
            sequences. Default: ``(16, 16)``.
        dropout: Rate of the Dropout layer before the output. Default: 0.3.
        mask_value: Input value that marks a padded step (all features equal to it).
            Default: 0.0.
        batch_size: Fixed batch dimension, or ``None`` (default) for a dynamic batch.
        unroll: Unroll the LSTM time loops. Default: ``False``.
        name: Model name. Default: ``"lstm"``.

    Returns:
        An uncompiled ``keras.Model`` with layers ``input``, ``masking``, ``lstm_1`` ..
        ``lstm_n``, ``dropout``, ``output``; 8,081 parameters with the defaults and 76 inputs.
    """
    units = _check_units_tuple(units)
    dropout = _check_rate("dropout", dropout)
    inputs = _sequence_input(input_dim, timesteps, batch_size)
    x = keras.layers.Masking(mask_value=mask_value, name=MASKING)(inputs)
    for k, width in enumerate(units, start=1):
        x = keras.layers.LSTM(
            width, return_sequences=k < len(units), unroll=unroll, name=lstm_layer_name(k)
        )(x)
    return keras.Model(inputs, _head(x, dropout), name=name)


def build_hlstm(
    input_dim: int,
    *,
    timesteps: int = 48,
    units: int = 16,
    hidden: str = "gates",
    hidden_activation: str = "relu",
    dropout: float = 0.3,
    mask_value: float = 0.0,
    batch_size: int | None = None,
    unroll: bool = False,
    name: str = "hlstm",
) -> keras.Model:
    """The paper's hLSTM model: Masking -> HLSTM(16) -> Dropout -> Dense(1, sigmoid).

    Args:
        input_dim: Features per time step (76 for the IHM benchmark).
        timesteps: Time steps per episode. Default: 48.
        units: Width of the hLSTM layer. Default: 16.
        hidden: ``"gates"`` (default, the adopted form) or ``"input"``; see
            :class:`condense.layers.hlstm.HLSTMCell`.
        hidden_activation: Activation of the hidden layer in the gates. Default: ``"relu"``.
        dropout: Rate of the Dropout layer before the output. Default: 0.3.
        mask_value: Input value that marks a padded step. Default: 0.0.
        batch_size: Fixed batch dimension, or ``None`` (default) for a dynamic batch.
        unroll: Unroll the hLSTM time loop. Default: ``False``.
        name: Model name. Default: ``"hlstm"``.

    Returns:
        An uncompiled ``keras.Model`` with layers ``input``, ``masking``, ``hlstm``,
        ``dropout``, ``output``; 6,993 parameters with the defaults and 76 inputs (either
        ``hidden`` form).
    """
    _check_positive_int("units", units)
    if hidden not in HIDDEN_FORMS:
        raise ValueError(f"Argument `hidden` must be one of {HIDDEN_FORMS}, got hidden={hidden!r}.")
    dropout = _check_rate("dropout", dropout)
    inputs = _sequence_input(input_dim, timesteps, batch_size)
    x = keras.layers.Masking(mask_value=mask_value, name=MASKING)(inputs)
    x = HLSTM(
        units, hidden=hidden, hidden_activation=hidden_activation, unroll=unroll, name=HLSTM_LAYER
    )(x)
    return keras.Model(inputs, _head(x, dropout), name=name)


def build_dnn(
    input_dim: int,
    *,
    units: Sequence[int] = (256, 128, 64),
    dropout: float = 0.5,
    batch_size: int | None = None,
    name: str = "dnn",
) -> keras.Model:
    """The paper's DNN: Dense(256) -> Dense(128) -> Dense(64) (ReLU) -> Dropout -> Dense(1).

    Args:
        input_dim: Width of the flat feature vector.
        units: Width of each hidden ReLU Dense layer, first to last. Default:
            ``(256, 128, 64)``.
        dropout: Rate of the Dropout layer before the output. Default: 0.5.
        batch_size: Fixed batch dimension, or ``None`` (default) for a dynamic batch.
        name: Model name. Default: ``"dnn"``.

    Returns:
        An uncompiled ``keras.Model`` with layers ``input``, ``dense_1`` .. ``dense_n``,
        ``dropout``, ``output``; 60,929 parameters with the defaults and 76 inputs.
    """
    _check_positive_int("input_dim", input_dim)
    units = _check_units_tuple(units)
    dropout = _check_rate("dropout", dropout)
    inputs = keras.Input(shape=(input_dim,), batch_size=_check_batch(batch_size), name=INPUT)
    x = inputs
    for k, width in enumerate(units, start=1):
        x = keras.layers.Dense(width, activation="relu", name=dense_layer_name(k))(x)
    return keras.Model(inputs, _head(x, dropout), name=name)


_BUILDERS = {"lstm": build_lstm, "hlstm": build_hlstm, "dnn": build_dnn}


def build_model(family: str, input_dim: int, **kwargs) -> keras.Model:
    """Build a model of ``family`` (one of :data:`MODEL_FAMILIES`) for ``input_dim`` features.

    ``kwargs`` go to the family's builder (:func:`build_lstm`, :func:`build_hlstm`,
    :func:`build_dnn`); an argument that builder does not take raises ``TypeError``.
    """
    try:
        builder = _BUILDERS[family]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model family: family={family!r}. Expected one of {MODEL_FAMILIES}."
        ) from None
    return builder(input_dim, **kwargs)


def rebuild_with_batch(model: keras.Model, batch_size: int = 1, unroll: bool | None = None) -> keras.Model:
    """The same architecture and weights as ``model``, with a fixed batch dimension.

    The TFLite converter needs this for Keras 3 recurrent models: a dynamic batch fails to
    convert, a fixed batch converts (a WHILE loop), and an unrolled fixed-batch model also
    quantizes to full int8.

    Args:
        model: A functional or Sequential ``keras.Model`` (any family, any widths).
        batch_size: The fixed batch dimension. Default: 1.
        unroll: ``None`` (default) keeps each recurrent layer's setting; ``True`` / ``False``
            sets ``unroll`` on every recurrent layer (those whose config has ``unroll``).

    Returns:
        A new, uncompiled ``keras.Model`` with the same name, layer names and weights.
    """
    _check_positive_int("batch_size", batch_size)
    if unroll is not None and not isinstance(unroll, bool):
        raise ValueError(f"Argument `unroll` must be None, True or False, got unroll={unroll!r}.")
    is_sequential = isinstance(model, keras.Sequential)
    if not is_sequential and type(model).__name__ != "Functional":
        raise ValueError(
            "rebuild_with_batch needs a functional or Sequential model, got "
            f"model of type {type(model).__name__!r}."
        )
    config = model.get_config()
    found_input = False
    for layer in config["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "InputLayer":
            shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
            layer_config["batch_shape"] = [batch_size, *list(shape)[1:]]
            layer_config.pop("batch_input_shape", None)
            found_input = True
        if unroll is not None and "unroll" in layer_config:
            layer_config["unroll"] = unroll
    if is_sequential and config.get("build_input_shape") is not None:
        config["build_input_shape"] = [batch_size, *list(config["build_input_shape"])[1:]]
        found_input = True
    if not found_input:
        raise ValueError(f"Model {model.name!r} has no input layer to give a fixed batch.")
    cls = keras.Sequential if is_sequential else keras.Model
    new = cls.from_config(config)
    new.set_weights(model.get_weights())
    return new
