"""condense compare: passes on identical tables and timing-only changes, fails on regressions."""

from __future__ import annotations

import csv

import pytest

from condense.bench.table import COLUMNS
from condense.cli import main
from condense.bench.compare import compare_tables
from condense.bench.table import read_table


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


@pytest.mark.parametrize("cell", ["", "nan", "NaN", "inf", "-inf"])
def test_a_row_that_ran_without_a_finite_auroc_fails_naming_it(base, tmp_path, cell, capsys):
    new = _write(tmp_path / "new.csv", [_row("lstm", auroc=cell), _row("dnn", params="60929", auroc="0.82")])
    result = compare_tables(base, new)
    assert [f for f in result.failures if f.startswith("row 'lstm': the new table has") and "cannot be judged" in f]
    assert main(["compare", str(base), str(new)]) == 1
    assert not compare_tables(new, base).ok  # the same hole on the base side
    capsys.readouterr()


def test_text_in_the_auroc_column_or_no_auroc_column_never_passes(base, tmp_path, capsys):
    text = _write(tmp_path / "text.csv", [_row("lstm", auroc="high"), _row("dnn", params="60929", auroc="0.82")])
    assert main(["compare", str(base), str(text)]) == 2
    assert "text.csv:2: row 'lstm', column 'auroc': 'high' is not a number" in capsys.readouterr().err
    no_column = tmp_path / "no-auroc.csv"
    columns = [c for c in COLUMNS if c != "auroc"]
    with open(no_column, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([_row("lstm"), _row("dnn", params="60929", auroc="0.82")])
    result = compare_tables(base, no_column)
    assert len([f for f in result.failures if "no AUROC (empty, nan or no auroc column)" in f]) == 2


def test_a_table_without_rows_cannot_pass(base, tmp_path):
    header_only = _write(tmp_path / "empty.csv", [])
    as_base = compare_tables(header_only, base)
    assert not as_base.ok and as_base.failures[0] == f"{header_only}: the base table has no rows: nothing to judge"
    as_new = compare_tables(base, header_only)
    assert not as_new.ok and f"{header_only}: the new table has no rows: nothing to judge" in as_new.failures


def test_a_table_without_a_status_column_counts_its_rows_as_run(tmp_path):
    base = tmp_path / "base.csv"
    base.write_text("row,auroc\nA,0.8\n")
    failed = tmp_path / "failed.csv"
    failed.write_text("row,auroc,status,error\nA,,failed,boom\n")
    assert any("row 'A' failed in the new table: boom" in f for f in compare_tables(base, failed).failures)
    empty = tmp_path / "empty.csv"
    empty.write_text("row,auroc\nA,\n")
    assert any("the new table has no AUROC" in f for f in compare_tables(base, empty).failures)


def test_a_failed_row_on_both_sides_is_not_judged_on_auroc(base, tmp_path):
    both = [_row("lstm", status="failed", error="x", auroc=""), _row("dnn", params="60929", auroc="0.82")]
    a, b = _write(tmp_path / "a.csv", both), _write(tmp_path / "b.csv", both)
    assert compare_tables(a, b).ok


def test_different_run_settings_are_named(base, tmp_path):
    for name, epochs, seeds in (("one", 2, [0]), ("two", 3, [0, 1])):
        folder = tmp_path / name
        folder.mkdir()
        _write(folder / "table.csv", [_row("lstm"), _row("dnn", params="60929", auroc="0.82")])
        (folder / "manifest.json").write_text(json.dumps({
            "profile": {"name": "smoke", "epochs": epochs}, "seeds": seeds,
            "data": {"spec": "synthetic", "fingerprint": name * 8}, "library_versions": {"keras": "3.15.1"}}))
    report = compare_tables(tmp_path / "one" / "table.csv", tmp_path / "two" / "table.csv").report()
    assert "notice: the runs' settings differ: epochs 2 vs 3" in report
    assert "notice: the runs used different seeds: [0] vs [0, 1]" in report
    assert "notice: the runs read different data (synthetic, fingerprint oneoneoneone vs synthetic, twotwotwotwo)" \
        in report
    assert "library versions" not in report
    same = compare_tables(tmp_path / "one" / "table.csv", tmp_path / "one" / "table.csv").report()
    assert "notice" not in same


def test_cli_exit_codes(base, tmp_path, capsys):
    assert main(["compare", str(base), str(base)]) == 0
    new = _write(tmp_path / "new.csv", [_row("lstm", params="1"), _row("dnn", params="60929", auroc="0.82")])
    assert main(["compare", str(base), str(new)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["compare", str(base), str(tmp_path / "missing.csv")]) == 2


# --------------------------------------------------------------------------- paired test on stored predictions

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402

from condense.commands.compare import add_compare_arguments, run_compare  # noqa: E402
from condense.bench.predictions import (  # noqa: E402
    PREDICTIONS_FILE, predictions_beside, read_predictions, write_predictions,
)
from condense.evaluate.bootstrap import holm_adjust, paired_bootstrap_diff
from condense.evaluate.metrics import auroc  # noqa: E402

N = 800
_RNG = np.random.default_rng(7)
Y = (_RNG.random(N) < 0.2).astype(np.int8)
IDS = np.array([f"{10000 + i}_episode1_timeseries.csv" for i in range(N)])


def _model(strength, seed):
    """Scores of a model separating the classes by ``strength`` (1.5: AUROC about 0.85)."""
    return Y * strength + np.random.default_rng(seed).normal(size=N)


GOOD = _model(1.5, 1)
OTHER_GOOD = _model(1.5, 2)


def _auroc(y, p):
    if p is None:
        return 0.85
    finite = np.isfinite(p)
    return auroc(y[finite], p[finite])


def _run(folder, scores, *, ids=IDS, y=Y, table_rows=None, manifest=None):
    """A benchmark folder: table.csv (AUROC from the seed-0 scores) and predictions.npz."""
    folder.mkdir(parents=True, exist_ok=True)
    if table_rows is None:
        names = list(dict.fromkeys(row for row, _ in scores))
        table_rows = [_row(name, auroc=f"{_auroc(y, scores.get((name, 0))):.6f}") for name in names]
    _write(folder / "table.csv", table_rows)
    if scores is not None:
        write_predictions(folder / PREDICTIONS_FILE, ids, y, scores)
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "table.csv"


def test_identical_rankings_pass_with_a_zero_difference(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD, ("dnn", 0): OTHER_GOOD})
    tiny = GOOD + 1e-9 * np.random.default_rng(3).normal(size=N)
    assert np.array_equal(np.argsort(tiny), np.argsort(GOOD)), "the perturbation must change no ranking"
    new = _run(tmp_path / "new", {("lstm", 0): tiny, ("dnn", 0): OTHER_GOOD})
    result = compare_tables(base, new)
    assert result.ok, result.failures
    lstm = next(r for r in result.rows if r.row == "lstm")
    assert lstm.paired.diff == 0.0 and lstm.paired.low == lstm.paired.high == 0.0 and lstm.paired.p_value == 1.0
    assert lstm.paired.patients == N and lstm.paired.seeds == "1 seed"
    assert "No row changed" in result.markdown()
    assert "no stored predictions" not in result.report()


def test_slightly_different_scores_pass(tmp_path):
    moved = GOOD.copy()
    pick = np.random.default_rng(4).choice(N, size=15, replace=False)
    moved[pick] += np.random.default_rng(5).normal(size=15) * 0.3  # a few patients move a little
    base = _run(tmp_path / "base", {("lstm", 0): GOOD})
    new = _run(tmp_path / "new", {("lstm", 0): moved})
    result = compare_tables(base, new)
    assert result.ok, result.failures
    paired = result.rows[0].paired
    assert paired.diff != 0.0 and abs(paired.diff) < 0.005 and paired.p_value >= 0.05


def test_a_worse_model_fails_with_the_paired_difference_and_its_interval(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD, ("dnn", 0): OTHER_GOOD})
    new = _run(tmp_path / "new", {("lstm", 0): _model(0.2, 9), ("dnn", 0): OTHER_GOOD})
    result = compare_tables(base, new)
    assert not result.ok
    [failure] = result.failures
    # two paired rows (the unchanged 'dnn' counts): Holm doubles the smallest p-value
    pattern = (r"row 'lstm': AUROC 0\.\d{4} -> 0\.\d{4}, paired difference -0\.\d{4} \[-0\.\d{4}, -0\.\d{4}\] "
               r"\(95 % two-sided; one-sided p=0\.0005, Holm-adjusted p=0\.0010 < 0\.05, 800 patients, 1 seed\): "
               r"significant drop")
    assert re.fullmatch(pattern, failure), failure
    [plain] = compare_tables(base, new, correction="none").failures
    assert re.fullmatch(pattern.replace(r", Holm-adjusted p=0\.0010", ""), plain), plain
    assert f"FAIL: {failure}" in result.report()
    assert "compare: FAIL (1 problem(s))" in result.report()


