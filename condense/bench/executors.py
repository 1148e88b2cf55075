"""Where the benchmark grid's jobs run: ``local`` (this machine, no Ray: one job at a time in this
process, or ``workers`` at a time in a standard-library process pool) or ``ray`` (every job a Ray
task on a local or remote Ray cluster).

Both call :func:`condense.bench.jobs.run_job` with the same inputs and the same TensorFlow
thread setting, so a seed gives the same table whichever executor ran it. The driver saves each
result as it arrives (``on_result``) and measures the timings after the grid has finished.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

from typing import TYPE_CHECKING

from condense.checks import check_choice, check_int

# Deferred on purpose: the CLI imports this module for its choices, so it stays light; the job code,
# Ray and TensorFlow's thread settings are imported inside the functions that run jobs.
if TYPE_CHECKING:
    from condense.bench.jobs import Job, JobContext, JobResult

EXECUTORS = ("local", "ray")
#: Environment variables a Ray worker gets from the driver (TensorFlow's settings, condense's).
FORWARDED_ENV_PREFIXES = ("TF_", "ONEDNN_", "CONDENSE_")
#: Environment variable: how many times a job runs again when its Ray worker or node died under it
#: (a system failure; an error raised by the job itself is never retried). Default :data:`DEFAULT_RETRIES`.
RETRIES_ENV = "CONDENSE_RAY_RETRIES"
DEFAULT_RETRIES = 2
RAY_MISSING = ("--executor ray needs Ray, an optional extra of condense: pip install 'condense[ray]' "
               "(or: pip install 'ray>=2.40,<3')")


class GridProgress:
    """One line per finished job for the whole grid (done / running / failed, elapsed, time left),
    on stderr; epoch lines when the job runs in this process."""

    def __init__(self, jobs: list[Job], epochs: int, quiet: bool):
        self.quiet, self.epochs = quiet, epochs
        self.n_jobs = len(jobs)
        self.left = sum(job.units(epochs) for job in jobs)
        self.units_done = 0.0
        self.done = self.failed = self.running = 0
        self.t0 = time.perf_counter()
        #: job key -> why each of its runs before the last one ended (its worker or node died)
        self.retries: dict[str, list[str]] = {}
        #: job key -> the Ray node that ran it
        self.nodes: dict[str, str] = {}

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def eta(self) -> str:
        if self.units_done <= 0:
            return "estimating"
        rate = (time.perf_counter() - self.t0) / self.units_done
        return f"~{max(rate * self.left, 0.0) / 60:.1f} min left"

    def status(self) -> str:
        retried = f", {len(self.retries)} retried" if self.retries else ""
        return (f"[{self.done}/{self.n_jobs} done, {self.running} running, {self.failed} failed{retried} | "
                f"{(time.perf_counter() - self.t0) / 60:.1f} min | {self.eta()}]")

    def resumed(self, job: Job, result: JobResult) -> None:
        """A job finished by an earlier run: counted, not timed."""
        self.left -= job.units(self.epochs)
        self.done += 1

    def skipped(self, job: Job, result: JobResult) -> None:
        """A job that does not run (an optional peer not installed): counted, and said once."""
        self.resumed(job, result)
        reason = next(iter(result.rows.values())).get("error", "")
        self.say(f"{self.status()} {job.key} skipped: {reason}")  # not a failure: the run's exit status is 0

    def started(self, job: Job) -> None:
        self.running += 1
        self.say(f"{self.status()} {job.key}: {job.rows[0].method}")

    def finished(self, job: Job, result: JobResult) -> None:
        units = job.units(self.epochs)
        self.running -= 1
        self.done += 1
        self.failed += not result.ok
        self.units_done += units
        self.left -= units
        verdict = "ok" if result.ok else "FAILED: " + "; ".join(
            f"{row} {r.get('error', '')}" for row, r in result.rows.items() if r.get("status") != "ok")[:300]
        node = f" on node {self.nodes[job.key][:8]}" if job.key in self.nodes else ""
        self.say(f"{self.status()} {job.key} {verdict} ({result.seconds:.0f} s{node})")

    def retried(self, job: Job, reason: str, attempt: int, attempts: int) -> None:
        """``job``'s worker or node died during run ``attempt``: it runs again (``attempts`` in all at most)."""
        self.running -= 1
        self.retries.setdefault(job.key, []).append(reason)
        self.say(f"{self.status()} {job.key} runs again (attempt {attempt + 1} of {attempts}): {reason}")

    def say_retries(self) -> None:
        """The grid's last word on retries: which jobs ran again, and why (nothing when none did)."""
        if self.retries:
            self.say(f"retried: {len(self.retries)} job(s) ran again after their worker or node died: " + "; ".join(
                f"{key} x{len(reasons)} ({reasons[-1][:120]})" for key, reasons in self.retries.items()))

    def epoch(self, row: str, epoch: int, epochs: int, seconds: float, loss: float, val_auroc: float) -> None:
        self.say(f"  {row} epoch {epoch}/{epochs}: {seconds:.1f} s, loss {loss:.4f}, val AUROC {val_auroc:.4f}")


