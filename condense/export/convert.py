"""Convert a saved Keras model to a ``.tflite`` file in a child process: the parent's side.

:func:`export_tflite` converts one file, :func:`export_tflite_many` several in one child process
(TensorFlow starts once). This module checks the settings where they enter (:class:`ExportJob`),
the model file and the calibration data, sends each job with its format as data and the plugin
modules the child must import (:mod:`condense.plugins`), and turns a failed or crashed child into an
:class:`ExportError` with no partial file; on success the files appear atomically. The child's side
(routes, converter settings, edits): :mod:`condense.export.conversion_child`; the checks a file must
pass before it is written: :mod:`condense.export.file_checks`; running the files on LiteRT:
:mod:`condense.export.litert_runner`; reading what a file holds: :mod:`condense.export.inspection`.

Design notes, with the measurements behind them: ``docs/export.md`` (formats, int8 input range,
int8 I/O, the child process, the test hook ``CONDENSE_EXPORT_FAULT``) and
``docs/recurrent-export.md`` (routes, Masking, the cell clip, TFLM).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condense.checks import check_choice
from condense._child import ChildError, run_child
from condense.export.formats import FORMATS, FORMS, ROUTES, get_format
from condense.io import atomic_path, work_folder
from condense.plugins import plugin_modules

__all__ = [
    "FORMATS",
    "ROUTES",
    "ExportError",
    "ExportJob",
    "export_tflite",
    "export_tflite_many",
    "clip_calibration",
]


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
    #: Modules the conversion child imports first (layers used through ``custom_objects``); what was
    #: registered in this process is found by itself (:func:`condense.plugins.plugin_modules`).
    plugins: tuple[str, ...] = ()

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
                "format": dataclasses.asdict(get_format(job.fmt)),  # as registered here, plugins included
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
        plugins = plugin_modules(dict.fromkeys(m for job in jobs for m in job.plugins),
                                 checks={c for job in jobs for c in get_format(job.fmt).checks},
                                 models=[job.model_path for job in jobs])
        outcomes = _run_child(work, requests, plugins, jobs, timeout * len(jobs), quiet)
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


def _run_child(work: Path, requests: list[dict], plugins: list[dict], jobs: list[ExportJob], timeout: float,
               quiet: bool) -> list[dict]:
    """Run the conversion child; return its per-job outcomes or raise ExportError for the job
    that failed (the first one without a successful outcome)."""
    first = jobs[0]
    run = run_child("condense.export.conversion_child", {"jobs": requests, "plugins": plugins},
                    what=f"Exporting {first.model_path}",
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