def test_one_seed_matches_the_metrics_paired_bootstrap(tmp_path):
    other = _model(1.4, 102)
    result = compare_tables(_run(tmp_path / "base", {("lstm", 0): GOOD}),
                            _run(tmp_path / "new", {("lstm", 0): other}), n_resamples=500, seed=3)
    reference = paired_bootstrap_diff(Y, GOOD, other, n_resamples=500, seed=3)
    paired = result.rows[0].paired
    assert paired.diff == pytest.approx(reference["diff"], abs=1e-12)
    assert (paired.low, paired.high) == pytest.approx((reference["low"], reference["high"]), abs=1e-12)


def test_a_small_insignificant_drop_passes_unless_max_drop(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD})
    new = _run(tmp_path / "new", {("lstm", 0): _model(1.4, 102)})  # another model of about the same quality
    result = compare_tables(base, new)
    paired = result.rows[0].paired
    # a drop the fixed tolerance (0.01) would fail, but well within the noise of 800 patients
    assert -0.03 < paired.diff < -0.01 and paired.p_value > 0.1 and paired.low < 0 < paired.high
    assert result.ok, result.failures
    assert compare_tables(base, new, auroc_tolerance=0.0).ok  # the tolerance is only the fallback
    strict = compare_tables(base, new, max_drop=0.01)
    [failure] = strict.failures
    assert failure.endswith("): drop beyond max_drop 0.01") and f"p={paired.p_value:.4f} >= 0.05" in failure
    assert compare_tables(base, new, max_drop=0.05).ok


