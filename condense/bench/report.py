"""The benchmark's outputs: ``table.csv``, ``table.md``, ``rows.json``, ``manifest.json``, and the
figures of :mod:`condense.bench.figures` (``pareto``, ``summary``, ``roc``: ``.png`` and ``.svg``).

``table.csv`` is what ``condense compare`` reads; its columns are fixed (:data:`COLUMNS`).
With several seeds every numeric column is the mean over seeds and the ``*_std`` columns hold
the standard deviation.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from condense.bench.figures import write_figures
from condense.bench.predictions import PREDICTIONS_FILE, write_predictions
from condense.export.formats import is_quantized
from condense.io import atomic_write, sha256_file, write_json

COLUMNS = (
    "row", "model", "method", "family", "baseline", "status", "error",
    "params", "nonzero_params", "keras_bytes", "tflite_format", "tflite_bytes", "tflite_gzip_bytes", "deploy_bytes",
    "keras_latency_us_median", "keras_latency_us_p95", "litert_latency_us_median", "litert_latency_us_p95",
    "train_seconds", "train_ratio", "epochs_run",
    "auroc", "auroc_low", "auroc_high", "auroc_std", "auprc", "auprc_std", "brier", "brier_std",
    "auroc_diff", "auroc_diff_low", "auroc_diff_high", "auroc_diff_lr", "auroc_diff_lr_low", "auroc_diff_lr_high",
    "parity_max_abs", "n_test", "seeds",
    "route", "litert_batch_us", "latency_ratio", "file_ratio", "tflm_arena_bytes", "tflm_max_abs", "tflm_note",
    "cell_state_max_abs", "p_ties",
)
#: Text columns (everything else is numeric).
TEXT = ("row", "model", "method", "family", "baseline", "status", "error", "tflite_format", "seeds", "route",
        "tflm_note")
#: Numeric columns that are whole numbers (their seed mean is rounded).
INTEGER = ("params", "nonzero_params", "keras_bytes", "tflite_bytes", "tflite_gzip_bytes", "deploy_bytes",
           "epochs_run", "n_test", "tflm_arena_bytes", "p_ties")
#: Columns averaged over seeds (with a standard deviation where a *_std column exists).
NUMERIC = tuple(c for c in COLUMNS if c not in TEXT and not c.endswith("_std"))


def aggregate(per_seed: list[list[dict]]) -> list[dict]:
    """One row per table row: means over seeds (std in *_std), status failed if any seed failed."""
    table = []
    for i, first in enumerate(per_seed[0]):
        runs = [rows[i] for rows in per_seed]
        row = {c: first.get(c, "") for c in COLUMNS}
        failed = [r for r in runs if r.get("status") != "ok"]
        row["status"] = "failed" if failed else "ok"
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


def _cell(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table_csv(table: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: _cell(row.get(c)) for c in COLUMNS})
    return buf.getvalue()


def _num(row: dict, col: str):
    v = row.get(col)
    return float(v) if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else None


def _f(v, fmt: str, empty: str = "–") -> str:
    return empty if v is None else format(v, fmt)


def _auroc_text(row: dict) -> str:
    a, lo, hi, sd = (_num(row, c) for c in ("auroc", "auroc_low", "auroc_high", "auroc_std"))
    if a is None:
        return "–"
    text = f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{a:.3f}"
    return text + (f" ± {sd:.3f}" if sd is not None else "")


def _diff_text(row: dict, prefix: str = "auroc_diff", name_baseline: bool = True) -> str:
    d, lo, hi = (_num(row, c) for c in (prefix, f"{prefix}_low", f"{prefix}_high"))
    if d is None:
        return "–"
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" + (f" vs {row['baseline']}" if name_baseline else "")


def deploy_latency(row: dict):
    """The latency of the row's deployable form: LiteRT for a converted file, else Keras."""
    if is_quantized(row.get("tflite_format")) or _num(row, "keras_latency_us_median") is None:
        return _num(row, "litert_latency_us_median")
    return _num(row, "keras_latency_us_median")


