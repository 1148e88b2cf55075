"""The benchmark's outputs: ``table.csv``, ``table.md``, ``rows.json``, ``manifest.json``, and the
figures of :mod:`condense.bench.figures` (``pareto``, ``summary``, ``roc``, ``calibration``: ``.png`` and
``.svg``).

``table.csv``'s columns, types, units and missing-value rules are :mod:`condense.bench.table`'s;
this module fills them (:func:`aggregate`: means over seeds, ``*_std`` their deviation) and writes
the Markdown from them. ``ece``, ``cal_slope`` and ``cal_intercept`` are the calibration of a
row's test probabilities (:func:`condense.evaluate.metrics.calibration`: 10 equal-frequency bins,
logistic recalibration); empty for a reference score, which is not a probability.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from condense.bench.figures import write_figures
from condense.bench.table import COLUMNS, INTEGER, NUMERIC, finite, table_csv
from condense.evaluate.metrics import CHALLENGE_BEST_EVENT1, CHALLENGE_BEST_EVENT2
from condense.bench.predictions import PREDICTIONS_FILE, write_predictions
from condense.export.formats import is_quantized
from condense.io import atomic_write, sha256_file, write_json

#: In table.md's calibration section a change below these counts as small (a reading convention, not a test).
CAL_ECE_SMALL = 0.01
CAL_SLOPE_SMALL = 0.1


def aggregate(per_seed: list[list[dict]]) -> list[dict]:
    """One row per table row: means over seeds (std in *_std), status failed if any seed failed."""
    table = []
    for i, first in enumerate(per_seed[0]):
        runs = [rows[i] for rows in per_seed]
        row = {c: first.get(c, "") for c in COLUMNS}
        failed = [r for r in runs if r.get("status") != "ok"]
        skipped = failed and all(r.get("status") == "skipped" for r in runs)  # an optional peer not installed
        row["status"] = "skipped" if skipped else "failed" if failed else "ok"
        row["error"] = failed[0].get("error", "") if failed else ""
        row["seeds"] = len(runs)
        for col in NUMERIC:
            values = [r.get(col) for r in runs if isinstance(r.get(col), (int, float)) and r.get(col) is not None]
            values = [float(v) for v in values if not math.isnan(float(v))]
            if not values:
                row[col] = ""
                continue
            mean = float(np.mean(values))
            row[col] = int(round(mean)) if col in INTEGER else mean
            std_col = f"{col}_std"
            if std_col in COLUMNS:
                row[std_col] = float(np.std(values, ddof=1)) if len(values) > 1 else ""
        table.append(row)
    return table


def _v(row: dict, col: str) -> float | None:
    """The row's ``col`` as a finite number, or None (:func:`condense.bench.table.finite`)."""
    return finite(row.get(col))


def _f(v, fmt: str, empty: str = "–") -> str:
    return empty if v is None else format(v, fmt)


def _auroc_text(row: dict) -> str:
    a, lo, hi, sd = (_v(row, c) for c in ("auroc", "auroc_low", "auroc_high", "auroc_std"))
    if a is None:
        return "–"
    text = f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{a:.3f}"
    return text + (f" ± {sd:.3f}" if sd is not None else "")


def _diff_text(row: dict, prefix: str = "auroc_diff", name_baseline: bool = True) -> str:
    d, lo, hi = (_v(row, c) for c in (prefix, f"{prefix}_low", f"{prefix}_high"))
    if d is None:
        return "–"
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" + (f" vs {row['baseline']}" if name_baseline else "")


def deploy_latency(row: dict):
    """The latency of the row's deployable form: LiteRT for a converted file, the peer's own
    predict for the logistic regression and gradient boosting, else Keras."""
    if _v(row, "peer_latency_us_median") is not None:
        return _v(row, "peer_latency_us_median")
    if is_quantized(row.get("tflite_format")) or _v(row, "keras_latency_us_median") is None:
        return _v(row, "litert_latency_us_median")
    return _v(row, "keras_latency_us_median")


def _grid_text(grid: dict | None) -> str:
    if not grid:
        return ""
    text = f"; {grid['jobs']} jobs on the {grid['executor']} executor"
    if grid["executor"] != "local" or (grid.get("workers") or 1) > 1:
        text += f" ({grid['workers'] or 'all'} at a time)"
    if grid.get("resumed"):
        text += f", {grid['resumed']} of them finished by an earlier, interrupted run"
    if grid.get("job_seconds"):
        text += (f"; grid {grid['grid_seconds'] / 60:.1f} min for {grid['job_seconds'] / 60:.1f} min of jobs "
                 f"(wall / sum of jobs {grid['grid_seconds'] / grid['job_seconds']:.2f})")
    if grid.get("training_time"):
        text += f"; training time measured {grid['training_time']}"
    return text


