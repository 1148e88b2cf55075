"""What a trained model needs to turn raw discretized arrays into its input: :class:`ModelInputs`.

The state is fitted on the training split only and saved beside the model as
``preprocessing.json``; ``evaluate``, ``predict`` and ``export`` reload it and never refit it
on new data.

Two input kinds:

* ``"sequence"`` — the (N, 48, C) tensor with the continuous channels standardized
  (the LSTM and hLSTM input);
* ``"features"`` — per channel, the mean over the bins where it was observed, computed on the
  standardized tensor (the DNN input, (N, C)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from condense.data.layout import ChannelLayout
from condense.data.preprocessing import Normalizer, dnn_features
from condense.io import read_json, write_json

INPUT_KINDS = ("sequence", "features")
PREPROCESSING_FILE = "preprocessing.json"


@dataclass
class ModelInputs:
    """Fitted preprocessing for one model.

    Args:
        kind: ``"sequence"`` or ``"features"`` (see the module docstring).
        layout: the channel layout of the data the model was trained on.
        normalizer: the fitted :class:`~condense.data.preprocessing.Normalizer`.
        source: the data source's own fitted state (e.g. PhysioNet 2012 imputation and outlier
            limits), needed to discretize new records the same way; empty for the IHM layout.
    """

    kind: str
    layout: ChannelLayout
    normalizer: Normalizer
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {self.kind!r}")

    @classmethod
    def fit(cls, kind: str, X_train: np.ndarray, layout: ChannelLayout, *, robust: bool = False, source=None):
        """Fit the normalizer on the training tensor ``X_train`` (N, T, C) only.

        Raises ``ValueError`` naming the channel when the training data gives a non-finite
        statistic (see :meth:`Normalizer.fit`).
        """
        normalizer = Normalizer.for_layout(layout, robust=robust).fit(X_train)
        return cls(kind=kind, layout=layout, normalizer=normalizer, source=dict(source or {}))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Raw (N, T, C) tensor -> the model's float32 input."""
        if X.ndim != 3 or X.shape[-1] != self.layout.width:
            raise ValueError(
                f"expected raw tensors of shape (N, T, {self.layout.width}) for layout "
                f"{self.layout.name!r}, got {X.shape}"
            )
        Z = self.normalizer.transform(X)
        if self.kind == "features":
            return dnn_features(Z, self.layout)
        return Z.astype(np.float32, copy=False)

    def input_shape(self, timesteps: int) -> tuple[int, ...]:
        return (timesteps, self.layout.width) if self.kind == "sequence" else (self.layout.width,)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "layout": self.layout.to_json(),
            "normalizer": self.normalizer.to_json(),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: dict) -> "ModelInputs":
        return cls(
            kind=obj["kind"],
            layout=ChannelLayout.from_json(obj["layout"]),
            normalizer=Normalizer.from_json(obj["normalizer"]),
            source=obj.get("source", {}),
        )

    def save(self, path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "ModelInputs":
        try:
            return cls.from_json(read_json(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"no preprocessing state at {path}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a condense preprocessing file ({exc})") from None
