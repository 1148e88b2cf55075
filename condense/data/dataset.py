"""The arrays every layer above the data layer consumes: a :class:`Dataset` of three splits.

``load_dataset(spec)`` is the one entry point: ``spec`` is a path to an IHM-layout folder,
``synthetic[:EPISODES[:SEED]]`` (a synthetic cohort generated once into the cache), or
``physionet2012:PATH``. ``X`` arrays are raw discretized values (not normalized), float32,
shape (N, 48, C); normalization is fitted later on ``train`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from condense.data.layout import ChannelLayout


class DataError(ValueError):
    """Bad or missing input data. The message names the file (and row) at fault."""


@dataclass
class Split:
    """One split: ``X`` (N, T, C) float32 raw values, ``y`` (N,) int labels (-1 = unknown),
    ``ids`` (N,) fixed-width strings (episode file names or record ids), in listfile order."""

    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    def __post_init__(self):
        if not (len(self.X) == len(self.y) == len(self.ids)):
            raise ValueError(f"split arrays disagree in length: X {len(self.X)}, y {len(self.y)}, ids {len(self.ids)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def has_labels(self) -> bool:
        return len(self.y) > 0 and bool(np.all(self.y >= 0))


@dataclass
class Dataset:
    """Train/val/test splits of one data source plus what is known about it.

    ``fingerprint`` identifies the data files and the settings that produced the arrays;
    ``issues`` counts bad-input problems that were treated as missing (never silently dropped);
    ``extras`` carries source-specific columns (e.g. PhysioNet's SAPS-I / SOFA scores per split);
    ``extras["reference_scores"]`` maps such a column to its display name when the benchmark
    should report it as a reference row (a risk score, higher = sicker; NaN where unknown).
    """

    source: str
    layout: ChannelLayout
    train: Split
    val: Split
    test: Split
    fingerprint: str
    issues: dict[str, int] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {name!r}")
        return getattr(self, name)
