"""Convert a saved Keras model to a ``.tflite`` file in a child process.

:func:`export_tflite` converts one file, :func:`export_tflite_many` several in one child process
(TensorFlow starts once); the child (``python -m condense.export.convert``, through
:mod:`condense._child`) loads the model with ``safe_mode=True``, chooses the graph (the *route*:
fused LSTM, hoisted hLSTM gates, WHILE loop or unrolled; ``Masking`` dropped only where exact),
converts with the settings of the format (:mod:`condense.export.formats`), applies the edits the
converter cannot make (:mod:`condense.export.tflite_edit`), runs the format's checks
(:data:`FILE_CHECKS`) and only then writes the file; a converter crash becomes an
:class:`ExportError` and no partial file. Running the files on LiteRT: :mod:`condense.export.litert_runner`;
reading what a file holds: :mod:`condense.export.inspection`.

Design notes, with the measurements behind them: ``docs/export.md`` (formats, int8 input range,
int8 I/O, the child process, the test hook ``CONDENSE_EXPORT_FAULT``) and
``docs/recurrent-export.md`` (routes, Masking, the cell clip, TFLM).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condense.checks import check_choice
from condense._child import ChildError, child_main, error_result, run_child, write_result
from condense.export.formats import FORMATS, FORMS, ROUTES, get_format
from condense.export.inspection import constant_stats, op_names
from condense.io import atomic_path, work_folder

__all__ = [
    "FORMATS",
    "ROUTES",
    "ExportError",
    "ExportJob",
    "export_tflite",
    "export_tflite_many",
    "clip_calibration",
]


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



class ExportError(ChildError):
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
        super().__init__(message, what=f"Exporting {model_path} to {fmt}", returncode=returncode, output=output)
        self.model_path = Path(model_path)
        self.fmt = fmt


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
    route: str = "auto"
    input_percentile: float | None = DEFAULT_INPUT_PERCENTILE
    form: str = "sequence"
    metadata: dict | None = None
    dynamic_batch: bool = False
    normalizer: tuple | None = None

    def __post_init__(self) -> None:  # settings are checked where they enter; files and data at export time
        spec = get_format(self.fmt)
        check_choice("route", self.route, ROUTES)
        check_choice("form", self.form, FORMS)
        if self.form == "step" and (self.route != "auto" or self.int8_io):
            raise ValueError(f"form='step' takes no route and no int8_io (exporting {self.model_path}): a step file "
                             "is one graph of the step equations, its state float between calls.")
        if self.route == "while" and spec.integer_only:
            raise ValueError(f"route='while' cannot be {self.fmt} (exporting {self.model_path}): full-integer "
                             "calibration of a WHILE loop crashes the converter; use route='auto' or 'unrolled'.")
        if not isinstance(self.dynamic_batch, bool):
            raise ValueError(f"Argument `dynamic_batch` must be True or False, got dynamic_batch={self.dynamic_batch!r}.")
        if self.dynamic_batch and self.form == "step":
            raise ValueError(f"a step file has batch 1 (exporting {self.model_path}): dynamic_batch=True is refused")
        if self.normalizer is not None and (self.form != "step" or self.fmt != "float32"):
            raise ValueError(f"only a float32 step file folds the normalizer into its first layer (exporting "
                             f"{self.model_path} as {self.fmt} {self.form}): one int8 input scale cannot span "
                             "clinical units, and a sequence file keeps its inputs as the model took them")
        if self.int8_io and not spec.integer_only:
            raise ValueError(f"Argument `int8_io=True` needs a full-integer format (int8), got fmt={self.fmt!r} "
                             f"(exporting {self.model_path}).")


def export_tflite(
    model_path,
    out_path,
    fmt: str,
    *,
    calibration_x=None,
    int8_io: bool = False,
    route: str = "auto",
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
        calibration_x: Model inputs, shape ``(N, *input_shape)``, preprocessed exactly as for
            training (a few hundred training samples is plenty). Required for ``"int8"``
            (calibration, every row is used). For recurrent models of every format it is
            also the data on which dropping ``Masking`` is checked to be exact (see the
            module docstring): without it, ``Masking`` is kept and no fused file is made.
        int8_io: Only for ``"int8"``: give the file int8 input and output tensors instead of
            float32 ones (for integer-only accelerators). Default ``False``.
        input_percentile: Only for ``"int8"``: the input's int8 range is calibrated on
            ``calibration_x`` clipped to ``±L``, ``L`` this percentile of ``|calibration_x|``
            (default 99.99), so that rare outliers do not coarsen the input scale for every
            value; inputs beyond ``±L`` saturate. Data already within ``±L`` is unchanged.
            ``None`` calibrates on the plain min / max. See the module docstring.
        route: For models with recurrent layers, one of :data:`ROUTES`: ``"auto"``
            (default: the fastest exact graph), ``"fused"`` (raise if the fused LSTM op is
            impossible), ``"while"`` / ``"unrolled"`` (the Keras 3 default conversion, Masking
            kept; ``"while"`` with ``"int8"`` is refused: the converter crashes). See the
            module docstring. Ignored for models without recurrent layers.
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
    job = ExportJob(model_path, out_path, fmt, calibration_x=calibration_x, int8_io=int8_io, route=route,
                    input_percentile=input_percentile)
    return export_tflite_many([job], timeout=timeout, quiet=quiet)[0]


def export_tflite_many(jobs: Iterable[ExportJob], *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = True,
                       details: bool = False) -> list:
    """Run several conversions in one child process (TensorFlow starts once, which takes
    seconds) and return their output paths in order.

    With ``details=True`` each item is ``(path, outcome)`` instead, ``outcome`` the child's
    account of the job: ``route`` (the graph that was converted), ``ops`` (the file's operator
    names), ``bytes``, ``masking`` (whether ``Masking`` was dropped, and the masked steps found
    in ``calibration_x``), ``cell_state_max_abs`` (fused routes with data), ``warnings``.

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

    with work_folder("export") as work, contextlib.ExitStack() as stack:
        work = Path(work)
        requests, saved = [], {}
        for job, calibration in checked:
            tmp_out = stack.enter_context(atomic_path(job.out_path))
            request = {
                "model_path": str(Path(job.model_path).resolve()),
                "fmt": job.fmt,
                "int8_io": bool(job.int8_io),
                "route": job.route,
                "form": job.form,
                "metadata": job.metadata,
                "dynamic_batch": bool(job.dynamic_batch),
                "normalizer": None if job.normalizer is None else [np.asarray(v, np.float64).tolist()
                                                                   for v in job.normalizer],
                "calibration": None,
                "out_path": str(tmp_out),
            }
            if calibration is not None:  # jobs sharing the same data share one file
                key = (calibration.shape, hashlib.sha1(calibration.tobytes()).hexdigest())
                if key not in saved:
                    saved[key] = work / f"calibration{len(saved)}.npy"
                    np.save(saved[key], calibration)
                request["calibration"] = str(saved[key])
            requests.append(request)
        outcomes = _run_child(work, requests, jobs, timeout * len(jobs), quiet)
    if not quiet:
        for out, outcome in zip(outs, outcomes):
            print(f"{out}: {outcome['fmt']} ({outcome['route']}, {outcome['io']} I/O), {outcome['bytes']:,} bytes, "
                  f"converted in {outcome['seconds']:.1f} s", file=sys.stderr)
            for warning in outcome.get("warnings", []):
                print(f"  warning: {warning}", file=sys.stderr)
    return list(zip(outs, outcomes)) if details else outs


