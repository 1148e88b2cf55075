"""condense tune: the seeded draw under the budget, the search run as grid jobs on validation only, resume."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from condense import tune
from condense.cli import main
from condense.recipe import RECIPE
from condense.tune import DEFAULT_SPACE, TuneSettings, draw_trials, parse_space


def _settings(**kw) -> TuneSettings:
    return TuneSettings(data="synthetic:200:0", **kw)


def _params(setting: dict) -> int:  # a stand-in count: grows with the kept width
    kept = setting["units"] - int((setting["prune_quantile"] or 0) * setting["units"])
    return 100 * kept + (50 if setting["time_since_last"] else 0)


def test_the_draw_is_seeded_unique_within_budget_and_starts_with_the_recipe():
    settings = _settings(trials=12, max_params=1600)
    trials = draw_trials(settings, _params)
    assert len(trials) == 12 and trials[0]["setting"] == RECIPE and [t["trial"] for t in trials][:2] == ["t000", "t001"]
    assert all(t["params"] == _params(t["setting"]) <= 1600 for t in trials)
    keys = [tuple(sorted(t["setting"].items(), key=str)) for t in trials]
    assert len(set(keys)) == len(keys)
    assert all(t["setting"][name] in DEFAULT_SPACE[name] for t in trials for name in DEFAULT_SPACE)
    assert draw_trials(settings, _params) == trials
    other = draw_trials(_settings(trials=12, max_params=1600, search_seed=1), _params)
    assert other[0] == trials[0] and other[1:] != trials[1:]


def test_a_small_space_gives_every_setting_once_and_a_fixed_setting_replaces_the_recipes():
    space = parse_space(["units=8,12", "prune_quantile=none", "dropout=0.1", "batch_size=16", "learning_rate=0.001",
                         "distill_alpha=0.2,0.5", "distill_temperature=1", "teacher_seeds=1", "time_since_last=false"])
    trials = draw_trials(_settings(trials=50, space=space), _params)
    assert len(trials) == 4  # 2 units x 2 alphas
    assert trials[0]["setting"] == {**RECIPE, "units": 8, "prune_quantile": None, "dropout": 0.1, "batch_size": 16,
                                    "learning_rate": 0.001}
    # without teachers the distillation settings are not searched
    assert len(draw_trials(_settings(trials=50, space=space, teachers=()), _params)) == 2
    assert draw_trials(_settings(trials=5, max_params=10), _params) == []


@pytest.mark.parametrize("item, match", [
    ("width=8", "space"), ("units", "NAME=VALUE"), ("units=8,x", "units=8,x"), ("time_since_last=maybe", "true or false"),
])
def test_a_bad_space_item_names_itself(item, match):
    with pytest.raises(ValueError, match=match):
        parse_space([item])


def test_a_bad_value_in_the_space_fails_before_any_trial():
    with pytest.raises(ValueError, match="dropout"):
        _settings(space={**DEFAULT_SPACE, "dropout": (0.1, 1.5)})
    with pytest.raises(ValueError, match="model"):
        _settings(model="dnn")


def test_the_counted_parameters_are_the_trained_models(tiny_dataset):
    from condense.runs.workflow import train_on_dataset

    settings = _settings(epochs=2, patience=None)
    setting = {**RECIPE, "units": 10, "prune_quantile": 0.25}
    config = settings.config({**setting}, 0)
    config = type(config).from_json({**config.to_json(), "teachers": []})
    counted = tune.final_params(config, tiny_dataset.train.X.shape[1:])
    _, _, record = train_on_dataset(config, tiny_dataset, verbose=0, score_test=False)
    assert record["params"] == counted and record["prune"]["units_kept"]
    assert "test" not in record["metrics"] and "p_test" not in record


def _tune(tiny_cohort, tiny_cache, out: Path, *extra) -> int:
    return main(["tune", "--data", str(tiny_cohort), "--cache-dir", str(tiny_cache), "--out", str(out), "--trials", "3",
                 "--seeds", "2", "--epochs", "2", "--patience", "1", "--workers", "1", "--quiet",
                 "--space", "units=6,8,10", "--space", "batch_size=32", *extra])


def test_a_search_as_a_new_user_never_reads_the_test_split_and_resumes(tiny_cohort, tiny_cache, tmp_path, capsys,
                                                                        monkeypatch):
    from condense.runs import workflow

    scored = []
    real = workflow.predict_proba
    monkeypatch.setattr(workflow, "predict_proba", lambda model, x: scored.append(len(x)) or real(model, x))
    out = tmp_path / "search"
    assert _tune(tiny_cohort, tiny_cache, out) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "tune.json").read_text())
    dataset_sizes = record["plan"]["data"]
    assert record["finished"] and len(record["trials"]) == 3 and record["recipe_trial"] == "t000"
    from condense.data import load_dataset

    data = load_dataset(str(tiny_cohort), seed=0, cache_dir=tiny_cache, quiet=True)
    assert data.fingerprint == dataset_sizes["fingerprint"]
    assert scored and set(scored) == {len(data.val)} and len(data.val) != len(data.test)  # validation only
    best = record["best"]
    assert best["trial"] == record["trials"][0]["trial"] and best["val_auroc"] == max(
        t["val_auroc"] for t in record["trials"])
    assert all(len(t["val_auroc_seeds"]) == 2 and t["trained_params"] == [t["params"]] for t in record["trials"])
    assert f"best: {best['trial']}" in printed and best["command"] in printed
    lines = (out / "trials.csv").read_text().splitlines()
    assert lines[0].startswith("rank,trial,val_auroc") and lines[1].startswith(f"1,{best['trial']},")

    # the recommended command trains the best trial's seed-0 model: the same validation AUROC
    command = shlex.split(best["command"])[1:]
    model_dir = tmp_path / "best"
    command[command.index("--out") + 1] = str(model_dir)
    assert main([*command, "--cache-dir", str(tiny_cache), "--quiet"]) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["metrics"]["val"]["auroc"] == pytest.approx(best_seed0(record), abs=1e-9)

    # resume: a lost job runs again, the others are kept, the result is the same
    (out / "trials" / "seed1" / "t001.json").unlink()
    scored.clear()
    assert _tune(tiny_cohort, tiny_cache, out, "--resume") == 0
    again = json.loads((out / "tune.json").read_text())
    untimed = lambda trials: [{k: v for k, v in t.items() if k != "train_seconds"} for t in trials]  # noqa: E731
    assert len(scored) == 1 and untimed(again["trials"]) == untimed(record["trials"])

    capsys.readouterr()
    assert _tune(tiny_cohort, tiny_cache, out) == 2
    assert f"{out} is not empty (continue it with `condense tune --resume --out {out} ...`)" in capsys.readouterr().err
    assert _tune(tiny_cohort, tiny_cache, out, "--resume", "--search-seed", "3") == 2
    assert "settings, data or trials differ from the saved search's" in capsys.readouterr().err
    assert json.loads((out / "tune.json").read_text()) == again  # refused runs leave the search as it was


def best_seed0(record: dict) -> float:
    return record["trials"][0]["val_auroc_seeds"][0]


def test_a_trial_that_fails_is_reported_and_never_chosen(tiny_cohort, tiny_cache, tmp_path, capsys, monkeypatch):
    from condense.bench import jobs

    real = jobs._JobRunner._run_trial

    def failing(self, spec):
        if spec.train["units"] == (8,):
            raise RuntimeError("boom in trial")
        return real(self, spec)

    monkeypatch.setattr(jobs._JobRunner, "_run_trial", failing)
    out = tmp_path / "search"
    assert _tune(tiny_cohort, tiny_cache, out) == 0
    record = json.loads((out / "tune.json").read_text())
    failed = [t for t in record["trials"] if t["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["units"] == 8 and "boom in trial" in failed[0]["error"]
    assert record["trials"][-1] == failed[0] and record["best"]["setting"]["units"] != 8
    assert np.isfinite(record["best"]["val_auroc"])


@pytest.mark.parametrize("argv, message", [
    (["--no-teacher", "--teacher", "peer:gbm"], "--no-teacher and --teacher exclude each other"),
    (["--space", "width=8"], "--space must be one of"),
    (["--space", "dropout=0.2,1.5"], "space dropout=1.5: Argument `dropout` must be a rate in [0, 1); got dropout=1.5."),
    (["--trials", "0"], "--trials must be an integer >= 1; got 0"),
    (["--teacher", "peer:xgb"], "peer:gbm, peer:lr"),
])
def test_bad_search_settings_are_one_line_before_any_data_is_read(argv, message, tmp_path, capsys):
    assert main(["tune", "--data", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "t"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "t").exists()
