"""Time since each variable was last observed (GRU-D style), from a discretized tensor's masks.

Irregularly sampled vitals are carried forward between measurements, so a value in a bin may be
an hour old or two days old; the mask says only whether the bin itself holds a measurement.
:func:`hours_since_observed` adds what the masks imply: for every mask channel of the layout
(one per source variable), the hours since that variable was last measured.

At bin ``t`` (0-based, bins of ``timestep`` hours):

* ``0`` when the variable was measured in bin ``t``;
* ``(t - s) * timestep`` when it was last measured in bin ``s < t``;
* ``(t + 1) * timestep`` when it has not been measured yet (as if measured just before the window).

:func:`since_last_channels` scales these to ``[0, 1]`` by the window length (the model input);
:func:`since_last_names` names them. Knows nothing of Keras.
"""

from __future__ import annotations

import numpy as np

from condense.data.layout import ChannelLayout

#: Name of the optional input channels (``ModelInputs.extras``, ``condense train --time-since-last``).
SINCE_LAST = "since_last"


def hours_since_observed(X: np.ndarray, layout: ChannelLayout, *, timestep: float = 1.0) -> np.ndarray:
    """(N, T, C) discretized tensor -> (N, T, M) float32 hours since last observation, one channel
    per mask channel of ``layout`` (in :attr:`ChannelLayout.mask_channels` order)."""
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[-1] != layout.width:
        raise ValueError(f"hours_since_observed: expected X of shape (N, T, {layout.width}) for layout "
                         f"{layout.name!r}, got {X.shape}")
    masks = list(layout.mask_channels)
    if not masks:
        raise ValueError(f"layout {layout.name!r} has no mask channels: no time since last observation to compute")
    observed = X[:, :, masks] > 0.5  # (N, T, M)
    t = np.arange(X.shape[1], dtype=np.int64)[None, :, None]
    last = np.maximum.accumulate(np.where(observed, t, -1), axis=1)  # last observed bin so far, -1: none
    gap = np.where(last >= 0, t - last, t + 1)
    return (gap * float(timestep)).astype(np.float32)


def since_last_channels(X: np.ndarray, layout: ChannelLayout) -> np.ndarray:
    """:func:`hours_since_observed` in units of the window (bins / T): values in ``[0, 1]``."""
    bins = np.asarray(X).shape[1]
    return hours_since_observed(X, layout) / np.float32(bins)


def since_last_names(layout: ChannelLayout) -> tuple[str, ...]:
    """``since_last:<mask channel's name>`` for every mask channel of ``layout``."""
    return tuple(f"{SINCE_LAST}:{layout.names[i]}" for i in layout.mask_channels)
