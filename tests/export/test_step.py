"""Step files (``export --form step``): one hour in, the output and the new state out.

Parity: float32 chained over the 48 steps equals Keras to 1e-5 for every recurrent family; int8
(calibrated on (x_t, state_t) pairs) stays within 0.01 AUROC of Keras and is smaller than its
float32 file; no file holds a loop or a state of its own; TFLM runs them; bad input is one line.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from test_export import C, realistic_inputs  # noqa: E402

from condense import models  # noqa: E402
from condense.cli import main  # noqa: E402
from condense.export import micro  # noqa: E402
from condense.export.convert import ExportError, ExportJob, export_tflite_many  # noqa: E402
from condense.export.recurrent_graphs import analyse  # noqa: E402
from condense.export.step_export import FORBIDDEN_STEP_OPS  # noqa: E402
from condense.export.step_graph import StepGraph  # noqa: E402
from condense.export.step_runner import StepModel, is_step_file, step_io_names  # noqa: E402
from condense.evaluate.metrics import auroc  # noqa: E402

FLOAT_TOL = 1e-5
INT8_AUROC_TOL = 0.01
INT8_MAX_TOL = 0.10  # as the whole-sequence int8 files (tests/export/test_export.py)
FAMILIES = {
    "lstm": lambda: models.build_lstm(C),
    "lstm_pruned_8_4": lambda: models.build_lstm(C, units=(8, 4)),
    "hlstm_gates": lambda: models.build_hlstm(C, hidden="gates"),
    "hlstm_gates_pruned_8": lambda: models.build_hlstm(C, units=8, hidden="gates"),
    "hlstm_input": lambda: models.build_hlstm(C, hidden="input"),
}


@pytest.fixture(scope="module")
def step_files(tmp_path_factory):
    """Every family trained 3 epochs on the synthetic task and exported to float32, int8 and dynamic
    step files (one conversion child), plus the LSTM's whole-sequence int8 file."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("step")
    x_train, y_train = realistic_inputs(600, seed=10)
    x_test, y_test = realistic_inputs(200, seed=11)
    out, jobs = {}, []
    for name, build in FAMILIES.items():
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
        path = folder / f"{name}.keras"
        model.save(path)
        out[name] = {"model": model, "p_keras": model.predict(x_test, verbose=0).reshape(-1)}
        for fmt in ("float32", "int8", "dynamic"):
            out[name][fmt] = folder / f"{name}.{fmt}.step.tflite"
            jobs.append(ExportJob(path, out[name][fmt], fmt, calibration_x=x_train[:200], form="step"))
    out["lstm"]["sequence_int8"] = folder / "lstm.int8.tflite"
    jobs.append(ExportJob(folder / "lstm.keras", out["lstm"]["sequence_int8"], "int8", calibration_x=x_train[:200]))
    outcomes = {path: info for path, info in export_tflite_many(jobs, details=True)}
    return {"models": out, "outcomes": outcomes, "x_test": x_test, "y_test": y_test, "x_train": x_train,
            "folder": folder}


def test_the_step_equations_equal_keras_eagerly():
    keras.utils.set_random_seed(2)
    x, _ = realistic_inputs(16, seed=5)
    for name, build in FAMILIES.items():
        model = build()
        graph = StepGraph(analyse(model))
        assert [s.name for s in graph.states] == [f"{k}{i}" for i in range(1, len(analyse(model).recurrent) + 1)
                                                  for k in "hc"], name
        np.testing.assert_allclose(graph.run(x), model.predict(x, verbose=0).reshape(-1), atol=1e-6, err_msg=name)


