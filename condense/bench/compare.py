"""``condense compare BASE.csv NEW.csv``: diff two benchmark tables for CI, telling a regression
from noise. See ``docs/compare.md`` for the user's view.

Rows are matched by their ``row`` id. The comparison fails (exit code 1) when

* a deterministic field changes (parameter counts, ``.keras`` bytes), or a ``.tflite`` file's
  size moves by more than ``bytes_tolerance`` (default 0.5 %: the converter writes tensor names
  made unique by a process-wide TensorFlow counter, so an unrolled 48-step int8 graph, with
  thousands of named tensors, varies by a few hundred bytes between identical conversions),
* a row of BASE is missing from NEW, or a row that succeeded in BASE failed in NEW,
* test AUROC drops, decided as below,
* with ``latency_tolerance`` given: a latency grows by more than that fraction.

AUROC. When both tables have their test-set predictions stored beside them
(``predictions.npz``, :mod:`condense.bench.predictions`) and both runs scored the same patients,
each row's change is tested with a **paired bootstrap** of ``AUROC(new) - AUROC(base)``: every
resample draws patients with replacement, the same patients for both sides. With several seeds
each resample also draws seeds with replacement from the seeds both runs have (equal seeds are
paired: same seed and same code give the same model) and averages the paired differences over
the drawn seeds, so the spread between seeds widens the interval; seeds that do not overlap are
drawn independently per side. Every row's one-sided bootstrap p-value ``P(difference >= 0)``
(with the usual ``+1`` in numerator and denominator) is computed first; then, with
``correction="holm"`` (the default), the p-values of all rows that got a paired test are
**Holm-Bonferroni** adjusted (:func:`holm_adjust`), so that the chance of failing any row of a
table in which no model got worse is at most ``alpha`` (the family-wise error rate), not about
``alpha`` per row: a table has ~45 rows, so when every model changed slightly (another TensorFlow
version, a change to training) uncorrected tests flag about two rows by chance at 0.05. A row
fails when its drop is significant, i.e. its adjusted p-value (the raw one with
``correction="none"``) is below ``alpha``, or, with ``max_drop`` given, when the observed
difference is below ``-max_drop`` (not corrected: it is a size rule, not a test). Only records
scored (finite) on both sides take part. The report shows the two-sided ``1 - alpha`` percentile
interval of each row (not adjusted for multiplicity) beside the raw and the adjusted one-sided
p-values, so a borderline row can fail with an interval whose upper end is just above 0 (the
one-sided bound is that of the ``1 - 2 alpha`` interval), and a row whose interval lies below 0
can pass under the correction.

Without stored predictions on either side, or when the runs scored different patients, AUROC
falls back to the fixed ``auroc_tolerance`` (default 0.01) and the report says so once, with the
reason. Timings (latency, training seconds) are otherwise only reported, as NEW/BASE ratios:
these machines are shared and noisy, so a timing alone never fails a build unless asked to.

Speed: all rows share the patient resamples (they depend only on the number of patients, the
number of resamples and ``seed``), kept as a (patients, resamples) table of multiplicities; each
score vector costs one sparse product with it into the per-bin counts of
:mod:`condense.evaluate.metrics`, and score vectors with an identical ranking are computed once.
A 45-row table of 3,000 patients takes about 1 s with 1 seed and 4 s with 5 seeds when every
row's scores changed (on 2 shared cores), far less when most rows are unchanged.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from condense.bench.predictions import PREDICTIONS_FILE, Predictions, file_beside, predictions_beside
from condense.checks import check_choice, check_int, invalid_argument
from condense.evaluate.metrics import _auroc_from_counts, _counts_full, _resample_chunks, _score_bins
from condense.io import read_json

__all__ = ["compare_tables", "Comparison", "RowResult", "PairedAuroc", "read_table", "add_compare_arguments",
           "run_compare", "holm_adjust", "COMPARE_HELP", "COMPARE_DESCRIPTION"]

#: Columns whose values must be identical between two runs of the same code and seed.
DETERMINISTIC_COLUMNS = ("params", "nonzero_params", "keras_bytes")
#: Columns compared with a relative tolerance (see the module docstring).
SIZE_COLUMNS = ("tflite_bytes",)
DEFAULT_BYTES_TOLERANCE = 0.005
DEFAULT_AUROC_TOLERANCE = 0.01
DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 2000
#: Multiple-comparison corrections of the paired AUROC tests across the rows of one comparison.
CORRECTIONS = ("holm", "none")
DEFAULT_CORRECTION = "holm"
#: Timing columns, compared as ratios.
TIMING_COLUMNS = (
    "keras_latency_us_median",
    "litert_latency_us_median",
    "train_seconds",
)
LATENCY_COLUMNS = ("keras_latency_us_median", "litert_latency_us_median")
#: An AUROC change at least this large shows at 4 decimals: the row counts as changed.
_MOVED = 0.5e-4
#: Multiplicity tables up to this many entries are kept and shared by every row.
_KEEP_ELEMENTS = 1 << 26
#: A row notes when more than this share of its resamples held a single class.
_SKIP_NOTE_FRACTION = 0.05
MANIFEST_FILE = "manifest.json"

COMPARE_HELP = "diff two benchmark tables; non-zero exit on a regression"
COMPARE_DESCRIPTION = (
    "Compare BASE.csv and NEW.csv: fails on changed parameter counts or byte sizes, a missing or failed row, "
    "or an AUROC drop. With predictions.npz stored beside both tables, an AUROC drop fails when a paired "
    "bootstrap over patients and seeds finds it significant (one-sided, --alpha, Holm-corrected across the "
    "rows unless --correction none) or larger than --max-drop; without them, when it exceeds "
    "--auroc-tolerance. Timings are reported as ratios."
)


# --------------------------------------------------------------------------- results


@dataclass
class PairedAuroc:
    """A row's paired bootstrap of ``AUROC(new) - AUROC(base)`` on stored predictions."""

    base: float  # full-set AUROC, mean over the seeds used
    new: float
    diff: float  # new - base
    low: float  # two-sided (1 - alpha) percentile interval of the resampled differences
    high: float
    p_value: float  # one-sided: share of resampled differences >= 0, (k + 1) / (B + 1)
    patients: int
    seeds: str  # "1 seed", "3 seeds", "seeds [0] vs [1], unpaired", ...
    resamples: int  # resamples kept (single-class resamples are skipped)
    level: float  # 1 - alpha
    #: ``p_value`` Holm-adjusted across the comparison's paired rows; None without a correction.
    p_adjusted: float | None = None

    @property
    def p_decision(self) -> float:
        """The p-value the row's verdict is decided on: the adjusted one when there is one."""
        return self.p_value if self.p_adjusted is None else self.p_adjusted

    def interval_text(self) -> str:
        return f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


