"""condense predict: scoring records a model has never seen, with its saved preprocessing only."""

from __future__ import annotations

import re

import csv
import shutil

import numpy as np
import pytest
from physionet_files import small_cohort

from condense.cli import main
from condense.data.physionet2012 import PhysioNetState, load_physionet2012_records, read_records
from condense.runs.scoring import SavedModel

N_RECORDS = 80


def read_csv(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def probabilities(path) -> dict[str, float]:
    _, rows = read_csv(path)
    return {r[0]: float(r[1]) for r in rows}


def without_outcomes(root, dest):
    """A copy of a cohort's record folder with no Outcomes file: records to score, labels unknown."""
    shutil.copytree(root / "set-a", dest / "set-a")
    return dest


@pytest.fixture(scope="module")
def physionet_model(tmp_path_factory):
    """An LSTM trained (1 epoch) on a small hand-written PhysioNet cohort, and that cohort."""
    root = small_cohort(tmp_path_factory.mktemp("cohort"), n=N_RECORDS)
    out = tmp_path_factory.mktemp("runs") / "lstm"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["train", "--data", f"physionet2012:{root}", "--model", "lstm", "--out", str(out),
                 "--epochs", "1", "--batch-size", "32", "--cache-dir", str(cache), "--quiet"]) == 0
    return out, root, cache


def test_predict_on_a_folder_without_outcomes_writes_probabilities_and_no_metrics(physionet_model, tmp_path, capsys):
    model, _, _ = physionet_model
    unseen = small_cohort(tmp_path / "unseen", n=30, seed=11)
    (unseen / "Outcomes-a.txt").unlink()
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{unseen}", "--out", str(out),
                 "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert "scored 30 records [keras]" in stdout and "no labels: no metrics" in stdout and "AUROC" not in stdout
    header, rows = read_csv(out)
    assert header == ["RecordID", "probability"]
    assert [r[0] for r in rows] == [str(3000 + k) for k in range(30)]
    p = np.array([float(r[1]) for r in rows])
    assert np.all((p >= 0) & (p <= 1)) and np.ptp(p) > 0
    assert not list(tmp_path.glob("*.tmp*")), "nothing half-written is left behind"


def test_predict_never_refits_preprocessing(physionet_model, tmp_path):
    """A shifted copy of the records must score with the TRAINING state: a refit would absorb the shift."""
    model, root, _ = physionet_model
    shifted = small_cohort(tmp_path / "shifted", n=N_RECORDS, shift=25.0)  # same records, HR and Glucose + 25
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{root}",
                 "--out", str(tmp_path / "orig.csv"), "--quiet"]) == 0
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{without_outcomes(shifted, tmp_path / 'copy')}",
                 "--out", str(tmp_path / "shifted.csv"), "--quiet"]) == 0
    p_orig, p_shift = probabilities(tmp_path / "orig.csv"), probabilities(tmp_path / "shifted.csv")
    assert p_orig.keys() == p_shift.keys()

    saved = SavedModel(model, "keras")
    ids = sorted(p_orig, key=int)
    with_saved, _ = load_physionet2012_records(shifted, saved.inputs.source)
    expected = saved.predict_raw(with_saved.X)
    assert np.allclose([p_shift[i] for i in ids], expected, atol=2e-6)

    # what a refit on the shifted copy would have produced: other imputation values and clip bounds
    raw = read_records(shifted)
    refit_state = PhysioNetState.fit(raw, np.arange(len(raw)))
    refit_x, _ = refit_state.transform(raw)
    assert refit_state.to_json() != saved.inputs.source
    diff_saved = np.max(np.abs(np.array([p_shift[i] for i in ids]) - np.array([p_orig[i] for i in ids])))
    assert diff_saved > 1e-3, "the saved state must see the shift"
    assert not np.allclose(saved.predict_raw(refit_x), expected, atol=1e-4), "a refit would score differently"


def test_predicting_a_subset_gives_the_same_probabilities(physionet_model, tmp_path):
    """Nothing is fitted on the scored records, so each record's probability is independent of the rest."""
    model, root, _ = physionet_model
    subset = tmp_path / "subset"
    (subset / "set-a").mkdir(parents=True)
    chosen = [str(3000 + k) for k in (3, 17, 41, 77)]
    for rid in chosen:
        shutil.copy(root / "set-a" / f"{rid}.txt", subset / "set-a")
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{root}",
                 "--out", str(tmp_path / "all.csv"), "--quiet"]) == 0
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{subset}",
                 "--out", str(tmp_path / "subset.csv"), "--quiet"]) == 0
    every, few = probabilities(tmp_path / "all.csv"), probabilities(tmp_path / "subset.csv")
    assert list(few) == chosen
    assert all(few[rid] == every[rid] for rid in chosen)


