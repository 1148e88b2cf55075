"""TensorFlow's start-up chatter, kept off a command-line user's terminal.

TensorFlow's native code writes some lines before its log level (``TF_CPP_MIN_LOG_LEVEL``)
applies: "All log messages before absl::InitializeLog() is called are written to STDERR" and, on
CPUs where TensorFlow turns oneDNN on by default (recent Xeons), "oneDNN custom operations are
on". :func:`import_tensorflow_quietly` imports TensorFlow with file descriptor 2 captured and
writes back every captured line that is not such chatter.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile

#: Lines TensorFlow writes while it is imported that say nothing to a user.
START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]0000 \S+ +\d+ \S+\] "
    r"|To enable the following instructions: )"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (once per process) without its start-up chatter; other output passes."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            importlib.import_module("tensorflow")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not START_UP_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