def test_the_folded_normalizer_takes_clinical_units_and_gives_the_same_risk():
    """``(x - mean) / scale`` folded into the first layer of every family: the graph fed the values in
    their units equals the unfolded graph fed the normalized ones (and differs on the normalized ones)."""
    keras.utils.set_random_seed(3)
    x, _ = realistic_inputs(16, seed=6)
    rng = np.random.default_rng(0)
    mean, scale = np.zeros(C), np.ones(C)
    mean[:20], scale[:20] = rng.uniform(-50, 150, 20), rng.uniform(0.05, 40, 20)  # pH-like to glucose-like
    x_units = (x.astype(np.float64) * scale + mean).astype(np.float32)
    for name, build in FAMILIES.items():
        chain = analyse(build())
        p = StepGraph(chain).run(x)
        folded = StepGraph(chain, normalizer=(mean, scale))
        assert folded.normalizer_folded
        np.testing.assert_allclose(folded.run(x_units), p, atol=1e-6, err_msg=name)
        assert np.max(np.abs(folded.run(x) - p)) > 1e-3, name
    with pytest.raises(ValueError, match="needs 76 means and positive scales, got 75 and 75"):
        StepGraph(chain, normalizer=(mean[:-1], scale[:-1]))
    with pytest.raises(ValueError, match="only a float32 step file folds the normalizer"):
        ExportJob("m.keras", "m.tflite", "int8", form="step", normalizer=(mean, scale))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_float32_step_file_chained_over_48_steps_equals_keras(step_files, name):
    entry = step_files["models"][name]
    p = StepModel(entry["float32"]).predict(step_files["x_test"])
    assert np.max(np.abs(p - entry["p_keras"])) <= FLOAT_TOL
    assert step_files["outcomes"][entry["float32"]]["step_parity_max_abs"] <= FLOAT_TOL


@pytest.mark.parametrize("name", list(FAMILIES))
def test_int8_step_file_is_small_and_close_to_keras(step_files, name):
    entry, y = step_files["models"][name], step_files["y_test"]
    p = StepModel(entry["int8"]).predict(step_files["x_test"])
    assert abs(auroc(y, p) - auroc(y, entry["p_keras"])) <= INT8_AUROC_TOL
    assert np.max(np.abs(p - entry["p_keras"])) <= INT8_MAX_TOL
    assert entry["int8"].stat().st_size < entry["float32"].stat().st_size
    assert "int8" in step_files["outcomes"][entry["int8"]]["constant_bytes"]


def test_step_files_hold_no_loop_and_no_state_and_take_one_hour_at_batch_one(step_files):
    for name, entry in step_files["models"].items():
        for fmt in ("float32", "int8", "dynamic"):
            outcome = step_files["outcomes"][entry[fmt]]
            assert not set(outcome["ops"]) & set(FORBIDDEN_STEP_OPS), (name, fmt, outcome["ops"])
            assert outcome["form"] == "step" and outcome["input_shape"] == [1, C]
            inputs, outputs = step_io_names(entry[fmt].read_bytes())
            states = [s["name"] for s in outcome["states"]]
            assert sorted(inputs) == sorted(["x", *states]) and sorted(outputs) == sorted(
                ["p", *(s + "_out" for s in states)]), (name, fmt)
            assert is_step_file(entry[fmt])
    assert not is_step_file(step_files["models"]["lstm"]["sequence_int8"])


def test_the_hlstm_int8_step_file_is_far_smaller_than_its_sequence_form(step_files):
    """The gates-form hLSTM's whole-sequence int8 file is unrolled over 48 steps (~109 KB)."""
    assert step_files["models"]["hlstm_gates"]["int8"].stat().st_size < 20_000
    assert step_files["models"]["hlstm_gates_pruned_8"]["int8"].stat().st_size < 12_000


