"""The benchmark table's schema: its columns, their types and units, how a cell is written and read.

``table.csv`` is written by :mod:`condense.bench.report` and read back by ``condense compare``; the
report's Markdown and the figures read the same rows in memory. All of them go through this module,
so a cell means one thing everywhere.

Columns (:data:`COLUMNS`), in groups:

* identity (text): ``row`` (the id compare matches on), ``model``, ``method`` (the display
  string), ``family`` (``lstm``, ``hlstm``, ``dnn``, ``lr``, ``gbm``, ``score``), ``condensation``
  (the row's group, one of :data:`CONDENSATIONS`, from :attr:`condense.bench.rows.RowSpec.condensation`),
  ``form`` (``sequence`` or ``step``), ``baseline`` (the row AUROC differences refer to),
  ``status`` (``ok`` or ``failed``) and ``error``.
* sizes, in bytes (``*_bytes``), parameter counts (``params``, ``nonzero_params``).
* times: ``*_us_median`` / ``*_us_p95`` / ``*_us`` in microseconds per sample (batch 1, one thread),
  ``train_seconds`` in seconds; ``*_ratio`` columns are unitless ratios to another row's value.
* test-set scores: ``auroc`` (with ``auroc_low`` / ``auroc_high``, the bootstrap interval),
  ``auprc``, ``brier``, calibration (``ece``, ``cal_slope``, ``cal_intercept``), the PhysioNet/CinC
  2012 challenge's ``event1`` (min(Se, +P), threshold from the training death rate) and ``hl_h``
  (event 2: Hosmer-Lemeshow H over deciles of risk, on the ``n_test`` patients: it grows with
  them), paired differences ``auroc_diff*`` (new - reference, with their interval), ``seeds``.
* ``ece_floor`` / ``ece_floor_high``: the median and 95th percentile of the ECE a perfectly
  calibrated model with the row's probabilities would get on the same patients (outcomes drawn from
  the probabilities: :func:`condense.evaluate.metrics.calibrated_floor`). An ECE below the second is
  indistinguishable from sampling noise on this test set.
* after recalibration (``*_recal``): the same calibration columns, Brier and H of the row's test
  probabilities mapped by ``sigmoid(recal_a * logit(p) + recal_b)``, the map fitted on the row's
  validation probabilities (the profile's ``recalibration``; a converted file takes its Keras
  model's map). AUROC and event 1 do not change (the map is monotone).
* export facts: ``tflite_format``, ``route``, ``parity_max_abs`` (file vs Keras), TFLM columns.

With several seeds every numeric column is the mean over seeds, ``*_std`` its standard
deviation, and :data:`INTEGER` columns are rounded.

Missing and infinite values: an empty cell is missing (``None`` when read); ``nan`` is written
as empty and read as missing; ``inf`` / ``-inf`` are kept (a number, not finite). Code that does
arithmetic on a cell uses :func:`finite`, which is ``None`` for missing, NaN, infinite and
non-numbers alike. A non-number in a numeric column of a file is an error naming the file, line
and column (:func:`read_table`). Tables written before a column existed read that column as missing.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

__all__ = ["COLUMNS", "TEXT", "INTEGER", "NUMERIC", "CONDENSATIONS", "format_cell", "table_csv", "parse_cell",
           "read_table", "finite", "is_ok"]

COLUMNS = (
    "row", "model", "method", "family", "condensation", "form", "baseline", "status", "error",
    "params", "nonzero_params", "keras_bytes", "tflite_format", "tflite_bytes", "tflite_gzip_bytes", "deploy_bytes",
    "keras_latency_us_median", "keras_latency_us_p95", "litert_latency_us_median", "litert_latency_us_p95",
    "peer_latency_us_median", "peer_latency_us_p95",
    "train_seconds", "train_ratio", "epochs_run",
    "auroc", "auroc_low", "auroc_high", "auroc_std", "auprc", "auprc_std", "brier", "brier_std",
    "ece", "ece_std", "ece_floor", "ece_floor_high", "cal_slope", "cal_intercept", "event1", "hl_h",
    "recal_a", "recal_b", "ece_recal", "ece_recal_std", "cal_slope_recal", "cal_intercept_recal", "brier_recal",
    "hl_h_recal",
    "auroc_diff", "auroc_diff_low", "auroc_diff_high", "auroc_diff_lr", "auroc_diff_lr_low", "auroc_diff_lr_high",
    "auroc_diff_gbm", "auroc_diff_gbm_low", "auroc_diff_gbm_high",
    "parity_max_abs", "n_test", "seeds",
    "route", "litert_batch_us", "latency_ratio", "file_ratio", "step_sequence_us", "step_latency_ratio",
    "tflm_arena_bytes", "tflm_max_abs", "tflm_note",
    "cell_state_max_abs", "p_ties",
)
#: Text columns (everything else is numeric).
TEXT = ("row", "model", "method", "family", "condensation", "form", "baseline", "status", "error", "tflite_format",
        "seeds", "route", "tflm_note")
#: Numeric columns that are whole numbers (their seed mean is rounded).
INTEGER = ("params", "nonzero_params", "keras_bytes", "tflite_bytes", "tflite_gzip_bytes", "deploy_bytes",
           "epochs_run", "n_test", "tflm_arena_bytes", "p_ties")
#: Columns averaged over seeds (with a standard deviation where a *_std column exists).
NUMERIC = tuple(c for c in COLUMNS if c not in TEXT and not c.endswith("_std"))
#: The ``condensation`` groups: what made the row (the summary figure's groups, in its order).
CONDENSATIONS = ("baseline", "pruning", "hlstm", "distillation", "quantization", "step", "peer", "reference")


def format_cell(value) -> str:
    """A value as ``table.csv`` writes it: empty for missing and NaN, 6 significant digits for floats."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table_csv(table: list[dict]) -> str:
    """The rows as ``table.csv`` text, columns in :data:`COLUMNS` order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in table:
        writer.writerow({c: format_cell(row.get(c)) for c in COLUMNS})
    return buf.getvalue()


def parse_cell(column: str, text: str | None):
    """A ``table.csv`` cell as its value: ``None`` when empty or ``nan``, ``str`` for :data:`TEXT`
    (and unknown) columns, ``int`` for :data:`INTEGER`, ``float`` otherwise (``inf`` kept).
    ValueError for a non-number in a numeric column."""
    if text is None or text.strip() == "":
        return None
    if column not in NUMERIC and not column.endswith("_std"):
        return text
    value = float(text)  # ValueError: not a number (the caller names the file and line)
    if math.isnan(value):
        return None
    if column in INTEGER and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def read_table(path) -> dict[str, dict]:
    """``table.csv`` as {row id: {column: value}} (values as :func:`parse_cell` reads them; every
    column of :data:`COLUMNS` present, missing ones ``None``). Clear errors for a missing file, a file
    that is not a benchmark table, a duplicate row id or a non-number in a numeric column."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "row" not in reader.fieldnames:
            raise ValueError(f"{path}: not a condense benchmark table (no 'row' column in the header)")
        rows: dict[str, dict] = {}
        for line_no, record in enumerate(reader, start=2):
            key = record["row"]
            if key in rows:
                raise ValueError(f"{path}:{line_no}: duplicate row id {key!r}")
            row = {}
            for column in dict.fromkeys((*COLUMNS, *record)):
                if column is None:  # more cells than header names
                    raise ValueError(f"{path}:{line_no}: row {key!r} has more cells than the header has columns")
                try:
                    row[column] = parse_cell(column, record.get(column))
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: row {key!r}, column {column!r}: {record[column]!r} is not "
                                     "a number") from None
            rows[key] = row
    return rows


def finite(value) -> float | None:
    """A cell as a finite float, or None (missing, NaN, infinite, or not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def is_ok(row: dict) -> bool:
    """True when the row ran (its status is ``ok``; a row without a status counts as ok)."""
    return (row.get("status") or "ok") == "ok"
