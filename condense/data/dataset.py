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

    @property
    def train_death_rate(self) -> float:
        """The training split's share of deaths: the challenge's event-1 threshold (no test label used)."""
        return float(np.mean(self.train.y == 1))

    def require_labels(self, splits=("train", "val", "test")) -> None:
        """Check that training can use this data: every record of ``splits`` has a 0/1 label and
        each of them holds both classes (AUROC, epoch selection and early stopping need both).

        Raises:
            DataError: naming the split, the count and the first ids of unlabelled records, or
                the split that holds a single class.
        """
        for name in splits:
            part = self.split(name)
            if len(part) == 0:
                raise DataError(f"{self.source}: the {name} split is empty")
            unlabelled = np.flatnonzero(~np.isin(part.y, (0, 1)))
            if unlabelled.size:
                first = ", ".join(str(i) for i in part.ids[unlabelled[:5]])
                raise DataError(f"{self.source}: {unlabelled.size} of {len(part)} {name} records have no outcome "
                                f"label (first: {first}); training needs every record labelled (is the outcomes "
                                "file complete?)")
            classes = np.unique(part.y)
            if classes.size < 2:
                raise DataError(f"{self.source}: the {name} split holds only label {int(classes[0])} "
                                f"({len(part)} records); AUROC and epoch selection need both classes")