def test_the_runner_keeps_the_state_on_the_caller_side(step_files):
    runner = StepModel(step_files["models"]["lstm"]["float32"])
    x = step_files["x_test"][:2]
    path = runner.trajectory(x[0])
    assert path.shape == (48,) and path[-1] == pytest.approx(runner.predict(x[:1])[0], abs=0)
    runner.start()
    by_hand = [runner.step(x_t) for x_t in x[0]]
    assert by_hand == list(path)
    runner.start()
    for x_t in x[0, :24]:
        runner.step(x_t)
    halfway = dict(runner.state)  # a device that stored the state after 24 hours resumes from it
    rest = [runner.step(x_t) for x_t in x[0, 24:]]
    runner.start(halfway)
    assert [runner.step(x_t) for x_t in x[0, 24:]] == rest == list(path[24:])
    assert runner.predict(x)[1] != runner.predict(x)[0], "each sequence starts from zero state"


@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_the_timed_single_step_call_carries_the_state_like_the_runner(step_files, fmt):
    """The latency loop (plain interpreter, tensors by index) computes what ``step`` computes."""
    runner = StepModel(step_files["models"]["lstm"][fmt])
    x_t = step_files["x_test"][0, 5]
    call = runner.single_step_call(x_t)
    timed = [float(np.asarray(call()).reshape(-1)[0]) for _ in range(48)]
    assert timed == list(runner.trajectory(np.repeat(x_t[None], 48, axis=0)))


def test_the_runner_rejects_wrong_shapes_in_one_line(step_files):
    runner = StepModel(step_files["models"]["lstm"]["int8"])
    with pytest.raises(ValueError, match=r"state 'h1' has shape \(1, 8\); the file takes \(1, 16\)"):
        runner.start({"h1": np.zeros((1, 8)), "c1": np.zeros(16), "h2": np.zeros(16), "c2": np.zeros(16)})
    with pytest.raises(ValueError, match=r"the state must have the entries \['c1', 'c2', 'h1', 'h2'\]"):
        runner.start({"h1": np.zeros(16)})
    with pytest.raises(ValueError, match=rf"one hour has {C} values, got an array of shape \(48, {C}\)"):
        runner.step(step_files["x_test"][0])
    with pytest.raises(ValueError, match=rf"expected inputs of shape \(N, T, {C}\)"):
        runner.predict(step_files["x_test"][0])
    with pytest.raises(ValueError, match=r"not a step file \(inputs \['x'\]; a step file takes 'x' and the recurrent state\)"):
        StepModel(step_files["models"]["lstm"]["sequence_int8"])
    with pytest.raises(FileNotFoundError, match="step .tflite file not found"):
        StepModel(step_files["folder"] / "missing.tflite")


def test_step_files_run_on_tflm_like_on_litert(step_files):
    if not micro.available():
        pytest.skip("tflite-micro is not installed")
    x = step_files["x_test"][:6]
    for name in ("lstm", "hlstm_gates", "hlstm_input"):
        entry = step_files["models"][name]
        for fmt, tol in (("float32", 1e-6), ("int8", 1 / 128)):
            run = micro.run_micro(entry[fmt], x)
            assert run["arena_bytes"] > 0, (name, fmt)
            assert np.max(np.abs(run["outputs"][:, 0] - StepModel(entry[fmt]).predict(x))) <= tol, (name, fmt)
    with pytest.raises(micro.MicroError, match="hybrid FULLY_CONNECTED"):
        micro.run_micro(step_files["models"]["lstm"]["dynamic"], x)


def test_models_that_cannot_be_stepped_are_refused_naming_the_layer(tmp_path):
    inputs = keras.Input(shape=(48, C))
    bidirectional = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Bidirectional(keras.layers.LSTM(4), name="both_ways")(inputs)))
    with pytest.raises(ValueError, match=r"cannot build a step graph: layer 'both_ways' \(Bidirectional\)"):
        StepGraph(analyse(bidirectional))
    backwards = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.LSTM(4, go_backwards=True, name="back")(inputs)))
    with pytest.raises(ValueError, match="layer 'back' is go_backwards"):
        StepGraph(analyse(backwards))
    dnn = models.build_dnn(C)
    dnn.save(tmp_path / "dnn.keras")
    with pytest.raises(ExportError, match="has no recurrent layer: a step file steps a recurrent state"):
        export_tflite_many([ExportJob(tmp_path / "dnn.keras", tmp_path / "dnn.step.tflite", "float32", form="step")])
    assert not (tmp_path / "dnn.step.tflite").exists()
    with pytest.raises(ValueError, match="form='step' takes no route and no int8_io"):
        ExportJob(tmp_path / "dnn.keras", tmp_path / "x.tflite", "int8", form="step", int8_io=True)
    with pytest.raises(ValueError, match="Argument `form` must be one of"):
        ExportJob(tmp_path / "dnn.keras", tmp_path / "x.tflite", "int8", form="hourly")