def _numerics(machine: dict) -> str:
    """What decides the floating-point results besides the code (docs/reproducibility.md)."""
    text = f"oneDNN {machine.get('onednn', 'unknown')}"
    threads = machine.get("tf_threads")
    if threads:
        text += f", training with {threads['intra_op']} TensorFlow thread(s)"
        if not threads.get("applied", True):
            text += " (TensorFlow had started before the run: its own setting)"
    return text


def table_markdown(table: list[dict], header: dict) -> str:
    prof = header["profile"]
    data = header["data"]
    lines = [
        f"# Condensation benchmark — profile `{prof['name']}`",
        "",
        f"- data: `{data['spec']}` ({data['source']}), train/val/test = {data['n']['train']}/{data['n']['val']}/"
        f"{data['n']['test']}, fingerprint `{data['fingerprint'][:16]}`",
        f"- protocol: {prof['epochs']} epochs, batch {prof['batch_size']}, Adam 1e-3, pruning after epoch "
        f"{prof['prune_after']}, model of the {prof['select']} epoch; seeds {header['seeds']}",
        f"- machine: {header['machine']['cpu']}, {header['machine']['cores']} cores, {_numerics(header['machine'])}; "
        f"git `{header['git_commit']}`",
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(header["library_versions"].items())),
        f"- AUROC: test set, 95 % bootstrap interval ({prof['bootstrap_resamples']:,} resamples); differences are "
        "paired bootstraps on the same patients. Latency: batch 1, one thread, microseconds per sample.",
        f"- wall time of the whole run: {header['wall_seconds'] / 60:.1f} min" + _grid_text(header.get("grid")),
        "",
        "## The paper's layout",
        "",
        "| model | method | params | file (kB) | inference per sample (µs) | training (s) | AUROC |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in table:
        if row["status"] != "ok":
            lines.append(f"| {row['model']} | {row['method']} | {row['status'].upper()}: {row['error']} | | | | |")
            continue
        file_bytes = _v(row, "tflite_bytes") if is_quantized(row.get("tflite_format")) else None
        file_bytes = file_bytes or _v(row, "keras_bytes") or _v(row, "deploy_bytes")
        train = None if is_quantized(row.get("tflite_format")) else _v(row, "train_seconds")
        lines.append(
            f"| {row['model']} | {row['method']} | {_f(_v(row, 'params'), ',.0f')} | "
            f"{_f(None if file_bytes is None else file_bytes / 1000, ',.1f')} | {_f(deploy_latency(row), ',.0f')} | "
            f"{_f(train, ',.1f', 'n/a')} | {_auroc_text(row)} |"
        )
    lines += deployable_markdown(table)
    lines += step_markdown(table)
    lines += calibration_markdown(table)
    lines += [
        "",
        "## All columns",
        "",
        "| row | params (non-zero) | .keras B | .tflite B (format) | gzip B | Keras µs med / p95 | LiteRT µs med / p95 "
        "| train s (× baseline) | AUPRC | Brier | ECE | cal. slope / intercept | event 1 | event 2 H "
        "| ΔAUROC [95 % CI] | ΔAUROC vs LR | ΔAUROC vs GBM | max abs vs Keras | n test |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|",
    ]
    for row in table:
        if row["status"] != "ok":
            lines.append(f"| {row['row']} | {row['status'].upper()}: {row['error']} ||||||||||||||||||")
            continue
        nz = _v(row, "nonzero_params")
        params = _f(_v(row, "params"), ",.0f") + (f" ({nz:,.0f})" if nz is not None else "")
        tfl = _v(row, "tflite_bytes")
        tfl_fmt = f" ({row['tflite_format']})" if tfl is not None else ""
        ratio = _v(row, "train_ratio")
        ratio_text = f" ({ratio:.2f}×)" if ratio is not None else ""
        lines.append(
            f"| {row['row']} | {params} | {_f(_v(row, 'keras_bytes'), ',.0f')} | "
            f"{_f(tfl, ',.0f')}{tfl_fmt} | "
            f"{_f(_v(row, 'tflite_gzip_bytes'), ',.0f')} | "
            f"{_f(_v(row, 'keras_latency_us_median'), ',.0f')} / {_f(_v(row, 'keras_latency_us_p95'), ',.0f')} | "
            f"{_f(_v(row, 'litert_latency_us_median'), ',.0f')} / {_f(_v(row, 'litert_latency_us_p95'), ',.0f')} | "
            f"{_f(_v(row, 'train_seconds'), ',.1f')}{ratio_text} | "
            f"{_f(_v(row, 'auprc'), '.3f')} | {_f(_v(row, 'brier'), '.4f')} | {_ece_text(row)} | "
            f"{_slope_text(row)} | {_f(_v(row, 'event1'), '.3f')} | {_f(_v(row, 'hl_h'), ',.1f')} | {_diff_text(row)} | "
            f"{_diff_text(row, 'auroc_diff_lr', name_baseline=False)} | "
            f"{_diff_text(row, 'auroc_diff_gbm', name_baseline=False)} | "
            f"{_f(_v(row, 'parity_max_abs'), '.1e')} | {_f(_v(row, 'n_test'), ',.0f')} |"
        )
    return "\n".join(lines) + "\n"


