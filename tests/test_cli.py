"""The ``condense`` command answers at once and speaks plainly.

* ``--help`` of every command and every ``condense data`` command run without importing
  TensorFlow or Keras (checked in a fresh interpreter, where an import would show);
* TensorFlow's C++ / absl start-up lines stay off stderr unless ``--verbose``;
* training into a pipe prints one line per epoch, never a ``\\r`` progress bar, and condense's
  own warnings as ``condense train: warning: ...``;
* library errors naming Python arguments come out naming the command's flags.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fresh_condense import RUNNER, condense_command

from condense.cli import build_parser, flag_worded, main

REPO = Path(__file__).resolve().parents[1]

#: Lines TensorFlow / absl print at start-up when nobody silences them.
TF_NOISE = re.compile(r"absl::InitializeLog|^[IWEF]0000 |cpu_feature_guard|oneDNN custom operations|"
                      r"TensorFlow binary is optimized|^WARNING:absl:", re.M)


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_condense(*args, cwd=None, timeout=120, **env) -> subprocess.CompletedProcess:
    return subprocess.run(condense_command(*args), capture_output=True, text=True,
                          cwd=cwd, env=_env(**env), timeout=timeout)


def heavy_modules(proc: subprocess.CompletedProcess) -> list[str]:
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY_MODULES=")][-1]
    return [m for m in line.split("=", 1)[1].split(",") if m]


def _command_paths(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths.append((*prefix, name))
                paths += _command_paths(child, (*prefix, name))
    return paths


COMMANDS = _command_paths(build_parser())


def test_every_command_is_covered():
    tops = {path[0] for path in COMMANDS}
    assert {"data", "train", "evaluate", "predict", "export", "bench", "compare"} <= tops
    assert {("data", "synth"), ("data", "tensors"), ("data", "inspect"), ("data", "speed")} <= set(COMMANDS)


# -- no TensorFlow where none is needed ---------------------------------------------------------


def test_top_level_help_imports_no_tensorflow():
    proc = run_condense("--help")
    assert proc.returncode == 0, proc.stderr
    assert "COMMAND" in proc.stdout and "--verbose" in proc.stdout
    assert heavy_modules(proc) == []


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_help_imports_no_tensorflow(command):
    proc = run_condense(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: condense " + " ".join(command))
    assert heavy_modules(proc) == [], command


def test_data_commands_import_no_tensorflow(tmp_path):
    cohort = tmp_path / "cohort"
    proc = run_condense("data", "synth", "--out", cohort, "--episodes", 30)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote a synthetic cohort of 30 episodes (seed 0) to {cohort}" in proc.stdout
    assert heavy_modules(proc) == []

    proc = run_condense("data", "inspect", "--data", cohort, "--cache-dir", tmp_path / "cache", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert heavy_modules(proc) == []

    out = tmp_path / "test.npz"
    proc = run_condense("data", "tensors", "--data", cohort, "--split", "test", "--out", out,
                        "--cache-dir", tmp_path / "cache", "--quiet")
    assert proc.returncode == 0 and out.exists(), proc.stderr
    assert heavy_modules(proc) == []


def test_the_runner_does_see_tensorflow_when_a_command_imports_it(tmp_path):
    """The check above is not vacuous: a command that loads Keras shows up in HEAVY_MODULES."""
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER.replace("sys.argv = [", "import keras; sys.argv = ["), "--help"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "keras" in heavy_modules(proc)


# -- quiet TensorFlow, one line per epoch ------------------------------------------------------


@pytest.fixture(scope="module")
def piped_training(tiny_cohort, tmp_path_factory):
    """`condense train` with stdout and stderr going to pipes (not a terminal), 2 epochs."""
    tmp = tmp_path_factory.mktemp("cli-train")
    proc = run_condense("train", "--data", tiny_cohort, "--model", "lstm", "--epochs", 2, "--batch-size", 32,
                        "--cache-dir", tmp / "cache", "--out", tmp / "lstm", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _without_runner_line(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(("HEAVY_MODULES=", "RAY_IMPORTED=")))


def test_training_without_verbose_prints_no_tensorflow_noise(piped_training):
    err = _without_runner_line(piped_training.stderr)
    assert TF_NOISE.findall(err) == [], err[-3000:]


def test_training_into_a_pipe_prints_one_line_per_epoch_and_no_carriage_return(piped_training):
    out, err = piped_training.stdout, _without_runner_line(piped_training.stderr)
    assert "\r" not in out and "\r" not in err and "\b" not in out
    epochs = [ln for ln in err.splitlines() if re.match(r"epoch \d+/2: loss \d+\.\d{4}, val AUROC \d\.\d{4}, \d+\.\d s$", ln)]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"], err[-3000:]
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm: 8,081 params, test AUROC "), out
    # condense's own warnings (a tiny test split: bootstrap resamples of one class) are one line too
    assert not re.search(r"condense[/\\]\S+\.py:\d+: \w*Warning", err), err[-3000:]


def test_verbose_lets_tensorflow_speak_and_the_default_silences_it(tmp_path):
    probe = ("import os, sys; from condense.cli import main; code = main(sys.argv[1:]); "
             "print('LEVEL=' + os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    base = ["data", "synth", "--out", None, "--episodes", "20", "--quiet"]
    levels = []
    for k, extra in enumerate(([], ["--verbose"])):
        argv = [str(tmp_path / f"c{k}") if a is None else a for a in base]
        proc = subprocess.run([sys.executable, "-c", probe, *extra, *argv], capture_output=True, text=True,
                              env=_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        levels.append(proc.stdout.strip().splitlines()[-1])
    assert levels == ["LEVEL=3", "LEVEL=0"]


# -- one clear line ----------------------------------------------------------------------------


def test_library_argument_names_become_flags():
    flags = {"learning_rate": "--learning-rate", "epochs": "--epochs", "model": "--model", "out": "--out"}
    assert flag_worded("Argument `learning_rate` must be a finite number > 0; got learning_rate=0.0.", flags) == (
        "--learning-rate must be a finite number > 0; got 0.0.")
    assert flag_worded("Argument `prune_quantile` applies to models ('lstm',), not to model='lr'.", flags) == (
        "Argument `prune_quantile` applies to models ('lstm',), not to --model 'lr'.")
    assert flag_worded("epochs must be at least 1, got 0", flags) == "--epochs must be at least 1, got 0"
    assert flag_worded("learning_rate is too large", flags) == "--learning-rate is too large"
    # plain words and paths are left alone
    assert flag_worded("the model in /tmp/out/learning_rate_1 has no epochs", flags) == (
        "the model in /tmp/out/learning_rate_1 has no epochs")
    assert flag_worded("out_dir 'x' is not empty", flags) == "out_dir 'x' is not empty"


def test_a_library_error_is_one_flag_worded_line(tmp_path, capsys):
    code = main(["train", "--data", "synthetic:40", "--model", "lstm", "--learning-rate", "0",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("condense train: error: --learning-rate must be ") and "learning_rate" not in err


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "base.csv"), str(tmp_path / "new.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("condense compare: error: ") and err.count("\n") == 1 and "base.csv" in err


def test_verbose_is_accepted_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--verbose", "data", "synth", "--out", "x", "--episodes", "3"]).verbose is True
    assert parser.parse_args(["data", "synth", "--out", "x", "--episodes", "3", "--verbose"]).verbose is True
    assert parser.parse_args(["data", "synth", "--out", "x", "--episodes", "3"]).verbose is False


def test_the_cli_lists_are_the_library_registries():
    """`--format`, `--route`, `--model` and `--profile` choices come from the library's lists."""
    from condense.bench.profiles import PROFILES
    from condense.export.convert import ROUTES
    from condense.export.formats import FORMATS
    from condense.train import model_names

    parser = build_parser()
    sub = {name: p for name, p in parser._subparsers._group_actions[0].choices.items()}

    def choices(command, dest):
        return tuple(next(a for a in sub[command]._actions if a.dest == dest).choices)

    assert choices("export", "format") == tuple(FORMATS)
    assert choices("evaluate", "format") == choices("predict", "format") == ("keras", *FORMATS)
    assert choices("export", "route") == ROUTES
    assert set(choices("train", "model")) == set(model_names()) == {"lstm", "hlstm", "dnn", "lr", "gbm"}
    assert set(choices("bench", "profile")) == set(PROFILES)


