"""The benchmark's figures: the Pareto frontier, every figure written (PNG + SVG) for failed rows,
a single row and the full default table, labels that do not overlap, repeatable files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from condense.bench import figures
from condense.bench.figures import pareto_figure, pareto_frontier, roc_figure, summary_figure, summary_rows
from condense.bench.report import write_outputs
from condense.bench.table import COLUMNS, NUMERIC, finite, read_table

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TABLE = REPO / "benchmarks" / "latest" / "table.csv"


def _read(path: Path) -> list[dict]:
    return list(read_table(path).values())


@pytest.fixture(scope="module")
def default_table() -> list[dict]:
    return _read(DEFAULT_TABLE)


def _failed(table: list[dict], rows: set[str]) -> list[dict]:
    """The table with ``rows`` failed as :func:`condense.bench.report.aggregate` writes them: no numbers."""
    out = []
    for r in table:
        r = dict(r)
        if r["row"] in rows:
            r.update({c: "" for c in NUMERIC}, status="failed", error="RuntimeError: injected", tflite_format="")
        out.append(r)
    return out


TABLES = {
    "failed rows": lambda t: _failed(t, {"lstm", "lr", "hlstm-prune50-int8", "tfmot-qat-dnn"}),
    "single row": lambda t: [t[0]],
    "single condensed row, baseline absent": lambda t: [r for r in t if r["row"] == "lstm-int8"],
    "every row failed": lambda t: _failed(t, {r["row"] for r in t}),
    "full default table": lambda t: t,
}


def _curves(table: list[dict]) -> dict:
    """Synthetic (y, score) per row whose AUROC is about the table's (the table stores no predictions)."""
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.15).astype(int)
    curves = {}
    for r in table:
        if r["status"] == "ok" and finite(r["auroc"]) is not None:
            shift = 2.0 * (finite(r["auroc"]) - 0.5) * 2.5
            curves[r["row"]] = (y, rng.normal(0.0, 1.0, len(y)) + shift * y)
    return curves


# -- the frontier --------------------------------------------------------------------------------
def test_pareto_frontier_on_a_hand_made_table():
    points = [
        (10, 0.80),      # 0 frontier
        (20, 0.85),      # 1 frontier
        (20, 0.83),      # 2 same cost, worse
        (30, 0.85),      # 3 same AUROC, costs more
        (40, 0.90),      # 4 frontier
        (40, 0.90),      # 5 exactly equal to 4: neither dominates, both kept
        None,            # 6 skipped
        (5, math.nan),   # 7 skipped
        ("", 0.99),      # 8 skipped (an empty CSV cell)
        ("50", "0.95"),  # 9 frontier (CSV strings)
        (5, 0.70),       # 10 frontier: the cheapest
        (60, 0.95),      # 11 same AUROC as 9, costs more
        (45, 0.89),      # 12 dominated by 4
        (math.inf, 1.0),  # 13 skipped
    ]
    assert pareto_frontier(points) == [10, 0, 1, 4, 5, 9]
    assert pareto_frontier([]) == []
    assert pareto_frontier([None, (1, None)]) == []
    assert pareto_frontier([(3, 0.7)]) == [0]


def _dominance_frontier(points) -> set[int]:
    """The frontier by its definition, pair by pair (what pareto_frontier computes in one sweep)."""
    valid = {i: p for i, p in enumerate(points) if None not in p}
    return {i for i, (c, v) in valid.items()
            if not any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for c2, v2 in valid.values())}


def test_the_frontier_sweep_agrees_with_the_definition_on_random_points_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        points = [(float(c), float(v)) for c, v in zip(rng.integers(1, 8, 30), rng.integers(0, 6, 30) / 10)]
        assert set(pareto_frontier(points)) == _dominance_frontier(points)


