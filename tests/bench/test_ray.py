"""The benchmark grid on a Ray cluster of two worker nodes on this machine: the same table and the
same predictions, bit for bit, as the local executor; a job failing on a worker (of a private
cluster) is FAILED rows of a grid that goes on."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from condense.bench.executors import GridProgress, RayExecutor  # noqa: E402
from condense.bench.jobs import Job, JobContext  # noqa: E402
from condense.bench.rows import plan_rows  # noqa: E402

from grid_runs import (  # noqa: E402
    SHARED_GRID_JOBS,
    SHARED_GRID_ROWS,
    assert_rows_complete,
    assert_same_table,
    finished_jobs,
    read_table,
    run_condense,
    small_profile,
    worker_node_ids,
)

#: 4 jobs: seed0/lstm (with lstm-int8), seed0/dnn, seed0/dnn-prune25, seed0/lr.
RAY_ROWS = SHARED_GRID_ROWS
pytestmark = pytest.mark.e2e  # Ray clusters


@pytest.fixture(scope="module")
def local_and_ray(local_grid, ray_cluster, tiny_cohort, tiny_cache, tmp_path_factory):
    """The same grid run by the local executor (the shared ``local_grid``) and on a Ray cluster of
    two worker nodes (``ray_cluster``), each from the command line in a fresh process (TensorFlow's
    thread pools set the same way in both)."""
    base = tmp_path_factory.mktemp("ray-grid")
    t0 = time.perf_counter()
    on_ray = run_condense("bench", "--profile", "smoke", "--data", tiny_cohort, "--rows", ",".join(RAY_ROWS),
                          "--cache-dir", tiny_cache, "--out", base / "ray", "--executor", "ray",
                          "--ray-address", ray_cluster.address)
    assert on_ray.returncode == 0, on_ray.stderr[-4000:]
    print(f"two worker nodes: {time.perf_counter() - t0:.0f} s for the command")
    return local_grid[0], base / "ray", on_ray


def test_a_grid_across_two_nodes_equals_the_local_grid(local_and_ray, ray_cluster):
    local, on_ray, proc = local_and_ray
    assert_same_table(local, on_ray)
    a = read_table(local)
    assert a["lstm-int8"]["tflite_bytes"] != "" and a["dnn"]["keras_bytes"] != ""

    grid = json.loads((on_ray / "manifest.json").read_text())["grid"]
    assert (grid["executor"], grid["workers"], grid["jobs"], grid["resumed"], grid["retried"]) == (
        "ray", None, 4, 0, {})
    assert json.loads((local / "manifest.json").read_text())["grid"]["executor"] == "local"
    # every job ran on a worker node, and both worker nodes ran jobs (the head has no CPU)
    assert sorted(grid["nodes"]) == sorted(f"seed0/{j}" for j in SHARED_GRID_JOBS)
    assert set(grid["nodes"].values()) == worker_node_ids(ray_cluster)
    assert "ray: 2 job(s) at a time on 2 CPU(s), 3 node(s)" in proc.stderr
    assert finished_jobs(proc.stderr) == sorted(f"seed0/{r}" for r in SHARED_GRID_JOBS)
    # the workers' files reached the run folder, and its records say what they hold
    assert_rows_complete(on_ray)
    assert (on_ray / "models" / "seed0" / "lstm" / "model.int8.tflite").is_file()
    local_grid_s = json.loads((local / "manifest.json").read_text())["grid"]["grid_seconds"]
    phases = json.loads((on_ray / "manifest.json").read_text())["phases_seconds"]
    print(f"grid {grid['grid_seconds']:.1f} s wall for {grid['job_seconds']:.1f} s of jobs on two nodes; "
          f"local (one at a time): {local_grid_s:.1f} s; phases: "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))


def test_a_job_failing_on_a_ray_worker_is_its_rows_failed(tiny_dataset, capsys):
    from condense.bench.runner import data_record, input_kinds, prepare_inputs

    profile = small_profile("unused")
    rows = {r.row: r for r in plan_rows(profile)}
    # fails inside the job on the worker (TrainConfig's validation): recorded in the job's rows
    bad = dataclasses.replace(rows["dnn-prune25"], row="dnn-bad", train={"model": "dnn", "prune_quantile": 1.5})
    bad_int8 = dataclasses.replace(rows["dnn-int8"], row="dnn-bad-int8", source="dnn-bad")
    # raises out of the task itself: Ray hands the driver a RayTaskError, the executor its cause
    broken = dataclasses.replace(rows["dnn"], row="dnn-broken", kind="nonsense")
    jobs = [Job(0, (rows["lr"],)), Job(0, (bad, bad_int8)), Job(0, (broken,))]
    ctx = JobContext(profile, tiny_dataset, prepare_inputs(tiny_dataset, input_kinds([rows["lr"]], profile)),
                     data_record(profile, tiny_dataset))
    results = {}
    progress = GridProgress(jobs, profile.epochs, quiet=False)

    def on_result(job, result):
        results[job.key] = result
        progress.finished(job, result)

    assert not ray.is_initialized()
    # ray.init sets variables in this process's environment (RAY_AUTH_MODE=token, ...) that the later
    # tests' `condense` children would inherit and take to the module's cluster, which was started
    # without them (its workers then cannot reach those drivers: OwnerDiedError): they are put back
    environment = dict(os.environ)
    try:
        RayExecutor(workers=1).run(jobs, ctx, progress, on_result)
        assert not ray.is_initialized(), "the executor shuts down the cluster it started"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        os.environ.clear()
        os.environ.update(environment)

    assert sorted(results) == ["seed0/dnn-bad", "seed0/dnn-broken", "seed0/lr"]
    lr = results["seed0/lr"]
    assert lr.ok and 0.0 <= lr.rows["lr"]["auroc"] <= 1.0
    assert lr.scores["lr"].dtype == np.float64 and lr.scores["lr"].shape == tiny_dataset.test.y.shape
    assert any(rel.startswith("models/seed0/lr/") and data for rel, data in lr.files.items()), "files come back as bytes"

    failed = results["seed0/dnn-bad"]
    assert not failed.ok and failed.rows["dnn-bad"]["status"] == "failed"
    assert failed.rows["dnn-bad"]["error"].startswith("ValueError: ") and "prune_quantile" in failed.rows["dnn-bad"]["error"]
    assert "source row 'dnn-bad' did not train" in failed.rows["dnn-bad-int8"]["error"]

    died = results["seed0/dnn-broken"]
    assert died.rows["dnn-broken"]["status"] == "failed"
    assert died.rows["dnn-broken"]["error"].startswith("AttributeError: "), died.rows["dnn-broken"]["error"]
    assert "_run_nonsense" in died.rows["dnn-broken"]["error"]
    assert (progress.done, progress.failed, progress.running) == (3, 2, 0)
    err = capsys.readouterr().err
    assert "ray: 1 job(s) at a time" in err
    folder = re.search(r"ray: a private cluster in (\S+),", err).group(1)
    assert not Path(folder).exists(), "the private cluster's folder outlived the run"
    assert re.search(r"\] seed0/dnn-broken FAILED: dnn-broken AttributeError", err)


def test_a_search_on_two_ray_nodes_equals_the_search_in_one_process(ray_cluster, tiny_cohort, tiny_cache, tmp_path):
    """``condense tune --executor ray``: every trial a task on a worker node; the same validation AUROC
    for every trial and seed as the local search (and so the same best setting)."""
    search = ("tune", "--data", tiny_cohort, "--cache-dir", tiny_cache, "--trials", "2", "--seeds", "2", "--epochs", "2",
              "--patience", "1", "--space", "units=6,8", "--space", "batch_size=32", "--quiet")
    local = run_condense(*search, "--out", tmp_path / "local", "--workers", "1")
    assert local.returncode == 0, local.stderr[-4000:]
    on_ray = run_condense(*search, "--out", tmp_path / "ray", "--executor", "ray", "--ray-address", ray_cluster.address)
    assert on_ray.returncode == 0, on_ray.stderr[-4000:]
    a, b = (json.loads((tmp_path / name / "tune.json").read_text()) for name in ("local", "ray"))
    assert (a["executor"], b["executor"]) == ("local", "ray")
    assert [(t["trial"], t["val_auroc_seeds"], t["params"]) for t in a["trials"]] == [
        (t["trial"], t["val_auroc_seeds"], t["params"]) for t in b["trials"]]
    assert a["best"]["command"] == b["best"]["command"] and "best: t00" in on_ray.stdout
