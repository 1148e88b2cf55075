"""Edits of a converted ``.tflite`` file that the TFLite converter cannot make itself.

Every edit works on TensorFlow's own object API for the flatbuffer
(``tensorflow.lite.tools.flatbuffer_utils`` reads a file into a mutable ``ModelT`` of
``tensorflow.lite.python.schema_py_generated``, and writes it back), so the result is a file
written by TensorFlow's serializer, not bytes patched by hand. They run in the conversion child
(:mod:`condense.export.convert`), right after the converter:

:func:`unclip_lstm_cells`
    The converter gives every fused Keras LSTM ``cell_clip=10`` (hard-coded in its
    ``ConvertKerasLSTMLayer``), a clip Keras never applies. On a float LSTM op the kernel clips
    only when ``cell_clip > 0``, so setting it to 0 makes the file compute exactly Keras' cell.
:func:`quantize_lstm_weights`
    The **hybrid** fused LSTM: the eight gate weight matrices of every float
    ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op become symmetric per-tensor int8 tensors (zero point 0,
    scale ``max|w| / 127``) fed straight into the op, which then runs LiteRT's hybrid kernel
    (float activations, int8 matrix products; op version 3 with ``asymmetric_quantize_inputs``,
    which quantizes each activation row with its own zero point and measured closer to float
    than the symmetric version 2). Biases stay float32, as the kernel requires. No converter
    setting produces this (its dynamic-range quantizer leaves the fused op float).
:func:`append_dense_head`
    Adds a float ``FULLY_CONNECTED`` (+ ``LOGISTIC``) after the model's (float) output. A
    full-int8 recurrent file is converted up to the last hidden state, dequantized there, and
    finished with the float Dense head: its probabilities are a smooth function of the int8
    state instead of one of 256 int8 output levels (which tie many patients).
:func:`strip_names`
    Drops tensor names and signatures (the converter's names are most of an unrolled file).
"""

from __future__ import annotations

import numpy as np

# Deferred on purpose: TensorFlow is imported inside the functions that use it, so importing this module stays light.

__all__ = [
    "read_model",
    "write_model",
    "unclip_lstm_cells",
    "quantize_lstm_weights",
    "append_dense_head",
    "strip_names",
]

#: Input slots of UNIDIRECTIONAL_SEQUENCE_LSTM that hold the gate weight matrices
#: (input-to-{i,f,c,o}, recurrent-to-{i,f,c,o}); slot 0 is the sequence, 9-11 the peepholes,
#: 12-15 the gate biases (TFLite's LSTM input layout).
LSTM_WEIGHT_SLOTS = tuple(range(1, 9))


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def read_model(data: bytes):
    """The mutable object tree (``ModelT``) of a ``.tflite`` file's bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))


def write_model(model) -> bytes:
    """Serialize a ``ModelT`` back to ``.tflite`` bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _lstm_ops(model):
    schema = _schema()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
                yield subgraph, op


def unclip_lstm_cells(model) -> int:
    """Set ``cell_clip`` and ``proj_clip`` of every float fused LSTM op to 0 (no clipping, as in
    Keras); returns how many ops were changed. Integer LSTM ops are left alone (their int16
    cell state is scaled for the clip the converter chose)."""
    schema = _schema()
    changed = 0
    for subgraph, op in _lstm_ops(model):
        if subgraph.tensors[op.inputs[0]].type != schema.TensorType.FLOAT32:
            continue
        if op.builtinOptions.cellClip or op.builtinOptions.projClip:
            op.builtinOptions.cellClip = 0.0
            op.builtinOptions.projClip = 0.0
            changed += 1
    return changed


def _buffer_users(model) -> dict[int, int]:
    users: dict[int, int] = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    return users


def _new_buffer(model, array: np.ndarray) -> int:
    buffer = _schema().BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def quantize_lstm_weights(model, *, asymmetric_inputs: bool = True) -> int:
    """Turn every float fused LSTM op into the hybrid op (see the module docstring).

    Returns the number of weight tensors quantized. Raises ``ValueError`` when the file has no
    float fused LSTM op or a weight tensor is not a float32 constant.
    """
    schema = _schema()
    users = _buffer_users(model)
    ops = [(g, op) for g, op in _lstm_ops(model) if g.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32]
    if not ops:
        raise ValueError("the file has no float UNIDIRECTIONAL_SEQUENCE_LSTM op to quantize")
    count = 0
    for subgraph, op in ops:
        for slot in LSTM_WEIGHT_SLOTS:
            tensor = subgraph.tensors[op.inputs[slot]]
            data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
            if tensor.type != schema.TensorType.FLOAT32 or data is None or len(data) == 0:
                raise ValueError(f"LSTM weight input {slot} ({tensor.name!r}) is not a float32 constant")
            w = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=np.float32)
            scale = float(np.max(np.abs(w))) / 127.0
            scale = scale if scale > 0 else 1.0  # an all-zero matrix (a pruned-away gate): any scale is exact
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            if users.get(tensor.buffer, 0) > 1:  # a buffer the converter shared: give this tensor its own
                tensor.buffer = _new_buffer(model, q)
            else:
                model.buffers[tensor.buffer].data = np.frombuffer(q.tobytes(), dtype=np.uint8)
            tensor.type = schema.TensorType.INT8
            params = schema.QuantizationParametersT()
            params.scale = [scale]
            params.zeroPoint = [0]
            tensor.quantization = params
            count += 1
        op.builtinOptions.asymmetricQuantizeInputs = bool(asymmetric_inputs)
        # op_version.cc: float input + int8 weights is version 2, 3 with asymmetric inputs
        code = model.operatorCodes[op.opcodeIndex]
        code.version = max(code.version, 3 if asymmetric_inputs else 2)
    return count


