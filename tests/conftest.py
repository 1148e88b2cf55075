"""Shared fixtures: tiny synthetic cohorts on disk, the optional ../shared data, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PHYSIONET_SET_A = SHARED / "data" / "physionet2012" / "set-a.tar.gz"


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A 240-episode synthetic cohort in the IHM on-disk layout (the ``in-hospital-mortality`` folder)."""
    from condense.data.synthetic import write_cohort

    out = tmp_path_factory.mktemp("cohort") / "in-hospital-mortality"
    return write_cohort(out, episodes=240, seed=7)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_cohort, tmp_path_factory):
    """The tiny cohort loaded as a :class:`condense.data.Dataset` (cache in a temp folder)."""
    from condense.data import load_dataset

    return load_dataset(str(tiny_cohort), seed=0, cache_dir=tmp_path_factory.mktemp("cache"), quiet=True)


@pytest.fixture
def physionet_set_a() -> Path:
    """Path of the real PhysioNet 2012 set A archive; skips when ../shared/data is absent."""
    if not PHYSIONET_SET_A.exists():
        pytest.skip(f"real data not present: {PHYSIONET_SET_A}")
    return PHYSIONET_SET_A
