"""condense.distill and ``condense train --teacher``: the loss target, cross-fitting, teachers refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condense import distill
from condense.cli import main
from condense.distill import distill_targets, fold_assignment, soften
from condense.train import TrainConfig


def test_the_target_mixes_labels_and_softened_teacher_probabilities():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.9, 0.5, 0.0])
    np.testing.assert_allclose(distill_targets(y, p, 0.25), 0.25 * y + 0.75 * p, rtol=1e-6)
    np.testing.assert_allclose(distill_targets(y, p, 1.0), y)
    np.testing.assert_allclose(distill_targets(y, p, 0.0), p, rtol=1e-6)
    logit = np.log(0.9 / 0.1)
    assert soften(np.array([0.9]), 2.0)[0] == pytest.approx(1 / (1 + np.exp(-logit / 2)))
    assert soften(np.array([0.0, 0.5, 1.0]), 3.0).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        distill_targets(y, np.array([0.2, 1.5, 0.1, 0.0]), 0.5)


@pytest.mark.parametrize("alpha, temperature", [(0.5, 1.0), (0.3, 1.0), (0.0, 4.0)])
def test_a_teacher_that_outputs_the_labels_gives_exactly_the_labels(alpha, temperature):
    y = np.array([0, 1, 1, 0, 1])
    target = distill_targets(y, y.astype(np.float64), alpha, temperature)
    assert target.dtype == np.float32 and np.array_equal(target, y.astype(np.float32))


def test_folds_are_stratified_balanced_and_seeded():
    y = np.array([1] * 30 + [0] * 70)
    fold = fold_assignment(y, 5, seed=3)
    for k in range(5):
        assert (fold == k).sum() == 20 and y[fold == k].sum() == 6
    assert np.array_equal(fold, fold_assignment(y, 5, seed=3))
    assert not np.array_equal(fold, fold_assignment(y, 5, seed=4))


def test_distillation_settings_are_checked_where_made():
    with pytest.raises(ValueError, match="distill_alpha"):
        TrainConfig(model="lstm", teachers=("peer:gbm",), distill_alpha=1.5)
    with pytest.raises(ValueError, match="distill_temperature"):
        TrainConfig(model="lstm", teachers=("peer:gbm",), distill_temperature=0)
    with pytest.raises(ValueError, match="teacher_folds"):
        TrainConfig(model="lstm", teachers=("peer:gbm",), teacher_folds=1)
    with pytest.raises(ValueError, match="students"):
        TrainConfig(model="gbm", teachers=("peer:lr",))
    with pytest.raises(ValueError, match="time_since_last"):
        TrainConfig(model="dnn", time_since_last=True)
    config = TrainConfig(model="hlstm", teachers=["peer:gbm"], time_since_last=True)
    assert config.teachers == ("peer:gbm",) and config.input_kind == "sequence+since_last"
    assert TrainConfig.from_json(config.to_json()) == config


def _splits(dataset):
    from condense.data.inputs import fit_inputs, prepared_splits

    inputs = fit_inputs(dataset, "sequence")
    return inputs, prepared_splits(dataset, inputs)


@pytest.mark.slow
def test_a_student_taught_the_labels_trains_exactly_like_the_plain_model(tiny_dataset, monkeypatch):
    """The loss target is the mix: with a teacher that outputs the labels, the student's training
    is bit-for-bit the undistilled model's (same weights, same validation history)."""
    from condense.runs.workflow import train_on_dataset

    prepared = _splits(tiny_dataset)
    base = TrainConfig(model="lstm", epochs=2, batch_size=32, seed=1)
    _, _, plain = train_on_dataset(base, tiny_dataset, verbose=0, prepared=prepared)
    labels = tiny_dataset.train.y.astype(np.float64)
    seen = {}

    def label_teacher(config, dataset, *, prepared=None, log=None):
        seen["config"] = config
        return labels, {"teachers": [], "alpha": config.distill_alpha}

    monkeypatch.setattr(distill, "teacher_probabilities", label_teacher)
    student = TrainConfig(model="lstm", epochs=2, batch_size=32, seed=1, teachers=("peer:gbm",), distill_alpha=0.3,
                          distill_temperature=2.0)
    _, _, taught = train_on_dataset(student, tiny_dataset, verbose=0, prepared=prepared)
    assert seen["config"] is student and taught["distillation"]["alpha"] == 0.3
    assert taught["val_auroc_history"] == plain["val_auroc_history"]
    assert np.array_equal(taught["p_test"], plain["p_test"])

    # ...and a teacher that says something else changes what the student learns
    monkeypatch.setattr(distill, "teacher_probabilities",
                        lambda config, dataset, **kw: (np.full(len(labels), 0.5), {"teachers": []}))
    _, _, other = train_on_dataset(student, tiny_dataset, verbose=0, prepared=prepared)
    assert not np.array_equal(other["p_test"], plain["p_test"])


