"""condense._child: the one child-process protocol (result, error, crash, timeout, parent death)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from condense._child import ChildError, exit_description, output_tail, run_child

TESTS = str(Path(__file__).resolve().parent)
ENV = {"PYTHONPATH": os.pathsep.join([str(Path(TESTS).parent), TESTS])}


def _run(request, **kwargs):
    return run_child("child_programs", request, what="the test child", env=ENV, **kwargs)


def test_result_comes_back():
    run = _run({"action": "echo", "value": [1, 2]})
    assert run.ok and run.returncode == 0
    assert run.check() == {"ok": True, "value": [1, 2]}


def test_exception_becomes_child_error_with_the_message():
    run = _run({"action": "raise"})
    assert run.returncode == 1
    with pytest.raises(ChildError, match="the test child failed: ValueError: bad value in the request") as info:
        run.check()
    assert info.value.returncode == 1


def test_crash_is_named_with_its_signal_and_output_tail():
    run = _run({"action": "segfault"})
    assert run.returncode == -signal.SIGSEGV and run.result is None
    with pytest.raises(ChildError, match=r"was killed by SIGSEGV \(signal 11\)") as info:
        run.check()
    assert "about to crash" in str(info.value)


def test_timeout_kills_the_child(tmp_path):
    pid_file = tmp_path / "pid"
    run = _run({"action": "sleep", "seconds": 60, "pid_file": str(pid_file)}, timeout=3)
    assert run.returncode is None and run.seconds < 30
    with pytest.raises(ChildError, match="did not finish within 3 s"):
        run.check()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_child_dies_with_its_parent(tmp_path):
    """SIGKILL of the parent (a `condense` command) must not orphan the child."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    pid_file = tmp_path / "pid"
    parent = textwrap.dedent(f"""
        from condense._child import run_child
        run_child("child_programs", {{"action": "sleep", "seconds": 120, "pid_file": {str(pid_file)!r}}},
                  what="orphan test", env={ENV!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], env={**os.environ, **ENV})
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline, "the child did not start"
        time.sleep(0.1)
    child = int(pid_file.read_text())
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the child outlived its killed parent")


def test_descriptions():
    assert exit_description(-9) == "was killed by SIGKILL (signal 9)"
    assert exit_description(139) == "was killed by SIGSEGV (signal 11)"
    assert exit_description(3) == "exited with status 3"
    assert exit_description(None, 5) == "did not finish within 5 s and was stopped"
    assert output_tail("I0000 noise\nreal line\n\n") == "    real line"
