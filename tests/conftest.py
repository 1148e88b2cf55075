"""Shared fixtures: tiny synthetic cohorts on disk, trained model directories built once per test
run, the optional ../shared data, thread limits per pytest-xdist worker (docs/testing.md).

``make test`` runs pytest-xdist with ``--dist loadfile``: a file's tests run on one worker, so its
module fixtures are built once; what several files share is built once for all workers
(:func:`build_once.built_once`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from build_once import built_once

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Under pytest-xdist each worker gets its share of the cores, so that two workers do not fight over
# two: TensorFlow's pools (read from these variables when its runtime starts, in this process and in
# every child it starts), OpenMP (LightGBM) and the BLAS libraries. Set before anything imports them.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    _share = str(max(1, (os.cpu_count() or 1) // WORKERS))
    for _var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _share)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PHYSIONET_SET_A = SHARED / "data" / "physionet2012" / "set-a.tar.gz"


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A 240-episode synthetic cohort in the IHM on-disk layout (the ``in-hospital-mortality`` folder)."""
    from condense.data.synthetic import write_cohort

    def build(folder):
        write_cohort(folder / "in-hospital-mortality", episodes=240, seed=7)

    return built_once(tmp_path_factory, "cohort", build) / "in-hospital-mortality"


@pytest.fixture(scope="session")
def tiny_cache(tiny_cohort, tmp_path_factory) -> Path:
    """A data cache (``--cache-dir``) that already holds the tiny cohort. Shared by every worker: entries
    are written atomically, so a test may add one; a test that damages a cache uses its own."""
    from condense.data import load_dataset

    def build(folder):
        load_dataset(str(tiny_cohort), seed=0, cache_dir=folder, quiet=True)

    return built_once(tmp_path_factory, "cache", build)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_cohort, tiny_cache):
    """The tiny cohort loaded as a :class:`condense.data.Dataset` (from the shared cache)."""
    from condense.data import load_dataset

    return load_dataset(str(tiny_cohort), seed=0, cache_dir=tiny_cache, quiet=True)


def _train_dir(data: Path, out: Path, cache: Path, model: str, seed: int = 0, epochs: int = 1) -> Path:
    from condense.runs.workflow import train_run

    train_run(data=str(data), out_dir=out, model=model, seed=seed, epochs=epochs, batch_size=32, verbose=0,
              cache_dir=cache, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def trained_lr(tiny_cohort, tiny_cache, tmp_path_factory) -> Path:
    """A logistic-regression model directory trained on the tiny cohort (seed 0). Read-only: copy it
    (:func:`copy_of`) before changing anything inside."""
    return built_once(tmp_path_factory, "lr", lambda f: _train_dir(tiny_cohort, f / "lr", tiny_cache, "lr")) / "lr"


@pytest.fixture(scope="session")
def trained_hlstm(tiny_cohort, tiny_cache, tmp_path_factory) -> Path:
    """An hLSTM model directory trained one epoch on the tiny cohort (seed 0). Read-only: copy it
    (:func:`copy_of`) before exporting into it or changing anything inside."""
    return built_once(tmp_path_factory, "hlstm", lambda f: _train_dir(tiny_cohort, f / "hlstm", tiny_cache,
                                                                      "hlstm")) / "hlstm"


@pytest.fixture(scope="session")
def physionet_set_a() -> Path:
    """Path of the real PhysioNet 2012 set A archive; skips when ../shared/data is absent."""
    if not PHYSIONET_SET_A.exists():
        pytest.skip(f"real data not present: {PHYSIONET_SET_A}")
    return PHYSIONET_SET_A
