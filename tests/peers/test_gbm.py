"""condense.peers.gbm: the LightGBM peer on the LR's hand-made features, its files, and
``condense train --model gbm`` end to end."""

from __future__ import annotations

import json
import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from condense.cli import main
from condense.io import read_json
from condense.peers.gbm import GradientBoostingPeer, sidecar_path
from condense.peers.features import feature_names, hand_features
from condense.runs import model_dir as md
from condense.data.inputs import fit_inputs, prepared_splits

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def splits(tiny_dataset):
    """The tiny cohort as the peer reads it: the standardized sequences, as the workflow makes them."""
    x = prepared_splits(tiny_dataset, fit_inputs(tiny_dataset, "sequence"))
    y = {name: tiny_dataset.split(name).y for name in ("train", "val", "test")}
    return x, y, tiny_dataset.layout


def _fit(splits, **kwargs) -> GradientBoostingPeer:
    x, y, layout = splits
    return GradientBoostingPeer(**kwargs).fit(x["train"], y["train"], layout, X_val=x["val"], y_val=y["val"])


@pytest.fixture(scope="module")
def fitted(splits):
    return _fit(splits, seed=0)


def test_fit_predicts_probabilities_from_the_lr_features(fitted, splits):
    x, _, layout = splits
    p = fitted.predict_proba(x["test"])
    assert p.shape == (len(x["test"]),) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    assert fitted.feature_names_ == feature_names(layout)
    assert fitted.booster_.num_feature() == len(feature_names(layout))
    F = hand_features(x["test"], layout)
    assert np.array_equal(fitted.transform(x["test"]), F, equal_nan=True), "the LR's features, NaN kept"
    assert np.array_equal(fitted.booster_.predict(F, num_threads=1), p)
    logits = fitted.decision_function(x["test"])
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-logits)), rtol=1e-12)


def test_early_stopping_keeps_the_best_validation_iteration(fitted, splits):
    history = fitted.val_auroc_history_
    assert len(history) == fitted.iterations_run_
    assert fitted.best_iteration_ == int(np.argmax(history)) + 1, "the first round of the best validation AUROC"
    assert fitted.val_auroc_ == history[fitted.best_iteration_ - 1]
    assert fitted.booster_.num_trees() == fitted.best_iteration_, "only the trees up to the best round are kept"
    if fitted.iterations_run_ < fitted.max_rounds:  # stopped early: patience rounds after the best one
        assert fitted.iterations_run_ - fitted.best_iteration_ == fitted.early_stopping_rounds
    short = _fit(splits, max_rounds=3, early_stopping_rounds=50)
    assert short.iterations_run_ == 3 and 1 <= short.best_iteration_ <= 3 and len(short.val_auroc_history_) == 3


def test_param_count_counts_leaves_and_splits(fitted):
    trees = fitted.booster_.dump_model()["tree_info"]
    leaves = sum(t["num_leaves"] for t in trees)
    assert fitted.param_count == leaves + (leaves - len(trees)) > 0


def test_same_seed_same_file_bytes(fitted, splits, tmp_path):
    again = _fit(splits, seed=0)
    fitted.save(tmp_path / "a.txt")
    again.save(tmp_path / "b.txt")
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    other = _fit(splits, seed=1)
    assert other.model_text_ != fitted.model_text_, "the seed decides bagging and feature sampling"


def test_saved_files_are_lightgbm_text_and_json(fitted, splits, tmp_path):
    x, _, layout = splits
    written = fitted.save(tmp_path / "model.gbm.txt")
    assert written == [tmp_path / "model.gbm.txt", tmp_path / "model.gbm.json"]
    assert sidecar_path(tmp_path / "model.gbm.txt") == tmp_path / "model.gbm.json"
    text = (tmp_path / "model.gbm.txt").read_text(encoding="utf-8")
    assert text.startswith("tree\nversion=v4\n")
    meta = json.loads((tmp_path / "model.gbm.json").read_text(encoding="utf-8"))
    assert meta["format"] == "condense.peers.gbm" and meta["layout_name"] == layout.name
    assert meta["best_iteration"] == fitted.best_iteration_ and len(meta["feature_names"]) == len(feature_names(layout))
    assert not list(tmp_path.glob(".*tmp*")), "atomic writes left no temporary behind"
    import lightgbm as lgb  # any LightGBM reads the booster file on its own

    plain = lgb.Booster(model_file=str(tmp_path / "model.gbm.txt"))
    assert np.array_equal(plain.predict(hand_features(x["test"], layout)), fitted.predict_proba(x["test"]))
    with pytest.raises(ValueError, match=r"ends in \.txt"):
        fitted.save(tmp_path / "model.gbm.bin")


