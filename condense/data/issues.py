"""Bad input, counted: every kind of problem the IHM reader meets, and the log that counts them.

* :data:`ISSUE_KINDS` names each kind of bad input and what the reader does about it.
* :class:`IssueLog` counts problems by kind and keeps the first of each (in reading order): a
  lenient run treats a bad cell as missing and goes on; ``strict`` mode turns the first problem
  into a :class:`~condense.data.dataset.DataError` (:meth:`IssueLog.raise_first`).
* :class:`Issue` is one problem: kind, file, line, message.

The episode parser (:mod:`condense.data.episodes`), the discretizer and the IHM reader
(:mod:`condense.data.ihm`) all count into an :class:`IssueLog`; :attr:`Dataset.issues` holds its
counts and the one-line stderr summary is :meth:`IssueLog.summary`.
"""

from __future__ import annotations

from dataclasses import dataclass

from condense.data.dataset import DataError

__all__ = ["ISSUE_KINDS", "NOT_ERRORS", "PER_VARIABLE", "Issue", "IssueLog"]

#: Every kind of bad input the IHM reader counts, and what it does about it. Cell and row
#: problems never stop a lenient run; whole-file problems skip the episode (counted, never
#: silent). ``strict`` mode raises a :class:`DataError` at the first problem of any kind except
#: those in :data:`NOT_ERRORS`.
ISSUE_KINDS: dict[str, str] = {
    "missing_file": "episode file named in a listfile does not exist; episode skipped",
    "unreadable_file": "episode file cannot be read or is not UTF-8 text; episode skipped",
    "bad_header": "episode header has no 'Hours' column; episode skipped",
    "empty_episode": "episode file is empty or header-only; kept, every value imputed (masks 0)",
    "unknown_column": "header column that is not one of the 17 variables, or repeats one; ignored",
    "missing_column": "one of the 17 variables has no column; treated as never measured",
    "ragged_row": "row with more or fewer cells than the header; row dropped",
    "duplicate_row": "row identical to an earlier row of the same file; dropped (no effect on the tensor)",
    "bad_hours": "Hours empty, not a number, negative or not finite; row dropped",
    "bad_number": "continuous cell that is not a finite number; treated as missing",
    "implausible_value": (
        "continuous cell outside the variable's plausible range (channels.PLAUSIBLE_RANGES) or not "
        "finite as float32; counted per variable (implausible_value:<variable>); treated as missing"
    ),
    "unknown_category": "categorical cell outside the benchmark's values; treated as missing",
    "after_end": "row after the 48-hour window; dropped as the benchmark does (not an error)",
    "bad_label": "listfile label that is not 0 or 1; episode skipped",
    "bad_listfile_row": "listfile row without exactly two cells or with a bad file name; skipped",
    "duplicate_stay": "episode file listed twice; the later row skipped",
    "patient_overlap": "episode whose patient is also in val or test; dropped from the earlier split",
}
#: Kinds that are counted but never stop a ``strict`` run (the format defines what to do).
NOT_ERRORS = frozenset({"after_end"})
#: Kinds counted per variable, as ``<kind>:<variable>`` (e.g. ``implausible_value:Heart Rate``).
PER_VARIABLE = frozenset({"implausible_value"})


def _base_kind(kind: str) -> str:
    """``"implausible_value:Heart Rate"`` -> ``"implausible_value"``; other kinds as they are."""
    base, sep, variable = kind.partition(":")
    return base if sep and variable and base in PER_VARIABLE else kind


@dataclass(frozen=True)
class Issue:
    """One bad-input problem: its kind, the file and 1-based line, and what was wrong.

    ``order`` sorts problems in reading order (listfiles first, then episodes in reading order,
    then lines), so "the first problem" is the same however the work was split among processes.
    """

    kind: str
    file: str
    line: int
    message: str
    order: tuple = ()

    @property
    def where(self) -> str:
        """``file:line``, or just ``file`` for a whole-file problem (line 0)."""
        return f"{self.file}:{self.line}" if self.line > 0 else self.file

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class IssueLog:
    """Counts of bad input by kind, with the first problem of each kind (in reading order).

    ``counts`` maps kind -> number of problems; ``first`` maps kind -> :class:`Issue`.
    """

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.first: dict[str, Issue] = {}

    def add(self, kind: str, file, line: int, message: str, order: tuple = ()) -> Issue:
        """Count one problem of ``kind`` at ``file``:``line``."""
        if _base_kind(kind) not in ISSUE_KINDS or kind in PER_VARIABLE:
            raise ValueError(
                f"unknown issue kind {kind!r}; expected one of {sorted(ISSUE_KINDS)} "
                f"({', '.join(sorted(PER_VARIABLE))} as <kind>:<variable>)"
            )
        issue = Issue(kind, str(file), int(line), message, tuple(order))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        known = self.first.get(kind)
        if known is None or issue.order < known.order:
            self.first[kind] = issue
        return issue

    def merge(self, other: "IssueLog") -> "IssueLog":
        """Add ``other``'s counts and keep the earlier first example per kind; returns self."""
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
            theirs, ours = other.first[kind], self.first.get(kind)
            if ours is None or theirs.order < ours.order:
                self.first[kind] = theirs
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def earliest_error(self) -> Issue | None:
        """The first problem in reading order that ``strict`` mode stops at (None if none)."""
        errors = [issue for kind, issue in self.first.items() if kind not in NOT_ERRORS]
        return min(errors, key=lambda issue: issue.order) if errors else None

    def raise_first(self) -> None:
        """Raise :class:`DataError` for :meth:`earliest_error`, if there is one."""
        issue = self.earliest_error()
        if issue is not None:
            raise DataError(str(issue))

    def as_dict(self) -> dict[str, int]:
        """Counts in :data:`ISSUE_KINDS` order, per-variable kinds by variable name (what
        :attr:`Dataset.issues` holds)."""
        rank = {kind: i for i, kind in enumerate(ISSUE_KINDS)}
        kinds = sorted((k for k, n in self.counts.items() if n), key=lambda k: (rank.get(_base_kind(k), len(rank)), k))
        return {kind: self.counts[kind] for kind in kinds}

    def summary(self) -> str:
        """One line: each kind's count and first example, or ``""`` when nothing was counted."""
        counts = self.as_dict()
        errors = {k: n for k, n in counts.items() if k not in NOT_ERRORS}
        parts = []
        if errors:
            parts.append(
                f"bad input: {sum(errors.values())} problem(s) counted, treated as missing or skipped "
                "(--strict stops at the first): "
                + "; ".join(f"{kind} x{n} (first {self.first[kind].where})" for kind, n in errors.items())
            )
        if counts.get("after_end"):
            parts.append(
                f"{counts['after_end']} row(s) after the 48-hour window dropped, as the benchmark does "
                f"(first {self.first['after_end'].where})"
            )
        return " | ".join(parts)

    def to_json(self) -> dict:
        """Counts and first examples as plain JSON types (stored with cached arrays)."""
        return {
            "counts": self.as_dict(),
            "first": {
                kind: {"file": i.file, "line": i.line, "message": i.message, "order": list(i.order)}
                for kind, i in self.first.items()
            },
        }

    @classmethod
    def from_json(cls, obj: dict) -> "IssueLog":
        log = cls()
        log.counts = {str(k): int(v) for k, v in obj.get("counts", {}).items()}
        log.first = {
            str(kind): Issue(str(kind), d["file"], int(d["line"]), d["message"], tuple(d["order"]))
            for kind, d in obj.get("first", {}).items()
        }
        return log
