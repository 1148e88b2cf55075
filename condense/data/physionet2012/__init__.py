"""PhysioNet/CinC Challenge 2012 ("Predicting Mortality of ICU Patients") raw records -> arrays.

``--data physionet2012:PATH`` (``set-a.tar.gz``, a folder holding one ``set-*/``, or the set
folder). Design notes (input, 82 channels, fitted cleaning, splits, bad input):
``docs/physionet2012.md``. One idea per module, in the order the data flows:

* ``files``: find and read the set's bytes (archive or folder, outcomes file, content hash).
* ``parse``: record and outcomes text -> raw observations (:class:`RawRecords`), bad input counted.
* ``channels``: the 37 variables, 5 descriptors and 82 channels, valid ranges and fallbacks, as data.
* ``state``: :class:`PhysioNetState`, fitted on training records, saved with a model, reapplied.
* ``load``: split, fit, discretize, cache -> :class:`~condense.data.Dataset`; new records -> a Split.
"""

from __future__ import annotations

from condense.data.physionet2012.channels import (
    ICU_TYPES,
    NORMAL_VALUES,
    NUM_BINS,
    PHYSIONET_LAYOUT,
    STATIC_DESCRIPTORS,
    TIME_SERIES_VARIABLES,
    VALID_RANGES,
)
from condense.data.physionet2012.load import load_physionet2012, load_physionet2012_records, split_records
from condense.data.physionet2012.parse import RawRecords, read_records
from condense.data.physionet2012.state import WINSOR_QUANTILES, PhysioNetState

__all__ = [
    "ICU_TYPES",
    "NORMAL_VALUES",
    "NUM_BINS",
    "PHYSIONET_LAYOUT",
    "PhysioNetState",
    "RawRecords",
    "STATIC_DESCRIPTORS",
    "TIME_SERIES_VARIABLES",
    "VALID_RANGES",
    "WINSOR_QUANTILES",
    "load_physionet2012",
    "load_physionet2012_records",
    "read_records",
    "split_records",
]
