"""condense.data.sources: every --data form is a registered source found by its prefix; a new reader is one call."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from condense.data import DataError, DataSource, load_dataset, load_records, register_data_source, resolve_data_spec
from condense.data.sources import DATA_SOURCES, find_source


@pytest.fixture
def mirror_source():
    """A user's source: ``mirror:FOLDER`` reads an IHM folder and flips every label (so it is not the default)."""
    calls = []

    def load(rest, **kwargs):
        calls.append(rest)
        dataset = load_dataset(rest, **kwargs)
        flipped = {name: dataclasses.replace(getattr(dataset, name), y=1 - getattr(dataset, name).y)
                   for name in ("train", "val", "test")}
        return dataclasses.replace(dataset, **flipped)

    def records(rest, *, source_state=None, **kwargs):
        return load_records(rest, **kwargs)

    source = register_data_source(DataSource("mirror", load, records, help="labels flipped"))
    yield source, calls
    DATA_SOURCES.pop("mirror")


def test_a_registered_prefix_reaches_its_reader(mirror_source, tiny_cohort, tiny_cache):
    _, calls = mirror_source
    plain = load_dataset(str(tiny_cohort), cache_dir=tiny_cache, quiet=True)
    mirrored = load_dataset(f"mirror:{tiny_cohort}", cache_dir=tiny_cache, quiet=True)
    assert calls == [str(tiny_cohort)]
    assert np.array_equal(mirrored.test.y, 1 - plain.test.y) and np.array_equal(mirrored.test.X, plain.test.X)
    split, id_column, _ = load_records(f"mirror:{tiny_cohort}", cache_dir=tiny_cache, quiet=True)
    assert id_column == "stay" and len(split.y) == 240
    assert resolve_data_spec("mirror:a/../b") == "mirror:" + os.path.abspath("b")


def test_specs_find_their_sources():
    assert find_source("physionet2012:set-a.tar.gz") == (DATA_SOURCES["physionet2012"], "set-a.tar.gz")
    assert find_source("synthetic") == (DATA_SOURCES["synthetic"], "")
    assert find_source("synthetic:300:4") == (DATA_SOURCES["synthetic"], "300:4")
    assert find_source("data:old/ihm") == (DATA_SOURCES[""], "data:old/ihm")  # no such prefix: a folder
    with pytest.raises(DataError, match=r"data='synthetic:many': EPISODES and SEED must be whole numbers"):
        load_dataset("synthetic:many")


def test_a_prefix_is_registered_once():
    with pytest.raises(ValueError, match="a data source named .synthetic. already exists"):
        register_data_source(DataSource("synthetic", load_dataset, load_records))
    with pytest.raises(ValueError, match="cannot contain ':'"):
        register_data_source(DataSource("a:b", load_dataset, load_records))
