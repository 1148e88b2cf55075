"""Costly test inputs (a cohort, a data cache, trained model directories, a benchmark grid) built
once per test run and shared by every pytest-xdist worker (docs/testing.md)."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder ``name`` made by ``build(folder)`` once per test run, shared by every xdist worker.

    The first worker to ask builds it under a file lock (the others wait, then reuse it); a build
    that raises leaves nothing behind, and the next caller tries again. Tests that change what is
    inside work on a copy (:func:`copy_of`)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


def copy_of(src: Path, dest: Path) -> Path:
    """A private copy of a shared model directory (``dest`` must not exist)."""
    shutil.copytree(src, dest)
    return dest
