"""The synthetic cohort: exact IHM layout, patient-level splits, determinism, plausibility, signal."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from condense.data import synthetic
from condense.data.channels import CATEGORICAL_VALUES, HEADER
from condense.data.progress import Progress
from condense.data.synthetic import ensure_cohort, write_cohort

NAME = re.compile(r"^(\d+)_episode(\d+)_timeseries\.csv$")
COL = {name: i for i, name in enumerate(HEADER)}
COMPONENTS = ("eye opening", "motor response", "verbal response")
LISTFILES = ("train/listfile.csv", "test/listfile.csv", "train_listfile.csv", "val_listfile.csv", "test_listfile.csv")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def read_listfile(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "stay,y_true", path
    rows = [line.split(",") for line in lines[1:]]
    assert all(len(r) == 2 for r in rows), path
    return [(stay, int(label)) for stay, label in rows]


def read_episodes(root: Path) -> dict[str, list[list[str]]]:
    """Every episode file's rows (header checked, then dropped), keyed by file name."""
    header = ",".join(HEADER)
    out = {}
    for sub in ("train", "test"):
        for path in sorted((root / sub).glob("*_timeseries.csv")):
            lines = path.read_text(encoding="utf-8").split("\n")
            assert lines[0] == header, path
            assert lines[-1] == "", f"{path}: no final newline"
            out[path.name] = [line.split(",") for line in lines[1:-1]]
    return out


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def column(episodes: dict, variable: str) -> list[str]:
    j = COL[variable]
    return [row[j] for rows in episodes.values() for row in rows if row[j] != ""]


@pytest.fixture(scope="module")
def large_cohort(tmp_path_factory) -> tuple[Path, dict]:
    """2,000 episodes: enough for rates, prevalence and signal to be stable."""
    root = write_cohort(tmp_path_factory.mktemp("large") / "in-hospital-mortality", episodes=2000, seed=11)
    return root, read_episodes(root)


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------
def test_layout_has_exactly_the_benchmark_files(tiny_cohort):
    assert sorted(p.name for p in tiny_cohort.iterdir()) == [
        "test", "test_listfile.csv", "train", "train_listfile.csv", "val_listfile.csv",
    ]
    for sub in ("train", "test"):
        names = [p.name for p in (tiny_cohort / sub).iterdir()]
        assert "listfile.csv" in names
        assert all(NAME.match(n) for n in names if n != "listfile.csv"), names


def test_every_episode_file_has_the_exact_header_and_18_columns(tiny_cohort):
    episodes = read_episodes(tiny_cohort)
    assert len(episodes) == 240
    for name, rows in episodes.items():
        assert rows, f"{name} has no rows"
        assert all(len(row) == len(HEADER) for row in rows), name
        assert all(any(cell for cell in row[1:]) for row in rows), f"{name}: a row with no value"


def test_listfiles_are_consistent_and_name_existing_files(tiny_cohort):
    lists = {rel: read_listfile(tiny_cohort / rel) for rel in LISTFILES}
    for rel, rows in lists.items():
        assert {label for _, label in rows} <= {0, 1}, rel
        folder = "test" if rel.startswith("test") else "train"
        for stay, _ in rows:
            assert (tiny_cohort / folder / stay).is_file(), f"{rel} lists missing {stay}"
    train_all = lists["train/listfile.csv"]
    assert sorted(lists["train_listfile.csv"] + lists["val_listfile.csv"]) == sorted(train_all)
    assert lists["test_listfile.csv"] == lists["test/listfile.csv"]
    assert [s for s, _ in lists["test/listfile.csv"]] == sorted(s for s, _ in lists["test/listfile.csv"])
    # every episode file is listed exactly once, in the listfile of its own folder
    for sub, rows in (("train", train_all), ("test", lists["test/listfile.csv"])):
        on_disk = sorted(p.name for p in (tiny_cohort / sub).glob("*_timeseries.csv"))
        assert sorted(s for s, _ in rows) == on_disk


@pytest.mark.parametrize("episodes", [20, 21, 57, 240, 1001])
def test_episode_names_are_unique_and_numbered_from_one(episodes):
    p = synthetic._simulate_episodes(episodes, seed=5, difficulty=0.5)
    pairs = list(zip(p["subject"].tolist(), p["episode_no"].tolist()))
    assert len(pairs) == len(set(pairs)) == episodes
    assert min(p["episode_no"]) >= 1
    assert all(0 < s < 100_000 for s, _ in pairs)


