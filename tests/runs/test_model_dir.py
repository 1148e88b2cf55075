"""The model directory as one unit (issue 16): written whole under a lock, every file checked on
load, the training data found again by resolved path and fingerprint, malformed directories
reported in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_once import copy_of

from condense.cli import main
from condense.io import read_json, sha256_file
from condense.runs import model_dir as md
from condense.runs.workflow import predict_run, train_run

QUIET = ["--quiet"]


def _train(data, out, cache, model="lr", seed=0, **kwargs):
    return train_run(data=str(data), out_dir=out, model=model, seed=seed, epochs=1, batch_size=32, verbose=0,
                     cache_dir=cache, log=lambda m: None, **kwargs)


def _siblings(out: Path) -> list[str]:
    """Hidden entries beside ``out`` that belong to it (lock file, work folders)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def dnn_dirs(tiny_cohort, tmp_path_factory):
    """Two DNN directories (seeds 0 and 1) and the cache folder; tests copy them before changing."""
    root = tmp_path_factory.mktemp("dnn")
    cache = root / "cache"
    a, b = root / "a", root / "b"
    _train(tiny_cohort, a, cache, model="dnn", seed=0)
    _train(tiny_cohort, b, cache, model="dnn", seed=1)
    assert sha256_file(a / "model.keras") != sha256_file(b / "model.keras")
    return a, b, cache


@pytest.fixture
def lr_dir(trained_lr, tmp_path):
    """A logistic-regression directory of this test's own (a copy of the one trained per test run)."""
    (tmp_path / "models").mkdir()
    return copy_of(trained_lr, tmp_path / "models" / "lr")