def test_the_frontier_of_the_default_table_by_definition(default_table):
    rows = [r for r in default_table if r["status"] == "ok"]
    for cost in (figures.file_bytes, figures.litert_latency):
        points = [(cost(r), finite(r["auroc"])) for r in rows]
        front = pareto_frontier(points)
        assert set(front) == _dominance_frontier(points) and front
        assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)
        aurocs = [points[i][1] for i in front]
        assert aurocs == sorted(aurocs), "along the frontier, more bytes / time buys more AUROC"


# -- every figure, every kind of table -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", TABLES)
def test_every_figure_is_written_as_png_and_svg(kind, default_table, tmp_path):
    table = TABLES[kind](default_table)
    curves = _curves(table) or {"synthetic": (np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.4, 0.3]))}
    written = figures.write_figures(tmp_path, table, curves)
    assert sorted(p.name for p in written) == sorted(f"{n}.{ext}" for n in figures.FIGURE_NAMES
                                                     for ext in ("png", "svg"))
    for path in written:
        assert path.stat().st_size > 1000, path
    for name in figures.FIGURE_NAMES:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = (tmp_path / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_failed_rows_are_named_not_plotted(default_table):
    table = TABLES["failed rows"](default_table)
    fig, labels = pareto_figure(table)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "lstm (failed)" in texts and "lr (failed)" in texts
    assert {label.get_text() for label in labels} >= {"dnn"}
    assert "lstm" not in {label.get_text() for label in labels}
    summary = summary_figure(table)
    notes = " ".join(t.get_text() for t in summary.texts)
    assert "failed, not shown: lstm, hlstm-prune50-int8, tfmot-qat-dnn, lr" in notes
    skipped = [dict(r, status="skipped") if r["row"].startswith("tfmot") else r for r in table]
    notes = " ".join(t.get_text() for t in summary_figure(skipped).texts)  # an optional peer not installed
    assert "failed, not shown: lstm, hlstm-prune50-int8, lr" in notes
    assert "skipped, not shown: tfmot-prune-dnn, tfmot-prune-lstm, tfmot-qat-dnn" in notes
    texts = " ".join(t.get_text() for t in pareto_figure(skipped)[0].texts)
    assert "tfmot-qat-dnn (skipped)" in texts


def test_figures_are_repeatable(default_table, tmp_path):
    table = TABLES["single condensed row, baseline absent"](default_table)
    first = figures.write_summary(table, tmp_path / "a" / "summary.png")
    second = figures.write_summary(table, tmp_path / "b" / "summary.png")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


# -- what the figures show -----------------------------------------------------------------------
def _overlap(a, b) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def test_no_two_labels_overlap_on_the_default_table(default_table):
    from matplotlib.text import Text

    fig, labels = pareto_figure(default_table)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(label, renderer) for label in labels]
    names = [label.get_text() for label in labels]
    assert len(labels) >= 8
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert _overlap(boxes[i], boxes[j]) == 0.0, (names[i], names[j])
    for label, box in zip(labels, boxes):  # inside its panel
        frame = label.axes.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, label
    # only the frontier rows and the baselines (and the LR every row is compared with) are labelled, per panel
    rows = [r for r in default_table if r["status"] == "ok"]
    for ax, cost in zip(fig.axes, (figures.file_bytes, figures.litert_latency)):
        shown = [r for r in rows if cost(r) is not None]
        front = _dominance_frontier([(cost(r), finite(r["auroc"])) for r in shown])
        expected = {r["row"] for i, r in enumerate(shown) if i in front or not r["baseline"] or r["family"] == "lr"}
        assert sorted(label.get_text() for label in labels if label.axes is ax) == sorted(expected)


