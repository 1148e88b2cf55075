"""condense.io: atomic writes leave nothing behind, and what a killed process left is cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from condense.io import atomic_path, atomic_write, remove_stale_temp_files, work_folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = atomic_write(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_temp_files_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    dead = tmp_path / f".model.int8.{_dead_pid()}-k2j4x.tmp.tflite"
    live = tmp_path / f".model.int8.{os.getpid()}-q8w1z.tmp.tflite"
    unrelated = tmp_path / ".keep.tmp"
    for path in (dead, live, unrelated):
        path.write_bytes(b"partial")
    atomic_write(tmp_path / "manifest.json", "{}")
    assert not dead.exists()
    assert live.exists() and unrelated.exists()
    assert remove_stale_temp_files(tmp_path) == []


def test_work_folders_of_dead_processes_are_removed():
    stale = Path(tempfile.gettempdir()) / f"condense-export-{_dead_pid()}-abc123"
    stale.mkdir()
    (stale / "calibration0.npy").write_bytes(b"x" * 1000)
    with work_folder("export") as work:
        assert work.is_dir() and work.name.startswith(f"condense-export-{os.getpid()}-")
        assert not stale.exists()
    assert not work.exists()
