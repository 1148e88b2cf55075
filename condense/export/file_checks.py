"""The checks a format asks the conversion child to run on a file before it is written.

Each check gets a :class:`ConvertedFile` (the bytes, the Keras model, the conversion plan, the file's
operators and constants) and raises when the file is wrong; the child then writes nothing. A format
names its checks (:attr:`condense.export.formats.ExportFormat.checks`); :func:`register_file_check`
adds one. The registry lives here, not in the child's own module (``python -m
condense.export.conversion_child`` runs that as ``__main__``), so a check registered by a user's
module, which the child imports first (:mod:`condense.plugins`), lands where the child looks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from condense.registry import function_registrar

# Deferred on purpose: LiteRT is imported inside the functions that use it, so importing this module stays light.

__all__ = ["ConvertedFile", "FILE_CHECKS", "register_file_check", "DYNAMIC_MIN_ELEMENTS", "FLOAT_SELF_CHECK_SAMPLES",
           "FLOAT_SELF_CHECK_TOL"]

#: Dynamic-range quantization leaves weight tensors with fewer elements than this in float32
#: (the converter's rule).
DYNAMIC_MIN_ELEMENTS = 1024


@dataclass
class ConvertedFile:
    """What a file check sees: the bytes, the Keras model, the plan, the file's ops and constants."""

    data: bytes
    model: object
    plan: dict
    ops: list
    stats: dict
    sample_shape: tuple
    recurrent: bool
    calibration: np.ndarray | None


def _check_smoke(file: ConvertedFile) -> None:
    smoke_test(file.data, file.sample_shape)


def _check_fused_when_planned(file: ConvertedFile) -> None:
    if file.plan["route"].startswith("fused") and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in file.ops:
        raise RuntimeError(f"the converter did not fuse the LSTM layers (ops: {sorted(set(file.ops))})")


def _check_int8_weights_only(file: ConvertedFile) -> None:
    int8_bytes, float_bytes = file.stats["bytes"].get("int8", 0), file.stats["bytes"].get("float32", 0)
    if not (int8_bytes > 0 and float_bytes < int8_bytes):
        raise RuntimeError(f"the converter left float weights in a full-int8 model "
                           f"(constant bytes by dtype: {file.stats['bytes']})")


def _check_int8_weights_where_large(file: ConvertedFile) -> None:
    large = sum(1 for w in file.model.weights if int(np.prod(w.shape)) >= DYNAMIC_MIN_ELEMENTS)
    if large and not file.stats["bytes"].get("int8", 0):
        raise RuntimeError(f"dynamic-range quantization stored no int8 weights although {large} weight "
                           f"tensors have >= {DYNAMIC_MIN_ELEMENTS} elements (constant bytes: {file.stats['bytes']})")


def _check_float_parity_recurrent(file: ConvertedFile) -> None:
    if file.recurrent and file.calibration is not None:
        check_float_parity(file.model, file.data, file.calibration[:FLOAT_SELF_CHECK_SAMPLES], file.plan["route"])


#: The checks a format can ask the conversion child to run before a file is written
#: (:attr:`condense.export.formats.ExportFormat.checks`); each raises when the file is wrong.
FILE_CHECKS: dict[str, Callable[[ConvertedFile], None]] = {}


register_file_check = function_registrar(FILE_CHECKS, "file check", """Add a check a format can name in
:attr:`~condense.export.formats.ExportFormat.checks`: ``register_file_check("name", fn)`` or the decorator
``@register_file_check("name")``. ``fn`` gets the :class:`ConvertedFile` in the conversion child and raises
when the file is wrong; define it in a module (the child imports that module, :mod:`condense.plugins`).""")


register_file_check("smoke", _check_smoke)  # one zero sample runs and gives a finite output
register_file_check("fused_when_planned", _check_fused_when_planned)  # the fused LSTM op is really in the file
register_file_check("int8_weights_only", _check_int8_weights_only)  # full integer: the weights are int8
register_file_check("int8_weights_where_large", _check_int8_weights_where_large)  # dynamic range: large ones int8
register_file_check("float_parity", _check_float_parity_recurrent)  # a rebuilt float32 recurrent graph equals Keras


#: Calibration samples the child runs through a float32 recurrent file and Keras before writing it.
FLOAT_SELF_CHECK_SAMPLES = 32
#: Largest probability difference a float32 recurrent file may have from Keras in that check.
FLOAT_SELF_CHECK_TOL = 1e-4


def check_float_parity(model, data: bytes, x: np.ndarray, route: str) -> None:
    """A rebuilt float32 graph must compute what Keras computes (with Masking, as trained)."""
    from ai_edge_litert.interpreter import Interpreter

    p_keras = np.asarray(model.predict(x, batch_size=len(x), verbose=0), np.float64).reshape(len(x), -1)
    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    in_index, out_index = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    p_file = []
    for row in x:
        interpreter.reset_all_variables()  # the fused op keeps its state between invocations
        interpreter.set_tensor(in_index, row[None].astype(np.float32))
        interpreter.invoke()
        p_file.append(np.asarray(interpreter.get_tensor(out_index), np.float64).reshape(-1))
    worst = float(np.max(np.abs(np.stack(p_file) - p_keras)))
    if worst > FLOAT_SELF_CHECK_TOL:
        raise RuntimeError(f"the {route} float32 file differs from Keras by {worst:.2e} on the calibration data "
                           f"(tolerance {FLOAT_SELF_CHECK_TOL:g}); not written")


def smoke_test(data: bytes, sample_shape: tuple[int, ...]) -> None:
    """Run one zero sample through the converted model; the output must be finite."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros((1, *sample_shape), dtype=inp["dtype"]))
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if not np.all(np.isfinite(out.astype(np.float64))):
        raise RuntimeError("the converted model returns non-finite values")
