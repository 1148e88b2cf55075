"""Export a saved Keras model to a ``.tflite`` file for phones, and run such files with LiteRT.

Three formats (:data:`FORMATS`):

``float32``
    Plain conversion. Same numbers as Keras (max absolute difference in probability of the
    order of 1e-7).
``dynamic``
    The converter's dynamic-range quantization (``Optimize.DEFAULT``, no representative data):
    weight tensors are stored as int8 (per channel), activations stay float and the kernels
    quantize them on the fly. Input and output stay float32. No calibration data needed. The
    converter leaves tensors with fewer than 1,024 elements in float32 (in a 16-unit LSTM the
    output layer; in a pruned 8-unit LSTM also the recurrent kernels).
``int8``
    Full-integer post-training quantization: weights *and* activations are int8 with uniform
    affine (scale, zero-point) parameters, biases int32. Activation ranges are calibrated by
    running ``calibration_x`` (a few hundred training samples, preprocessed exactly like the
    model's training inputs) through the model. Only integer kernels run inside the model.

:func:`export_tflite` converts one file; :func:`export_tflite_many` converts several in one
child process; :class:`TFLiteModel` runs any of them; :func:`parity_check` compares a file with
its Keras model.

How each model family is converted (the *route*) and why
--------------------------------------------------------
Keras 3 recurrent layers (``LSTM``, the hLSTM, any ``keras.layers.RNN``) are converted from a
**fixed batch of 1** rebuild of the model (:func:`condense.models.rebuild_with_batch`, same
weights): with a dynamic batch the converter fails ("tf.TensorListReserve op requires
element_shape to be static"). At batch 1 the time loop becomes a TFLite ``WHILE`` op, which is
compact and numerically exact, and is what ``float32`` and ``dynamic`` use.

Full-int8 calibration of that ``WHILE`` loop crashes the converter process (SIGSEGV, a known
upstream bug), so for ``int8`` recurrent models are rebuilt **unrolled** as well (one copy of
the step per time step, 48 for the IHM task). The unrolled graph quantizes cleanly and runs
faster (no loop control, integer kernels), but its file is larger than the float ``WHILE``
file: the weights are stored once, in int8, while the per-step operators and their
quantization parameters are repeated 48 times. Pass ``unroll=True`` to unroll a float export
too, for a like-for-like latency comparison.

Models without a recurrent layer (the DNN) keep their **dynamic batch** (input shape signature
``[-1, features]``): the one file serves a phone app (batch 1, the default allocation) and
batched evaluation on a workstation (:class:`TFLiteModel` resizes the input), and the kernels
are the same at batch 1.

Input and output of ``int8`` files
----------------------------------
By default an ``int8`` file keeps **float32 input and output** around its int8 body: its first
op quantizes the input with the calibrated scale and zero-point, its last dequantizes the
probability. An app feeds the same float array it would feed the float32 file, so the three
formats are drop-in replacements for each other, and accuracy is the same as with int8 I/O
(quantizing in the app or in the model is the same arithmetic). ``int8_io=True`` gives int8
input and output tensors instead, for integer-only accelerators (NPUs, Edge TPU); the app then
quantizes the input as ``q = clip(round(x / scale) + zero_point, -128, 127)`` and reads the
probability as ``(q - zero_point) * scale`` with the parameters stored in the file
(:class:`TFLiteModel` does both).

Either way the input has **one** scale for all channels (TFLite quantizes activations per
tensor), and that is where int8 loses most accuracy on ICU data: one-hot and mask channels are
0/1, continuous channels are standardized values with rare gross outliers (tens to hundreds of
standard deviations). Calibrated on the plain min/max, a single outlier stretches the scale so
that every ordinary value lands on one or two integer steps. So the input range is calibrated
on ``calibration_x`` clipped to ``±L``, ``L`` the 99.99th percentile of ``|calibration_x|``
(``input_percentile``; data already within ``±L`` is unchanged); values beyond ``±L`` saturate.
Measured on the synthetic task of the tests (Student-t continuous channels, outliers up to about
280 SD; the trained 2-layer LSTM): mean |p - p_keras| 0.017 with the plain min/max, 0.005 with
the clipped range; largest deviation 0.14 vs 0.05 (in another training run the AUROC moved by
0.010 vs 0.001). What remains for recurrent models is mostly the int8 rounding of the state
carried through 48 steps: expect single-sample deviations of a few hundredths.

Conversion runs in a child process
----------------------------------
The converter can crash the process (the segfault above) or fail deep inside TensorFlow. So
:func:`export_tflite` runs it in a fresh ``python -m condense.export`` child: the child loads the
``.keras`` file with ``safe_mode=True`` after ``import condense`` (custom layers registered),
converts, checks the result (it runs one sample; quantized formats must really store int8
weights) and writes the bytes to a temporary file beside the target. The parent renames that
file onto the target only when the child succeeded; on any failure it removes it and raises one
:class:`ExportError` naming the model, the format and the cause ("killed by SIGSEGV", or the
Python exception). No partial ``.tflite`` is ever left behind.

Test hook: the environment variable ``CONDENSE_EXPORT_FAULT`` (``segfault`` or ``error``) is
honoured only by the child: it writes a few bytes to its temporary output and then crashes with
a real SIGSEGV, or raises ``RuntimeError``, where the conversion would run. It exists so the
tests can prove the failure path; never set it otherwise.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condense.io import atomic_path

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportJob",
    "export_tflite",
    "export_tflite_many",
    "clip_calibration",
    "TFLiteModel",
    "parity_check",
]

#: The ``.tflite`` formats :func:`export_tflite` writes.
FORMATS = ("float32", "dynamic", "int8")

#: Environment variable read by the conversion child only (test hook, see the module docstring).
FAULT_ENV = "CONDENSE_EXPORT_FAULT"
_FAULTS = ("segfault", "error")

#: Dynamic-range quantization leaves weight tensors with fewer elements than this in float32
#: (the converter's rule).
DYNAMIC_MIN_ELEMENTS = 1024

#: Default percentile of |calibration_x| that bounds the int8 input range (see module docstring).
DEFAULT_INPUT_PERCENTILE = 99.99

#: Default wall-clock limit of one conversion, in seconds.
DEFAULT_TIMEOUT = 1800.0

_OUTPUT_TAIL_LINES = 15
_ERROR_CHARS = 1500


class ExportError(RuntimeError):
    """A ``.tflite`` conversion failed; no output file was written.

    Attributes:
        model_path: the ``.keras`` file that was being converted.
        fmt: the requested format.
        returncode: the child's exit status (negative: killed by that signal), or ``None``
            when it did not finish in time.
        output: the child's captured stdout and stderr (empty when ``quiet=False``, where it
            went to the terminal).
    """

    def __init__(self, message: str, *, model_path, fmt: str, returncode: int | None = None, output: str = ""):
        super().__init__(message)
        self.model_path = Path(model_path)
        self.fmt = fmt
        self.returncode = returncode
        self.output = output


# ----------------------------------------------------------------------------------------------
# Parent side
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ExportJob:
    """One conversion for :func:`export_tflite_many`; the fields are the arguments of
    :func:`export_tflite` with the same names and defaults."""

    model_path: str | os.PathLike
    out_path: str | os.PathLike
    fmt: str
    calibration_x: object = None
    int8_io: bool = False
    unroll: bool | None = None
    input_percentile: float | None = DEFAULT_INPUT_PERCENTILE


def export_tflite(
    model_path,
    out_path,
    fmt: str,
    *,
    calibration_x=None,
    int8_io: bool = False,
    unroll: bool | None = None,
    input_percentile: float | None = DEFAULT_INPUT_PERCENTILE,
    timeout: float = DEFAULT_TIMEOUT,
    quiet: bool = True,
) -> Path:
    """Convert the saved Keras model ``model_path`` to a ``.tflite`` file at ``out_path``.

    The conversion runs in a child process (see the module docstring): a converter crash or
    error raises :class:`ExportError` and leaves no file at ``out_path`` (an existing file there
    is left untouched); on success the file appears atomically.

    Args:
        model_path: A ``.keras`` file (written by ``condense train`` or ``keras.Model.save``).
            Loaded with ``safe_mode=True``; condense's custom layers are registered.
        out_path: Where to write the ``.tflite`` file (parent folders are created).
        fmt: ``"float32"``, ``"dynamic"`` or ``"int8"`` (see :data:`FORMATS`).
        calibration_x: Required for ``"int8"``, ignored otherwise. Model inputs,
            shape ``(N, *input_shape)``, preprocessed exactly as for training (a few hundred
            training samples is plenty; every row is used, one at a time).
        int8_io: Only for ``"int8"``: give the file int8 input and output tensors instead of
            float32 ones (for integer-only accelerators). Default ``False``.
        input_percentile: Only for ``"int8"``: the input's int8 range is calibrated on
            ``calibration_x`` clipped to ``±L``, ``L`` this percentile of ``|calibration_x|``
            (default 99.99), so that rare outliers do not coarsen the input scale for every
            value; inputs beyond ``±L`` saturate. Data already within ``±L`` is unchanged.
            ``None`` calibrates on the plain min / max. See the module docstring.
        unroll: For models with recurrent layers: ``None`` (default) unrolls the time loop
            for ``"int8"`` only (required there) and keeps the compact ``WHILE`` loop otherwise;
            ``True`` unrolls for every format. ``False`` with ``"int8"`` is refused (the
            converter crashes). Ignored for models without recurrent layers.
        timeout: Seconds the conversion may take before the child is killed and
            :class:`ExportError` is raised. Default 1800.
        quiet: ``True`` (default) captures the converter's console output (it is attached to
            the :class:`ExportError` on failure); ``False`` lets it through to the terminal.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: a bad argument (unknown format, int8 without ``calibration_x``, calibration
            data that is not a finite numeric array of samples).
        ExportError: the conversion failed or crashed.

    Example::

        export_tflite("models/run1/model.keras", "models/run1/model.int8.tflite", "int8",
                      calibration_x=x_train[:300])
    """
    job = ExportJob(model_path, out_path, fmt, calibration_x=calibration_x, int8_io=int8_io, unroll=unroll,
                    input_percentile=input_percentile)
    return export_tflite_many([job], timeout=timeout, quiet=quiet)[0]


def export_tflite_many(jobs: Iterable[ExportJob], *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = True) -> list[Path]:
    """Run several conversions in one child process (TensorFlow starts once, which takes
    seconds) and return their output paths in order.

    All or nothing: the files appear only when every job succeeded; at the first failure the
    child stops, no output file of any job is written, and :class:`ExportError` names the
    model and format of the job that failed. ``timeout`` is per job (the child gets
    ``timeout * len(jobs)`` seconds in all). Arguments are validated as in
    :func:`export_tflite` before anything runs.
    """
    jobs = list(jobs)
    if not jobs:
        return []
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"Argument `timeout` must be a positive number of seconds, got timeout={timeout!r}.")
    checked = [_check_job(job) for job in jobs]
    outs = [Path(job.out_path) for job in jobs]
    if len({p.resolve() for p in outs}) != len(outs):
        raise ValueError(f"Two export jobs write the same file: {[str(p) for p in outs]}")

    with tempfile.TemporaryDirectory(prefix="condense-export-") as work, contextlib.ExitStack() as stack:
        work = Path(work)
        requests = []
        for i, (job, calibration) in enumerate(checked):
            tmp_out = stack.enter_context(atomic_path(job.out_path))
            request = {
                "model_path": str(Path(job.model_path).resolve()),
                "fmt": job.fmt,
                "int8_io": bool(job.int8_io),
                "unroll": job.unroll,
                "calibration": None,
                "out_path": str(tmp_out),
            }
            if calibration is not None:
                np.save(work / f"calibration{i}.npy", calibration)
                request["calibration"] = str(work / f"calibration{i}.npy")
            requests.append(request)
        request_file = work / "request.json"
        request_file.write_text(json.dumps({"jobs": requests, "result": str(work / "result.json")}), encoding="utf-8")
        outcomes = _run_child(request_file, work / "result.json", jobs, timeout * len(jobs), quiet)
    if not quiet:
        for out, outcome in zip(outs, outcomes):
            print(f"{out}: {outcome['fmt']} ({outcome['route']}, {outcome['io']} I/O), {outcome['bytes']:,} bytes, "
                  f"converted in {outcome['seconds']:.1f} s", file=sys.stderr)
    return outs


def _check_job(job: ExportJob) -> tuple[ExportJob, np.ndarray | None]:
    model_path = Path(job.model_path)
    fmt = job.fmt
    if fmt not in FORMATS:
        raise ValueError(f"Argument `fmt` must be one of {FORMATS}, got fmt={fmt!r}.")
    if not model_path.is_file():
        raise FileNotFoundError(f"Keras model not found: {model_path}")
    if model_path.suffix != ".keras":
        raise ValueError(f"Expected a Keras 3 `.keras` model file, got {model_path}")
    if job.unroll is not None and not isinstance(job.unroll, bool):
        raise ValueError(f"Argument `unroll` must be None, True or False, got unroll={job.unroll!r}.")
    if job.int8_io and fmt != "int8":
        raise ValueError(f"Argument `int8_io=True` needs fmt='int8', got fmt={fmt!r} (exporting {model_path}).")
    calibration = None
    if fmt == "int8":
        if job.calibration_x is None:
            raise ValueError(
                f"Exporting {model_path} to int8 needs `calibration_x`: a few hundred preprocessed "
                "training inputs to calibrate the activation ranges."
            )
        calibration = clip_calibration(_check_calibration(job.calibration_x), job.input_percentile)
    return job, calibration


def clip_calibration(calibration_x: np.ndarray, input_percentile: float | None = DEFAULT_INPUT_PERCENTILE) -> np.ndarray:
    """``calibration_x`` clipped to ``±L``, ``L`` the ``input_percentile`` percentile of its
    absolute values (unchanged when ``input_percentile`` is None). This sets the int8 input
    range of an ``int8`` export; see the module docstring for why."""
    if input_percentile is None:
        return calibration_x
    if isinstance(input_percentile, bool) or not isinstance(input_percentile, (int, float)) \
            or not 50.0 < float(input_percentile) <= 100.0:
        raise ValueError("Argument `input_percentile` must be None or a percentile in (50, 100], "
                         f"got input_percentile={input_percentile!r}.")
    limit = float(np.percentile(np.abs(calibration_x), float(input_percentile)))
    if limit <= 0.0:  # all-zero (or nearly) data: nothing sensible to clip to
        return calibration_x
    return np.clip(calibration_x, -limit, limit)


def _check_calibration(calibration_x) -> np.ndarray:
    try:
        x = np.asarray(calibration_x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Argument `calibration_x` must be a numeric array of model inputs: {exc}") from None
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            "Argument `calibration_x` must have shape (N, *input_shape) with N >= 1, "
            f"got shape {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("Argument `calibration_x` contains NaN or infinite values; preprocess it as for training.")
    return np.ascontiguousarray(x)


def _child_env() -> dict:
    env = dict(os.environ)
    # tf_keras would replace Keras 3 in the child (see toolchain notes): never let it leak in.
    env.pop("TF_USE_LEGACY_KERAS", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _run_child(request: Path, result: Path, jobs: list[ExportJob], timeout: float, quiet: bool) -> list[dict]:
    """Run the conversion child; return its per-job outcomes or raise ExportError for the job
    that failed (the first one without a successful outcome)."""
    cmd = [sys.executable, "-m", "condense.export", str(request)]
    output = ""
    returncode = None
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
            env=_child_env(), timeout=timeout, check=False,
        )
        output, returncode = _decode(proc.stdout), proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = _decode(exc.output)
    outcomes = _read_outcomes(result)
    if returncode == 0 and len(outcomes) == len(jobs) and all(o.get("ok") for o in outcomes):
        return outcomes
    failed = next((i for i, o in enumerate(outcomes) if not o.get("ok")), min(len(outcomes), len(jobs) - 1))
    job = jobs[failed]
    outcome = outcomes[failed] if failed < len(outcomes) else None
    if outcome is not None and outcome.get("error"):
        cause = f"{outcome['error_type']}: {outcome['error']}"
    elif returncode is None:
        cause = f"the conversion did not finish within {timeout:g} s and was stopped"
    elif returncode < 0 or returncode > 128:
        signum = -returncode if returncode < 0 else returncode - 128
        cause = f"the converter process was killed by {_signal_name(signum)} (signal {signum})"
        if signum == signal.SIGSEGV:
            cause += ", a crash inside the TensorFlow Lite converter"
    else:
        cause = f"the converter process exited with status {returncode} without a result"
    if not quiet:
        note = " See the converter output above."
    elif outcome is not None and outcome.get("error"):
        note = ""  # the exception says it; the full output stays on ExportError.output
    else:
        note = _tail_note(output)
    others = f" No file of the {len(jobs)} jobs in this call was written." if len(jobs) > 1 else " No file was written."
    raise ExportError(
        f"Exporting {job.model_path} to {job.fmt} .tflite failed: {cause}.{others}{note}",
        model_path=job.model_path, fmt=job.fmt, returncode=returncode, output=output,
    )


def _read_outcomes(result: Path) -> list[dict]:
    try:
        outcomes = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return outcomes if isinstance(outcomes, list) else []


def _decode(data) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


#: Start-up chatter of TensorFlow / absl that says nothing about a failure.
_NOISE_PREFIXES = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "Extension modules:")


def _tail_note(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip() and not ln.startswith(_NOISE_PREFIXES)]
    if not lines:
        return ""
    tail = "\n".join("    " + (ln if len(ln) <= 200 else ln[:200] + " ...") for ln in lines[-_OUTPUT_TAIL_LINES:])
    return f"\n  Last converter output:\n{tail}"


# ----------------------------------------------------------------------------------------------
# Child side: `python -m condense.export REQUEST.json`
# ----------------------------------------------------------------------------------------------


def _is_recurrent(model) -> bool:
    """True when ``model`` (or a nested model) has a recurrent layer (anything with a time loop)."""
    import keras

    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) or hasattr(layer, "unroll"):
            return True
        stack.extend(getattr(layer, "layers", []) or [])
    return False


def _convert(request: dict) -> dict:
    """Load, rebuild, convert and check; write the bytes to ``request['out_path']``."""
    started = time.perf_counter()
    fault = os.environ.get(FAULT_ENV, "").strip().lower()
    if fault and fault not in _FAULTS:
        raise ValueError(f"{FAULT_ENV} must be one of {_FAULTS} or unset, got {fault!r}")

    import keras
    import tensorflow as tf

    import condense  # noqa: F401  (registers the custom layers for safe loading)
    from condense.models import rebuild_with_batch

    fmt = request["fmt"]
    model = keras.saving.load_model(request["model_path"], safe_mode=True, compile=False)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"only single-input, single-output models are supported, got "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
    recurrent = _is_recurrent(model)
    unroll = request["unroll"]
    if recurrent:
        if fmt == "int8" and unroll is False:
            raise ValueError("full-int8 calibration of a recurrent WHILE loop crashes the converter; "
                             "use unroll=None (default) or unroll=True for int8")
        unrolled = fmt == "int8" if unroll is None else bool(unroll)
        graph = rebuild_with_batch(model, batch_size=1, unroll=unrolled)
        route = "batch-1 unrolled" if unrolled else "batch-1 WHILE loop"
    else:
        unrolled = False
        graph = model
        route = "dynamic batch" if model.inputs[0].shape[0] is None else f"batch {model.inputs[0].shape[0]}"
    sample_shape = tuple(int(d) for d in model.inputs[0].shape[1:])

    converter = tf.lite.TFLiteConverter.from_keras_model(graph)
    if fmt in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt == "int8":
        calibration = np.load(request["calibration"])
        if tuple(calibration.shape[1:]) != sample_shape:
            raise ValueError(f"calibration_x has samples of shape {tuple(calibration.shape[1:])}, "
                             f"the model expects {sample_shape}")

        def representative_dataset():
            for row in calibration:
                yield [row[None, ...]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if request["int8_io"] else tf.float32
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type

    if fault:
        with open(request["out_path"], "wb") as fh:  # a partial output the parent must clean up
            fh.write(b"TFL3 partial")
        if fault == "segfault":
            import ctypes

            ctypes.string_at(0)  # a real invalid read: the process dies with SIGSEGV
            os.kill(os.getpid(), signal.SIGSEGV)  # pragma: no cover - should not get here
        raise RuntimeError(f"injected converter error ({FAULT_ENV}=error)")

    data = bytes(converter.convert())
    stats = _constant_stats(data)
    int8_bytes, float_bytes = stats["bytes"].get("int8", 0), stats["bytes"].get("float32", 0)
    if fmt == "int8" and not (int8_bytes > 0 and float_bytes < int8_bytes):
        raise RuntimeError(f"the converter left float weights in a full-int8 model "
                           f"(constant bytes by dtype: {stats['bytes']})")
    large = sum(1 for w in model.weights if int(np.prod(w.shape)) >= DYNAMIC_MIN_ELEMENTS)
    if fmt == "dynamic" and large and not int8_bytes:
        raise RuntimeError(f"dynamic-range quantization stored no int8 weights although {large} weight "
                           f"tensors have >= {DYNAMIC_MIN_ELEMENTS} elements (constant bytes: {stats['bytes']})")
    _smoke_test(data, sample_shape)
    with open(request["out_path"], "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return {
        "fmt": fmt, "route": route, "recurrent": recurrent, "unrolled": unrolled,
        "input_shape": [None if d is None else int(d) for d in graph.inputs[0].shape],
        "io": "int8" if request.get("int8_io") else "float32",
        "bytes": len(data), "constant_bytes": stats["bytes"],
        "seconds": round(time.perf_counter() - started, 3),
    }


def _smoke_test(data: bytes, sample_shape: tuple[int, ...]) -> None:
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


def _child_main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m condense.export REQUEST.json  (internal: used by export_tflite)", file=sys.stderr)
        return 2
    import faulthandler

    from condense.io import write_json

    faulthandler.enable()  # a crash prints the Python stack (the parent shows its tail), then dies as before
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    outcomes: list[dict] = []
    for job in request["jobs"]:
        try:
            outcome = {"ok": True, **_convert(job)}
        except Exception as exc:  # every failure becomes one structured outcome for the parent
            import traceback

            traceback.print_exc()
            text = str(exc).strip()
            if len(text) > _ERROR_CHARS:
                text = text[:_ERROR_CHARS] + " [...]"
            outcome = {"ok": False, "error_type": type(exc).__name__, "error": text or repr(exc)}
        outcomes.append(outcome)
        write_json(request["result"], outcomes)  # after every job: the parent sees how far we got
        if not outcome["ok"]:
            return 1
        import keras

        keras.backend.clear_session()
    return 0


# ----------------------------------------------------------------------------------------------
# Inspecting and running .tflite files
# ----------------------------------------------------------------------------------------------


def _constant_stats(data: bytes) -> dict:
    """Counts and bytes, by dtype, of the tensors that carry data (weights and constants).

    Reads the flatbuffer directly and covers *every* subgraph: the body of a ``WHILE`` loop
    (where a recurrent model's weights live) is a separate subgraph that
    ``Interpreter.get_tensor_details()`` does not list.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(data, 0)
    counts: collections.Counter = collections.Counter()
    nbytes: collections.Counter = collections.Counter()
    seen: set[tuple[int, int]] = set()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            if buffer is None:
                continue
            size = buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0)
            if size <= 0:
                continue
            dtype = names.get(tensor.Type(), f"type{tensor.Type()}")
            counts[dtype] += 1
            if (tensor.Buffer(), tensor.Type()) not in seen:  # a shared buffer counts once
                seen.add((tensor.Buffer(), tensor.Type()))
                nbytes[dtype] += size
    return {"count": dict(counts), "bytes": dict(nbytes)}


