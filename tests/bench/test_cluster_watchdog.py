"""The watchdog of a private Ray cluster (condense/bench/cluster_watchdog.py) on stand-in processes:
what names the cluster's folder dies with the driver, with its children, and the folder goes;
the driver's other children are left alone. Ray's retry settings and fault hooks read clearly."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("ray")  # the watchdog runs where Ray is installed (psutil comes with it)
import psutil  # noqa: E402

from condense.bench import cluster_watchdog  # noqa: E402
from condense.bench.executors import GridProgress, RETRIES_ENV, ray_retries, system_failure  # noqa: E402
from condense.bench.jobs import FAULT_ENV, Job, injected_fault  # noqa: E402
from condense.bench.profiles import get_profile  # noqa: E402
from condense.bench.rows import plan_rows  # noqa: E402

#: A stand-in for a cluster process: names the folder on its command line and starts a grandchild
#: that does not (as raylet starts workers whose command line Ray rewrites).
CLUSTER_PROCESS = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; "
                   "time.sleep(120)']); print('up', flush=True); time.sleep(120)")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.2)
    return False


def start_cluster_process(folder) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER_PROCESS, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    return proc, [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]


def test_the_watchdog_ends_the_cluster_not_the_drivers_other_children(tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "session.log").write_text("logs")
    watchdog = cluster_watchdog.start(str(folder))
    other = subprocess.Popen(SLEEPER)  # a child of the driver that is no part of the cluster
    cluster, pids = start_cluster_process(folder)
    try:
        assert len(pids) == 2
        time.sleep(4 * cluster_watchdog.POLL_SECONDS)  # seen by the watchdog
        cluster_watchdog.stop(watchdog)  # the run's end: the driver lives on
        assert watchdog.returncode == 0
        assert gone(pids), "a cluster process outlived the watchdog's stop"
        assert not folder.exists()
        assert other.poll() is None, "the watchdog killed a process that was no part of the cluster"
    finally:
        other.kill()
        cluster.kill()
        other.wait()
        cluster.wait()


DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from condense.bench import cluster_watchdog
    folder = sys.argv[1]
    watchdog = cluster_watchdog.start(folder)
    cluster = subprocess.Popen([sys.executable, "-c", sys.argv[2], folder], stdout=subprocess.PIPE, text=True)
    cluster.stdout.readline()
    print(watchdog.pid, cluster.pid, flush=True)
    time.sleep(120)
""")


def test_the_cluster_dies_with_a_killed_driver(tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(folder), CLUSTER_PROCESS], stdout=subprocess.PIPE,
                              text=True)
    try:
        watchdog, cluster = map(int, driver.stdout.readline().split())
        pids = [cluster, *(c.pid for c in psutil.Process(cluster).children(recursive=True))]
        assert len(pids) == 2 and psutil.Process(watchdog).ppid() == driver.pid
        time.sleep(4 * cluster_watchdog.POLL_SECONDS)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert gone([*pids, watchdog]), "the cluster or its watchdog outlived the driver"
        assert not folder.exists()
    finally:
        driver.kill()
        driver.wait()


def test_retries_and_faults_are_read_clearly(monkeypatch):
    monkeypatch.delenv(RETRIES_ENV, raising=False)
    assert ray_retries() == 2
    monkeypatch.setenv(RETRIES_ENV, "0")
    assert ray_retries() == 0
    for bad in ("-1", "two", "1.5"):
        monkeypatch.setenv(RETRIES_ENV, bad)
        with pytest.raises(ValueError, match=rf"^{RETRIES_ENV} must be a whole number >= 0 .*got '{bad}'$"):
            ray_retries()

    rows = {r.row: r for r in plan_rows(get_profile("smoke", data="unused"))}
    lr, dnn = Job(0, (rows["lr"],)), Job(1, (rows["dnn"],))
    monkeypatch.setenv(FAULT_ENV, "seed0/lr=memory, seed1/dnn=worker-segfault")
    assert (injected_fault(lr), injected_fault(dnn), injected_fault(Job(0, (rows["dnn"],)))) == (
        "memory", "worker-segfault", None)
    monkeypatch.setenv(FAULT_ENV, "seed0/lr=oom")
    with pytest.raises(ValueError, match=rf"^{FAULT_ENV} takes KEY=FAULT items with FAULT one of .*'seed0/lr=oom'"):
        injected_fault(lr)


def test_a_dead_worker_or_node_is_retried_an_error_of_the_job_is_not():
    from ray import exceptions as rex

    assert system_failure(rex.NodeDiedError("node died"))
    assert system_failure(rex.WorkerCrashedError())
    assert system_failure(rex.ObjectLostError("00" * 28, "", ""))
    assert not system_failure(rex.RayTaskError("_ray_job", "traceback", MemoryError("no memory")))
    assert not system_failure(rex.RayTaskError("_ray_job", "traceback", ValueError("bad")).as_instanceof_cause())
    assert not system_failure(MemoryError("no memory"))


def test_progress_counts_retries(capsys):
    rows = {r.row: r for r in plan_rows(get_profile("smoke", data="unused"))}
    job = Job(0, (rows["lr"],))
    progress = GridProgress([job], 2, quiet=False)
    progress.started(job)
    progress.retried(job, "NodeDiedError: the node died", 1, 3)
    progress.started(job)
    progress.say_retries()
    err = capsys.readouterr().err
    assert "[0/1 done, 0 running, 0 failed, 1 retried | " in err
    assert "seed0/lr runs again (attempt 2 of 3): NodeDiedError: the node died" in err
    assert "retried: 1 job(s) ran again after their worker or node died: seed0/lr x1 (NodeDiedError" in err
    assert progress.retries == {"seed0/lr": ["NodeDiedError: the node died"]} and progress.running == 1


def test_a_skipped_job_is_counted_done_not_failed(capsys):
    from condense.bench.jobs import SKIPPED, JobResult

    rows = {r.row: r for r in plan_rows(get_profile("smoke", data="unused"))}
    job = Job(0, (rows["tfmot-qat-dnn"],))
    progress = GridProgress([job], 2, quiet=False)
    progress.skipped(job, JobResult(job.key, 0, {"tfmot-qat-dnn": {"status": SKIPPED, "error": "not installed"}}))
    assert (progress.done, progress.failed) == (1, 0)  # an optional peer not installed: the run exits 0
    assert "[1/1 done, 0 running, 0 failed | " in capsys.readouterr().err
