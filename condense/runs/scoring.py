"""Score raw arrays with a saved model in any of its formats (Keras, a peer, or a .tflite export).

Used by ``evaluate``, ``predict`` and the benchmark, so all three score exactly the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from condense.export.formats import score_format_names
from condense.export.litert_runner import open_tflite
from condense.export.metadata import read_metadata
from condense.peers.kinds import PEERS
from condense.runs.model_dir import check_export, load_run
from condense.train import predict_proba


class SavedModel:
    """A model directory loaded for scoring.

    Args:
        model_dir: a directory written by ``condense train``.
        fmt: ``"keras"`` (the saved Keras model, or the saved peer: LR, GBM) or an exported
            ``.tflite`` format (:mod:`condense.export.formats`; run with LiteRT).
    """

    def __init__(self, model_dir, fmt: str = "keras", *, num_threads: int = 1, form: str = "sequence"):
        if fmt not in score_format_names():
            raise ValueError(f"Argument `fmt` must be one of {score_format_names()}, got fmt={fmt!r}.")
        self.model_dir = Path(model_dir)
        self.model, self.inputs, self.manifest = load_run(self.model_dir)
        self.fmt, self.form = fmt, form
        self._tflite = None
        #: the exported file takes inputs in clinical units (its metadata says the normalizer is folded in)
        self.normalizer_folded = False
        if form != "sequence" and fmt == "keras":
            raise ValueError(f"form={form!r} is a .tflite file's form: give a .tflite format (float32, dynamic, int8)")
        if fmt != "keras":
            peer = self.manifest.get("model")
            if peer in PEERS:
                raise ValueError(f"{model_dir}: {PEERS[peer].description} has no .tflite export; score the saved model "
                                 "itself (format 'keras')")
            path = check_export(self.model_dir, self.manifest, fmt, form)  # missing or stale: a clear error

            self._tflite = open_tflite(path, num_threads=num_threads)
            metadata = read_metadata(path)[0] or {}
            self.normalizer_folded = bool(metadata.get("normalizer_folded"))

    @property
    def label(self) -> str:
        """What scores, for output lines: ``keras``, the saved peer (``lr``, ``gbm``), or the file's
        format (``int8``; ``int8 step`` for a step file)."""
        if self.fmt == "keras":
            return "keras" if hasattr(self.model, "get_weights") else str(self.manifest.get("model"))
        return self.fmt + (f" {self.form}" if self.form != "sequence" else "")

    def predict_inputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (N,) float64 for already-preprocessed model inputs (not normalized where the
        file has the normalizer folded in: :attr:`normalizer_folded`)."""
        if self._tflite is not None:
            return np.asarray(self._tflite.predict(x), dtype=np.float64).reshape(-1)
        if hasattr(self.model, "predict_proba"):
            return np.asarray(self.model.predict_proba(x), dtype=np.float64).reshape(-1)

        return predict_proba(self.model, x)

    def predict_raw(self, X_raw: np.ndarray) -> np.ndarray:
        """Probabilities (N,) float64 for raw discretized tensors (N, T, C)."""
        return self.predict_inputs(self.inputs.transform(X_raw, normalize=not self.normalizer_folded))
