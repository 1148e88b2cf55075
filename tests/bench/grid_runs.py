"""Helpers of the grid tests (test_grid, test_ray): ``condense`` in a fresh interpreter that reports
whether Ray got imported (:mod:`fresh_condense`), the table and .npz readers, and the small grid both
files share."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
from fresh_condense import condense_command

from condense.bench.profiles import get_profile

REPO = Path(__file__).resolve().parents[2]
#: The grid the end-to-end tests run (4 jobs: seed0/lstm carries lstm-int8, seed0/dnn, seed0/dnn-prune25,
#: seed0/lr): run once per test run, uninterrupted, by the local executor (the ``local_grid`` fixture);
#: killed and resumed; and on a Ray cluster, each compared with the uninterrupted run.
SHARED_GRID_ROWS = ("lstm", "lstm-int8", "dnn", "dnn-prune25", "lr")
SHARED_GRID_JOBS = ("lstm", "dnn", "dnn-prune25", "lr")
#: A progress line of a job that ran: ``[1/3 done, ...] seed0/dnn ok (10 s)``.
FINISHED_LINE = re.compile(r"^\[\d+/\d+ done[^\]]*\] (seed\d+/\S+) (ok|FAILED)", re.M)


def condense_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_condense(*args, timeout=600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``condense ARGS`` in a fresh interpreter (``env``: variables added to this process's)."""
    return subprocess.run(condense_command(*args), capture_output=True, text=True, env=condense_env(**(env or {})),
                          timeout=timeout)


def read_table(out_dir: Path) -> dict[str, dict]:
    with open(out_dir / "table.csv", newline="") as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def small_profile(data: str):
    return dataclasses.replace(get_profile("smoke", data=data), latency_repeats=5, latency_warmup=1,
                               bootstrap_resamples=200, calibration=32)


#: The table columns that must be equal between two runs of the same grid (timings aside).
SAME_COLUMNS = ("params", "keras_bytes", "tflite_bytes", "auroc", "auroc_low", "auroc_high", "auprc", "brier",
                "parity_max_abs", "auroc_diff", "auroc_diff_lr")


def assert_same_rows(local: Path, other: Path, rows, skip=()) -> None:
    """``rows`` ok in both runs with the same numbers (but the columns in ``skip``), and their test
    predictions the same bit for bit."""
    a, b = read_table(local), read_table(other)
    for row in rows:
        assert a[row]["status"] == b[row]["status"] == "ok", (row, a[row]["error"], b[row]["error"])
        for col in set(SAME_COLUMNS) - set(skip):
            assert a[row][col] == b[row][col], (row, col, a[row][col], b[row][col])
    pa, pb = read_npz(local / "predictions.npz"), read_npz(other / "predictions.npz")
    for key in ("ids", "y", *(f"{r}@0" for r in rows)):
        assert pa[key].dtype == pb[key].dtype and pa[key].tobytes() == pb[key].tobytes(), key


def assert_same_table(local: Path, other: Path, rows=SHARED_GRID_ROWS) -> None:
    """``condense compare`` passes, the tables hold the same rows in the same order, and every row
    is the same (:func:`assert_same_rows`), predictions included."""
    from condense.cli import main

    assert main(["compare", str(local / "table.csv"), str(other / "table.csv")]) == 0
    a, b = read_table(local), read_table(other)
    assert list(a) == list(b) and set(a) == set(rows)
    expected = {"ids", "y", *(f"{r}@0" for r in rows)}
    assert set(read_npz(local / "predictions.npz")) == set(read_npz(other / "predictions.npz")) == expected
    assert_same_rows(local, other, rows)


def assert_rows_complete(out: Path, jobs=SHARED_GRID_JOBS) -> None:
    """``rows/`` holds the plan and, for each job, its record and scores and nothing else (nothing
    half-written); every file a record lists is in the run folder with the size it records."""
    files = sorted(str(p.relative_to(out / "rows")) for p in (out / "rows").rglob("*") if p.is_file())
    assert files == sorted(["plan.json", *(f"seed0/{j}.{ext}" for j in jobs for ext in ("json", "npz"))]), files
    for name in jobs:
        record = json.loads((out / "rows" / "seed0" / f"{name}.json").read_text())
        assert record["ok"] and record["files"], name
        for rel, entry in record["files"].items():
            assert (out / rel).stat().st_size == entry["bytes"], rel


def finished_jobs(stderr: str) -> list[str]:
    """The jobs whose progress line says they finished (ok or FAILED), sorted."""
    return sorted(m.group(1) for m in FINISHED_LINE.finditer(stderr))


def worker_node_ids(cluster) -> set[str]:
    """The Ray node ids of a ``ray.cluster_utils.Cluster``'s worker nodes (the head left out)."""
    return {node.node_id for node in cluster.worker_nodes}
