"""What a grid on Ray survives: a worker node killed mid-grid (on ``ray_cluster``: a head with no
CPUs and two 1-CPU worker nodes on this machine), jobs that crash their worker or run out of memory,
a driver killed with SIGKILL (its private cluster dies with it). Each run is compared with the
uninterrupted local grid (``local_grid``); the uninterrupted grid on ``ray_cluster`` is in
test_ray.py. Outputs (times, retries) are printed: ``pytest -rP`` shows them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
import psutil  # noqa: E402  (a dependency of Ray's, on the path once Ray is imported)

from condense.bench.executors import RETRIES_ENV  # noqa: E402
from condense.bench.jobs import FAULT_ENV  # noqa: E402
from fresh_condense import condense_command  # noqa: E402
from grid_runs import (  # noqa: E402
    FINISHED_LINE,
    SHARED_GRID_JOBS,
    SHARED_GRID_ROWS,
    assert_rows_complete,
    assert_same_rows,
    assert_same_table,
    condense_env,
    finished_jobs,
    read_table,
    run_condense,
    worker_node_ids,
)

pytestmark = pytest.mark.e2e  # Ray clusters
GRID = ("bench", "--profile", "smoke", "--rows", ",".join(SHARED_GRID_ROWS))
#: The progress line of a job that runs again after its worker or node died.
RETRY_LINE = re.compile(r"^\[[^\]]*\] (seed\d+/\S+) runs again \(attempt (\d) of (\d)\): (\w+)", re.M)


def grid_args(tiny_cohort, tiny_cache, out: Path, *executor) -> tuple:
    return (*GRID, "--data", tiny_cohort, "--cache-dir", tiny_cache, "--out", out, *executor)


def manifest_grid(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["grid"]


def timed_run(*args, env=None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = run_condense(*args, env=env)
    return proc, time.perf_counter() - t0


class Driver:
    """``condense ARGS`` running in a fresh interpreter, its stderr read as it comes."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(condense_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=condense_env())
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:  # each line visible to wait_for as soon as it is read
            self.lines.append(line)

    def wait_for(self, pattern: re.Pattern, timeout: float = 300) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            assert self.proc.poll() is None, "".join(self.lines)[-4000:]
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern.pattern} in {timeout} s:\n" + "".join(self.lines)[-4000:])

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self.reader.join(30)
        return code, "".join(self.lines)


def test_jobs_that_crash_their_worker_or_run_out_of_memory_fail_alone(local_grid, ray_cluster, tiny_cohort, tiny_cache,
                                                                         tmp_path):
    out = tmp_path / "run"
    # the faults strike as the job starts (lstm, lr) or when it converts (dnn-prune25): dnn alone trains and converts
    faults = "seed0/lstm=worker-segfault,seed0/dnn-prune25=export-segfault,seed0/lr=memory"
    proc, seconds = timed_run(*grid_args(tiny_cohort, tiny_cache, out, "--executor", "ray",
                                         "--ray-address", ray_cluster.address),
                              env={FAULT_ENV: faults, RETRIES_ENV: "1"})
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "some rows failed (see the table); exit code 1" in proc.stdout
    table = read_table(out)
    # the worker's own crash: a system failure, run again once (CONDENSE_RAY_RETRIES=1), then FAILED
    for row in ("lstm", "lstm-int8"):
        assert table[row]["error"].startswith("WorkerCrashedError (in each of 2 attempts): "), table[row]["error"]
    # the converter child's crash: the worker lived and reported it in the row, no retry
    error = table["dnn-prune25"]["error"]
    assert table["dnn-prune25"]["status"] == "failed" and error.startswith("ExportError: ") and "SIGSEGV" in error
    # MemoryError raised by the job: its own error, FAILED at once, never retried
    assert table["lr"]["error"] == f"MemoryError: {FAULT_ENV}: the job ran out of memory"
    # the rest of the grid completed, the same as the local grid (no difference to the failed LR)
    assert_same_rows(local_grid[0], out, ["dnn"], skip=["auroc_diff_lr"])
    assert table["dnn"]["auroc_diff_lr"] == ""
    grid = manifest_grid(out)
    assert list(grid["retried"]) == ["seed0/lstm"] and len(grid["retried"]["seed0/lstm"]) == 1
    retries = [m.groups() for m in RETRY_LINE.finditer(proc.stderr)]
    assert retries == [("seed0/lstm", "2", "2", "WorkerCrashedError")], proc.stderr[-4000:]
    assert finished_jobs(proc.stderr) == sorted(f"seed0/{j}" for j in SHARED_GRID_JOBS)
    print(f"faults {faults}: {seconds:.0f} s; retried {grid['retried']}; errors: "
          + "; ".join(f"{row}: {table[row]['error'][:90]}" for row in ("lstm", "dnn-prune25", "lr")))


