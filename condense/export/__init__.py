"""Keras model -> ``.tflite`` file, run on LiteRT and TensorFlow Lite for Microcontrollers.

* :mod:`~condense.export.formats` — the formats as data (a registry: a new format is one entry).
* :mod:`~condense.export.convert` — conversion in a child process (routes, checks), LiteRT runner.
* :mod:`~condense.export.recurrent_graphs` — the graphs the converter sees for recurrent models.
* :mod:`~condense.export.tflite_edit` — flatbuffer edits the converter cannot make.
* :mod:`~condense.export.micro` — TFLM: run a file, find its smallest arena.

The public names below are loaded on first use, so ``import condense.export.formats`` (the CLI)
stays light and ``python -m condense.export.convert`` (the conversion child) runs its module
once. Design notes: ``docs/export.md`` and ``docs/recurrent-export.md``.
"""

from __future__ import annotations

import importlib

#: Public name -> the module that defines it.
_PUBLIC = {
    "FORMATS": "formats", "ExportFormat": "formats", "get_format": "formats", "register_format": "formats",
    "ROUTES": "formats", "ExportError": "convert", "ExportJob": "convert", "TFLiteModel": "convert",
    "clip_calibration": "convert", "export_tflite": "convert", "export_tflite_many": "convert",
    "parity_check": "convert",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"condense.export.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'condense.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