def _check_job(job: ExportJob) -> tuple[ExportJob, np.ndarray | None]:
    model_path = Path(job.model_path)
    spec = get_format(job.fmt)
    if not model_path.is_file():
        raise FileNotFoundError(f"Keras model not found: {model_path}")
    if model_path.suffix != ".keras":
        raise ValueError(f"Expected a Keras 3 `.keras` model file, got {model_path}")
    calibration = None
    if spec.needs_calibration:
        if job.calibration_x is None:
            raise ValueError(
                f"Exporting {model_path} to int8 needs `calibration_x`: a few hundred preprocessed "
                "training inputs to calibrate the activation ranges."
            )
        calibration = clip_calibration(_check_calibration(job.calibration_x), job.input_percentile)
    elif job.calibration_x is not None:  # the Masking check (recurrent models) reads the data as it is
        calibration = _check_calibration(job.calibration_x)
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


def _run_child(work: Path, requests: list[dict], jobs: list[ExportJob], timeout: float, quiet: bool) -> list[dict]:
    """Run the conversion child; return its per-job outcomes or raise ExportError for the job
    that failed (the first one without a successful outcome)."""
    first = jobs[0]
    run = run_child("condense.export.convert", {"jobs": requests}, what=f"Exporting {first.model_path}",
                    timeout=timeout, quiet=quiet, work=work)
    outcomes = run.result if isinstance(run.result, list) else []
    if run.returncode == 0 and len(outcomes) == len(jobs) and all(o.get("ok") for o in outcomes):
        return outcomes
    failed = next((i for i, o in enumerate(outcomes) if not o.get("ok")), min(len(outcomes), len(jobs) - 1))
    job = jobs[failed]
    outcome = outcomes[failed] if failed < len(outcomes) else None
    if outcome is not None and outcome.get("error"):
        cause = f"{outcome['error_type']}: {outcome['error']}"
        note = " See the converter output above." if not quiet else ""  # the full output stays on .output
    else:
        cause = run.failure().replace("the child process", "the converter process")
        if run.returncode is not None and -run.returncode == signal.SIGSEGV:
            cause += ", a crash inside the TensorFlow Lite converter"
        note = run.output_note()
    others = f" No file of the {len(jobs)} jobs in this call was written." if len(jobs) > 1 else " No file was written."
    raise ExportError(
        f"Exporting {job.model_path} to {job.fmt} .tflite failed: {cause}.{others}{note}",
        model_path=job.model_path, fmt=job.fmt, returncode=run.returncode, output=run.output,
    )


