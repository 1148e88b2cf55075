"""What each input channel of a (time, channel) tensor means.

A :class:`ChannelLayout` travels with every dataset and every trained model: the normalizer
reads which channels are continuous, the DNN features read which mask channel tells whether a
channel was observed in a bin, and the logistic-regression peer reads both.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChannelLayout:
    """Channel meaning for one data source.

    Args:
        name: the source's layout name (``"ihm-76"``, ``"physionet2012"``).
        names: one name per channel, in tensor order.
        continuous: indices of the channels the normalizer standardizes.
        observed_by: per channel, the index of the mask channel that is 1 in the bins where this
            channel's variable was really measured; ``-1`` for channels that are always "observed"
            (the mask channels themselves, static descriptors).
        variables: the source variable behind each channel (several one-hot channels share one).
    """

    name: str
    names: tuple[str, ...]
    continuous: tuple[int, ...]
    observed_by: tuple[int, ...]
    variables: tuple[str, ...] = field(default=())

    def __post_init__(self):
        width = len(self.names)
        if len(self.observed_by) != width:
            raise ValueError(f"observed_by has {len(self.observed_by)} entries for {width} channels")
        if self.variables and len(self.variables) != width:
            raise ValueError(f"variables has {len(self.variables)} entries for {width} channels")
        bad = [i for i in self.continuous if not 0 <= i < width]
        if bad:
            raise ValueError(f"continuous channel indices out of range 0..{width - 1}: {bad}")

    @property
    def width(self) -> int:
        return len(self.names)

    @property
    def mask_channels(self) -> tuple[int, ...]:
        """Indices of the channels some other channel points at in ``observed_by``."""
        return tuple(sorted({i for i in self.observed_by if i >= 0}))

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "names": list(self.names),
            "continuous": list(self.continuous),
            "observed_by": list(self.observed_by),
            "variables": list(self.variables),
        }

    @classmethod
    def from_json(cls, obj: dict) -> "ChannelLayout":
        return cls(
            name=obj["name"],
            names=tuple(obj["names"]),
            continuous=tuple(int(i) for i in obj["continuous"]),
            observed_by=tuple(int(i) for i in obj["observed_by"]),
            variables=tuple(obj.get("variables", ())),
        )
