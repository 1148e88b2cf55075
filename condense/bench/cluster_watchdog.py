"""A private Ray cluster dies with the ``condense bench`` driver that started it, however the driver ends.

``ray.init()`` without an address starts the cluster's processes as children of the driver. Ray's
own fate sharing stops most of them when the driver is killed, but not all (with Ray 2.60 its
dashboard and runtime-env agents outlive a driver killed with SIGKILL, adopted by init), and Ray
never removes the cluster's session folder. So the driver starts this watchdog first: a separate
process in its own session (a Ctrl-C or a kill of the driver's process group leaves it running),
holding the read end of a pipe from the driver. While the driver lives, the watchdog records the
cluster's processes every :data:`POLL_SECONDS` (the driver's children whose command line names the
cluster's folder, and everything under them; pid and start time, so a reused pid is never taken
for one of them); when the pipe closes (the driver is done with the cluster, or died) it
kills every recorded process still running, and every process whose command line names the
cluster's folder, waits until they are gone and removes the folder.

Run as a script (``python cluster_watchdog.py DRIVER_PID FOLDER``): it imports neither condense
nor Ray, only psutil (a dependency of Ray's, vendored in ``ray/thirdparty_files``).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

# Deferred on purpose: psutil is imported inside the functions that use it, so importing this module stays light.

#: How often the watchdog records the driver's process tree, in seconds.
POLL_SECONDS = 0.25
#: How long the watchdog waits for the processes it killed to be gone, in seconds.
KILL_WAIT_SECONDS = 30.0


def start(folder: str) -> subprocess.Popen:
    """The watchdog of this process's private cluster in ``folder`` (close its stdin to stop the cluster)."""
    import importlib.util

    env = dict(os.environ)
    ray_dir = importlib.util.find_spec("ray").submodule_search_locations[0]
    vendored = os.path.join(ray_dir, "thirdparty_files")  # psutil
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [vendored, env.get("PYTHONPATH")]))
    # -P: the script's folder (condense/bench) stays off sys.path, so no module there shadows another
    return subprocess.Popen([sys.executable, "-P", os.path.abspath(__file__), str(os.getpid()), folder],
                            stdin=subprocess.PIPE, env=env, start_new_session=True, close_fds=True)


def stop(watchdog: subprocess.Popen, timeout: float = KILL_WAIT_SECONDS + 15) -> None:
    """Tell the watchdog the driver is done with the cluster and wait until it has cleaned up."""
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def _names(psutil, process, folder: str) -> bool:
    """Whether ``process``'s command line names ``folder`` (every process Ray starts for the cluster does)."""
    try:
        return any(folder in arg for arg in process.cmdline())
    except psutil.Error:
        return False


def _cluster(psutil, driver: int, folder: str) -> dict[int, float]:
    """``{pid: start time}`` of the cluster's processes: the driver's children that name ``folder``
    (Ray's head processes) and everything under them (agents, workers, their children); the driver's
    other children are no part of it."""
    found = {}
    try:
        for child in psutil.Process(driver).children():
            if _names(psutil, child, folder):
                for process in [child, *child.children(recursive=True)]:
                    found[process.pid] = process.create_time()
    except psutil.Error:
        pass
    return found


def _alive(psutil, known: dict[int, float], folder: str) -> list:
    """The recorded processes still running (same pid and start time), their children, and every
    process whose command line names ``folder``."""
    found = {}
    for pid, started in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                found[pid] = process
                found.update({c.pid: c for c in process.children(recursive=True)})
        except psutil.Error:
            pass
    for process in psutil.process_iter():
        try:
            if _names(psutil, process, folder) and process.status() != psutil.STATUS_ZOMBIE:
                found[process.pid] = process
        except psutil.Error:
            pass
    found.pop(os.getpid(), None)
    return list(found.values())


def watch(driver: int, folder: str) -> None:
    import psutil

    known: dict[int, float] = {}
    while True:
        known.update(_cluster(psutil, driver, folder))
        readable, _, _ = select.select([sys.stdin.buffer], [], [], POLL_SECONDS)
        if readable and not os.read(sys.stdin.fileno(), 4096):  # EOF: the driver closed the pipe or died
            break
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while (left := _alive(psutil, known, folder)) and time.monotonic() < deadline:
        for process in left:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=1.0)
    for _ in range(5):  # a dying process may still write its last log lines
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            break
        time.sleep(0.5)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver: the driver decides
    watch(int(sys.argv[1]), sys.argv[2])
