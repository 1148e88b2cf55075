"""Bad input: each kind is counted and treated as missing (lenient) or stops a strict run, and every
message names the file, the 1-based line and the value received."""

from __future__ import annotations

import numpy as np
import pytest

from condense.data.channels import HEADER
from condense.data.dataset import DataError
from condense.data.ihm import load_ihm

HR, HR_MASK = 50, 67
HEADER_LINE = ",".join(HEADER)


def line(hours, hr="", eye="") -> str:
    cells = [""] * len(HEADER)
    cells[0], cells[HEADER.index("Heart Rate")] = str(hours), str(hr)
    cells[HEADER.index("Glascow coma scale eye opening")] = eye
    return ",".join(cells)


GOOD = f"{HEADER_LINE}\n{line(0.5, 80)}\n{line(5.5, 90)}\n"


def stay(subject: int) -> str:
    return f"{subject}_episode1_timeseries.csv"


def make_folder(tmp_path, bad: dict[str, str | bytes] | None = None, *, train_listfile: str | None = None):
    """train/: subjects 1, 2, 3; val: 4; test/: 5, 6. ``bad`` replaces episode files (by stay)."""
    root = tmp_path / "ihm"
    for folder, subjects in (("train", (1, 2, 3, 4)), ("test", (5, 6))):
        (root / folder).mkdir(parents=True)
        for s in subjects:
            (root / folder / stay(s)).write_text(GOOD)
        (root / folder / "listfile.csv").write_text("stay,y_true\n" + "".join(f"{stay(s)},{s % 2}\n" for s in subjects))
    (root / "val_listfile.csv").write_text(f"stay,y_true\n{stay(4)},0\n")
    for name, content in (bad or {}).items():
        path = root / "train" / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if train_listfile is not None:
        (root / "train" / "listfile.csv").write_text(train_listfile)
    return root


def load(root, **kwargs):
    return load_ihm(root, use_cache=False, quiet=True, **kwargs)


def check(tmp_path, content, kind: str, message: str, capsys=None):
    """Lenient: counted once under ``kind``; strict: DataError with exactly ``message``."""
    root = make_folder(tmp_path, {stay(1): content})
    path = root / "train" / stay(1)
    ds = load(root)
    assert ds.issues == {kind: 1}
    with pytest.raises(DataError) as err:
        load(root, strict=True)
    assert str(err.value) == message.format(path=path, root=root)
    return ds


def test_non_numeric_cell_is_treated_as_missing(tmp_path):
    ds = check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 80)}\n{line(5.5, 'abc')}\n", "bad_number",
               "{path}:3: 'Heart Rate' is not a number: 'abc'; treated as missing")
    x = ds.train.X[0]
    assert x[5, HR_MASK] == 0.0 and x[5, HR] == 80.0  # missing: the earlier value is carried forward


def test_not_finite_numbers_are_bad_numbers(tmp_path):
    check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 'nan')}\n", "bad_number", "{path}:2: 'Heart Rate' is not a number: 'nan'; treated as missing")


def test_unknown_categorical_string_is_treated_as_missing(tmp_path):
    ds = check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 80, eye='5 Wide awake')}\n", "unknown_category",
               "{path}:2: 'Glascow coma scale eye opening' has no category '5 Wide awake'; treated as missing")
    x = ds.train.X[0]
    assert x[0, 62] == 0.0 and x[0, 4 + 3] == 1.0  # eye opening: mask 0, normal value "4 Spontaneously"
    assert x[0, HR] == 80.0 and x[0, HR_MASK] == 1.0  # the rest of the row still counts


def test_negative_hours_drop_the_row(tmp_path):
    ds = check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 80)}\n{line(-2, 120)}\n", "bad_hours", "{path}:3: Hours is negative: '-2'; row dropped")
    assert ds.train.X[0, :, HR_MASK].sum() == 1.0 and np.all(ds.train.X[0, :, HR] == 80.0)


@pytest.mark.parametrize("hours", ["x1", ""])
def test_non_numeric_hours_drop_the_row(tmp_path, hours):
    check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 80)}\n{line(hours, 120)}\n", "bad_hours", f"{{path}}:3: Hours is not a number: {hours!r}; row dropped")


def test_duplicate_rows_are_dropped_and_counted(tmp_path):
    ds = check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 80)}\n{line(3, 90)}\n{line(3, 90)}\n", "duplicate_row", "{path}:4: row repeats line 3; dropped")
    assert ds.train.X[0, 2, HR] == 90.0


