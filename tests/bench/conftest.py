"""The uninterrupted local grid the end-to-end grid and Ray tests compare against, run once."""

from __future__ import annotations

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
