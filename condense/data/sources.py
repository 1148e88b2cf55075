"""Where data comes from: each ``--data`` form is a registered :class:`DataSource`, found by its prefix.

``load_dataset(spec)`` and ``load_records(spec)`` (every command's entry points) split ``spec`` into
``PREFIX:REST`` and hand ``REST`` to the source registered under ``PREFIX``; a spec with no known
prefix is a folder in the MIMIC-III in-hospital-mortality layout. Built in: an IHM folder,
``synthetic[:EPISODES[:SEED]]`` (the embedded cohort, generated into the cache) and
``physionet2012:PATH`` (a ``.tar.gz`` or a folder holding one ``set-*/`` folder). A new reader is one
:func:`register_data_source` call; its modules are imported only when a spec names it, so the CLI
stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from condense.data.dataset import DataError, Dataset, Split
from condense.registry import add_entry

# Deferred on purpose: a reader's modules are imported when a spec names it (the CLI reads this module).

__all__ = ["DataSource", "DATA_SOURCES", "register_data_source", "find_source", "load_dataset", "load_records",
           "resolve_data_spec", "parse_synthetic_spec", "DEFAULT_SYNTHETIC_EPISODES", "DEFAULT_SYNTHETIC_SEED"]


@dataclass(frozen=True)
class DataSource:
    """One form of ``--data``.

    Attributes:
        prefix: what a spec starts with (``"physionet2012"`` for ``physionet2012:PATH``); ``""`` is the
            default source, used when no registered prefix matches.
        load: ``load(rest, *, seed, strict, cache_dir, quiet) -> Dataset``: the train/val/test splits.
        load_records: ``load_records(rest, *, source_state, strict, cache_dir, quiet) -> (Split, id
            column, issue counts)``: every record, for scoring with a saved model (``source_state``: the
            model's saved data state, for sources that refit nothing on new records).
        path: ``rest`` names a file or folder (a model directory records it as an absolute path).
        help: one line for the documentation of ``--data``.
    """

    prefix: str
    load: Callable[..., Dataset]
    load_records: Callable[..., tuple[Split, str, dict]]
    path: bool = True
    help: str = ""


#: The registered sources by prefix.
DATA_SOURCES: dict[str, DataSource] = {}


def register_data_source(source: DataSource) -> DataSource:
    """Add ``source`` under its prefix (a new one); returns it."""
    if not isinstance(source, DataSource):
        raise TypeError(f"register_data_source expects a DataSource, got {type(source).__name__}")
    if ":" in source.prefix:
        raise ValueError(f"a data source prefix cannot contain ':', got {source.prefix!r}")
    return add_entry(DATA_SOURCES, source.prefix, source, "data source")


def find_source(spec: str) -> tuple[DataSource, str]:
    """The source ``spec`` names and the rest of the spec it reads (the whole spec for a folder)."""
    spec = str(spec)
    prefix, _, rest = spec.partition(":")
    if prefix and prefix in DATA_SOURCES:
        return DATA_SOURCES[prefix], rest
    return DATA_SOURCES[""], spec


def load_dataset(spec: str, *, seed: int = 0, strict: bool = False, cache_dir=None, quiet: bool = False) -> Dataset:
    """Load train/val/test arrays from ``spec``.

    Args:
        spec: an IHM-layout folder (``.../in-hospital-mortality``), ``synthetic[:EPISODES[:SEED]]``,
            ``physionet2012:PATH`` (a ``.tar.gz`` or a folder holding one ``set-*/`` folder), or a
            registered source's ``PREFIX:REST``.
        seed: seed of the patient-level split when the source has no fixed validation split.
        strict: stop at the first bad cell instead of counting it and treating it as missing.
        cache_dir: where discretized arrays (and generated cohorts) are cached; default
            ``$CONDENSE_CACHE`` or ``~/.cache/condense``.
        quiet: no progress output.
    """
    source, rest = find_source(spec)
    return source.load(rest, seed=seed, strict=strict, cache_dir=cache_dir, quiet=quiet)


def load_records(spec: str, *, source_state: dict | None = None, strict: bool = False, cache_dir=None,
                 quiet: bool = False) -> tuple[Split, str, dict[str, int]]:
    """Every record/episode of ``spec`` as one :class:`Split`, for scoring with a saved model.

    Returns (split, id column name, issue counts): the id column is ``RecordID`` for PhysioNet
    2012 and ``stay`` for the IHM layout; the counts are the input problems of this read.
    PhysioNet records are discretized with the model's saved ``source_state`` (fitted on its
    training data), never refitted on the new records; labels are -1 where outcomes are absent.
    IHM episodes are all episodes of the folder's listfiles (train, val and test).
    """
    source, rest = find_source(spec)
    return source.load_records(rest, source_state=source_state, strict=strict, cache_dir=cache_dir, quiet=quiet)


def resolve_data_spec(spec: str) -> str:
    """``spec`` with its path made absolute (a folder, ``physionet2012:PATH``); ``synthetic[...]``
    as it is. What a model directory records, so that a later command finds the same data from
    any working folder."""
    spec = str(spec)
    source, rest = find_source(spec)
    if not source.path:
        return spec
    return spec[:len(spec) - len(rest)] + os.path.abspath(os.path.expanduser(rest))


# --------------------------------------------------------------------------- the built-in sources


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


def _load_ihm(rest: str, **kwargs) -> Dataset:
    from condense.data.ihm import load_ihm

    return load_ihm(rest, **kwargs)


def _every_split(dataset: Dataset) -> tuple[Split, str, dict[str, int]]:
    """All episodes of an IHM-layout dataset as one split (train, val and test), ids in column ``stay``."""

    parts = [dataset.train, dataset.val, dataset.test]
    return Split(
        X=np.concatenate([p.X for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        ids=np.concatenate([p.ids.astype(str) for p in parts]),
    ), "stay", dict(dataset.issues)


def _ihm_records(rest: str, *, source_state=None, **kwargs):
    return _every_split(_load_ihm(rest, **kwargs))


def _synthetic_folder(rest: str, cache_dir, quiet: bool) -> str:
    from condense.data.synthetic import ensure_cohort

    episodes, cohort_seed = parse_synthetic_spec(f"synthetic:{rest}" if rest else "synthetic")
    return str(ensure_cohort(episodes, cohort_seed, cache_dir=cache_dir, quiet=quiet))


def _load_synthetic(rest: str, *, cache_dir=None, quiet: bool = False, **kwargs) -> Dataset:
    return _load_ihm(_synthetic_folder(rest, cache_dir, quiet), cache_dir=cache_dir, quiet=quiet, **kwargs)


def _synthetic_records(rest: str, *, source_state=None, cache_dir=None, quiet: bool = False, **kwargs):
    return _every_split(_load_synthetic(rest, cache_dir=cache_dir, quiet=quiet, **kwargs))


def _load_physionet(rest: str, **kwargs) -> Dataset:
    from condense.data.physionet2012 import load_physionet2012

    return load_physionet2012(rest, **kwargs)


def _physionet_records(rest: str, *, source_state=None, strict: bool = False, cache_dir=None, quiet: bool = False):
    from condense.data.physionet2012 import load_physionet2012_records

    if not source_state:
        raise DataError(f"data='physionet2012:{rest}': the model has no saved PhysioNet 2012 state (was it trained "
                        "on PhysioNet?)")
    split, issues = load_physionet2012_records(rest, source_state, strict=strict)
    return split, "RecordID", issues


register_data_source(DataSource("", _load_ihm, _ihm_records,
                                help="a folder in the MIMIC-III in-hospital-mortality benchmark layout"))
register_data_source(DataSource("synthetic", _load_synthetic, _synthetic_records, path=False,
                                help="synthetic[:EPISODES[:SEED]]: the embedded synthetic cohort (no credentials)"))
register_data_source(DataSource("physionet2012", _load_physionet, _physionet_records,
                                help="physionet2012:PATH: PhysioNet/CinC 2012 set-a/b/c (.tar.gz or folder)"))