# ----------------------------------------------------------------------------------------------
# Child side: `python -m condense.export.convert REQUEST.json`
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
    """Load, choose the graph, convert, edit, check; write the bytes to ``request['out_path']``."""
    started = time.perf_counter()
    fault = os.environ.get(FAULT_ENV, "").strip().lower()
    if fault and fault not in _FAULTS:
        raise ValueError(f"{FAULT_ENV} must be one of {_FAULTS} or unset, got {fault!r}")

    import keras
    import tensorflow as tf

    import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

    fmt = request["fmt"]
    model = keras.saving.load_model(request["model_path"], safe_mode=True, compile=False)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"only single-input, single-output models are supported, got "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
    sample_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    calibration = np.load(request["calibration"]) if request.get("calibration") else None
    if calibration is not None and tuple(calibration.shape[1:]) != sample_shape:
        raise ValueError(f"calibration_x has samples of shape {tuple(calibration.shape[1:])}, "
                         f"the model expects {sample_shape}")
    recurrent = _is_recurrent(model)
    spec = get_format(fmt)
    if request.get("form", "sequence") == "step":
        return _convert_step(request, model, calibration, spec, sample_shape, started)
    float_head = spec.integer_only and not request["int8_io"]
    if recurrent:
        plan = _plan_recurrent(model, request, calibration, float_head)
    elif request.get("dynamic_batch") or model.inputs[0].shape[0] is not None:
        route = "dynamic batch" if model.inputs[0].shape[0] is None else f"batch {model.inputs[0].shape[0]}"
        plan = {"route": route, "graph": model, "head": None, "masking": None, "warnings": []}
    else:  # batch 1 unless a batched file is asked for: LiteRT.js and TFLM take a fixed shape
        from condense.models import rebuild_with_batch

        plan = {"route": "batch 1", "graph": rebuild_with_batch(model, batch_size=1), "head": None, "masking": None,
                "warnings": []}

    graph = plan["graph"]
    if isinstance(graph, keras.Model):
        converter = tf.lite.TFLiteConverter.from_keras_model(graph)
    else:  # a rebuilt graph: (concrete function, the module that owns it)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([graph[0]], graph[1])
    if spec.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.integer_only:
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

    data = _edit(bytes(converter.convert()), fmt, plan)
    data = _with_request_metadata(data, request, route=plan["route"])
    ops = op_names(data)
    stats = constant_stats(data)
    file = _ConvertedFile(data=data, model=model, plan=plan, ops=ops, stats=stats, sample_shape=sample_shape,
                          recurrent=recurrent, calibration=calibration)
    for check in spec.checks:
        FILE_CHECKS[check](file)
    _write_output(request["out_path"], data)
    return {
        "fmt": fmt, "route": plan["route"], "recurrent": recurrent, "ops": sorted(set(ops)),
        "input_shape": [None, *sample_shape] if plan["route"] == "dynamic batch" else [1, *sample_shape],
        "io": "int8" if request.get("int8_io") else "float32",
        "masking": plan["masking"], "cell_state_max_abs": plan.get("cell_state_max_abs"),
        "warnings": plan["warnings"],
        "bytes": len(data), "constant_bytes": stats["bytes"],
        "seconds": round(time.perf_counter() - started, 3),
    }