@pytest.mark.slow
def test_out_of_fold_teacher_predictions_come_from_models_that_never_saw_the_record(tiny_dataset):
    """Cross-fitting: the gradient-boosting teacher scores its own training records far better
    than records it was not fitted on; out of fold, its training-split AUROC is an honest one."""
    prepared = _splits(tiny_dataset)
    oof, info = distill.teacher_probabilities(
        TrainConfig(model="lstm", seed=0, teachers=("peer:lr",), teacher_folds=4), tiny_dataset, prepared=prepared)
    inside, info_inside = distill.teacher_probabilities(
        TrainConfig(model="lstm", seed=0, teachers=("peer:lr",), teacher_folds=0), tiny_dataset, prepared=prepared)
    assert oof.shape == inside.shape == (len(tiny_dataset.train),)
    assert info["teacher_folds"] == 4 and info_inside["teacher_folds"] == 0
    assert info_inside["teacher_train_auroc"] > info["teacher_train_auroc"]
    # every fold's predictions are those of an LR fitted without that fold
    from condense.peers.kinds import fit_peer

    x, y = prepared[1]["train"], tiny_dataset.train.y
    fold = fold_assignment(y, 4, 0)
    peer, _ = fit_peer("lr", 0, x[fold != 2], y[fold != 2], None, None, tiny_dataset.layout)
    np.testing.assert_allclose(oof[fold == 2], peer.predict_proba(x[fold == 2]), rtol=1e-12)


def test_teachers_that_cannot_teach_are_refused_by_name(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="Argument `teachers` must be model directories or one of peer:gbm, peer:lr"):
        TrainConfig(model="lstm", teachers=("peer:xgb",))
    with pytest.raises(FileNotFoundError, match="no-such-dir: no such model directory"):
        distill.check_teacher_dirs(TrainConfig(model="lstm", teachers=(str(tmp_path / "no-such-dir"),)))
    with pytest.raises(FileNotFoundError, match="no-such-dir: no such model directory"):
        distill.resolve_teachers(TrainConfig(model="lstm", teachers=(str(tmp_path / "no-such-dir"),)), tiny_dataset)