def test_splits_are_by_patient_about_70_15_15(large_cohort):
    root, _ = large_cohort
    subjects = {}
    for split, rel in (("train", "train_listfile.csv"), ("val", "val_listfile.csv"), ("test", "test/listfile.csv")):
        subjects[split] = [NAME.match(stay).group(1) for stay, _ in read_listfile(root / rel)]
    sets = {k: set(v) for k, v in subjects.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    patients = sum(len(s) for s in sets.values())
    assert 0.66 < len(sets["train"]) / patients < 0.74
    assert 0.12 < len(sets["val"]) / patients < 0.18
    assert 0.12 < len(sets["test"]) / patients < 0.18
    per_patient = Counter(s for v in subjects.values() for s in v)
    assert sum(n >= 2 for n in per_patient.values()) > 0.05 * patients  # some patients come back
    assert sum(len(v) for v in subjects.values()) == 2000


# ---------------------------------------------------------------------------------------------
# determinism and atomic writes
# ---------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tiny_cohort, tmp_path):
    again = write_cohort(tmp_path / "again" / "in-hospital-mortality", episodes=240, seed=7)
    other = write_cohort(tmp_path / "other" / "in-hospital-mortality", episodes=240, seed=8)
    assert tree_digest(again) == tree_digest(tiny_cohort)
    assert tree_digest(other) != tree_digest(tiny_cohort)


def test_difficulty_changes_only_the_labels(tiny_cohort, tmp_path):
    easy = write_cohort(tmp_path / "easy", episodes=240, seed=7, difficulty=0.0)
    assert read_episodes(easy) == read_episodes(tiny_cohort)
    easy_labels = read_listfile(easy / "train/listfile.csv")
    default_labels = read_listfile(tiny_cohort / "train/listfile.csv")
    assert [s for s, _ in easy_labels] == [s for s, _ in default_labels]
    assert easy_labels != default_labels


def test_a_failure_mid_write_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def fail_after_first_chunk(self, done):
        calls.append(done)
        raise RuntimeError("disk full")

    monkeypatch.setattr(Progress, "update", fail_after_first_chunk)  # called after each chunk is written
    out = tmp_path / "in-hospital-mortality"
    with pytest.raises(RuntimeError, match="disk full"):
        write_cohort(out, episodes=50, seed=0)
    assert calls, "the failure was not injected mid-write"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left either


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path):
    out = tmp_path / "in-hospital-mortality"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="out_dir"):
        write_cohort(out, episodes=20, seed=0)
    assert (out / "keep.txt").read_text() == "mine"


def test_an_existing_empty_folder_is_filled(tmp_path):
    out = tmp_path / "in-hospital-mortality"
    out.mkdir()
    assert write_cohort(out, episodes=20, seed=0) == out
    assert len(read_episodes(out)) == 20


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"episodes": 19, "seed": 0}, "episodes"),
        ({"episodes": 100.0, "seed": 0}, "episodes"),
        ({"episodes": True, "seed": 0}, "episodes"),
        ({"episodes": 100, "seed": -1}, "seed"),
        ({"episodes": 100, "seed": "1"}, "seed"),
        ({"episodes": 100, "seed": 0, "difficulty": 1.5}, "difficulty"),
        ({"episodes": 100, "seed": 0, "difficulty": -0.1}, "difficulty"),
        ({"episodes": 100, "seed": 0, "difficulty": math.nan}, "difficulty"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_the_argument(tmp_path, kwargs, argument):
    out = tmp_path / "in-hospital-mortality"
    with pytest.raises(ValueError, match=argument):
        write_cohort(out, **kwargs)
    assert not out.exists()
    if "difficulty" not in kwargs:
        with pytest.raises(ValueError, match=argument):
            ensure_cohort(kwargs["episodes"], kwargs["seed"], cache_dir=tmp_path / "cache", quiet=True)


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
def test_ensure_cohort_generates_once_then_reuses(tmp_path, capsys):
    path = ensure_cohort(30, 3, cache_dir=tmp_path)
    expected = tmp_path / "synthetic" / f"30-3-v{synthetic.GENERATOR_VERSION}" / "in-hospital-mortality"
    assert path == expected
    assert "generating" in capsys.readouterr().err
    digest = tree_digest(path)
    assert (path.parent / "cohort.json").is_file()

    assert ensure_cohort(30, 3, cache_dir=tmp_path) == path
    assert "reusing" in capsys.readouterr().err
    assert tree_digest(path) == digest

    victim = next((path / "train").glob("*_timeseries.csv"))
    victim.unlink()
    assert ensure_cohort(30, 3, cache_dir=tmp_path, quiet=True) == path
    assert capsys.readouterr().err == ""
    assert tree_digest(path) == digest  # regenerated, byte for byte


def test_ensure_cohort_honours_condense_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "envcache"))
    path = ensure_cohort(20, 0, quiet=True)
    assert path.is_relative_to(tmp_path / "envcache")


