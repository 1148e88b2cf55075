"""``rows/`` of a benchmark run folder: every finished job, written as it completes, so an
interrupted run continues with ``condense bench --resume DIR`` and runs only what is missing.

Layout of ``rows/``:

* ``plan.json`` — the run's settings (profile, seeds, selected rows, data fingerprint);
  ``--resume`` takes them from here.
* ``seed<S>/<row>.json`` — one finished job: its rows' fields, the files it wrote (path, bytes,
  sha256) and its seconds.
* ``seed<S>/<row>.npz`` — the job's rows' test-set scores (``np.savez``; read without pickle).

The driver saves a job in this order, each step atomic: its model directories (swapped in
whole), its scores, its record. A record therefore means a complete job; a run killed at any
point loses only the jobs in flight. A job whose rows failed is recorded too (the table shows
them as FAILED), and ``--resume`` runs it again; so does a job whose record or scores cannot
be read (truncated, not JSON, not an ``.npz``).

One writer at a time: a run holds :meth:`RunStore.lock` (an exclusive ``flock`` on the sibling
``.OUT.lock``, the model directory's pattern) from its first check to its last output, so a
second ``condense bench`` on the same folder (a new run or ``--resume``) fails at once naming
the first one's pid, and timings are never taken while another run trains beside them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from condense.bench.jobs import Job, JobResult
from condense.bench.predictions import load_npz
from condense.bench.profiles import profile_from_json
from condense.io import atomic_path, read_json, sha256_file, write_json
from condense.runs.model_dir import acquire_lock, release_lock, write_folder

ROWS_DIR = "rows"
MODELS_DIR = "models"
PLAN_FILE = "plan.json"
PLAN_VERSION = 1


class RunStoreError(ValueError):
    """A run folder that cannot be started or resumed as asked (the message says why and what to do)."""


class RunFolderBusy(RunStoreError):
    """Another process is running a benchmark in the run folder."""


#: What a damaged record or scores file raises when read (the job then runs again).
_UNREADABLE = (ValueError, OSError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile)


class RunStore:
    """The ``rows/`` folder of the run folder ``out_dir``."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.rows_dir = self.out_dir / ROWS_DIR

    # -- one writer -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Hold the run folder's write lock (``flock`` on the sibling ``.OUT.lock``); a second
        holder gets :class:`RunFolderBusy` at once. Missing parent folders are created."""

        target = Path(os.path.abspath(self.out_dir))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunStoreError(f"{self.out_dir}: cannot create {target.parent} ({exc.strerror})") from None
        lock = target.parent / f".{target.name}.lock"
        fd = acquire_lock(lock, self.out_dir, busy=RunFolderBusy, error=RunStoreError,
                          held_by="is in use by another `condense bench` (a run folder has one writer at a time)")
        try:
            yield
        finally:
            release_lock(lock, fd)

    # -- the plan --------------------------------------------------------------------------------
    def plan(self) -> dict | None:
        """The run's settings, checked by type, or None when ``out_dir`` holds no resumable run."""
        path = self.rows_dir / PLAN_FILE
        if not path.exists():
            return None
        try:
            plan = read_json(path)
        except ValueError as exc:
            raise RunStoreError(f"{path}: not a benchmark plan ({exc})") from None
        if not isinstance(plan, dict) or plan.get("version") != PLAN_VERSION or "profile" not in plan:
            raise RunStoreError(f"{path}: not a benchmark plan of this condense version (version {PLAN_VERSION})")
        seeds, rows, data = plan.get("seeds"), plan.get("rows"), plan.get("data", {})
        problem = (
            "'profile' is not an object" if not isinstance(plan["profile"], dict)
            else f"'seeds' is {seeds!r}, not an integer >= 1" if type(seeds) is not int or seeds < 1
            else f"'rows' is {rows!r}, not null or a list of row names"
            if rows is not None and not (isinstance(rows, list) and rows and all(isinstance(r, str) and r for r in rows))
            else "'data' is not an object" if not isinstance(data, dict)
            else None
        )
        if problem:
            raise RunStoreError(f"{path}: {problem}")
        return plan

    def settings(self):
        """(profile, seeds, rows) of the run to resume (None when ``out_dir`` holds none)."""

        plan = self.plan()
        if plan is None:
            return None
        try:
            profile = profile_from_json(plan["profile"])
        except (TypeError, ValueError) as exc:
            raise RunStoreError(f"{self.rows_dir / PLAN_FILE}: 'profile' is not a usable profile ({exc})") from None
        return profile, plan["seeds"], plan.get("rows")

    def check_new(self) -> None:
        """Before a new run: refuses a folder holding an unfinished run (resume it, or choose
        another folder). Nothing is deleted here: :meth:`begin` clears a finished run's records
        and models once every setting of the new run has been checked."""
        plan = self.plan()
        if plan is not None and not plan.get("finished"):
            raise RunStoreError(f"{self.out_dir} holds an unfinished benchmark run ({ROWS_DIR}/{PLAN_FILE}): continue it "
                                f"with `condense bench --resume {self.out_dir}`, or choose another --out")
        if plan is None:  # not a run's folder: a rows/ or models/ there is someone else's, and stays
            foreign = [name for name in (ROWS_DIR, MODELS_DIR) if (self.out_dir / name).exists()]
            if foreign:
                raise RunStoreError(f"{self.out_dir} holds {' and '.join(f'{n}/' for n in foreign)} that no benchmark "
                                    "run made (no rows/plan.json): a run writes its own there; choose another --out")

    def begin(self, plan: dict) -> None:
        """Record the settings of a new run (after :meth:`check_new` and every other check): the
        earlier finished run's records and model directories go first (its outputs get replaced),
        so no model of it stays beside the new run unlisted."""
        self.check_new()
        for folder in (self.rows_dir, self.out_dir / MODELS_DIR):
            if folder.is_dir():
                shutil.rmtree(folder)
        write_json(self.rows_dir / PLAN_FILE, {"version": PLAN_VERSION, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                               "finished": None, **plan})

    def finish(self) -> None:
        """Mark the run finished (its table is written); a new run may then reuse the folder."""
        plan = self.plan()
        if plan is not None:
            write_json(self.rows_dir / PLAN_FILE, {**plan, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def check_data(self, fingerprint: str) -> None:
        """On resume: the data must be what the finished jobs were trained on."""
        recorded = (self.plan() or {}).get("data", {}).get("fingerprint")
        if recorded and recorded != fingerprint:
            raise RunStoreError(f"{self.out_dir}: the data changed since this run started (fingerprint {recorded} "
                                f"-> {fingerprint}); start a new run instead of resuming")

    # -- jobs ------------------------------------------------------------------------------------
    def _paths(self, job: Job) -> tuple[Path, Path]:
        base = self.rows_dir / f"seed{job.seed}" / job.name
        return base.with_suffix(".json"), base.with_suffix(".npz")

    def save(self, job: Job, result: JobResult) -> None:
        """Write a finished job: model directories, then scores, then the record (see the module docstring)."""

        folders: dict[str, dict[str, bytes]] = {}
        for rel, data in result.files.items():
            parts = Path(rel).parts
            if len(parts) < 4 or parts[0] != "models":
                raise RunStoreError(f"job {job.key} returned a file outside models/<seed>/<row>/: {rel}")
            folders.setdefault(str(Path(*parts[:3])), {})[str(Path(*parts[3:]))] = data
        for folder, files in folders.items():
            write_folder(self.out_dir / folder, files)
        record_path, scores_path = self._paths(job)
        with atomic_path(scores_path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{row: np.asarray(p, dtype=np.float64) for row, p in result.scores.items()})
        files = {rel: {"bytes": len(data), "sha256": sha256_file(self.out_dir / rel)} for rel, data in result.files.items()}
        write_json(record_path, {"key": job.key, "seed": job.seed, "rows": result.rows, "files": files,
                                 "seconds": result.seconds, "ok": result.ok})

    def load(self, job: Job, n_test: int | None = None) -> JobResult | None:
        """The job's saved result when it finished with every row ok and its files are intact (and,
        with ``n_test``, one score per test patient); None when it has to run (again)."""
        record_path, scores_path = self._paths(job)
        if not (record_path.exists() and scores_path.exists()):
            return None
        try:
            record = read_json(record_path)
            scores = load_npz(scores_path)  # headers checked before anything is loaded
            rows = record.get("rows", {})
            if not record.get("ok") or not isinstance(rows, dict) or set(rows) != {r.row for r in job.rows}:
                return None
            if not all(isinstance(v, dict) and isinstance(v.get("status"), str) for v in rows.values()):
                return None  # a record of the right shape with rows of the wrong type: damaged
            if not all(np.ndim(p) == 1 and (n_test is None or len(p) == n_test) for p in scores.values()):
                return None
            for rel, entry in record.get("files", {}).items():
                path = self.out_dir / rel
                if not path.is_file() or path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
                    return None
            return JobResult(job.key, job.seed, record["rows"], scores, {}, float(record.get("seconds", 0.0)))
        except _UNREADABLE:
            return None  # a damaged record (truncated, not JSON, not an .npz, wrong types): the job runs again