def test_the_test_is_one_sided(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD})
    new = _run(tmp_path / "new", {("lstm", 0): _model(1.4, 235)})
    result = compare_tables(base, new)
    paired = result.rows[0].paired
    # the 95 % two-sided interval holds 0, yet fewer than 5 % of the resampled differences are >= 0
    assert paired.low < 0 < paired.high and 0.025 < paired.p_value < 0.05
    assert not result.ok and result.failures[0].endswith("significant drop")
    assert compare_tables(base, new, alpha=0.025).ok


def test_no_predictions_fall_back_to_the_tolerance_and_say_so_once(base, tmp_path):
    drop = _write(tmp_path / "drop.csv", [_row("lstm", auroc="0.8300"), _row("dnn", params="60929", auroc="0.82")])
    result = compare_tables(base, drop)
    assert any("AUROC dropped 0.8500 -> 0.8300" in f for f in result.failures)
    report = result.report()
    assert report.count("note: no stored predictions beside") == 1
    assert f"({PREDICTIONS_FILE}); AUROC compared with the fixed tolerance 0.01 for all rows" in report
    assert result.markdown().count("no stored predictions beside") == 1
    # predictions beside only one table: the note names the other one
    with_predictions = _run(tmp_path / "run", {("lstm", 0): GOOD, ("dnn", 0): OTHER_GOOD})
    one_sided = compare_tables(with_predictions, drop).report()
    assert f"no stored predictions beside {drop} ({PREDICTIONS_FILE})" in one_sided
    assert str(with_predictions) not in one_sided.split("note:")[1]


def test_different_patients_fall_back_with_their_notice(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD}, table_rows=[_row("lstm", auroc="0.85")])
    other_ids = IDS.copy()
    other_ids[0] = "other_patient.csv"
    new = _run(tmp_path / "new", {("lstm", 0): GOOD}, ids=other_ids, table_rows=[_row("lstm", auroc="0.83")])
    result = compare_tables(base, new)
    assert result.rows[0].paired is None
    assert "note: the two runs scored different patients (ids differ" in result.report()
    assert any("AUROC dropped 0.8500 -> 0.8300 (-0.0200, tolerance 0.01)" in f for f in result.failures)
    relabelled = Y.copy()
    relabelled[:3] = 1 - relabelled[:3]
    new_y = _run(tmp_path / "new_y", {("lstm", 0): GOOD}, y=relabelled, table_rows=[_row("lstm", auroc="0.85")])
    assert "different patients (labels differ on 3 record(s)" in compare_tables(base, new_y).report()


