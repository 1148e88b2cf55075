"""Tiny child programs for tests/test_child.py, run as ``python -m child_programs REQUEST.json``."""

import os
import signal
import sys
import time

from condense._child import child_main


def handler(request: dict):
    action = request["action"]
    if action == "echo":
        return {"ok": True, "value": request["value"]}
    if action == "raise":
        raise ValueError("bad value in the request")
    if action == "segfault":
        print("about to crash", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "sleep":
        with open(request["pid_file"], "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(float(request["seconds"]))
        return {"ok": True}
    raise AssertionError(action)


if __name__ == "__main__":
    sys.exit(child_main(handler))