def test_reload_in_a_fresh_process_gives_identical_predictions(fitted, splits, tmp_path):
    x, _, _ = splits
    fitted.save(tmp_path / "model.gbm.txt")
    np.save(tmp_path / "x.npy", x["test"])
    script = textwrap.dedent(f"""
        import numpy as np
        from condense.peers.gbm import GradientBoostingPeer
        peer = GradientBoostingPeer.load({str(tmp_path / "model.gbm.txt")!r})
        np.save({str(tmp_path / "p.npy")!r}, peer.predict_proba(np.load({str(tmp_path / "x.npy")!r})))
        print(peer.param_count, peer.best_iteration_)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    p_fresh = np.load(tmp_path / "p.npy")
    p_here = fitted.predict_proba(x["test"])
    assert p_fresh.dtype == np.float64 and p_fresh.tobytes() == p_here.tobytes(), "bit-identical"
    assert proc.stdout.split() == [str(fitted.param_count), str(fitted.best_iteration_)]


class _Trap:
    """Unpickling this touches a marker file: the proof that a loader ran pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_pickle_renamed_to_the_model_file_is_refused_without_unpickling(fitted, tmp_path):
    fitted.save(tmp_path / "model.gbm.txt")
    marker = tmp_path / "unpickled"
    (tmp_path / "model.gbm.txt").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ValueError, match=r"not a LightGBM text model \(it starts with b'\\x80"):
        GradientBoostingPeer.load(tmp_path / "model.gbm.txt")
    assert not marker.exists(), "nothing was unpickled"
    pickle.loads(pickle.dumps(_Trap(marker)))  # the trap works: unpickling it does touch the marker
    assert marker.exists()


