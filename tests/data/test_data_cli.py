"""``condense data synth | tensors | inspect | speed`` through ``condense.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condense.cli import main
from condense.data import load_dataset
from condense.data.channels import HEADER


def episode(*rows) -> str:
    """Rows of (hours, {variable: value})."""
    lines = [",".join(HEADER)]
    for hours, cells in rows:
        lines.append(",".join(str(hours) if h == "Hours" else str(cells.get(h, "")) for h in HEADER))
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder(tmp_path):
    """train/: 1..4 (+5 for val), test/: 8, 9. Heart rate in 2 bins of every episode; one eye opening."""
    root = tmp_path / "ihm"
    labels = {1: 1, 2: 0, 3: 0, 4: 1, 5: 1, 8: 0, 9: 1}
    for s, label in labels.items():
        folder = root / ("test" if s >= 8 else "train")
        folder.mkdir(parents=True, exist_ok=True)
        cells = {"Heart Rate": 60 + s}
        if s == 2:
            cells["Glascow coma scale eye opening"] = "To Speech"
        (folder / f"{s}_episode1_timeseries.csv").write_text(episode((0.5, cells), (20.25, {"Heart Rate": 100 + s})))
    for name, subjects in (("train/listfile.csv", (1, 2, 3, 4, 5)), ("test/listfile.csv", (8, 9)), ("val_listfile.csv", (5,))):
        (root / name).write_text("stay,y_true\n" + "".join(f"{s}_episode1_timeseries.csv,{labels[s]}\n" for s in subjects))
    return root


def test_data_without_an_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data"])
    assert exc.value.code == 2 and "ACTION" in capsys.readouterr().err


def test_synth_writes_a_cohort_and_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["data", "synth", "--out", str(out), "--episodes", "30", "--seed", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote a synthetic cohort of 30 episodes (seed 1) to {out}"
    listed = (out / "train" / "listfile.csv").read_text().splitlines() + (out / "test" / "listfile.csv").read_text().splitlines()
    assert listed.count("stay,y_true") == 2 and len(listed) == 32
    assert main(["data", "synth", "--out", str(out), "--episodes", "30", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("condense data: error: out_dir")


def test_tensors_writes_the_split_exactly_as_load_dataset_returns_it(folder, tmp_path, capsys):
    out = tmp_path / "val.npz"
    args = ["data", "tensors", "--data", str(folder), "--split", "train", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert main(args) == 0
    assert f"wrote {out}: train split of {folder}, X (4, 48, 76) float32 (raw), y (4,) with 2 deaths" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["X", "stays", "y"]
        X, y, stays = npz["X"], npz["y"], npz["stays"]
    ds = load_dataset(str(folder), cache_dir=tmp_path / "c", quiet=True)
    assert X.dtype == np.float32 and stays.dtype.kind == "U"
    np.testing.assert_array_equal(X, ds.train.X)
    np.testing.assert_array_equal(y, ds.train.y)
    assert stays.tolist() == [f"{s}_episode1_timeseries.csv" for s in (1, 2, 3, 4)] == ds.train.ids.tolist()
    assert X[1, 0, 50] == 62.0 and X[1, 20, 50] == 102.0  # the raw heart rate, not normalized


def test_tensors_of_the_synthetic_cohort(tiny_cohort, tiny_dataset, tmp_path):
    out = tmp_path / "test.npz"
    assert main(["data", "tensors", "--data", str(tiny_cohort), "--split", "test", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    with np.load(out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["X"], tiny_dataset.test.X)
        assert npz["stays"].tolist() == tiny_dataset.test.ids.tolist()


def test_a_missing_data_folder_is_one_line_without_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["data", "tensors", "--data", str(missing), "--split", "test", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert err == f"condense data: error: {missing}: data folder not found\n"
    assert not (tmp_path / "x.npz").exists()


def test_strict_stops_at_a_bad_cell_and_names_file_and_row(folder, tmp_path, capsys):
    path = folder / "train" / "3_episode1_timeseries.csv"
    path.write_text(episode((0.5, {"Heart Rate": "eighty"})))
    args = ["data", "tensors", "--data", str(folder), "--split", "train", "--out", str(tmp_path / "t.npz"), "--cache-dir", str(tmp_path / "c")]
    assert main(args + ["--strict", "--quiet"]) == 2
    assert capsys.readouterr().err == f"condense data: error: {path}:2: 'Heart Rate' is not a number: 'eighty'; treated as missing\n"
    assert main(args) == 0  # lenient: counted and summarized
    err = capsys.readouterr().err
    assert f"bad_number x1 (first {path}:2)" in err


def test_inspect_reports_splits_observation_rates_and_values(folder, tmp_path, capsys):
    out_json = tmp_path / "inspect.json"
    assert main(["data", "inspect", "--data", str(folder), "--cache-dir", str(tmp_path / "c"), "--quiet", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "train          4       2     50.0%" in out
    assert "val            1       1    100.0%" in out
    assert "test           2       1     50.0%" in out
    assert "all            7       4     57.1%" in out
    heart = next(l for l in out if l.startswith("Heart Rate"))
    assert heart.split() == ["Heart", "Rate", "4.2%", "100.0%", "min", "61", "median", "85", "max", "109"]  # 61..69 and 101..109
    eye = next(l for l in out if l.startswith("Glascow coma scale eye opening"))
    assert eye.split() == ["Glascow", "coma", "scale", "eye", "opening", "0.3%", "14.3%", "1", "value(s):", "To", "Speech:", "1"]
    assert next(l for l in out if l.startswith("Temperature")).endswith("never observed")
    assert out[-1] == "bad input: none"
    summary = json.loads(out_json.read_text())
    assert summary["splits"]["all"] == {"episodes": 7, "deaths": 4, "prevalence": 4 / 7}
    hr = next(v for v in summary["variables"] if v["variable"] == "Heart Rate")
    assert hr["bins_observed"] == 2 / 48 and hr["episodes_observed"] == 1.0 and hr["channels"] == [50]


def test_speed_times_the_reader_and_checks_the_arrays_agree(tmp_path, capsys):
    out_json = tmp_path / "speed.json"
    args = ["data", "speed", "--episodes", "40", "--reference-episodes", "5", "--workers", "2", "--cache-dir", str(tmp_path / "c"), "--quiet", "--json", str(out_json)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cohort: 40 episodes at" in out
    assert "arrays identical with 1 and 2 workers: yes; per-row reference agrees on 5 episodes: yes" in out
    result = json.loads(out_json.read_text())
    assert result["episodes"] == 40 and result["identical_across_workers"] and result["identical_to_reference"]
    assert set(result) >= {"per_row_reference", "workers_1", "workers_2", "cold_cache_seconds", "cache_hit_seconds"}
