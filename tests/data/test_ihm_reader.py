"""Reading an IHM benchmark folder: splits by patient, fingerprints, the array cache, workers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from condense.data.channels import HEADER
from condense.data.dataset import DataError
from condense.data.ihm import VAL_FRACTION, load_ihm, split_patients, subject_of
from condense.data.reference import discretize_reference

HR, HR_MASK = 50, 67


def episode(*rows: tuple[float, float]) -> str:
    """An episode CSV whose rows are (hours, heart rate)."""
    lines = [",".join(HEADER)]
    for hours, hr in rows:
        cells = [""] * len(HEADER)
        cells[0], cells[HEADER.index("Heart Rate")] = str(hours), str(hr)
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def listfile(entries) -> str:
    return "stay,y_true\n" + "".join(f"{stay},{label}\n" for stay, label in entries)


def write_folder(root, train: dict, test: dict, *, val: list[str] | None = None, train_listfile: list[str] | None = None):
    """train/test: {stay: (label, text)}; val: stays (in train/) for val_listfile.csv."""
    for folder, episodes in (("train", train), ("test", test)):
        (root / folder).mkdir(parents=True)
        for stay, (_, text) in episodes.items():
            (root / folder / stay).write_text(text)
        (root / folder / "listfile.csv").write_text(listfile((s, lab) for s, (lab, _) in episodes.items()))
    if val is not None:
        (root / "val_listfile.csv").write_text(listfile((s, train[s][0]) for s in val))
    if train_listfile is not None:
        (root / "train_listfile.csv").write_text(listfile((s, train[s][0]) for s in train_listfile))
    return root


def stay(subject: int, n: int = 1) -> str:
    return f"{subject}_episode{n}_timeseries.csv"


@pytest.fixture
def small_folder(tmp_path):
    train = {stay(s): (s % 2, episode((0.5, 60 + s), (10.0, 100 + s))) for s in (11, 12, 13, 14, 15, 16)}
    train[stay(12, 2)] = (1, episode((2.5, 42)))
    test = {stay(s): (s % 2, episode((1.5, 70 + s))) for s in (21, 22, 23)}
    return write_folder(tmp_path / "ihm", train, test, val=[stay(15), stay(16)])


def test_reads_the_benchmarks_splits_in_listfile_order(small_folder, tmp_path):
    ds = load_ihm(small_folder, cache_dir=tmp_path / "cache", quiet=True)
    assert ds.source == "ihm" and ds.layout.name == "ihm-76" and ds.issues == {}
    assert ds.train.ids.tolist() == [stay(11), stay(12), stay(13), stay(14), stay(12, 2)]
    assert ds.val.ids.tolist() == [stay(15), stay(16)]
    assert ds.test.ids.tolist() == [stay(21), stay(22), stay(23)]
    assert ds.train.ids.dtype.kind == "U" and ds.train.y.tolist() == [1, 0, 1, 0, 1]
    assert ds.train.X.shape == (5, 48, 76) and ds.train.X.dtype == np.float32
    x = ds.train.X[1]  # subject 12: HR 72 at 0.5 h (bin 0), 112 at 10.0 h (bin 9)
    assert x[0, HR] == 72.0 and x[8, HR] == 72.0 and x[9, HR] == 112.0 and x[47, HR] == 112.0
    assert np.flatnonzero(x[:, HR_MASK]).tolist() == [0, 9]
    assert ds.test.X[2, 1, HR] == 93.0


def test_train_listfile_is_used_when_present(tmp_path):
    train = {stay(s): (0, episode((1, 80))) for s in (1, 2, 3, 4)}
    root = write_folder(tmp_path / "ihm", train, {stay(9): (1, episode((1, 90)))}, val=[stay(4)], train_listfile=[stay(1), stay(3)])
    ds = load_ihm(root, use_cache=False, quiet=True)
    assert ds.train.ids.tolist() == [stay(1), stay(3)] and ds.val.ids.tolist() == [stay(4)]


@pytest.fixture
def forty_patients(tmp_path):
    train = {}
    for s in range(100, 140):
        train[stay(s)] = (int(s % 7 == 0), episode((1.0, s)))
        if s % 3 == 0:
            train[stay(s, 2)] = (0, episode((2.0, s)))
    return write_folder(tmp_path / "ihm", train, {stay(s): (0, episode((1, 80))) for s in (900, 901)})


def test_without_val_listfile_a_seeded_patient_level_split(forty_patients):
    ds = load_ihm(forty_patients, seed=0, use_cache=False, quiet=True)
    subjects = {name: {subject_of(s) for s in ds.split(name).ids.tolist()} for name in ("train", "val", "test")}
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"] and not subjects["val"] & subjects["test"]
    assert len(subjects["val"]) == round(VAL_FRACTION * 40) == 7
    assert len(ds.train) + len(ds.val) == 40 + 13  # every episode of train/ lands somewhere (13 second episodes)
    again = load_ihm(forty_patients, seed=0, use_cache=False, quiet=True)
    assert again.val.ids.tolist() == ds.val.ids.tolist() and again.fingerprint == ds.fingerprint
    other = load_ihm(forty_patients, seed=1, use_cache=False, quiet=True)
    assert set(other.val.ids.tolist()) != set(ds.val.ids.tolist())
    assert other.fingerprint != ds.fingerprint  # the seed is part of how the arrays were made


def test_split_patients_depends_on_the_set_of_patients_not_the_listfile_order(forty_patients):
    from condense.data.ihm import read_listfile
    from condense.data.issues import IssueLog

    entries = read_listfile(forty_patients / "train" / "listfile.csv", "train", issues=IssueLog())
    _, val = split_patients(entries, seed=4)
    _, val_reversed = split_patients(entries[::-1], seed=4)
    assert {e.stay for e in val} == {e.stay for e in val_reversed}
    with pytest.raises(DataError, match="cannot make a patient-level validation split from 1 patient"):
        split_patients(entries[:1], seed=0)


def test_a_patient_in_train_and_test_is_dropped_from_train_and_counted(tmp_path, capsys):
    train = {stay(s): (0, episode((1, 80))) for s in (1, 2, 3)}
    test = {stay(2, 5): (1, episode((1, 90))), stay(8): (0, episode((1, 90)))}
    root = write_folder(tmp_path / "ihm", train, test, val=[stay(3)])
    ds = load_ihm(root, use_cache=False)
    assert ds.train.ids.tolist() == [stay(1)] and ds.issues == {"patient_overlap": 1}
    err = capsys.readouterr().err
    assert f"patient_overlap x1 (first {root / 'train' / 'listfile.csv'}:3)" in err
    with pytest.raises(DataError, match=rf"^{root / 'train' / 'listfile.csv'}:3: patient 2 of '{stay(2)}' is also in test"):
        load_ihm(root, use_cache=False, quiet=True, strict=True)


def test_fingerprint_follows_file_contents_and_listfiles(small_folder):
    first = load_ihm(small_folder, use_cache=False, quiet=True).fingerprint
    assert load_ihm(small_folder, use_cache=False, quiet=True).fingerprint == first
    path = small_folder / "test" / stay(22)
    path.write_text(episode((1.5, 99)))
    changed = load_ihm(small_folder, use_cache=False, quiet=True).fingerprint
    assert changed != first
    (small_folder / "test" / "listfile.csv").write_text(listfile([(stay(21), 1), (stay(22), 1), (stay(23), 1)]))
    assert load_ihm(small_folder, use_cache=False, quiet=True).fingerprint != changed
    # the seed only matters when the split is seeded (here val_listfile.csv decides)
    assert load_ihm(small_folder, seed=5, use_cache=False, quiet=True).fingerprint == load_ihm(small_folder, seed=6, use_cache=False, quiet=True).fingerprint


def test_second_load_is_a_cache_hit_and_a_changed_file_is_recomputed(small_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = load_ihm(small_folder, cache_dir=cache)
    err = capsys.readouterr().err
    assert "cache hit" not in err and "cached 10 episodes" in err
    [entry] = list((cache / "arrays").glob("ihm-*.npz"))
    with np.load(entry, allow_pickle=False) as npz:
        assert npz["X"].shape == (10, 48, 76) and npz["present"].all()

    second = load_ihm(small_folder, cache_dir=cache)
    assert "cache hit: " in capsys.readouterr().err
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.split(name).X, second.split(name).X)
    assert second.fingerprint == first.fingerprint

    path = small_folder / "train" / stay(13)
    os.utime(path, (1, 1))  # a touch: same bytes, so the cached arrays are still right
    load_ihm(small_folder, cache_dir=cache)
    assert "cache hit: " in capsys.readouterr().err

    path.write_text(episode((0.5, 55)))  # new content: recomputed
    third = load_ihm(small_folder, cache_dir=cache)
    assert "cache hit" not in capsys.readouterr().err
    assert third.train.X[2, 0, HR] == 55.0 and first.train.X[2, 0, HR] == 73.0


def test_use_cache_false_writes_nothing_and_the_default_cache_is_condense_cache(small_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "env-cache"))
    load_ihm(small_folder, use_cache=False, quiet=True)
    assert not (tmp_path / "env-cache").exists()
    load_ihm(small_folder, quiet=True)
    assert len(list((tmp_path / "env-cache" / "arrays").glob("ihm-*.npz"))) == 1


def test_output_does_not_depend_on_the_number_of_workers(tiny_cohort):
    one = load_ihm(tiny_cohort, workers=1, use_cache=False, quiet=True)
    two = load_ihm(tiny_cohort, workers=2, use_cache=False, quiet=True)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(one.split(name).X, two.split(name).X)
        np.testing.assert_array_equal(one.split(name).ids, two.split(name).ids)
    assert one.fingerprint == two.fingerprint and one.issues == two.issues


def test_synthetic_cohort_round_trip(tiny_dataset, tiny_cohort):
    listed = {}
    for name, lf in (("val", "val_listfile.csv"), ("test", "test/listfile.csv")):
        listed[name] = [line.split(",")[0] for line in (tiny_cohort / lf).read_text().splitlines()[1:]]
    assert tiny_dataset.val.ids.tolist() == listed["val"] and tiny_dataset.test.ids.tolist() == listed["test"]
    assert len(tiny_dataset.train) + len(tiny_dataset.val) + len(tiny_dataset.test) == 240
    assert set(tiny_dataset.issues) <= {"after_end"}  # the generator writes a few rows after 48 h
    subjects = [{subject_of(s) for s in tiny_dataset.split(n).ids.tolist()} for n in ("train", "val", "test")]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    for i in range(0, len(tiny_dataset.test), 9):
        lines = (tiny_cohort / "test" / tiny_dataset.test.ids[i]).read_text().strip().split("\n")
        expected = discretize_reference([line.split(",") for line in lines[1:]], lines[0].split(","))
        np.testing.assert_array_equal(tiny_dataset.test.X[i], expected)


def test_load_dataset_dispatches_a_folder_to_the_ihm_reader(small_folder, tmp_path):
    from condense.data import load_dataset

    ds = load_dataset(str(small_folder), cache_dir=tmp_path / "c", quiet=True)
    direct = load_ihm(small_folder, use_cache=False, quiet=True)
    np.testing.assert_array_equal(ds.train.X, direct.train.X)
    assert ds.fingerprint == direct.fingerprint


def test_the_cache_serves_another_split_of_the_same_files(forty_patients, tmp_path, capsys):
    cache = tmp_path / "cache"
    load_ihm(forty_patients, seed=0, cache_dir=cache, quiet=True)
    other = load_ihm(forty_patients, seed=1, cache_dir=cache)
    assert "cache hit: " in capsys.readouterr().err  # the arrays do not depend on the split
    fresh = load_ihm(forty_patients, seed=1, use_cache=False, quiet=True)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(other.split(name).X, fresh.split(name).X)
        assert other.split(name).ids.tolist() == fresh.split(name).ids.tolist()
    assert other.fingerprint == fresh.fingerprint


def test_test_listfile_at_the_top_is_used_when_test_has_none(small_folder):
    (small_folder / "test" / "listfile.csv").rename(small_folder / "test_listfile.csv")
    ds = load_ihm(small_folder, use_cache=False, quiet=True)
    assert ds.test.ids.tolist() == [stay(21), stay(22), stay(23)]


def test_workers_must_be_positive(small_folder):
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        load_ihm(small_folder, workers=0, quiet=True)


def test_a_new_discretizer_version_invalidates_the_cache(small_folder, tmp_path, capsys, monkeypatch):
    import condense.data.preprocessing as preprocessing

    cache = tmp_path / "cache"
    load_ihm(small_folder, cache_dir=cache, quiet=True)
    monkeypatch.setattr(preprocessing, "DISCRETIZER_VERSION", preprocessing.DISCRETIZER_VERSION + 1)
    load_ihm(small_folder, cache_dir=cache)
    assert "cache hit" not in capsys.readouterr().err
    assert len(list((cache / "arrays").glob("ihm-*.npz"))) == 2


def test_array_cache_returns_only_intact_entries_for_their_own_key(tmp_path):
    from condense.data.cache import ArrayCache, cache_key

    cache = ArrayCache(tmp_path)
    key = cache_key("a", {"b": 1})
    assert cache.get("ihm", key) is None
    path = cache.put("ihm", key, {"X": np.arange(6, dtype=np.float32).reshape(2, 3), "names": np.array(["a", "bb"])})
    got = cache.get("ihm", key)
    np.testing.assert_array_equal(got["X"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got["names"].tolist() == ["a", "bb"] and sorted(got) == ["X", "names"]
    other = key[:32] + "0" * 32  # same file name, another key: not served
    assert cache.get("ihm", other) is None
    path.write_bytes(path.read_bytes()[:100])  # damaged: treated as absent
    assert cache.get("ihm", key) is None
    with pytest.raises(ValueError, match="array 'bad' has dtype object"):
        cache.put("ihm", key, {"bad": np.array([object()])})
    assert [p.name for p in (tmp_path / "arrays").iterdir()] == [path.name]  # no temporary left behind