# ---------------------------------------------------------------------------------------------
# clinical plausibility
# ---------------------------------------------------------------------------------------------
def test_prevalence_is_near_the_real_task(large_cohort):
    root, _ = large_cohort
    labels = [y for rel in ("train/listfile.csv", "test/listfile.csv") for _, y in read_listfile(root / rel)]
    assert 0.10 <= np.mean(labels) <= 0.16


def test_event_times_are_irregular_sorted_and_within_the_stay(large_cohort):
    _, episodes = large_cohort
    texts = [row[0] for rows in episodes.values() for row in rows]
    hours = np.array([float(h) for h in texts])
    for rows in episodes.values():
        times = [float(r[0]) for r in rows]
        assert times == sorted(times) and len(set(times)) == len(times)
    assert hours.min() >= 0.0
    assert "0.0" in texts  # admission rows
    assert np.mean(hours > 48.0) < 0.002 and hours.max() < 48.5  # a few rows to drop, no more
    whole = np.mean(hours == np.round(hours))
    assert 0.0 < whole < 0.1  # some events exactly on the hour, most not
    assert all(len(t.split(".")[1]) <= 4 for t in texts)


def test_observation_rates_are_ordered_like_the_real_data(large_cohort):
    _, episodes = large_cohort
    count = {v: len(column(episodes, v)) for v in HEADER[1:]}
    n = len(episodes)
    assert count["Heart Rate"] / n > 35  # about hourly
    assert count["Heart Rate"] > 10 * count["pH"]
    assert count["Heart Rate"] > 2 * count["Temperature"] > 2 * count["Glucose"]
    assert count["Glascow coma scale eye opening"] > count["Glucose"] > count["pH"]
    assert count["Capillary refill rate"] < count["pH"]
    for name, rows in episodes.items():
        assert sum(r[COL["Height"]] != "" for r in rows) <= 1, name
        assert sum(r[COL["Weight"]] != "" for r in rows) <= 2, name
    # blood gases mostly in sicker patients: episodes with pH die more often
    root, _ = large_cohort
    labels = dict(read_listfile(root / "train/listfile.csv") + read_listfile(root / "test/listfile.csv"))
    with_ph = [labels[k] for k, rows in episodes.items() if any(r[COL["pH"]] for r in rows)]
    without = [labels[k] for k, rows in episodes.items() if not any(r[COL["pH"]] for r in rows)]
    assert np.mean(with_ph) > np.mean(without)


def test_categorical_values_are_allowed_and_both_spellings_occur(large_cohort):
    _, episodes = large_cohort
    for variable, allowed in CATEGORICAL_VALUES.items():
        seen = set(column(episodes, variable))
        assert seen <= set(allowed), (variable, seen - set(allowed))
    eye = set(column(episodes, "Glascow coma scale eye opening"))
    motor = set(column(episodes, "Glascow coma scale motor response"))
    verbal = set(column(episodes, "Glascow coma scale verbal response"))
    assert {"4 Spontaneously", "Spontaneously"} <= eye
    assert {"6 Obeys Commands", "Obeys Commands"} <= motor
    assert {"5 Oriented", "Oriented", "1.0 ET/Trach", "No Response-ETT"} <= verbal
    assert len(set(column(episodes, "Glascow coma scale total"))) >= 10