def test_unknown_column_is_ignored_and_the_rest_is_read(tmp_path):
    content = "Hours,Heart Rate,Foo\n0.5,80,7\n"
    root = make_folder(tmp_path, {stay(1): content})
    ds = load(root)
    assert ds.issues == {"unknown_column": 1, "missing_column": 16}
    assert ds.train.X[0, 0, HR] == 80.0
    with pytest.raises(DataError, match=rf"^{root / 'train' / stay(1)}:1: column 'Foo' is not one of the 17 IHM variables; ignored$"):
        load(root, strict=True)


def test_missing_column_is_never_measured(tmp_path):
    header = ",".join(h for h in HEADER if h != "pH")
    row = ",".join("0.5" if h == "Hours" else "80" if h == "Heart Rate" else "" for h in HEADER if h != "pH")
    ds = check(tmp_path, f"{header}\n{row}\n", "missing_column", "{path}:1: no column 'pH'; treated as never measured")
    assert np.all(ds.train.X[0, :, 58] == np.float32(7.4)) and ds.train.X[0, 0, HR] == 80.0


@pytest.mark.parametrize(
    "content, message",
    [("", "{path}:1: empty file (no header, no rows); every value imputed"), (HEADER_LINE + "\n", "{path}:1: header only, no data rows; every value imputed")],
)
def test_empty_or_header_only_episode_is_kept_with_imputed_values(tmp_path, content, message):
    ds = check(tmp_path, content, "empty_episode", message)
    x = ds.train.X[0]
    assert ds.train.ids[0] == stay(1)
    assert np.all(x[:, 59:] == 0.0) and np.all(x[:, HR] == 86.0) and np.all(x[:, 2] == 59.0)


def test_ragged_row_is_dropped(tmp_path):
    check(tmp_path, f"{HEADER_LINE}\n{line(0.5, 80)}\n1.5,99\n", "ragged_row", "{path}:3: row has 2 cells, the header has 18; row dropped")


def test_file_without_hours_column_is_skipped(tmp_path):
    ds = check(tmp_path, "Time,Heart Rate\n0.5,80\n", "bad_header", "{path}:1: no 'Hours' column in the header 'Time,Heart Rate'; episode skipped")
    assert stay(1) not in ds.train.ids.tolist()


def test_file_that_is_not_utf8_is_skipped(tmp_path):
    check(tmp_path, (GOOD + "0.7,\xff\n").encode("latin-1"), "unreadable_file", "{path}:4: not UTF-8 text: byte 0xff")


def test_missing_episode_file_is_skipped_and_named_with_its_listfile_row(tmp_path, capsys):
    root = make_folder(tmp_path)
    (root / "train" / stay(2)).unlink()
    ds = load_ihm(root, use_cache=False)
    assert ds.issues == {"missing_file": 1} and stay(2) not in ds.train.ids.tolist() and len(ds.train) == 2
    err = capsys.readouterr().err
    assert f"missing_file x1 (first {root / 'train' / 'listfile.csv'}:3)" in err
    with pytest.raises(DataError) as exc:
        load(root, strict=True)
    assert str(exc.value) == f"{root / 'train' / 'listfile.csv'}:3: episode file {root / 'train' / stay(2)} not found; episode skipped"


@pytest.mark.parametrize(
    "row, kind, message",
    [
        (f"{stay(2)},2", "bad_label", f"label of '{stay(2)}' must be 0 or 1, got '2'; skipped"),
        (f"{stay(2)},yes", "bad_label", f"label of '{stay(2)}' must be 0 or 1, got 'yes'; skipped"),
        (f"{stay(2)}", "bad_listfile_row", f"expected 2 cells (stay,y_true), got 1: '{stay(2)}'; skipped"),
        (f"../{stay(2)},1", "bad_listfile_row", f"bad episode file name '../{stay(2)}'; skipped"),
        (f"{stay(1)},1", "duplicate_stay", f"'{stay(1)}' is already listed at line 2; skipped"),
    ],
)
def test_bad_listfile_rows_are_skipped(tmp_path, row, kind, message):
    listfile = f"stay,y_true\n{stay(1)},1\n{row}\n{stay(3)},1\n{stay(4)},0\n"
    root = make_folder(tmp_path, train_listfile=listfile)
    ds = load(root)
    assert ds.issues == {kind: 1} and ds.train.ids.tolist() == [stay(1), stay(3)]
    with pytest.raises(DataError) as exc:
        load(root, strict=True)
    assert str(exc.value) == f"{root / 'train' / 'listfile.csv'}:3: {message}"