def default_local_workers(threads: int = 1) -> int:
    """Jobs at a time on this machine: one per ``threads`` cores."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


class LocalExecutor:
    """The jobs on this machine, no Ray needed: ``workers=1`` runs them one after the other in this
    process (epoch lines shown); ``workers>1`` runs that many at a time in a
    :class:`concurrent.futures.ProcessPoolExecutor` of spawned interpreters, each given the data
    once and ``threads`` TensorFlow threads (as a Ray worker is). Parallel jobs disturb each other's
    clocks: the driver re-measures training time alone after the grid (``condense.bench.runner``).
    """

    name = "local"

    def __init__(self, workers: int | None = None, threads: int = 1):
        if workers is not None:
            check_int("workers", workers, 1)
        self.threads = threads
        self.workers = workers if workers is not None else 1

    def run(self, jobs: list[Job], ctx: JobContext, progress: GridProgress, on_result) -> None:
        if self.workers > 1 and len(jobs) > 1:
            return self._run_pool(jobs, ctx, progress, on_result)
        from condense.bench.jobs import error_text, failed_result, run_job

        for job in jobs:
            progress.started(job)
            t0 = time.perf_counter()
            try:
                result = run_job(job, ctx, on_epoch=progress.epoch, say=progress.say)
            except Exception as exc:  # noqa: BLE001 - one dead job is its rows FAILED, not a dead grid
                result = failed_result(job, error_text(exc), time.perf_counter() - t0)
            on_result(job, result)

    def _run_pool(self, jobs: list[Job], ctx: JobContext, progress: GridProgress, on_result) -> None:
        import concurrent.futures as cf
        import multiprocessing

        from condense.bench.jobs import error_text, failed_result

        workers = min(self.workers, len(jobs))
        progress.say(f"local: {workers} job(s) at a time in a process pool, {self.threads} TensorFlow thread(s) each")
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_pool_start, initargs=(ctx, self.threads, os.getpid()))
        pending: dict = {}
        # the longest jobs first, so that no long job starts last and runs alone (results are saved
        # as they arrive; the table's order does not depend on this one)
        queue = sorted(jobs, key=lambda job: -job.units(progress.epochs))
        try:
            while queue or pending:
                while queue and len(pending) < workers:
                    job = queue.pop(0)
                    pending[pool.submit(_pool_job, job)] = (job, time.perf_counter())
                    progress.started(job)
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    job, t0 = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - a job that raised or a worker that died: its rows FAILED
                        result = failed_result(job, error_text(exc), time.perf_counter() - t0)
                    on_result(job, result)
        except BaseException:  # Ctrl-C or a failing save: queued jobs are dropped, saved ones stay
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            raise
        pool.shutdown(wait=True)


#: The grid's data in a pool worker (set once by :func:`_pool_start`).
_POOL_CONTEXT: JobContext | None = None


def _pool_start(ctx: JobContext, threads: int, driver_pid: int) -> None:
    """A pool worker's start: it dies with the driver (a killed driver leaves no worker training on),
    TensorFlow's pools as on the local path and on Ray, then the data."""
    global _POOL_CONTEXT
    from condense._child import die_with_parent
    from condense.train import set_tf_threads

    die_with_parent(driver_pid)
    set_tf_threads(threads)
    _POOL_CONTEXT = ctx


def _pool_job(job: Job) -> JobResult:
    from condense.bench.jobs import run_job

    return run_job(job, _POOL_CONTEXT)


class RayMissing(ValueError):
    """``--executor ray`` without Ray installed (the message says how to install it)."""


def import_ray():
    """Ray, or :class:`RayMissing` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissing(RAY_MISSING) from None
    return ray


def _ray_job(job: Job, profile, data_record: dict, dataset, prepared, threads: int) -> tuple[str, JobResult]:
    """A Ray task: one job on a worker, with TensorFlow's pools set as on the local path; returns
    the node it ran on and its result."""
    import ray

    from condense.bench.jobs import JobContext, run_job
    from condense.train import set_tf_threads

    set_tf_threads(threads)
    return ray.get_runtime_context().get_node_id(), run_job(job, JobContext(profile, dataset, prepared, data_record))


def ray_retries() -> int:
    """The times a job runs again after a system failure (:data:`RETRIES_ENV`)."""
    value = os.environ.get(RETRIES_ENV, "").strip()
    if not value:
        return DEFAULT_RETRIES
    try:
        return check_int(RETRIES_ENV, int(value), 0)
    except ValueError:
        raise ValueError(f"{RETRIES_ENV} must be a whole number >= 0 (the times a job whose Ray worker or node "
                         f"died runs again), got {value!r}") from None


def system_failure(exc: BaseException) -> bool:
    """Whether a Ray task's error says its worker or node went away (the job never reported), as
    opposed to an error the job raised (Ray's ``RayTaskError``)."""
    from ray import exceptions as rex

    return not isinstance(exc, rex.RayTaskError) and isinstance(
        exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError, rex.ObjectLostError,
              rex.OutOfMemoryError))