def _cli(capsys, *args) -> tuple[int, str, str]:
    """``condense ARGS`` in this process (main() is what the console script runs): code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_condense_train_with_a_teacher_directory_as_a_new_user(tiny_cohort, tiny_cache, tmp_path, capsys):
    """Train a teacher, then a distilled pruned hLSTM from it and a peer; the manifest says what ran;
    the student exports and evaluates like any model; a teacher of another cohort is refused."""
    teacher = tmp_path / "lr"
    code, _, err = _cli(capsys, "train", "--data", tiny_cohort, "--model", "lr", "--seed", "2", "--quiet", "--out",
                        teacher, "--cache-dir", tiny_cache)
    assert code == 0, err[-2000:]
    student = tmp_path / "student"
    code, out, err = _cli(capsys, "train", "--data", tiny_cohort, "--model", "hlstm", "--prune-quantile", "0.5",
                          "--epochs", "2", "--batch-size", "32", "--seed", "2", "--teacher", teacher,
                          "--teacher", "peer:gbm", "--distill-alpha", "0.4", "--teacher-folds", "3",
                          "--time-since-last", "--out", student, "--cache-dir", tiny_cache)
    assert code == 0, err[-2000:]
    assert "distilled (teachers' train AUROC" in out
    assert f"teacher {teacher} (lr, seed 2): train AUROC" in err and "out of fold (3 folds)" in err
    manifest = json.loads((student / "manifest.json").read_text())
    d = manifest["distillation"]
    assert [t["model"] for t in d["teachers"]] == ["lr", "gbm"] and d["alpha"] == 0.4 and d["teacher_folds"] == 3
    assert manifest["config"]["teachers"] == [str(teacher), "peer:gbm"] and manifest["config"]["time_since_last"]
    prep = json.loads((student / "preprocessing.json").read_text())
    assert prep["extras"] == ["since_last"]
    code, _, err = _cli(capsys, "export", "--model", student, "--format", "int8", "--cache-dir", tiny_cache)
    assert code == 0, err[-2000:]
    code, out, err = _cli(capsys, "evaluate", "--model", student, "--format", "int8", "--cache-dir", tiny_cache)
    assert code == 0 and "[int8]: test AUROC" in out, err[-2000:]

    from condense.data.synthetic import write_cohort

    other = write_cohort(tmp_path / "other" / "in-hospital-mortality", episodes=120, seed=9)
    code, _, err = _cli(capsys, "train", "--data", other, "--model", "lstm", "--epochs", "1", "--teacher", teacher,
                        "--out", tmp_path / "refused", "--cache-dir", tmp_path / "cache")
    assert code != 0
    assert f"teacher {teacher} was trained on another cohort or split" in err
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("temperature", [1e-300, 1e-4, 0.5, 2.0, 1e300])
def test_softened_targets_stay_finite_for_any_positive_temperature(temperature):
    """Was ``p contains 48 NaN value(s)`` at epoch 1 with ``--distill-temperature 1e-4``: both powers
    underflowed to 0/0. In log space a tiny temperature gives 0 or 1, a huge one 0.5."""
    p = np.array([0.0, 1e-300, 0.2, 0.5, 0.9, 1 - 1e-16, 1.0])
    soft = soften(p, temperature)
    assert np.all(np.isfinite(soft)) and soft.min() >= 0 and soft.max() <= 1
    assert soft[0] == 0.0 and soft[3] == 0.5 and soft[-1] == 1.0
    assert np.all(np.diff(soft) >= 0), "order kept"
    if temperature <= 1e-4:
        assert soft.tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    if temperature == 1e300:
        assert np.allclose(soft[1:-1], 0.5)
    y = np.array([0, 0, 1, 1, 0, 1, 1])
    target = distill_targets(y, p, 0.3, temperature)
    assert target.dtype == np.float32 and np.all(np.isfinite(target))


def test_alpha_one_and_more_folds_than_records_are_refused(tiny_dataset):
    with pytest.raises(ValueError, match=r"Argument `distill_alpha` must be < 1 with teachers \(1 trains on the labels "
                                         r"alone and ignores them"):
        TrainConfig(model="lstm", teachers=("peer:gbm",), distill_alpha=1.0)
    assert TrainConfig(model="lstm", distill_alpha=1.0).distilled is False
    rarer = int(min(np.bincount(tiny_dataset.train.y.astype(int))))
    with pytest.raises(ValueError, match=rf"^Argument `teacher_folds` must be at most {rarer}, the training records of "
                                         r"the rarer label .*; got teacher_folds=400\.$"):
        distill.teacher_probabilities(TrainConfig(model="lstm", teachers=("peer:lr",), teacher_folds=400), tiny_dataset)


@pytest.mark.parametrize("damage", ["model file garbage", "preprocessing edited"])
def test_a_damaged_teacher_is_refused_whatever_the_folds(trained_lr, tiny_dataset, tmp_path, damage):
    """With cross-fitting the teacher's files were never read: a garbage model file made a
    'distilled' student. Now every file loads and matches its manifest's sha256."""
    from build_once import copy_of

    from condense.runs.model_dir import ModelDirError

    teacher = copy_of(trained_lr, tmp_path / "teacher")
    if damage == "model file garbage":
        (teacher / "model.lr.json").write_text("garbage")
        match = "model.lr.json"
    else:
        prep = teacher / "preprocessing.json"
        prep.write_text(prep.read_text() + "\n")
        match = r"preprocessing\.json does not match manifest\.json"
    for folds in (0, 5):
        with pytest.raises((ModelDirError, ValueError), match=match):
            distill.resolve_teachers(TrainConfig(model="lstm", teachers=(str(teacher),), teacher_folds=folds),
                                     tiny_dataset)


