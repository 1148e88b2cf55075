"""A benchmark run folder has one writer at a time, a new run deletes nothing before every setting
is checked, and a malformed ``rows/plan.json`` is one line naming the file and the field
(issue 31, items 2, 4 and 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from grid_runs import condense_env, small_profile

from condense.bench.runner import check_settings
from condense.bench.profiles import get_profile
from condense.bench.store import RunStore
from condense.cli import main

HOLD_LOCK = """
import sys
from condense.bench.store import RunStore
with RunStore(sys.argv[1]).lock():
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _finished_run(run, cohort) -> None:
    """A finished run's folder: its plan, one model file."""
    store = RunStore(run)
    store.begin({"profile": small_profile(str(cohort)).to_json(), "seeds": 1, "rows": ["lr"]})
    (run / "models" / "seed0" / "lr").mkdir(parents=True)
    (run / "models" / "seed0" / "lr" / "model.lr.json").write_text("{}")
    store.finish()


def test_a_second_bench_on_a_run_folder_in_use_fails_at_once_naming_the_first(tmp_path, tiny_cohort, capsys):
    run = tmp_path / "run"
    RunStore(run).begin({"profile": small_profile(str(tiny_cohort)).to_json(), "seeds": 1, "rows": ["lr"]})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=condense_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["bench", "--resume", str(run), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"condense bench: error: {run} is in use by another `condense bench` (a run folder has one "
                       f"writer at a time) (pid {holder.pid})")
        # a new run into the same --out: the same refusal, before anything is read or deleted
        (run / "rows" / "plan.json").write_text(json.dumps({**json.loads((run / "rows" / "plan.json").read_text()),
                                                            "finished": "2026-01-01T00:00:00"}))
        assert main(["bench", "--profile", "smoke", "--data", str(tiny_cohort), "--rows", "lr",
                     "--out", str(run), "--quiet"]) == 2
        assert f"{run} is in use by another `condense bench`" in capsys.readouterr().err
        assert (run / "rows" / "plan.json").exists()
    finally:
        holder.communicate("\n", timeout=60)
    assert not (tmp_path / ".run.lock").exists(), "the lock file goes with its holder"
    with RunStore(run).lock():  # free again
        assert (tmp_path / ".run.lock").read_text().strip() == str(os.getpid())


def test_a_mistyped_new_run_deletes_nothing_of_a_finished_run(tmp_path, tiny_cohort, tiny_cache, capsys):
    run = tmp_path / "r7"
    _finished_run(run, tiny_cohort)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert main(["bench", "--profile", "smoke", "--data", str(tiny_cohort), "--rows", "lstm,lsmt",
                 "--out", str(run), "--cache-dir", str(tiny_cache), "--quiet"]) == 2
    assert "unknown row(s) ['lsmt']" in capsys.readouterr().err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before, "rows/ and models/ untouched"
    assert RunStore(run).plan()["finished"]
    # a setting that only the data can refuse: nothing deleted either
    assert main(["bench", "--profile", "smoke", "--data", str(tmp_path / "no-such-data"), "--rows", "lr",
                 "--out", str(run), "--quiet"]) == 2
    capsys.readouterr()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_pruned_rows_that_are_not_selected_do_not_refuse_one_epoch():
    check_settings(get_profile("smoke", epochs=1), 1, ["lstm", "dnn", "lstm-int8"])  # was refused for lstm-prune25
    with pytest.raises(ValueError, match=r"^row lstm-prune25: Argument `prune_after` must be an integer in \[1, epochs - 1\]"):
        check_settings(get_profile("smoke", epochs=1), 1, None)
    with pytest.raises(ValueError, match=r"^rows must be a list of row names, got 'lstm'$"):
        check_settings(get_profile("smoke"), 1, "lstm")


@pytest.mark.parametrize("field, value, message", [
    ("profile", {}, "'profile' is not a usable profile"),
    ("profile", "smoke", "'profile' is not an object"),
    ("seeds", None, "'seeds' is None, not an integer >= 1"),
    ("seeds", "2", "'seeds' is '2', not an integer >= 1"),
    ("rows", "lstm", "'rows' is 'lstm', not null or a list of row names"),
    ("rows", [], "'rows' is [], not null or a list of row names"),
    ("lstm_quantiles", 5, "'profile' is not a usable profile"),
    ("data", [1], "'data' is not an object"),
])
def test_a_malformed_plan_is_one_line_naming_the_file_and_field(tmp_path, tiny_cohort, capsys, field, value, message):
    run = tmp_path / "run"
    RunStore(run).begin({"profile": small_profile(str(tiny_cohort)).to_json(), "seeds": 1, "rows": ["lr"]})
    path = run / "rows" / "plan.json"
    plan = json.loads(path.read_text())
    if field == "lstm_quantiles":
        plan["profile"][field] = value
    else:
        plan[field] = value
    path.write_text(json.dumps(plan))
    assert main(["bench", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"condense bench: error: {path}: {message}"), err
    assert "\n" not in err