@pytest.mark.parametrize("argv, message", [
    (["predict", "--model", "M", "--data", "synthetic", "--out", "{folder}"], "argument --out: {folder} is a folder"),
    (["evaluate", "--model", "M", "--json", "{folder}"], "argument --json: {folder} is a folder"),
    (["data", "tensors", "--data", "synthetic", "--split", "test", "--out", "{folder}"],
     "argument --out: {folder} is a folder"),
    (["data", "inspect", "--data", "synthetic", "--json", "{folder}"], "argument --json: {folder} is a folder"),
    (["train", "--data", "synthetic", "--model", "lstm", "--out", "{file}"], "argument --out: {file} is a file"),
    (["bench", "--profile", "smoke", "--out", "{file}"], "argument --out: {file} is a file"),
    (["train", "--data", "synthetic", "--model", "lstm", "--out", "{file}/model"], "{file} is a file, not a folder"),
])
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, argv, message):
    """A folder where a file belongs (or the reverse) is one line, at parse time: nothing is read or written."""
    folder, file = tmp_path / "a-folder", tmp_path / "a-file"
    folder.mkdir()
    file.write_text("keep")
    fill = lambda s: s.format(folder=folder, file=file)  # noqa: E731
    with pytest.raises(SystemExit) as info:
        main([fill(a) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fill(message) in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"]
    assert not list(folder.iterdir()) and file.read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SystemExit):
            main(["predict", "--model", "M", "--data", "synthetic", "--out", str(locked / "p.csv")])
        assert "permission denied" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("error, line", [
    (PermissionError(13, "Permission denied", "/data/cohort/train"), "/data/cohort/train: permission denied"),
    (IsADirectoryError(21, "Is a directory", "/data/x.csv"), "/data/x.csv: is a directory (a file was expected)"),
])
def test_operating_system_errors_are_one_line_naming_the_path(monkeypatch, capsys, error, line):
    """An unreadable folder or a folder where a file belongs, met deep in a command, is one line."""
    import condense.data

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(condense.data, "load_dataset", refuse)
    assert main(["data", "inspect", "--data", "/data/cohort"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"condense data: error: {line}"
