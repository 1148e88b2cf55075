"""The IHM Discretizer reproduces the benchmark's (48, 76) tensors, bin by bin.

Channel numbers are spelled out here on purpose (not looked up from channels.py): they are the
benchmark's format. Heart Rate is channel 50 (mask 67), diastolic BP channel 2 (mask 60).
"""

from __future__ import annotations

import numpy as np
import pytest

from condense.data.channels import HEADER
from condense.data.dataset import DataError
from condense.data.issues import IssueLog
from condense.data.preprocessing import Discretizer
from condense.data.reference import discretize_reference

HR, HR_MASK = 50, 67
DBP, DBP_MASK = 2, 60


def row(hours, **cells) -> list[str]:
    """One CSV row in header order; keyword names use _ for spaces (Heart_Rate)."""
    values = {name.replace("_", " "): str(v) for name, v in cells.items()}
    unknown = set(values) - set(HEADER)
    assert not unknown, unknown
    return [str(hours)] + [values.get(h, "") for h in HEADER[1:]]


def normal_row() -> np.ndarray:
    """The benchmark's imputed bin before any observation, channel by channel."""
    r = np.zeros(76, dtype=np.float32)
    r[0] = 1.0  # capillary refill "0.0" (position 0 of 2)
    r[2], r[3] = 59.0, 0.21  # diastolic BP, FiO2
    r[4 + 3] = 1.0  # eye opening "4 Spontaneously"
    r[12 + 9] = 1.0  # motor response "6 Obeys Commands"
    r[24 + 4] = 1.0  # GCS total "15"
    r[37 + 6] = 1.0  # verbal response "5 Oriented"
    r[49:59] = [128.0, 86.0, 170.0, 77.0, 98.0, 19.0, 118.0, 36.6, 81.0, 7.4]
    return r


@pytest.fixture
def disc() -> Discretizer:
    return Discretizer()


def test_episode_without_rows_is_the_normal_values_everywhere_with_zero_masks(disc):
    x = disc.transform_episode([])
    assert x.shape == (48, 76) and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.tile(normal_row(), (48, 1)))


@pytest.mark.parametrize(
    "hours, expected_bin",
    [("0", 0), ("0.0", 0), ("0.5", 0), ("1.0", 0), ("1", 0), ("1.00001", 1), ("1.5", 1), ("2.0", 1), ("47.2", 47), ("48", 47), ("48.0000005", 47)],
)
def test_event_time_goes_to_bin_int_t_minus_eps(disc, hours, expected_bin):
    x = disc.transform_episode([row(hours, Heart_Rate=120)])
    observed = np.flatnonzero(x[:, HR_MASK])
    assert observed.tolist() == [expected_bin]
    assert x[expected_bin, HR] == 120.0
    assert np.all(x[:expected_bin, HR] == 86.0)  # normal value before the first observation
    assert np.all(x[expected_bin:, HR] == 120.0)  # carried forward after it


def test_events_after_48_hours_are_dropped_and_counted(disc):
    log = IssueLog()
    x = disc.transform_episode([row("47.5", Heart_Rate=100), row("48.5", Heart_Rate=150)], issues=log)
    assert x[47, HR] == 100.0 and x[:, HR_MASK].sum() == 1.0
    assert log.as_dict() == {"after_end": 1}
    assert str(log.first["after_end"]) == "<rows>:3: Hours 48.5 is after the 48-hour window; row dropped"


def test_after_end_rows_do_not_stop_a_strict_discretizer():
    x = Discretizer(strict=True).transform_episode([row("3", Heart_Rate=100), row("60", Heart_Rate=150)])
    assert x[47, HR] == 100.0


def test_last_value_in_a_bin_wins_in_time_order(disc):
    x = disc.transform_episode(
        [
            row("2.2", Heart_Rate=90),
            row("2.7", Heart_Rate=95),  # bin 2: the later time wins
            row("3.9", Heart_Rate=70),  # bin 3: rows out of order; 3.9 is later than 3.1
            row("3.1", Heart_Rate=60),
            row("5.5", Heart_Rate=50),  # bin 5: equal times, the later row wins
            row("5.5", Heart_Rate=55),
        ]
    )
    assert x[2, HR] == 95.0 and x[3, HR] == 70.0 and x[5, HR] == 55.0
    assert np.flatnonzero(x[:, HR_MASK]).tolist() == [2, 3, 5]


def test_empty_bins_carry_the_last_observation_forward(disc):
    x = disc.transform_episode([row("0.3", Diastolic_blood_pressure=40), row("10.5", Diastolic_blood_pressure=80)])
    np.testing.assert_array_equal(x[:, DBP], [40.0] * 10 + [80.0] * 38)
    np.testing.assert_array_equal(x[:, DBP_MASK], [1.0] + [0.0] * 9 + [1.0] + [0.0] * 37)
    # every other variable is still at its normal value
    others = np.ones(76, dtype=bool)
    others[[DBP, DBP_MASK]] = False
    np.testing.assert_array_equal(x[:, others], np.tile(normal_row(), (48, 1))[:, others])


