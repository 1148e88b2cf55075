"""Data layer: read episodes from disk into arrays. Knows nothing of Keras.

``load_dataset(spec)`` is the entry point every command uses (see :mod:`condense.data.dataset`).

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

__all__ = ["ChannelLayout", "DataError", "Dataset", "Split", "load_dataset", "load_records", "parse_synthetic_spec"]

#: Default size and seed of the embedded synthetic cohort (``--data synthetic``).
DEFAULT_SYNTHETIC_EPISODES = 6000
DEFAULT_SYNTHETIC_SEED = 0


def parse_synthetic_spec(spec: str) -> tuple[int, int]:
    """``synthetic[:EPISODES[:SEED]]`` -> (episodes, seed)."""
    parts = spec.split(":")
    if parts[0] != "synthetic" or len(parts) > 3:
        raise DataError(f"data={spec!r}: expected synthetic[:EPISODES[:SEED]]")
    try:
        episodes = int(parts[1]) if len(parts) > 1 and parts[1] else DEFAULT_SYNTHETIC_EPISODES
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else DEFAULT_SYNTHETIC_SEED
    except ValueError:
        raise DataError(f"data={spec!r}: EPISODES and SEED must be whole numbers") from None
    if episodes < 20:
        raise DataError(f"data={spec!r}: a synthetic cohort needs at least 20 episodes, got {episodes}")
    return episodes, seed


def load_dataset(spec: str, *, seed: int = 0, strict: bool = False, cache_dir=None, quiet: bool = False) -> Dataset:
    """Load train/val/test arrays from ``spec``.

    Args:
        spec: an IHM-layout folder (``.../in-hospital-mortality``), ``synthetic[:EPISODES[:SEED]]``,
            or ``physionet2012:PATH`` (a ``.tar.gz`` or a folder holding one ``set-*/`` folder).
        seed: seed of the patient-level split when the source has no fixed validation split.
        strict: stop at the first bad cell instead of counting it and treating it as missing.
        cache_dir: where discretized arrays (and generated cohorts) are cached; default
            ``$CONDENSE_CACHE`` or ``~/.cache/condense``.
        quiet: no progress output.
    """
    spec = str(spec)
    if spec.startswith("physionet2012:"):
        from condense.data.physionet2012 import load_physionet2012

        return load_physionet2012(spec.split(":", 1)[1], seed=seed, strict=strict, cache_dir=cache_dir, quiet=quiet)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        from condense.data.synthetic import ensure_cohort

        episodes, cohort_seed = parse_synthetic_spec(spec)
        spec = str(ensure_cohort(episodes, cohort_seed, cache_dir=cache_dir, quiet=quiet))
    from condense.data.ihm import load_ihm

    return load_ihm(spec, seed=seed, strict=strict, cache_dir=cache_dir, quiet=quiet)


def load_records(spec: str, *, source_state: dict | None = None, strict: bool = False, cache_dir=None,
                 quiet: bool = False) -> tuple[Split, str, dict[str, int]]:
    """Every record/episode of ``spec`` as one :class:`Split`, for scoring with a saved model.

    Returns (split, id column name, issue counts): the id column is ``RecordID`` for PhysioNet
    2012 and ``stay`` for the IHM layout; the counts are the input problems of this read.
    PhysioNet records are discretized with the model's saved ``source_state`` (fitted on its
    training data), never refitted on the new records; labels are -1 where outcomes are absent.
    IHM episodes are all episodes of the folder's listfiles (train, val and test).
    """
    import numpy as np

    spec = str(spec)
    if spec.startswith("physionet2012:"):
        from condense.data.physionet2012 import load_physionet2012_records

        if not source_state:
            raise DataError(f"data={spec!r}: the model has no saved PhysioNet 2012 state (was it trained on PhysioNet?)")
        split, issues = load_physionet2012_records(spec.split(":", 1)[1], source_state, strict=strict)
        return split, "RecordID", issues
    dataset = load_dataset(spec, strict=strict, cache_dir=cache_dir, quiet=quiet)
    parts = [dataset.train, dataset.val, dataset.test]
    return Split(
        X=np.concatenate([p.X for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        ids=np.concatenate([p.ids.astype(str) for p in parts]),
    ), "stay", dict(dataset.issues)
