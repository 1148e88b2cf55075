"""Run ``.tflite`` files on TensorFlow Lite for Microcontrollers (TFLM), the runtime of the cheapest
devices, and find the smallest tensor arena a file needs.

TFLM is a different interpreter from LiteRT: its own kernels, no dynamic memory (every tensor
lives in one arena the app reserves up front), and a smaller op set. The ``tflite-micro`` package
ships its Python interpreter (``from tflite_micro import runtime``); :func:`run_micro` runs a
file on it and reports:

- ``outputs``: the model's outputs on the given samples (variable tensors reset before each,
  ``MicroInterpreter::Reset()``), to compare with LiteRT's;
- ``arena_bytes``: the smallest arena (to 16 bytes) with which the interpreter allocates the
  model, found by probing; the input and output buffers live in the arena, so an int8-I/O file
  needs less than the same model with float32 I/O;
- ``allocation_bytes``: TFLM's own allocation report (a lower bound: it leaves out the
  allocator's bookkeeping).

Everything runs in a child process (``python -m condense.export.micro``, which imports neither TensorFlow
nor the rest of the package), and each arena probe in a
forked process of its own: a far too small arena makes TFLM crash the process (SIGSEGV), not
raise.

:func:`micro_problem` says, without running, why a file cannot run there: hybrid kernels (float
activations with int8 weights, the ``dynamic`` format) exist only in LiteRT (TFLM returns NaN),
``REDUCE_ANY`` (Keras' Masking) is not in TFLM, and TFLM's ``WHILE`` hangs on the loops Keras 3
writes (tflite-micro issue 3674).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from condense._child import ChildError, child_main, run_child
from condense.export.inspection import opcode_names
from condense.export.step_graph import INPUT_NAME, OUTPUT_NAME, STATE_OUT_SUFFIX
from condense.export.step_runner import is_step_file, step_io_names
from condense.io import work_folder

# Deferred on purpose: LiteRT and TFLM are imported inside the functions that use them, so importing this module stays
# light.

__all__ = ["MicroError", "available", "micro_problem", "run_micro"]

#: Ops that stop a file from running on TFLM, and why.
UNSUPPORTED_OPS = {
    "REDUCE_ANY": "REDUCE_ANY (Keras' Masking) is not a TFLM op",
    "WHILE": "TFLM's WHILE hangs on the loops Keras 3 writes (tflite-micro issue 3674)",
}
#: Ops whose float-input, int8-weight form is a LiteRT-only hybrid kernel.
HYBRID_CAPABLE_OPS = ("FULLY_CONNECTED", "UNIDIRECTIONAL_SEQUENCE_LSTM", "CONV_2D", "DEPTHWISE_CONV_2D",
                      "BATCH_MATMUL", "SVDF")

_ARENA_ALIGN = 16
_REPORT = re.compile(r"Arena allocation total (\d+) bytes")


class MicroError(RuntimeError):
    """A file cannot run on TFLM (the message says why)."""


def available() -> bool:
    """True when the ``tflite-micro`` package is installed."""
    try:
        from tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def micro_problem(path) -> str:
    """Why the ``.tflite`` file at ``path`` cannot run on TFLM ('' when nothing is known against it)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    codes = opcode_names(model)
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            name = codes[op.OpcodeIndex()]
            if name in UNSUPPORTED_OPS:
                return UNSUPPORTED_OPS[name]
            if name in HYBRID_CAPABLE_OPS and op.InputsLength() > 1 and min(op.Inputs(0), op.Inputs(1)) >= 0:
                first, weights = subgraph.Tensors(op.Inputs(0)).Type(), subgraph.Tensors(op.Inputs(1)).Type()
                if first == schema.TensorType.FLOAT32 and weights == schema.TensorType.INT8:
                    return f"hybrid {name} (float activations, int8 weights) is a LiteRT-only kernel"
    return ""


def run_micro(path, x, *, search_arena: bool = True, timeout: float = 600.0) -> dict:
    """Run ``x`` (N, *sample_shape), one sample at a time, through the file on TFLM.

    A step file (:mod:`condense.export.step_graph`, recognised by its signature) takes whole
    sequences ``x`` (N, T, C): each runs hour by hour from zero state, the state fed back between
    calls; ``outputs`` are the outputs after the last hour.

    Float inputs are quantized with the file's input scale and zero point when the file has
    int8 input, and int8 outputs dequantized (as :class:`condense.export.litert_runner.TFLiteModel` does).

    Returns:
        ``{"outputs": (N, ...) float32, "arena_bytes": int or None, "allocation_bytes": int}``.

    Raises:
        ImportError: ``tflite-micro`` is not installed.
        MicroError: the file cannot run on TFLM (:func:`micro_problem`), or TFLM failed.
    """
    if not available():
        raise ImportError("TensorFlow Lite for Microcontrollers needs the `tflite-micro` package "
                          "(pip install tflite-micro; Linux x86_64 wheels)")

    path = Path(path)
    problem = micro_problem(path)
    if problem:
        raise MicroError(problem)
    with work_folder("micro") as work:
        work = Path(work)
        np.save(work / "x.npy", np.ascontiguousarray(np.asarray(x, dtype=np.float32)))
        request = {"path": str(path.resolve()), "x": str(work / "x.npy"), "search_arena": bool(search_arena),
                   "outputs": str(work / "outputs.npy"), "step": is_step_file(path)}
        run = run_child("condense.export.micro", request, what=f"TFLM on {path.name}", timeout=timeout, work=work)
        try:
            result = run.check()
        except ChildError as exc:
            raise MicroError(str(exc)) from None
        result["outputs"] = np.load(work / "outputs.npy")
    return result