# -- written as one unit, under a lock ----------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGSTOP / SIGCONT, flock")
def test_two_trains_into_one_dir_the_second_fails_at_once(tiny_cohort, tmp_path):
    out, cache = tmp_path / "m", tmp_path / "cache"
    cmd = [sys.executable, "-m", "condense", "train", "--data", str(tiny_cohort), "--model", "lr",
           "--cache-dir", str(cache), "--out", str(out), "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".m.lock"
    deadline = time.time() + 120
    try:
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the first train never took the lock"
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # holding the lock, whatever the machine's speed
        try:
            started = time.perf_counter()
            second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            waited = time.perf_counter() - started
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        assert f"{out} is being written by another condense process (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert waited < 60, "refused at once, not after loading data or training"
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    model, inputs, manifest = md.load_run(out)  # complete and consistent
    assert manifest["model"] == "lr" and manifest["files"]["model.lr.json"]["sha256"] == sha256_file(out / "model.lr.json")
    assert _siblings(out) == [], "no lock file or work folder is left"


def test_a_retrain_interrupted_before_its_manifest_leaves_the_old_directory(dnn_dirs, tiny_cohort, tmp_path,
                                                                             monkeypatch):
    a, _, cache = dnn_dirs
    out = tmp_path / "a"
    shutil.copytree(a, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = md.write_json

    def interrupted(path, obj):
        if Path(path).name == md.MANIFEST_FILE:
            assert (Path(path).parent / "model.keras").exists(), "the new model.keras is written by now"
            raise KeyboardInterrupt
        return real(path, obj)

    monkeypatch.setattr(md, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_cohort, out, cache, model="dnn", seed=5)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the old directory, untouched"
    assert _siblings(out) == []
    md.load_run(out)
    assert main(["evaluate", "--model", str(out), "--cache-dir", str(cache), *QUIET]) == 0


def test_a_kill_between_the_two_renames_is_undone_by_the_next_writer(tmp_path, monkeypatch):
    """Where the file system cannot swap two folders atomically: old aside, new in. A kill between
    the two leaves no DIR; the next writer moves the old one back before anything else."""
    out = tmp_path / "m"
    out.mkdir()
    (out / "manifest.json").write_text('"old"')
    new = tmp_path / ".m.tmp-1-ab"
    new.mkdir()
    (new / "manifest.json").write_text('"new"')
    monkeypatch.setattr(md, "_rename_exchange", lambda a, b: False)
    calls = []

    def killed(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for SIGKILL between the two renames
        os.replace(src, dst)

    monkeypatch.setattr(md.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        md._swap_in(new, out)
    monkeypatch.undo()
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match=r"killed while replacing it.*\.m\.old-"):
        md.load_manifest(out)
    with md.model_dir_lock(out):  # what every writer takes first
        assert (out / "manifest.json").read_text() == '"old"'
    assert _siblings(out) == [], "the new half (and the lock) are gone"


def test_the_atomic_swap_replaces_the_whole_directory(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "model.float32.tflite").write_text("from the previous model")
    new = tmp_path / ".m.tmp-1-cd"
    new.mkdir()
    (new / "manifest.json").write_text("{}")
    md._swap_in(new, out)
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert _siblings(out) == []


def test_leftovers_of_killed_writers_are_removed_and_parents_made_for_nothing_too(tiny_cohort, tmp_path):
    out = tmp_path / "m"
    for name in (".m.tmp-999999999-0a", ".m.old-999999999-0b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.keras").write_text("half")
    _train(tiny_cohort, out, tmp_path / "cache")
    assert _siblings(out) == [] and (out / "manifest.json").exists()

    deep = tmp_path / "new" / "deeper" / "m"
    with pytest.raises(ValueError):
        _train(tiny_cohort, deep, tmp_path / "cache", learning_rate=float("inf"))
    with pytest.raises(ValueError):  # a DataError
        _train(tmp_path / "no-such-cohort", deep, tmp_path / "cache")
    assert not (tmp_path / "new").exists(), "a failed train leaves no folders behind"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock")
def test_export_takes_the_same_lock(lr_dir, tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom condense.runs.model_dir import model_dir_lock\n"
         f"with model_dir_lock({str(lr_dir)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["export", "--model", str(lr_dir), "--format", "float32", *QUIET]) == 2
        assert _error(capsys).endswith(f"{lr_dir} is being written by another condense process (pid {holder.pid})")
        assert main(["train", "--data", "synthetic:40", "--model", "lr", "--out", str(lr_dir),
                     "--cache-dir", str(tmp_path / "c2"), *QUIET]) == 2
        assert "is being written by another condense process" in _error(capsys)
        assert not (tmp_path / "c2").exists(), "refused before any data was made"
    finally:
        holder.communicate("")
    assert _siblings(lr_dir) == []


def test_out_that_is_a_file_or_a_foreign_folder_is_refused_before_the_data(tiny_cohort, tmp_path):
    afile = tmp_path / "x"
    afile.write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        _train("synthetic:40", afile, tmp_path / "cache")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a condense model directory.*new or empty folder"):
        _train("synthetic:40", folder, tmp_path / "cache")
    assert afile.read_text() == (folder / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "cache").exists()
    half = tmp_path / "half"  # what an interrupted run of an older condense left: files of ours, no manifest
    half.mkdir()
    (half / "model.keras").write_text("half")
    _train(tiny_cohort, half, tmp_path / "cache")
    assert sorted(p.name for p in half.iterdir()) == ["manifest.json", "model.lr.json", "preprocessing.json"]


# -- hashes checked -----------------------------------------------------------------------------

def test_a_stale_tflite_is_refused(dnn_dirs, tiny_cohort, tmp_path, capsys):
    a, b, cache = dnn_dirs
    out = tmp_path / "a"
    shutil.copytree(a, out)
    assert main(["export", "--model", str(out), "--format", "float32", "--cache-dir", str(cache), *QUIET]) == 0
    capsys.readouterr()
    entry = read_json(out / "manifest.json")["files"]["model.float32.tflite"]
    assert entry["source_sha256"] == sha256_file(out / "model.keras")
    assert main(["evaluate", "--model", str(out), "--format", "float32", "--cache-dir", str(cache), *QUIET]) == 0
    capsys.readouterr()

    # the .tflite itself changed after its export
    changed = tmp_path / "c"
    shutil.copytree(out, changed)
    with open(changed / "model.float32.tflite", "ab") as fh:
        fh.write(b"\0")
    assert main(["evaluate", "--model", str(changed), "--format", "float32", *QUIET]) == 2
    assert f"{changed}/model.float32.tflite is stale" in _error(capsys)

    stale = (f"{out}/model.float32.tflite is stale: it was exported from another model.keras "
             f"(re-run condense export --model {out} --format float32)")

    # another model.keras, recorded in the manifest as if it had been trained here
    shutil.copy(b / "model.keras", out / "model.keras")
    manifest = read_json(out / "manifest.json")
    manifest["files"]["model.keras"] = read_json(b / "manifest.json")["files"]["model.keras"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evaluate", "--model", str(out), "--format", "float32", "--cache-dir", str(cache), *QUIET]) == 2
    assert _error(capsys).endswith(stale)
    assert main(["predict", "--model", str(out), "--format", "float32", "--data", str(tiny_cohort),
                 "--out", str(tmp_path / "p.csv"), *QUIET]) == 2
    assert "is stale" in _error(capsys) and not (tmp_path / "p.csv").exists()
    assert main(["evaluate", "--model", str(out), "--cache-dir", str(cache), *QUIET]) == 0  # Keras itself is fine
    capsys.readouterr()

    # the other directory's files copied over, the old export kept: the manifest does not list it
    for name in ("model.keras", "preprocessing.json", "manifest.json"):
        shutil.copy(b / name, out / name)
    assert main(["evaluate", "--model", str(out), "--format", "float32", "--cache-dir", str(cache), *QUIET]) == 2
    assert "model.float32.tflite is stale: manifest.json does not list it" in _error(capsys)


def test_manifest_hashes_are_checked_on_load(lr_dir, capsys):
    prep = lr_dir / "preprocessing.json"
    prep.write_text(json.dumps(json.loads(prep.read_text())) + "\n")  # same state, other bytes
    assert main(["evaluate", "--model", str(lr_dir), *QUIET]) == 2
    line = _error(capsys)
    assert f"{prep} does not match manifest.json" in line and "changed after condense wrote it" in line


def test_an_old_manifest_without_the_new_fields_still_works(tiny_cohort, lr_dir, tmp_path, capsys):
    manifest = read_json(lr_dir / "manifest.json")
    for key in ("manifest_version",):
        manifest.pop(key)
    manifest["data"] = {"spec": str(tiny_cohort)}  # no resolved spec, no fingerprint
    for entry in manifest["files"].values():
        entry.pop("sha256")
    (lr_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evaluate", "--model", str(lr_dir), "--cache-dir", str(tmp_path / "cache"), *QUIET]) == 0


# -- the training data: resolved path and fingerprint -------------------------------------------

def test_evaluate_without_data_finds_the_training_cohort_from_anywhere_and_refuses_a_changed_one(
        tiny_cohort, tmp_path, monkeypatch, capsys):
    shutil.copytree(tiny_cohort, tmp_path / "c" / "in-hospital-mortality")
    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path / "c")
    _train("in-hospital-mortality", tmp_path / "m", cache)  # typed relative
    data = read_json(tmp_path / "m" / "manifest.json")["data"]
    assert data["spec"] == "in-hospital-mortality"
    assert data["resolved"] == str(tmp_path / "c" / "in-hospital-mortality")
    (tmp_path / "elsewhere" / "in-hospital-mortality").mkdir(parents=True)  # a decoy where the relative path points
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--cache-dir", str(cache), *QUIET]) == 0
    capsys.readouterr()

    listfile = tmp_path / "c" / "in-hospital-mortality" / "test" / "listfile.csv"
    lines = listfile.read_text().splitlines()
    listfile.write_text("\n".join(lines[:-3]) + "\n")  # another cohort at the same place
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--cache-dir", str(cache), *QUIET]) == 2
    line = _error(capsys)
    assert (f"the data at {tmp_path / 'c' / 'in-hospital-mortality'} is not the cohort {tmp_path / 'm'} was trained on"
            in line)
    assert line.endswith("give --data explicitly")
    # scoring another cohort on purpose is what --data is for
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "c" / "in-hospital-mortality"),
                 "--cache-dir", str(cache), *QUIET]) == 0


def test_resolved_specs():
    from condense.data import resolve_data_spec

    assert resolve_data_spec("synthetic:300:4") == "synthetic:300:4"
    assert resolve_data_spec("physionet2012:set-a.tar.gz") == "physionet2012:" + os.path.abspath("set-a.tar.gz")
    assert resolve_data_spec("a/../b") == os.path.abspath("b")


# -- malformed directories: one clear line ------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("[1, 2]", "a JSON list, not an object"),
    ("{}", "no 'model', 'seed', 'files', 'model_file'"),
    ('{"model": "lr", "seed": 0, "files": {}, ', "not valid JSON"),
    ('{"model": "lr", "seed": "0", "files": {}, "model_file": "model.lr.json"}', "'seed' is '0', not an integer"),
])
def test_a_malformed_manifest_is_one_line_naming_the_file(lr_dir, tmp_path, capsys, text, reason):
    (lr_dir / "manifest.json").write_text(text)
    out = tmp_path / "scores.csv"
    for argv in (["evaluate", "--model", str(lr_dir)],
                 ["predict", "--model", str(lr_dir), "--data", "synthetic:40", "--out", str(out)],
                 ["export", "--model", str(lr_dir), "--format", "float32"]):
        assert main(argv + QUIET) == 2
        line = _error(capsys)
        assert f"{lr_dir}/manifest.json is not a condense manifest: " in line and reason in line
    assert not out.exists()