def test_labels_are_written_where_known_and_metrics_use_only_those(physionet_model, tmp_path, capsys):
    model, root, _ = physionet_model
    partial = tmp_path / "partial"
    without_outcomes(root, partial)
    lines = (root / "Outcomes-a.txt").read_text().splitlines()
    kept = [lines[0]] + lines[1:61]  # outcomes for the first 60 of 80 records
    (partial / "Outcomes-a.txt").write_text("\n".join(kept) + "\n")
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{partial}", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "AUROC" in captured.out and "on 60 labelled (20 without a label)" in captured.out
    assert re.search(r"; challenge event 1 0\.\d{4} \(threshold from the training death rate\), event 2 H \d+\.\d\d "
                     r"on 60 patients", captured.out)  # the PhysioNet/CinC 2012 scores, on the labelled records
    assert re.search(r"\), ECE 0\.\d{3} \(a calibrated model: up to 0\.\d{3} by chance\); challenge", captured.out)
    assert "record_without_outcome 20" in captured.err, "records without an outcome are counted, not dropped"
    header, rows = read_csv(out)
    assert header == ["RecordID", "probability", "label"] and len(rows) == N_RECORDS
    labels = {r[0]: r[2] for r in rows}
    truth = {line.split(",")[0]: line.split(",")[-1] for line in kept[1:]}
    assert all(labels[rid] == truth.get(rid, "") for rid in labels)


def test_float32_file_scores_like_the_keras_model(physionet_model, tmp_path):
    model, root, cache = physionet_model
    assert main(["export", "--model", str(model), "--format", "float32", "--cache-dir", str(cache), "--quiet"]) == 0
    for fmt in ("keras", "float32"):
        assert main(["predict", "--model", str(model), "--format", fmt, "--data", f"physionet2012:{root}",
                     "--out", str(tmp_path / f"{fmt}.csv"), "--quiet"]) == 0
    keras, tfl = probabilities(tmp_path / "keras.csv"), probabilities(tmp_path / "float32.csv")
    assert keras.keys() == tfl.keys()
    assert max(abs(keras[k] - tfl[k]) for k in keras) <= 2e-6


def test_predict_on_the_ihm_layout_names_stays(tiny_cohort, tmp_path, capsys):
    model = tmp_path / "lr"
    cache = tmp_path / "cache"
    assert main(["train", "--data", str(tiny_cohort), "--model", "lr", "--out", str(model),
                 "--cache-dir", str(cache), "--quiet"]) == 0
    out = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(model), "--data", str(tiny_cohort), "--out", str(out),
                 "--cache-dir", str(cache), "--quiet"]) == 0
    header, rows = read_csv(out)
    assert header == ["stay", "probability", "label"]
    assert len(rows) == 240 and rows[0][0].endswith("_timeseries.csv")
    stdout = capsys.readouterr().out
    assert f"scored 240 records [lr] -> {out}; AUROC" in stdout, "the logistic regression, not [keras]"


def test_physionet_data_for_a_model_trained_elsewhere_is_one_clear_line(tiny_cohort, physionet_model, tmp_path, capsys):
    _, root, _ = physionet_model
    model = tmp_path / "lr"
    assert main(["train", "--data", str(tiny_cohort), "--model", "lr", "--out", str(model),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    assert main(["predict", "--model", str(model), "--data", f"physionet2012:{root}",
                 "--out", str(tmp_path / "x.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no saved PhysioNet 2012 state" in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_predict_on_a_folder_with_a_looping_symlink_or_an_empty_set_is_one_clear_line(physionet_model, tmp_path,
                                                                                    capsys):
    """A self-looping symlink was skipped silently (is_file() is False); an empty set-a/ was reported as
    'no set-*/ folder'."""
    model, root, cache = physionet_model
    data = without_outcomes(root, tmp_path / "data")
    loop = data / "set-a" / "999999.txt"
    loop.symlink_to(loop.name)
    out = tmp_path / "scores.csv"
    args = ["predict", "--model", str(model), "--data", f"physionet2012:{data}", "--out", str(out),
            "--cache-dir", str(cache), "--quiet"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"condense predict: error: {loop}: a symbolic link that cannot be followed (a loop, or its target is "
        "missing); remove it or point it at a record file")
    empty = tmp_path / "empty"
    (empty / "set-a").mkdir(parents=True)
    args[4] = f"physionet2012:{empty}"
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"condense predict: error: {empty}: no <RecordID>.txt record files in set-a/ (the set folder is empty)")
    assert not out.exists()