# ----------------------------------------------------------------------------------------------
# Child side
# ----------------------------------------------------------------------------------------------


def _allocation_report(interpreter) -> int:
    """TFLM's 'Arena allocation total' (it prints to the C stderr; read it back from fd 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
    match = _REPORT.search(text)
    return int(match.group(1)) if match else 0


def _fits(path: str, arena: int) -> bool:
    """Does TFLM allocate the model in ``arena`` bytes? Tried in a forked process: a far too small
    arena crashes TFLM."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked probe
        code = 1
        try:
            from tflite_micro import runtime

            runtime.Interpreter.from_file(path, arena_size=int(arena))
            code = 0
        except BaseException:  # noqa: BLE001 - any failure means "does not fit"
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def smallest_arena(path: str, lower: int, fits=_fits) -> int:
    """The smallest arena (a multiple of 16 bytes) that ``fits``, searched upward from ``lower``
    (TFLM's allocation report: usually 16 bytes short of the need, never more than it) in
    doubling steps, then by bisection."""
    low = max(0, (int(lower) + _ARENA_ALIGN - 1) // _ARENA_ALIGN * _ARENA_ALIGN - _ARENA_ALIGN)
    step = _ARENA_ALIGN
    high = low + step
    while not fits(path, high):
        low, step = high, step * 2
        high = low + step
        if high > 1 << 30:
            raise MicroError(f"no arena up to 1 GiB fits {path}")
    while high - low > _ARENA_ALIGN:
        mid = (low + high) // 2 // _ARENA_ALIGN * _ARENA_ALIGN
        if fits(path, mid):
            high = mid
        else:
            low = mid
    return high


def _run_micro_child(request: dict) -> dict:
    """The child's handler (``python -m condense.export.micro REQUEST.json``)."""
    from tflite_micro import runtime

    path = request["path"]
    generous = 4 * Path(path).stat().st_size + (1 << 20)
    interpreter = runtime.Interpreter.from_file(path, arena_size=generous)
    x = np.load(request["x"])
    if request.get("step"):
        outputs = _run_steps(interpreter, Path(path).read_bytes(), x)
    else:
        outputs = _run_sequences(interpreter, x)
    np.save(request["outputs"], np.stack(outputs))
    reported = _allocation_report(interpreter)
    arena = smallest_arena(path, reported) if request["search_arena"] else None
    return {"arena_bytes": arena, "allocation_bytes": reported}


def _run_steps(interpreter, data: bytes, x: np.ndarray) -> list:
    """A step file (float I/O) over sequences ``x`` (N, T, C): each from zero state, the state
    outputs fed back as inputs, the output after the last step per sequence."""

    inputs, outputs = step_io_names(data)
    shapes = {name: tuple(interpreter.get_input_details(k)["shape"]) for k, name in enumerate(inputs)}
    results = []
    for sequence in x:
        state = {name: np.zeros(shape, np.float32) for name, shape in shapes.items() if name != INPUT_NAME}
        y = None
        for x_t in sequence:
            feed = {INPUT_NAME: x_t.reshape(shapes[INPUT_NAME]).astype(np.float32), **state}
            for k, name in enumerate(inputs):
                interpreter.set_input(np.ascontiguousarray(feed[name]), k)
            interpreter.invoke()
            got = {name: np.array(interpreter.get_output(k), np.float32) for k, name in enumerate(outputs)}
            state = {name: got[name + STATE_OUT_SUFFIX] for name in state}
            y = got[OUTPUT_NAME]
        results.append(y.reshape(-1))
    return results


def _run_sequences(interpreter, x: np.ndarray) -> list:
    """A whole-sequence file, one sample at a time (state reset before each)."""
    inp, out = interpreter.get_input_details(0), interpreter.get_output_details(0)
    outputs = []
    for sample in x:
        interpreter.reset()  # clears variable tensors: a fused LSTM's state
        value = sample.reshape(inp["shape"])
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization_parameters"]["scales"][0], inp["quantization_parameters"]["zero_points"][0]
            info = np.iinfo(inp["dtype"])
            value = np.clip(np.round(value / scale) + zero, info.min, info.max)
        interpreter.set_input(np.ascontiguousarray(value.astype(inp["dtype"])), 0)
        interpreter.invoke()
        y = np.asarray(interpreter.get_output(0))
        if np.issubdtype(y.dtype, np.integer):
            scale, zero = out["quantization_parameters"]["scales"][0], out["quantization_parameters"]["zero_points"][0]
            y = (y.astype(np.float32) - zero) * scale
        outputs.append(y.astype(np.float32).reshape(-1))
    return outputs


if __name__ == "__main__":
    raise SystemExit(child_main(_run_micro_child))