def test_roc_panels_have_the_baseline_as_reference_and_intervals_in_the_legend(default_table):
    fig = roc_figure(_curves(default_table), default_table)
    legends = {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes}
    assert list(legends) == ["LSTM", "hLSTM", "DNN", "peers & reference scores"]
    by_name = {r["row"]: r for r in default_table}

    def entry(row):
        r = by_name[row]
        return f"{row}: {float(r['auroc']):.3f} [{float(r['auroc_low']):.3f}, {float(r['auroc_high']):.3f}]"

    assert legends["LSTM"][0] == entry("lstm").replace("lstm:", "lstm (baseline):")
    assert legends["hLSTM"][0] == legends["LSTM"][0], "the hLSTM is compared with the LSTM baseline"
    assert entry("hlstm") in legends["hLSTM"] and entry("lstm-prune50-int8") in legends["LSTM"]
    assert legends["DNN"][0].startswith("dnn (baseline): ")
    assert entry("lr") in legends["peers & reference scores"]
    assert entry("tfmot-prune-lstm") in legends["peers & reference scores"]
    assert not any(t.startswith("hlstm-step") for texts in legends.values() for t in texts)
    assert any("16 step-file rows not drawn" in t.get_text() for t in fig.texts)
    for ax in fig.axes:  # distinct colours within a panel
        colours = [line.get_color() for line in ax.get_lines()[1:] if line.get_color() != "black"]
        assert len(colours) == len(set(colours)), ax.get_title()


def test_summary_groups_every_condensed_row_by_method(default_table):
    groups = {heading: [r["row"] for r in members] for heading, members in summary_rows(default_table)}
    assert list(groups) == ["pruning", "hLSTM", "distillation", "quantization (.tflite files)",
                            "step files (one hour per call)", "peers"]
    assert groups["pruning"][:2] == ["lstm-prune25", "lstm-prune50"] and "hlstm-prune50" in groups["hLSTM"]
    assert groups["distillation"] == ["hlstm-prune50-distill", "hlstm-recipe"]
    assert groups["quantization (.tflite files)"] == [r["row"] for r in default_table if " -> " in r["method"]
                                                      and "one step per call" not in r["method"]]
    assert groups["step files (one hour per call)"] == [r["row"] for r in default_table if r["row"].endswith("-step")]
    assert "tfmot-prune-lstm" in groups["peers"] and "lr" in groups["peers"]
    assert sum(map(len, groups.values())) == len([r for r in default_table if r["baseline"]])
    fig = summary_figure(default_table)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "lstm-prune50-int8  vs lstm-prune50" in ticks
    values = {t.get_text() for ax in fig.axes for t in ax.texts}
    by_name = {r["row"]: r for r in default_table}
    pruned, lstm = by_name["lstm-prune50"], by_name["lstm"]
    assert f"{float(pruned['deploy_bytes']) / float(lstm['deploy_bytes']):.2f}×" in values
    assert f"{float(pruned['litert_latency_us_median']) / float(lstm['litert_latency_us_median']):.2f}×" in values
    d, lo, hi = (float(pruned[c]) for c in ("auroc_diff", "auroc_diff_low", "auroc_diff_high"))
    assert f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" in values


def test_write_outputs_lists_the_figures_in_its_manifest(default_table, tmp_path):
    header = {
        "profile": {"name": "test", "epochs": 1, "batch_size": 8, "prune_after": 1, "select": "last",
                    "bootstrap_resamples": 10},
        "data": {"spec": "synthetic:1:0", "source": "synthetic", "fingerprint": "0" * 16,
                 "n": {"train": 1, "val": 1, "test": 1}},
        "seeds": [0], "machine": {"cpu": "test", "cores": 1}, "git_commit": "none", "library_versions": {},
        "wall_seconds": 1.0,
    }
    table = [{c: r.get(c, "") for c in COLUMNS} for r in default_table[:3]]
    write_outputs(tmp_path, table, header, _curves(table), [table])
    artifacts = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]
    for name in figures.FIGURE_NAMES:
        assert f"{name}.png" in artifacts and f"{name}.svg" in artifacts