def test_listfile_without_its_header_is_an_error_in_any_mode(tmp_path):
    root = make_folder(tmp_path, train_listfile=f"stay,label\n{stay(1)},1\n")
    with pytest.raises(DataError, match=rf"^{root / 'train' / 'listfile.csv'}:1: expected the listfile header 'stay,y_true', got 'stay,label'$"):
        load(root)


def test_missing_or_wrong_data_folder_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path / 'nowhere'}: data folder not found$"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=rf"^{tmp_path / 'empty'}: not an IHM benchmark folder \(expected train/listfile.csv and test/listfile.csv"):
        load(tmp_path / "empty")


def test_strict_mode_stops_at_the_first_problem_in_reading_order(tmp_path):
    # stay 1 (read first) has a bad number, found late in the batch; stay 3 has an unknown column,
    # found while its header is read: strict mode must still name stay 1.
    root = make_folder(tmp_path, {stay(1): f"{HEADER_LINE}\n{line(0.5, '??')}\n", stay(3): "Hours,Heart Rate,Foo\n0.5,80,1\n"})
    with pytest.raises(DataError, match=rf"^{root / 'train' / stay(1)}:2: 'Heart Rate' is not a number: '\?\?'"):
        load(root, strict=True, workers=2)


def test_strict_mode_names_the_earliest_problem_across_worker_batches(tmp_path):
    root = make_folder(tmp_path)
    listed = [stay(s) for s in range(100, 180)]
    for i, name in enumerate(listed):
        hr = "bad-early" if i == 5 else "bad-late" if i == 70 else 80
        (root / "train" / name).write_text(f"{HEADER_LINE}\n{line(0.5, hr)}\n")
    (root / "train" / "listfile.csv").write_text("stay,y_true\n" + "".join(f"{n},0\n" for n in listed + [stay(4)]))
    lenient = load(root, workers=2)
    assert lenient.issues == {"bad_number": 2} and len(lenient.train) == 80
    with pytest.raises(DataError, match=rf"^{root / 'train' / listed[5]}:2: 'Heart Rate' is not a number: 'bad-early'"):
        load(root, strict=True, workers=2)


def test_lenient_mode_counts_every_problem_and_summarizes_on_stderr(tmp_path, capsys):
    bad = {
        stay(1): f"{HEADER_LINE}\n{line(0.5, 'abc')}\n{line(1.5, 'def')}\n{line(2.5, 70, eye='Awake')}\n",
        stay(3): f"{HEADER_LINE}\n{line(-1, 80)}\n{line(60, 80)}\n",
    }
    root = make_folder(tmp_path, bad)
    ds = load_ihm(root, use_cache=False)
    assert ds.issues == {"bad_hours": 1, "bad_number": 2, "unknown_category": 1, "after_end": 1}
    summary = [l for l in capsys.readouterr().err.splitlines() if "bad input" in l]
    p1, p3 = root / "train" / stay(1), root / "train" / stay(3)
    assert summary == [
        f"bad input: 4 problem(s) counted, treated as missing or skipped (--strict stops at the first): "
        f"bad_hours x1 (first {p3}:2); bad_number x2 (first {p1}:2); unknown_category x1 (first {p1}:4) | "
        f"1 row(s) after the 48-hour window dropped, as the benchmark does (first {p3}:3)"
    ]


def test_strict_mode_is_not_fooled_by_a_cache_written_in_lenient_mode(tmp_path, capsys):
    root = make_folder(tmp_path, {stay(1): f"{HEADER_LINE}\n{line(0.5, 'abc')}\n"})
    cache = tmp_path / "cache"
    assert load_ihm(root, cache_dir=cache, quiet=True).issues == {"bad_number": 1}
    again = load_ihm(root, cache_dir=cache)
    assert again.issues == {"bad_number": 1} and "cache hit" in capsys.readouterr().err  # counts survive the cache
    with pytest.raises(DataError, match="'Heart Rate' is not a number: 'abc'"):
        load_ihm(root, cache_dir=cache, quiet=True, strict=True)


def test_training_needs_every_record_labelled_and_both_classes():
    """Dataset.require_labels: records without an outcome (label -1) and single-class splits are
    refused before training, naming the split, the count and the first ids."""
    import numpy as np

    from condense.data import DataError, Dataset, Split
    from condense.data.channels import IHM_LAYOUT as layout

    def part(y):
        y = np.asarray(y)
        return Split(X=np.zeros((len(y), 2, 1), np.float32), y=y, ids=np.array([f"r{i}" for i in range(len(y))]))

    ok = Dataset("test", layout, part([0, 1, 0]), part([0, 1]), part([1, 0]), fingerprint="f")
    ok.require_labels()
    missing = Dataset("physionet2012", layout, part([0, -1, 1, -1]), part([0, 1]), part([1, 0]), fingerprint="f")
    with pytest.raises(DataError, match=r"physionet2012: 2 of 4 train records have no outcome label \(first: r1, r3\)"):
        missing.require_labels()
    one_class = Dataset("ihm", layout, part([0, 1]), part([0, 1]), part([0, 0, 0]), fingerprint="f")
    with pytest.raises(DataError, match=r"the test split holds only label 0 \(3 records\)"):
        one_class.require_labels()


# -- values that cannot be measurements: not finite as float32, or outside the plausible range ----


def cells(hours, **values) -> str:
    """One episode line; keyword names use _ for spaces (Heart_Rate=80)."""
    row = [""] * len(HEADER)
    row[0] = str(hours)
    for name, value in values.items():
        row[HEADER.index(name.replace("_", " "))] = str(value)
    return ",".join(row)


@pytest.mark.parametrize(
    "variable, text, kind, why",
    [
        ("Heart Rate", "1e308", "implausible_value:Heart Rate", "does not fit in float32"),  # finite in float64, inf in float32
        ("Heart Rate", "-1e30", "implausible_value:Heart Rate", "is outside the plausible range [0, 40000]"),
        ("pH", "7400", "implausible_value:pH", "is outside the plausible range [0, 1400]"),
        ("Temperature", "-60", "implausible_value:Temperature", "is outside the plausible range [-50, 10000]"),
    ],
)
def test_implausible_values_are_counted_and_treated_as_missing(tmp_path, variable, text, kind, why):
    first = f"{HEADER_LINE}\n{cells(0.5, Heart_Rate=80, pH=7.3, Temperature=37.1)}\n"
    bad = first + f"{cells(5.5, Glucose=150, **{variable.replace(' ', '_'): text})}\n"
    ds = check(tmp_path / "bad", bad, kind, f"{{path}}:3: {variable!r} value {text!r} {why}; treated as missing")
    blank = load(make_folder(tmp_path / "blank", {stay(1): first + f"{cells(5.5, Glucose=150)}\n"}))
    np.testing.assert_array_equal(ds.train.X, blank.train.X)  # exactly as if the cell were empty
    x = ds.train.X[0]
    assert np.isfinite(ds.train.X).all() and x[5, 49] == 150.0  # the rest of the row still counts
    assert x[5, HR] == 80.0 and x[5, 58] == np.float32(7.3) and x[5, 56] == np.float32(37.1)  # carried forward


def test_implausible_values_are_counted_per_variable_and_summarized(tmp_path, capsys):
    bad = {
        stay(1): f"{HEADER_LINE}\n{cells(0.5, Heart_Rate='1e308')}\n{cells(1.5, Heart_Rate='-1e30', Glucose=250000)}\n",
        stay(3): f"{HEADER_LINE}\n{cells(0.5, Heart_Rate=1e200)}\n",  # rows given as numbers
    }
    root = make_folder(tmp_path, bad)
    ds = load_ihm(root, use_cache=False)
    assert ds.issues == {"implausible_value:Glucose": 1, "implausible_value:Heart Rate": 3}
    p1 = root / "train" / stay(1)
    summary = [l for l in capsys.readouterr().err.splitlines() if "bad input" in l]
    assert summary == [
        "bad input: 4 problem(s) counted, treated as missing or skipped (--strict stops at the first): "
        f"implausible_value:Glucose x1 (first {p1}:3); implausible_value:Heart Rate x3 (first {p1}:2)"
    ]
    x1 = ds.train.X[ds.train.ids.tolist().index(stay(1))]
    assert np.all(x1[:, HR] == 86.0) and x1[:, HR_MASK].sum() == 0.0  # never measured: the normal value
    with pytest.raises(DataError, match=rf"^{p1}:2: 'Heart Rate' value '1e308' does not fit in float32; treated as missing$"):
        load(root, strict=True)


def test_values_at_the_plausible_bounds_and_the_synthetic_typos_are_kept(tmp_path):
    # the bounds are inclusive; the synthetic cohort's typos (SpO2 98 charted as 9800, diastolic
    # up to 140 x 100) and FiO2 as a fraction or a percent are values the real files hold
    body = (f"{cells(0.5, Heart_Rate=0, Oxygen_saturation=10000, Diastolic_blood_pressure=14000)}\n"
            f"{cells(1.5, Heart_Rate=40000, Fraction_inspired_oxygen=0.21, Temperature=-17.8)}\n"
            f"{cells(2.5, Fraction_inspired_oxygen=100, pH=1400, Temperature='1e4')}\n")
    ds = load(make_folder(tmp_path, {stay(1): f"{HEADER_LINE}\n{body}"}))
    assert ds.issues == {}
    x = ds.train.X[ds.train.ids.tolist().index(stay(1))]
    assert x[0, 53] == 10000.0 and x[0, 2] == 14000.0 and x[1, HR] == 40000.0 and x[2, 3] == 100.0


def test_plausible_ranges_hold_every_value_the_synthetic_generator_can_write():
    from condense.data.channels import CONTINUOUS_VARIABLES, NORMAL_VALUES, PLAUSIBLE_RANGES

    assert tuple(PLAUSIBLE_RANGES) == CONTINUOUS_VARIABLES
    # the generator's clip limits (condense/data/synthetic.py:_values), typos included
    extremes = {"Diastolic blood pressure": (0, 20000), "Fraction inspired oxygen": (0.21, 1.0), "Glucose": (30, 900),
                "Heart Rate": (25, 230), "Height": (0, 500), "Mean blood pressure": (0, 300),
                "Oxygen saturation": (0, 10000), "Respiratory rate": (4, 60), "Systolic blood pressure": (0, 300),
                "Temperature": (32, 42.5), "Weight": (0, 500), "pH": (6.8, 7.7)}
    for variable, (lo, hi) in extremes.items():
        low, high = PLAUSIBLE_RANGES[variable]
        assert low <= lo and hi <= high and low < float(NORMAL_VALUES[variable]) < high, variable


def test_a_cache_written_before_the_plausibility_rules_is_not_reused(tmp_path, monkeypatch, capsys):
    from condense.data import preprocessing

    root = make_folder(tmp_path, {stay(1): f"{HEADER_LINE}\n{cells(0.5, Heart_Rate='1e308')}\n"})
    cache = tmp_path / "cache"
    settings = preprocessing.Discretizer.settings
    assert settings(preprocessing.Discretizer())["plausible_ranges"]["Heart Rate"] == [0.0, 40000.0]
    # an older reader: no plausibility rules in its settings (so another cache key)
    monkeypatch.setattr(preprocessing.Discretizer, "settings",
                        lambda self: {k: v for k, v in settings(self).items() if k != "plausible_ranges"} | {"version": 1})
    load_ihm(root, cache_dir=cache, quiet=True)
    monkeypatch.undo()
    ds = load_ihm(root, cache_dir=cache)
    assert "cache hit" not in capsys.readouterr().err
    assert ds.issues == {"implausible_value:Heart Rate": 1} and np.isfinite(ds.train.X).all()
    again = load_ihm(root, cache_dir=cache)
    assert "cache hit" in capsys.readouterr().err and again.issues == ds.issues


def test_training_with_one_huge_value_counts_it_and_learns(tiny_cohort, tmp_path, capsys):
    """End to end: one cell of 1e308 (finite in float64, inf in float32) in a training episode
    used to give the normalizer an infinite mean, NaN inputs and a test AUROC of exactly 0.5;
    it is counted, read as missing, and training learns as usual."""
    import json
    import shutil

    from condense.cli import main

    data = tmp_path / "in-hospital-mortality"
    shutil.copytree(tiny_cohort, data)
    listed = (data / "train_listfile.csv").read_text().splitlines()[1].split(",")[0]  # a training episode
    episode = data / "train" / listed
    lines = episode.read_text().split("\n")
    hr = HEADER.index("Heart Rate")
    # the last heart rate of the window: nothing later in its bin overrides it
    number = max(n for n, text in enumerate(lines[1:], start=1) if text and text.split(",")[hr] and float(text.split(",")[0]) < 47)
    row = lines[number].split(",")
    row[hr] = "1e308"
    lines[number] = ",".join(row)
    episode.write_text("\n".join(lines))

    out = tmp_path / "lstm"
    assert main(["train", "--data", str(data), "--model", "lstm", "--out", str(out), "--epochs", "2",
                 "--batch-size", "32", "--cache-dir", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    assert f"implausible_value:Heart Rate x1 (first {episode}:{number + 1})" in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["issues"]["implausible_value:Heart Rate"] == 1
    auroc = manifest["metrics"]["test"]["auroc"]
    assert np.isfinite(auroc) and auroc != 0.5 and auroc > 0.6, auroc
    normalizer = json.loads((out / "preprocessing.json").read_text())["normalizer"]
    assert np.isfinite(normalizer["mean"]).all() and np.isfinite(normalizer["std"]).all()
