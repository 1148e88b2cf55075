"""Read a MIMIC-III in-hospital-mortality (IHM) benchmark folder into a :class:`Dataset`.

The folder layout, the episode format and the split rules are those of
``shared/reference/ihm-format.md`` (Harutyunyan et al. 2019)::

    in-hospital-mortality/
      train/listfile.csv   train/<SUBJECT>_episode<N>_timeseries.csv ...
      test/listfile.csv    test/<SUBJECT>_episode<N>_timeseries.csv ...
      train_listfile.csv   val_listfile.csv   (optional: the benchmark's patient-level split)

Splits are by patient (``SUBJECT``: the file name before the first ``_``). With
``val_listfile.csv`` its episodes (files in ``train/``) are the validation split and the train
split is ``train_listfile.csv`` if present, else ``train/listfile.csv`` minus the validation
episodes. Without it, :func:`split_patients` puts a seeded :data:`VAL_FRACTION` of the patients
of ``train/`` into validation. No patient is ever in two splits: when the user's files put one
patient in two splits, that patient's episodes are dropped from the earlier split (train before
val before test: the evaluation sets are never altered) and counted as ``patient_overlap``.

Episodes are discretized by :class:`~condense.data.preprocessing.Discretizer` in a pool of
processes (``workers``; output order never depends on it) and the arrays are cached on disk
(:mod:`condense.data.cache`), keyed by the SHA-256 of every listed episode file's bytes and the
discretizer's settings and version (its plausible ranges included: a change to the reading rules
bumps ``DISCRETIZER_VERSION``, so arrays cached by an older reader are never reused): a second
run with unchanged files reads the cache.

Bad input (:data:`~condense.data.issues.ISSUE_KINDS`): a bad cell is treated as missing,
a bad row dropped, an episode whose file is missing or unreadable skipped, a listfile row with a
label other than 0/1 skipped; each is counted in :attr:`Dataset.issues` and summarized in one
line on stderr, naming the first file:line of each kind. ``strict=True`` raises a
:class:`DataError` at the first problem instead. A missing data folder, a missing listfile, or
a listfile without the ``stay,y_true`` header is always a :class:`DataError`.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condense.data.cache import ArrayCache, cache_key, file_digest
from condense.data.channels import IHM_LAYOUT
from condense.data.dataset import DataError, Dataset, Split
from condense.data.issues import IssueLog
from condense.data.preprocessing import Discretizer
from condense.data.progress import Progress

__all__ = [
    "LISTFILE_HEADER",
    "VAL_FRACTION",
    "ListEntry",
    "default_workers",
    "load_ihm",
    "read_episodes",
    "read_listfile",
    "split_patients",
    "subject_of",
]

#: The header of every IHM listfile.
LISTFILE_HEADER = "stay,y_true"
#: Share of the patients of ``train/`` that go to validation when there is no ``val_listfile.csv``.
VAL_FRACTION = 0.18
#: Bumped when the way files become splits changes (part of :attr:`Dataset.fingerprint`).
READER_VERSION = 1


@dataclass(frozen=True)
class ListEntry:
    """One listfile row: the episode file ``stay`` (in ``folder``) and its label."""

    stay: str
    label: int
    folder: str  # "train" or "test"
    listfile: str  # the listfile it came from
    line: int  # its 1-based line there

    @property
    def subject(self) -> str:
        return subject_of(self.stay)

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.stay}"


def subject_of(stay: str) -> str:
    """The patient of an episode file: ``"10011_episode1_timeseries.csv"`` -> ``"10011"``."""
    return stay.split("_", 1)[0]


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# Listfiles and splits
# --------------------------------------------------------------------------------------------
def read_listfile(path, folder: str, *, issues: IssueLog, strict: bool = False, stage: int = 0) -> list[ListEntry]:
    """Read a listfile (header ``stay,y_true``) -> its entries, in file order.

    Rows with a label other than ``0``/``1``, without exactly two cells, with a file name that
    is empty or has a path separator, or repeating an earlier file are skipped and counted
    (``bad_label``, ``bad_listfile_row``, ``duplicate_stay``); ``strict`` raises instead. A
    missing or unreadable listfile, or one without the header, is a :class:`DataError`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: listfile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the listfile ({exc})") from None
    lines = text.splitlines()
    header = lines[0].strip() if lines else ""
    if header.replace(" ", "") != LISTFILE_HEADER:
        raise DataError(f"{path}:1: expected the listfile header {LISTFILE_HEADER!r}, got {header!r}")

    def problem(kind: str, line: int, message: str) -> None:
        issue = issues.add(kind, path, line, message, (0, stage, line))
        if strict:
            raise DataError(str(issue))

    entries: list[ListEntry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 2:
            problem("bad_listfile_row", number, f"expected 2 cells (stay,y_true), got {len(cells)}: {line!r}; skipped")
            continue
        stay, label = cells
        if not stay or "/" in stay or "\\" in stay or stay in (".", ".."):
            problem("bad_listfile_row", number, f"bad episode file name {stay!r}; skipped")
            continue
        if label not in ("0", "1"):
            problem("bad_label", number, f"label of {stay!r} must be 0 or 1, got {label!r}; skipped")
            continue
        if stay in seen:
            problem("duplicate_stay", number, f"{stay!r} is already listed at line {seen[stay]}; skipped")
            continue
        seen[stay] = number
        entries.append(ListEntry(stay, int(label), folder, str(path), number))
    return entries


def split_patients(entries: list[ListEntry], seed: int, fraction: float = VAL_FRACTION) -> tuple[list[ListEntry], list[ListEntry]]:
    """A seeded patient-level split -> (train, val), each in the order of ``entries``.

    ``round(fraction * patients)`` patients (at least 1) go to val; which ones depends only on
    the set of patients and ``seed`` (not on the listfile's order).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    subjects = sorted({e.subject for e in entries})
    if len(subjects) < 2:
        raise DataError(f"cannot make a patient-level validation split from {len(subjects)} patient(s) in train/")
    n_val = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    order = np.random.default_rng(seed).permutation(len(subjects))
    val_subjects = {subjects[i] for i in order[:n_val].tolist()}
    train = [e for e in entries if e.subject not in val_subjects]
    val = [e for e in entries if e.subject in val_subjects]
    return train, val


def _drop_overlap(earlier: list[ListEntry], later: list[ListEntry], name: str, later_name: str, issues: IssueLog, strict: bool) -> list[ListEntry]:
    """``earlier`` without the episodes of patients who are in ``later`` (counted)."""
    later_subjects: dict[str, ListEntry] = {}
    for e in later:
        later_subjects.setdefault(e.subject, e)
    kept = []
    for e in earlier:
        other = later_subjects.get(e.subject)
        if other is None:
            kept.append(e)
            continue
        issue = issues.add(
            "patient_overlap",
            e.listfile,
            e.line,
            f"patient {e.subject} of {e.stay!r} is also in {later_name} ({other.listfile}:{other.line}); "
            f"episode dropped from {name} so that no patient is in two splits",
            (0, 9, e.line),
        )
        if strict:
            raise DataError(str(issue))
    return kept


@dataclass
class _Plan:
    """Which files make which split, before any episode is read."""

    train: list[ListEntry]
    val: list[ListEntry]
    test: list[ListEntry]
    listfiles: list[Path]
    val_rule: str  # how the validation split was made (part of the fingerprint)


def _plan_splits(root: Path, seed: int, issues: IssueLog, strict: bool) -> _Plan:
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected an IHM benchmark folder with train/ and test/)")
    test_lf = root / "test" / "listfile.csv"
    if not test_lf.is_file() and (root / "test_listfile.csv").is_file():
        test_lf = root / "test_listfile.csv"
    train_folder_lf = root / "train" / "listfile.csv"
    train_lf, val_lf = root / "train_listfile.csv", root / "val_listfile.csv"
    has_val = val_lf.is_file()
    if not (train_folder_lf.is_file() or (has_val and train_lf.is_file())) or not test_lf.is_file():
        raise DataError(
            f"{root}: not an IHM benchmark folder (expected train/listfile.csv and test/listfile.csv, "
            "as written by mimic3-benchmarks or `condense data synth`)"
        )
    # read in the order train, val, test (strict mode stops at the first problem in that order)
    if has_val:
        use_train_lf = train_lf.is_file()
        train = read_listfile(train_lf if use_train_lf else train_folder_lf, "train", issues=issues, strict=strict, stage=1)
        val = read_listfile(val_lf, "train", issues=issues, strict=strict, stage=2)
        test = read_listfile(test_lf, "test", issues=issues, strict=strict, stage=3)
        if not use_train_lf:  # train/listfile.csv holds train and val: train is the rest
            val_stays = {e.stay for e in val}
            train = [e for e in train if e.stay not in val_stays]
        listfiles = [train_lf if use_train_lf else train_folder_lf, val_lf, test_lf]
        val_rule = f"listfile {val_lf.name}"
        train = _drop_overlap(train, val, "train", "val", issues, strict)
        train = _drop_overlap(train, test, "train", "test", issues, strict)
        val = _drop_overlap(val, test, "val", "test", issues, strict)
    else:
        pool = read_listfile(train_folder_lf, "train", issues=issues, strict=strict, stage=1)
        test = read_listfile(test_lf, "test", issues=issues, strict=strict, stage=3)
        pool = _drop_overlap(pool, test, "train", "test", issues, strict)
        train, val = split_patients(pool, seed)
        listfiles = [train_folder_lf, test_lf]
        val_rule = f"seeded patient split (seed {seed}, {VAL_FRACTION:.0%} of patients)"
    for name, entries in (("train", train), ("val", val), ("test", test)):
        if not entries:
            raise DataError(f"{root}: the {name} split has no episodes")
    return _Plan(train, val, test, listfiles, val_rule)


# --------------------------------------------------------------------------------------------
# Reading episodes (a pool of processes) and fingerprints
# --------------------------------------------------------------------------------------------
def _pool_context():
    # fork: workers start in milliseconds and need not re-import condense (whose package
    # import loads Keras); they only run NumPy and string code.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _chunks(n: int, workers: int) -> list[tuple[int, int]]:
    size = max(32, min(512, -(-n // max(1, workers * 4))))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


#: In a forked worker of :func:`read_episodes`: the output array, in memory shared with the
#: parent, which the worker fills in place instead of sending its chunk back through a pipe.
_shared_out: np.ndarray | None = None


def _share_output(X: np.ndarray) -> None:  # pool initializer (fork: X arrives as the same memory)
    global _shared_out
    _shared_out = X


def _shared_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A zero float32 array in anonymous shared memory (inherited by forked processes)."""
    count = int(np.prod(shape))
    return np.frombuffer(mmap.mmap(-1, max(4 * count, 1)), dtype=np.float32, count=count).reshape(shape)


def _read_chunk(settings: dict, paths: list[str], start: int):
    discretizer = Discretizer(**settings)
    log = IssueLog()
    X, present = discretizer.transform_files(paths, issues=log, start=start)
    if _shared_out is not None:
        _shared_out[start : start + len(paths)] = X
        return None, present, log
    return X, present, log


def _digest_chunk(paths: list[str]) -> list[str | None]:
    return [file_digest(p) for p in paths]


def _uses_pool(workers: int, chunks: int) -> bool:
    return workers > 1 and chunks > 1


def _run_chunks(func, chunks_args: list[tuple], workers: int, on_result, initializer=None, initargs=()) -> None:
    """Call ``func(*args)`` for each chunk (in a pool when ``workers`` > 1), handing results to
    ``on_result(i, result)`` in chunk order; the first failure (in chunk order) is raised."""
    if not _uses_pool(workers, len(chunks_args)):
        for i, args in enumerate(chunks_args):
            on_result(i, func(*args))
        return
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(chunks_args)), mp_context=_pool_context(), initializer=initializer, initargs=initargs
    )
    try:
        futures = [executor.submit(func, *args) for args in chunks_args]
        for i, future in enumerate(futures):
            on_result(i, future.result())
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def read_episodes(
    paths: list,
    *,
    discretizer: Discretizer | None = None,
    workers: int | None = None,
    issues: IssueLog | None = None,
    quiet: bool = True,
    label: str = "reading episodes",
) -> tuple[np.ndarray, np.ndarray]:
    """Discretize many episode files with a pool of ``workers`` processes -> ``(X, present)``.

    ``X`` is (len(paths), 48, 76) float32 in the order of ``paths`` whatever ``workers`` is;
    ``present[i]`` is False for a file that had to be skipped (counted in ``issues``). With a
    strict ``discretizer`` the first problem in reading order raises :class:`DataError`.
    """
    discretizer = discretizer or Discretizer()
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    issues = issues if issues is not None else IssueLog()
    paths = [str(p) for p in paths]
    n = len(paths)
    chunks = _chunks(n, workers)
    shape = (n, discretizer.num_bins, IHM_LAYOUT.width)
    # forked workers write their rows straight into shared memory; otherwise rows come back pickled
    shared = _uses_pool(workers, len(chunks)) and _pool_context().get_start_method() == "fork"
    X = _shared_zeros(shape) if shared else np.zeros(shape, dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    progress = Progress(label, n, quiet=quiet)
    settings = discretizer.get_config()

    def on_result(i, result):
        start, stop = chunks[i]
        if result[0] is not None:
            X[start:stop] = result[0]
        present[start:stop] = result[1]
        issues.merge(result[2])
        progress.update(stop)

    try:
        _run_chunks(
            _read_chunk, [(settings, paths[a:b], a) for a, b in chunks], workers, on_result,
            initializer=_share_output if shared else None, initargs=(X,) if shared else (),
        )
    finally:
        progress.close()
    return X, present


def digest_files(paths: list, workers: int | None = None) -> list[str | None]:
    """SHA-256 of each file's bytes (None: missing), computed by ``workers`` processes."""
    workers = default_workers() if workers is None else int(workers)
    paths = [str(p) for p in paths]
    chunks = [(a, min(a + 1024, len(paths))) for a in range(0, len(paths), 1024)]
    out: list[str | None] = [None] * len(paths)

    def on_result(i, result):
        a, b = chunks[i]
        out[a:b] = result

    _run_chunks(_digest_chunk, [(paths[a:b],) for a, b in chunks], workers, on_result)
    return out


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------
def load_ihm(
    path,
    *,
    seed: int = 0,
    strict: bool = False,
    cache_dir=None,
    quiet: bool = False,
    workers: int | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Read an IHM benchmark folder -> a :class:`Dataset` of raw (N, 48, 76) float32 arrays.

    Args:
        path: the ``in-hospital-mortality`` folder (see the module docstring).
        seed: seed of the patient-level validation split when there is no ``val_listfile.csv``.
        strict: raise :class:`DataError` at the first bad input instead of counting it.
        cache_dir: cache root (default ``$CONDENSE_CACHE`` or ``~/.cache/condense``).
        quiet: no progress or summary on stderr.
        workers: processes that parse episodes (default: every core this process may use).
        use_cache: read and write the array cache (False: always parse, write nothing).

    Returns:
        A :class:`Dataset` with ``source="ihm"``, the 76-channel :data:`IHM_LAYOUT`, ``y``
        int64 labels, ``ids`` the episode file names (fixed-width unicode) in listfile order,
        ``issues`` the counts of bad input by kind, and ``fingerprint`` a SHA-256 over the
        listfiles' bytes, every episode file's bytes, the discretizer's settings and version,
        and the validation rule (seed included when the split is seeded).
    """
    started = time.perf_counter()
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    root = Path(path).expanduser()
    issues = IssueLog()
    plan = _plan_splits(root, seed, issues, strict)
    discretizer = Discretizer(strict=strict)

    # every episode file, read once, in split order (train, val, test) so that splits are slices
    entries = plan.train + plan.val + plan.test
    rels = [e.rel for e in entries]
    if len(set(rels)) != len(rels):  # cannot happen after _plan_splits; a guard for the slicing below
        raise DataError(f"{root}: an episode file is listed in two splits")
    base = str(root)
    files = [os.path.join(base, e.folder, e.stay) for e in entries]
    digests = digest_files(files, workers)
    for i, digest in enumerate(digests):
        if digest is None:
            entry = entries[i]
            issue = issues.add("missing_file", entry.listfile, entry.line, f"episode file {files[i]} not found; episode skipped", (0, 8, i))
            if strict:
                raise DataError(str(issue))
    # the arrays depend on the files and the settings, not on which split a file is in
    key = cache_key(discretizer.settings(), sorted(zip(rels, digests), key=lambda t: t[0]))
    fingerprint = cache_key(key, *[Path(lf).read_bytes() for lf in plan.listfiles], plan.val_rule, READER_VERSION)

    cache = ArrayCache(cache_dir) if use_cache else None
    cached = cache.get("ihm", key) if cache is not None else None
    if cached is not None:
        episode_issues = IssueLog.from_json(json.loads(str(cached["issues"])))
        if strict and episode_issues.earliest_error() is not None:
            cached = None  # read again, so that strict mode stops at the first problem
    if cached is not None:
        X_all, present = cached["X"], cached["present"]
        if cached["rels"].tolist() != rels:  # same files, another split: reorder
            where = {rel: i for i, rel in enumerate(cached["rels"].tolist())}
            order = np.array([where[rel] for rel in rels], dtype=np.int64)
            X_all, present = X_all[order], present[order]
        if not quiet:
            print(f"cache hit: {cache.path('ihm', key)} ({len(rels)} episodes, key {key[:12]})", file=sys.stderr)
    else:
        episode_issues = IssueLog()
        readable = np.array([d is not None for d in digests], dtype=bool)
        X_read, present_read = read_episodes(
            [f for f, ok in zip(files, readable) if ok], discretizer=discretizer, workers=workers,
            issues=episode_issues, quiet=quiet, label=f"reading {int(readable.sum())} episodes",
        )
        if readable.all():
            X_all, present = X_read, present_read
        else:
            X_all = np.zeros((len(rels),) + X_read.shape[1:], dtype=np.float32)
            X_all[readable] = X_read
            present = np.zeros(len(rels), dtype=bool)
            present[readable] = present_read
        if cache is not None:
            written = cache.put(
                "ihm", key,
                {"X": X_all, "present": present, "rels": np.array(rels, dtype=str),
                 "issues": np.array(json.dumps(episode_issues.to_json(), sort_keys=True))},
            )
            if not quiet:
                print(f"cached {len(rels)} episodes: {written}", file=sys.stderr)
    issues.merge(episode_issues)

    splits, start = {}, 0
    for name in ("train", "val", "test"):
        part = getattr(plan, name)
        stop = start + len(part)
        keep = present[start:stop]
        X = X_all[start:stop] if keep.all() else X_all[start:stop][keep]  # a view when nothing was skipped
        kept = [e for e, ok in zip(part, keep.tolist()) if ok]
        if not kept:
            raise DataError(f"{root}: no readable episode in the {name} split (see the bad-input summary above)")
        splits[name] = Split(X=X, y=np.array([e.label for e in kept], dtype=np.int64), ids=np.array([e.stay for e in kept], dtype=str))
        start = stop
    dataset = Dataset(
        source="ihm",
        layout=IHM_LAYOUT,
        **splits,  # train, val, test
        fingerprint=fingerprint,
        issues=issues.as_dict(),
    )
    if not quiet:
        sizes = " / ".join(f"{name} {len(split)}" for name, split in splits.items())
        print(f"ihm: {root}: {sizes} episodes ({plan.val_rule}), {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if issues.total:
            print(issues.summary(), file=sys.stderr)
    return dataset
