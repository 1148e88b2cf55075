"""Argument checks with one message shape, Keras style: ``Argument `name` must be ...; got name=value.``

The messages name the Python argument (``learning_rate``), never a command-line flag: a CLI that
wants ``--learning-rate`` translates. Imports neither TensorFlow nor Keras, so a configuration is
checked before the slow imports.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["invalid_argument", "check_choice", "check_int", "check_positive", "check_fraction"]


def invalid_argument(name: str, requirement: str, value) -> ValueError:
    """``ValueError("Argument `name` must be <requirement>; got name=<value!r>.")``."""
    return ValueError(f"Argument `{name}` must be {requirement}; got {name}={value!r}.")


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise invalid_argument(name, f"one of {choices}", value)
    return value


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[low, high]``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        requirement = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise invalid_argument(name, requirement, value)
    return int(value)


def check_positive(name: str, value) -> float:
    """``value`` as a ``float`` if it is a finite number above 0."""
    if not _is_real(value) or not math.isfinite(value) or not value > 0:
        raise invalid_argument(name, "a finite number > 0", value)
    return float(value)


def check_fraction(name: str, value) -> float:
    """``value`` as a ``float`` if it is a number strictly between 0 and 1 (NaN is not)."""
    if not _is_real(value) or not 0.0 < float(value) < 1.0:
        raise invalid_argument(name, "a number strictly between 0 and 1", value)
    return float(value)