def test_a_row_without_stored_scores_falls_back_alone(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD},
                table_rows=[_row("lstm", auroc="0.85"), _row("saps", auroc="0.70")])
    new = _run(tmp_path / "new", {("lstm", 0): GOOD},
               table_rows=[_row("lstm", auroc="0.85"), _row("saps", auroc="0.65")])
    result = compare_tables(base, new)
    assert result.rows[0].paired is not None and result.rows[1].paired is None
    assert "note: row(s) 'saps': no stored predictions in the base and new run; their AUROC compared with the " \
           "fixed tolerance 0.01" in result.report()
    assert [f for f in result.failures if "row 'saps': AUROC dropped 0.7000 -> 0.6500" in f]


def test_records_without_a_score_are_left_out(tmp_path):
    partial = GOOD.copy()
    partial[::4] = np.nan  # a reference score covering three records in four
    base = _run(tmp_path / "base", {("saps", 0): partial})
    new = _run(tmp_path / "new", {("saps", 0): partial})
    paired = compare_tables(base, new).rows[0].paired
    assert paired.patients == N - N // 4
    assert paired.base == pytest.approx(auroc(Y[~np.isnan(partial)], partial[~np.isnan(partial)]))


def _three_seeds(strength_of_seed2=None, noise=None):
    base = {("lstm", s): _model(1.5, 10 + s) for s in range(3)}
    new = dict(base)
    if strength_of_seed2 is not None:
        new[("lstm", 2)] = _model(strength_of_seed2, 99)
    if noise is not None:
        new = {k: v + np.random.default_rng(50 + k[1]).normal(size=N) * noise for k, v in base.items()}
    return base, new


def test_the_spread_between_seeds_enters_the_test(tmp_path):
    base, one_bad = _three_seeds(strength_of_seed2=0.7)  # seeds 0 and 1 unchanged, seed 2 much worse
    _, every = _three_seeds(noise=0.5)  # every seed a little worse
    base_csv = _run(tmp_path / "base", base)
    one = compare_tables(base_csv, _run(tmp_path / "one", one_bad)).rows[0].paired
    even = compare_tables(base_csv, _run(tmp_path / "every", every)).rows[0].paired
    assert one.seeds == even.seeds == "3 seeds"
    # the mean drop of the one bad seed is larger, but the other seeds do not share it: not significant
    assert one.diff < even.diff < 0
    assert one.p_value > 0.1 and one.high >= 0.0
    assert even.p_value < 0.05 and even.high < 0.0
    # seed 2 alone (a 1-seed comparison) is a significant drop; the 1-seed comparison of an equal seed is
    # exactly zero; with all three seeds the interval spans both
    alone = compare_tables(_run(tmp_path / "b2", {("lstm", 2): base[("lstm", 2)]}),
                           _run(tmp_path / "n2", {("lstm", 2): one_bad[("lstm", 2)]})).rows[0].paired
    equal = compare_tables(_run(tmp_path / "b0", {("lstm", 0): base[("lstm", 0)]}),
                           _run(tmp_path / "n0", {("lstm", 0): one_bad[("lstm", 0)]})).rows[0].paired
    assert alone.p_value < 0.05 and equal.high - equal.low == 0.0
    assert one.low < 0.5 * alone.diff and one.high - one.low > 3 * (even.high - even.low)


def test_seeds_that_do_not_overlap_are_resampled_per_side(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): _model(1.5, 10), ("lstm", 1): _model(1.5, 11)})
    new = _run(tmp_path / "new", {("lstm", 5): _model(1.5, 12)}, table_rows=[_row("lstm")])
    paired = compare_tables(base, new).rows[0].paired
    assert paired.seeds == "seeds [0, 1] vs [5], unpaired"
    partly = _run(tmp_path / "partly", {("lstm", 1): _model(1.5, 11), ("lstm", 2): _model(1.5, 12)},
                  table_rows=[_row("lstm")])
    text = compare_tables(base, partly).rows[0].paired.seeds
    assert text == "1 seed paired; base seed(s) [0] and new seed(s) [2] left out"


