"""What a trained model needs to turn raw discretized arrays into its input: :class:`ModelInputs`.

The state is fitted on the training split only and saved beside the model as
``preprocessing.json``; ``evaluate``, ``predict`` and ``export`` reload it and never refit it
on new data.

Two input kinds:

* ``"sequence"`` — the (N, 48, C) tensor with the continuous channels standardized
  (the LSTM and hLSTM input);
* ``"features"`` — per channel, the mean over the bins where it was observed, computed on the
  standardized tensor (the DNN input, (N, C)).

Optional extra channels (``extras``, sequence inputs only): ``"since_last"`` appends, per
variable, the time since it was last observed (:mod:`condense.data.gaps`). An input *key*
names a kind with its extras (``"sequence"``, ``"sequence+since_last"``): what a training
configuration asks for and what the benchmark prepares once per key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from condense.data.gaps import SINCE_LAST, since_last_channels, since_last_names
from condense.data.layout import ChannelLayout
from condense.data.preprocessing import Normalizer, dnn_features
from condense.io import read_state, write_json

INPUT_KINDS = ("sequence", "features")
PREPROCESSING_FILE = "preprocessing.json"
#: Extra channels a sequence input can carry, appended after the layout's channels in this order.
EXTRAS = (SINCE_LAST,)


def input_key(kind: str, extras=()) -> str:
    """``"sequence"`` or ``"sequence+since_last"``: a kind and its extras as one name."""
    return "+".join((kind, *extras))


def parse_input_key(key: str) -> tuple[str, tuple[str, ...]]:
    """The inverse of :func:`input_key`; raises ``ValueError`` on an unknown kind or extra."""
    kind, *extras = str(key).split("+")
    if kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {kind!r} (in input key {key!r})")
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown extra input channel(s) {unknown} in input key {key!r}; known: {EXTRAS}")
    return kind, tuple(extras)


@dataclass
class ModelInputs:
    """Fitted preprocessing for one model.

    Args:
        kind: ``"sequence"`` or ``"features"`` (see the module docstring).
        layout: the channel layout of the data the model was trained on.
        normalizer: the fitted :class:`~condense.data.preprocessing.Normalizer`.
        source: the data source's own fitted state (e.g. PhysioNet 2012 imputation and outlier
            limits), needed to discretize new records the same way; empty for the IHM layout.
        extras: extra channels appended to a sequence input (:data:`EXTRAS`), computed from the
            raw tensor's masks; nothing is fitted for them.
    """

    kind: str
    layout: ChannelLayout
    normalizer: Normalizer
    source: dict = field(default_factory=dict)
    extras: tuple[str, ...] = ()

    def __post_init__(self):
        self.extras = tuple(self.extras)
        parse_input_key(input_key(self.kind, self.extras))
        if self.extras and self.kind != "sequence":
            raise ValueError(f"extra channels {self.extras} apply to sequence inputs, not to {self.kind!r}")
        if SINCE_LAST in self.extras and not self.layout.mask_channels:
            raise ValueError(f"layout {self.layout.name!r} has no mask channels: no {SINCE_LAST} channels")

    @property
    def key(self) -> str:
        """The input key (:func:`input_key`)."""
        return input_key(self.kind, self.extras)

    @property
    def width(self) -> int:
        """Channels of the model input: the layout's, plus one per mask channel for ``since_last``."""
        extra = len(self.layout.mask_channels) if SINCE_LAST in self.extras else 0
        return self.layout.width + extra

    @property
    def channel_names(self) -> tuple[str, ...]:
        names = tuple(self.layout.names)
        return names + since_last_names(self.layout) if SINCE_LAST in self.extras else names

    @classmethod
    def fit(cls, kind: str, X_train: np.ndarray, layout: ChannelLayout, *, robust: bool = False, source=None):
        """Fit the normalizer on the training tensor ``X_train`` (N, T, C) only; ``kind`` is an
        input kind or key (``"sequence+since_last"``).

        Raises ``ValueError`` naming the channel when the training data gives a non-finite
        statistic (see :meth:`Normalizer.fit`).
        """
        kind, extras = parse_input_key(kind)
        normalizer = Normalizer.for_layout(layout, robust=robust).fit(X_train)
        return cls(kind=kind, layout=layout, normalizer=normalizer, source=dict(source or {}), extras=extras)

    def transform(self, X: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """Raw (N, T, C) tensor -> the model's float32 input; ``normalize=False`` leaves the continuous
        channels in their units (the input of a file with the normalizer folded in, :meth:`folded_normalizer`)."""
        if X.ndim != 3 or X.shape[-1] != self.layout.width:
            raise ValueError(
                f"expected raw tensors of shape (N, T, {self.layout.width}) for layout "
                f"{self.layout.name!r}, got {X.shape}"
            )
        Z = self.normalizer.transform(X) if normalize else np.asarray(X, np.float32)
        if self.kind == "features":
            return dnn_features(Z, self.layout)
        if SINCE_LAST in self.extras:
            Z = np.concatenate([Z, since_last_channels(X, self.layout)], axis=-1)
        return Z.astype(np.float32, copy=False)

    def folded_normalizer(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, scale)`` over the model input's :attr:`width` (0 and 1 where a channel is not
        standardized): ``transform(X) == (transform(X, normalize=False) - mean) / scale``."""
        mean, scale = np.zeros(self.width), np.ones(self.width)
        mean[list(self.normalizer.channels)] = self.normalizer.mean_
        scale[list(self.normalizer.channels)] = self.normalizer.std_
        return mean, scale

    def input_shape(self, timesteps: int) -> tuple[int, ...]:
        return (timesteps, self.width) if self.kind == "sequence" else (self.layout.width,)

    def to_json(self) -> dict:
        record = {
            "kind": self.kind,
            "layout": self.layout.to_json(),
            "normalizer": self.normalizer.to_json(),
            "source": self.source,
        }
        if self.extras:  # written only when used: files of models without extras stay as they were
            record["extras"] = list(self.extras)
        return record

    @classmethod
    def from_json(cls, obj: dict) -> "ModelInputs":
        return cls(
            kind=obj["kind"],
            layout=ChannelLayout.from_json(obj["layout"]),
            normalizer=Normalizer.from_json(obj["normalizer"]),
            source=obj.get("source", {}),
            extras=tuple(obj.get("extras", ())),
        )

    def save(self, path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "ModelInputs":
        return read_state(path, cls.from_json, "preprocessing state")


def fit_inputs(dataset, kind: str) -> ModelInputs:
    """The preprocessing of input ``kind`` for ``dataset`` (a :class:`~condense.data.dataset.Dataset`),
    fitted on its training split only (the source's fitted state, e.g. PhysioNet's, travels along)."""
    return ModelInputs.fit(kind, dataset.train.X, dataset.layout, source=dataset.extras.get("source_state"))


def prepared_splits(dataset, inputs: ModelInputs) -> dict[str, np.ndarray]:
    """Model inputs for every split: ``{"train": x, "val": x, "test": x}``."""
    return {name: inputs.transform(dataset.split(name).X) for name in ("train", "val", "test")}
