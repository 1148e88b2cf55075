"""The ``.tflite`` formats, as data: one :class:`ExportFormat` entry per format.

Everything that lists, converts, checks, scores, benchmarks or reports formats reads this
registry: the CLI's ``--format`` choices, the conversion child's converter settings and
checks, :class:`~condense.runs.scoring.SavedModel`, the benchmark's converted rows and the
report's file-size and latency columns. Adding a format is one :func:`register_format` call (plus,
if it needs one, a check added with :func:`condense.export.file_checks.register_file_check` in a
module). The format travels to the conversion child as data, so one registered in a script converts
too (:mod:`condense.plugins`). Pure Python: the CLI reads it without starting TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from condense.checks import check_choice
from condense.registry import add_entry

__all__ = ["ExportFormat", "FORMATS", "FORMS", "ROUTES", "format_names", "get_format", "is_quantized", "register_format",
           "score_format_names"]


@dataclass(frozen=True)
class ExportFormat:
    """One ``.tflite`` format.

    Attributes:
        name: the format's name (``--format NAME``, ``model.NAME.tflite``).
        label: how tables and messages call it ("TFLite int8 (full integer)").
        help: one line for ``condense export --help``.
        weights: dtype of the stored weights (``"float32"`` or ``"int8"``).
        activations: dtype of the activations inside the graph.
        optimize: set the converter's ``Optimize.DEFAULT`` (weight quantization).
        integer_only: calibrate activations on a representative dataset and allow only int8
            builtin ops (full-integer quantization); needs calibration data.
        fused_lstm_edits: :mod:`condense.export.tflite_edit` functions applied, in order, to a
            file whose LSTM layers were fused (``unclip_lstm_cells``, ``quantize_lstm_weights``).
        checks: names of the checks the conversion child runs on the file before writing it
            (:data:`condense.export.file_checks.FILE_CHECKS`).
        bench_sources: which trained benchmark rows get a converted row in this format:
            ``"recurrent"`` (every LSTM / hLSTM row) and/or ``"dnn"`` (the DNN baseline).
    """

    name: str
    label: str
    help: str
    weights: str
    activations: str
    optimize: bool = False
    integer_only: bool = False
    fused_lstm_edits: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    bench_sources: tuple[str, ...] = ()

    @property
    def needs_calibration(self) -> bool:
        """True when the conversion needs ``calibration_x`` (activation ranges)."""
        return self.integer_only

    @property
    def quantized(self) -> bool:
        """True when the file stores int8 weights (its own size and latency are what ships)."""
        return self.weights == "int8"


#: How a recurrent model's graph is built for the converter (``docs/recurrent-export.md``):
#: ``auto`` the fastest exact graph (fused LSTM op, hoisted hLSTM gates, or a loop without
#: Masking where that is exact); ``fused`` that op or an error; ``while`` / ``unrolled`` the
#: Keras 3 default conversion, Masking kept. Models without recurrent layers ignore it.
ROUTES = ("auto", "fused", "while", "unrolled")
#: Forms of a recurrent model's file: the whole sequence in one call, or one time step per call with
#: the state as inputs and outputs (:mod:`condense.export.step_graph`).
FORMS = ("sequence", "step")

#: Every format, in the order the CLI and tables list them.
FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add ``fmt`` to :data:`FORMATS` (its name must be new); returns it."""
    if not isinstance(fmt, ExportFormat):
        raise TypeError(f"register_format expects an ExportFormat, got {type(fmt).__name__}")
    if fmt.name == "keras":
        raise ValueError("an export format named 'keras' already exists (the saved model itself)")
    return add_entry(FORMATS, fmt.name, fmt, "export format")


register_format(ExportFormat(
    "float32", "TFLite float32", "plain conversion: the same numbers as Keras",
    weights="float32", activations="float32",
    fused_lstm_edits=("unclip_lstm_cells",), checks=("smoke", "fused_when_planned", "float_parity"),
))
register_format(ExportFormat(
    "int8", "TFLite int8 (full integer)", "full integer: int8 weights and activations, calibrated on training inputs",
    weights="int8", activations="int8", optimize=True, integer_only=True,
    checks=("smoke", "fused_when_planned", "int8_weights_only"), bench_sources=("dnn", "recurrent"),
))
register_format(ExportFormat(
    "dynamic", "TFLite dynamic (int8 weights)", "dynamic range: int8 weights, float activations, no calibration",
    weights="int8", activations="float32", optimize=True,
    fused_lstm_edits=("unclip_lstm_cells", "quantize_lstm_weights"),
    checks=("smoke", "fused_when_planned", "int8_weights_where_large"), bench_sources=("recurrent",),
))


def format_names() -> tuple[str, ...]:
    """The names of every registered format, in order."""
    return tuple(FORMATS)


def score_format_names() -> tuple[str, ...]:
    """What ``--format`` accepts when scoring: ``"keras"`` (the saved model itself) or any export."""
    return ("keras", *FORMATS)


def get_format(name: str, argument: str = "fmt") -> ExportFormat:
    """The format called ``name``; a ValueError naming ``argument`` and the choices otherwise."""
    return FORMATS[check_choice(argument, name, FORMATS)]


def is_quantized(name) -> bool:
    """True for a registered format that stores int8 weights (False for anything else)."""
    fmt = FORMATS.get(name) if isinstance(name, str) else None
    return bool(fmt and fmt.quantized)