class RayExecutor:
    """Every job a Ray task declaring ``threads`` CPUs (its training runs with that many TensorFlow
    threads; 1 by default).

    ``address``: a running cluster (``ray start --head`` prints it; ``"auto"`` finds a local
    one); None starts a private local cluster of ``workers`` CPUs for this run, in a temporary
    folder, watched by :mod:`condense.bench.cluster_watchdog` so that its processes and folder go
    when the run ends, however it ends. ``workers``: at most that many jobs in flight (default: the
    cluster's CPUs). The data and the prepared inputs go into Ray's object store once; every task
    reads them from there.

    A job whose worker or node dies under it (a system failure: :func:`system_failure`) runs
    again, on any node, up to ``retries`` times (default: :func:`ray_retries`); Ray's own task
    retries are off, so that every retry is counted (``progress.retries``, the manifest). An
    error the job raises is its rows FAILED at once, never retried.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1,
                 retries: int | None = None):
        if workers is not None:
            check_int("workers", workers, 1)
        self.address, self.workers, self.threads = address, workers, threads
        self.retries = ray_retries() if retries is None else check_int("retries", retries, 0)
        import_ray()  # fail before any data is read

    def _init(self, ray, progress: GridProgress):
        """Connects to the cluster (or starts the private one); returns what ends it, or None when
        Ray was already initialized (the caller's cluster)."""
        if ray.is_initialized():
            return None
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
        debug = bool(os.environ.get("CONDENSE_DEBUG"))
        kwargs = dict(include_dashboard=False, log_to_driver=debug, runtime_env={"env_vars": env},
                      logging_level=logging.INFO if debug else logging.ERROR)
        if self.address:
            ray.init(address=self.address, **kwargs)
            return ray.shutdown
        from condense.bench import cluster_watchdog

        folder = tempfile.mkdtemp(prefix="condense-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        watchdog = cluster_watchdog.start(folder)  # before the cluster: it dies with this process

        def end() -> None:
            try:
                ray.shutdown()
            finally:
                cluster_watchdog.stop(watchdog)

        progress.say(f"ray: a private cluster in {folder}, removed with its processes when this run ends, "
                     f"however it ends (watchdog pid {watchdog.pid})")
        try:
            ray.init(num_cpus=self.workers or os.cpu_count() or 1, _temp_dir=folder, **kwargs)
        except BaseException:
            end()
            raise
        return end

    def run(self, jobs: list[Job], ctx: JobContext, progress: GridProgress, on_result) -> None:
        from condense.bench.jobs import error_text, failed_result

        ray = import_ray()
        end = self._init(ray, progress)
        pending: dict = {}
        attempts: dict[str, int] = {}
        try:
            capacity = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            nodes = sum(node["Alive"] for node in ray.nodes())
            progress.say(f"ray: {capacity} job(s) at a time on {ray.cluster_resources().get('CPU', 0):g} CPU(s), "
                         f"{nodes} node(s); a job whose worker or node dies runs again up to {self.retries} time(s)")
            dataset_ref, prepared_ref = ray.put(ctx.dataset), ray.put(ctx.prepared)  # the data goes once
            # as many CPUs as TF threads; Ray's retries off: the loop below retries, and counts
            task = ray.remote(num_cpus=self.threads, max_retries=0)(_ray_job)
            queue = list(jobs)
            while queue or pending:
                while queue and len(pending) < capacity:
                    job = queue.pop(0)
                    attempts[job.key] = attempts.get(job.key, 0) + 1
                    pending[task.remote(job, ctx.profile, ctx.data_record, dataset_ref, prepared_ref,
                                        self.threads)] = (job, time.perf_counter())
                    progress.started(job)
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job, t0 = pending.pop(ref)
                    try:
                        progress.nodes[job.key], result = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a task that raised or a worker that died
                        cause = getattr(exc, "cause", None) or exc
                        reason, runs = error_text(cause), attempts[job.key]
                        if system_failure(exc) and runs <= self.retries:
                            progress.retried(job, reason, runs, self.retries + 1)
                            queue.insert(0, job)  # first in line for the next free CPU
                            continue
                        if runs > 1:
                            earlier = progress.retries.get(job.key, [])
                            name, _, message = reason.partition(": ")
                            if all(r.partition(": ")[0] == name for r in earlier):
                                reason = f"{name} (in each of {runs} attempts): {message}"[:300]
                            else:  # the attempts died of different things: say the last, then the earlier
                                reason = (f"{reason} (attempt {runs} of {runs}; earlier: "
                                          f"{'; '.join(r.partition(': ')[0] for r in earlier)})")[:300]
                        result = failed_result(job, reason, time.perf_counter() - t0)
                    on_result(job, result)
        except BaseException:  # Ctrl-C or a failing save: jobs in flight are cancelled, saved ones stay
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if end is not None:
                end()


def make_executor(name: str, *, address: str | None = None, workers: int | None = None, threads: int = 1):
    """The executor called ``name`` (``local`` or ``ray``)."""
    check_choice("executor", name, EXECUTORS)
    if name == "local":
        if address:
            raise ValueError("--ray-address needs --executor ray")
        return LocalExecutor(workers, threads)
    return RayExecutor(address, workers, threads)