@dataclass
class RowResult:
    """One row of the comparison."""

    row: str
    kind: str = "both"  # "both", "missing" (base only) or "new" (new only)
    base_auroc: float | None = None
    new_auroc: float | None = None
    paired: PairedAuroc | None = None
    changes: list[str] = field(default_factory=list)  # exact fields / status that changed
    failures: list[str] = field(default_factory=list)  # full failure messages
    reasons: list[str] = field(default_factory=list)  # short failure reasons, for the verdict column
    latency_ratio: float | None = None
    train_ratio: float | None = None

    @property
    def diff(self) -> float | None:
        if self.paired is not None:
            return self.paired.diff
        if self.base_auroc is None or self.new_auroc is None:
            return None
        return self.new_auroc - self.base_auroc

    @property
    def changed(self) -> bool:
        """Failed, missing or new, an exact field changed, or the AUROC moved (at 4 decimals)."""
        diff = self.diff
        moved = diff is not None and abs(diff) >= _MOVED
        return bool(self.failures or self.changes or self.kind != "both" or moved)

    def verdict(self) -> str:
        if self.kind == "new":
            return "new row"
        if self.failures:
            return "FAIL: " + "; ".join(self.reasons)
        return "ok" + (f" ({'; '.join(self.changes)})" if self.changes else "")


@dataclass
class Comparison:
    """The result: the rows, human-readable lines, notes and the list of failures (empty = pass)."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rows: list[RowResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # fallbacks, machine notices: "note: ..." / "notice: ..."
    machine: str = ""
    rule: str = ""
    base_path: str = ""
    new_path: str = ""
    alpha: float = DEFAULT_ALPHA
    correction: str = DEFAULT_CORRECTION

    @property
    def ok(self) -> bool:
        return not self.failures

    def verdict(self) -> str:
        return "PASS" if self.ok else f"FAIL ({len(self.failures)} problem(s))"

    def report(self, fmt: str = "text") -> str:
        """The report as plain text (``fmt="text"``) or Markdown (``fmt="markdown"``)."""
        fmt = check_choice("fmt", fmt, ("text", "markdown"))
        if fmt == "markdown":
            return self.markdown()
        body = list(self.lines)
        if self.notes:
            body += [""] + self.notes
        if self.failures:
            body += [""] + [f"FAIL: {f}" for f in self.failures]
        return "\n".join(body + ["", f"compare: {self.verdict()}"])

    def markdown(self) -> str:
        """A Markdown report for a CI job to post: verdict, rule, the changed rows, the notes."""
        out = [f"## condense compare: {self.verdict()}", ""]
        if self.base_path or self.new_path:
            out += [f"Base `{self.base_path}`, new `{self.new_path}`.", ""]
        if self.rule:
            out += [f"**Rule.** {self.rule}", ""]
        changed = [r for r in self.rows if r.changed]
        if changed:
            level = f"{100 * (1 - self.alpha):g} %"
            adjusted = self.correction != "none"
            out += [
                f"| row | AUROC base | AUROC new | paired difference [{level} CI] | p (one-sided) | "
                + ("p (Holm) | " if adjusted else "") + "verdict |",
                "|---|---:|---:|---|---:|" + ("---:|" if adjusted else "") + "---|",
            ]
            for r in changed:
                if r.paired is not None:
                    diff_text, p_text = r.paired.interval_text(), _p_text(r.paired.p_value)
                    adjusted_text = "–" if r.paired.p_adjusted is None else _p_text(r.paired.p_adjusted)
                else:
                    diff_text = "–" if r.diff is None else f"{r.diff:+.4f} (no predictions)"
                    p_text = adjusted_text = "–"
                verdict = r.verdict()
                verdict = f"**{verdict}**" if r.failures else verdict
                cells = [f"`{r.row}`", _fmt(r.base_auroc, empty="–"), _fmt(r.new_auroc, empty="–"), diff_text,
                         p_text] + ([adjusted_text] if adjusted else []) + [verdict]
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            unchanged = len(self.rows) - len(changed)
            if unchanged:
                out += ["", f"{unchanged} other row(s) unchanged."]
        else:
            out.append(f"No row changed: all {len(self.rows)} rows have the same AUROC (to 4 decimals), "
                       "parameter counts and sizes.")
        notes = ([self.machine] if self.machine else []) + self.notes
        if notes:
            out += ["", "**Notes**", ""] + [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- reading


def read_table(path) -> dict[str, dict[str, str]]:
    """Read a benchmark table CSV into {row id: {column: text}}; clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "row" not in reader.fieldnames:
            raise ValueError(f"{path}: not a condense benchmark table (no 'row' column in the header)")
        rows: dict[str, dict[str, str]] = {}
        for line_no, record in enumerate(reader, start=2):
            key = record["row"]
            if key in rows:
                raise ValueError(f"{path}:{line_no}: duplicate row id {key!r}")
            rows[key] = record
    return rows


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _fmt(value: float | None, digits: int = 4, empty: str = "-") -> str:
    return empty if value is None else f"{value:.{digits}f}"