def _grid_text(grid: dict | None) -> str:
    if not grid:
        return ""
    text = f"; {grid['jobs']} jobs on the {grid['executor']} executor"
    if grid["executor"] != "local":
        text += f" ({grid['workers'] or 'all'} at a time)"
    if grid.get("resumed"):
        text += f", {grid['resumed']} of them finished by an earlier, interrupted run"
    if grid.get("job_seconds"):
        text += (f"; grid {grid['grid_seconds'] / 60:.1f} min for {grid['job_seconds'] / 60:.1f} min of jobs "
                 f"(wall / sum of jobs {grid['grid_seconds'] / grid['job_seconds']:.2f})")
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
            lines.append(f"| {row['model']} | {row['method']} | FAILED: {row['error']} | | | | |")
            continue
        file_bytes = _num(row, "tflite_bytes") if is_quantized(row.get("tflite_format")) else None
        file_bytes = file_bytes or _num(row, "keras_bytes") or _num(row, "deploy_bytes")
        train = None if is_quantized(row.get("tflite_format")) else _num(row, "train_seconds")
        lines.append(
            f"| {row['model']} | {row['method']} | {_f(_num(row, 'params'), ',.0f')} | "
            f"{_f(None if file_bytes is None else file_bytes / 1000, ',.1f')} | {_f(deploy_latency(row), ',.0f')} | "
            f"{_f(train, ',.1f', 'n/a')} | {_auroc_text(row)} |"
        )
    lines += deployable_markdown(table)
    lines += [
        "",
        "## All columns",
        "",
        "| row | params (non-zero) | .keras B | .tflite B (format) | gzip B | Keras µs med / p95 | LiteRT µs med / p95 "
        "| train s (× baseline) | AUPRC | Brier | ΔAUROC [95 % CI] | ΔAUROC vs LR | max abs vs Keras | n test |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for row in table:
        if row["status"] != "ok":
            lines.append(f"| {row['row']} | FAILED: {row['error']} |||||||||||||")
            continue
        nz = _num(row, "nonzero_params")
        params = _f(_num(row, "params"), ",.0f") + (f" ({nz:,.0f})" if nz is not None else "")
        tfl = _num(row, "tflite_bytes")
        tfl_fmt = f" ({row['tflite_format']})" if tfl is not None else ""
        ratio = _num(row, "train_ratio")
        ratio_text = f" ({ratio:.2f}×)" if ratio is not None else ""
        lines.append(
            f"| {row['row']} | {params} | {_f(_num(row, 'keras_bytes'), ',.0f')} | "
            f"{_f(tfl, ',.0f')}{tfl_fmt} | "
            f"{_f(_num(row, 'tflite_gzip_bytes'), ',.0f')} | "
            f"{_f(_num(row, 'keras_latency_us_median'), ',.0f')} / {_f(_num(row, 'keras_latency_us_p95'), ',.0f')} | "
            f"{_f(_num(row, 'litert_latency_us_median'), ',.0f')} / {_f(_num(row, 'litert_latency_us_p95'), ',.0f')} | "
            f"{_f(_num(row, 'train_seconds'), ',.1f')}{ratio_text} | "
            f"{_f(_num(row, 'auprc'), '.3f')} | {_f(_num(row, 'brier'), '.4f')} | {_diff_text(row)} | "
            f"{_diff_text(row, 'auroc_diff_lr', name_baseline=False)} | "
            f"{_f(_num(row, 'parity_max_abs'), '.1e')} | {_f(_num(row, 'n_test'), ',.0f')} |"
        )
    return "\n".join(lines) + "\n"


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
        if row["status"] != "ok" or _num(row, "tflite_bytes") is None:
            continue
        arena = _num(row, "tflm_arena_bytes")
        arena_text = f"{arena:,.0f}" if arena is not None else (row.get("tflm_note") or "–")
        lines.append(
            f"| {row['row']} | {row['tflite_format']} | {row.get('route') or '–'} | {_f(_num(row, 'tflite_bytes'), ',.0f')} | "
            f"{_f(_num(row, 'file_ratio'), '.2f')} | {_f(_num(row, 'litert_latency_us_median'), ',.0f')} | "
            f"{_f(_num(row, 'latency_ratio'), '.2f')} | {_f(_num(row, 'litert_batch_us'), ',.0f')} | {arena_text} | "
            f"{_f(_num(row, 'p_ties'), ',.0f')} | {_f(_num(row, 'parity_max_abs'), '.1e')} | {_auroc_text(row)} |"
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
