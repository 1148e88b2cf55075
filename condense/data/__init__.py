"""Data layer: read episodes from disk into arrays. Knows nothing of Keras.

``load_dataset(spec)`` is the entry point every command uses; each ``--data`` form is a registered
source (:mod:`condense.data.sources`, ``register_data_source``).

One idea per module:

* ``dataset``: :class:`Dataset`, :class:`Split`, :class:`DataError`; ``layout``: :class:`ChannelLayout`.
* ``channels``: the IHM benchmark's 17 variables and 76 channels, as data.
* ``ihm``: an IHM benchmark folder -> :class:`Dataset` (listfiles, patient splits, workers, cache).
* ``episodes``: episode CSV files -> observations (the bulk pandas path and the per-cell path).
* ``issues``: bad input, counted by kind (:class:`~condense.data.issues.IssueLog`).
* ``preprocessing``: ``Discretizer`` (observations -> 48 x 76 tensors), ``Normalizer``, ``dnn_features``.
* ``reference``: the benchmark's per-row discretizer, kept as the test oracle and speed baseline.
* ``physionet2012/``: PhysioNet 2012 records -> :class:`Dataset` (``docs/physionet2012.md``):
  ``files`` (archive or folder -> bytes), ``parse`` (text -> observations, bad input counted),
  ``channels`` (37 variables, 82 channels, fixed ranges), ``state`` (fitted on train, saved with
  a model, reapplied to new records), ``load`` (split, fit, cache; scoring new records).
* ``synthetic``: the synthetic cohort.
* ``cache``: the on-disk array cache and the cache folder; ``progress``: progress on stderr.
* ``inputs``: the fitted model-input state saved with every model.
"""

from __future__ import annotations

from condense.data.dataset import DataError, Dataset, Split
from condense.data.layout import ChannelLayout
from condense.data.sources import (DataSource, load_dataset, load_records, parse_synthetic_spec, register_data_source,
                                   resolve_data_spec)

__all__ = ["ChannelLayout", "DataError", "DataSource", "Dataset", "Split", "load_dataset", "load_records",
           "parse_synthetic_spec", "register_data_source", "resolve_data_spec"]
