"""Progress of long data work on stderr: episode reading, record reading, cohort writing.

One :class:`Progress` serves every reader and writer of the data layer, so that they all look
alike and all fall silent with ``quiet``.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]

#: Off a terminal, at most one progress line per this many seconds (plus the final line).
LINE_SECONDS = 5.0


class Progress:
    """A count of work done, on stderr.

    On a terminal one line is redrawn in place (a 30-character bar, then ``done/total`` and
    ``unit``), at most once per percent of the work. Elsewhere (logs, CI) a plain line with the
    elapsed seconds is printed at the first update and then each time another ``1/lines`` of the
    work is done, at most one line per :data:`LINE_SECONDS` (the last line always); ``lines=0``
    prints nothing off a terminal.

    Args:
        label: what is being done (``"reading 3000 episodes"``).
        total: how many items in all; nothing is shown when it is 0.
        quiet: show nothing at all.
        unit: text after the count (``" records"``).
        lines: how many steps the work is cut into for the lines printed off a terminal.

    Example:
        >>> progress = Progress("reading 3 episodes", 3, quiet=True)
        >>> for done in (1, 2, 3):
        ...     progress.update(done)
        >>> progress.close()
    """

    def __init__(self, label: str, total: int, *, quiet: bool = False, unit: str = "", lines: int = 10):
        self.label, self.total, self.unit, self.lines = label, total, unit, lines
        self.enabled = not quiet and total > 0
        self.tty = self.enabled and sys.stderr.isatty()
        self.started = time.perf_counter()
        self.shown = -1  # last step (percent on a terminal, 1/lines otherwise) shown
        self.last_line = -LINE_SECONDS  # when the last line was printed off a terminal

    def update(self, done: int) -> None:
        """``done`` of the ``total`` items are finished."""
        if not self.enabled:
            return
        if self.tty:
            percent = done * 100 // self.total
            if percent > self.shown or done == self.total:
                self.shown = percent
                bar = "#" * (done * 30 // self.total)
                print(f"\r{self.label}: [{bar:<30}] {done}/{self.total}{self.unit}", end="", file=sys.stderr, flush=True)
        elif self.lines > 0:
            step = done * self.lines // self.total
            seconds = time.perf_counter() - self.started
            # a new step, and no more than one line per LINE_SECONDS (the last line always)
            if step > self.shown and (done == self.total or seconds - self.last_line >= LINE_SECONDS):
                self.shown, self.last_line = step, seconds
                print(f"{self.label}: {done}/{self.total}{self.unit} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the redrawn line (on a terminal)."""
        if self.tty:
            print(file=sys.stderr, flush=True)
