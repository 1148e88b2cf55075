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

import json
import math
from dataclasses import dataclass, field

import numpy as np

from condense.bench.table import finite, read_table
from condense.bench.predictions import PREDICTIONS_FILE, Predictions, file_beside, predictions_beside
from condense.checks import check_choice, check_int, invalid_argument
from condense.evaluate.bootstrap import AurocResamples, PairedAuroc, holm_adjust, paired_auroc
from condense.io import read_json

__all__ = ["compare_tables", "Comparison", "RowResult"]

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
MANIFEST_FILE = "manifest.json"



# --------------------------------------------------------------------------- results


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


def _fmt(value: float | None, digits: int = 4, empty: str = "-") -> str:
    return empty if value is None else f"{value:.{digits}f}"


def _p_text(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _paired_auroc(engine: AurocResamples, row: str, base: Predictions, new: Predictions, *, alpha: float,
                  seed: int) -> PairedAuroc | str:
    """Row ``row``'s paired test on the stored predictions, or why it cannot be run (then: fallback)."""
    return paired_auroc(engine, base.y, {s: base.score(row, s) for s in base.seeds(row)},
                        {s: new.score(row, s) for s in new.seeds(row)}, alpha=alpha, seed=seed, stream=row)


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


def _manifest_of(table_path) -> tuple[dict | None, str]:
    """The manifest beside a table, or (None, why not)."""
    found = file_beside(table_path, MANIFEST_FILE)
    if found is None:
        return None, f"no {MANIFEST_FILE} beside it"
    try:
        data = read_json(found)
    except (OSError, ValueError) as exc:
        return None, f"unreadable {found.name}: {exc}"
    return (data, "") if isinstance(data, dict) else (None, f"{found.name} is not an object")


def _machine_of(manifest: dict | None, why: str) -> tuple[dict | None, str]:
    """The ``machine`` object of a manifest, or (None, why not)."""
    if manifest is None:
        return None, why
    machine = manifest.get("machine")
    return (machine, "") if isinstance(machine, dict) else (None, f"no machine in {MANIFEST_FILE}")


#: Manifest entries whose difference between two runs compare names (the run's settings and software).
SETTINGS = ("profile", "seeds", "library_versions")


def _settings_notices(base: dict | None, new: dict | None) -> list[str]:
    """Notices when the two runs were made with different settings, data or library versions: their
    differences may be those settings, not the code (a different profile is not a regression)."""
    if base is None or new is None:
        return []
    notices = []
    for entry in SETTINGS:
        b, n = base.get(entry), new.get(entry)
        if b == n or b is None or n is None:
            continue
        if isinstance(b, dict) and isinstance(n, dict):
            keys = [k for k in sorted(set(b) | set(n)) if b.get(k) != n.get(k)]
            text = "; ".join(f"{k} {_short(b.get(k))} vs {_short(n.get(k))}" for k in keys)
        else:
            text = f"{_short(b)} vs {_short(n)}"
        what = {"profile": "the runs' settings differ", "seeds": "the runs used different seeds",
                "library_versions": "the runs used different library versions"}[entry]
        notices.append(f"notice: {what}: {text}")
    data_b, data_n = base.get("data") or {}, new.get("data") or {}
    fingerprints = [d.get("fingerprint") if isinstance(d, dict) else None for d in (data_b, data_n)]
    if all(fingerprints) and fingerprints[0] != fingerprints[1]:
        notices.append(f"notice: the runs read different data ({_short(data_b.get('spec'))}, fingerprint "
                       f"{data_b['fingerprint'][:12]} vs {_short(data_n.get('spec'))}, {data_n['fingerprint'][:12]})")
    return notices


def _describe_machine(machine: dict) -> str:
    cpu = machine.get("cpu") or "unknown CPU"
    cores = machine.get("cores")
    return f"{cpu} ({cores} cores)" if cores else str(cpu)


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _machines(base_path, new_path) -> tuple[str, list[str]]:
    """The line saying where each run ran, and notices when the machines or the settings differ."""
    (man_b, why_b), (man_n, why_n) = _manifest_of(base_path), _manifest_of(new_path)
    (mb, why_b), (mn, why_n) = _machine_of(man_b, why_b), _machine_of(man_n, why_n)
    text_b = _describe_machine(mb) if mb else f"unknown ({why_b})"
    text_n = _describe_machine(mn) if mn else f"unknown ({why_n})"
    if mb and mn and text_b == text_n:
        line = f"machine: both runs on {text_b}"
    else:
        line = f"machine: base on {text_b}; new on {text_n}"
    notices = _settings_notices(man_b, man_n)
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
    empty = [f"{path}: the {side} table has no rows: nothing to judge" for side, path, table in
             (("base", base_path, base), ("new", new_path, new)) if not table]
    base_pred, new_pred, table_note = _load_predictions(base_path, new_path, auroc_tolerance)
    engine = AurocResamples(n_resamples, seed)
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
            results.append(RowResult(key, kind="missing", base_auroc=finite(b.get("auroc")), failures=[message],
                                     reasons=["missing from the new table"]))
            continue
        r = RowResult(key)
        b_status, n_status = b.get("status") or "ok", n.get("status") or "ok"  # no status: ran (table.is_ok)
        if b_status != n_status:
            r.changes.append(f"status {b_status} -> {n_status}")
        if b_status == "ok" and n_status != "ok":
            r.failures.append(f"row {key!r} {'failed' if n_status == 'failed' else n_status} in the new table: "
                              f"{n.get('error') or ''}")
            r.reasons.append(f"{'failed' if n_status == 'failed' else n_status} in the new table")
        for col in DETERMINISTIC_COLUMNS:
            bv, nv = finite(b.get(col)), finite(n.get(col))
            if bv != nv and not (bv is None and nv is None):
                r.failures.append(f"row {key!r}: {col} changed {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                r.reasons.append(f"{col} {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                r.changes.append(f"{col} {_fmt(bv, 0)}->{_fmt(nv, 0)}")
        for col in SIZE_COLUMNS:
            bv, nv = finite(b.get(col)), finite(n.get(col))
            if (bv is None) != (nv is None) or (bv and abs(nv - bv) > bytes_tolerance * bv):
                r.failures.append(
                    f"row {key!r}: {col} changed {_fmt(bv, 0)} -> {_fmt(nv, 0)} (tolerance {bytes_tolerance:.1%})"
                )
                r.reasons.append(f"{col} {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                r.changes.append(f"{col} {_fmt(bv, 0)}->{_fmt(nv, 0)}")
        r.base_auroc, r.new_auroc = finite(b.get("auroc")), finite(n.get("auroc"))
        unjudged = _unusable_auroc(key, b, n) if b_status == n_status == "ok" else []
        for message in unjudged:  # a row that ran must have an AUROC to be judged on
            r.failures.append(message)
            r.reasons.append("no usable AUROC")
        if not unjudged:
            _compare_auroc(r, engine, base_pred, new_pred, row_notes, alpha=alpha, auroc_tolerance=auroc_tolerance,
                           seed=seed)
        if r.paired is not None:
            slots[key] = (len(r.failures), len(r.reasons))
        ratios = {}
        for col in TIMING_COLUMNS:
            bv, nv = finite(b.get(col)), finite(n.get(col))
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
            results.append(RowResult(key, kind="new", new_auroc=finite(new[key].get("auroc"))))
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
    out.failures = empty + [f for r in results for f in r.failures]
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


def _unusable_auroc(key: str, base: dict, new: dict) -> list[str]:
    """Failures for a row that ran on both sides without a finite AUROC in a table (empty, ``nan``,
    ``inf``, or no ``auroc`` column): compare cannot judge it, so it cannot pass it."""
    out = []
    for side, row in (("base", base), ("new", new)):
        value = row.get("auroc")
        if finite(value) is None:
            what = "no AUROC (empty, nan or no auroc column)" if value is None else f"AUROC {value} (not finite)"
            out.append(f"row {key!r}: the {side} table has {what} for a row that ran; it cannot be judged")
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


def _compare_auroc(r: RowResult, engine: AurocResamples, base_pred: Predictions | None,
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
