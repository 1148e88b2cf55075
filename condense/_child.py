"""One way to run work in a child Python process: crash isolation for every caller.

condense runs four kinds of work in a fresh interpreter: the TFLite converter (it can segfault),
Keras latency (a clean process with its thread pools set before TensorFlow starts), TensorFlow
Lite for Microcontrollers (a crash on a too-small arena) and the tfmot peers (legacy Keras must be
chosen before TensorFlow is imported). All of them use this module, so they share one set of
rules:

* **Request / result.** The parent writes ``request.json`` (the caller's dict plus ``result``,
  the path the child answers at) in a private temporary folder; the child is
  ``python -m MODULE request.json``. :func:`child_main` is the child's side: it reads the
  request, calls the module's handler and writes the handler's result atomically. A handler
  that raises becomes ``{"ok": False, "error_type", "error"}`` and exit status 1; a crash leaves
  no result, and the parent says how the process ended.
* **Environment.** The child gets the parent's environment with this checkout first on
  ``PYTHONPATH``, TensorFlow's C++ log level defaulting to quiet, and ``TF_USE_LEGACY_KERAS``
  removed unless the caller asks for legacy Keras (only the tfmot peers do).
* **Lifetime.** The child runs in its own process group and, on Linux, receives SIGKILL when the
  parent dies (``PR_SET_PDEATHSIG``): a killed ``condense`` command never leaves a converter
  behind writing files. A timeout or Ctrl-C kills the whole group.
* **Output.** Captured (``quiet=True``; the last lines, without TensorFlow's start-up noise,
  go into the error) or passed through to the terminal.
* **One error type**, :class:`ChildError`, raised by :meth:`ChildRun.check`; callers that turn
  failures into rows (the tfmot peers) read :class:`ChildRun` themselves.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from condense.io import work_folder, write_json
from condense.plugins import import_plugins

#: Characters of a child's exception message kept in its result.
ERROR_CHARS = 1500

#: Lines of child output kept for error messages.
OUTPUT_TAIL_LINES = 15

#: Start-up chatter of TensorFlow / absl that says nothing about a failure.
NOISE_PREFIXES = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ", "E0000 ",
                  "Extension modules:")

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class ChildError(RuntimeError):
    """A child process failed: it raised, crashed, was killed or ran out of time.

    Attributes:
        what: what the child was doing (``"Exporting m.keras to int8"``).
        returncode: the exit status (negative: killed by that signal); ``None`` after a timeout.
        output: the captured output (empty when it went to the terminal).
        result: the child's result, when it wrote one (e.g. the outcomes of finished jobs).
    """

    def __init__(self, message: str, *, what: str, returncode: int | None, output: str = "", result=None):
        super().__init__(message)
        self.what = what
        self.returncode = returncode
        self.output = output
        self.result = result


def child_env(*, legacy_keras: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, this checkout importable, TensorFlow quiet by default."""
    env = dict(os.environ)
    if legacy_keras:
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:  # tf_keras would replace Keras 3 in the child (see the toolchain notes)
        env.pop("TF_USE_LEGACY_KERAS", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def exit_description(returncode: int | None, timeout: float | None = None) -> str:
    """How a child ended, in words: ``"was killed by SIGSEGV (signal 11)"``."""
    if returncode is None:
        return f"did not finish within {timeout:g} s and was stopped" if timeout else "ended in an unknown state"
    signum = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else 0)
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by {name} (signal {signum})"
    return f"exited with status {returncode}"


def output_tail(output: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last ``lines`` meaningful lines of a child's output, indented, or ``""``."""
    kept = [ln for ln in output.strip().splitlines() if ln.strip() and not ln.startswith(NOISE_PREFIXES)]
    return "\n".join("    " + (ln if len(ln) <= 200 else ln[:200] + " ...") for ln in kept[-lines:])


@dataclass
class ChildRun:
    """What a finished child left: exit status, seconds, captured output, its result (or None)."""

    what: str
    returncode: int | None
    seconds: float
    output: str
    result: object
    timeout: float | None = None
    quiet: bool = True

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None

    def failure(self) -> str:
        """Why the child failed, in one sentence (the child's own exception when it sent one)."""
        error = self.result.get("error") if isinstance(self.result, dict) else None
        if error:
            return f"{self.result.get('error_type', 'Error')}: {error}"
        how = f"the child process {exit_description(self.returncode, self.timeout)}"
        if self.returncode == 0:
            how += " without a result"
        return how

    def output_note(self) -> str:
        """Where to read the child's output: its last lines, or "above" when it was shown."""
        if not self.quiet:
            return " See the output above."
        tail = output_tail(self.output)
        return f"\n  Last output of the child:\n{tail}" if tail else ""

    def check(self) -> object:
        """The result, or :class:`ChildError` naming what failed and how."""
        if self.ok and not (isinstance(self.result, dict) and self.result.get("ok") is False):
            return self.result
        raise ChildError(f"{self.what} failed: {self.failure()}.{self.output_note()}", what=self.what,
                         returncode=self.returncode, output=self.output, result=self.result)


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``), so that no
    worker outlives a killed driver; exit at once if the parent (``parent_pid``) is already gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before the request took effect
        os._exit(1)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child before exec
    os.setpgrp()
    die_with_parent()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _pump(stream, tail: collections.deque, echo) -> None:
    for line in iter(stream.readline, ""):
        tail.append(line.rstrip("\n"))
        if echo is not None:
            echo.write(line)
            echo.flush()
    stream.close()