def test_markdown_lists_only_changed_rows(tmp_path):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD, ("dnn", 0): OTHER_GOOD, ("gru", 0): _model(1.2, 3)},
                table_rows=[_row("lstm"), _row("dnn"), _row("gru")])
    new = _run(tmp_path / "new", {("lstm", 0): _model(0.2, 9), ("dnn", 0): OTHER_GOOD, ("gru", 0): _model(1.2, 3),
                                  ("hlstm", 0): GOOD},
               table_rows=[_row("lstm"), _row("dnn"), _row("gru", params="9000"), _row("hlstm")])
    result = compare_tables(base, new)
    md = result.report(fmt="markdown")
    assert md.startswith("## condense compare: FAIL (2 problem(s))")
    assert "**Rule.** A row fails when its test AUROC drops significantly" in md
    assert "| row | AUROC base | AUROC new | paired difference [95 % CI] | p (one-sided) | p (Holm) | verdict |" in md
    assert "|---|---:|---:|---|---:|---:|---|" in md
    lstm = next(r for r in result.rows if r.row == "lstm").paired
    assert f"| `lstm` | {lstm.base:.4f} | {lstm.new:.4f} | {lstm.interval_text()} | 0.0005 | 0.0015 | " \
           "**FAIL: significant drop** |" in md  # 3 paired rows
    assert "| +0.0000 [+0.0000, +0.0000] | 1.0000 | 1.0000 | **FAIL: params 8081 -> 9000** |" in md
    assert "| `hlstm` | – | 0.8500 | – | – | – | new row |" in md
    plain = compare_tables(base, new, correction="none").markdown()
    assert "| p (one-sided) | verdict |" in plain and "p (Holm)" not in plain
    assert f"| {lstm.interval_text()} | 0.0005 | **FAIL: significant drop** |" in plain
    assert "| `gru` |" in md and "**FAIL: params 8081 -> 9000**" in md
    assert "| `hlstm` | – | " in md and "new row" in md
    assert "| `dnn` |" not in md and "1 other row(s) unchanged." in md


def test_the_report_is_deterministic(tmp_path):
    base = _run(tmp_path / "base", {("lstm", s): _model(1.5, 10 + s) for s in range(3)})
    new = _run(tmp_path / "new", {("lstm", s): _model(1.4, 20 + s) for s in range(3)})
    assert compare_tables(base, new).report() == compare_tables(base, new).report()
    assert compare_tables(base, new).markdown() == compare_tables(base, new).markdown()
    assert compare_tables(base, new, seed=1).report() != compare_tables(base, new).report()


def test_machines_are_named_and_a_cpu_change_noticed(tmp_path):
    cpu_a = {"machine": {"cpu": "Intel(R) Xeon(R) Platinum 8375C", "cores": 2}}
    cpu_b = {"machine": {"cpu": "AMD EPYC 7R13", "cores": 16}}
    base = _run(tmp_path / "base", {("lstm", 0): GOOD}, manifest=cpu_a)
    same = compare_tables(base, _run(tmp_path / "same", {("lstm", 0): GOOD}, manifest=cpu_a)).report()
    assert "machine: both runs on Intel(R) Xeon(R) Platinum 8375C (2 cores)" in same and "notice" not in same
    other = compare_tables(base, _run(tmp_path / "other", {("lstm", 0): GOOD}, manifest=cpu_b))
    assert "machine: base on Intel(R) Xeon(R) Platinum 8375C (2 cores); new on AMD EPYC 7R13 (16 cores)" \
        in other.report()
    assert "notice: the runs used different CPU models" in other.report()
    assert "notice: the runs used different CPU models" in other.markdown()
    assert other.ok  # a machine change alone fails nothing
    old = _run(tmp_path / "old", {("lstm", 0): GOOD}, manifest={"profile": "smoke"})  # an older manifest
    broken = _run(tmp_path / "broken", {("lstm", 0): GOOD})
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    text = compare_tables(old, broken).report()
    assert "machine: base on unknown (no machine in manifest.json); new on unknown (unreadable manifest.json" in text
    none = compare_tables(_run(tmp_path / "bare", {("lstm", 0): GOOD}), base).report()
    assert "base on unknown (no manifest.json beside it)" in none


def test_bad_arguments_use_the_one_message_shape(base):
    with pytest.raises(ValueError, match=re.escape("Argument `alpha` must be a number in (0, 0.5]; got alpha=0.7.")):
        compare_tables(base, base, alpha=0.7)
    with pytest.raises(ValueError, match=re.escape("Argument `alpha` must be a number in (0, 0.5]; got alpha=0.")):
        compare_tables(base, base, alpha=0)
    with pytest.raises(ValueError, match=re.escape("Argument `max_drop` must be a finite number >= 0; got max_")):
        compare_tables(base, base, max_drop=-0.01)
    message = "Argument `n_resamples` must be an integer >= 1; got n_resamples=0."
    with pytest.raises(ValueError, match=re.escape(message)):
        compare_tables(base, base, n_resamples=0)
    message = "Argument `correction` must be one of ('holm', 'none'); got correction='bonferroni'."
    with pytest.raises(ValueError, match=re.escape(message)):
        compare_tables(base, base, correction="bonferroni")
    with pytest.raises(ValueError, match=re.escape("Argument `correction` must be one of ('holm', 'none'); got "
                                                   "correction=None.")):
        compare_tables(base, base, correction=None)


