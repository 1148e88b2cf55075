"""Text cells -> numbers, the way every reader parses them: Python's ``float``, NaN where a cell is
not a number (the reader counts those as bad input)."""

from __future__ import annotations

import numpy as np

__all__ = ["floats_or_nan"]


def floats_or_nan(texts) -> np.ndarray:
    """float64 of each text with Python's ``float`` semantics, NaN where one is not a number. The
    slow path: readers first try one vectorized conversion and call this only when it fails."""
    out = np.empty(len(texts), dtype=np.float64)
    for k, text in enumerate(texts):
        try:
            out[k] = float(text)
        except ValueError:
            out[k] = np.nan
    return out