def run_child(module: str, request: dict, *, what: str, timeout: float | None = None, quiet: bool = True,
              legacy_keras: bool = False, env: dict[str, str] | None = None,
              work: str | os.PathLike | None = None) -> ChildRun:
    """Run ``python -m module request.json`` and return what it left (never raises for a failed
    child: call :meth:`ChildRun.check`).

    Args:
        module: the child program, a module with ``if __name__ == "__main__": child_main(...)``.
        request: JSON-able dict for the child; ``result`` is added (the path it answers at).
        what: what the child does, for messages ("Exporting m.keras to int8").
        timeout: seconds before the child's process group is killed (``None``: no limit).
        quiet: capture the output (kept for the error) instead of passing it through.
        legacy_keras: run on tf_keras (``TF_USE_LEGACY_KERAS=1``); only the tfmot peers.
        env: extra environment variables.
        work: a folder for ``request.json`` / ``result.json`` (default: a private temporary one,
            removed afterwards); arrays the request points to usually live there too.
    """
    with _work_folder(work) as folder:
        result_path = folder / "result.json"
        result_path.unlink(missing_ok=True)
        request_path = folder / "request.json"
        request_path.write_text(json.dumps({**request, "result": str(result_path)}), encoding="utf-8")
        cmd = [sys.executable, "-m", module, str(request_path)]
        tail: collections.deque = collections.deque(maxlen=400)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=child_env(legacy_keras=legacy_keras, extra=env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                preexec_fn=_die_with_parent)
        pump = threading.Thread(target=_pump, args=(proc.stdout, tail, None if quiet else sys.stderr), daemon=True)
        pump.start()
        returncode = None
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        except BaseException:  # Ctrl-C: never leave the child behind
            _kill_group(proc)
            raise
        finally:
            pump.join(timeout=10)
        seconds = time.perf_counter() - start
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
    return ChildRun(what=what, returncode=returncode, seconds=seconds, output="\n".join(tail) if quiet else "",
                    result=result, timeout=timeout, quiet=quiet)


@contextlib.contextmanager
def _work_folder(work):
    """``work`` as a Path, or a private temporary folder removed on exit (:func:`condense.io.work_folder`)."""
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
        yield Path(work)
        return
    with work_folder("child") as tmp:
        yield Path(tmp)


def error_result(exc: BaseException) -> dict:
    """A failure as the child reports it: ``{"ok": False, "error_type", "error"}`` (the traceback
    goes to stderr, which the parent keeps the tail of)."""

    traceback.print_exception(exc)
    text = str(exc).strip()
    if len(text) > ERROR_CHARS:
        text = text[:ERROR_CHARS] + " [...]"
    return {"ok": False, "error_type": type(exc).__name__, "error": text or repr(exc)}


def write_result(request: dict, result) -> None:
    """Write the child's (partial or final) result where the parent reads it, atomically."""
    write_json(request["result"], result)


def child_result(module: str, request: dict, *, what: str, timeout: float | None = None,
                 work: str | os.PathLike | None = None) -> dict:
    """:func:`run_child` then :meth:`ChildRun.check`: the child's result, or a RuntimeError carrying its
    account of the failure (for callers that report a child's failure like any other error)."""
    run = run_child(module, request, what=what, timeout=timeout, work=work)
    try:
        return run.check()
    except ChildError as exc:
        raise RuntimeError(str(exc)) from None


def child_main(handler: Callable[[dict], object], argv: list[str] | None = None) -> int:
    """The child's side: read ``request.json``, run ``handler(request)``, write its result.

    A handler that raises writes ``{"ok": False, "error_type", "error"}`` (with the traceback
    on stderr) and the child exits 1; ``faulthandler`` prints the Python stack on a crash.
    """

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = spec.name if spec is not None else handler.__module__
        print(f"usage: python -m {name} REQUEST.json  (internal: run by condense)", file=sys.stderr)
        return 2
    faulthandler.enable()
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        if request.get("plugins"):  # what the parent registered from its own modules (condense.plugins)

            import_plugins(request["plugins"])
        result = handler(request)
    except Exception as exc:  # every failure becomes one structured result for the parent
        write_result(request, error_result(exc))
        return 1
    if result is not None:
        write_result(request, result)
    return 0