def test_write_and_read_predictions(tmp_path):
    path = write_predictions(tmp_path / "run" / PREDICTIONS_FILE, list(IDS), Y.astype(bool),
                             {("lstm", 0): GOOD, ("lstm", 2): OTHER_GOOD, ("saps@v2", 0): np.where(Y, np.nan, 1.0)})
    pred = read_predictions(path)
    assert pred.ids.dtype.kind == "U" and pred.y.dtype == np.int8 and pred.n == N
    assert pred.rows() == ["lstm", "saps@v2"] and pred.seeds("lstm") == [0, 2] and pred.seeds("gru") == []
    assert np.array_equal(pred.score("lstm", 2), OTHER_GOOD)
    assert np.isnan(pred.score("saps@v2", 0)).sum() == int(Y.sum())
    assert predictions_beside(tmp_path / "run" / "table.csv").seeds("lstm") == [0, 2]
    assert predictions_beside(tmp_path / "table.csv") is None
    assert [p.name for p in (tmp_path / "run").iterdir()] == [PREDICTIONS_FILE]  # no temporary file left
    # a table kept under another name finds <stem>.predictions.npz first
    write_predictions(tmp_path / "run" / "smoke.predictions.npz", IDS[:3], Y[:3], {})
    assert predictions_beside(tmp_path / "run" / "smoke.csv").n == 3
    with pytest.raises(ValueError, match=r"scores 'lstm@0' must be a 1-D array of 800 values"):
        write_predictions(tmp_path / "bad.npz", IDS, Y, {("lstm", 0): GOOD[:-1]})
    with pytest.raises(ValueError, match=r"y must be a 1-D array of 800 labels"):
        write_predictions(tmp_path / "bad.npz", IDS, Y[:-1], {})
    with pytest.raises(ValueError, match=r"seed of row 'lstm' must be a whole number >= 0"):
        write_predictions(tmp_path / "bad.npz", IDS, Y, {("lstm", -1): GOOD})
    assert not (tmp_path / "bad.npz").exists()


def test_a_bad_predictions_file_names_the_file(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match=r"garbage\.npz: not a predictions file"):
        read_predictions(garbage)
    no_ids = tmp_path / "no_ids.npz"
    np.savez_compressed(no_ids, y=Y)
    with pytest.raises(ValueError, match=r"no_ids\.npz: not a predictions file: no 'ids' array"):
        read_predictions(no_ids)
    short = tmp_path / "short.npz"
    np.savez_compressed(short, ids=IDS, y=Y, **{"lstm@0": GOOD[:10]})
    with pytest.raises(ValueError, match=r"short\.npz: scores 'lstm@0' must be a 1-D array of 800 values"):
        read_predictions(short)
    bad_key = tmp_path / "bad_key.npz"
    np.savez_compressed(bad_key, ids=IDS, y=Y, lstm=GOOD)
    with pytest.raises(ValueError, match=r"bad_key\.npz: bad key 'lstm': score arrays are named '<row>@<seed>'"):
        read_predictions(bad_key)
    pickled = tmp_path / "pickled.npz"
    np.savez_compressed(pickled, ids=np.array(list(IDS), dtype=object), y=Y)
    with pytest.raises(ValueError, match=r"pickled\.npz: not a predictions file"):
        read_predictions(pickled)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_predictions(tmp_path / "missing.npz")
    # compare reports a bad file beside a table instead of silently falling back
    table = _write(tmp_path / "table.csv", [_row("lstm")])
    (tmp_path / PREDICTIONS_FILE).write_bytes(b"junk")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / PREDICTIONS_FILE}: not a predictions file")):
        compare_tables(table, table)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="condense compare")
    add_compare_arguments(parser)
    return parser.parse_args(argv)