def _opcode_index(model, builtin: int) -> int:
    schema = _schema()
    for i, code in enumerate(model.operatorCodes):
        if code.builtinCode == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(subgraph, shape, name: str, buffer: int = 0) -> int:
    schema = _schema()
    tensor = schema.TensorT()
    tensor.shape = np.asarray(shape, dtype=np.int32)
    tensor.type = schema.TensorType.FLOAT32
    tensor.name = name
    tensor.buffer = buffer  # buffer 0 is the flatbuffer's empty sentinel: a computed tensor
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _decoded(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def append_dense_head(model, kernel: np.ndarray, bias: np.ndarray, activation: str, output: str | None = None) -> None:
    """Append ``activation(x @ kernel + bias)`` in float32 after a float output of the main
    subgraph; the result takes that output's place.

    Args:
        kernel: ``(in, out)`` as in Keras (stored transposed, TFLite's ``(out, in)``).
        bias: ``(out,)``.
        activation: ``"sigmoid"`` or ``"linear"``.
        output: the signature name of the output to build on (a step file's ``"p"``); ``None``:
            the model's single output. Other signature outputs that name the same tensor keep it.
    """
    schema = _schema()
    if activation not in ("sigmoid", "linear"):
        raise ValueError(f"append_dense_head supports sigmoid or linear heads, got activation={activation!r}")
    subgraph = model.subgraphs[0]
    maps = [m for signature in model.signatureDefs or [] for m in signature.outputs or []]
    if output is None:
        if len(subgraph.outputs) != 1:
            raise ValueError(f"append_dense_head needs a single-output model, got {len(subgraph.outputs)} outputs")
        features, replaced = subgraph.outputs[0], maps
    else:
        replaced = [m for m in maps if _decoded(m.name) == output]
        if len(replaced) != 1:
            raise ValueError(f"append_dense_head: the model has no signature output named {output!r}")
        features = replaced[0].tensorIndex
    if subgraph.tensors[features].type != schema.TensorType.FLOAT32:
        raise ValueError("append_dense_head needs a float32 output to build on")
    kernel = np.asarray(kernel, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    batch = int(subgraph.tensors[features].shape[0])
    w = _new_tensor(subgraph, kernel.T.shape, "head/kernel", _new_buffer(model, kernel.T))
    b = _new_tensor(subgraph, bias.shape, "head/bias", _new_buffer(model, bias))
    logit = _new_tensor(subgraph, (batch, kernel.shape[1]), "head/logit")
    fc = schema.OperatorT()
    fc.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.FULLY_CONNECTED)
    fc.inputs, fc.outputs = [features, w, b], [logit]
    fc.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    fc.builtinOptions = schema.FullyConnectedOptionsT()
    subgraph.operators.append(fc)
    out = logit
    if activation == "sigmoid":
        out = _new_tensor(subgraph, (batch, kernel.shape[1]), "head/probability")
        sigmoid = schema.OperatorT()
        sigmoid.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.LOGISTIC)
        sigmoid.inputs, sigmoid.outputs = [logit], [out]
        subgraph.operators.append(sigmoid)
    # the converter lists a tensor that two signature names share (a step file's ``p`` before its
    # head and the last ``h`` state) once per name: replace one entry, keep one per other name
    shared = sum(1 for m in maps if m.tensorIndex == features and m not in replaced)
    outputs = list(subgraph.outputs)
    positions = [k for k, tensor in enumerate(outputs) if tensor == features]
    if len(positions) > shared:
        outputs[positions[-1]] = out
    else:
        outputs.append(out)
    subgraph.outputs = outputs
    for tensor_map in replaced:
        tensor_map.tensorIndex = out


def strip_names(model) -> None:
    """Remove tensor names, the description and the signatures (TensorFlow's ``strip_strings``)."""
    from tensorflow.lite.tools import flatbuffer_utils

    flatbuffer_utils.strip_strings(model)
