"""The page's preprocessing (``condense/app/static/preprocess.js``, run by Node) equals condense's
Python readers bit for bit: the raw (48, C) tensor, the model input and the issue counts, on every
synthetic IHM episode, on real PhysioNet 2012 records, and on files with every kind of problem.
Every rule comes from the metadata that ``condense export`` writes (``file_metadata``)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from condense.data.channels import HEADER, IHM_LAYOUT
from condense.data.dataset import DataError
from condense.data.inputs import ModelInputs
from condense.data.issues import IssueLog
from condense.data.preprocessing import Discretizer
from condense.export.metadata import file_metadata

from physionet_files import record_text, write_set  # noqa: E402

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (apt-get install nodejs): the page's "
                                                      "JavaScript preprocessing is not checked")
PREPROCESS_JS = Path(__file__).resolve().parents[2] / "condense" / "app" / "static" / "preprocess.js"
RUNNER = Path(__file__).resolve().parent / "run_preprocess.mjs"


def run_js(tmp_path: Path, metadata: dict, files: list[Path]) -> dict:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"metadata": metadata, "files": [str(f) for f in files]}))
    out = tmp_path / "out.json"
    subprocess.run([NODE, str(RUNNER), str(job), str(out), str(PREPROCESS_JS)], check=True, timeout=300)
    results = json.loads(out.read_text())
    flat = metadata["preprocessing"]["kind"] == "features"  # the DNN's input: one value per channel
    for entry in results.values():
        for key in ("X", "input"):
            if entry[key] is not None:
                array = np.frombuffer(base64.b64decode(entry[key]), dtype=np.float32)
                entry[key] = array if key == "input" and flat else array.reshape(48, -1)
    return results


def metadata_for(inputs: ModelInputs, *, folded: bool = False) -> dict:
    return file_metadata({"model": "hlstm"}, inputs.to_json(), fmt="int8", form="step", steps=48,
                         normalizer_folded=folded)


# -- IHM episodes ---------------------------------------------------------------------------------
HEADER_LINE = ",".join(HEADER)
ROW = "1.5,,60.0,0.4,4 Spontaneously,6 Obeys Commands,15,5 Oriented,140,88,,80,97,18,120,37.2,,7.38"
MESSY_IHM = {
    "bad-cells": [HEADER_LINE, ROW, "2.5,,abc,9e99,To Pain,Nonsense,15.0,Confused,,,,,,,,,,", "3.5,1,,,,,,,,,,,,,,,,,7.5"],
    "ragged-and-duplicate": [HEADER_LINE, ROW, ROW, "4,1,2", "5.25,,55,,,,,,,,,,,,,,,7.2"],
    "bad-hours": [HEADER_LINE, "x,,60,,,,,,,,,,,,,,,", "-2,,61,,,,,,,,,,,,,,,", "-0.0000005,,62,,,,,,,,,,,,,,,",
                  "49.5,,63,,,,,,,,,,,,,,,", "48.0000005,,64,,,,,,,,,,,,,,,", " 7 ,,65,,,,,,,,,,,,,,,"],
    "same-bin-out-of-order": [HEADER_LINE, "3.9,,70,,,,,,,,,,,,,,,", "3.1,,71,,,,,,,,,,,,,,,", "3.9,,72,,,,,,,,,,,,,,,"],
    "columns-reordered": ["pH,Hours,Heart Rate,Extra", "7.3,0.5,90,x", "7.25,10,95,y"],
    "quoted": [HEADER_LINE, '"1.0",,"60",,,,,,,,,,,,,,,"7.4"', '2,,61,,,"4 Spontaneously",,,,,,,,,,,,'],
    "spaces-and-numbers": [HEADER_LINE, "1, ,60,, 1 No Response ,,15.0,,,,,,,,,,,", "2,1,,,,,,3.0,,,,,,,,,,"],
    "crlf": [HEADER_LINE + "\r", ROW + "\r", "2,,59,,,,,,,,,,,,,,,7.1\r"],
    "header-only": [HEADER_LINE],
    "empty": [""],
    "no-hours": ["Time,Heart Rate", "1,80"],
}


@pytest.fixture(scope="module")
def ihm_inputs(tmp_path_factory):
    from condense.data.synthetic import write_cohort

    folder = tmp_path_factory.mktemp("ihm")
    write_cohort(folder / "in-hospital-mortality", episodes=240, seed=7)
    files = sorted((folder / "in-hospital-mortality").rglob("*_timeseries.csv"))
    X = np.stack([Discretizer().transform_episode(f) for f in files[:120]])
    return files, ModelInputs.fit("sequence", X, IHM_LAYOUT)


def test_ihm_episodes_give_the_python_tensors_and_issue_counts(ihm_inputs, tmp_path):
    files, inputs = ihm_inputs
    messy = []
    for name, lines in MESSY_IHM.items():
        path = tmp_path / f"{name}_timeseries.csv"
        path.write_bytes("\n".join(lines).encode() + (b"\n" if lines != [""] else b""))
        messy.append(path)
    (tmp_path / "bom_timeseries.csv").write_bytes(b"\xef\xbb\xbf" + ("\n".join([HEADER_LINE, ROW]) + "\n").encode())
    (tmp_path / "latin1_timeseries.csv").write_bytes(("\n".join([HEADER_LINE, ROW]) + "\n").encode() + b"\xe9\n")
    messy += [tmp_path / "bom_timeseries.csv", tmp_path / "latin1_timeseries.csv"]
    results = run_js(tmp_path, metadata_for(inputs), files + messy)
    kinds = set()
    for path in files + messy:
        log = IssueLog()
        got = results[str(path)]
        try:
            expected = Discretizer().transform_episode(path, issues=log)
        except DataError:
            assert got["skipped"] and got["X"] is None, path.name
            assert got["issues"] == log.counts, path.name
            kinds.update(log.counts)
            continue
        assert not got["skipped"], (path.name, got["error"])
        np.testing.assert_array_equal(got["X"], expected, err_msg=path.name)
        np.testing.assert_array_equal(got["input"], inputs.transform(expected[None])[0], err_msg=path.name)
        assert got["issues"] == log.counts, path.name
        kinds.update(log.counts)
    # the messy files really exercise the rules
    assert {"bad_number", "unknown_category", "ragged_row", "duplicate_row", "bad_hours", "after_end",
            "unknown_column", "missing_column", "empty_episode", "bad_header", "unreadable_file"} <= {
        k.split(":")[0] for k in kinds} | {"implausible_value"}
    assert any(k.startswith("implausible_value:") for k in kinds)


def test_the_dnn_features_are_the_python_ones(ihm_inputs, tmp_path):
    """A model without a time axis (the DNN) ships its batch-1 file: the page computes its features."""
    files, inputs = ihm_inputs
    features = ModelInputs(kind="features", layout=inputs.layout, normalizer=inputs.normalizer)
    results = run_js(tmp_path, metadata_for(features), files[:40])
    for path in files[:40]:
        got = results[str(path)]
        expected = features.transform(Discretizer().transform_episode(path)[None])[0]
        np.testing.assert_array_equal(got["input"], expected, err_msg=path.name)


def test_a_folded_file_takes_the_raw_values_and_a_model_of_another_source_is_refused(ihm_inputs, tmp_path):
    files, inputs = ihm_inputs
    folded = run_js(tmp_path, metadata_for(inputs, folded=True), files[:3])
    for path in files[:3]:
        got = folded[str(path)]
        np.testing.assert_array_equal(got["input"], got["X"])
    record = tmp_path / "132539.txt"
    record.write_text(record_text(132539, [("01:00", "HR", 80)]))
    refused = run_js(tmp_path, metadata_for(inputs), [record])[str(record)]
    assert refused["skipped"] and "this model reads IHM episodes (*_timeseries.csv), not PhysioNet" in refused["error"]


# -- PhysioNet 2012 records ---------------------------------------------------------------------------
MESSY_PHYSIONET = {
    "4001": [("00:30", "HR", 80), ("00:45", "HR", -1), ("01:10", "HR", 900), ("01:20", "Glucose", 2),
             ("01:20", "Glucose", 40000), ("49:00", "HR", 70), "02:00,HR", "2:5,HR,70", "03:00,Nonsense,1",
             "03:10,Temp,abc", ("03:30", "MechVent", 1), ("05:00", "Weight", 81), ("05:59", "pH", 7.31),
             ("05:59", "pH", 7.29), ("06:00", "pH", 7.33), "00:00,ICUType,3", "00:00,RecordID,4999"],
    "4002": [("10:00", "Urine", 0), ("10:00", "Urine", 35)],
}


@pytest.fixture(scope="module")
def physionet(physionet_set_a, tmp_path_factory):
    """200 real set-A records and two messy ones in one set folder, and a state fitted on them."""
    from condense.data.physionet2012 import PHYSIONET_LAYOUT, PhysioNetState, read_records

    root = tmp_path_factory.mktemp("pn")
    with tarfile.open(physionet_set_a) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.startswith("set-a/") and m.name.endswith(".txt")),
                         key=lambda m: m.name)[:200]
        for m in members:
            (root / "set-a").mkdir(exist_ok=True)
            (root / "set-a" / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    records = {rid: record_text(rid, rows) for rid, rows in MESSY_PHYSIONET.items()}
    records["4003"] = "Time,Parameter,Value\n00:00,RecordID,4003\n00:00,Age,200\n00:00,Gender,2\n00:00,Height,-1\n"
    write_set(root, records)
    raw = read_records(root)
    state = PhysioNetState.fit(raw)
    X, _ = state.transform(raw)
    inputs = ModelInputs.fit("sequence", X, PHYSIONET_LAYOUT, source=state.to_json())
    return root / "set-a", raw, state, inputs


def test_physionet_records_give_the_python_tensors_and_issue_counts(physionet, tmp_path):
    from condense.data.physionet2012 import read_records

    folder, raw, state, inputs = physionet
    files = [folder / f"{rid}.txt" for rid in raw.ids]
    results = run_js(tmp_path, metadata_for(inputs), files)
    X, counts = state.transform(raw)
    for k, path in enumerate(files):
        got = results[str(path)]
        np.testing.assert_array_equal(got["X"], X[k], err_msg=path.name)
        np.testing.assert_array_equal(got["input"], inputs.transform(X[k:k + 1])[0], err_msg=path.name)
    total: dict[str, int] = {}
    for entry in results.values():
        for kind, n in entry["issues"].items():
            total[kind] = total.get(kind, 0) + n
    expected = {**raw.issues, **counts}
    expected = {k: v for k, v in expected.items() if k not in ("record_without_outcome", "ignored_file")}
    assert total == expected
    for rid in ("4001", "4003"):  # per record: the messy ones alone
        alone = tmp_path / rid / "set-a"
        alone.mkdir(parents=True)
        shutil.copyfile(folder / f"{rid}.txt", alone / f"{rid}.txt")
        one = read_records(alone.parent)
        _, one_counts = state.transform(one)
        mine = {k: v for k, v in {**one.issues, **one_counts}.items() if k != "record_without_outcome"}
        assert results[str(folder / f"{rid}.txt")]["issues"] == mine, rid
    assert {"malformed_line", "after_48h", "unknown_parameter:Nonsense", "record_id_mismatch", "missing_marker:HR",
            "out_of_range:HR", "out_of_range:Age", "out_of_range:Gender"} <= set(total)