def test_run_compare_prints_the_report_and_returns_the_exit_code(tmp_path, capsys):
    base = _run(tmp_path / "base", {("lstm", 0): GOOD})
    worse = _run(tmp_path / "worse", {("lstm", 0): _model(0.2, 9)})
    args = _parse([str(base), str(base)])
    assert (args.alpha, args.max_drop, args.auroc_tolerance, args.n_resamples, args.fmt) == (0.05, None, 0.01,
                                                                                                2000, "text")
    assert args.correction == "holm" and _parse([str(base), str(base), "--correction", "none"]).correction == "none"
    with pytest.raises(SystemExit):
        _parse([str(base), str(base), "--correction", "bonferroni"])
    assert run_compare(_parse([str(base), str(worse), "--correction", "none"])) == 1
    out = capsys.readouterr().out
    assert "one-sided p=0.0005 < 0.05" in out and "Holm" not in out
    assert run_compare(args) == 0
    assert capsys.readouterr().out.rstrip().endswith("compare: PASS")
    assert run_compare(_parse([str(base), str(worse), "--format", "markdown", "--resamples", "300"])) == 1
    out = capsys.readouterr().out
    assert out.startswith("## condense compare: FAIL") and "(300 resamples of patients)" in out
    assert run_compare(_parse([str(base), str(worse), "--alpha", "0.5", "--max-drop", "0.9",
                               "--auroc-tolerance", "0.5", "--bytes-tolerance", "0", "--latency-tolerance", "1"])) == 1


# --------------------------------------------------------------------------- Holm-Bonferroni across the rows


def test_holm_adjust_matches_a_hand_computation():
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1 = 0.025, 0.04, 0.09, 0.08, 0.5;
    # the running maximum lifts the fourth to 0.09
    assert holm_adjust([0.01, 0.04, 0.03, 0.005, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])
    assert holm_adjust([0.6, 0.7]) == [1.0, 1.0]  # 2 * 0.6 clipped at 1, and monotone after it
    assert holm_adjust([0.4, 0.9]) == pytest.approx([0.8, 0.9])
    assert holm_adjust([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])  # ties: equal values
    assert holm_adjust([0.03]) == [0.03] and holm_adjust([]) == []
    assert holm_adjust(np.array([0.01, 1.0])) == pytest.approx([0.02, 1.0])
    with pytest.raises(ValueError, match=re.escape("Argument `pvalues` must hold numbers in [0, 1]; got 1.5 at "
                                                   "position 1.")):
        holm_adjust([0.1, 1.5])
    with pytest.raises(ValueError, match="got nan at position 0"):
        holm_adjust([float("nan")])


ROWS = 40


def _nudged_tables(tmp_path, extra=None):
    """40 rows whose base and new models share their signal and differ only by small independent noise
    (as after another TensorFlow version): no row is worse, yet some raw p-values fall below 0.05."""
    base, new = {}, {}
    for i in range(ROWS):
        shared = _model(1.5, 1000 + i)
        base[(f"m{i:02d}", 0)] = shared + 0.3 * np.random.default_rng([0, i, 0]).normal(size=N)
        new[(f"m{i:02d}", 0)] = shared + 0.3 * np.random.default_rng([0, i, 1]).normal(size=N)
    for key, (b, n) in (extra or {}).items():
        base[(key, 0)], new[(key, 0)] = b, n
    return _run(tmp_path / "base", base), _run(tmp_path / "new", new)


def test_holm_keeps_chance_drops_across_many_rows_from_failing(tmp_path):
    base, new = _nudged_tables(tmp_path)
    plain = compare_tables(base, new, correction="none")
    raw = [r.paired.p_value for r in plain.rows]
    # the construction: several rows below 0.05 by chance, none small enough to survive 40 tests
    assert len(raw) == ROWS and sum(p < 0.05 for p in raw) == 4
    assert 0.0015 < min(raw) < 0.05 / 10 and min(holm_adjust(raw)) > 0.05
    assert [r.row for r in plain.rows if r.failures] == [r.row for r in plain.rows if r.paired.p_value < 0.05]
    assert len(plain.failures) == 4 and all(f.endswith("significant drop") for f in plain.failures)
    assert "Holm" not in plain.report() and "with no correction across the 40 paired rows" in plain.rule

    holm = compare_tables(base, new)  # the default
    assert holm.ok, holm.failures
    assert [r.paired.p_value for r in holm.rows] == raw  # the same bootstrap, only the decision differs
    assert [r.paired.p_adjusted for r in holm.rows] == pytest.approx(holm_adjust(raw))
    assert "Holm-adjusted across the 40 paired rows (family-wise error rate 0.05), is below 0.05" in holm.rule
    text = holm.report()
    assert f"rule: {holm.rule}" in text and re.search(r"\bp\s+p Holm\b", text)
    smallest = min(holm.rows, key=lambda r: r.paired.p_value)
    line = next(line for line in text.splitlines() if line.startswith(smallest.row + " "))
    assert f" {smallest.paired.p_value:.4f}  {smallest.paired.p_adjusted:.4f} " in line  # both right-aligned
    assert "p (Holm)" in holm.markdown()