def _ece_text(row: dict) -> str:
    ece, sd = _v(row, "ece"), _v(row, "ece_std")
    return _f(ece, ".3f") + (f" ± {sd:.3f}" if ece is not None and sd is not None else "")


def _slope_text(row: dict) -> str:
    slope, intercept = _v(row, "cal_slope"), _v(row, "cal_intercept")
    return "–" if slope is None else f"{slope:.2f} / {intercept:+.2f}"


def _largest_change(pairs: list[tuple[dict, dict]], col: str, fmt: str) -> tuple[float, str] | None:
    """The largest |row - baseline| of ``col`` among ``pairs``, and its text: ``row vs base: a → b``."""
    changes = [(abs(_v(r, col) - _v(b, col)), r, b) for r, b in pairs
               if _v(r, col) is not None and _v(b, col) is not None]
    if not changes:
        return None
    size, r, b = max(changes, key=lambda c: c[0])
    return size, f"`{r['row']}` vs `{b['row']}`: {_v(b, col):{fmt}} → {_v(r, col):{fmt}}"


def _calibration_verdict(pairs: list[tuple[dict, dict]]) -> str:
    ece = _largest_change(pairs, "ece", ".3f")
    slope = _largest_change(pairs, "cal_slope", ".2f")
    if ece is None:
        return "no ECE"
    parts = [("moves ECE" if ece[0] >= CAL_ECE_SMALL else "leaves ECE about where it was")
             + f" (largest |ΔECE| {ece[0]:.3f}, {ece[1]})"]
    if slope is not None:
        parts.append(("moves the slope" if slope[0] >= CAL_SLOPE_SMALL else "leaves the slope about where it was")
                     + f" (largest |Δslope| {slope[0]:.2f}, {slope[1]})")
    return " and ".join(parts)


