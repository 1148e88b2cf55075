"""The benchmark grid without Ray: jobs (a converted row rides with its source), their records in
``rows/`` (a run killed with SIGKILL resumes with only the missing jobs and gives the table an
uninterrupted run gives), a failing job as FAILED rows of a grid that goes on, and the local
path never importing Ray."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from grid_runs import (
    FINISHED_LINE,
    SHARED_GRID_JOBS,
    SHARED_GRID_ROWS,
    condense_command,
    condense_env,
    read_npz,
    read_table,
    run_condense,
    small_profile,
)

from condense.bench.executors import RAY_MISSING, GridProgress, LocalExecutor, RayMissing, make_executor
from condense.bench.jobs import Job, JobContext, JobResult, plan_jobs
from condense.bench.profiles import get_profile
from condense.bench.rows import plan_rows
from condense.bench.store import RunStore, RunStoreError
from condense.cli import main
from condense.io import sha256_file

#: A small grid that trains fast: 3 jobs (seed0/dnn carries dnn-int8, seed0/dnn-prune25, seed0/lr).
GRID_ROWS = ("dnn", "dnn-int8", "dnn-prune25", "lr")


# -- plan_jobs --------------------------------------------------------------------------------------
def test_plan_jobs_one_job_per_row_and_seed_with_converted_rows_riding_with_their_source():
    rows = plan_rows(get_profile("smoke"))
    own = [r.row for r in rows if r.kind != "convert"]
    converted = [r for r in rows if r.kind == "convert"]
    jobs = plan_jobs(rows, 2)
    # seed-major, in table order, keyed seed<S>/<row>
    assert [j.key for j in jobs] == [f"seed{s}/{r}" for s in (0, 1) for r in own]
    assert (jobs[0].key, jobs[0].name, jobs[0].seed) == ("seed0/lstm", "lstm", 0)
    assert all(j.rows[0].kind != "convert" for j in jobs)
    for seed in (0, 1):
        riders = [(j.name, r) for j in jobs if j.seed == seed for r in j.rows[1:]]
        assert sorted(r.row for _, r in riders) == sorted(r.row for r in converted), "every converted row once"
        assert all(r.kind == "convert" and r.source == name for name, r in riders)
    by_key = {j.key: j for j in jobs}
    assert [r.row for r in by_key["seed1/lstm"].rows] == ["lstm"] + [r.row for r in converted if r.source == "lstm"]
    assert {r.row for r in by_key["seed0/lstm"].rows} >= {"lstm-int8", "lstm-dynamic", "lstm-keras3"}
    assert [r.row for r in by_key["seed0/lr"].rows] == ["lr"]

    subset = [r for r in rows if r.row in GRID_ROWS]
    assert [[r.row for r in j.rows] for j in plan_jobs(subset, 1)] == [["dnn", "dnn-int8"], ["dnn-prune25"], ["lr"]]
    with pytest.raises(ValueError, match=r"row 'dnn-int8' is converted from row 'dnn': select that row too"):
        plan_jobs([r for r in rows if r.row in ("dnn-int8", "lr")], 1)


# -- RunStore ---------------------------------------------------------------------------------------
def _job(seed: int = 1) -> Job:
    rows = {r.row: r for r in plan_rows(get_profile("smoke"))}
    return Job(seed, (rows["dnn"], rows["dnn-int8"]))


def _result(job: Job, *, failed: bool = False, files: dict | None = None) -> JobResult:
    d = f"models/seed{job.seed}/dnn"
    rows = {"dnn": {"row": "dnn", "seed": job.seed, "status": "ok", "auroc": 0.75, "params": 60929, "model_dir": d},
            "dnn-int8": {"row": "dnn-int8", "seed": job.seed, "status": "failed" if failed else "ok",
                         **({"error": "RuntimeError: converter crashed"} if failed else {"auroc": 0.5})}}
    scores = {"dnn": np.array([0.1, 0.25, np.nan, 1e-300]), "dnn-int8": np.array([0.5, 0.0, 1.0, 0.125])}
    if files is None:
        files = {f"{d}/model.keras": b"keras model bytes", f"{d}/model.int8.tflite": b"TFL3 int8 file",
                 f"{d}/sub/preprocessing.json": b"{}"}
    return JobResult(job.key, job.seed, rows, scores, files, seconds=12.5)


def test_run_store_saves_a_job_and_loads_it_back(tmp_path):
    store = RunStore(tmp_path / "run")
    job = _job()
    result = _result(job)
    store.save(job, result)
    for rel, data in result.files.items():  # the model directory, as the job made it
        assert (tmp_path / "run" / rel).read_bytes() == data, rel
    record = json.loads((tmp_path / "run" / "rows" / "seed1" / "dnn.json").read_text())
    assert record["key"] == "seed1/dnn" and record["ok"] is True
    assert record["files"]["models/seed1/dnn/model.keras"] == {
        "bytes": len(b"keras model bytes"), "sha256": sha256_file(tmp_path / "run" / "models/seed1/dnn/model.keras")}
    assert (tmp_path / "run" / "rows" / "seed1" / "dnn.npz").is_file()

    loaded = store.load(job)
    assert loaded is not None
    assert (loaded.key, loaded.seed, loaded.seconds, loaded.files) == ("seed1/dnn", 1, 12.5, {})
    assert loaded.rows == result.rows
    assert set(loaded.scores) == {"dnn", "dnn-int8"}
    for row, p in result.scores.items():
        assert loaded.scores[row].dtype == np.float64
        assert loaded.scores[row].tobytes() == p.tobytes(), row  # bitwise, NaN included
    assert loaded.ok

    # a job saved again replaces its model directory whole: nothing of the earlier files stays
    store.save(job, _result(job, files={"models/seed1/dnn/model.keras": b"retrained"}))
    assert (tmp_path / "run" / "models/seed1/dnn/model.keras").read_bytes() == b"retrained"
    assert not (tmp_path / "run" / "models/seed1/dnn/model.int8.tflite").exists()
    assert not (tmp_path / "run" / "models/seed1/dnn/sub").exists()
    assert store.load(job) is not None

    with pytest.raises(RunStoreError, match=r"job seed1/dnn returned a file outside models/<seed>/<row>/: x\.txt"):
        store.save(job, _result(job, files={"x.txt": b""}))


@pytest.mark.parametrize("damage", ["model file deleted", "model file truncated", "job failed", "record damaged",
                                    "scores missing", "scores truncated", "scores not an npz", "record a list",
                                    "files not an object", "row not an object", "scores of another test set",
                                    "rows changed", "never ran"])
def test_run_store_load_says_which_jobs_must_run_again(tmp_path, damage):
    store = RunStore(tmp_path / "run")
    job = _job()
    store.save(job, _result(job, failed=damage == "job failed"))
    run, rows = tmp_path / "run", tmp_path / "run" / "rows" / "seed1"
    if damage == "model file deleted":
        (run / "models/seed1/dnn/model.int8.tflite").unlink()
    elif damage == "model file truncated":
        (run / "models/seed1/dnn/model.keras").write_bytes(b"keras")
    elif damage == "record damaged":
        (rows / "dnn.json").write_text('{"key": "seed1/dnn", "rows": ')
    elif damage == "scores missing":
        (rows / "dnn.npz").unlink()
    elif damage == "scores truncated":  # was zipfile.BadZipFile out of --resume
        data = (rows / "dnn.npz").read_bytes()
        (rows / "dnn.npz").write_bytes(data[: len(data) // 2])
    elif damage == "scores not an npz":
        (rows / "dnn.npz").write_bytes(b"")
    elif damage == "record a list":
        (rows / "dnn.json").write_text("[1, 2]")
    elif damage == "files not an object":
        record = json.loads((rows / "dnn.json").read_text())
        (rows / "dnn.json").write_text(json.dumps({**record, "files": {"models/seed1/dnn/model.keras": 5}}))
    elif damage == "row not an object":  # well-formed JSON, mistyped content: was a crash in finish_seed
        record = json.loads((rows / "dnn.json").read_text())
        (rows / "dnn.json").write_text(json.dumps({**record, "rows": {name: 5 for name in record["rows"]}}))
    elif damage == "rows changed":  # the same job name, now without its converted row
        job = Job(job.seed, job.rows[:1])
    elif damage == "never ran":
        job = _job(seed=0)
    if damage == "scores of another test set":  # intact, but one score per patient of another split
        n_test = len(next(iter(store.load(job).scores.values()))) + 1
        assert store.load(job, n_test) is None
        return
    assert store.load(job) is None


def test_run_store_check_new_refuses_an_unfinished_run_and_clears_a_finished_one(tmp_path):
    out = tmp_path / "run"
    store = RunStore(out)
    assert store.plan() is None
    store.check_new()  # an empty or missing folder: nothing to say
    store.begin({"profile": {"name": "smoke"}, "seeds": 1, "rows": None})
    assert store.plan()["finished"] is None and store.plan()["seeds"] == 1
    job = _job()
    store.save(job, _result(job))
    with pytest.raises(RunStoreError, match=re.escape(
            f"{out} holds an unfinished benchmark run (rows/plan.json): continue it with "
            f"`condense bench --resume {out}`, or choose another --out")):
        store.check_new()
    assert store.load(job) is not None, "refusing touched nothing"
    store.finish()
    assert store.plan()["finished"]
    store.check_new()
    assert store.load(job) is not None, "checking deletes nothing"
    store.begin({"profile": {"name": "smoke"}, "seeds": 1, "rows": ["lr"]})
    assert store.plan()["rows"] == ["lr"] and store.load(job) is None, "a finished run's records are cleared"
    assert not (out / "models").exists(), "and its models: none stays beside the new run, listed nowhere"

    (out / "rows" / "plan.json").write_text("not json")
    with pytest.raises(RunStoreError, match="rows/plan.json: not a benchmark plan"):
        store.check_new()
    (out / "rows" / "plan.json").write_text(json.dumps({"version": 99, "profile": {}}))
    with pytest.raises(RunStoreError, match="not a benchmark plan of this condense version"):
        store.plan()


def test_a_new_run_leaves_a_models_folder_it_did_not_make(tmp_path):
    out = tmp_path / "project"
    (out / "models").mkdir(parents=True)
    (out / "models" / "important.keras").write_bytes(b"someone's model")
    store = RunStore(out)
    with pytest.raises(RunStoreError, match=re.escape(f"{out} holds models/ that no benchmark run made (no "
                                                      "rows/plan.json): a run writes its own there; choose another --out")):
        store.begin({"profile": {"name": "smoke"}, "seeds": 1, "rows": None})
    assert (out / "models" / "important.keras").read_bytes() == b"someone's model"


# -- the command line -------------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_local_executor_never_imports_ray(local_grid):
    out, stderr = local_grid
    assert "RAY_IMPORTED=False" in stderr.splitlines()
    assert [m.group(1) for m in FINISHED_LINE.finditer(stderr)] == [f"seed0/{j}" for j in SHARED_GRID_JOBS]
    grid = json.loads((out / "manifest.json").read_text())["grid"]
    assert (grid["executor"], grid["workers"], grid["jobs"], grid["resumed"]) == ("local", 1, 4, 0)
    assert all(r["status"] == "ok" for r in read_table(out).values())
    helped = run_condense("bench", "--help", timeout=120)
    assert helped.returncode == 0 and "--resume DIR" in helped.stdout
    assert "RAY_IMPORTED=False" in helped.stderr.splitlines()


@pytest.mark.e2e
def test_a_process_pool_gives_the_one_at_a_time_table_and_times_training_alone(local_grid, tiny_cohort, tmp_path):
    """``--workers 2`` (the default on 2 cores): two spawned workers run the jobs; every score is the
    one-at-a-time run's bit for bit, and the training-time column is re-measured alone by the driver."""
    reference, _ = local_grid
    out = tmp_path / "pool"
    proc = run_condense("bench", "--profile", "smoke", "--data", tiny_cohort, "--rows", ",".join(SHARED_GRID_ROWS),
                        "--out", out, "--cache-dir", tmp_path / "cache", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "local: 2 job(s) at a time in a process pool" in proc.stderr and "RAY_IMPORTED=False" in proc.stderr
    assert sorted(m.group(1) for m in FINISHED_LINE.finditer(proc.stderr)) == sorted(f"seed0/{j}" for j in SHARED_GRID_JOBS)
    grid = json.loads((out / "manifest.json").read_text())["grid"]
    assert (grid["executor"], grid["workers"], grid["jobs"]) == ("local", 2, 4)
    assert grid["training_time"].startswith("by the driver after the grid")
    table, one_at_a_time = read_table(out), read_table(reference)
    assert list(table) == list(one_at_a_time)
    for row, fields in table.items():
        assert fields["status"] == "ok", (row, fields["error"])
        for col in ("auroc", "auroc_low", "auroc_high", "params", "keras_bytes", "tflite_bytes"):
            assert fields[col] == one_at_a_time[row][col], (row, col)
    for row in ("lstm", "dnn", "dnn-prune25"):  # Keras rows: timed alone; the converted file takes its source's
        assert float(table[row]["train_seconds"]) > 0
    assert table["lstm-int8"]["train_seconds"] == table["lstm"]["train_seconds"]
    seed0 = {r["row"]: r for r in json.loads((out / "rows.json").read_text())["per_seed"][0]}
    assert seed0["lstm"]["train_seconds_in_grid"] > 0 and seed0["lstm"]["epoch_seconds_alone"] > 0
    predictions, reference_scores = read_npz(out / "predictions.npz"), read_npz(reference / "predictions.npz")
    assert set(predictions) == set(reference_scores)
    for key, value in reference_scores.items():
        assert predictions[key].tobytes() == value.tobytes(), key
    assert "training time measured in the job (one job at a time)" in (reference / "table.md").read_text()
    assert "training time measured by the driver after the grid" in (out / "table.md").read_text()


@pytest.mark.e2e
def test_a_killed_run_resumes_with_only_the_missing_jobs(local_grid, tiny_cohort, tmp_path, capsys):
    full, _ = local_grid
    out, cache = tmp_path / "killed", tmp_path / "cache"
    records = out / "rows" / "seed0"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(
            condense_command("bench", "--profile", "smoke", "--data", tiny_cohort, "--rows", ",".join(SHARED_GRID_ROWS),
                             "--out", out, "--cache-dir", cache, "--workers", "1"),
            stdout=log, stderr=subprocess.STDOUT, env=condense_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 600  # a guard against a hung run, not a measurement
            while not list(records.glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its export child, mid-job
            proc.wait()
    log_text = (tmp_path / "killed.log").read_text()
    kept = sorted(p.stem for p in records.glob("*.json"))  # read after the kill
    assert kept, f"the run ended ({proc.returncode}) without recording a job:\n{log_text[-3000:]}"
    assert set(kept) <= set(SHARED_GRID_JOBS)
    before = {name: (records / f"{name}.json").read_bytes() for name in kept}
    missing = [j for j in SHARED_GRID_JOBS if j not in kept]
    if missing:  # the usual case: killed mid-grid. A new run into the folder is refused.
        assert json.loads((out / "rows" / "plan.json").read_text())["finished"] is None
        assert main(["bench", "--profile", "smoke", "--data", str(tiny_cohort), "--out", str(out), "--quiet"]) == 2
        assert f"`condense bench --resume {out}`" in capsys.readouterr().err

    print(f"killed with {len(kept)} of {len(SHARED_GRID_JOBS)} jobs recorded: {kept}")  # shown by pytest -rP
    resumed = run_condense("bench", "--resume", out, "--cache-dir", cache, "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"({len(kept)} done by the earlier run, {len(missing)} to run)" in resumed.stderr
    assert [m.group(1) for m in FINISHED_LINE.finditer(resumed.stderr)] == [f"seed0/{j}" for j in missing]
    assert "RAY_IMPORTED=False" in resumed.stderr.splitlines()
    grid = json.loads((out / "manifest.json").read_text())["grid"]
    assert (grid["executor"], grid["jobs"], grid["resumed"]) == ("local", len(SHARED_GRID_JOBS), len(kept))
    assert {name: (records / f"{name}.json").read_bytes() for name in kept} == before, "kept jobs did not run again"
    assert json.loads((out / "rows" / "plan.json").read_text())["finished"]

    table, reference = read_table(out), read_table(full)
    assert list(table) == list(reference) and set(table) == set(SHARED_GRID_ROWS)
    for row, fields in table.items():
        assert fields["status"] == "ok", (row, fields["error"])
        for col in ("auroc", "auroc_low", "auroc_high", "params", "keras_bytes", "tflite_bytes"):
            assert fields[col] == reference[row][col], (row, col)
    # the scores of every job, kept or run now, are those of the uninterrupted run, bit for bit
    predictions, uninterrupted = read_npz(out / "predictions.npz"), read_npz(full / "predictions.npz")
    assert set(predictions) == set(uninterrupted) == {"ids", "y", *(f"{r}@0" for r in SHARED_GRID_ROWS)}
    for key, value in uninterrupted.items():
        assert predictions[key].tobytes() == value.tobytes(), key
    for name in SHARED_GRID_JOBS:
        for row, p in read_npz(records / f"{name}.npz").items():
            assert predictions[f"{row}@0"].tobytes() == p.tobytes(), row


def test_resume_errors_are_clear(tmp_path, capsys, tiny_cohort):
    run = tmp_path / "run"
    RunStore(run).begin({"profile": small_profile(str(tiny_cohort)).to_json(), "seeds": 1, "rows": ["lr"]})
    assert main(["bench", "--resume", str(run), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"condense bench: error: --resume takes the run's settings from {run}/rows/plan.json; drop --profile"
    assert main(["bench", "--resume", str(run), "--rows", "lr", "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"; drop (--seeds, --rows|--rows, --seeds)$", err.strip()), err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "--resume", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: no benchmark run to resume (no rows/plan.json" in err

    # a new run into the folder of an unfinished run: refused, before any data is read
    assert main(["bench", "--profile", "smoke", "--data", str(tmp_path / "no-such-data"), "--rows", "lr",
                 "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds an unfinished benchmark run" in err and f"`condense bench --resume {run}`" in err
    assert json.loads((run / "rows" / "plan.json").read_text())["rows"] == ["lr"], "the plan is untouched"


# -- a failing job ----------------------------------------------------------------------------------
def test_a_failing_job_is_its_rows_failed_and_the_grid_goes_on(tiny_dataset, capsys):
    from condense.bench.runner import data_record, input_kinds, prepare_inputs

    profile = small_profile("unused")
    rows = {r.row: r for r in plan_rows(profile)}
    # fails inside the job (run_benchmark would refuse it up front): TrainConfig's validation
    bad = dataclasses.replace(rows["dnn-prune25"], row="dnn-bad", train={"model": "dnn", "prune_quantile": 1.5})
    bad_int8 = dataclasses.replace(rows["dnn-int8"], row="dnn-bad-int8", source="dnn-bad")
    # raises out of run_job itself (no step for this kind): the executor reports it
    broken = dataclasses.replace(rows["dnn"], row="dnn-broken", kind="nonsense")
    jobs = [Job(0, (bad, bad_int8)), Job(0, (broken,)), Job(0, (rows["lr"],))]
    ctx = JobContext(profile, tiny_dataset, prepare_inputs(tiny_dataset, input_kinds([rows["lr"]], profile)),
                     data_record(profile, tiny_dataset))
    results = {}
    progress = GridProgress(jobs, profile.epochs, quiet=False)

    def on_result(job, result):  # what the driver does with each result (runner.run_benchmark)
        results[job.key] = result
        progress.finished(job, result)

    LocalExecutor().run(jobs, ctx, progress, on_result)

    assert list(results) == ["seed0/dnn-bad", "seed0/dnn-broken", "seed0/lr"]
    lr = results["seed0/lr"]
    assert lr.ok and lr.rows["lr"]["status"] == "ok" and 0.0 <= lr.rows["lr"]["auroc"] <= 1.0
    assert lr.scores["lr"].shape == tiny_dataset.test.y.shape
    assert any(rel.startswith("models/seed0/lr/") for rel in lr.files)

    failed = results["seed0/dnn-bad"]
    assert not failed.ok and set(failed.rows) == {"dnn-bad", "dnn-bad-int8"}
    assert failed.rows["dnn-bad"]["status"] == "failed"
    assert failed.rows["dnn-bad"]["error"].startswith("ValueError: ") and "prune_quantile" in failed.rows["dnn-bad"]["error"]
    assert failed.rows["dnn-bad-int8"]["status"] == "failed"
    assert "source row 'dnn-bad' did not train" in failed.rows["dnn-bad-int8"]["error"]
    assert failed.rows["dnn-bad"]["seed"] == 0 and failed.rows["dnn-bad"]["model"] == "DNN"

    died = results["seed0/dnn-broken"]
    assert died.rows == {"dnn-broken": {**died.rows["dnn-broken"], "status": "failed"}}
    assert died.rows["dnn-broken"]["error"].startswith("AttributeError: ") and "_run_nonsense" in died.rows["dnn-broken"]["error"]
    assert (progress.done, progress.failed, progress.running) == (3, 2, 0)
    err = capsys.readouterr().err
    assert re.search(r"\] seed0/dnn-bad FAILED: dnn-bad ValueError: .*prune_quantile", err)
    assert re.search(r"\[3/3 done, 0 running, 2 failed [^\]]*\] seed0/lr ok", err)


# -- Ray not installed ------------------------------------------------------------------------------
def test_executor_ray_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where Ray is not installed
    with pytest.raises(RayMissing) as info:
        make_executor("ray", workers=2)
    assert str(info.value) == RAY_MISSING
    assert "pip install 'condense[ray]'" in RAY_MISSING
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="--ray-address needs --executor ray"):
        make_executor("local", address="auto")
    assert make_executor("local").workers == 1, "the Python default: one job at a time, in this process"
    assert make_executor("local", workers=2, threads=1).workers == 2
    with pytest.raises(ValueError, match="workers"):
        make_executor("local", workers=0)


def test_cli_executor_ray_without_ray_is_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["bench", "--profile", "smoke", "--rows", "lr", "--executor", "ray", "--out", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"condense bench: error: {RAY_MISSING}"
    assert not (tmp_path / "o").exists(), "nothing is started or written"


@pytest.mark.e2e
def test_a_killed_driver_leaves_no_pool_worker_training_on(tiny_cohort, tmp_path):
    """The local process pool's workers die with the driver (PR_SET_PDEATHSIG): SIGKILL the driver
    mid-job and no worker (nor a converter child of one) keeps training into the folder."""
    pytest.importorskip("ray")  # psutil comes with Ray (ray/thirdparty_files)
    import psutil

    proc = subprocess.Popen(
        condense_command("bench", "--profile", "smoke", "--data", tiny_cohort, "--rows", "lstm,dnn,lr",
                         "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache", "--workers", "2"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=condense_env())
    try:
        lines = []
        for line in proc.stderr:  # until two jobs run in the pool, one in each worker
            lines.append(line)
            if re.search(r"^\[0/3 done, 2 running, ", line):
                break
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "multiprocessing.spawn" in " ".join(p.cmdline())]
        assert len(workers) == 2, "".join(lines)[-3000:]
    finally:
        proc.kill()  # the driver alone, as a crash or `kill -9` would
        proc.wait()
    def running(p) -> bool:  # a dead worker may stay a zombie where nothing reaps orphans
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 30  # a guard against a hang, not a measurement
    while any(running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [w.pid for w in workers if running(w)], "pool workers outlived the killed driver"