def test_a_genuinely_worse_row_still_fails_under_holm(tmp_path):
    base, new = _nudged_tables(tmp_path, extra={"worse": (GOOD, _model(0.2, 9))})
    result = compare_tables(base, new)
    [failure] = result.failures  # the chance drops of the 40 nudged rows pass
    worse = next(r for r in result.rows if r.row == "worse").paired
    assert worse.p_value == pytest.approx(1 / 2001) and worse.p_adjusted == pytest.approx(41 / 2001)
    assert failure.startswith("row 'worse': AUROC ")
    assert "one-sided p=0.0005, Holm-adjusted p=0.0205 < 0.05, 800 patients, 1 seed): significant drop" in failure
    assert len(compare_tables(base, new, correction="none").failures) == 5


def test_max_drop_is_not_corrected_and_failures_keep_their_order(tmp_path):
    base, new = _nudged_tables(tmp_path)
    plain = compare_tables(base, new, correction="none")
    biggest = min(plain.rows, key=lambda r: r.paired.diff)
    max_drop = -biggest.paired.diff * 0.99  # only the largest observed drop exceeds it
    result = compare_tables(base, new, max_drop=max_drop)
    [failure] = result.failures
    row = next(r for r in result.rows if r.row == biggest.row)
    assert failure.startswith(f"row {biggest.row!r}") and failure.endswith(f"drop beyond max_drop {max_drop:g}")
    assert f"Holm-adjusted p={row.paired.p_adjusted:.4f} >= 0.05" in failure
    # a row's AUROC failure stays between its exact-field failures and its latency failures
    rows = [_row("lstm", params="1", litert_latency_us_median="700"), _row("dnn")]
    b = _run(tmp_path / "b", {("lstm", 0): GOOD, ("dnn", 0): OTHER_GOOD}, table_rows=[_row("lstm"), _row("dnn")])
    n = _run(tmp_path / "n", {("lstm", 0): _model(0.2, 9), ("dnn", 0): OTHER_GOOD}, table_rows=rows)
    failures = compare_tables(b, n, latency_tolerance=0.5).failures
    assert [f.split(": ")[1].split(" ")[0] for f in failures] == ["params", "AUROC", "litert_latency_us_median"]
    assert next(r for r in compare_tables(b, n, latency_tolerance=0.5).rows if r.row == "lstm").reasons == [
        "params 8081 -> 1", "significant drop", "litert_latency_us_median grew 10.00x"]


def test_unchanged_rows_count_in_the_correction(tmp_path):
    # one worse row among two bit-identical ones: m = 3, so with 50 resamples the smallest adjusted
    # p-value is 3 / 51 > 0.05 and nothing can fail; the report says so and how many resamples it needs
    scores = {("same1", 0): OTHER_GOOD, ("same2", 0): _model(1.2, 3)}
    base = _run(tmp_path / "base", {("worse", 0): GOOD, **scores})
    new = _run(tmp_path / "new", {("worse", 0): _model(0.2, 9), **scores})
    result = compare_tables(base, new, n_resamples=50)
    worse = next(r for r in result.rows if r.row == "worse").paired
    assert worse.p_value == pytest.approx(1 / 51) and worse.p_adjusted == pytest.approx(3 / 51)
    assert [r.paired.p_adjusted for r in result.rows if r.row != "worse"] == [1.0, 1.0]
    assert result.ok
    note = ("note: with 50 resamples and the Holm correction over 3 paired rows, the smallest possible adjusted "
            "p-value is 0.0588, not below alpha 0.05: no AUROC drop can be significant (only --max-drop can fail "
            "a row); use at least 60 resamples")
    assert note in result.report() and note in result.markdown()
    assert not compare_tables(base, new, n_resamples=50, correction="none").ok
    assert "smallest possible" not in compare_tables(base, new, n_resamples=60).report()
    assert not compare_tables(base, new, n_resamples=60).ok