def calibration_markdown(table: list[dict]) -> list[str]:
    """The calibration section: per model family, whether condensation (pruned and hLSTM rows vs their
    baseline) or quantization (each int8 / dynamic file vs the float32 model it came from) moves the
    ECE and the calibration slope; the largest change of each, computed from the table."""
    ok = {str(r["row"]): r for r in table if r.get("status") == "ok"}
    lines = [
        "",
        "## Calibration",
        "",
        "Do the probabilities mean what they say? ECE: the mean |observed death rate − mean predicted probability| "
        "over 10 equal-frequency bins of predicted risk (deciles; 0 is perfect), weighted by the bins' patients. "
        "Slope / intercept: the logistic recalibration fit logit P(death) = intercept + slope × logit(p) (slope 1, "
        "intercept 0: calibrated; slope < 1: predictions too extreme; slope > 1: too timid). Reference scores are "
        "not probabilities and have none. Condensation: each pruned or hLSTM row against its baseline; "
        "quantization: each int8 / dynamic file (`… -> TFLite …`) against the float32 model it was converted from. "
        f"A change counts as small below |ΔECE| {CAL_ECE_SMALL:g} and |Δslope| {CAL_SLOPE_SMALL:g} (a reading "
        "convention for one test set, not a statistical test); the reliability diagrams are `calibration.png`. "
        "The PhysioNet/CinC 2012 challenge's own scores are in the last table: event 1, min(sensitivity, positive "
        "predictivity) with the training death rate's share of patients predicted to die (no test label used), and "
        "event 2, the Hosmer-Lemeshow H over deciles of risk, which grows with the number of patients (column n test). "
        f"The winners scored {CHALLENGE_BEST_EVENT1} and {CHALLENGE_BEST_EVENT2} on 4,000 unseen stays.",
        "",
    ]
    families = [(f, name) for f, name in (("lstm", "LSTM"), ("hlstm", "hLSTM"), ("dnn", "DNN"))
                if any(r.get("family") == f for r in ok.values())]
    for family, name in families:
        members = [r for r in ok.values() if r.get("family") == family and _v(r, "ece") is not None]
        text = []
        for label, groups, unit in (("condensation", ("pruning", "hlstm", "distillation"), "row"),
                                    ("quantization", ("quantization",), "file")):
            pairs = [(r, ok[str(r["baseline"])]) for r in members
                     if r.get("condensation") in groups and str(r.get("baseline") or "") in ok]
            if pairs:
                count = f"{len(pairs)} {unit}{'s' if len(pairs) > 1 else ''}"
                text.append(f"{label} ({count}) {_calibration_verdict(pairs)}")
        bases = [r for r in members if not r.get("baseline")]
        own = "; ".join(f"baseline `{r['row']}`: ECE {_ece_text(r)}, slope / intercept {_slope_text(r)}" for r in bases)
        body = "; ".join(text) if text else "no condensed row with calibration numbers"
        lines.append(f"- **{name}**" + (f" ({own})" if own else "") + f": {body}.")
    if not families:
        lines.append("- no model rows.")
    return lines + recalibration_markdown(table)


def recalibration_markdown(table: list[dict]) -> list[str]:
    """Every row's calibration before and after the recalibration fitted on its validation split."""
    rows = [r for r in table if r.get("status") == "ok" and _v(r, "ece_recal") is not None]
    if not rows:
        return []
    lines = [
        "",
        "### Before and after recalibration",
        "",
        "Each row's test probabilities mapped by sigmoid(a × logit(p) + b), with (a, b) fitted on that row's "
        "validation split only (a converted file takes its Keras model's map, which `condense train --calibrate` "
        "would fold into the model and so into every file); AUROC and event 1 are unchanged (the map is monotone). "
        "Before → after. The ECE of a calibrated model: what a model whose probabilities are the true risks would "
        "score on these patients (outcomes drawn from the row's probabilities, 1,000 times): an ECE below its "
        "95th percentile is sampling noise, not miscalibration.",
        "",
        "| row | a, b | ECE | ECE of a calibrated model (median, 95th pct.) | slope | intercept | Brier | event 2 H "
        "| n test |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['row']} | {_f(_v(row, 'recal_a'), '.2f')}, {_f(_v(row, 'recal_b'), '+.2f')} | "
            f"{_f(_v(row, 'ece'), '.3f')} → {_f(_v(row, 'ece_recal'), '.3f')} | "
            f"{_f(_v(row, 'ece_floor'), '.3f')}, {_f(_v(row, 'ece_floor_high'), '.3f')} | "
            f"{_f(_v(row, 'cal_slope'), '.2f')} → {_f(_v(row, 'cal_slope_recal'), '.2f')} | "
            f"{_f(_v(row, 'cal_intercept'), '+.2f')} → {_f(_v(row, 'cal_intercept_recal'), '+.2f')} | "
            f"{_f(_v(row, 'brier'), '.4f')} → {_f(_v(row, 'brier_recal'), '.4f')} | "
            f"{_f(_v(row, 'hl_h'), ',.1f')} → {_f(_v(row, 'hl_h_recal'), ',.1f')} | {_f(_v(row, 'n_test'), ',.0f')} |"
        )
    return lines