def test_a_teacher_that_is_the_output_folder_is_refused(trained_lr, tiny_cohort, tiny_cache, tmp_path, capsys):
    """``--teacher X --out X`` replaced the teacher with the student, whose manifest named itself as teacher."""
    from build_once import copy_of

    teacher = copy_of(trained_lr, tmp_path / "teacher")
    before = {p.name: p.read_bytes() for p in teacher.iterdir()}
    code, _, err = _cli(capsys, "train", "--data", tiny_cohort, "--model", "lstm", "--epochs", "1", "--teacher",
                        teacher, "--out", teacher, "--cache-dir", tiny_cache, "--quiet")
    assert code == 2
    assert err.strip() == (f"condense train: error: teacher {teacher} is the output folder (--out {teacher}): the "
                           "student would replace its teacher; give another --out")
    assert {p.name: p.read_bytes() for p in teacher.iterdir()} == before


def test_teacher_seeds_average_one_peer_fitted_with_consecutive_seeds(tiny_dataset, monkeypatch):
    from condense.peers import kinds

    monkeypatch.setattr(distill, "_PEER_MEMO", {})
    prepared = _splits(tiny_dataset)
    config = TrainConfig(model="lstm", seed=4, teachers=("peer:gbm", "peer:lr"), teacher_seeds=3, teacher_folds=0)
    mean, info = distill.teacher_probabilities(config, tiny_dataset, prepared=prepared)
    assert [(t["teacher"], t["seed"]) for t in info["teachers"]] == [
        ("peer:gbm", 4), ("peer:gbm", 5), ("peer:gbm", 6), ("peer:lr", 4), ("peer:lr", 5), ("peer:lr", 6)]
    assert info["teacher_seeds"] == 3
    x, y = prepared[1]["train"], tiny_dataset.train.y

    def fitted(model, seed):
        peer, _ = kinds.fit_peer(model, seed, x, y, prepared[1]["val"], tiny_dataset.val.y, tiny_dataset.layout)
        return peer.predict_proba(x)

    gbm = np.mean([fitted("gbm", s) for s in (4, 5, 6)], axis=0)
    lr = np.mean([fitted("lr", s) for s in (4, 5, 6)], axis=0)
    np.testing.assert_allclose(mean, (gbm + lr) / 2, rtol=1e-12)  # each name's seeds first: every name weighs the same
    assert not np.allclose(fitted("gbm", 4), fitted("gbm", 5))  # bagging differs by seed: a real ensemble


def test_a_peer_teacher_is_fitted_once_per_process_for_the_same_data(tiny_dataset, monkeypatch):
    from condense.peers import kinds

    monkeypatch.setattr(distill, "_PEER_MEMO", {})
    fits = []
    real = kinds.fit_peer
    monkeypatch.setattr(distill, "fit_peer", lambda *a, **k: fits.append(a[:2]) or real(*a, **k))
    prepared = _splits(tiny_dataset)
    config = TrainConfig(model="lstm", seed=0, teachers=("peer:lr",), teacher_folds=3)
    first, info = distill.teacher_probabilities(config, tiny_dataset, prepared=prepared)
    assert len(fits) == 3
    logged = []
    again, _ = distill.teacher_probabilities(TrainConfig(model="hlstm", seed=0, teachers=("peer:lr",), teacher_folds=3,
                                                         distill_alpha=0.5), tiny_dataset, prepared=prepared,
                                             log=logged.append)
    assert len(fits) == 3 and np.array_equal(first, again) and "fitted earlier in this process" in logged[0]
    # another seed (other folds), other folds, or other data: fitted again
    distill.teacher_probabilities(TrainConfig(model="lstm", seed=1, teachers=("peer:lr",), teacher_folds=3),
                                  tiny_dataset, prepared=prepared)
    assert len(fits) == 6
    changed = (prepared[0], {**prepared[1], "train": prepared[1]["train"] * 1.01})
    distill.teacher_probabilities(config, tiny_dataset, prepared=changed)
    assert len(fits) == 9
    assert len(distill._PEER_MEMO) == 3 and not any(p.flags.writeable for p in distill._PEER_MEMO.values())
