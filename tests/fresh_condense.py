"""``condense ARGS`` in a fresh interpreter that reports, on its last stderr lines, which heavy
modules the command imported: ``HEAVY_MODULES=`` (TensorFlow, Keras, tf_keras) and ``RAY_IMPORTED=``.
For the tests where a fresh process is what they check (imports, start-up output, kill -9)."""

from __future__ import annotations

import sys

RUNNER = r"""
import runpy, sys
sys.argv = ["condense", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("condense", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("HEAVY_MODULES=" + ",".join(heavy), file=sys.stderr)
print("RAY_IMPORTED=" + str("ray" in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def condense_command(*args) -> list[str]:
    """The command line that runs ``condense ARGS`` under :data:`RUNNER`."""
    return [sys.executable, "-c", RUNNER, *map(str, args)]