def _p_text(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def holm_adjust(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    With the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted ``p_(i)`` is
    ``max over j <= i of min(1, (m - j + 1) * p_(j))``. Rejecting every hypothesis whose adjusted
    p-value is below ``alpha`` is Holm's step-down procedure: the probability of rejecting any
    true null hypothesis is at most ``alpha``, whatever the dependence between the tests. Ties get
    equal adjusted values.
    """
    values = []
    for k, value in enumerate(pvalues):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"Argument `pvalues` must hold numbers in [0, 1]; got {value!r} at position {k}.")
        values.append(float(value))
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=values.__getitem__)):  # rank = j - 1
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- the paired bootstrap


class _Bins(NamedTuple):
    codes: np.ndarray  # per patient: bin + K * label
    n_bins: int  # K
    key: bytes  # digest of (codes, K, n)


class _AurocResamples:
    """AUROC of score vectors on shared patient resamples.

    The resamples of ``n`` patients are those of :func:`condense.evaluate.metrics._resample_chunks`
    (they depend only on ``(n, n_resamples, seed)``), held as (n, b) multiplicity blocks shared by
    every score vector. A vector's (b, 2, K) counts table over its score bins
    (:func:`~condense.evaluate.metrics._score_bins`) is one sparse product, (2K, n) bin indicator
    times (n, b) multiplicities, and its AUROC that of
    :func:`~condense.evaluate.metrics._auroc_from_counts`: the same values as
    ``_counts_resampled`` on the same resamples, several times faster when many vectors share them.
    Vectors with the same bins (the same ranking of the same labels) are computed once, and
    :func:`_paired_auroc` skips a seed whose two runs rank the patients identically (their
    difference is 0 on every resample).
    """

    def __init__(self, n_resamples: int, seed: int):
        self.n_resamples = n_resamples
        self.seed = seed
        self._blocks: dict[int, list[np.ndarray]] = {}
        self._done: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _dtype(n: int):
        return np.int16 if n < np.iinfo(np.int16).max else np.int32  # a bin's count is at most n

    def _multiplicities(self, n: int):
        if n in self._blocks:
            yield from self._blocks[n]
            return
        keep = n * self.n_resamples <= _KEEP_ELEMENTS
        blocks = []
        for idx in _resample_chunks(n, self.n_resamples, self.seed):
            b = idx.shape[0]
            idx += (np.arange(b, dtype=np.int64) * n)[:, None]
            counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
            block = np.ascontiguousarray(counts.T, dtype=self._dtype(n))
            if keep:
                blocks.append(block)
            yield block
        if keep:
            self._blocks[n] = blocks

    @staticmethod
    def bins(y: np.ndarray, p: np.ndarray) -> _Bins:
        """The score bins of ``p``; equal keys mean equal AUROC on every resample."""
        codes, n_bins = _score_bins(y, p)
        key = hashlib.sha1(codes.tobytes()).digest() + n_bins.to_bytes(8, "little") + y.size.to_bytes(8, "little")
        return _Bins(codes, n_bins, key)

    @staticmethod
    def full(bins: _Bins) -> float:
        """AUROC on all patients."""
        return float(_auroc_from_counts(_counts_full(bins.codes, bins.n_bins))[0])

    def resampled(self, bins: _Bins) -> np.ndarray:
        """(n_resamples,) AUROC per resample, NaN for a single-class resample."""
        from scipy import sparse  # scikit-learn's dependency; imported only when a paired test runs

        if bins.key in self._done:
            return self._done[bins.key]
        codes, n_bins = bins.codes, bins.n_bins
        n = codes.size
        dtype = self._dtype(n)
        indicator = sparse.csr_array((np.ones(n, dtype=dtype), (codes, np.arange(n))), shape=(2 * n_bins, n))
        parts = []
        for block in self._multiplicities(n):
            table = np.asarray(indicator @ block)  # (2K, b): negatives then positives per bin
            parts.append(_auroc_from_counts(table.reshape(2, n_bins, block.shape[1]).transpose(2, 0, 1)))
        self._done[bins.key] = result = np.concatenate(parts)
        return result


def _seed_list(seeds: list[int]) -> str:
    return "[" + ", ".join(str(s) for s in seeds) + "]"


def _paired_auroc(engine: _AurocResamples, row: str, base: Predictions, new: Predictions, *, alpha: float,
                  seed: int) -> PairedAuroc | str:
    """The paired test of one row, or a phrase saying why it cannot be run (then: fallback)."""
    base_seeds, new_seeds = base.seeds(row), new.seeds(row)
    arrays_b = [base.score(row, s) for s in base_seeds]
    arrays_n = [new.score(row, s) for s in new_seeds]
    mask = np.logical_and.reduce([np.isfinite(a) for a in arrays_b + arrays_n])
    y = base.y[mask]
    n = int(y.size)
    positives = int(y.sum())
    if n == 0:
        return "no record has a score in both runs"
    if positives in (0, n):
        return f"only one class among the {n} records scored in both runs"
    bins_b = [engine.bins(y, a[mask]) for a in arrays_b]
    bins_n = [engine.bins(y, a[mask]) for a in arrays_n]
    full_b = np.array([engine.full(b) for b in bins_b])
    full_n = np.array([engine.full(b) for b in bins_n])
    resamples = engine.n_resamples
    rng = np.random.default_rng([seed, zlib.crc32(row.encode("utf-8"))])
    common = sorted(set(base_seeds) & set(new_seeds))
    if common:
        ib = [base_seeds.index(s) for s in common]
        in_ = [new_seeds.index(s) for s in common]
        point_b, point_n = float(full_b[ib].mean()), float(full_n[in_].mean())
        m = len(common)
        paired = np.zeros((resamples, m))  # (B, seeds); 0 where both runs rank the patients alike
        for j, (b, n_) in enumerate(zip(ib, in_)):
            if bins_b[b].key != bins_n[n_].key:
                paired[:, j] = engine.resampled(bins_n[n_]) - engine.resampled(bins_b[b])
        if m == 1:
            diffs = paired[:, 0]
        else:
            draws = rng.integers(0, m, size=(resamples, m))
            diffs = np.take_along_axis(paired, draws, axis=1).mean(axis=1)
        seeds_text = "1 seed" if m == 1 else f"{m} seeds"
        left = [f"{side} seed(s) {_seed_list(s)}" for side, s in
                (("base", sorted(set(base_seeds) - set(common))), ("new", sorted(set(new_seeds) - set(common)))) if s]
        if left:
            seeds_text += f" paired; {' and '.join(left)} left out"
    else:
        point_b, point_n = float(full_b.mean()), float(full_n.mean())
        db = rng.integers(0, len(base_seeds), size=(resamples, len(base_seeds)))
        dn = rng.integers(0, len(new_seeds), size=(resamples, len(new_seeds)))
        boot_b = np.stack([engine.resampled(b) for b in bins_b], axis=1)  # (B, seeds)
        boot_n = np.stack([engine.resampled(b) for b in bins_n], axis=1)
        diffs = (np.take_along_axis(boot_n, dn, axis=1).mean(axis=1)
                 - np.take_along_axis(boot_b, db, axis=1).mean(axis=1))
        seeds_text = f"seeds {_seed_list(base_seeds)} vs {_seed_list(new_seeds)}, unpaired"
    kept = diffs[~np.isnan(diffs)]
    if kept.size == 0:
        return f"every resample of the {n} records scored in both runs held a single class"
    low, high = np.percentile(kept, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    p_value = (int(np.count_nonzero(kept >= 0.0)) + 1) / (kept.size + 1)
    if kept.size < (1.0 - _SKIP_NOTE_FRACTION) * resamples:
        seeds_text += f"; {resamples - kept.size} single-class resamples skipped"
    return PairedAuroc(base=point_b, new=point_n, diff=point_n - point_b, low=float(low), high=float(high),
                       p_value=float(p_value), patients=n, seeds=seeds_text, resamples=int(kept.size),
                       level=1.0 - alpha)


# --------------------------------------------------------------------------- context: predictions, machines


def _load_predictions(base_path, new_path, auroc_tolerance: float) -> tuple[Predictions | None, Predictions | None,
                                                                            str | None]:
    """Both runs' predictions, or (None, None, the fallback note for all rows)."""
    base, new = predictions_beside(base_path), predictions_beside(new_path)
    fallback = f"AUROC compared with the fixed tolerance {auroc_tolerance:g} for all rows"
    missing = [str(p) for p, pred in ((base_path, base), (new_path, new)) if pred is None]
    if missing:
        return None, None, (f"note: no stored predictions beside {' or '.join(missing)} ({PREDICTIONS_FILE}); "
                            f"{fallback}")
    why = base.same_patients(new)
    if why is not None:
        return None, None, (f"note: the two runs scored different patients ({why}: {base.path} vs {new.path}); "
                            f"{fallback}")
    return base, new, None


def _machine_of(table_path) -> tuple[dict | None, str]:
    """The ``machine`` object of the manifest beside a table, or (None, why not)."""
    found = file_beside(table_path, MANIFEST_FILE)
    if found is None:
        return None, f"no {MANIFEST_FILE} beside it"
    try:
        data = read_json(found)
    except (OSError, ValueError) as exc:
        return None, f"unreadable {found.name}: {exc}"
    machine = data.get("machine") if isinstance(data, dict) else None
    if not isinstance(machine, dict):
        return None, f"no machine in {found.name}"
    return machine, ""


def _describe_machine(machine: dict) -> str:
    cpu = machine.get("cpu") or "unknown CPU"
    cores = machine.get("cores")
    return f"{cpu} ({cores} cores)" if cores else str(cpu)


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _machines(base_path, new_path) -> tuple[str, list[str]]:
    """The line saying where each run ran, and notices when the machines differ."""
    (mb, why_b), (mn, why_n) = _machine_of(base_path), _machine_of(new_path)
    text_b = _describe_machine(mb) if mb else f"unknown ({why_b})"
    text_n = _describe_machine(mn) if mn else f"unknown ({why_n})"
    if mb and mn and text_b == text_n:
        line = f"machine: both runs on {text_b}"
    else:
        line = f"machine: base on {text_b}; new on {text_n}"
    notices = []
    if mb and mn:
        cpu_b, cpu_n = mb.get("cpu"), mn.get("cpu")
        if cpu_b and cpu_n and cpu_b != cpu_n:
            notices.append(f"notice: the runs used different CPU models ({cpu_b} vs {cpu_n}): latencies and "
                           "training times are not comparable, and kernels may round differently")
        other = [k for k in sorted(set(mb) & set(mn)) if k not in ("cpu", "cores") and mb[k] != mn[k]]
        if other:
            notices.append("notice: the machines' settings differ: "
                           + "; ".join(f"{k} {_short(mb[k])} vs {_short(mn[k])}" for k in other))
    return line, notices


# --------------------------------------------------------------------------- the comparison


def _check_arguments(alpha, max_drop, auroc_tolerance, bytes_tolerance, latency_tolerance, n_resamples, seed,
                     correction):
    def real(value) -> bool:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)

    if not (real(alpha) and 0.0 < float(alpha) <= 0.5):
        raise invalid_argument("alpha", "a number in (0, 0.5]", alpha)
    if max_drop is not None and not (real(max_drop) and 0.0 <= float(max_drop) < math.inf):
        raise invalid_argument("max_drop", "a finite number >= 0", max_drop)
    for name, value in (("auroc_tolerance", auroc_tolerance), ("bytes_tolerance", bytes_tolerance)):
        if not (real(value) and value >= 0):
            raise invalid_argument(name, ">= 0", value)
    if latency_tolerance is not None and not (real(latency_tolerance) and latency_tolerance >= 0):
        raise invalid_argument("latency_tolerance", ">= 0", latency_tolerance)
    check_int("n_resamples", n_resamples, 1)
    check_int("seed", seed, 0)
    check_choice("correction", correction, CORRECTIONS)


def _rule(paired: int, *, alpha, max_drop, auroc_tolerance, bytes_tolerance, latency_tolerance, n_resamples,
          multi_seed: bool, correction: str) -> str:
    if paired:
        what = "patients and seeds" if multi_seed else "patients"
        rows = f"{paired} paired row{'s' if paired != 1 else ''}"
        if correction == "holm":
            test = (f"the one-sided p-value of a paired bootstrap of new - base ({n_resamples} resamples of {what}), "
                    f"Holm-adjusted across the {rows} (family-wise error rate {alpha:g}), is below {alpha:g}")
        else:
            test = (f"the one-sided p-value of a paired bootstrap of new - base ({n_resamples} resamples of {what}) "
                    f"is below {alpha:g}, with no correction across the {rows}")
        auroc = f"its test AUROC drops significantly: {test}"
        if max_drop is not None:
            auroc += f", or the observed drop exceeds {max_drop:g}"
    else:
        auroc = f"its test AUROC drops by more than {auroc_tolerance:g} (no paired test: see the notes)"
    latency = "" if latency_tolerance is None else f", or a latency grows by more than {latency_tolerance:.0%}"
    return (f"A row fails when {auroc}; also when a parameter count or .keras size changes, a .tflite size moves "
            f"by more than {bytes_tolerance:.1%}, or a row is missing or failed{latency}.")


def compare_tables(
    base_path, new_path, *, alpha: float = DEFAULT_ALPHA, max_drop: float | None = None,
    auroc_tolerance: float = DEFAULT_AUROC_TOLERANCE, bytes_tolerance: float = DEFAULT_BYTES_TOLERANCE,
    latency_tolerance: float | None = None, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
    correction: str = DEFAULT_CORRECTION,
) -> Comparison:
    """Compare two benchmark tables; see the module docstring for what fails.

    Args:
        base_path, new_path: the two ``table.csv`` files; ``predictions.npz`` and ``manifest.json``
            beside them are used when present.
        alpha: one-sided significance level of the paired AUROC test, in (0, 0.5]; with
            ``correction="holm"`` the family-wise error rate across the paired rows.
        max_drop: also fail a row whose observed paired AUROC difference is below ``-max_drop``.
        auroc_tolerance: the fixed AUROC tolerance used for rows without a paired test.
        bytes_tolerance: relative tolerance on ``.tflite`` sizes.
        latency_tolerance: fail when a latency grows by more than this fraction (None: report only).
        n_resamples: bootstrap resamples per row.
        seed: seed of the resamples; the same inputs always give the same report.
        correction: ``"holm"`` (default): a row's paired test is decided on its p-value
            Holm-Bonferroni adjusted across all rows that got a paired test (family-wise error
            rate ``alpha``); ``"none"``: on its raw p-value (level ``alpha`` per row).
    """
    _check_arguments(alpha, max_drop, auroc_tolerance, bytes_tolerance, latency_tolerance, n_resamples, seed,
                     correction)
    alpha, n_resamples, seed = float(alpha), int(n_resamples), int(seed)
    base, new = read_table(base_path), read_table(new_path)
    base_pred, new_pred, table_note = _load_predictions(base_path, new_path, auroc_tolerance)
    engine = _AurocResamples(n_resamples, seed)
    out = Comparison(base_path=str(base_path), new_path=str(new_path), alpha=alpha, correction=correction)
    out.machine, machine_notices = _machines(base_path, new_path)
    row_notes: dict[str, list[str]] = {}  # fallback reason -> rows
    results: list[RowResult] = []
    # First pass: every row's checks and paired test; a paired row's AUROC verdict waits for the
    # correction, which needs all p-values. slots: where its failure goes in the row's lists.
    slots: dict[str, tuple[int, int]] = {}
    for key, b in base.items():
        n = new.get(key)
        if n is None:
            message = f"row {key!r} is in the base table but missing from the new one"
            results.append(RowResult(key, kind="missing", base_auroc=_number(b.get("auroc")), failures=[message],
                                     reasons=["missing from the new table"]))
            continue
        r = RowResult(key)
        b_status, n_status = b.get("status", "ok"), n.get("status", "ok")
        if b_status != n_status:
            r.changes.append(f"status {b_status} -> {n_status}")
        if b_status == "ok" and n_status != "ok":
            r.failures.append(f"row {key!r} failed in the new table: {n.get('error', '')}")
            r.reasons.append("failed in the new table")
        for col in DETERMINISTIC_COLUMNS:
            bv, nv = _number(b.get(col)), _number(n.get(col))
            if bv != nv and not (bv is None and nv is None):
                r.failures.append(f"row {key!r}: {col} changed {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                r.reasons.append(f"{col} {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                r.changes.append(f"{col} {_fmt(bv, 0)}->{_fmt(nv, 0)}")
        for col in SIZE_COLUMNS:
            bv, nv = _number(b.get(col)), _number(n.get(col))
            if (bv is None) != (nv is None) or (bv and abs(nv - bv) > bytes_tolerance * bv):
                r.failures.append(
                    f"row {key!r}: {col} changed {_fmt(bv, 0)} -> {_fmt(nv, 0)} (tolerance {bytes_tolerance:.1%})"
                )
                r.reasons.append(f"{col} {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                r.changes.append(f"{col} {_fmt(bv, 0)}->{_fmt(nv, 0)}")
        r.base_auroc, r.new_auroc = _number(b.get("auroc")), _number(n.get("auroc"))
        _compare_auroc(r, engine, base_pred, new_pred, row_notes, alpha=alpha, auroc_tolerance=auroc_tolerance,
                       seed=seed)
        if r.paired is not None:
            slots[key] = (len(r.failures), len(r.reasons))
        ratios = {}
        for col in TIMING_COLUMNS:
            bv, nv = _number(b.get(col)), _number(n.get(col))
            ratios[col] = nv / bv if bv and nv is not None else None
        for col in LATENCY_COLUMNS:
            ratio = ratios[col]
            if latency_tolerance is not None and ratio is not None and ratio > 1.0 + latency_tolerance:
                r.failures.append(f"row {key!r}: {col} grew {ratio:.2f}x (tolerance +{latency_tolerance:.0%})")
                r.reasons.append(f"{col} grew {ratio:.2f}x")
        r.latency_ratio = ratios["litert_latency_us_median"] or ratios["keras_latency_us_median"]
        r.train_ratio = ratios["train_seconds"]
        results.append(r)
    for key in new:
        if key not in base:
            results.append(RowResult(key, kind="new", new_auroc=_number(new[key].get("auroc"))))
    # Second pass: the correction across the rows that got a paired test, then their verdicts.
    # Rows whose resampled differences are all exactly 0 (the same ranking on both sides, e.g.
    # bit-identical predictions) count in m too, though their p-value is 1 and they can never fail.
    # Leaving them out (Tarone's argument for tests that cannot reach significance) would give the
    # changed rows more power when a change touches only some models, but the family would then be
    # chosen after looking at the data; counting every paired row keeps Holm's guarantee as stated
    # and m fixed by the table (the rule names it), at the price of a stricter test when few rows
    # changed. A row without a paired test (fixed tolerance) is not a p-value and is not counted.
    paired_results = [r for r in results if r.paired is not None]
    if correction == "holm":
        for r, adjusted in zip(paired_results, holm_adjust([r.paired.p_value for r in paired_results])):
            r.paired.p_adjusted = adjusted
    for r in paired_results:
        _decide_paired(r, slots[r.row], alpha=alpha, max_drop=max_drop)
    out.rows = results
    out.failures = [f for r in results for f in r.failures]
    out.notes = machine_notices + ([table_note] if table_note else []) + [
        f"note: row(s) {', '.join(repr(k) for k in rows)}: {reason}; their AUROC compared with the fixed "
        f"tolerance {auroc_tolerance:g}"
        for reason, rows in row_notes.items()
    ] + _resolution_note(len(paired_results), n_resamples, alpha, correction)
    paired_rows = [r.paired for r in paired_results]
    out.rule = _rule(len(paired_rows), alpha=alpha, max_drop=max_drop, auroc_tolerance=auroc_tolerance,
                     bytes_tolerance=bytes_tolerance, latency_tolerance=latency_tolerance, n_resamples=n_resamples,
                     multi_seed=any(not p.seeds.startswith("1 seed") for p in paired_rows), correction=correction)
    out.lines = _text_lines(out)
    return out


def _resolution_note(m: int, n_resamples: int, alpha: float, correction: str) -> list[str]:
    """A note when no paired test can reach significance: the smallest p-value is 1 / (B + 1)."""
    factor = m if correction == "holm" else min(m, 1)
    if not factor or factor / (n_resamples + 1) < alpha:
        return []
    what = f" and the Holm correction over {m} paired row{'s' if m != 1 else ''}, the smallest possible adjusted" \
        if correction == "holm" else " the smallest possible"
    return [f"note: with {n_resamples} resamples{what} p-value is "
            f"{factor / (n_resamples + 1):.3g}, not below alpha {alpha:g}: no AUROC drop can be significant "
            f"(only --max-drop can fail a row); use at least {math.ceil(factor / alpha)} resamples"]


def _compare_auroc(r: RowResult, engine: _AurocResamples, base_pred: Predictions | None,
                   new_pred: Predictions | None, row_notes: dict[str, list[str]], *, alpha: float,
                   auroc_tolerance: float, seed: int) -> None:
    """Row ``r``'s paired test when possible (``r.paired``; the verdict is :func:`_decide_paired`'s, once
    every row's p-value is known), else its verdict with the fixed tolerance."""
    key = r.row
    reason = None
    if base_pred is not None and new_pred is not None:
        sides = [side for side, pred in (("base", base_pred), ("new", new_pred)) if not pred.seeds(key)]
        if sides:
            reason = f"no stored predictions in the {' and '.join(sides)} run"
        else:
            result = _paired_auroc(engine, key, base_pred, new_pred, alpha=alpha, seed=seed)
            if isinstance(result, str):
                reason = result
            else:
                r.paired = result
                r.base_auroc, r.new_auroc = result.base, result.new
                return
    ba, na = r.base_auroc, r.new_auroc
    if ba is None or na is None:
        return
    if reason is not None:
        row_notes.setdefault(reason, []).append(key)
    diff = na - ba
    if diff < -auroc_tolerance - 1e-12:  # a drop printed as exactly the tolerance is within it
        r.failures.append(f"row {key!r}: AUROC dropped {ba:.4f} -> {na:.4f} ({diff:+.4f}, tolerance {auroc_tolerance})")
        r.reasons.append(f"AUROC drop {diff:+.4f} beyond the tolerance {auroc_tolerance:g}")


def _decide_paired(r: RowResult, slot: tuple[int, int], *, alpha: float, max_drop: float | None) -> None:
    """The AUROC verdict of a row with a paired test, on its adjusted p-value when it has one; the
    failure goes where the first pass left room for it (``slot``), so a row's failures keep their order."""
    p = r.paired
    significant = p.p_decision < alpha
    too_large = max_drop is not None and p.diff < -max_drop  # a size rule: never corrected
    if not (significant or too_large):
        return
    why = (["significant drop"] if significant else []) + ([f"drop beyond max_drop {max_drop:g}"] if too_large else [])
    relation = "<" if significant else ">="
    p_text = f"one-sided p={_p_text(p.p_value)}"
    if p.p_adjusted is not None:
        p_text += f", Holm-adjusted p={_p_text(p.p_adjusted)}"
    message = (f"row {r.row!r}: AUROC {p.base:.4f} -> {p.new:.4f}, paired difference {p.interval_text()} "
               f"({100 * p.level:g} % two-sided; {p_text} {relation} {alpha:g}, {p.patients} patients, {p.seeds}): "
               f"{', '.join(why)}")
    r.failures.insert(slot[0], message)
    r.reasons.insert(slot[1], ", ".join(why))


def _text_lines(out: Comparison) -> list[str]:
    width = max([24] + [len(r.row) for r in out.rows])
    level = f"{100 * (1 - out.alpha):g} % interval"
    adjusted = out.correction != "none"
    p_header = f"{'p':>7}" + (f" {'p Holm':>7}" if adjusted else "")
    header = (f"{'row':<{width}} {'AUROC base':>10} {'AUROC new':>10} {'diff':>8} {level:>20} {p_header}  "
              f"{'latency new/base':>16}  {'train new/base':>14}  notes")
    lines = [f"base: {out.base_path}", f"new:  {out.new_path}", out.machine, f"rule: {out.rule}", "", header,
             "-" * len(header)]
    for r in out.rows:
        if r.kind == "new":
            lines.append(f"{r.row:<{width}} {'(new row)':>10} {_fmt(r.new_auroc):>10}")
            continue
        if r.kind == "missing":
            lines.append(f"{r.row:<{width}} {_fmt(r.base_auroc):>10} {'(missing)':>10}")
            continue
        diff = r.diff
        diff_text = "-" if diff is None else f"{diff:+.4f}"
        ci = f"[{r.paired.low:+.4f}, {r.paired.high:+.4f}]" if r.paired else "-"
        p_text = f"{_p_text(r.paired.p_value) if r.paired else '-':>7}"
        if adjusted:
            holm = r.paired.p_adjusted if r.paired else None
            p_text += f" {'-' if holm is None else _p_text(holm):>7}"
        lat = "-" if r.latency_ratio is None else f"{r.latency_ratio:.2f}x"
        train = "-" if r.train_ratio is None else f"{r.train_ratio:.2f}x"
        notes = list(r.changes)
        if r.paired is not None:
            notes.append(f"{r.paired.patients} patients, {r.paired.seeds}")
        lines.append(f"{r.row:<{width}} {_fmt(r.base_auroc):>10} {_fmt(r.new_auroc):>10} {diff_text:>8} {ci:>20} "
                     f"{p_text}  {lat:>16}  {train:>14}  " + "; ".join(notes))
    return lines


# --------------------------------------------------------------------------- command line


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``condense compare``'s arguments to ``parser`` (dests match :func:`compare_tables`)."""
    parser.add_argument("base", help="the reference table.csv (predictions.npz and manifest.json beside it are used)")
    parser.add_argument("new", help="the table.csv to check")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="one-sided significance level of the paired AUROC test (default 0.05; with --correction "
                             "holm, the family-wise error rate across the rows)")
    parser.add_argument("--max-drop", dest="max_drop", type=float, default=None,
                        help="also fail a row whose paired AUROC difference is below -MAX_DROP, significant or not")
    parser.add_argument("--auroc-tolerance", dest="auroc_tolerance", type=float, default=DEFAULT_AUROC_TOLERANCE,
                        help="the fallback without stored predictions: fail an AUROC drop beyond this (default 0.01)")
    parser.add_argument("--bytes-tolerance", dest="bytes_tolerance", type=float, default=DEFAULT_BYTES_TOLERANCE,
                        help="relative tolerance on .tflite sizes (default 0.005; converter tensor names vary)")
    parser.add_argument("--latency-tolerance", dest="latency_tolerance", type=float, default=None,
                        help="also fail when a latency grows by more than this fraction (e.g. 0.5)")
    parser.add_argument("--resamples", dest="n_resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples per row (default 2000)")
    parser.add_argument("--correction", dest="correction", choices=CORRECTIONS, default=DEFAULT_CORRECTION,
                        help="multiple-comparison correction of the paired AUROC tests across the rows: holm "
                             "(Holm-Bonferroni, family-wise error rate --alpha; default) or none (--alpha per row)")
    parser.add_argument("--format", dest="fmt", choices=("text", "markdown"), default="text",
                        help="report format; markdown is for a CI job to post (default text)")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    """Run the comparison the parsed ``args`` describe, print the report; exit code 0 pass, 1 fail."""
    result = compare_tables(
        args.base, args.new, alpha=args.alpha, max_drop=args.max_drop, auroc_tolerance=args.auroc_tolerance,
        bytes_tolerance=args.bytes_tolerance, latency_tolerance=args.latency_tolerance,
        n_resamples=args.n_resamples, correction=getattr(args, "correction", DEFAULT_CORRECTION),
    )
    print(result.report(getattr(args, "fmt", "text")), end="" if getattr(args, "fmt", "text") == "markdown" else "\n")
    return 0 if result.ok else 1