def test_continuous_values_are_floats(disc):
    x = disc.transform_episode([row("1.5", Fraction_inspired_oxygen="0.35", Temperature="37.25", pH="7.301")])
    assert x[1, 3] == np.float32(0.35) and x[1, 56] == np.float32(37.25) and x[1, 58] == np.float32(7.301)


@pytest.mark.parametrize(
    "variable, text, channel",
    [
        ("Capillary refill rate", "0.0", 0),
        ("Capillary refill rate", "1.0", 1),
        ("Capillary refill rate", "1", 1),  # another spelling of the number 1.0
        ("Glascow coma scale eye opening", "To Pain", 4),
        ("Glascow coma scale eye opening", "3 To speech", 5),
        ("Glascow coma scale eye opening", "To Speech", 9),  # the other spelling: another position
        ("Glascow coma scale eye opening", "2 To pain", 11),
        ("Glascow coma scale motor response", "1 No Response", 12),
        ("Glascow coma scale motor response", "Obeys Commands", 19),
        ("Glascow coma scale motor response", "6 Obeys Commands", 21),
        ("Glascow coma scale motor response", "2 Abnorm extensn", 23),
        ("Glascow coma scale total", "11", 24),
        ("Glascow coma scale total", "3", 30),
        ("Glascow coma scale total", "15.0", 28),  # another spelling of 15
        ("Glascow coma scale total", "8", 36),
        ("Glascow coma scale verbal response", "1 No Response", 37),
        ("Glascow coma scale verbal response", "Oriented", 41),
        ("Glascow coma scale verbal response", "5 Oriented", 43),
        ("Glascow coma scale verbal response", "1.0 ET/Trach", 45),
        ("Glascow coma scale verbal response", "3 Inapprop words", 48),
    ],
)
def test_categorical_values_are_one_hot_in_the_benchmarks_order(disc, variable, text, channel):
    mask = {
        "Capillary refill rate": 59,
        "Glascow coma scale eye opening": 62,
        "Glascow coma scale motor response": 63,
        "Glascow coma scale total": 64,
        "Glascow coma scale verbal response": 65,
    }[variable]
    span = {59: range(0, 2), 62: range(4, 12), 63: range(12, 24), 64: range(24, 37), 65: range(37, 49)}[mask]
    rows = [[("6.5" if h == "Hours" else text if h == variable else "") for h in HEADER]]
    x = disc.transform_episode(rows)
    assert x[6, list(span)].tolist() == [1.0 if c == channel else 0.0 for c in span]
    assert x[47, channel] == 1.0  # carried forward
    assert x[5, list(span)].tolist() == normal_row()[list(span)].tolist()  # normal before
    assert np.flatnonzero(x[:, mask]).tolist() == [6]