def _with_request_metadata(data: bytes, request: dict, **facts) -> bytes:
    """``data`` with the job's metadata (:mod:`condense.export.metadata`) plus what the conversion
    found (route, states), when the job carries metadata."""
    if not request.get("metadata"):
        return data
    from condense.export.metadata import with_metadata

    return with_metadata(data, {**request["metadata"], **facts})


def _write_output(path: str, data: bytes) -> None:
    """The checked file's bytes, on disk (the parent renames the temporary path into place)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _convert_step(request: dict, model, calibration, spec, sample_shape: tuple, started: float) -> dict:
    """The step form (:mod:`condense.export.step_export`): convert, check, write."""
    from condense.export.step_export import check_step_file, convert_step

    if not _is_recurrent(model):
        raise ValueError(f"{request['model_path']} has no recurrent layer: a step file steps a recurrent state "
                         "hour by hour (export the sequence form)")
    normalizer = request.get("normalizer")
    data, plan = convert_step(model, calibration, spec, request["model_path"], normalizer=normalizer)
    data = _with_request_metadata(data, request, route=plan["route"], states=plan["states"],
                                  inputs=["x", *(s["name"] for s in plan["states"])],
                                  outputs=["p", *(s["output"] for s in plan["states"])])
    ops = op_names(data)
    stats = constant_stats(data)
    if spec.integer_only:
        _check_int8_weights_only(_ConvertedFile(data, model, plan, ops, stats, sample_shape, True, calibration))
    measured = check_step_file(data, ops, model, calibration, request["fmt"], normalizer=normalizer)
    _write_output(request["out_path"], data)
    return {
        "fmt": request["fmt"], "form": "step", "route": plan["route"], "recurrent": True, "ops": sorted(set(ops)),
        "input_shape": [1, sample_shape[-1]], "steps": plan["steps"], "states": plan["states"], "io": "float32",
        "masking": plan["masking"], "cell_state_max_abs": None, "warnings": plan["warnings"],
        "normalizer_folded": normalizer is not None,
        "bytes": len(data), "constant_bytes": stats["bytes"], **measured,
        "seconds": round(time.perf_counter() - started, 3),
    }


@dataclass
class _ConvertedFile:
    """What a file check sees: the bytes, the Keras model, the plan, the file's ops and constants."""

    data: bytes
    model: object
    plan: dict
    ops: list
    stats: dict
    sample_shape: tuple
    recurrent: bool
    calibration: np.ndarray | None


def _check_smoke(file: _ConvertedFile) -> None:
    _smoke_test(file.data, file.sample_shape)


