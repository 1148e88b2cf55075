"""``condense compare`` on real benchmark runs (issue: CI comparison that tells a regression from noise).

Three small runs of the same rows and seed on the same cohort: the base; a rerun with TensorFlow's
oneDNN graph rewrites off (a perturbation that only moves floating point: the models differ in
their last bits, or not at all); and a genuinely worse run (2 epochs at batch 512: a handful of
gradient steps). The rerun passes the paired test, the worse run fails with the paired interval in
the message, and a table without stored predictions falls back with a notice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from condense.bench.compare import compare_tables

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # three benchmark runs

DATA = "synthetic:1500:0"
ROWS = "lstm,dnn"


def _bench(out, cache, *extra, **env):
    command = [sys.executable, "-m", "condense.cli", "bench", "--profile", "smoke", "--data", DATA, "--rows", ROWS,
               "--out", str(out), "--cache-dir", str(cache), "--quiet", *extra]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out / "table.csv"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-runs")
    cache = root / "cache"
    return {
        "base": _bench(root / "base", cache, "--epochs", "8"),
        "onednn-off": _bench(root / "onednn-off", cache, "--epochs", "8", TF_ENABLE_ONEDNN_OPTS="0"),
        "worse": _bench(root / "worse", cache, "--epochs", "2", "--batch-size", "512"),
    }


def test_rerun_under_a_floating_point_perturbation_passes(runs):
    base = np.load(runs["base"].parent / "predictions.npz")
    other = np.load(runs["onednn-off"].parent / "predictions.npz")
    assert list(base["ids"]) == list(other["ids"])
    # the perturbation is real: some prediction moved (rounding differences that 8 epochs amplify)
    moved = max(float(np.max(np.abs(base[k] - other[k]))) for k in ("lstm@0", "dnn@0"))
    assert moved > 0.0
    result = compare_tables(runs["base"], runs["onednn-off"])
    assert result.ok, result.report()
    report = result.report()
    assert "paired" in report and "fixed tolerance" not in report
    # the report says that the two runs' oneDNN settings differ (the machine notice, not a path)
    assert "notice: the machines' settings differ: onednn on" in report and " vs off" in report, report


def test_a_genuinely_worse_model_fails_with_its_paired_interval(runs):
    result = compare_tables(runs["base"], runs["worse"])
    assert not result.ok
    lstm = [f for f in result.failures if f.startswith("row 'lstm'")]
    assert lstm, result.report()
    message = lstm[0]
    assert "paired difference -0." in message and "[" in message and "significant drop" in message
    low, high = (float(x) for x in message.split("[", 1)[1].split("]", 1)[0].split(","))
    assert low < high < 0.0, "the interval excludes no change"
    markdown = result.report("markdown")
    assert "| `lstm` |" in markdown and "FAIL" in markdown


def test_tables_without_stored_predictions_fall_back_with_a_notice(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(runs["base"], bare / "table.csv")
    result = compare_tables(bare / "table.csv", runs["onednn-off"])
    report = result.report()
    assert "no stored predictions" in report and "fixed tolerance 0.01" in report
    assert result.ok
    worse = compare_tables(bare / "table.csv", runs["worse"])
    assert not worse.ok and any("tolerance 0.01" in f for f in worse.failures)