def test_load_refuses_mismatched_or_foreign_files(fitted, tmp_path):
    path = tmp_path / "model.gbm.txt"
    fitted.save(path)
    good = read_json(sidecar_path(path))
    cases = {
        "format": ({**good, "format": "sklearn-pickle"}, r"not a condense.peers.gbm model's"),
        "version": ({**good, "format_version": 9}, r"format_version 9 is not supported"),
        "sha": ({**good, "model_sha256": "0" * 64}, r"not the one its metadata was written with"),
        "names": ({**good, "feature_names": good["feature_names"][:-1]}, r"saved feature names \(832\) differ"),
        "best": ({**good, "best_iteration": good["iterations_run"] + 1}, r"best_iteration \d+ is not within"),
        "missing": ({k: v for k, v in good.items() if k != "layout"}, r"missing or mistypes a field"),
    }
    for name, (meta, match) in cases.items():
        sidecar_path(path).write_text(json.dumps(meta), encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            GradientBoostingPeer.load(path)
    sidecar_path(path).write_text(json.dumps(good), encoding="utf-8")
    path.write_text(fitted.model_text_.replace("Tree=0", "Tree=X", 1), encoding="utf-8")  # damaged, same header
    with pytest.raises(ValueError, match=r"sha256 differs"):
        GradientBoostingPeer.load(path)
    truncated = fitted.model_text_[: len(fitted.model_text_) // 2]  # recorded as it is: LightGBM refuses it
    path.write_text(truncated, encoding="utf-8")
    import hashlib

    sidecar_path(path).write_text(json.dumps({**good, "model_sha256": hashlib.sha256(truncated.encode()).hexdigest()}))
    with pytest.raises(ValueError, match=r"LightGBM cannot parse the booster"):
        GradientBoostingPeer.load(path)
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"no gradient-boosting metadata at"):
        GradientBoostingPeer.load(path)
    with pytest.raises(FileNotFoundError, match=r"no gradient-boosting model at"):
        GradientBoostingPeer.load(tmp_path / "absent.txt")


def test_argument_validation_and_unfitted_use(splits):
    x, y, layout = splits
    for kwargs, match in (({"learning_rate": 0}, r"learning_rate must be a number in \(0, 1\)"),
                          ({"num_leaves": 1}, r"num_leaves must be a whole number >= 2"),
                          ({"feature_fraction": 1.5}, r"feature_fraction must be a number in \(0, 1\]"),
                          ({"max_rounds": 0}, r"max_rounds must be a whole number >= 1"),
                          ({"seed": -1}, r"seed must be a whole number >= 0")):
        with pytest.raises(ValueError, match=match):
            GradientBoostingPeer(**kwargs)
    peer = GradientBoostingPeer()
    with pytest.raises(NotFittedError):
        peer.predict_proba(x["test"])
    with pytest.raises(NotFittedError):
        peer.param_count
    with pytest.raises(ValueError, match=r"y_val must hold both classes"):
        peer.fit(x["train"], y["train"], layout, X_val=x["val"], y_val=np.zeros_like(y["val"]))
    with pytest.raises(ValueError, match=r"y must have shape"):
        peer.fit(x["train"], y["train"][:-1], layout, X_val=x["val"], y_val=y["val"])


# -- the command line ---------------------------------------------------------------------------

def _condense(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "condense", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def gbm_dir(tiny_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("gbm")
    out, cache = root / "m", root / "cache"
    proc = _condense("train", "--data", tiny_cohort, "--model", "gbm", "--cache-dir", cache, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "gbm:" in proc.stdout and "early stopping on validation AUROC" in proc.stdout
    return out, cache


def test_condense_train_gbm_then_evaluate_in_a_fresh_process(gbm_dir, tmp_path):
    out, cache = gbm_dir
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.gbm.json", "model.gbm.txt",
                                                    "preprocessing.json"]
    manifest = read_json(out / "manifest.json")
    assert manifest["model"] == "gbm" and manifest["model_file"] == "model.gbm.txt"
    assert set(manifest["files"]) == {"model.gbm.txt", "model.gbm.json", "preprocessing.json"}
    assert manifest["selected_epoch"] >= 1 and len(manifest["val_auroc_history"]) >= manifest["selected_epoch"]
    assert "lightgbm" in manifest["library_versions"]
    model, inputs, _ = md.load_run(out)
    assert isinstance(model, GradientBoostingPeer) and manifest["params"] == model.param_count
    proc = _condense("evaluate", "--model", out, "--cache-dir", cache, "--json", tmp_path / "e.json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    again = read_json(tmp_path / "e.json")["test"]
    assert again["auroc"] == manifest["metrics"]["test"]["auroc"]
    assert again["auroc_ci"] == manifest["metrics"]["test"]["auroc_ci"]


def test_export_and_tflite_scoring_of_a_gbm_directory_are_clear_errors(gbm_dir, capsys):
    out, cache = gbm_dir
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["export", "--model", str(out), "--format", "float32", "--cache-dir", str(cache), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{out}: the gradient-boosting model has no .tflite export" in err
    assert main(["evaluate", "--model", str(out), "--format", "float32", "--cache-dir", str(cache), "--quiet"]) == 2
    assert "the gradient-boosting model has no .tflite export; score the saved model itself" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_changed_model_file_is_refused_by_the_model_directory(gbm_dir, tmp_path):
    import shutil

    out, _ = gbm_dir
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    (copy / "model.gbm.txt").write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(md.ModelDirError, match=r"not a LightGBM text model"):
        md.load_run(copy)
    shutil.copy(out / "model.gbm.txt", copy / "model.gbm.txt")
    (copy / "model.gbm.json").unlink()
    with pytest.raises(md.ModelDirError, match=r"model.gbm.json is missing"):
        md.load_run(copy)
