"""The benchmark harness end to end on a tiny cohort: every row and column, a failing row
kept with its reason while the run goes on, the outputs and their manifest."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import pytest

from condense.bench.rows import plan_rows
from condense.bench.jobs import _JobRunner
from condense.bench.runner import run_benchmark
from condense.bench.profiles import PROFILES, get_profile
from condense.bench.table import COLUMNS
from condense.bench.compare import compare_tables
from condense.io import sha256_file
from condense.train import DEFAULT_ALPHA

REAL_RUN_PEER = _JobRunner._run_peer  # the smoke fixture breaks the LR for the module; one test needs it back
RECURRENT_ROWS = ("lstm", "lstm-prune25", "lstm-prune50", "hlstm", "hlstm-input", "hlstm-prune50", "hlstm-prune50-distill",
                  "hlstm-recipe")
EXPECTED_ROWS = [
    "lstm", "lstm-prune25", "lstm-prune50", "hlstm", "hlstm-input", "hlstm-prune50", "hlstm-prune50-distill",
    "hlstm-recipe", "dnn", "dnn-prune25", "dnn-prune50",
    "dnn-int8", "lstm-int8", "lstm-prune25-int8", "lstm-prune50-int8", "hlstm-int8", "hlstm-input-int8",
    "hlstm-prune50-int8", "hlstm-prune50-distill-int8", "hlstm-recipe-int8",
    "lstm-dynamic", "lstm-prune25-dynamic", "lstm-prune50-dynamic", "hlstm-dynamic", "hlstm-input-dynamic",
    "hlstm-prune50-dynamic", "hlstm-prune50-distill-dynamic", "hlstm-recipe-dynamic",
    *(f"{r}-step" for r in RECURRENT_ROWS), *(f"{r}-int8-step" for r in RECURRENT_ROWS),
    "dnn-dynamic", "lstm-keras3", "lstm-keras3-int8", "tfmot-prune-dnn", "tfmot-prune-lstm", "tfmot-qat-dnn", "lr",
    "gbm",
]


def test_every_profile_plans_every_row():
    for profile in PROFILES.values():
        assert [r.row for r in plan_rows(profile)] == EXPECTED_ROWS
    with_scores = plan_rows(PROFILES["default"], {"saps_i": "SAPS-I", "sofa": "SOFA"})
    assert [r.row for r in with_scores] == EXPECTED_ROWS + ["saps-i", "sofa"]
    assert with_scores[-2].kind == "score" and with_scores[-2].train == {"score": "saps_i"}


def test_unknown_profile_and_rows_are_clear_errors(tmp_path, tiny_cohort):
    with pytest.raises(ValueError, match=r"Argument `profile` must be one of \('smoke', 'default', 'paper', 'real'\); got profile='huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="profile 'real' has no data of its own: give the `data` argument"):
        get_profile("real")
    assert get_profile("real", data="physionet2012:x").select == "best"
    with pytest.raises(ValueError, match=r"unknown row\(s\) \['nope'\]"):
        run_benchmark(get_profile("smoke", data=str(tiny_cohort)), out_dir=tmp_path / "out", only=["nope"],
                      cache_dir=tmp_path / "cache", quiet=True)
    with pytest.raises(ValueError, match="Argument `seeds` must be an integer >= 1; got seeds=0"):
        run_benchmark(get_profile("smoke"), out_dir=tmp_path, seeds=0)
    # a bad profile fails where it is made, naming the field
    with pytest.raises(ValueError, match="Argument `epochs` must be an integer >= 1; got epochs=0"):
        dataclasses.replace(get_profile("smoke"), epochs=0)
    with pytest.raises(ValueError, match=r"Argument `lstm_quantiles` must be a tuple of quantiles in \(0, 1\)"):
        get_profile("smoke", lstm_quantiles=(0.5, 1.5))
    # prune_after >= epochs: refused for the pruned rows a run selects, before the data is read
    with pytest.raises(ValueError, match=r"^row lstm-prune25: Argument `prune_after` must be an integer in \[1, epochs - 1\]"):
        run_benchmark(get_profile("smoke", prune_after=2), out_dir=tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


@pytest.fixture(scope="module")
def smoke_run(tiny_cohort, tmp_path_factory, monkeypatch_module):
    """The smoke profile's rows on the tiny cohort, with the logistic-regression row made to fail."""
    import condense.bench.jobs
    import condense.bench.runner

    def broken_lr(self, spec):
        if spec.row == "lr":
            raise RuntimeError("injected failure for the test")
        return REAL_RUN_PEER(self, spec)

    monkeypatch_module.setattr(condense.bench.jobs._JobRunner, "_run_peer", broken_lr)
    profile = dataclasses.replace(
        get_profile("smoke", data=str(tiny_cohort)), latency_repeats=5, latency_warmup=1,
        bootstrap_resamples=200, calibration=32,
    )
    out = tmp_path_factory.mktemp("bench") / "smoke"
    # what a killed earlier run left beside its results: the next run removes it
    killed = out.parent / "killed-run" / "models" / "seed0" / "lstm"
    killed.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (killed / f".model.int8.{dead.pid}-x1y2z3.tmp.tflite").write_bytes(b"TFL3 partial")
    out_dir, ok = run_benchmark(profile, out_dir=out, cache_dir=tmp_path_factory.mktemp("cache"), quiet=True)
    with open(out_dir / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out_dir, ok, rows


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.e2e  # the whole smoke profile
def test_table_has_every_row_and_column(smoke_run):
    out_dir, _, rows = smoke_run
    assert [r["row"] for r in rows] == EXPECTED_ROWS
    with open(out_dir / "table.csv", newline="") as fh:
        assert next(csv.reader(fh)) == list(COLUMNS)
    by_row = {r["row"]: r for r in rows}
    assert int(by_row["lstm"]["params"]) == 8081
    assert int(by_row["lstm-prune50"]["params"]) == 3273
    assert int(by_row["hlstm"]["params"]) == 6993
    assert int(by_row["hlstm-prune50"]["params"]) == 2985
    assert int(by_row["dnn"]["params"]) == 60929
    assert int(by_row["dnn-prune50"]["params"]) == 20225
    for name in ("lstm", "hlstm", "dnn"):
        row = by_row[name]
        for col in ("keras_bytes", "tflite_bytes", "keras_latency_us_median", "litert_latency_us_median",
                    "train_seconds", "auroc", "auroc_low", "auroc_high", "auprc", "brier"):
            assert row[col] != "", (name, col)
        assert float(row["parity_max_abs"]) <= 1e-5
        assert float(row["auroc_low"]) <= float(row["auroc"]) <= float(row["auroc_high"])
    for r in rows:  # calibration of every row's probabilities (one seed: no ece_std)
        if r["status"] == "ok":
            assert 0.0 <= float(r["ece"]) <= 1.0 and r["ece_std"] == "", r["row"]
            assert (r["cal_slope"] == "") == (r["cal_intercept"] == ""), r["row"]
            assert 0.0 <= float(r["event1"]) <= 1.0 and float(r["hl_h"]) >= 0.0, r["row"]  # the challenge's scores
    assert by_row["lstm"]["condensation"] == "baseline" and by_row["lstm-prune50"]["condensation"] == "pruning"
    assert by_row["lstm-prune50"]["auroc_diff"] != "" and by_row["lstm-prune50"]["baseline"] == "lstm"
    assert all(r["auroc_diff_lr"] == "" for r in rows), "the LR row failed: nothing to compare against"
    assert by_row["dnn-int8"]["tflite_format"] == "int8"
    assert int(by_row["dnn-int8"]["tflite_bytes"]) * 3 < int(by_row["dnn"]["tflite_bytes"])


@pytest.mark.e2e  # the whole smoke profile
def test_every_row_is_reported_before_and_after_the_recalibration_fitted_on_its_validation(smoke_run, tiny_dataset):
    """The after columns: a map fitted on the row's own validation probabilities (the reloaded model's),
    applied to its test probabilities (predictions.npz); a converted file takes its Keras model's map."""
    from condense.bench.predictions import read_predictions
    from condense.calibrate import fit_map, recalibrated_calibration
    from condense.data.inputs import prepared_splits
    from condense.runs.model_dir import load_run
    from condense.runs.scoring import SavedModel

    out_dir, _, rows = smoke_run
    by_row = {r["row"]: r for r in rows}
    predictions = read_predictions(out_dir / "predictions.npz")
    for name, source in (("lstm", "lstm"), ("lstm-int8", "lstm"), ("hlstm-prune50-distill-int8-step",
                                                                  "hlstm-prune50-distill"), ("gbm", "gbm")):
        model_dir = out_dir / "models" / "seed0" / source
        _, inputs, _ = load_run(model_dir)
        p_val = SavedModel(model_dir).predict_inputs(prepared_splits(tiny_dataset, inputs)["val"])
        a, b = fit_map(tiny_dataset.val.y, p_val, "intercept")
        row = by_row[name]
        assert (float(row["recal_a"]), float(row["recal_b"])) == pytest.approx((a, b), rel=1e-4, abs=1e-6), name
        after = recalibrated_calibration(tiny_dataset.test.y, predictions.scores[(name, 0)], a, b)
        for col in ("ece_recal", "cal_slope_recal", "brier_recal", "hl_h_recal"):
            assert float(row[col]) == pytest.approx(after[col], rel=1e-4, abs=1e-6), (name, col)
    assert "### Before and after recalibration" in (out_dir / "table.md").read_text()


@pytest.mark.e2e  # the whole smoke profile
def test_gradient_boosting_row(smoke_run):
    """The GBM peer: its booster file is its deployable form, a paired difference against its
    baseline, and a batch-1 latency of its own (rows.json; not a Keras latency)."""
    out_dir, _, rows = smoke_run
    gbm = {r["row"]: r for r in rows}["gbm"]
    assert gbm["status"] == "ok" and gbm["family"] == "gbm" and gbm["baseline"] == "lstm"
    assert int(gbm["params"]) > 0 and gbm["auroc_diff"] != ""
    assert int(gbm["deploy_bytes"]) == (out_dir / "models" / "seed0" / "gbm" / "model.gbm.txt").stat().st_size
    assert gbm["keras_latency_us_median"] == "" and gbm["litert_latency_us_median"] == ""
    [fields] = [r for r in json.loads((out_dir / "rows.json").read_text())["per_seed"][0] if r["row"] == "gbm"]
    assert 0 < fields["peer_latency_us_median"] <= fields["peer_latency_us_p95"]


@pytest.mark.e2e  # the whole smoke profile
def test_distilled_row(smoke_run):
    """The pruned hLSTM taught by the gradient-boosting peer (cross-fitted in its own job): same
    architecture as its undistilled baseline, the distillation in its manifest, its .tflite rows,
    and paired differences against its baseline and the GBM peer."""
    out_dir, _, rows = smoke_run
    by_row = {r["row"]: r for r in rows}
    row = by_row["hlstm-prune50-distill"]
    assert row["status"] == "ok" and row["baseline"] == "hlstm-prune50" and row["family"] == "hlstm"
    assert row["params"] == by_row["hlstm-prune50"]["params"]
    assert row["auroc_diff"] != "" and row["auroc_diff_gbm"] != ""
    assert by_row["gbm"]["auroc_diff_gbm"] == "", "no difference of a row against itself"
    assert by_row["hlstm-prune50-distill-int8"]["baseline"] == "hlstm-prune50-distill"
    assert by_row["hlstm-prune50-distill-int8"]["tflite_format"] == "int8"
    manifest = json.loads((out_dir / "models" / "seed0" / "hlstm-prune50-distill" / "manifest.json").read_text())
    d = manifest["distillation"]
    assert manifest["config"]["teachers"] == ["peer:gbm"] and d["teacher_folds"] == 5 and d["alpha"] == DEFAULT_ALPHA
    assert [t["model"] for t in d["teachers"]] == ["gbm"] and 0.0 <= d["teacher_train_auroc"] <= 1.0
    undistilled = json.loads((out_dir / "models" / "seed0" / "hlstm-prune50" / "manifest.json").read_text())
    assert "distillation" not in undistilled


@pytest.mark.e2e  # the whole smoke profile
def test_deployable_file_columns_routes_ratios_and_tflm(smoke_run):
    out_dir, _, rows = smoke_run
    by_row = {r["row"]: r for r in rows}
    routes = {name: by_row[name]["route"] for name in ("lstm", "lstm-int8", "lstm-dynamic", "hlstm", "hlstm-int8",
                                                        "hlstm-input", "lstm-keras3", "lstm-keras3-int8")}
    assert routes == {"lstm": "fused", "lstm-int8": "fused", "lstm-dynamic": "fused", "hlstm": "while",
                      "hlstm-int8": "hoisted, unrolled", "hlstm-input": "fused",
                      "lstm-keras3": "while (Keras 3 default conversion)",
                      "lstm-keras3-int8": "unrolled (Keras 3 default conversion)"}
    assert float(by_row["lstm"]["latency_ratio"]) == 1.0 and float(by_row["lstm"]["file_ratio"]) == 1.0
    for name in ("lstm-int8", "lstm-dynamic", "lstm-prune50-int8", "hlstm-input-int8", "hlstm-dynamic"):
        assert float(by_row[name]["file_ratio"]) < 1.0, name
        assert int(by_row[name]["tflite_bytes"]) == round(float(by_row[name]["file_ratio"]) * int(
            by_row[by_row[name]["baseline"]]["tflite_bytes"]))
    assert float(by_row["lstm-keras3"]["file_ratio"]) > 1.0
    assert float(by_row["lstm-keras3"]["parity_max_abs"]) <= 1e-5
    for name in ("lstm", "lstm-int8", "dnn", "hlstm-dynamic"):
        assert float(by_row[name]["litert_batch_us"]) > 0 and by_row[name]["latency_ratio"] != ""
    assert by_row["lstm"]["cell_state_max_abs"] != "" and by_row["hlstm"]["cell_state_max_abs"] == ""
    assert int(by_row["lstm"]["p_ties"]) >= 0
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        assert by_row["lstm"]["tflm_note"] == "tflite-micro not installed"
    else:
        for name in ("lstm", "lstm-int8", "lstm-prune50-int8"):
            assert int(by_row[name]["tflm_arena_bytes"]) > 0 and by_row[name]["tflm_note"] == "", name
        assert float(by_row["lstm"]["tflm_max_abs"]) <= 1e-5
        assert "hybrid" in by_row["lstm-dynamic"]["tflm_note"]
        assert "REDUCE_ANY" in by_row["lstm-keras3"]["tflm_note"]
        assert "WHILE" in by_row["hlstm"]["tflm_note"]
    assert "## Deployable files: LiteRT and TensorFlow Lite for Microcontrollers" in (out_dir / "table.md").read_text()


@pytest.mark.e2e  # the whole smoke profile
def test_step_file_rows(smoke_run):
    """Every recurrent model's float32 and int8 step files: exact / small, TFLM, per-step timings."""
    out_dir, _, rows = smoke_run
    by_row = {r["row"]: r for r in rows}
    for source in RECURRENT_ROWS:
        step, int8 = by_row[f"{source}-step"], by_row[f"{source}-int8-step"]
        assert step["status"] == int8["status"] == "ok", (source, step["error"], int8["error"])
        assert step["baseline"] == int8["baseline"] == source and step["params"] == by_row[source]["params"]
        assert (step["tflite_format"], step["route"]) == ("float32", "step")
        assert (int8["tflite_format"], int8["route"]) == ("int8", "step + float head")
        assert float(step["parity_max_abs"]) <= 1e-5, source
        assert int(int8["tflite_bytes"]) < int(step["tflite_bytes"]), source
        assert int(int8["p_ties"]) == 0 or int(int8["p_ties"]) < int(int8["n_test"]) // 4, source
        for fmt in ("float32", "int8"):
            assert (out_dir / "models" / "seed0" / source / f"model.{fmt}.step.tflite").is_file(), (source, fmt)
        for row in (step, int8):
            us = float(row["litert_latency_us_median"])
            assert float(row["step_sequence_us"]) == pytest.approx(us * 48, rel=1e-5)  # the CSV keeps 6 digits
            sequence = by_row[source if row is step else f"{source}-int8"]
            assert float(row["step_latency_ratio"]) == pytest.approx(
                us / float(sequence["litert_latency_us_median"]), rel=1e-5)
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return
    for source in RECURRENT_ROWS:  # every step file runs on TFLM, the gates-form hLSTM's included
        for row in (f"{source}-step", f"{source}-int8-step"):
            assert int(by_row[row]["tflm_arena_bytes"]) > 0 and by_row[row]["tflm_note"] == "", row
    assert "## Step files: one hour per call" in (out_dir / "table.md").read_text()


@pytest.mark.e2e  # the whole smoke profile
def test_a_killed_run_s_temporary_files_are_removed_by_the_next_run(smoke_run):
    out_dir, _, _ = smoke_run
    killed = out_dir.parent / "killed-run" / "models" / "seed0" / "lstm"
    assert killed.is_dir() and not list(killed.iterdir())


@pytest.mark.e2e  # the whole smoke profile
def test_failing_row_is_kept_with_its_reason_and_the_run_goes_on(smoke_run):
    _, ok, rows = smoke_run
    by_row = {r["row"]: r for r in rows}
    assert not ok
    assert by_row["lr"]["status"] == "failed"
    assert "injected failure for the test" in by_row["lr"]["error"]
    others = [r for r in rows if r["row"] != "lr"]
    assert all(r["status"] == "ok" for r in others), [(r["row"], r["error"]) for r in others if r["status"] != "ok"]


@pytest.mark.e2e  # the whole smoke profile
def test_outputs_and_manifest(smoke_run, tiny_dataset):
    from sklearn.metrics import roc_auc_score

    out_dir, _, _ = smoke_run
    for name in ("table.csv", "table.md", "pareto.png", "roc.png", "calibration.png", "manifest.json"):
        assert (out_dir / name).stat().st_size > 0, name
    manifest = json.loads((out_dir / "manifest.json").read_text())
    for key in ("profile", "machine", "library_versions", "git_commit", "data"):
        assert key in manifest
    assert manifest["data"]["fingerprint"]
    for rel, info in manifest["artifacts"].items():
        assert sha256_file(out_dir / rel) == info["sha256"], rel
    md = (out_dir / "table.md").read_text()
    assert "## The paper's layout" in md and "FAILED: RuntimeError: injected failure" in md
    assert "## Calibration" in md and "| ECE | cal. slope / intercept |" in md
    assert "calibration.png" in manifest["artifacts"] and "calibration.svg" in manifest["artifacts"]
    # what decides the floating-point results is recorded (docs/reproducibility.md)
    machine = manifest["machine"]
    assert machine["cpu"] and machine["cores"] >= 1
    assert machine["onednn"].startswith(("on", "off")) and machine["tf_threads"]["intra_op"] >= 1
    assert f"oneDNN {machine['onednn']}" in md
    assert manifest["grid"]["executor"] == "local" and manifest["grid"]["jobs"] == 16
    # every row's per-patient test scores, keyed row@seed, for condense compare's paired test
    from condense.bench.predictions import read_predictions

    predictions = read_predictions(out_dir / "predictions.npz")
    by_row = {r["row"]: r for r in smoke_run[2]}
    assert set(predictions.rows()) == {row for row, r in by_row.items() if r["status"] == "ok"}
    assert list(predictions.ids) == [str(i) for i in tiny_dataset.test.ids]
    assert list(predictions.y) == list(tiny_dataset.test.y)
    for row in ("lstm", "dnn-int8", "hlstm-prune50"):
        auroc = roc_auc_score(predictions.y, predictions.score(row, 0))
        assert auroc == pytest.approx(float(by_row[row]["auroc"]), abs=1e-6), row


@pytest.mark.e2e  # the whole smoke profile
def test_compare_accepts_the_table_against_itself(smoke_run):
    out_dir, _, _ = smoke_run
    assert compare_tables(out_dir / "table.csv", out_dir / "table.csv").ok


def test_reference_scores_and_differences_against_the_logistic_regression(tiny_dataset, tmp_path, monkeypatch):
    """A score shipped with the data (PhysioNet's SAPS-I, SOFA) becomes a row, NaN records left out and
    counted; every model row gets a paired AUROC difference against the LR peer."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    import condense.bench.jobs
    import condense.bench.runner

    y = tiny_dataset.test.y
    rng = np.random.default_rng(3)
    score = {s: y_s + rng.normal(0.0, 0.8, len(y_s)) for s, y_s in
             ((name, tiny_dataset.split(name).y.astype(float)) for name in ("train", "val", "test"))}
    score["test"][:5] = np.nan
    data = dataclasses.replace(tiny_dataset, extras={"severity": score, "reference_scores": {"severity": "Severity"}})
    monkeypatch.setattr(condense.bench.runner, "load_dataset", lambda *args, **kwargs: data)
    monkeypatch.setattr(condense.bench.jobs._JobRunner, "_run_peer", REAL_RUN_PEER)
    profile = dataclasses.replace(get_profile("smoke"), bootstrap_resamples=200)
    profile = dataclasses.replace(profile, latency_repeats=5, latency_warmup=1)
    out_dir, ok = run_benchmark(profile, out_dir=tmp_path / "out", only=["dnn", "lr", "severity"], quiet=True,
                                cache_dir=tmp_path / "cache")
    assert ok
    with open(out_dir / "table.csv", newline="") as fh:
        dnn, lr, row = list(csv.DictReader(fh))
    assert float(dnn["auroc_diff_lr"]) == pytest.approx(float(dnn["auroc"]) - float(lr["auroc"]), abs=1e-9)
    assert float(dnn["auroc_diff_lr_low"]) < float(dnn["auroc_diff_lr"]) < float(dnn["auroc_diff_lr_high"])
    assert lr["auroc_diff_lr"] == "" and row["auroc_diff_lr"] == "", "no difference against itself or another cohort"
    known = ~np.isnan(score["test"])
    assert row["row"] == "severity" and row["status"] == "ok" and row["params"] == ""
    assert int(row["n_test"]) == len(y) - 5
    assert row["ece"] == row["cal_slope"] == row["cal_intercept"] == row["hl_h"] == "", "a score is not a probability"
    assert 0.0 <= float(row["event1"]) <= 1.0 and row["condensation"] == "reference"  # event 1 needs only a ranking
    assert dnn["ece"] != "" and lr["ece"] != ""
    assert float(row["auroc"]) == pytest.approx(roc_auc_score(y[known], score["test"][known]), abs=1e-6)
    assert float(row["auroc_low"]) < float(row["auroc"]) < float(row["auroc_high"])
    assert "reference: Severity score from the data" in (out_dir / "table.md").read_text()
    assert (out_dir / "roc.png").stat().st_size > 0
