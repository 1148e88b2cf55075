"""A missing optional peer (tf-keras, tensorflow-model-optimization) is a skipped row that says the
one safe install command, not a failed run; a row named with ``--rows`` still fails (issue 31, item 11)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from grid_runs import small_profile

import condense.bench.runner
from condense.bench.rows import plan_rows
from condense.peers import tfmot_bridge
from condense.peers.tfmot_bridge import INSTALL_COMMAND, PEER_REQUIREMENTS

REPO = Path(__file__).resolve().parents[2]
ROWS = ("lr", "tfmot-prune-dnn")


def test_the_install_command_is_requirements_peers_txt_with_no_deps():
    lines = [line.strip() for line in (REPO / "requirements" / "peers.txt").read_text().splitlines()]
    assert tuple(line for line in lines if line and not line.startswith("#")) == PEER_REQUIREMENTS
    assert INSTALL_COMMAND == ("python -m pip install --no-deps tf-keras==2.21.0 tensorflow-model-optimization==0.8.1 "
                               "'dm-tree>=0.1.8' 'mock>=5' 'scipy>=1.11' 'six>=1.16'")


@pytest.fixture
def without_tfmot(monkeypatch):
    """tfmot as a pip-only install without the peers sees it: a required module that is not there; the
    profile's rows cut to the logistic regression and one tfmot peer (a fast run of every row)."""
    monkeypatch.setitem(tfmot_bridge._REQUIRED_MODULES, "condense_no_such_module_xyz", "tensorflow-model-optimization")
    monkeypatch.setattr(condense.bench.runner, "plan_rows",
                        lambda profile, scores=None: [r for r in plan_rows(profile, scores) if r.row in ROWS])


def _table(out: Path) -> dict[str, dict]:
    with open(out / "table.csv", newline="") as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def test_a_missing_optional_peer_is_a_skipped_row_with_the_safe_install_command(without_tfmot, tiny_cohort, tiny_cache,
                                                                             tmp_path, capsys):
    from condense.bench.compare import compare_tables

    profile = small_profile(str(tiny_cohort))
    out, ok = condense.bench.runner.run_benchmark(profile, out_dir=tmp_path / "all", cache_dir=tiny_cache)
    assert ok, "a skipped optional row is not a failed run (exit code 0)"
    table = _table(out)
    assert table["lr"]["status"] == "ok"
    reason = ("tfmot peer 'prune_dnn' cannot run: missing optional package(s) tensorflow-model-optimization; install "
              f"them without replacing tensorflow-cpu: {INSTALL_COMMAND}")
    assert table["tfmot-prune-dnn"]["status"] == "skipped" and table["tfmot-prune-dnn"]["error"] == reason
    assert f"| tfmot-prune-dnn | SKIPPED: {reason} |" in (out / "table.md").read_text()
    assert f"seed0/tfmot-prune-dnn skipped: {reason}" in capsys.readouterr().err
    assert not (out / "rows" / "seed0" / "tfmot-prune-dnn.json").exists(), "not saved: --resume tries it again"
    assert "pip install tf-keras" not in (out / "table.md").read_text(), "never the advice that pulls `tensorflow`"
    assert compare_tables(out / "table.csv", out / "table.csv").ok, "compare reads a table with a skipped row"

    # named with --rows: the user asked for it, so it fails (exit code 1) with the same reason
    out, ok = condense.bench.runner.run_benchmark(profile, out_dir=tmp_path / "named", cache_dir=tiny_cache,
                                                  only=["tfmot-prune-dnn"], quiet=True)
    assert not ok
    assert _table(out)["tfmot-prune-dnn"]["status"] == "failed"
    assert _table(out)["tfmot-prune-dnn"]["error"].endswith(reason)