# -- the calibration figure ----------------------------------------------------------------------
def _probability_curves(table: list[dict]) -> dict:
    """Synthetic (y, probability) per row: y drawn from a true risk, each row's p that risk sharpened or
    softened on the logit scale by its own factor (so the rows' calibration differs)."""
    rng = np.random.default_rng(2)
    z = rng.normal(-2.0, 1.2, 1500)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-z))).astype(int)
    return {r["row"]: (y, 1.0 / (1.0 + np.exp(-(0.6 + 0.8 * rng.random()) * z)))
            for r in table if r["status"] == "ok" and finite(r["auroc"]) is not None}


def test_calibration_panels_show_baseline_best_condensed_and_its_int8_file(default_table, tmp_path):
    from condense.evaluate.metrics import calibration

    # without the table's calibration columns, the legends show the curves' own numbers
    calibration_columns = ("ece", "ece_std", "cal_slope", "cal_intercept")
    default_table = [{k: v for k, v in r.items() if k not in calibration_columns} for r in default_table]

    curves = _probability_curves(default_table)
    severity = {"row": "severity", "model": "Severity", "method": "reference: Severity score from the data",
                "family": "score", "baseline": "", "status": "ok", "auroc": "0.7", "brier": ""}
    curves["severity"] = (curves["lstm"][0], np.linspace(-3.0, 40.0, len(curves["lstm"][0])))  # not a probability
    table = [*default_table, severity]
    fig = figures.calibration_figure(curves, table)
    legends = {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes}
    assert list(legends) == ["LSTM", "hLSTM", "DNN", "peers & reference scores"]

    def entry(row, baseline=False):
        c = calibration(*curves[row])
        return f"{row}{' (baseline)' if baseline else ''}: ECE {c['ece']:.3f}, slope {c['slope']:.2f}"

    def best(family):
        rows = [r for r in default_table if r["family"] == family and r["baseline"] and " -> " not in r["method"]
                and not r["method"].startswith("peer")]
        return max(rows, key=lambda r: float(r["auroc"]))["row"]

    assert legends["LSTM"] == [entry("lstm", True), entry(best("lstm")), entry(f"{best('lstm')}-int8")]
    assert legends["hLSTM"] == [entry("lstm", True), entry(best("hlstm")), entry(f"{best('hlstm')}-int8")]
    assert legends["DNN"] == [entry("dnn", True), entry(best("dnn")), entry("dnn-int8")], \
        "no int8 file of the condensed DNN: the baseline's"
    assert entry("lr") in legends["peers & reference scores"]
    assert not [t for t in legends["peers & reference scores"] if t.startswith("severity")]
    assert "severity (not a probability)" in " ".join(t.get_text() for t in fig.texts)
    # the baseline's curve is the reliability diagram of its scores: deciles, in order of predicted risk
    lstm_ax = fig.axes[0]
    line = next(line for line in lstm_ax.get_lines() if line.get_label().startswith("lstm (baseline)"))
    points = calibration(*curves["lstm"])["reliability"]
    assert list(line.get_xdata()) == pytest.approx(points["mean_predicted"]) and len(points["count"]) == 10
    assert list(line.get_ydata()) == pytest.approx(points["observed"])
    assert line.get_color() == "black" and line.get_linestyle() == "--"
    diagonal = lstm_ax.get_lines()[0]
    assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    assert lstm_ax.get_xlim() == lstm_ax.get_ylim()
    # with the table's calibration columns the legend shows the table's numbers (means over seeds)
    with_columns = [dict(r, ece="0.0123", cal_slope="0.876", cal_intercept="-0.1") for r in default_table]
    fig = figures.calibration_figure(curves, with_columns)
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "lstm (baseline): ECE 0.012, slope 0.88"
    written = figures.write_calibration(curves, table, tmp_path / "calibration.png")
    assert [p.name for p in written] == ["calibration.png", "calibration.svg"]
    for path in written:
        assert path.stat().st_size > 1000, path
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<dc:date>" not in written[1].read_text()
