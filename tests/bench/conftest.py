"""The uninterrupted local grid the end-to-end grid and Ray tests compare against, run once; a Ray
cluster of several nodes on this machine."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from build_once import built_once
from grid_runs import SHARED_GRID_ROWS, run_condense


@pytest.fixture(scope="session")
def local_grid(tiny_cohort, tmp_path_factory):
    """``(out_dir, stderr)`` of the shared grid run by the local executor, one job at a time
    (``--workers 1``), from the command line in a fresh interpreter (which reports whether Ray got
    imported); one run for every test worker."""
    def build(folder):
        proc = run_condense("bench", "--profile", "smoke", "--data", tiny_cohort, "--rows", ",".join(SHARED_GRID_ROWS),
                            "--out", folder / "run", "--cache-dir", folder / "cache", "--workers", "1")
        (folder / "stderr.txt").write_text(proc.stderr)
        assert proc.returncode == 0, proc.stderr[-4000:]

    folder = built_once(tmp_path_factory, "local-grid", build)
    return folder / "run", (folder / "stderr.txt").read_text()


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head with no CPUs (jobs run on
    the worker nodes only) and two worker nodes of 1 CPU, in one temporary folder (Ray's socket paths
    must stay short); shut down after the module. ``.temp_dir``: that folder."""
    ray = pytest.importorskip("ray")
    from ray._common.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    folder = tempfile.mkdtemp(prefix="condense-rc-", dir="/tmp")
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": folder, "include_dashboard": False})
    try:
        # Cluster records its address as the machine's latest cluster (/tmp/ray/ray_current_cluster), where
        # any ray.init() on this machine would find and join it: the tests pass the address instead
        address_file = Path(get_ray_address_file(None))
        if address_file.is_file() and address_file.read_text() == nodes.address:
            ray._common.utils.reset_ray_address()
        for _ in range(2):
            nodes.add_node(num_cpus=1, temp_dir=folder)
        nodes.wait_for_nodes()
        nodes.temp_dir = folder
        yield nodes
    finally:
        nodes.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
