"""condense.bench.table: the table's one schema, writer and parser; every row's condensation group from RowSpec."""

from __future__ import annotations

import math

import pytest

from condense.bench.profiles import get_profile
from condense.bench.rows import RowSpec, plan_rows
from condense.bench.table import COLUMNS, CONDENSATIONS, finite, format_cell, parse_cell, read_table, table_csv


def test_cells_read_back_as_written_with_one_rule_for_missing_and_infinite(tmp_path):
    row = {"row": "lstm", "method": "baseline, with a comma", "status": "ok", "params": 8081, "auroc": 0.8427123456,
           "latency_ratio": math.inf, "ece": math.nan, "auroc_std": 0.0125, "brier": None}
    path = tmp_path / "table.csv"
    path.write_text(table_csv([row]))
    back = read_table(path)["lstm"]
    assert set(back) == set(COLUMNS)
    assert back["params"] == 8081 and isinstance(back["params"], int)
    assert back["auroc"] == float(format_cell(0.8427123456)) == 0.842712
    assert back["method"] == "baseline, with a comma"
    assert back["latency_ratio"] == math.inf and finite(back["latency_ratio"]) is None  # kept, but not arithmetic
    assert back["ece"] is None and back["brier"] is None and back["auroc_diff"] is None  # nan and empty: missing
    assert back["auroc_std"] == 0.0125


@pytest.mark.parametrize("column, text, value", [
    ("auroc", "", None), ("auroc", "nan", None), ("auroc", " 0.5 ", 0.5), ("auroc", "-inf", -math.inf),
    ("params", "8081", 8081), ("params", "8081.5", 8081.5), ("status", "ok", "ok"), ("tflm_note", "1e3", "1e3"),
    ("a_future_column", "text", "text"),
])
def test_parse_cell(column, text, value):
    assert parse_cell(column, text) == value


def test_finite_is_the_one_number_rule():
    assert [finite(v) for v in (1, "2.5", "", None, "x", math.nan, math.inf, True)] == [1.0, 2.5] + [None] * 6


def test_an_older_table_without_the_new_columns_reads_them_as_missing(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("row,model,status,auroc\nlstm,LSTM,ok,0.84\n")
    row = read_table(path)["lstm"]
    assert row["auroc"] == 0.84 and row["condensation"] is None and row["form"] is None


def test_damaged_cells_are_errors_naming_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("row,status,params\nlstm,ok,8081\ndnn,ok,lots\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: row 'dnn', column 'params': 'lots' is not a number"):
        read_table(bad)
    extra = tmp_path / "extra.csv"
    extra.write_text("row,status\nlstm,ok,surplus\n")
    with pytest.raises(ValueError, match=r"extra.csv:2: row 'lstm' has more cells than the header has columns"):
        read_table(extra)


def test_every_planned_row_has_its_condensation_from_its_spec():
    rows = {s.row: s for s in plan_rows(get_profile("default"), {"saps": "SAPS-I"})}
    assert {s.condensation for s in rows.values()} == set(CONDENSATIONS)
    expected = {"lstm": "baseline", "dnn": "baseline", "lstm-prune25": "pruning", "hlstm": "hlstm",
                "hlstm-prune50": "hlstm", "hlstm-prune50-distill": "distillation", "lstm-int8": "quantization",
                "hlstm-prune50-distill-dynamic": "quantization", "lstm-int8-step": "step", "hlstm-step": "step",
                "lstm-keras3": "peer", "dnn-dynamic": "peer", "tfmot-qat-dnn": "peer", "lr": "peer", "gbm": "peer",
                "saps-i": "reference"}
    assert {name: rows[name].condensation for name in expected} == expected
    assert all(s.form == ("step" if s.condensation == "step" else "sequence") for s in rows.values())
    with pytest.raises(ValueError, match=r"row 'x': condensation must be one of .* got 'magic'"):
        RowSpec("x", "LSTM", "m", "train", "lstm", condensation="magic")
