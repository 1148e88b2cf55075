"""A `condense export` killed with SIGKILL leaves no converter running, and the next export into
the same folder removes what the killed one left (issue: leftovers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if text in cmdline and "Z" not in state.split()[1:2]:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux only")
def test_killed_export_leaves_no_converter_and_the_next_run_cleans_up(tmp_path, tiny_cohort):
    from condense.runs.workflow import train_run

    model_dir = tmp_path / "dnn"
    train_run(data=str(tiny_cohort), out_dir=model_dir, model="dnn", epochs=1, verbose=0, cache_dir=tmp_path / "cache",
              log=lambda m: None)
    cmd = [sys.executable, "-m", "condense.cli", "export", "--model", str(model_dir), "--format", "int8",
           "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = f"condense-export-{proc.pid}-"
    deadline = time.time() + 120
    while not _processes_mentioning(marker):  # the converter child is running
        assert proc.poll() is None, "the export finished before it could be killed"
        assert time.time() < deadline, "the converter child never started"
        time.sleep(0.05)
    hidden = [p.name for p in model_dir.iterdir() if p.name.startswith(".model.int8.")]
    assert hidden, "the parent holds a hidden temporary file while the child converts"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while _processes_mentioning(marker):
        assert time.time() < deadline, "the converter child outlived its killed parent"
        time.sleep(0.1)
    assert not (model_dir / "model.int8.tflite").exists()
    assert [p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(marker)], "left by the kill"

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert (model_dir / "model.int8.tflite").is_file()
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]
    assert not [p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(marker)]