def test_a_worker_node_killed_mid_grid_loses_no_job(local_grid, ray_cluster, tiny_cohort, tiny_cache, tmp_path):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    driver = Driver(*grid_args(tiny_cohort, tiny_cache, out, "--executor", "ray", "--ray-address", ray_cluster.address))
    # the first job done: its node takes the next job while the other node is still in the middle of its own
    first = driver.wait_for(re.compile(FINISHED_LINE.pattern + r".* on node (\w+)\)$"))
    [victim] = [node for node in ray_cluster.worker_nodes if not node.node_id.startswith(first.group(3))]
    ray_cluster.remove_node(victim, allow_graceful=False)
    killed_at = time.perf_counter() - t0
    code, stderr = driver.finish()
    seconds = time.perf_counter() - t0
    try:
        assert code == 0, stderr[-4000:]
        assert_same_table(local_grid[0], out)
        assert_rows_complete(out)  # nothing half-written under rows/
        grid = manifest_grid(out)
        [(key, reasons)] = grid["retried"].items()
        assert reasons[0].split(":")[0] in ("NodeDiedError", "WorkerCrashedError"), reasons
        [survivor] = worker_node_ids(ray_cluster)
        assert grid["nodes"][key] == survivor, "the killed job ran again on the node that was left"
        assert [m.group(1, 2, 3) for m in RETRY_LINE.finditer(stderr)] == [(key, "2", "3")]
        assert f"retried: 1 job(s) ran again after their worker or node died: {key} x1" in stderr
        assert re.search(r"\[4/4 done, 0 running, 0 failed, 1 retried \|", stderr), stderr[-2000:]
        print(f"worker node killed {killed_at:.0f} s into the run; {key} ran again ({reasons[0][:100]}); "
              f"{seconds:.0f} s for the command; grid {grid['grid_seconds']:.1f} s")
    finally:  # the module's cluster back to two worker nodes
        ray_cluster.add_node(num_cpus=1, temp_dir=ray_cluster.temp_dir)


def process_tree(pid: int) -> dict[int, tuple[str, float]]:
    """``{pid: (name, start time)}`` of every process under ``pid``."""
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            found[child.pid] = (child.name(), child.create_time())
        except psutil.Error:
            pass
    return found


def still_running(processes: dict[int, tuple[str, float]]) -> list[str]:
    alive = []
    for pid, (name, started) in processes.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {name}")
        except psutil.NoSuchProcess:
            pass
    return alive


def kill_mid_grid(*args) -> tuple[dict[int, tuple[str, float]], Path, int]:
    """``condense ARGS`` on a private Ray cluster, killed with SIGKILL as soon as a job is done; returns
    the cluster's processes as they were just before (``{pid: (name, start time)}``), its folder and
    its watchdog's pid."""
    driver = Driver(*args)
    private = driver.wait_for(re.compile(r"ray: a private cluster in (\S+),.*\(watchdog pid (\d+)\)"))
    folder, watchdog = Path(private.group(1)), int(private.group(2))
    driver.wait_for(FINISHED_LINE)
    cluster = process_tree(driver.proc.pid)
    names = {name for name, _ in cluster.values()}
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), names
    assert folder.is_dir() and psutil.pid_exists(watchdog)
    driver.proc.send_signal(signal.SIGKILL)
    driver.finish()
    return cluster, folder, watchdog


def assert_gone(cluster: dict[int, tuple[str, float]], folder: Path, watchdog: int) -> float:
    """Waits until the killed driver's cluster, folder and watchdog are gone; returns the seconds it took."""
    t0 = time.monotonic()
    while (still_running(cluster) or folder.exists() or psutil.pid_exists(watchdog)) and time.monotonic() < t0 + 60:
        time.sleep(0.2)  # the limit is a guard against a hung clean-up, not a measurement
    assert still_running(cluster) == [], "the private cluster outlived its driver"
    assert not folder.exists(), f"{folder} outlived the driver"
    assert not psutil.pid_exists(watchdog) or psutil.Process(watchdog).status() == psutil.STATUS_ZOMBIE
    return time.monotonic() - t0


def test_a_killed_driver_leaves_no_cluster_behind_and_resumes(local_grid, tiny_cohort, tiny_cache, tmp_path):
    out = tmp_path / "run"
    records = out / "rows" / "seed0"
    # killed on Ray, resumed on Ray and killed again, resumed on the local executor
    kept: list[list[str]] = [[]]
    for args in (grid_args(tiny_cohort, tiny_cache, out, "--executor", "ray", "--workers", "2"),
                 ("bench", "--resume", out, "--cache-dir", tiny_cache, "--executor", "ray", "--workers", "2")):
        cluster, folder, watchdog = kill_mid_grid(*args)
        seconds = assert_gone(cluster, folder, watchdog)
        kept.append(sorted(p.stem for p in records.glob("*.json")))
        assert set(kept[-2]) < set(kept[-1]) < set(SHARED_GRID_JOBS), kept
        print(f"driver killed with {kept[-1]} recorded; its {len(cluster)} cluster processes and {folder} gone "
              f"{seconds:.1f} s after the kill")

    resumed = run_condense("bench", "--resume", out, "--cache-dir", tiny_cache, "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"({len(kept[-1])} done by the earlier run, {len(SHARED_GRID_JOBS) - len(kept[-1])} to run)" in resumed.stderr
    assert finished_jobs(resumed.stderr) == sorted(f"seed0/{j}" for j in SHARED_GRID_JOBS if j not in kept[-1])
    assert_same_table(local_grid[0], out)
    assert_rows_complete(out)
    assert manifest_grid(out)["resumed"] == len(kept[-1])