def _check_fused_when_planned(file: _ConvertedFile) -> None:
    if file.plan["route"].startswith("fused") and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in file.ops:
        raise RuntimeError(f"the converter did not fuse the LSTM layers (ops: {sorted(set(file.ops))})")


def _check_int8_weights_only(file: _ConvertedFile) -> None:
    int8_bytes, float_bytes = file.stats["bytes"].get("int8", 0), file.stats["bytes"].get("float32", 0)
    if not (int8_bytes > 0 and float_bytes < int8_bytes):
        raise RuntimeError(f"the converter left float weights in a full-int8 model "
                           f"(constant bytes by dtype: {file.stats['bytes']})")


def _check_int8_weights_where_large(file: _ConvertedFile) -> None:
    large = sum(1 for w in file.model.weights if int(np.prod(w.shape)) >= DYNAMIC_MIN_ELEMENTS)
    if large and not file.stats["bytes"].get("int8", 0):
        raise RuntimeError(f"dynamic-range quantization stored no int8 weights although {large} weight "
                           f"tensors have >= {DYNAMIC_MIN_ELEMENTS} elements (constant bytes: {file.stats['bytes']})")


def _check_float_parity_recurrent(file: _ConvertedFile) -> None:
    if file.recurrent and file.calibration is not None:
        _check_float_parity(file.model, file.data, file.calibration[:FLOAT_SELF_CHECK_SAMPLES], file.plan["route"])


#: The checks a format can ask the conversion child to run before a file is written
#: (:attr:`condense.export.formats.ExportFormat.checks`); each raises when the file is wrong.
FILE_CHECKS: dict[str, Callable[[_ConvertedFile], None]] = {
    "smoke": _check_smoke,  # one zero sample runs and gives a finite output
    "fused_when_planned": _check_fused_when_planned,  # the fused LSTM op is really in the file
    "int8_weights_only": _check_int8_weights_only,  # full integer: the weights are int8
    "int8_weights_where_large": _check_int8_weights_where_large,  # dynamic range: large tensors are int8
    "float_parity": _check_float_parity_recurrent,  # a rebuilt float32 recurrent graph equals Keras
}


#: Calibration samples the child runs through a float32 recurrent file and Keras before writing it.
FLOAT_SELF_CHECK_SAMPLES = 32
#: Largest probability difference a float32 recurrent file may have from Keras in that check.
FLOAT_SELF_CHECK_TOL = 1e-4
#: The cell clip the converter hard-codes on fused Keras LSTM ops (kept in full-int8 files).
CONVERTER_CELL_CLIP = 10.0


