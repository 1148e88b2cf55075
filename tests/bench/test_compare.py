"""condense compare: passes on identical tables and timing-only changes, fails on regressions."""

from __future__ import annotations

import csv

import pytest

from condense.bench.report import COLUMNS
from condense.cli import main
from condense.bench.compare import compare_tables, read_table


def _row(row, **values):
    base = {c: "" for c in COLUMNS}
    base.update(row=row, model="LSTM", method="m", family="lstm", status="ok", params="8081", keras_bytes="130000",
                tflite_bytes="60000", auroc="0.8500", keras_latency_us_median="900", litert_latency_us_median="70",
                train_seconds="60")
    base.update({k: str(v) for k, v in values.items()})
    return base


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def base(tmp_path):
    return _write(tmp_path / "base.csv", [_row("lstm"), _row("dnn", params="60929", auroc="0.82")])


def test_identical_tables_pass(base):
    result = compare_tables(base, base)
    assert result.ok, result.failures
    assert "compare: PASS" in result.report()


def test_changed_parameter_count_fails(base, tmp_path):
    new = _write(tmp_path / "new.csv", [_row("lstm", params="8000"), _row("dnn", params="60929", auroc="0.82")])
    result = compare_tables(base, new)
    assert not result.ok
    assert any("params changed 8081 -> 8000" in f for f in result.failures)


def test_tflite_bytes_fail_beyond_the_relative_tolerance(base, tmp_path):
    moved = _write(tmp_path / "moved.csv", [_row("lstm", tflite_bytes="61000"), _row("dnn", params="60929", auroc="0.82")])
    assert any("tflite_bytes changed 60000 -> 61000" in f for f in compare_tables(base, moved).failures)
    names = _write(tmp_path / "names.csv", [_row("lstm", tflite_bytes="60200"), _row("dnn", params="60929", auroc="0.82")])
    assert compare_tables(base, names).ok  # within 0.5 %: converter-generated tensor names
    assert not compare_tables(base, names, bytes_tolerance=0.0).ok


def test_changed_keras_bytes_fails_exactly(base, tmp_path):
    new = _write(tmp_path / "new.csv", [_row("lstm", keras_bytes="130001"), _row("dnn", params="60929", auroc="0.82")])
    assert any("keras_bytes changed 130000 -> 130001" in f for f in compare_tables(base, new).failures)


def test_large_auroc_drop_fails_small_one_passes(base, tmp_path):
    drop = _write(tmp_path / "drop.csv", [_row("lstm", auroc="0.8300"), _row("dnn", params="60929", auroc="0.82")])
    result = compare_tables(base, drop)
    assert [f for f in result.failures if "AUROC dropped 0.8500 -> 0.8300" in f]
    small = _write(tmp_path / "small.csv", [_row("lstm", auroc="0.8450"), _row("dnn", params="60929", auroc="0.82")])
    assert compare_tables(base, small).ok
    assert not compare_tables(base, small, auroc_tolerance=0.001).ok


def test_timing_only_change_passes_unless_latency_tolerance(base, tmp_path):
    slow = _write(tmp_path / "slow.csv", [
        _row("lstm", keras_latency_us_median="2700", litert_latency_us_median="210", train_seconds="180"),
        _row("dnn", params="60929", auroc="0.82"),
    ])
    result = compare_tables(base, slow)
    assert result.ok
    assert "3.00x" in result.report()
    strict = compare_tables(base, slow, latency_tolerance=0.5)
    assert any("litert_latency_us_median grew 3.00x" in f for f in strict.failures)


def test_missing_and_failed_rows_fail(base, tmp_path):
    missing = _write(tmp_path / "missing.csv", [_row("lstm")])
    assert any("'dnn' is in the base table but missing" in f for f in compare_tables(base, missing).failures)
    failed = _write(tmp_path / "failed.csv", [_row("lstm", status="failed", error="converter crashed", auroc=""),
                                              _row("dnn", params="60929", auroc="0.82")])
    assert any("failed in the new table: converter crashed" in f for f in compare_tables(base, failed).failures)


def test_new_row_is_reported_not_failed(base, tmp_path):
    extra = _write(tmp_path / "extra.csv", [_row("lstm"), _row("dnn", params="60929", auroc="0.82"), _row("hlstm")])
    result = compare_tables(base, extra)
    assert result.ok and "(new row)" in result.report()


def test_bad_tables_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv: not a condense benchmark table"):
        read_table(bad)
    dup = _write(tmp_path / "dup.csv", [_row("lstm"), _row("lstm")])
    with pytest.raises(ValueError, match="dup.csv:3: duplicate row id 'lstm'"):
        read_table(dup)


def test_cli_exit_codes(base, tmp_path, capsys):
    assert main(["compare", str(base), str(base)]) == 0
    new = _write(tmp_path / "new.csv", [_row("lstm", params="1"), _row("dnn", params="60929", auroc="0.82")])
    assert main(["compare", str(base), str(new)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["compare", str(base), str(tmp_path / "missing.csv")]) == 2