@pytest.mark.parametrize(
    "variable, text",
    [("Capillary refill rate", "1.0"), ("Capillary refill rate", "1"), ("Glascow coma scale total", "15.0"), ("Glascow coma scale total", "3"),
     ("Glascow coma scale eye opening", "To Speech"), ("Glascow coma scale verbal response", "1.0 ET/Trach")],
)
def test_categorical_spellings_read_from_files_match_rows(disc, tmp_path, variable, text):
    rows = [[("6.5" if h == "Hours" else text if h == variable else "") for h in HEADER], row("7.5", Heart_Rate=80)]
    path = tmp_path / "1_episode1_timeseries.csv"
    path.write_text(",".join(HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    log = IssueLog()
    np.testing.assert_array_equal(disc.transform_files([path], issues=log)[0][0], disc.transform_episode(rows))
    assert log.counts == {}


def test_masks_mark_exactly_the_bins_with_measurements(disc):
    x = disc.transform_episode(
        [
            row("0", Heart_Rate=80, Glucose=140),
            row("0.5", Heart_Rate=82),
            row("3.25", pH="7.3", Glascow_coma_scale_total=14),
        ]
    )
    expected = np.zeros((48, 17), dtype=np.float32)
    expected[0, [8, 7]] = 1.0  # Heart Rate, Glucose (variables 8 and 7)
    expected[3, [16, 5]] = 1.0  # pH, GCS total
    np.testing.assert_array_equal(x[:, 59:], expected)


def test_file_and_rows_give_the_same_tensor(disc, tmp_path):
    rows = [row("0.25", Heart_Rate=77, Glascow_coma_scale_eye_opening="To Speech"), row("30", Weight="81.5")]
    path = tmp_path / "1_episode1_timeseries.csv"
    path.write_text(",".join(HEADER) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    np.testing.assert_array_equal(disc.transform_episode(path), disc.transform_episode(rows))
    np.testing.assert_array_equal(disc.transform_episode(str(path)), disc.transform_episode(rows))


def test_columns_in_another_order_are_read_by_name(disc):
    header = ["Heart Rate", "Hours", "pH"]
    x = disc.transform_episode([["99", "4.5", "7.2"]], header=header)
    assert x[4, HR] == 99.0 and x[4, 58] == np.float32(7.2) and x[4, HR_MASK] == 1.0


def _random_rows(rng, n_rows: int) -> list[list[str]]:
    from condense.data.channels import CATEGORICAL_VALUES

    times = np.sort(rng.uniform(0, 50, n_rows)).round(4)
    rows = []
    for t in times:
        cells = [repr(float(t))]
        for h in HEADER[1:]:
            if rng.random() < 0.3:
                cells.append(str(rng.choice(CATEGORICAL_VALUES[h])) if h in CATEGORICAL_VALUES else f"{rng.normal(80, 20):.2f}")
            else:
                cells.append("")
        rows.append(cells)
    return rows


@pytest.mark.parametrize("timestep", [1.0, 0.8])
def test_matches_the_benchmarks_per_row_discretizer_on_random_episodes(timestep):
    rng = np.random.default_rng(3)
    disc = Discretizer(timestep=timestep)
    for _ in range(25):
        rows = _random_rows(rng, int(rng.integers(0, 80)))
        expected = discretize_reference(rows, HEADER, timestep=timestep, hours=48.0)
        got = disc.transform_episode(rows)
        assert got.shape == expected.shape == (disc.num_bins, 76)
        np.testing.assert_array_equal(got, expected)


def test_a_batch_of_files_equals_the_per_row_reference(tmp_path):
    rng = np.random.default_rng(5)
    paths, expected = [], []
    for i in range(12):
        rows = _random_rows(rng, 30)
        path = tmp_path / f"{i}_episode1_timeseries.csv"
        path.write_text(",".join(HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows))
        paths.append(path)
        expected.append(discretize_reference(rows, HEADER))
    log = IssueLog()
    X, present = Discretizer().transform_files(paths, issues=log)
    assert present.all() and X.shape == (12, 48, 76) and log.counts == {"after_end": log.counts.get("after_end", 0)}
    np.testing.assert_array_equal(X, np.stack(expected))


def test_bulk_and_careful_parsing_give_identical_tensors(tiny_cohort, monkeypatch):
    files = sorted((tiny_cohort / "test").glob("*_timeseries.csv"))
    bulk_log, careful_log = IssueLog(), IssueLog()
    bulk, _ = Discretizer().transform_files(files, issues=bulk_log)
    monkeypatch.setattr(Discretizer, "_BULK_PARSE", False)
    careful, _ = Discretizer().transform_files(files, issues=careful_log)
    np.testing.assert_array_equal(bulk, careful)
    assert bulk_log.to_json() == careful_log.to_json()


def test_one_bad_cell_leaves_the_other_files_of_the_batch_unchanged(tmp_path):
    rng = np.random.default_rng(8)
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}_episode1_timeseries.csv"
        path.write_text(",".join(HEADER) + "\n" + "".join(",".join(r) + "\n" for r in _random_rows(rng, 20)))
        paths.append(path)
    clean, _ = Discretizer().transform_files(paths)
    paths[3].write_text(paths[3].read_text().replace("\n", "\n" + ",".join(row("0.5", Glucose="oops")) + "\n", 1))
    log = IssueLog()
    mixed, _ = Discretizer().transform_files(paths, issues=log)
    assert log.counts["bad_number"] == 1 and str(log.first["bad_number"]) == f"{paths[3]}:2: 'Glucose' is not a number: 'oops'; treated as missing"
    np.testing.assert_array_equal(np.delete(mixed, 3, axis=0), np.delete(clean, 3, axis=0))


def test_matches_the_reference_on_the_synthetic_cohort(tiny_cohort):
    files = sorted((tiny_cohort / "train").glob("*_timeseries.csv"))[:40]
    X, present = Discretizer().transform_files(files)
    assert present.all()
    for i, path in enumerate(files):
        lines = path.read_text().strip().split("\n")
        expected = discretize_reference([line.split(",") for line in lines[1:]], lines[0].split(","))
        np.testing.assert_array_equal(X[i], expected, err_msg=str(path))


def test_number_of_bins_follows_the_benchmark_formula():
    assert Discretizer().num_bins == 48
    assert Discretizer(timestep=0.8).num_bins == 60
    assert Discretizer(timestep=2.0, hours=24).num_bins == 12


@pytest.mark.parametrize("kwargs, message", [({"timestep": 0}, "timestep must be a positive number of hours, got 0"), ({"hours": -1}, "hours must be")])
def test_bad_settings_are_value_errors_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Discretizer(**kwargs)


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "nope_episode1_timeseries.csv"
    with pytest.raises(DataError, match=f"^{path}: episode file not found$"):
        Discretizer().transform_episode(path)


def test_settings_change_with_anything_that_changes_the_output():
    assert Discretizer().settings() == Discretizer(strict=True).settings()
    assert Discretizer().settings() != Discretizer(timestep=0.5).settings()
    assert Discretizer().get_config() == {"timestep": 1.0, "hours": 48, "strict": False}


def test_windows_line_endings_a_byte_order_mark_and_quoted_cells_read_the_same(disc, tmp_path):
    rows = [row("0.25", Heart_Rate=77, Glascow_coma_scale_verbal_response="1.0 ET/Trach"), row("3", pH="7.31")]
    plain = ",".join(HEADER) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    expected = disc.transform_episode(rows)
    for name, data in {
        "crlf": plain.replace("\n", "\r\n").encode(),
        "bom": b"\xef\xbb\xbf" + plain.encode(),
        "quoted": plain.replace("1.0 ET/Trach", '"1.0 ET/Trach"').encode(),
        "blank-lines": plain.replace("\n", "\n\n").encode(),
    }.items():
        path = tmp_path / f"{name}_episode1_timeseries.csv"
        path.write_bytes(data)
        log = IssueLog()
        np.testing.assert_array_equal(disc.transform_episode(path, issues=log), expected, err_msg=name)
        assert log.counts == {}, name


def test_bulk_parsed_numbers_are_exactly_pythons_float():
    from condense.data.episodes import _parse_bulk

    texts = ["0.00000000000001953", "98.60000000000001", "1.7976931348623157", "7.4", "0.21", "36.6", "1e2", "-0", "12345.6789012345678", ".5", "5."]
    rng = np.random.default_rng(11)
    texts += [f"{rng.uniform(0, 300):.{rng.integers(0, 8)}f}" for _ in range(2000)]
    hr = HEADER.index("Heart Rate")
    lines = [",".join(["1.5" if j == 0 else t if j == hr else "" for j in range(len(HEADER))]) for t in texts]
    obs = _parse_bulk(("\n".join(lines) + "\n").encode(), [len(lines)])
    assert obs is not None and obs.cell_var.tolist() == [hr - 1] * len(texts)
    expected = np.array([float(t) for t in texts])
    assert obs.cell_value.tobytes() == expected.tobytes()  # bit for bit, signs of zero included


def test_bulk_and_careful_paths_agree_on_implausible_values(tmp_path, monkeypatch):
    """A value float32 cannot hold (1e308), one outside its variable's plausible range (-1e30,
    pH 7400): the bulk parse hands such files to the careful path, which counts them; both give
    the same tensors and counts, and the cells read as missing."""
    from condense.data.episodes import _parse_bulk

    rng = np.random.default_rng(12)
    paths = []
    for i in range(5):
        rows = _random_rows(rng, 20)
        if i == 2:
            rows[3][HEADER.index("Heart Rate")] = "1e308"
            rows[4][HEADER.index("Glucose")] = "-1e30"
            rows[5][HEADER.index("pH")] = "7400"
        path = tmp_path / f"{i}_episode1_timeseries.csv"
        path.write_text(",".join(HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows))
        paths.append(path)
    body = paths[2].read_bytes().split(b"\n", 1)[1]
    assert _parse_bulk(body, [body.count(b"\n")]) is None  # never decided by the bulk path
    logs, tensors = [], []
    for bulk in (True, False):
        monkeypatch.setattr(Discretizer, "_BULK_PARSE", bulk)
        log = IssueLog()
        tensors.append(Discretizer().transform_files(paths, issues=log)[0])
        logs.append(log)
    np.testing.assert_array_equal(tensors[0], tensors[1])
    assert logs[0].to_json() == logs[1].to_json()
    counts = {k: n for k, n in logs[0].counts.items() if k != "after_end"}
    assert counts == {"implausible_value:Heart Rate": 1, "implausible_value:Glucose": 1, "implausible_value:pH": 1}
    assert np.isfinite(tensors[0]).all()
    # the same episode with those cells empty is the benchmark's own tensor
    rows = [line.split(",") for line in paths[2].read_text().strip().split("\n")[1:]]
    for r in rows:
        r[:] = ["" if c in ("1e308", "-1e30", "7400") else c for c in r]
    np.testing.assert_array_equal(tensors[0][2], discretize_reference(rows, HEADER))


def test_settings_carry_the_plausible_ranges():
    from condense.data.channels import PLAUSIBLE_RANGES

    ranges = Discretizer().settings()["plausible_ranges"]
    assert ranges == {v: list(bounds) for v, bounds in PLAUSIBLE_RANGES.items()} and ranges["Heart Rate"] == [0.0, 40000.0]