def test_gcs_total_is_the_sum_of_its_components(large_cohort):
    _, episodes = large_cohort

    def score(text: str) -> int:
        table = {"None": 1, "To Pain": 2, "To Speech": 3, "Spontaneously": 4, "No response": 1,
                 "Abnormal extension": 2, "Abnormal Flexion": 3, "Flex-withdraws": 4, "Localizes Pain": 5,
                 "Obeys Commands": 6, "No Response": 1, "Incomprehensible sounds": 2,
                 "Inappropriate Words": 3, "Confused": 4, "Oriented": 5, "No Response-ETT": 1}
        return table[text] if text in table else int(float(text.split()[0]))

    checked = 0
    for rows in episodes.values():
        for r in rows:
            if r[COL["Glascow coma scale total"]]:
                parts = [r[COL[f"Glascow coma scale {p}"]] for p in COMPONENTS]
                assert int(r[COL["Glascow coma scale total"]]) == sum(score(p) for p in parts), r
                checked += 1
    assert checked > 1000


def test_values_are_formatted_and_related_like_the_real_files(large_cohort):
    _, episodes = large_cohort
    assert all(re.fullmatch(r"\d+", v) for v in column(episodes, "Heart Rate"))
    assert all(re.fullmatch(r"\d+\.\d", v) for v in column(episodes, "Temperature"))
    assert all(re.fullmatch(r"\d\.\d\d", v) for v in column(episodes, "pH"))
    fio2 = np.array([float(v) for v in column(episodes, "Fraction inspired oxygen")])
    assert fio2.min() >= 0.21 and fio2.max() <= 1.0
    pressures = [COL[f"{k} blood pressure"] for k in ("Systolic", "Mean", "Diastolic")]
    rows = [r for rs in episodes.values() for r in rs if all(r[j] for j in pressures)]
    assert len(rows) > 10000
    typos = 0
    for r in rows:
        sys_, mean, dia = (int(r[j]) for j in pressures)
        if dia >= 1000:
            typos += 1
            continue
        assert sys_ > mean > dia, r
    spo2 = np.array([int(v) for v in column(episodes, "Oxygen saturation")])
    assert 0 < np.sum(spo2 > 100) < 0.01 * len(spo2)  # rare gross outliers (9800), as in the real data
    assert np.median(spo2) >= 95
    hr = np.array([int(v) for v in column(episodes, "Heart Rate")])
    assert 75 < np.median(hr) < 95


def test_mortality_signal_lives_in_the_trajectory(large_cohort):
    """Deaths' heart rate rises and systolic pressure falls over the 48 h more than survivors'."""
    root, episodes = large_cohort
    labels = dict(read_listfile(root / "train/listfile.csv") + read_listfile(root / "test/listfile.csv"))
    change = defaultdict(lambda: defaultdict(list))
    for name, rows in episodes.items():
        for variable in ("Heart Rate", "Systolic blood pressure"):
            j = COL[variable]
            points = [(float(r[0]), float(r[j])) for r in rows if r[j] and float(r[0]) <= 48]
            early = [v for t, v in points if t <= 8]
            late = [v for t, v in points if t > 40]
            if early and late:
                change[variable][labels[name]].append(np.median(late) - np.median(early))
    hr, sbp = change["Heart Rate"], change["Systolic blood pressure"]
    assert np.mean(hr[1]) - np.mean(hr[0]) > 4  # beats per minute
    assert np.mean(sbp[0]) - np.mean(sbp[1]) > 4  # mmHg


# ---------------------------------------------------------------------------------------------
# round trip through the reader
# ---------------------------------------------------------------------------------------------
def test_round_trip_through_load_dataset(tiny_cohort, tiny_dataset):
    ds = tiny_dataset
    listed = {}
    for rel in ("train_listfile.csv", "val_listfile.csv", "test/listfile.csv"):
        listed[rel] = read_listfile(tiny_cohort / rel)
    for split, rel in (("train", "train_listfile.csv"), ("val", "val_listfile.csv"), ("test", "test/listfile.csv")):
        part = ds.split(split)
        assert part.X.shape == (len(listed[rel]), 48, 76)
        assert np.isfinite(part.X).all()
        assert dict(zip((str(i) for i in part.ids), part.y.tolist())) == dict(listed[rel])
    masks = np.concatenate([ds.train.X, ds.val.X, ds.test.X])[:, :, 59:]
    assert masks[:, :, HEADER.index("Heart Rate") - 1].mean() > 0.8
    assert set(ds.issues) <= {"after_end"}  # the only "problem" is the rows after 48 h, by design
