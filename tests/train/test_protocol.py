"""``condense train --protocol``: the best validation epoch with early stopping by default, the
paper's last-epoch protocol one flag away and identical to what training did before the default
changed (docs/protocol.md)."""

from __future__ import annotations

import json

import pytest

from condense.cli import main
from condense.runs.workflow import train_run
from condense.train import BEST_PATIENCE, PROTOCOLS, TrainConfig

pytestmark = pytest.mark.slow


def _train_cli(tiny_cohort, cache, out, capsys, *extra):
    """``condense train`` (in this process: main() is what the console script runs)."""
    capsys.readouterr()
    code = main(["train", "--data", str(tiny_cohort), "--model", "dnn", "--epochs", "4", "--batch-size", "32",
                 "--quiet", "--out", str(out), "--cache-dir", str(cache), *extra])
    printed, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return json.loads((out / "manifest.json").read_text()), printed


def _train_library_defaults(tiny_cohort, cache, out):
    """Training as it was before ``--protocol`` existed: the library's TrainConfig defaults."""
    train_run(data=str(tiny_cohort), out_dir=out, model="dnn", epochs=4, batch_size=32, verbose=0, cache_dir=cache,
              log=lambda m: None)
    return json.loads((out / "manifest.json").read_text())


def test_protocols_are_named_settings_and_the_config_says_which_ran():
    assert PROTOCOLS["paper"] == {"select": "last", "patience": None}
    assert PROTOCOLS["best"] == {"select": "best", "patience": BEST_PATIENCE} and BEST_PATIENCE == 5
    assert TrainConfig(model="lstm").protocol == "paper", "the library's defaults are the paper's"
    assert TrainConfig(model="lstm", select="best", patience=5).protocol == "best"
    assert TrainConfig(model="lstm", select="best", patience=2).protocol == "custom"
    assert TrainConfig(model="lstm", select="best", patience=5).to_json()["protocol"] == "best"


def test_protocol_paper_reproduces_the_previous_last_epoch_training_exactly(tiny_cohort, tiny_cache, tmp_path,
                                                                          capsys):
    paper, printed = _train_cli(tiny_cohort, tiny_cache, tmp_path / "paper", capsys, "--protocol", "paper")
    before = _train_library_defaults(tiny_cohort, tiny_cache, tmp_path / "before")
    assert paper["protocol"] == "paper" and paper["config"]["select"] == "last" and paper["config"]["patience"] is None
    assert paper["selected_epoch"] == 4 and len(paper["epoch_seconds"]) == 4
    assert paper["val_auroc_history"] == before["val_auroc_history"]
    assert paper["metrics"] == before["metrics"]
    assert paper["params"] == before["params"]
    assert "epoch 4 of 4 (protocol paper)" in printed


def test_the_default_protocol_keeps_the_best_validation_epoch(tiny_cohort, tiny_cache, tmp_path, capsys):
    best, printed = _train_cli(tiny_cohort, tiny_cache, tmp_path / "best", capsys)
    history = best["val_auroc_history"]
    assert best["protocol"] == "best"
    assert best["config"]["select"] == "best" and best["config"]["patience"] == BEST_PATIENCE
    assert best["selected_epoch"] == history.index(max(history)) + 1
    assert "(protocol best)" in printed
    # an explicit override wins over the protocol's setting, and is recorded as such
    custom, _ = _train_cli(tiny_cohort, tiny_cache, tmp_path / "custom", capsys, "--patience", "2")
    assert custom["config"]["patience"] == 2 and custom["protocol"] == "custom"
    stopped = custom["val_auroc_history"]
    best_epoch = stopped.index(max(stopped)) + 1
    assert len(stopped) == 4 or len(stopped) == best_epoch + 2, "stops 2 epochs after the best"
