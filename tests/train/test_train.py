"""condense train / evaluate: manifests, exact reproduction in a fresh process, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from condense.cli import main
from condense.io import read_json
from condense.train import TrainConfig

FAST = ["--epochs", "2", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def lstm_run(tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lstm"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["train", "--data", str(tiny_cohort), "--model", "lstm", "--out", str(out),
                 "--cache-dir", str(cache), *FAST]) == 0
    return out, cache


def test_manifest_has_the_documented_fields(lstm_run):
    out, _ = lstm_run
    manifest = read_json(out / "manifest.json")
    for key in ("model", "params", "seed", "config", "git_commit", "data", "epoch_seconds", "train_seconds",
                "metrics", "files", "library_versions"):
        assert key in manifest, key
    assert manifest["model"] == "lstm"
    assert manifest["params"] == 8081
    assert manifest["config"]["epochs"] == 2 and manifest["config"]["batch_size"] == 32
    assert len(manifest["epoch_seconds"]) == 2
    assert manifest["train_seconds"] == pytest.approx(sum(manifest["epoch_seconds"]))
    assert len(manifest["data"]["fingerprint"]) >= 16
    test = manifest["metrics"]["test"]
    for key in ("auroc", "auroc_ci", "auprc", "brier", "n"):
        assert key in test
    assert test["auroc_ci"][0] <= test["auroc"] <= test["auroc_ci"][1]
    assert (out / "model.keras").exists() and (out / "preprocessing.json").exists()
    assert manifest["files"]["model.keras"]["bytes"] == (out / "model.keras").stat().st_size


def test_evaluate_in_a_fresh_process_reproduces_the_saved_metrics(lstm_run, tiny_cohort, tmp_path):
    out, cache = lstm_run
    result_json = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "condense", "evaluate", "--model", str(out), "--data", str(tiny_cohort),
         "--json", str(result_json), "--cache-dir", str(cache), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = read_json(out / "manifest.json")["metrics"]["test"]
    assert read_json(result_json)["test"] == saved


def test_same_seed_gives_identical_training(lstm_run, tiny_cohort, tmp_path):
    out, cache = lstm_run
    again = tmp_path / "again"
    assert main(["train", "--data", str(tiny_cohort), "--model", "lstm", "--out", str(again),
                 "--cache-dir", str(cache), *FAST]) == 0
    first, second = read_json(out / "manifest.json"), read_json(again / "manifest.json")
    assert first["metrics"] == second["metrics"]
    assert first["val_auroc_history"] == second["val_auroc_history"]


def test_select_best_restores_the_best_validation_epoch(tiny_dataset):
    from condense.runs.workflow import train_on_dataset

    config = TrainConfig(model="dnn", epochs=4, batch_size=32, select="best")
    model, inputs, record = train_on_dataset(config, tiny_dataset, verbose=0)
    history = record["val_auroc_history"]
    assert record["selected_epoch"] == int(np.argmax(history)) + 1
    assert record["metrics"]["val"]["auroc"] == pytest.approx(max(history), abs=1e-12)


def test_pruning_schedule_records_before_and_after(tiny_cohort, tmp_path, lstm_run):
    _, cache = lstm_run
    out = tmp_path / "pruned"
    assert main(["train", "--data", str(tiny_cohort), "--model", "lstm", "--prune-quantile", "0.5",
                 "--prune-after", "1", "--out", str(out), "--cache-dir", str(cache), *FAST]) == 0
    manifest = read_json(out / "manifest.json")
    assert manifest["prune"]["params_before"] == 8081
    assert manifest["prune"]["params_after"] == manifest["params"] == 3273
    assert manifest["prune"]["criterion"] == "mean_abs"
    assert len(manifest["epoch_seconds"]) == 2


def test_logistic_regression_beats_chance_and_reloads(tmp_path):
    from condense.data.synthetic import write_cohort

    cohort = write_cohort(tmp_path / "cohort", episodes=800, seed=3)
    out = tmp_path / "lr"
    assert main(["train", "--data", str(cohort), "--model", "lr", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    manifest = read_json(out / "manifest.json")
    assert manifest["metrics"]["test"]["auroc"] > 0.65
    assert (out / "model.lr.json").exists()
    json.loads((out / "model.lr.json").read_text())  # plain JSON, nothing executable
    assert main(["evaluate", "--model", str(out), "--json", str(tmp_path / "e.json"),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    assert read_json(tmp_path / "e.json")["test"] == manifest["metrics"]["test"]


@pytest.mark.parametrize(
    "argv, message",
    [
        # the library names arguments (`epochs`, epochs=0); the CLI's line names the flags
        (["--model", "lstm", "--epochs", "0"], "condense train: error: --epochs must be an integer >= 1; got 0."),
        (["--model", "lstm", "--prune-quantile", "1.5"], "--prune-quantile must be a number strictly between 0 and 1"),
        (["--model", "lr", "--prune-quantile", "0.5"], "not to --model 'lr'"),
        (["--model", "lstm", "--epochs", "2", "--prune-quantile", "0.5", "--prune-after", "2"], "--prune-after must"),
    ],
)
def test_bad_arguments_are_one_clear_line(argv, message, tmp_path, capsys):
    assert main(["train", "--data", "synthetic:40", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


CRITERION_ERROR = ("Argument `prune_criterion` must be one of ('mean_abs', 'l2', 'signed_mean', 'activation'); "
                   "got prune_criterion='mean_ab'.")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="lstm", prune_quantile=0.5, prune_criterion="mean_ab"), CRITERION_ERROR),
        (dict(model="dnn", prune_criterion="mean_ab"), CRITERION_ERROR),  # even before it is used
        (dict(model="lstm", prune_quantile=1.0),
         "Argument `prune_quantile` must be a number strictly between 0 and 1; got prune_quantile=1.0."),
        (dict(model="lstm", prune_quantile=0), "got prune_quantile=0."),
        (dict(model="lstm", prune_quantile=float("nan")), "got prune_quantile=nan."),
        (dict(model="lstm", epochs=3, prune_quantile=0.5, prune_after=3),
         "Argument `prune_after` must be an integer in [1, epochs - 1] = [1, 2]; got prune_after=3."),
        (dict(model="lstm", prune_after=0), "Argument `prune_after` must be an integer >= 1; got prune_after=0."),
        (dict(model="lstm", learning_rate=0.0),
         "Argument `learning_rate` must be a finite number > 0; got learning_rate=0.0."),
        (dict(model="lstm", learning_rate=float("inf")), "got learning_rate=inf."),
        (dict(model="lstm", learning_rate="1e-3"), "got learning_rate='1e-3'."),
        (dict(model="lstm", epochs=0), "Argument `epochs` must be an integer >= 1; got epochs=0."),
        (dict(model="lstm", epochs=2.5), "Argument `epochs` must be an integer >= 1; got epochs=2.5."),
        (dict(model="lstm", batch_size=0), "Argument `batch_size` must be an integer >= 1; got batch_size=0."),
        (dict(model="lstm", seed=-1), "Argument `seed` must be an integer in [0, 4294967295]; got seed=-1."),
        (dict(model="lstm", seed=2**32), "got seed=4294967296."),
        (dict(model="lstm", seed=True), "got seed=True."),
        (dict(model="lstm", select="bset"), "Argument `select` must be one of ('last', 'best'); got select='bset'."),
        (dict(model="lstm", patience=0), "Argument `patience` must be an integer >= 1; got patience=0."),
        (dict(model="lsmt"), "Argument `model` must be one of ('lstm', 'hlstm', 'dnn', 'lr', 'gbm'); got model='lsmt'."),
        (dict(model="hlstm", hlstm_hidden="gate"),
         "Argument `hlstm_hidden` must be one of ('gates', 'input'); got hlstm_hidden='gate'."),
        (dict(model="lr", prune_quantile=0.5),
         "Argument `prune_quantile` applies to models ('lstm', 'hlstm', 'dnn'), not to model='lr'; "
         "got prune_quantile=0.5."),
        (dict(model="lr", prune_criterion="l2"), "not to model='lr'; got prune_criterion='l2'."),
        (dict(model="hlstm", units=(8, 8)),
         "Argument `units` must be one width for an hlstm (it has one recurrent layer); got units=[8, 8]."),
        (dict(model="lstm", units=(16, 0)),
         "Argument `units` must be a non-empty sequence of positive integers (layer widths); got units=(16, 0)."),
        (dict(model="lstm", units="16"), "got units='16'."),
        (dict(model="dnn", units=()), "got units=()."),
        (dict(model="gbm", units=(8,)), "Argument `units` applies to models ('lstm', 'hlstm', 'dnn'), not to "
                                        "model='gbm'; got units=(8,)."),
        (dict(model="lstm", dropout=1.0), "Argument `dropout` must be a rate in [0, 1); got dropout=1.0."),
        (dict(model="lstm", dropout=True), "got dropout=True."),
        (dict(model="lstm", teachers=("peer:gbm",), teacher_seeds=0),
         "Argument `teacher_seeds` must be an integer >= 1; got teacher_seeds=0."),
    ],
)
def test_train_config_rejects_bad_values_at_construction(kwargs, message):
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert str(info.value).endswith(message)


def test_train_config_accepts_the_edges_and_registered_criteria(monkeypatch):
    from condense.prune import CRITERIA

    TrainConfig(model="lstm", epochs=2, prune_quantile=0.5, prune_after=1, seed=2**32 - 1, patience=1)
    TrainConfig(model="dnn", epochs=np.int64(3), batch_size=np.int32(4), learning_rate=np.float32(0.01))
    TrainConfig(model="lr", prune_after=5, epochs=2)  # prune_after matters only when pruning
    monkeypatch.setitem(CRITERIA, "random", CRITERIA["mean_abs"])
    TrainConfig(model="hlstm", hlstm_hidden="input", prune_quantile=0.25, prune_criterion="random")


def test_missing_data_folder_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--model", "dnn", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


@pytest.mark.parametrize("model, units, dropout", [("hlstm", (10,), 0.1), ("lstm", (12, 6), 0.0), ("dnn", (32, 8), 0.2)])
def test_units_and_dropout_shape_the_model_and_survive_the_manifest(model, units, dropout):
    from condense import models
    from condense.evaluate.measure import param_count
    from condense.train import build_model

    config = TrainConfig(model=model, units=list(units), dropout=dropout)
    assert config.units == units and TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    shape = (76,) if model == "dnn" else (48, 76)
    built = build_model(config, shape)
    kwargs = {"units": units[0] if model == "hlstm" else units, "dropout": dropout}
    assert param_count(built) == param_count(models.build_model(model, 76, **kwargs))
    assert built.get_layer(models.DROPOUT).rate == dropout
    default = build_model(TrainConfig(model=model), shape)
    assert param_count(default) == {"hlstm": 6993, "lstm": 8081, "dnn": 60929}[model]


def test_units_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "--data", "synthetic:60:0", "--model", "hlstm", "--units", "6", "--dropout", "0.2",
                 "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    config = read_json(out / "manifest.json")["config"]
    assert (config["units"], config["dropout"]) == ([6], 0.2)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--data", "synthetic:60", "--model", "lstm", "--units", "16,x", "--out", str(tmp_path / "y")])
    assert "expected positive integers separated by commas (e.g. 16 or 32,16), got '16,x'" in capsys.readouterr().err
