"""The input contract a ``.tflite`` file carries: a JSON entry in the flatbuffer's metadata.

``condense export`` writes a :data:`METADATA_NAME` metadata entry into every file it makes from a model
directory, so a device app needs nothing beside the file: the form (sequence or step), format,
hours per step, the channels in order (``preprocessing.layout``: names, which are continuous), the
preprocessing exactly as ``preprocessing.json`` holds it (normalizer mean / scale per continuous channel, the source's
imputation and categorical state), the rules that turn a patient file into inputs
(:func:`condense.data.contract.input_rules`: header, variables, one-hot values, imputation, ranges),
the state tensors of a step file, what the output means, the
training data's fingerprint, the model's test AUROC and the condense version.

:func:`read_metadata` reads it without TensorFlow (LiteRT's flatbuffer schema); a file without
the entry, or with one that does not parse, still loads: the note says the metadata is missing.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from condense import __version__
from condense.data.contract import input_rules
from condense.export import tflite_edit

# Deferred on purpose: LiteRT is imported inside the functions that use it, so importing this module stays light.

__all__ = ["METADATA_NAME", "read_metadata", "with_metadata", "file_metadata"]

#: Name of the metadata entry (``Model.metadata[].name``) that holds condense's JSON, zlib-compressed
#: (RFC 1950: Python's ``zlib``, the browser's ``DecompressionStream("deflate")``): the channel names
#: repeat, and a microcontroller's flash counts every byte (about 7 KB of JSON becomes about 2 KB).
METADATA_NAME = "condense.json.zlib"
#: Version of the JSON's layout.
METADATA_VERSION = 1


def file_metadata(manifest: dict, preprocessing: dict, *, fmt: str, form: str, steps: int | None,
                  normalizer_folded: bool = False) -> dict:
    """The contract of a file exported from a model directory (``manifest.json``,
    ``preprocessing.json``); the conversion child adds the step file's state tensors.
    ``normalizer_folded``: the file takes the continuous channels in their units (the normalizer's
    mean / scale are folded into its first layer; ``preprocessing.normalizer`` is then for reference)."""

    layout = preprocessing.get("layout") or {}
    test = (manifest.get("metrics") or {}).get("test") or {}
    return {
        "metadata_version": METADATA_VERSION,
        "condense_version": __version__,
        "model": manifest.get("model"),
        "format": fmt,
        "form": form,
        "hours_per_step": 1,
        "steps": None if steps is None else int(steps),
        "channels": "preprocessing.layout.names",
        "normalizer_folded": bool(normalizer_folded),
        "preprocessing": preprocessing,
        "rules": input_rules(layout.get("name", ""), layout.get("names", ())),
        "output": "probability of in-hospital death; trained for the value after the last of the steps",
        "data_fingerprint": (manifest.get("data") or {}).get("fingerprint"),
        "test_auroc": test.get("auroc"),
    }


def with_metadata(data: bytes, entry: dict) -> bytes:
    """``data`` (a ``.tflite`` file's bytes) with ``entry`` as its :data:`METADATA_NAME` metadata (replacing
    an earlier one). Child side: needs TensorFlow's flatbuffer tools."""

    model = tflite_edit.read_model(data)
    model.metadata = [m for m in (model.metadata or []) if tflite_edit._decoded(m.name) != METADATA_NAME]
    packed = zlib.compress(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode(), 9)
    meta = tflite_edit._schema().MetadataT()
    meta.name, meta.buffer = METADATA_NAME, tflite_edit._new_buffer(model, np.frombuffer(packed, dtype=np.uint8))
    model.metadata.append(meta)
    return tflite_edit.write_model(model)


def read_metadata(source: str | os.PathLike | bytes) -> tuple[dict | None, str]:
    """``(metadata, note)``: the file's condense metadata, or ``None`` and why (no entry, or one
    that does not parse); ``note`` is empty when the metadata was read."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for k in range(model.MetadataLength()):
        entry = model.Metadata(k)
        if tflite_edit._decoded(entry.Name()) != METADATA_NAME:
            continue
        raw = model.Buffers(entry.Buffer()).DataAsNumpy()
        try:
            parsed = json.loads(zlib.decompress(bytes(raw)).decode())
        except (TypeError, ValueError, UnicodeDecodeError, zlib.error) as exc:
            return None, f"the condense metadata does not parse ({type(exc).__name__}): metadata missing"
        if not isinstance(parsed, dict):
            return None, "the condense metadata is not a JSON object: metadata missing"
        return parsed, ""
    return None, "no condense metadata in the file (not exported by condense export): metadata missing"