class TFLiteModel:
    """Run a ``.tflite`` model with LiteRT and get probabilities.

    Handles what differs between files so callers do not have to: files with a batch fixed to
    1 (recurrent models) are run one sample at a time, dynamic-batch files (the DNN) are run in
    chunks after resizing the input; int8 input is quantized and int8 output dequantized with
    the scale and zero-point stored in the file.

    Args:
        path: A ``.tflite`` file with one input and one output.
        num_threads: CPU threads for the interpreter. Default 1 (per-sample latency on a phone
            core). XNNPACK is used as LiteRT's default CPU delegate.
        batch_size: Chunk size for dynamic-batch files. Default 256.

    Example::

        runner = TFLiteModel("models/run1/model.int8.tflite")
        p = runner.predict(x_test)          # (N,) float32 probabilities
    """

    def __init__(self, path, num_threads: int = 1, *, batch_size: int = 256):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TFLite model not found: {self.path}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"Argument `num_threads` must be a positive integer, got num_threads={num_threads!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Argument `batch_size` must be a positive integer, got batch_size={batch_size!r}.")
        self.num_threads = num_threads
        self.batch_size = batch_size
        try:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path} is not a loadable .tflite model: {exc}") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.path}: TFLiteModel runs single-input, single-output models, "
                             f"this file has {len(inputs)} inputs and {len(outputs)} outputs")
        self._input = inputs[0]
        self._output = outputs[0]
        signature = self._input.get("shape_signature")
        if signature is None or len(signature) == 0:
            signature = self._input["shape"]
        self._dynamic = int(signature[0]) == -1
        self._sample_shape = tuple(int(d) for d in self._input["shape"][1:])
        self._allocated = int(self._input["shape"][0])
        self._stats = None

    # -- description ---------------------------------------------------------------------------
    @property
    def input_details(self) -> dict:
        """The interpreter's description of the input tensor (name, shape, shape_signature,
        dtype, quantization (scale, zero_point))."""
        return dict(self._input)

    @property
    def output_details(self) -> dict:
        """The interpreter's description of the output tensor."""
        return dict(self._output)

    @property
    def input_shape(self) -> tuple:
        """Input shape with ``None`` for a dynamic batch, e.g. ``(1, 48, 76)`` or ``(None, 76)``."""
        return (None if self._dynamic else self._allocated, *self._sample_shape)

    @property
    def dynamic_batch(self) -> bool:
        """True when the file accepts any batch size (the input is resized per call)."""
        return self._dynamic

    @property
    def io_dtype(self) -> np.dtype:
        """dtype of the input tensor: float32, or int8 for files exported with ``int8_io=True``."""
        return np.dtype(self._input["dtype"])

    @property
    def is_quantized(self) -> bool:
        """True when the file stores int8 weights (``dynamic`` and ``int8`` exports)."""
        return self.tensor_dtypes().get("int8", 0) > 0

    def tensor_dtypes(self, measure: str = "count") -> dict[str, int]:
        """dtype -> number of constant tensors (``measure="count"``) or their bytes
        (``measure="bytes"``), over every subgraph of the file.

        Constant tensors are the ones that carry data in the file: weights, biases,
        quantization-free constants (shapes, axes). An ``int8`` export holds ``int8`` weights
        and ``int32`` biases; a ``float32`` export holds no ``int8`` tensor at all.
        """
        if measure not in ("count", "bytes"):
            raise ValueError(f"Argument `measure` must be 'count' or 'bytes', got measure={measure!r}.")
        if self._stats is None:
            self._stats = _constant_stats(self.path.read_bytes())
        return dict(self._stats[measure])

    # -- running -------------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Probabilities for ``X``.

        Args:
            X: Model inputs of shape ``(N, *sample_shape)`` (any ``N >= 1``) or one sample of
                shape ``sample_shape``, float values preprocessed as for training.

        Returns:
            ``(N,)`` float32 for single-unit outputs (the probability), else ``(N, units)``.
        """
        x = np.asarray(X, dtype=np.float32)
        if x.shape == self._sample_shape:
            x = x[None, ...]
        if x.ndim != len(self._sample_shape) + 1 or tuple(x.shape[1:]) != self._sample_shape:
            raise ValueError(f"{self.path} expects inputs of shape (N, {', '.join(map(str, self._sample_shape))}), "
                             f"got {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{self.path}: predict got no samples (shape {x.shape})")
        step = min(self.batch_size, len(x)) if self._dynamic else self._allocated
        outs = [self._run(x[start:start + step]) for start in range(0, len(x), step)]
        out = np.concatenate(outs, axis=0)[: len(x)]
        out = out.reshape(len(x), -1)
        return out[:, 0] if out.shape[1] == 1 else out

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if self._dynamic:
            if n != self._allocated:
                self._interpreter.resize_tensor_input(self._input["index"], [n, *self._sample_shape])
                self._interpreter.allocate_tensors()
                self._allocated = n
        elif n < self._allocated:  # a fixed batch larger than the last chunk: pad with zeros
            chunk = np.concatenate([chunk, np.zeros((self._allocated - n, *self._sample_shape), np.float32)])
        self._interpreter.set_tensor(self._input["index"], self.quantize_input(chunk))
        self._interpreter.invoke()
        return self.dequantize_output(self._interpreter.get_tensor(self._output["index"]))[:n]

    def single_sample_call(self, x_one) -> Callable[[], np.ndarray]:
        """A zero-argument function running one prepared sample: ``set_tensor`` + ``invoke`` +
        ``get_tensor`` (the raw output tensor), what an app does per prediction. The sample is
        quantized once, here, for int8-input files. Used by :func:`condense.measure.tflite_latency`.

        Args:
            x_one: One sample, shape ``sample_shape`` or ``(1, *sample_shape)``.
        """
        x = np.asarray(x_one, dtype=np.float32)
        if x.shape == self._sample_shape:
            x = x[None, ...]
        if x.shape != (1, *self._sample_shape):
            raise ValueError(f"{self.path}: one sample must have shape (1, {', '.join(map(str, self._sample_shape))}), "
                             f"got {x.shape}")
        if self._dynamic and self._allocated != 1:
            self._interpreter.resize_tensor_input(self._input["index"], [1, *self._sample_shape])
            self._interpreter.allocate_tensors()
            self._allocated = 1
        if self._allocated != 1:
            raise ValueError(f"{self.path} has a fixed batch of {self._allocated}, not a single-sample model")
        prepared = self.quantize_input(x)
        interpreter, in_index, out_index = self._interpreter, self._input["index"], self._output["index"]

        def call() -> np.ndarray:
            interpreter.set_tensor(in_index, prepared)
            interpreter.invoke()
            return interpreter.get_tensor(out_index)

        return call

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the input tensor's dtype: unchanged for float input; for int8 input
        ``clip(round(x / scale) + zero_point, -128, 127)``."""
        dtype = self._input["dtype"]
        if not np.issubdtype(dtype, np.integer):
            return np.ascontiguousarray(x, dtype=dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """The output tensor as float32: ``(q - zero_point) * scale`` for int8 output."""
        if not np.issubdtype(y.dtype, np.integer):
            return y.astype(np.float32, copy=False)
        scale, zero_point = self._output["quantization"]
        return ((y.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)

    def __repr__(self) -> str:
        return (f"TFLiteModel({str(self.path)!r}, input {self.input_shape} {self.io_dtype}, "
                f"num_threads={self.num_threads})")


def parity_check(keras_model, tflite_path, X, y=None, *, num_threads: int = 1) -> dict:
    """Compare a ``.tflite`` file with the Keras model it came from on inputs ``X``.

    Args:
        keras_model: A ``keras.Model``, or the path of a ``.keras`` file (loaded with
            ``safe_mode=True``).
        tflite_path: The exported ``.tflite`` file.
        X: Preprocessed model inputs ``(N, *input_shape)``.
        y: Optional 0/1 labels; when given (and both classes occur), the AUROC of each model.

    Returns:
        ``{"n", "max_abs_diff", "mean_abs_diff", "p_keras", "p_tflite"}``, plus
        ``"auroc_keras"``, ``"auroc_tflite"`` and ``"auroc_diff"`` (tflite minus Keras) when
        ``y`` is given with both classes.
    """
    import keras

    if isinstance(keras_model, (str, os.PathLike)):
        import condense  # noqa: F401  (registers the custom layers)

        keras_model = keras.saving.load_model(keras_model, safe_mode=True, compile=False)
    x = np.asarray(X, dtype=np.float32)
    p_keras = np.asarray(keras_model.predict(x, batch_size=256, verbose=0), dtype=np.float32).reshape(len(x), -1)
    p_keras = p_keras[:, 0] if p_keras.shape[1] == 1 else p_keras
    p_tflite = TFLiteModel(tflite_path, num_threads=num_threads).predict(x)
    diff = np.abs(p_tflite.astype(np.float64) - p_keras.astype(np.float64))
    report = {
        "n": int(len(x)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "p_keras": p_keras,
        "p_tflite": p_tflite,
    }
    if y is not None:
        labels = np.asarray(y).reshape(-1)
        if len(labels) != len(x):
            raise ValueError(f"y has {len(labels)} labels for {len(x)} samples")
        if len(np.unique(labels)) == 2:
            from sklearn.metrics import roc_auc_score

            report["auroc_keras"] = float(roc_auc_score(labels, p_keras))
            report["auroc_tflite"] = float(roc_auc_score(labels, p_tflite))
            report["auroc_diff"] = report["auroc_tflite"] - report["auroc_keras"]
    return report


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