def deployable_markdown(table: list[dict]) -> list[str]:
    """The section on the .tflite files: route, size and speed ratios, TFLM arena, ties."""
    lines = [
        "",
        "## Deployable files: LiteRT and TensorFlow Lite for Microcontrollers",
        "",
        "Route: the graph that was converted (`fused`: TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM op; `hoisted, unrolled`: "
        "the hLSTM's input projection outside an unrolled loop; `while` / `unrolled`: the Keras layers as a loop or "
        "unrolled, `+ Masking` when Masking stays in). × float32: file bytes / the same model's float32 file. "
        "LiteRT: batch 1, one thread, median µs, state reset included; × LSTM: / the baseline LSTM's float32 file. "
        "Batched: the whole test split through the file, divided by its size (the paper's definition). "
        "TFLM arena: the smallest tensor arena with which TensorFlow Lite for Microcontrollers runs the file "
        "(input and output buffers included), or why it cannot. Tied p: test patients whose probability "
        "equals another patient's.",
        "",
        "| row | format | route | file B | × float32 | LiteRT µs | × LSTM | batched µs/sample | TFLM arena B "
        "| tied p | max abs vs Keras | AUROC |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in table:
        if row["status"] != "ok" or _v(row, "tflite_bytes") is None or row.get("form") == "step":
            continue
        arena_text = _arena_text(row)
        lines.append(
            f"| {row['row']} | {row['tflite_format']} | {row.get('route') or '–'} | {_f(_v(row, 'tflite_bytes'), ',.0f')} | "
            f"{_f(_v(row, 'file_ratio'), '.2f')} | {_f(_v(row, 'litert_latency_us_median'), ',.0f')} | "
            f"{_f(_v(row, 'latency_ratio'), '.2f')} | {_f(_v(row, 'litert_batch_us'), ',.0f')} | {arena_text} | "
            f"{_f(_v(row, 'p_ties'), ',.0f')} | {_f(_v(row, 'parity_max_abs'), '.1e')} | {_auroc_text(row)} |"
        )
    return lines


def _arena_text(row: dict) -> str:
    """The TFLM arena in bytes, or why TFLM cannot run the file."""
    arena = _v(row, "tflm_arena_bytes")
    return f"{arena:,.0f}" if arena is not None else (row.get("tflm_note") or "–")


def step_markdown(table: list[dict]) -> list[str]:
    """The section on the step files (one hour per call, the state as inputs and outputs)."""
    steps = [row for row in table if row["status"] == "ok" and row.get("form") == "step"]
    if not steps:
        return []
    lines = [
        "",
        "## Step files: one hour per call (docs/streaming.md)",
        "",
        "The recurrent state as float inputs and outputs, batch 1, no loop and no state inside the file. LiteRT: "
        "one step, one thread, median µs, the state carried from call to call; × sequence: / the same model's "
        "whole-sequence file of the same format; 48 steps: one step × the hours. Max abs vs Keras: the test "
        "split chained over every hour from zero state.",
        "",
        "| row | format | file B | × float32 | LiteRT µs / step | steps µs | × sequence | TFLM arena B "
        "| tied p | max abs vs Keras | AUROC |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in steps:
        arena_text = _arena_text(row)
        lines.append(
            f"| {row['row']} | {row['tflite_format']} | {_f(_v(row, 'tflite_bytes'), ',.0f')} | "
            f"{_f(_v(row, 'file_ratio'), '.2f')} | {_f(_v(row, 'litert_latency_us_median'), ',.1f')} | "
            f"{_f(_v(row, 'step_sequence_us'), ',.0f')} | {_f(_v(row, 'step_latency_ratio'), '.3f')} | "
            f"{arena_text} | {_f(_v(row, 'p_ties'), ',.0f')} | {_f(_v(row, 'parity_max_abs'), '.1e')} | "
            f"{_auroc_text(row)} |"
        )
    return lines


def write_outputs(out_dir: Path, table: list[dict], header: dict, curves: dict, per_seed: list[list[dict]], *,
                  ids=None, y=None, scores: dict | None = None) -> None:
    """Write every output file (the figures: :func:`condense.bench.figures.write_figures`; with
    ``scores`` {(row, seed): test scores} the per-patient predictions ``condense compare`` pairs),
    then a manifest with each artifact's path, size and hash (the figures' ``.svg`` files included)."""
    if scores is not None:
        write_predictions(out_dir / PREDICTIONS_FILE, ids, y, scores)
    atomic_write(out_dir / "table.csv", table_csv(table))
    atomic_write(out_dir / "table.md", table_markdown(table, header))
    write_json(out_dir / "rows.json", {"header": header, "per_seed": per_seed})
    write_figures(out_dir, table, curves)
    artifacts = {
        str(p.relative_to(out_dir)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".") and p.relative_to(out_dir).parts[0] != "rows"
    }
    write_json(out_dir / "manifest.json", {**header, "artifacts": artifacts})
