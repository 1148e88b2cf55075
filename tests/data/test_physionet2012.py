"""PhysioNet 2012 reader: discretization rules, bad input, fitted state, splits, and real set A."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from condense.data import DataError, load_dataset
from condense.data import physionet2012 as pn
from condense.data.physionet2012 import (
    PHYSIONET_LAYOUT,
    TIME_SERIES_VARIABLES,
    PhysioNetState,
    load_physionet2012,
    load_physionet2012_records,
    read_records,
    split_records,
)
from physionet_files import record_text, small_cohort, write_set

CH = {name: k for k, name in enumerate(PHYSIONET_LAYOUT.names)}
NO_WINSOR = (0.0, 1.0)  # clip bounds = train min/max: values pass through unchanged


def make_archive(root: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        for path in sorted(root.rglob("*")):
            tf.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return out


def discretize(path, winsor=NO_WINSOR, **kwargs):
    raw = read_records(path, **kwargs)
    state = PhysioNetState.fit(raw, winsor_quantiles=winsor)
    X, issues = state.transform(raw)
    return raw, state, X, issues


# ---------------------------------------------------------------------------------------------
# Discretization rules


def test_binning_edges_last_value_wins_and_carry_forward(tmp_path):
    rows = [("00:00", "HR", 70), ("00:30", "HR", 71), ("01:00", "HR", 72),  # bin 0, last wins -> 72
            ("01:30", "HR", 80),                                              # bin 1
            ("48:00", "HR", 90),                                              # bin 47
            ("48:01", "HR", 999), ("50:00", "Temp", 36.0)]                    # dropped, counted
    raw, state, X, issues = discretize(write_set(tmp_path, {"1001": rows}))
    hr, mask = X[0, :, CH["HR"]], X[0, :, CH["mask->HR"]]
    assert hr[0] == 72 and hr[1] == 80
    assert np.all(hr[2:47] == 80), "empty bins carry the last value forward"
    assert hr[47] == 90
    assert mask.tolist() == [1, 1] + [0] * 45 + [1]
    assert raw.issues["after_48h"] == 2
    assert X[0, :, CH["mask->Temp"]].sum() == 0


def test_last_value_wins_in_time_order_not_file_order(tmp_path):
    rows = [("02:40", "Glucose", 200), ("02:10", "Glucose", 100), ("02:40", "Glucose", 150)]
    _, _, X, _ = discretize(write_set(tmp_path, {"1001": rows}))
    # bin 2 holds 02:10 (100) and two rows at 02:40: the later time wins, then the later line
    assert X[0, 2, CH["Glucose"]] == 150


def test_values_before_first_observation_use_the_train_median(tmp_path):
    root = write_set(tmp_path, {"1001": [("05:00", "HR", 60)], "1002": [("00:10", "HR", 100)],
                                "1003": [("00:10", "HR", 90)]})
    raw, state, X, _ = discretize(root)
    assert state.variables["HR"]["impute"] == 90.0
    # 05:00 falls in bin 4: bins 0-3 precede the first observation
    assert np.all(X[0, :4, CH["HR"]] == 90) and np.all(X[0, :4, CH["mask->HR"]] == 0)
    assert np.all(X[0, 4:, CH["HR"]] == 60) and X[0, 4, CH["mask->HR"]] == 1
    # a variable nobody measured falls back to the documented normal value; MechVent imputes 0
    assert np.all(X[:, :, CH["Cholesterol"]] == pn.NORMAL_VALUES["Cholesterol"])
    assert np.all(X[:, :, CH["MechVent"]] == 0)


def test_mechvent_is_an_indicator_imputed_zero_then_carried(tmp_path):
    raw, state, X, _ = discretize(write_set(tmp_path, {"1001": [("03:20", "MechVent", 1)]}))
    assert state.variables["MechVent"]["impute"] == 0.0
    assert X[0, :3, CH["MechVent"]].tolist() == [0, 0, 0]
    assert np.all(X[0, 3:, CH["MechVent"]] == 1)


def test_minus_one_means_missing(tmp_path):
    text = record_text("1001", [("01:00", "HR", -1), ("02:00", "HR", 88)], height=-1, weight=-1)
    others = {"1002": record_text("1002", [("00:30", "HR", 80)], height=180, weight=90)}
    raw, state, X, issues = discretize(write_set(tmp_path, {"1001": text, **others}))
    assert np.isnan(raw.static[0, 2]) and np.isnan(raw.static[0, 3])
    assert X[0, 0, CH["Height"]] == 180 and X[0, 0, CH["AdmissionWeight"]] == 90  # train median of one
    assert X[0, 0, CH["mask->HR"]] == 0 and X[0, 0, CH["HR"]] == 84  # -1 unused: median of 88, 80
    assert X[0, 1, CH["HR"]] == 88
    assert issues == {"missing_marker:HR": 1}  # a descriptor's -1 is the format, not an issue


def test_static_descriptors_icutype_one_hot_and_weight_split(tmp_path):
    rows = [("00:00", "HR", 75), ("06:00", "Weight", 82.5)]
    text = record_text("1001", rows, age=71, gender=0, height=160, icutype=2, weight=80)
    _, _, X, _ = discretize(write_set(tmp_path, {"1001": text}))
    x = X[0]
    assert np.all(x[:, CH["Age"]] == 71) and np.all(x[:, CH["Gender"]] == 0)
    assert np.all(x[:, CH["Height"]] == 160)
    assert np.all(x[:, CH["AdmissionWeight"]] == 80), "Weight at 00:00 is the admission descriptor"
    assert [x[0, CH[f"ICUType->{k}"]] for k in (1, 2, 3, 4)] == [0, 1, 0, 0]
    assert x[5, CH["Weight"]] == 82.5 and x[5, CH["mask->Weight"]] == 1  # 06:00 -> bin 5
    assert x[:5, CH["mask->Weight"]].sum() == 0, "the admission weight is not a time-series row"


def test_record_with_static_data_only_still_gets_a_row(tmp_path):
    root = write_set(tmp_path, {"1001": [], "1002": [("00:30", "HR", 64), ("00:30", "Temp", 37.5)]})
    raw, state, X, _ = discretize(root)
    assert X.shape == (2, 48, PHYSIONET_LAYOUT.width)
    assert raw.ids.tolist() == ["1001", "1002"]
    assert X[0, :, 37:74].sum() == 0
    assert np.all(X[0, :, CH["HR"]] == 64) and np.all(X[0, :, CH["Temp"]] == 37.5)
    assert raw.issues["no_time_series"] == 1


def test_layout_channels_continuous_and_masks():
    layout = PHYSIONET_LAYOUT
    assert layout.name == "physionet2012" and layout.width == 82
    assert len(TIME_SERIES_VARIABLES) == 37 and list(TIME_SERIES_VARIABLES) == sorted(TIME_SERIES_VARIABLES)
    assert layout.names[:37] == TIME_SERIES_VARIABLES
    assert layout.names[74:] == ("Age", "Gender", "Height", "AdmissionWeight",
                                 "ICUType->1", "ICUType->2", "ICUType->3", "ICUType->4")
    assert all(layout.observed_by[k] == CH[f"mask->{v}"] for k, v in enumerate(TIME_SERIES_VARIABLES))
    assert all(o == -1 for o in layout.observed_by[37:])
    continuous = {layout.names[k] for k in layout.continuous}
    assert continuous == (set(TIME_SERIES_VARIABLES) - {"MechVent"}) | {"Age", "Height", "AdmissionWeight"}
    from condense.data.layout import ChannelLayout

    assert ChannelLayout.from_json(json.loads(json.dumps(layout.to_json()))) == layout


# ---------------------------------------------------------------------------------------------
# Outliers (fitted on train)


def test_impossible_values_are_missing_and_outliers_winsorized_at_train_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    records = {}
    for k in range(40):
        rows = [(f"{h:02d}:00", "HR", int(v)) for h, v in enumerate(rng.integers(60, 120, size=20), start=1)]
        records[str(2000 + k)] = rows
    records["2000"] = records["2000"] + [("30:00", "HR", 250), ("31:00", "Temp", -17.8), ("32:00", "pH", 735)]
    raw = read_records(write_set(tmp_path, records))
    state = PhysioNetState.fit(raw)  # default 0.1 / 99.9 percentiles
    valid = raw.event_value[(raw.event_variable == TIME_SERIES_VARIABLES.index("HR"))]
    lo, hi = np.quantile(valid, [0.001, 0.999])
    assert state.variables["HR"]["clip"] == pytest.approx([lo, hi])
    X, issues = state.transform(raw)
    assert issues["out_of_range:Temp"] == 1 and issues["out_of_range:pH"] == 1
    assert X[0, 29, CH["HR"]] == pytest.approx(hi, rel=1e-6)  # 250 clipped to the train 99.9th
    assert issues["winsorized:HR"] >= 1
    assert X[0, :, CH["mask->Temp"]].sum() == 0 and X[0, :, CH["mask->pH"]].sum() == 0
    # the ranges themselves are part of the saved state
    assert state.variables["Temp"]["valid"] == list(pn.VALID_RANGES["Temp"])


def test_impossible_static_values_are_counted(tmp_path):
    root = write_set(tmp_path, {"1001": record_text("1001", height=431.8, gender=7, icutype=9),
                                "1002": record_text("1002", height=170, gender=1, icutype=4)})
    _, _, X, issues = discretize(root)
    assert issues == {"out_of_range:Height": 1, "out_of_range:Gender": 1, "out_of_range:ICUType": 1}
    assert X[0, 0, CH["Height"]] == 170 and X[0, 0, CH["Gender"]] == 1 and X[0, 0, CH["ICUType->4"]] == 1


# ---------------------------------------------------------------------------------------------
# Bad input


def test_unknown_parameters_are_counted_and_strict_names_file_and_line(tmp_path):
    root = write_set(tmp_path, {"1001": [("00:30", "HR", 70), ("00:40", "Foo", 1), ("00:50", "Foo", 2)]})
    raw, _, X, _ = discretize(root)
    assert raw.issues["unknown_parameter:Foo"] == 2
    assert X[0, 0, CH["HR"]] == 70
    with pytest.raises(DataError, match=r"1001\.txt:9: unknown parameter 'Foo'"):
        read_records(root, strict=True)


@pytest.mark.parametrize("line, message", [
    ("00:30,HR", r"expected 3 fields"),
    ("00:30,HR,70,1", r"expected 3 fields"),
    ("0:3x,HR,70", r"time '0:3x' of 'HR' is not HH:MM"),
    ("00:30,HR,abc", r"value 'abc' of 'HR' is not a finite number"),
    ("00:30,HR,nan", r"value 'nan' of 'HR' is not a finite number"),
])
def test_malformed_lines_are_counted_or_raise_naming_file_line_and_value(tmp_path, line, message):
    rows = [("00:10", "HR", 66), line, ("01:10", "HR", 67)]
    root = write_set(tmp_path, {"1001": rows, "1002": [("00:20", "HR", 90)]})
    raw, _, X, _ = discretize(root)
    assert raw.issues == {"malformed_line": 1}
    assert X[0, 0, CH["HR"]] == 66 and X[0, 1, CH["HR"]] == 67
    with pytest.raises(DataError, match=r"set-a/1001\.txt:9: " + message):
        read_records(root, strict=True)


def test_missing_header_and_record_id_mismatch(tmp_path):
    root = write_set(tmp_path, {"1001": record_text("1001", [("00:10", "HR", 66)], header=False),
                                "1002": record_text("1003", [("00:10", "HR", 67)])})
    raw, _, X, _ = discretize(root)
    assert raw.issues == {"missing_header": 1, "record_id_mismatch": 1}
    assert X[:, 0, CH["HR"]].tolist() == [66, 67]
    with pytest.raises(DataError, match=r"1001\.txt:1: expected the header"):
        read_records(root, strict=True)


def test_vectorized_parse_matches_the_reference_parser(tmp_path):
    records = {
        "1001": [("00:00", "HR", 70), ("01:00", "HR", 71), ("01:00", "HR", 72), ("49:00", "HR", 1)],
        "1002": [("00:05", "GCS", 15), "00:07,HR,x", ("00:08", "Bar", 2)],
        "1003": record_text("1003", [("12:34", "Weight", 70.5), ("00:00", "Age", 50)], weight=-1),
        "1004": [],
        "1005": "\n".join(["Time,Parameter,Value", "00:00,RecordID,1005", "", "00:00,Age,40", " 00:10, HR ,77"]),
    }
    root = write_set(tmp_path, records)
    raw = read_records(root)
    files = pn.files.read_files(root)
    problems = pn.parse._Problems(strict=False)
    events = pn.parse._Events()
    parser = pn.parse._RecordParser(problems, events)
    static = np.full((len(files.records), 5), np.nan)
    for index, (where, rid, data) in enumerate(files.records):
        parser.parse(index, rid, where, pn.parse._decode(data), static[index])
    assert np.array_equal(raw.event_record, events.rec)
    assert np.array_equal(raw.event_variable, events.var)
    assert np.array_equal(raw.event_hours, events.hours)
    assert np.array_equal(raw.event_value, events.value)
    assert np.array_equal(raw.static, static, equal_nan=True)
    expected = dict(problems.counts)
    expected["no_time_series"] = 1
    assert raw.issues == expected
    assert raw.issues["duplicate_descriptor:Age"] == 1 and raw.issues["after_48h"] == 1
    assert raw.static[2, 0] == 50  # the last descriptor row wins
    assert raw.event_value[raw.event_record == 4].tolist() == [77.0]  # spaces around fields are tolerated


def test_truncated_or_corrupt_archive_is_one_clear_error(tmp_path):
    root = write_set(tmp_path / "src", {str(1000 + k): [("00:30", "HR", 70 + k)] * 50 for k in range(30)},
                     {str(1000 + k): (10, 3, k % 2) for k in range(30)})
    archive = make_archive(root, tmp_path / "set-a.tar.gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.tar\.gz: corrupt or truncated archive"):
        read_records(truncated)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(DataError, match=r"garbage\.tar\.gz: corrupt or truncated archive"):
        load_physionet2012(garbage, quiet=True, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.tar.gz")


@pytest.mark.parametrize("compress", ["gz", "bz2", "xz"])
def test_an_archive_that_expands_past_the_bound_stops_before_memory_runs_out(tmp_path, monkeypatch, compress):
    import bz2
    import gzip
    import lzma

    # 64 MiB of zeros in a few KB: with a 1 MiB bound, reading stops at the first MiB past it
    bomb = tmp_path / f"set-a.tar.{compress}"
    pack = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[compress]
    bomb.write_bytes(pack(bytes(64 << 20)))
    assert bomb.stat().st_size < 200_000
    monkeypatch.setenv("CONDENSE_MAX_ARCHIVE_BYTES", str(1 << 20))
    cache = tmp_path / "cache"
    message = (f"{bomb}: archive expands past 1048576 bytes (1.0 MiB) uncompressed; stopped reading it "
               "(set CONDENSE_MAX_ARCHIVE_BYTES to allow more)")
    with pytest.raises(DataError) as err:
        load_dataset(f"physionet2012:{bomb}", cache_dir=cache, quiet=True)
    assert str(err.value) == message
    assert not cache.exists() and sorted(p.name for p in tmp_path.iterdir()) == [bomb.name]  # nothing written


def test_the_archive_bound_is_configurable_and_counts_uncompressed_bytes(tmp_path, monkeypatch):
    from condense.data.physionet2012.files import DEFAULT_MAX_ARCHIVE_BYTES, max_archive_bytes

    records = {str(1000 + k): [("00:30", "HR", 70 + k)] * 50 for k in range(10)}
    root = write_set(tmp_path / "data", records, {rid: (10, 3, k % 2) for k, rid in enumerate(records)})
    archive = make_archive(root, tmp_path / "set-a.tar.gz")
    import gzip

    size = len(gzip.decompress(archive.read_bytes()))
    assert max_archive_bytes() == DEFAULT_MAX_ARCHIVE_BYTES == 2 * 1024**3
    monkeypatch.setenv("CONDENSE_MAX_ARCHIVE_BYTES", str(size))  # exactly its size: read
    assert len(read_records(archive).ids) == 10
    monkeypatch.setenv("CONDENSE_MAX_ARCHIVE_BYTES", str(size - 1))
    with pytest.raises(DataError, match=rf"^{archive}: archive expands past {size - 1} bytes \("):
        read_records(archive)
    plain = tmp_path / "set-a.tar"
    plain.write_bytes(gzip.decompress(archive.read_bytes()))
    with pytest.raises(DataError, match=rf"^{plain}: archive is {size} bytes \(.*\), past the bound of {size - 1} bytes"):
        read_records(plain)
    for bad in ("-5", "0", "lots", "1.5e9"):
        monkeypatch.setenv("CONDENSE_MAX_ARCHIVE_BYTES", bad)
        with pytest.raises(DataError, match=rf"^CONDENSE_MAX_ARCHIVE_BYTES must be a whole number of bytes > 0, got '{bad}'$"):
            read_records(archive)


def test_one_record_file_past_the_per_file_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """One 200 MB record took ``predict`` to 3.3 GB (~16x the file) from a folder or a .tar.gz. Each
    file is now checked against ``CONDENSE_MAX_RECORD_BYTES`` (default 8 MiB) from its size first."""
    from condense.data.physionet2012.files import DEFAULT_MAX_RECORD_BYTES, max_record_bytes

    records = {str(1000 + k): [("00:30", "HR", 70 + k)] * 50 for k in range(4)}
    root = write_set(tmp_path / "data", records, {rid: (10, 3, k % 2) for k, rid in enumerate(records)})
    huge = root / "set-a" / "1004.txt"
    with open(huge, "wb") as fh:  # 200 MiB, sparse: reading it would take the memory, not the disk
        fh.truncate(200 * 2**20)
    assert max_record_bytes() == DEFAULT_MAX_RECORD_BYTES == 8 * 2**20
    with pytest.raises(DataError) as err:
        read_records(root)
    assert str(err.value) == (f"{huge}: 209715200 bytes (200.0 MiB), past the bound of 8388608 bytes (8.0 MiB) for one "
                              "record file; not read (a real record is under 100 KB; set CONDENSE_MAX_RECORD_BYTES "
                              "to allow more)")
    huge.unlink()
    archive = make_archive(root, tmp_path / "set-a.tar.gz")
    biggest = max(len((root / "set-a" / f"{rid}.txt").read_bytes()) for rid in records)
    monkeypatch.setenv("CONDENSE_MAX_RECORD_BYTES", str(biggest))  # exactly the biggest: read
    assert len(read_records(archive).ids) == len(read_records(root).ids) == 4
    monkeypatch.setenv("CONDENSE_MAX_RECORD_BYTES", str(biggest - 1))
    with pytest.raises(DataError, match=rf"^{archive}:set-a/\d+\.txt: {biggest} bytes, past the bound of {biggest - 1} "
                                        r"bytes for one record file; not read"):
        read_records(archive)
    with pytest.raises(DataError, match=rf"^{root}/set-a/\d+\.txt: {biggest} bytes, past the bound"):
        read_records(root)
    monkeypatch.setenv("CONDENSE_MAX_RECORD_BYTES", "lots")
    with pytest.raises(DataError, match=r"^CONDENSE_MAX_RECORD_BYTES must be a whole number of bytes > 0, got 'lots'$"):
        read_records(root)


def test_archive_folder_and_set_folder_read_the_same(tmp_path):
    records = {str(1000 + k): [("00:30", "HR", 70 + k), (f"{k:02d}:15", "Temp", 36.5)] for k in range(12)}
    outcomes = {rid: (k, k % 5, k % 2) for k, rid in enumerate(records)}
    root = write_set(tmp_path / "data", records, outcomes)
    archive = make_archive(root, tmp_path / "set-a.tar.gz")
    results = [read_records(p) for p in (archive, root, root / "set-a")]
    for raw in results[1:]:
        assert np.array_equal(raw.ids, results[0].ids)
        assert np.array_equal(raw.y, results[0].y)
        assert np.array_equal(raw.event_value, results[0].event_value)
        assert np.array_equal(raw.static, results[0].static, equal_nan=True)
    assert results[0].has_outcomes and results[2].has_outcomes  # the set folder finds ../Outcomes-a.txt
    assert results[0].y.tolist() == [k % 2 for k in range(12)]


def test_outcomes_file_must_match_the_set_letter(tmp_path):
    outcomes = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n2001,7,2,4,-1,1\n"
    write_set(tmp_path, {"2001": [("00:10", "HR", 70)]}, letter="b")
    (tmp_path / "Outcomes-a.txt").write_text(outcomes)
    raw = read_records(tmp_path)
    assert not raw.has_outcomes and raw.y.tolist() == [-1] and raw.issues["ignored_file"] == 1
    plain = tmp_path / "new-records"  # a folder not named set-* takes its one outcomes file
    plain.mkdir()
    (plain / "2001.txt").write_text(record_text("2001", [("00:10", "HR", 70)]))
    (plain / "Outcomes-x.txt").write_text(outcomes)
    raw = read_records(plain)
    assert raw.has_outcomes and raw.y.tolist() == [1] and raw.saps_i.tolist() == [7.0]


def test_several_set_folders_are_refused(tmp_path):
    write_set(tmp_path, {"1001": []}, letter="a")
    write_set(tmp_path, {"2001": []}, letter="b")
    with pytest.raises(DataError, match=r"several set folders \(set-a, set-b\)"):
        read_records(tmp_path)


# ---------------------------------------------------------------------------------------------
# Outcomes


def test_outcomes_are_optional_and_unlabelled_records_are_scored(tmp_path):
    root = write_set(tmp_path, {str(1000 + k): [("00:30", "HR", 70 + k)] for k in range(20)})
    ds = load_physionet2012(root, quiet=True, cache_dir=tmp_path / "cache")
    ys = np.concatenate([ds.split(s).y for s in ("train", "val", "test")])
    assert len(ys) == 20 and np.all(ys == -1)
    assert all(np.isnan(ds.extras["saps_i"][s]).all() for s in ("train", "val", "test"))


def test_outcome_problems_are_counted_and_scores_minus_one_are_nan(tmp_path):
    records = {str(1000 + k): [("00:30", "HR", 70)] for k in range(4)}
    root = write_set(tmp_path, records, {"1000": (12, 4, 1), "1001": (-1, -1, 0), "1002": (9, 2, "x"),
                                         "9999": (1, 1, 0)})
    raw = read_records(root)
    assert raw.y.tolist() == [1, 0, -1, -1]
    assert raw.saps_i[0] == 12 and np.isnan(raw.saps_i[1]) and np.isnan(raw.sofa[1])
    assert raw.issues == {"bad_label": 1, "outcome_without_record": 1, "record_without_outcome": 1}
    with pytest.raises(DataError, match=r"Outcomes-a\.txt:4: In-hospital_death 'x' is not 0 or 1"):
        read_records(root, strict=True)


# ---------------------------------------------------------------------------------------------
# Fitted state: JSON round trip, never refit, train-only


def test_state_json_round_trip(tmp_path):
    raw = read_records(small_cohort(tmp_path))
    state = PhysioNetState.fit(raw, np.arange(40))
    text = json.dumps(state.to_json())
    again = PhysioNetState.from_json(json.loads(text))
    assert again.to_json() == state.to_json()
    assert again.n_train_records == 40
    X1, i1 = state.transform(raw)
    X2, i2 = again.transform(raw)
    assert np.array_equal(X1, X2) and i1 == i2
    with pytest.raises(ValueError, match="not a PhysioNet 2012 preprocessing state"):
        PhysioNetState.from_json({"format": "something else"})
    broken = json.loads(text)
    del broken["variables"]["HR"]
    with pytest.raises(ValueError, match="lacks variables"):
        PhysioNetState.from_json(broken)


def test_saved_state_scores_new_records_without_refitting(tmp_path):
    ds = load_physionet2012(small_cohort(tmp_path / "orig"), quiet=True, cache_dir=tmp_path / "cache")
    saved = json.loads(json.dumps(ds.extras["source_state"]))
    original = PhysioNetState.from_json(saved)
    shifted_root = small_cohort(tmp_path / "shifted", shift=40.0)  # same records, every HR/Glucose + 40
    split, issues = load_physionet2012_records(shifted_root / "set-a", saved)
    raw = read_records(shifted_root)
    hr = TIME_SERIES_VARIABLES.index("HR")
    lo, hi = original.variables["HR"]["clip"]
    # expected HR channel by hand, with the ORIGINAL clip bounds and imputation value
    expected = np.full((len(raw), 48), np.nan)
    for rec, h, v in zip(raw.event_record[raw.event_variable == hr], raw.event_hours[raw.event_variable == hr],
                         raw.event_value[raw.event_variable == hr]):
        expected[rec, int(h - 1e-6)] = min(max(v, lo), hi)
    for rec in range(len(raw)):
        last = original.variables["HR"]["impute"]
        for b in range(48):
            if np.isnan(expected[rec, b]):
                expected[rec, b] = last
            last = expected[rec, b]
    assert np.allclose(split.X[:, :, CH["HR"]], expected, atol=1e-4)
    assert issues.get("winsorized:HR", 0) > 0, "shifted values beyond the training 99.9th are clipped and counted"
    refit = PhysioNetState.fit(raw, np.arange(len(raw)))
    assert refit.variables["HR"]["impute"] != original.variables["HR"]["impute"]
    assert not np.allclose(split.X, refit.transform(raw)[0]), "a refit would have given other arrays"
    assert split.ids.tolist() == sorted(split.ids.tolist(), key=int) and split.has_labels


def test_training_arrays_do_not_depend_on_test_records(tmp_path):
    root = small_cohort(tmp_path / "a")
    ds = load_physionet2012(root, quiet=True, cache_dir=tmp_path / "cache")
    victim = ds.test.ids[0]
    path = root / "set-a" / f"{victim}.txt"
    path.write_text(path.read_text().replace(",HR,", ",HR,1").replace(",Glucose,", ",Glucose,9"))
    again = load_physionet2012(root, quiet=True, cache_dir=tmp_path / "cache")
    assert again.fingerprint != ds.fingerprint
    assert np.array_equal(again.train.ids, ds.train.ids) and np.array_equal(again.test.ids, ds.test.ids)
    assert np.array_equal(again.train.X, ds.train.X) and np.array_equal(again.val.X, ds.val.X)
    assert again.extras["source_state"] == ds.extras["source_state"]
    assert not np.array_equal(again.test.X[0], ds.test.X[0])


# ---------------------------------------------------------------------------------------------
# Splits, dataset, cache


def test_split_is_seeded_stratified_exact_and_disjoint():
    y = np.array([1] * 139 + [0] * 861)
    parts = split_records(y, seed=3)
    assert [len(p) for p in parts] == [700, 150, 150]
    assert len(np.unique(np.concatenate(parts))) == 1000
    for part in parts:
        assert abs(y[part].mean() - 0.139) < 0.01
    assert all(np.array_equal(a, b) for a, b in zip(parts, split_records(y, seed=3)))
    assert not np.array_equal(parts[0], split_records(y, seed=4)[0])
    with pytest.raises(ValueError, match="fractions"):
        split_records(y, fractions=(0.8, 0.3, 0.1))


def test_dataset_splits_extras_cache_and_dispatch(tmp_path):
    root = small_cohort(tmp_path / "data")
    cache = tmp_path / "cache"
    ds = load_physionet2012(root, quiet=True, cache_dir=cache, seed=5)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [42, 9, 9]
    ids = np.concatenate([ds.split(s).ids for s in ("train", "val", "test")])
    assert len(set(ids.tolist())) == 60
    assert ds.layout == PHYSIONET_LAYOUT and ds.train.X.dtype == np.float32
    assert ds.extras["source_state"]["n_train_records"] == 42
    raw = read_records(root)
    for s in ("train", "val", "test"):
        rows = np.searchsorted(raw.ids.astype(int), ds.split(s).ids.astype(int))
        assert np.array_equal(ds.extras["saps_i"][s], raw.saps_i[rows])
        assert np.array_equal(ds.split(s).y, raw.y[rows])
    assert len(list((cache / "arrays").glob("physionet2012-*.npz"))) == 1
    cached = load_dataset(f"physionet2012:{root}", seed=5, cache_dir=cache, quiet=True)
    assert cached.fingerprint == ds.fingerprint and cached.issues == ds.issues
    assert np.array_equal(cached.test.X, ds.test.X) and np.array_equal(cached.train.ids, ds.train.ids)
    assert load_physionet2012(root, quiet=True, cache_dir=cache, seed=6).fingerprint != ds.fingerprint
    uncached = load_physionet2012(root, quiet=True, cache_dir=tmp_path / "unused", seed=5, use_cache=False)
    assert uncached.fingerprint == ds.fingerprint and np.array_equal(uncached.train.X, ds.train.X)
    assert not (tmp_path / "unused").exists()


# ---------------------------------------------------------------------------------------------
# The real set A (skips without ../shared/data)


def test_real_set_a(physionet_set_a, tmp_path):
    from sklearn.metrics import roc_auc_score

    ds = load_physionet2012(physionet_set_a, quiet=True, cache_dir=tmp_path)
    splits = [ds.split(s) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [2800, 600, 600]
    ids = np.concatenate([s.ids for s in splits])
    assert len(set(ids.tolist())) == 4000
    assert min(ids.astype(int)) == 132539 and max(ids.astype(int)) == 142673
    y = np.concatenate([s.y for s in splits])
    assert int(y.sum()) == 554 and set(y.tolist()) == {0, 1}
    assert all(abs(s.y.mean() - 0.1385) < 0.005 for s in splits), "stratified by label"
    assert ds.issues["no_time_series"] == 3
    assert not any(k.startswith(("unknown_parameter", "malformed", "after_48h")) for k in ds.issues)
    assert ds.issues["out_of_range:Temp"] > 0 and ds.issues["out_of_range:Height"] > 0
    for rid in ("140501", "140936", "141264"):  # static descriptors only
        split = next(s for s in splits if rid in s.ids)
        x = split.X[list(split.ids).index(rid)]
        assert x[:, 37:74].sum() == 0 and np.isfinite(x).all()
    assert all(np.isfinite(s.X).all() for s in splits)
    for name, expected, count in (("saps_i", 0.650, 3810), ("sofa", 0.623, None)):
        score = np.concatenate([ds.extras[name][s] for s in ("train", "val", "test")])
        ok = ~np.isnan(score)
        if count is not None:
            assert ok.sum() == count
        assert roc_auc_score(y[ok], score[ok]) == pytest.approx(expected, abs=0.001)
    # scoring the whole archive with the saved state reproduces the dataset's arrays
    every, _ = load_physionet2012_records(physionet_set_a, ds.extras["source_state"])
    rows = np.searchsorted(every.ids.astype(int), ds.test.ids.astype(int))
    assert np.array_equal(every.X[rows], ds.test.X) and np.array_equal(every.y[rows], ds.test.y)
