"""Helpers of the grid tests (test_grid, test_ray): ``condense`` in a fresh interpreter that reports
whether Ray got imported (:mod:`fresh_condense`), the table and .npz readers, and the small grid both
files share."""

from __future__ import annotations

import csv
import dataclasses
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


def condense_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_condense(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(condense_command(*args), capture_output=True, text=True, env=condense_env(),
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
