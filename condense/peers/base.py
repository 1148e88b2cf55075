"""What the peers on hand-made features share: :class:`HandFeaturePeer`.

A peer (:mod:`condense.peers.logistic`, :mod:`condense.peers.gbm`) reads the same (N, T, C) tensors
as the neural models, turns them into hand-made summary features and fits a classical model on
them. The base class holds the parts that are the same for every peer: the fitted-state check, the
representation, the probability from the log-odds, and the one constructor the training code
calls (:meth:`for_training`). A subclass implements ``fit``, ``transform``, ``decision_function``,
``param_count``, ``get_config``, ``save`` and ``load``; its kind (name, files) is registered in
:mod:`condense.peers.kinds`.
"""

from __future__ import annotations

import numpy as np

from condense.data.layout import ChannelLayout
from condense.io import check_format_header
from condense.peers.features import feature_names

# Deferred on purpose: scikit-learn is imported inside the functions that use it, so importing this module stays
# light.

__all__ = ["HandFeaturePeer", "expit"]


def expit(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


class HandFeaturePeer:
    """Base of the peers on hand-made features (see the module docstring)."""

    #: The attribute ``fit`` and ``load`` set: the peer is fitted when it exists.
    fitted_attribute = "layout_"
    #: The ``format`` and ``format_version`` its saved JSON carries (each subclass sets its own).
    file_format = ""
    file_format_version = 1

    @classmethod
    def for_training(cls, seed: int) -> "HandFeaturePeer":
        """The peer as ``condense train --model NAME`` and the benchmark fit it (its tuned defaults)."""
        return cls(seed=seed)

    def get_config(self) -> dict:
        """The constructor arguments."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    @property
    def fitted(self) -> bool:
        return hasattr(self, self.fitted_attribute)

    def _check_fitted(self) -> None:
        if not self.fitted:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y, layout) or load(path)")

    def training_record(self, seconds: float) -> dict:
        """What a model directory's manifest records about the fit: one "epoch" of ``seconds``."""
        return {"params": int(self.param_count), "epoch_seconds": [seconds], "train_seconds": seconds,
                "val_auroc_history": [], "selected_epoch": 1, "stopped_early": False}

    def saved_header(self) -> dict:
        """The first fields of the peer's saved JSON: format, version, constructor arguments, layout, features."""
        self._check_fitted()
        return {"format": self.file_format, "format_version": self.file_format_version, "config": self.get_config(),
                "layout_name": self.layout_.name, "layout": self.layout_.to_json(),
                "feature_names": list(self.feature_names_)}

    @classmethod
    def from_saved_header(cls, obj, what: str) -> tuple["HandFeaturePeer", ChannelLayout, list[str]]:
        """(an unfitted peer with the saved arguments, the layout, the feature names) from JSON
        :meth:`saved_header` wrote; a ValueError naming what is wrong otherwise, including features
        this version computes differently (the model must then be refitted)."""
        check_format_header(obj, name=cls.file_format, version=cls.file_format_version,
                            what=f"a {cls.file_format} {what}")
        try:
            peer = cls(**obj["config"])
            layout = ChannelLayout.from_json(obj["layout"])
            names = [str(name) for name in obj["feature_names"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{cls.file_format} {what} is missing or mistypes a field: {exc}") from None
        if layout.name != obj.get("layout_name", layout.name):
            raise ValueError(f"layout_name {obj['layout_name']!r} disagrees with the layout's name {layout.name!r}")
        expected = feature_names(layout)
        if names != expected:
            raise ValueError(f"saved feature names ({len(names)}) differ from this version's features for layout "
                             f"{layout.name!r} ({len(expected)}); refit the model")
        return peer, layout, names

    def decision_function(self, X) -> np.ndarray:
        """(N,) log-odds of the positive class."""
        raise NotImplementedError

    def predict_proba(self, X) -> np.ndarray:
        """(N,) float64 probability of the positive class (in-hospital death)."""
        return expit(self.decision_function(X))
