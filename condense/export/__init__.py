"""Keras model -> ``.tflite`` file, run on LiteRT and TensorFlow Lite for Microcontrollers.

* :mod:`~condense.export.formats` — the formats as data (a registry: a new format is one entry).
* :mod:`~condense.export.convert` — conversion in a child process: the parent's side (jobs, errors).
* :mod:`~condense.export.conversion_child` — the child's side (routes, converter settings, edits).
* :mod:`~condense.export.file_checks` — the checks a file passes before it is written (``register_file_check``).
* :mod:`~condense.export.litert_runner` — run any exported file on LiteRT (``open_tflite``, ``TFLiteModel``).
* :mod:`~condense.export.inspection` — what a file holds (operators, variable tensors, constants).
* :mod:`~condense.export.step_graph`, ``step_export``, ``step_runner`` — one-hour step files.
* :mod:`~condense.export.metadata` — the input contract inside every file.
* :mod:`~condense.export.recurrent_graphs` — the graphs the converter sees for recurrent models.
* :mod:`~condense.export.tflite_edit` — flatbuffer edits the converter cannot make.
* :mod:`~condense.export.micro` — TFLM: run a file, find its smallest arena.

The public names below are loaded on first use, so ``import condense.export.formats`` (the CLI)
stays light and ``python -m condense.export.conversion_child`` runs its module once. Design notes: ``docs/export.md`` and ``docs/recurrent-export.md``.
"""

from __future__ import annotations

import importlib

#: Public name -> the module that defines it.
_PUBLIC = {
    "FORMATS": "formats", "ExportFormat": "formats", "get_format": "formats", "register_format": "formats",
    "ROUTES": "formats", "ExportError": "convert", "ExportJob": "convert", "TFLiteModel": "litert_runner", "open_tflite": "litert_runner",
    "clip_calibration": "convert", "export_tflite": "convert", "export_tflite_many": "convert",
    "parity_check": "litert_runner", "register_file_check": "file_checks",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"condense.export.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'condense.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
