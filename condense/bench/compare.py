"""``condense compare BASE.csv NEW.csv``: diff two benchmark tables for CI.

Rows are matched by their ``row`` id. The comparison fails (exit code 1) when

* a deterministic field changes (parameter counts, ``.keras`` bytes), or a ``.tflite`` file's
  size moves by more than ``bytes_tolerance`` (default 0.5 %: the converter writes tensor names
  made unique by a process-wide TensorFlow counter, so an unrolled 48-step int8 graph, with
  thousands of named tensors, varies by a few hundred bytes between identical conversions),
* a row of BASE is missing from NEW, or a row that succeeded in BASE failed in NEW,
* test AUROC drops by more than ``auroc_tolerance`` (default 0.01),
* with ``latency_tolerance`` given: a latency grows by more than that fraction.

Timings (latency, training seconds) are otherwise only reported, as NEW/BASE ratios: these
machines are shared and noisy, so a timing alone never fails a build unless asked to.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from condense.checks import invalid_argument

#: Columns whose values must be identical between two runs of the same code and seed.
DETERMINISTIC_COLUMNS = ("params", "nonzero_params", "keras_bytes")
#: Columns compared with a relative tolerance (see the module docstring).
SIZE_COLUMNS = ("tflite_bytes",)
DEFAULT_BYTES_TOLERANCE = 0.005
#: Timing columns, compared as ratios.
TIMING_COLUMNS = (
    "keras_latency_us_median",
    "litert_latency_us_median",
    "train_seconds",
)
LATENCY_COLUMNS = ("keras_latency_us_median", "litert_latency_us_median")


@dataclass
class Comparison:
    """The result: human-readable lines and the list of failures (empty = pass)."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self) -> str:
        verdict = "PASS" if self.ok else f"FAIL ({len(self.failures)} problem(s))"
        body = self.lines + ([""] + [f"FAIL: {f}" for f in self.failures] if self.failures else [])
        return "\n".join(body + ["", f"compare: {verdict}"])


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


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def compare_tables(
    base_path, new_path, *, auroc_tolerance: float = 0.01, latency_tolerance: float | None = None,
    bytes_tolerance: float = DEFAULT_BYTES_TOLERANCE,
) -> Comparison:
    """Compare two tables; see the module docstring for what fails."""
    if auroc_tolerance < 0:
        raise invalid_argument("auroc_tolerance", ">= 0", auroc_tolerance)
    if bytes_tolerance < 0:
        raise invalid_argument("bytes_tolerance", ">= 0", bytes_tolerance)
    if latency_tolerance is not None and latency_tolerance < 0:
        raise invalid_argument("latency_tolerance", ">= 0", latency_tolerance)
    base, new = read_table(base_path), read_table(new_path)
    out = Comparison()
    header = f"{'row':<24} {'AUROC base':>10} {'AUROC new':>10} {'diff':>8}  {'latency new/base':>16}  {'train new/base':>14}  notes"
    out.lines += [f"base: {base_path}", f"new:  {new_path}", "", header, "-" * len(header)]
    for key in base:
        if key not in new:
            out.failures.append(f"row {key!r} is in the base table but missing from the new one")
    for key, b in base.items():
        n = new.get(key)
        if n is None:
            continue
        notes: list[str] = []
        b_status, n_status = b.get("status", "ok"), n.get("status", "ok")
        if b_status == "ok" and n_status != "ok":
            out.failures.append(f"row {key!r} failed in the new table: {n.get('error', '')}")
            notes.append(f"status {b_status} -> {n_status}")
        for col in DETERMINISTIC_COLUMNS:
            bv, nv = _number(b.get(col)), _number(n.get(col))
            if bv != nv and not (bv is None and nv is None):
                out.failures.append(f"row {key!r}: {col} changed {_fmt(bv, 0)} -> {_fmt(nv, 0)}")
                notes.append(f"{col} {_fmt(bv, 0)}->{_fmt(nv, 0)}")
        for col in SIZE_COLUMNS:
            bv, nv = _number(b.get(col)), _number(n.get(col))
            if (bv is None) != (nv is None) or (bv and abs(nv - bv) > bytes_tolerance * bv):
                out.failures.append(
                    f"row {key!r}: {col} changed {_fmt(bv, 0)} -> {_fmt(nv, 0)} (tolerance {bytes_tolerance:.1%})"
                )
                notes.append(f"{col} {_fmt(bv, 0)}->{_fmt(nv, 0)}")
        ba, na = _number(b.get("auroc")), _number(n.get("auroc"))
        diff = None if ba is None or na is None else na - ba
        if diff is not None and diff < -auroc_tolerance:
            out.failures.append(
                f"row {key!r}: AUROC dropped {ba:.4f} -> {na:.4f} ({diff:+.4f}, tolerance {auroc_tolerance})"
            )
        ratios = {}
        for col in TIMING_COLUMNS:
            bv, nv = _number(b.get(col)), _number(n.get(col))
            ratios[col] = nv / bv if bv and nv is not None else None
        for col in LATENCY_COLUMNS:
            r = ratios[col]
            if latency_tolerance is not None and r is not None and r > 1.0 + latency_tolerance:
                out.failures.append(f"row {key!r}: {col} grew {r:.2f}x (tolerance +{latency_tolerance:.0%})")
        lat = ratios["litert_latency_us_median"] or ratios["keras_latency_us_median"]
        diff_text = "-" if diff is None else f"{diff:+.4f}"
        lat_text = "-" if lat is None else f"{lat:.2f}x"
        train = ratios["train_seconds"]
        train_text = "-" if train is None else f"{train:.2f}x"
        out.lines.append(
            f"{key:<24} {_fmt(ba):>10} {_fmt(na):>10} {diff_text:>8}  {lat_text:>16}  {train_text:>14}  "
            + "; ".join(notes)
        )
    for key in new:
        if key not in base:
            out.lines.append(f"{key:<24} {'(new row)':>10} {_fmt(_number(new[key].get('auroc'))):>10}")
    return out
