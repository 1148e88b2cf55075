"""Keras model -> ``.tflite`` file, run on LiteRT and TensorFlow Lite for Microcontrollers.

* :mod:`~condense.export.formats` — the formats as data (a registry: a new format is one entry).
* :mod:`~condense.export.convert` — conversion in a child process (formats, routes, checks).
* :mod:`~condense.export.recurrent_graphs` — the graphs the converter sees for recurrent models.
* :mod:`~condense.export.tflite_edit` — flatbuffer edits the converter cannot make.
* :mod:`~condense.export.micro` — TFLM: run a file, find its smallest arena.

The design (routes, Masking, hybrid LSTM, state reset) is in ``docs/recurrent-export.md``.
"""

from condense.export.convert import (
    ROUTES,
    ExportError,
    ExportJob,
    TFLiteModel,
    clip_calibration,
    export_tflite,
    export_tflite_many,
    parity_check,
)
from condense.export.formats import FORMATS, ExportFormat, get_format, register_format

__all__ = ["FORMATS", "ROUTES", "ExportError", "ExportFormat", "ExportJob", "TFLiteModel", "clip_calibration",
           "export_tflite", "export_tflite_many", "get_format", "parity_check", "register_format"]