def test_masked_hours_in_the_data_refuse_a_step_file(step_files, tmp_path):
    x = step_files["x_train"][:20].copy()
    x[3, 5] = 0.0  # an all-zero hour: Keras' Masking skips it, a step file cannot
    path = tmp_path / "lstm.keras"
    step_files["models"]["lstm"]["model"].save(path)
    with pytest.raises(ExportError, match=r"1 of 20 checked samples have 1 time step\(s\) with every feature equal "
                                          r"to the mask value 0"):
        export_tflite_many([ExportJob(path, tmp_path / "s.tflite", "float32", calibration_x=x, form="step")])


# -- the command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hlstm_dir(tiny_cohort, tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "hlstm"
    assert main(["train", "--data", str(tiny_cohort), "--model", "hlstm", "--prune-quantile", "0.5", "--epochs", "2",
                 "--batch-size", "32", "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]) == 0
    return out


def test_condense_export_form_step_then_evaluate_and_predict(hlstm_dir, tiny_cohort, tiny_cache, tmp_path, capsys):
    cache = ["--cache-dir", str(tiny_cache)]
    assert main(["export", "--model", str(hlstm_dir), "--format", "int8", "--form", "step", "--quiet", *cache]) == 0
    out = capsys.readouterr().out
    path = hlstm_dir / "model.int8.step.tflite"
    assert f"{path}: {path.stat().st_size:,} bytes (int8, one step per call)" in out
    assert "inputs: x (1 hour) and the state h1 (8), c1 (8)" in out and "chained over 48 steps" in out
    assert "us per step" in out and "TensorFlow Lite for Microcontrollers" in out
    assert main(["evaluate", "--model", str(hlstm_dir), "--format", "int8", "--form", "step", *cache,
                 "--quiet"]) == 0
    assert "[int8 step]: test AUROC" in capsys.readouterr().out
    scores = tmp_path / "p.csv"
    assert main(["predict", "--model", str(hlstm_dir), "--format", "int8", "--form", "step", "--data",
                 str(tiny_cohort), "--out", str(scores), "--quiet", *cache]) == 0
    assert "[int8 step]" in capsys.readouterr().out and scores.read_text().count("\n") > 10
    # the sequence file is another file: not exported yet
    assert main(["evaluate", "--model", str(hlstm_dir), "--format", "float32", "--form", "step", "--quiet"]) == 2
    assert "--format float32 --form step` first" in capsys.readouterr().err
    assert main(["export", "--model", str(hlstm_dir), "--format", "int8", "--form", "step", "--int8-io"]) == 2
    assert "--form step takes neither --int8-io nor --route" in capsys.readouterr().err


def test_folded_and_unfolded_float32_step_files_agree(hlstm_dir, tiny_cache, tmp_path, capsys):
    """``condense export --form step`` folds the normalizer into a float32 step file (metadata says so;
    the file takes clinical units); ``--no-fold`` keeps it outside; ``predict`` scores both the same."""
    from condense.export.metadata import read_metadata
    from condense.runs.scoring import SavedModel

    from condense.runs.workflow import _load_data_for

    cache = ["--cache-dir", str(tiny_cache)]
    path = hlstm_dir / "model.float32.step.tflite"
    keras_model = SavedModel(hlstm_dir, "keras")
    X = _load_data_for(hlstm_dir, keras_model.manifest, None, cache_dir=tiny_cache, quiet=True)[1].test.X
    scores = {}
    for flags in (["--no-fold"], []):
        assert main(["export", "--model", str(hlstm_dir), "--format", "float32", "--form", "step", "--quiet",
                     *flags, *cache]) == 0
        out = capsys.readouterr().out
        assert ("folded into the first layer" in out) == (not flags), out
        assert read_metadata(path)[0]["normalizer_folded"] == (not flags)
        saved = SavedModel(hlstm_dir, "float32", form="step")
        assert saved.normalizer_folded == (not flags)
        scores["unfolded" if flags else "folded"] = saved.predict_raw(X)
    np.testing.assert_allclose(scores["folded"], scores["unfolded"], atol=FLOAT_TOL)
    np.testing.assert_allclose(scores["unfolded"], keras_model.predict_raw(X), atol=FLOAT_TOL)
    folded = saved
    # the folded file really takes clinical units: fed normalized values it gives other numbers
    assert np.max(np.abs(folded.predict_inputs(folded.inputs.transform(X)) - scores["unfolded"])) > 1e-3
    capsys.readouterr()
    assert main(["export", "--model", str(hlstm_dir), "--format", "int8", "--form", "step", "--no-fold", *cache]) == 2
    assert "--no-fold applies to float32 step files" in capsys.readouterr().err


def test_exported_files_carry_their_input_contract(hlstm_dir, tiny_cache, step_files, tmp_path, capsys):
    """``condense export`` writes the contract into the file; ``condense inspect`` and
    :func:`read_metadata` read it; a file without it (or with a damaged one) still loads and says so."""
    from condense.export.metadata import read_metadata, with_metadata
    from condense.io import read_json

    assert main(["export", "--model", str(hlstm_dir), "--format", "float32", "--form", "step", "--quiet",
                 "--cache-dir", str(tiny_cache)]) == 0
    path = hlstm_dir / "model.float32.step.tflite"
    metadata, note = read_metadata(path)
    assert note == "" and metadata["form"] == "step" and metadata["format"] == "float32" and metadata["steps"] == 48
    assert metadata["preprocessing"] == read_json(hlstm_dir / "preprocessing.json")
    assert [s["name"] for s in metadata["states"]] == ["h1", "c1"] and metadata["inputs"] == ["x", "h1", "c1"]
    manifest = read_json(hlstm_dir / "manifest.json")
    assert metadata["data_fingerprint"] == manifest["data"]["fingerprint"]
    assert metadata["test_auroc"] == manifest["metrics"]["test"]["auroc"] and metadata["model"] == "hlstm"
    capsys.readouterr()
    assert main(["inspect", str(path), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "in x: [1, 76] float32" in out and "out p: [1, 1] float32" in out
    assert "condense metadata: hlstm float32 step file, 48 steps of 1 hour" in out and "h1 (8), c1 (8)" in out
    assert read_json(tmp_path / "m.json") == metadata
    # a file made outside `condense export`, and one whose entry is damaged: they load, the note says why
    bare = step_files["models"]["lstm"]["float32"]
    assert read_metadata(bare) == (None, "no condense metadata in the file (not exported by condense export): "
                                         "metadata missing")
    assert main(["inspect", str(bare)]) == 0 and "metadata missing" in capsys.readouterr().out
    entry = with_metadata(path.read_bytes(), {"x": 1})  # a known entry whose compressed bytes we then break
    start = entry.rfind(__import__("zlib").compress(b'{"x":1}', 9))
    broken = entry[:start] + b"\x00" * 8 + entry[start + 8:]
    assert read_metadata(broken)[0] is None and "does not parse" in read_metadata(broken)[1]
    assert StepModel(broken).predict(step_files["x_test"][:1, :, :].astype("float32")).shape == (1,)