def test_a_truncated_model_keras_and_a_missing_preprocessing_file_are_one_line(dnn_dirs, tmp_path, capsys):
    a, _, _ = dnn_dirs
    out = tmp_path / "a"
    shutil.copytree(a, out)
    data = (out / "model.keras").read_bytes()
    (out / "model.keras").write_bytes(data[: len(data) // 2])
    assert main(["evaluate", "--model", str(out), *QUIET]) == 2
    assert f"{out}/model.keras cannot be loaded (truncated or not a Keras file): " in _error(capsys)

    (out / "model.keras").write_bytes(data)
    (out / "preprocessing.json").unlink()
    assert main(["evaluate", "--model", str(out), *QUIET]) == 2
    assert f"{out}/preprocessing.json is missing: {out} is not a complete model directory" in _error(capsys)


def test_predict_writes_no_csv_when_it_fails_after_scoring(lr_dir, tiny_cohort, tmp_path, monkeypatch):
    import condense.runs.workflow as workflow

    def broken(*args, **kwargs):
        raise ValueError("metrics failed")

    monkeypatch.setattr(workflow, "score_metrics", broken)
    out = tmp_path / "scores.csv"
    with pytest.raises(ValueError, match="metrics failed"):
        predict_run(lr_dir, data=str(tiny_cohort), out_csv=out, cache_dir=tmp_path / "cache", quiet=True)
    assert not out.exists() and not list(tmp_path.glob(".scores*"))