def _plan_recurrent(model, request: dict, calibration, float_head: bool) -> dict:
    """Choose the graph of a recurrent model (see "How recurrent models are converted")."""
    from condense.export import recurrent_graphs as rg
    from condense.models import rebuild_with_batch

    fmt, route = request["fmt"], request.get("route", "auto")
    name = request["model_path"]
    warnings: list[str] = []
    if route in ("while", "unrolled"):  # the Keras 3 default conversion, exactly as Keras builds it
        graph = rebuild_with_batch(model, batch_size=1, unroll=route == "unrolled")
        return {"route": f"{route} (Keras 3 default conversion)", "graph": graph, "head": None,
                "masking": {"dropped": False, "reason": "requested route keeps the model as it is"},
                "warnings": warnings}
    chain = rg.analyse(model)
    masking = {"dropped": chain.masking is None, "reason": "the model has no Masking layer"}
    if chain.problem:
        masking = {"dropped": False, "reason": f"not a chain the rebuilt graphs know ({chain.problem})"}
    elif chain.masking is not None:
        mask_value = float(chain.masking.mask_value)
        if calibration is None:
            masking["reason"] = "no calibration_x to check that no time step is masked"
        else:
            samples, steps = rg.masked_steps(calibration, mask_value)
            masking.update(checked_samples=int(len(calibration)), masked_samples=samples, masked_steps=steps)
            masking["dropped"] = steps == 0
            masking["reason"] = ("no time step of the checked data is masked: dropping Masking is exact"
                                 if steps == 0 else
                                 f"{name}: {samples} of {len(calibration)} checked samples have {steps} time step(s) "
                                 f"with every feature equal to the mask value {mask_value:g}: Masking kept")
            if steps:
                warnings.append(masking["reason"])
    if not masking["dropped"]:
        if route == "fused":
            raise ValueError(f"cannot export {name} with the fused LSTM op: {masking['reason']}")
        unroll = get_format(fmt).integer_only  # full-int8 calibration of a WHILE loop crashes
        return {"route": ("unrolled" if unroll else "while") + " + Masking",
                "graph": rebuild_with_batch(model, batch_size=1, unroll=unroll), "head": None,
                "masking": masking, "warnings": warnings}
    # int8 with float output: quantize up to the last hidden state, append the Dense head in float
    head = None
    if float_head and chain.head is not None:
        kernel, bias = (np.asarray(w, np.float32) for w in chain.head.get_weights())
        head = (kernel, bias, chain.head_activation)
    if not chain.fused_problem:
        graph = rg.FusedGraph(chain, head=head is None)
        plan = {"route": "fused", "graph": graph.concrete_function(), "head": head, "masking": masking,
                "warnings": warnings}
        if calibration is not None:
            peaks = rg.lstm_cell_state_max(chain, calibration)
            plan["cell_state_max_abs"] = max(peaks.values()) if peaks else None
            if get_format(fmt).integer_only and peaks and max(peaks.values()) > CONVERTER_CELL_CLIP:
                warnings.append(f"{name}: the LSTM cell state reaches {max(peaks.values()):.1f} on the calibration "
                                f"data; the int8 LSTM op clips it at {CONVERTER_CELL_CLIP:g}")
        return plan
    if route == "fused":
        raise ValueError(f"cannot export {name} with the fused LSTM op: {chain.fused_problem}")
    if get_format(fmt).integer_only and not chain.hoist_problem:
        graph = rg.HoistedGatesGraph(chain, head=head is None)
        return {"route": "hoisted, unrolled", "graph": graph.concrete_function(), "head": head,
                "masking": masking, "warnings": warnings, "strip": True}
    unroll = get_format(fmt).integer_only
    return {"route": "unrolled" if unroll else "while", "graph": rg.keras_chain(model, chain, unroll=unroll),
            "head": None, "masking": masking, "warnings": warnings, "strip": unroll}


def _edit(data: bytes, fmt: str, plan: dict) -> bytes:
    """The edits the converter cannot make (:mod:`condense.export.tflite_edit`) for this route."""
    from condense.export import tflite_edit

    fused = plan["route"].startswith("fused")
    if not (fused or plan.get("head") is not None or plan.get("strip")):
        return data
    model = tflite_edit.read_model(data)
    if fused:
        for edit in get_format(fmt).fused_lstm_edits:
            getattr(tflite_edit, edit)(model)
    if plan.get("head") is not None:
        kernel, bias, activation = plan["head"]
        tflite_edit.append_dense_head(model, kernel, bias, activation)
    if plan.get("strip"):
        tflite_edit.strip_names(model)
    return tflite_edit.write_model(model)


def _check_float_parity(model, data: bytes, x: np.ndarray, route: str) -> None:
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


def _convert_jobs(request: dict) -> list[dict]:
    """The child's handler: convert the jobs in order, reporting after each; stop at the first
    failure (the parent writes nothing then)."""
    outcomes: list[dict] = []
    for job in request["jobs"]:
        try:
            outcome = {"ok": True, **_convert(job)}
        except Exception as exc:  # one structured outcome per job for the parent
            outcome = error_result(exc)
        outcomes.append(outcome)
        write_result(request, outcomes)  # after every job: the parent sees how far we got
        if not outcome["ok"]:
            raise SystemExit(1)  # the outcomes so far are written; exit status 1 says a job failed
        import keras

        keras.backend.clear_session()
    return outcomes


if __name__ == "__main__":
    raise SystemExit(child_main(_convert_jobs))
