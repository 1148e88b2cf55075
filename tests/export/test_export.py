"""Keras -> .tflite export and the LiteRT runner.

Numbered parity checks with explicit tolerances:

1. float32 vs Keras, every family (LSTM, hLSTM both readings, DNN, pruned-width LSTM and DNN):
   max |p_tflite - p_keras| <= 1e-5 on 64 samples.
2. int8 vs Keras, trained DNN / LSTM / hLSTM on a learnable synthetic task with realistic
   inputs (one-hot and mask channels, standardized heavy-tailed continuous channels):
   |AUROC_tflite - AUROC_keras| <= 0.01, the 99th percentile of |p_tflite - p_keras| <= 0.05,
   the maximum <= 0.05 for the DNN and <= 0.10 for the recurrent models (see
   ``INT8_RECURRENT_MAX_TOL``).
3. dynamic (int8 weights, the hybrid fused LSTM for recurrent models) vs Keras: max |diff| <=
   0.05, and for the LSTM |AUROC_tflite - AUROC_keras| <= 0.005.

Recurrent files take the fused UNIDIRECTIONAL_SEQUENCE_LSTM route when the calibration data
shows that dropping Masking is exact (no all-zero step); the tests read the op list to prove
which graph each file holds, and check the state reset, the Masking fallback and TFLM.

Conversions are slow (a child process that starts TensorFlow, then the converter), so each
module fixture converts a whole group in one child (:func:`export_tflite_many`) and the tests
share the files.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense import models  # noqa: E402
from condense.export.conversion_child import FAULT_ENV  # noqa: E402
from condense.export.file_checks import DYNAMIC_MIN_ELEMENTS  # noqa: E402
from condense.export.convert import (  # noqa: E402
    FORMATS,
    ROUTES,
    ExportError,
    ExportJob,
    clip_calibration,
    export_tflite,
    export_tflite_many,
)
from condense.export.litert_runner import TFLiteModel, parity_check  # noqa: E402

T, C = 48, 76
FLOAT_TOL = 1e-5
DYNAMIC_AUROC_TOL = 0.005
INT8_AUROC_TOL = 0.01
INT8_PROB_TOL = 0.05
# Full-int8 recurrent models carry an int8-rounded state through 48 unrolled steps: over six
# training seeds of this task the largest single-sample deviation of an LSTM / hLSTM was
# 0.025-0.091 (99th percentile <= 0.04, AUROC within 0.003). The DNN stays within 0.05.
INT8_RECURRENT_MAX_TOL = 0.10


def realistic_inputs(n: int, seed: int):
    """(X, y): X (n, 48, 76) like preprocessed IHM inputs, y a learnable 0/1 label.

    Channels 0-16 continuous, standardized, heavy-tailed (Student t, 3 d.o.f.: outliers of tens
    of standard deviations); 17-58 six one-hot groups of 7; 59-75 0/1 observation masks.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, T, C), np.float32)
    level = rng.standard_normal((n, 1, 17)).astype(np.float32)
    x[:, :, :17] = level + 0.6 * rng.standard_t(3, size=(n, T, 17)).astype(np.float32)
    cats = rng.integers(0, 7, size=(n, T, 6))
    for g in range(6):
        np.put_along_axis(x[:, :, 17 + 7 * g: 24 + 7 * g], cats[:, :, g, None], 1.0, axis=2)
    x[:, :, 59:] = rng.random((n, T, 17)) < 0.3
    logit = (1.2 * level[:, 0, 0] - 0.8 * level[:, 0, 3] + 1.2 * (cats[:, -12:, 0] >= 4).mean(1)
             + 0.9 * x[:, :, 59].mean(1) - 1.0)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return x, y


def dnn_features(x: np.ndarray) -> np.ndarray:
    """A (N, 76) feature vector per episode for the DNN: the mean over time (heavy tails remain:
    one outlier of tens of standard deviations moves a mean by about one)."""
    return np.ascontiguousarray(x.mean(axis=1))


def kernel_elements(model) -> int:
    """Number of weight-matrix elements (every weight except biases) of ``model``."""
    return sum(int(np.prod(w.shape)) for w in model.weights if len(w.shape) >= 2)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

def build_lstm_relu():
    """An LSTM stack the fused op cannot compute (ReLU cell activation)."""
    inputs = keras.Input(shape=(T, C), name="input")
    x = keras.layers.Masking(name="masking")(inputs)
    x = keras.layers.LSTM(8, activation="relu", name="lstm_1")(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(x))


FAMILIES = {
    "lstm": lambda: models.build_lstm(C),
    "lstm_relu": build_lstm_relu,
    "hlstm_gates": lambda: models.build_hlstm(C, hidden="gates"),
    "hlstm_input": lambda: models.build_hlstm(C, hidden="input"),
    "dnn": lambda: models.build_dnn(C),
    "lstm_pruned_8_8": lambda: models.build_lstm(C, units=(8, 8)),
    "dnn_pruned_128_64_32": lambda: models.build_dnn(C, units=(128, 64, 32)),
}


def _inputs_for(model, x):
    return dnn_features(x) if len(model.inputs[0].shape) == 2 else x


@pytest.fixture(scope="module")
def float_exports(tmp_path_factory):
    """Every family, untrained (seeded random weights), saved and exported to float32 (the
    pruned LSTM also to dynamic, the LSTM also by the Keras 3 default WHILE route) in one child;
    the inputs double as the data that proves dropping Masking exact."""
    keras.utils.set_random_seed(1)
    folder = tmp_path_factory.mktemp("float32")
    x, _ = realistic_inputs(64, seed=3)
    out, jobs = {}, []
    for name, build in FAMILIES.items():
        model = build()
        path = folder / f"{name}.keras"
        model.save(path)
        out[name] = {"model": model, "keras_path": path, "x": _inputs_for(model, x),
                     "tflite": folder / f"{name}.float32.tflite"}
        jobs.append(ExportJob(path, out[name]["tflite"], "float32", calibration_x=out[name]["x"]))
    # a pruned width below the converter's dynamic-range threshold for some tensors
    out["lstm_pruned_8_8"]["dynamic"] = folder / "lstm_pruned_8_8.dynamic.tflite"
    jobs.append(ExportJob(out["lstm_pruned_8_8"]["keras_path"], out["lstm_pruned_8_8"]["dynamic"], "dynamic",
                          calibration_x=x))
    out["dnn"]["batched"] = folder / "dnn.batched.float32.tflite"  # a dynamic batch, asked for by name
    jobs.append(ExportJob(out["dnn"]["keras_path"], out["dnn"]["batched"], "float32", dynamic_batch=True))
    out["lstm"]["while"] = folder / "lstm.while.float32.tflite"
    jobs.append(ExportJob(out["lstm"]["keras_path"], out["lstm"]["while"], "float32", route="while"))
    outcomes = {path: info for path, info in export_tflite_many(jobs, details=True)}
    for entry in out.values():
        entry["route"] = outcomes[entry["tflite"]]["route"]
    out["lstm"]["while_route"] = outcomes[out["lstm"]["while"]]["route"]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """DNN, LSTM and both hLSTM forms trained a few epochs on the synthetic task, saved to disk."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("trained")
    x_train, y_train = realistic_inputs(900, seed=10)
    x_test, y_test = realistic_inputs(300, seed=11)
    out = {}
    for name, model in (("dnn", models.build_dnn(C)), ("lstm", models.build_lstm(C)), ("hlstm", models.build_hlstm(C)),
                        ("hlstm_input", models.build_hlstm(C, hidden="input"))):
        xtr, xte = _inputs_for(model, x_train), _inputs_for(model, x_test)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        model.fit(xtr, y_train, epochs=4, batch_size=32, verbose=0)
        path = folder / f"{name}.keras"
        model.save(path)
        out[name] = {"model": model, "keras_path": path, "x_train": xtr, "x_test": xte, "y_test": y_test}
    return out


@pytest.fixture(scope="module")
def quantized_exports(trained, tmp_path_factory):
    """int8 (float I/O) of each trained family, int8 with int8 I/O of the DNN and LSTM, int8 of
    the LSTM with a plain min/max input range, dynamic of the LSTM, hLSTM-input and DNN, float32
    of the DNN and LSTM: one child process. ``files["routes"]`` holds each file's route."""
    folder = tmp_path_factory.mktemp("quantized")
    files, jobs = {}, []

    def add(key, name, fmt, **kwargs):
        files[key] = folder / f"{key}.tflite"
        kwargs.setdefault("calibration_x", trained[name]["x_train"][:200])
        jobs.append(ExportJob(trained[name]["keras_path"], files[key], fmt, **kwargs))

    for name in ("dnn", "lstm", "hlstm", "hlstm_input"):
        add(f"{name}.int8", name, "int8")
    add("dnn.int8io", "dnn", "int8", int8_io=True)
    add("lstm.int8io", "lstm", "int8", int8_io=True)
    add("lstm.int8.minmax", "lstm", "int8", input_percentile=None)
    add("lstm.dynamic", "lstm", "dynamic")
    add("hlstm_input.dynamic", "hlstm_input", "dynamic")
    add("dnn.dynamic", "dnn", "dynamic")
    add("dnn.float32", "dnn", "float32")
    add("lstm.float32", "lstm", "float32")
    files["routes"] = {path.name: info["route"] for path, info in export_tflite_many(jobs, details=True)}
    return files


# ---------------------------------------------------------------------------------------------
# 1. float32: exact parity, every family
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_float32_matches_keras_within_1e5(float_exports, name):
    entry = float_exports[name]
    report = parity_check(entry["model"], entry["tflite"], entry["x"])
    assert report["n"] == 64
    assert report["max_abs_diff"] <= FLOAT_TOL, report["max_abs_diff"]
    runner = TFLiteModel(entry["tflite"])
    assert runner.io_dtype == np.float32
    assert not runner.is_quantized
    assert runner.tensor_dtypes().get("int8", 0) == 0
    assert runner.tensor_dtypes("bytes")["float32"] >= 4 * kernel_elements(entry["model"])


@pytest.mark.slow
def test_every_file_has_batch_one_and_a_dynamic_batch_only_by_name(float_exports):
    """LiteRT.js and TFLM take a fixed shape: every file has batch 1 (the DNN too, since the step-file
    issue); a batched DNN file is made only when asked for (``dynamic_batch=True``)."""
    for name in ("lstm", "lstm_relu", "hlstm_gates", "hlstm_input", "lstm_pruned_8_8"):
        runner = TFLiteModel(float_exports[name]["tflite"])
        assert runner.input_shape == (1, T, C)
        assert not runner.dynamic_batch
    for name in ("dnn", "dnn_pruned_128_64_32"):
        runner = TFLiteModel(float_exports[name]["tflite"])
        assert runner.input_shape == (1, C) and not runner.dynamic_batch
        assert float_exports[name]["route"] == "batch 1"
    batched = TFLiteModel(float_exports["dnn"]["batched"])
    assert batched.input_shape == (None, C) and batched.dynamic_batch
    x = float_exports["dnn"]["x"]
    np.testing.assert_allclose(batched.predict(x), TFLiteModel(float_exports["dnn"]["tflite"]).predict(x), atol=1e-6)


@pytest.mark.slow
def test_pruned_width_files_are_smaller(float_exports):
    size = {name: entry["tflite"].stat().st_size for name, entry in float_exports.items()}
    assert size["lstm_pruned_8_8"] < size["lstm"]
    assert size["dnn_pruned_128_64_32"] < size["dnn"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "dnn"])
def test_runner_predicts_any_number_of_samples(float_exports, name):
    entry = float_exports[name]
    runner = TFLiteModel(entry["tflite"])
    x = entry["x"]
    expected = np.asarray(entry["model"].predict(x[:7], verbose=0)).reshape(-1)
    one = runner.predict(x[:1])
    seven = runner.predict(x[:7])
    single = runner.predict(x[0])  # one sample without the batch axis
    assert one.shape == (1,) and seven.shape == (7,) and single.shape == (1,)
    assert one.dtype == np.float32 and seven.dtype == np.float32
    np.testing.assert_allclose(seven, expected, atol=FLOAT_TOL)
    np.testing.assert_allclose(one, seven[:1], atol=1e-6)
    np.testing.assert_allclose(single, seven[:1], atol=1e-6)
    # the dynamic-batch file gives the same numbers run in small chunks as in one batch
    chunked = TFLiteModel(entry["tflite"], batch_size=3).predict(x[:7])
    np.testing.assert_allclose(chunked, seven, atol=1e-6)


@pytest.mark.slow
def test_runner_rejects_wrong_input_shape(float_exports):
    runner = TFLiteModel(float_exports["lstm"]["tflite"])
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 48, 76\)"):
        runner.predict(np.zeros((2, 48, 75), np.float32))


def test_runner_reports_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        TFLiteModel(tmp_path / "nope.tflite")


# ---------------------------------------------------------------------------------------------
# 2. int8: bounded accuracy loss, real int8 weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dnn", "lstm", "hlstm", "hlstm_input"])
def test_int8_matches_keras_auroc_and_probabilities(trained, quantized_exports, name):
    entry = trained[name]
    report = parity_check(entry["model"], quantized_exports[f"{name}.int8"], entry["x_test"], entry["y_test"])
    print(f"{name} int8: max|diff| {report['max_abs_diff']:.4f}, AUROC keras {report['auroc_keras']:.4f} "
          f"tflite {report['auroc_tflite']:.4f}")
    assert report["auroc_keras"] > 0.65, "the synthetic task should be learnable"
    assert abs(report["auroc_diff"]) <= INT8_AUROC_TOL, report
    diff = np.abs(report["p_tflite"] - report["p_keras"])
    assert np.percentile(diff, 99) <= INT8_PROB_TOL
    assert report["max_abs_diff"] <= (INT8_PROB_TOL if name == "dnn" else INT8_RECURRENT_MAX_TOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dnn", "lstm", "hlstm", "hlstm_input"])
def test_int8_file_holds_int8_weights_and_float_io(trained, quantized_exports, name):
    runner = TFLiteModel(quantized_exports[f"{name}.int8"])
    stored = runner.tensor_dtypes("bytes")
    assert runner.is_quantized
    # every weight-matrix element is stored as one int8 byte; no float weights remain but the
    # recurrent files' float Dense head (kernel + bias after the dequantized hidden state)
    head = trained[name]["model"].get_layer("output")
    head_elements = 0 if name == "dnn" else sum(int(np.prod(w.shape)) for w in head.weights)
    assert stored["int8"] >= kernel_elements(trained[name]["model"]) - head_elements
    assert stored.get("float32", 0) <= 16 + 4 * head_elements
    assert stored.get("int32", 0) > 0  # biases
    assert runner.io_dtype == np.float32
    assert runner.output_details["dtype"] == np.float32


@pytest.mark.slow
def test_clipped_input_range_beats_plain_min_max_on_outlier_data(trained, quantized_exports):
    entry = trained["lstm"]
    assert np.abs(entry["x_train"][:200]).max() > 50, "the data should have gross outliers"
    clipped = parity_check(entry["model"], quantized_exports["lstm.int8"], entry["x_test"], entry["y_test"])
    minmax = parity_check(entry["model"], quantized_exports["lstm.int8.minmax"], entry["x_test"], entry["y_test"])
    print(f"lstm int8 mean|diff| clipped {clipped['mean_abs_diff']:.4f} vs min/max {minmax['mean_abs_diff']:.4f}; "
          f"max {clipped['max_abs_diff']:.4f} vs {minmax['max_abs_diff']:.4f}; AUROC diff "
          f"{clipped['auroc_diff']:+.4f} vs {minmax['auroc_diff']:+.4f}")
    assert clipped["mean_abs_diff"] < 0.6 * minmax["mean_abs_diff"]
    assert clipped["max_abs_diff"] < minmax["max_abs_diff"]
    # the same int8 weights; only the calibrated ranges differ
    int8_bytes = [TFLiteModel(quantized_exports[k]).tensor_dtypes("bytes")["int8"] for k in ("lstm.int8", "lstm.int8.minmax")]
    assert int8_bytes[0] == int8_bytes[1]


def test_clip_calibration_bounds_outliers_and_leaves_bounded_data_alone():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 48, 4)).astype(np.float32)
    x[3, 7, 1] = 250.0
    clipped = clip_calibration(x, 99.99)
    limit = np.percentile(np.abs(x), 99.99)
    assert clipped.max() == pytest.approx(limit) and clipped.max() < 10
    assert np.array_equal(clipped[np.abs(x) <= limit], x[np.abs(x) <= limit])
    onehot = (rng.random((50, 76)) < 0.2).astype(np.float32)
    assert np.array_equal(clip_calibration(onehot), onehot)
    assert clip_calibration(x, None) is x
    with pytest.raises(ValueError, match="input_percentile"):
        clip_calibration(x, 10)


@pytest.mark.slow
def test_int8_recurrent_files_are_fused_or_hoisted_at_batch_one(quantized_exports):
    routes = quantized_exports["routes"]
    for name in ("lstm", "hlstm_input"):
        runner = TFLiteModel(quantized_exports[f"{name}.int8"])
        assert runner.input_shape == (1, T, C)
        assert routes[f"{name}.int8.tflite"] == "fused"
        assert runner.op_names().count("UNIDIRECTIONAL_SEQUENCE_LSTM") == (2 if name == "lstm" else 1)
        assert runner.stateful
    gates = TFLiteModel(quantized_exports["hlstm.int8"])
    assert routes["hlstm.int8.tflite"] == "hoisted, unrolled"
    assert not {"WHILE", "REDUCE_ANY", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & set(gates.op_names())
    # the input projection is one product over all 48 steps, then one UNPACK: no slice per step
    assert gates.op_names().count("UNPACK") == 1 and "STRIDED_SLICE" not in gates.op_names()
    assert quantized_exports["hlstm.int8"].stat().st_size < 120_000
    # every recurrent 8-bit file of the fused route is smaller than its float32 file
    float_size = quantized_exports["lstm.float32"].stat().st_size
    assert quantized_exports["lstm.int8"].stat().st_size < float_size / 2
    assert quantized_exports["lstm.dynamic"].stat().st_size < float_size / 2


@pytest.mark.slow
def test_int8_float_head_gives_untied_probabilities(trained, quantized_exports):
    """The float head (dequantized hidden state -> float Dense -> sigmoid) replaces the int8
    output's 256 levels: almost no two test patients share a probability any more."""
    x = trained["lstm"]["x_test"]
    float_head = TFLiteModel(quantized_exports["lstm.int8"]).predict(x)
    int8_out = TFLiteModel(quantized_exports["lstm.int8io"]).predict(x)
    ties = {name: len(p) - len(np.unique(p)) for name, p in (("float head", float_head), ("int8 output", int8_out))}
    print(f"tied probabilities among {len(x)}: {ties}")
    assert ties["float head"] <= 0.01 * len(x)
    assert ties["int8 output"] > 10 * max(ties["float head"], 1)
    scale, zero = TFLiteModel(quantized_exports["lstm.int8io"]).output_details["quantization"]
    np.testing.assert_allclose(int8_out / scale, np.round(int8_out / scale), atol=1e-3)  # on the int8 grid


@pytest.mark.slow
def test_int8_io_file_has_int8_tensors_and_runner_handles_them(trained, quantized_exports):
    entry = trained["dnn"]
    int8_io = TFLiteModel(quantized_exports["dnn.int8io"])
    float_io = TFLiteModel(quantized_exports["dnn.int8"])
    assert int8_io.io_dtype == np.int8
    assert int8_io.output_details["dtype"] == np.int8
    scale, _ = int8_io.input_details["quantization"]
    out_scale, _ = int8_io.output_details["quantization"]
    assert scale > 0 and out_scale > 0
    p_int8_io = int8_io.predict(entry["x_test"])
    assert p_int8_io.dtype == np.float32 and p_int8_io.shape == (len(entry["x_test"]),)
    # the same quantized body: the I/O choice moves the (de)quantization, not the numbers
    np.testing.assert_allclose(p_int8_io, float_io.predict(entry["x_test"]), atol=out_scale + 1e-6)
    report = parity_check(entry["model"], quantized_exports["dnn.int8io"], entry["x_test"], entry["y_test"])
    assert report["max_abs_diff"] <= INT8_PROB_TOL
    assert abs(report["auroc_diff"]) <= INT8_AUROC_TOL


# ---------------------------------------------------------------------------------------------
# 3. dynamic-range quantization
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "hlstm_input", "dnn"])
def test_dynamic_file_holds_int8_weights_with_float_io(trained, quantized_exports, name):
    path = quantized_exports[f"{name}.dynamic"]
    assert path.is_file()
    runner = TFLiteModel(path)
    assert runner.is_quantized
    assert runner.io_dtype == np.float32
    assert runner.output_details["dtype"] == np.float32
    # every weight tensor the converter quantizes (>= 1024 elements) is int8 (a recurrent file's
    # LSTM matrices are all int8: the hybrid op)
    sizes = [int(np.prod(w.shape)) for w in trained[name]["model"].weights]
    assert runner.tensor_dtypes("bytes")["int8"] >= sum(n for n in sizes if n >= DYNAMIC_MIN_ELEMENTS)
    entry = trained[name]
    report = parity_check(entry["model"], path, entry["x_test"], entry["y_test"])
    print(f"{name} dynamic: max|diff| {report['max_abs_diff']:.4f}, AUROC diff {report['auroc_diff']:+.4f}")
    assert report["max_abs_diff"] <= INT8_PROB_TOL
    if name != "dnn":
        assert abs(report["auroc_diff"]) <= DYNAMIC_AUROC_TOL


@pytest.mark.slow
def test_dynamic_lstm_is_the_hybrid_fused_op_with_every_gate_matrix_int8(float_exports):
    """The converter would keep the fused op float (and every tensor under 1,024 elements); the
    hybrid edit stores all eight gate matrices of both LSTM ops as per-tensor int8."""
    from condense.export import tflite_edit

    entry = float_exports["lstm_pruned_8_8"]
    runner = TFLiteModel(entry["dynamic"])
    matrices = sum(int(np.prod(w.shape)) for w in entry["model"].weights
                   if w.path.split("/")[-1] in ("kernel", "recurrent_kernel") and "lstm" in w.path)
    assert runner.tensor_dtypes("bytes")["int8"] == matrices  # 8 units: most tensors are < 1,024 elements
    assert runner.io_dtype == np.float32
    model = tflite_edit.read_model(entry["dynamic"].read_bytes())
    lstm_ops = list(tflite_edit._lstm_ops(model))
    assert len(lstm_ops) == 2
    for subgraph, op in lstm_ops:
        assert op.builtinOptions.cellClip == 0.0 and op.builtinOptions.asymmetricQuantizeInputs
        assert model.operatorCodes[op.opcodeIndex].version == 3
        for slot in tflite_edit.LSTM_WEIGHT_SLOTS:
            tensor = subgraph.tensors[op.inputs[slot]]
            assert tensor.type == 9  # INT8
            assert len(tensor.quantization.scale) == 1 and list(tensor.quantization.zeroPoint) == [0]
    assert parity_check(entry["model"], entry["dynamic"], entry["x"])["max_abs_diff"] <= INT8_PROB_TOL


@pytest.mark.slow
def test_quantized_dnn_files_are_smaller_than_float(quantized_exports):
    size = quantized_exports["dnn.float32"].stat().st_size
    assert quantized_exports["dnn.int8"].stat().st_size < size / 3
    assert quantized_exports["dnn.dynamic"].stat().st_size < size / 3


# ---------------------------------------------------------------------------------------------
# Failures: one clear error, no file left behind
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_converter_segfault_becomes_export_error_and_leaves_no_file(float_exports, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "segfault")
    model_path = float_exports["dnn"]["keras_path"]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    existing = out_dir / "b.tflite"
    existing.write_bytes(b"previous export")
    jobs = [ExportJob(model_path, out_dir / "a.tflite", "float32"), ExportJob(model_path, existing, "dynamic")]
    with pytest.raises(ExportError) as info:
        export_tflite_many(jobs)
    message = str(info.value)
    assert str(model_path) in message
    assert "float32" in message
    assert "killed by SIGSEGV" in message
    assert info.value.returncode == -11
    assert info.value.fmt == "float32"
    # no partial or temporary file; an existing target is untouched
    assert sorted(p.name for p in out_dir.iterdir()) == ["b.tflite"]
    assert existing.read_bytes() == b"previous export"


@pytest.mark.slow
def test_converter_python_error_becomes_export_error_and_leaves_no_file(float_exports, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "error")
    model_path = float_exports["lstm"]["keras_path"]
    x = float_exports["lstm"]["x"]
    with pytest.raises(ExportError) as info:
        export_tflite(model_path, tmp_path / "lstm.int8.tflite", "int8", calibration_x=x[:8])
    message = str(info.value)
    assert str(model_path) in message
    assert "int8" in message
    assert "RuntimeError: injected converter error" in message
    assert info.value.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_int8_without_calibration_is_a_value_error(tmp_path):
    model_path = tmp_path / "m.keras"
    models.build_dnn(C, units=(4,)).save(model_path)
    with pytest.raises(ValueError, match="calibration_x"):
        export_tflite(model_path, tmp_path / "m.int8.tflite", "int8")
    assert not (tmp_path / "m.int8.tflite").exists()


def test_bad_arguments_are_value_errors_before_any_conversion(tmp_path):
    model_path = tmp_path / "m.keras"
    models.build_dnn(C, units=(4,)).save(model_path)
    out = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="fmt"):
        export_tflite(model_path, out, "int4")
    with pytest.raises(ValueError, match="NaN"):
        export_tflite(model_path, out, "int8", calibration_x=np.full((4, C), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, \*input_shape\)"):
        export_tflite(model_path, out, "int8", calibration_x=np.zeros(C, np.float32))
    with pytest.raises(ValueError, match="int8_io"):
        export_tflite(model_path, out, "float32", int8_io=True)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export_tflite(tmp_path / "missing.keras", out, "float32")
    assert not out.exists()
    assert tuple(FORMATS) == ("float32", "int8", "dynamic")


def test_format_registry_entries_are_complete_and_names_unique():
    """Every format's checks and edits exist; a second format of the same name is refused."""
    from condense.export import tflite_edit
    from condense.export.file_checks import FILE_CHECKS
    from condense.export.formats import ExportFormat, get_format, is_quantized, register_format

    for fmt in FORMATS.values():
        assert set(fmt.checks) <= set(FILE_CHECKS), fmt.name
        assert all(callable(getattr(tflite_edit, edit, None)) for edit in fmt.fused_lstm_edits), fmt.name
        assert fmt.bench_sources == () or set(fmt.bench_sources) <= {"dnn", "recurrent"}
    assert get_format("int8").needs_calibration and not get_format("dynamic").needs_calibration
    assert is_quantized("dynamic") and not is_quantized("float32") and not is_quantized(None)
    with pytest.raises(ValueError, match=r"Argument `fmt` must be one of \('float32', 'int8', 'dynamic'\)"):
        get_format("int4")
    with pytest.raises(ValueError, match="already exists"):
        register_format(ExportFormat("int8", "again", "", weights="int8", activations="int8"))


def test_export_job_settings_fail_where_they_are_made(tmp_path):
    """A bad format, route or int8_io fails on ExportJob(...), before any file or data is looked at."""
    missing = tmp_path / "not-written-yet.keras"
    with pytest.raises(ValueError, match=r"Argument `fmt` must be one of .*; got fmt='int4'"):
        ExportJob(missing, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match=r"Argument `route` must be one of .*; got route='loop'"):
        ExportJob(missing, tmp_path / "m.tflite", "float32", route="loop")
    with pytest.raises(ValueError, match="int8_io=True` needs a full-integer format"):
        ExportJob(missing, tmp_path / "m.tflite", "dynamic", int8_io=True)
    with pytest.raises(ValueError, match="route='while' cannot be int8"):
        ExportJob(missing, tmp_path / "m.tflite", "int8", route="while")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# 4. Routes: the fused LSTM op, the WHILE fallback, Masking only where exact
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fused_route_puts_one_lstm_op_per_layer_in_the_file(float_exports):
    expected = {"lstm": 2, "lstm_pruned_8_8": 2, "hlstm_input": 1}
    for name, count in expected.items():
        runner = TFLiteModel(float_exports[name]["tflite"])
        ops = runner.op_names()
        assert float_exports[name]["route"] == "fused"
        assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == count, ops
        assert not {"WHILE", "REDUCE_ANY"} & set(ops)
        assert runner.stateful
    # cannot fuse (gates form, ReLU cell): a WHILE loop, Masking dropped since the data proves it exact
    for name in ("hlstm_gates", "lstm_relu"):
        ops = TFLiteModel(float_exports[name]["tflite"]).op_names()
        assert float_exports[name]["route"] == "while"
        assert "WHILE" in ops and "REDUCE_ANY" not in ops and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    # the Keras 3 default conversion keeps its Masking (REDUCE_ANY) inside the loop
    keras3 = TFLiteModel(float_exports["lstm"]["while"])
    assert {"WHILE", "REDUCE_ANY"} <= set(keras3.op_names())
    assert float_exports["lstm"]["while_route"].startswith("while")
    assert not keras3.stateful
    assert float_exports["lstm"]["tflite"].stat().st_size < 0.8 * float_exports["lstm"]["while"].stat().st_size
    entry = float_exports["lstm"]
    assert parity_check(entry["model"], entry["while"], entry["x"])["max_abs_diff"] <= FLOAT_TOL


@pytest.mark.slow
def test_fused_file_resets_its_state_before_every_prediction(float_exports):
    entry = float_exports["lstm"]
    x = entry["x"]
    runner = TFLiteModel(entry["tflite"])
    assert runner.stateful
    first = runner.predict(x[0])
    again = runner.predict(x[0])
    alternating = [runner.predict(x[i % 2])[0] for i in range(6)]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(alternating[0::2], np.repeat(first, 3))
    np.testing.assert_array_equal(alternating[1::2], np.repeat(runner.predict(x[1]), 3))
    batched = runner.predict(x[:9])
    one_by_one = np.concatenate([runner.predict(x[i]) for i in range(9)])
    np.testing.assert_array_equal(batched, one_by_one)
    call = runner.single_sample_call(x[2])
    np.testing.assert_array_equal(call().reshape(-1), call().reshape(-1))
    # the negative control: without the reset, the op carries its state into the next invocation
    from ai_edge_litert.interpreter import Interpreter

    raw = Interpreter(model_path=str(entry["tflite"]), num_threads=1)
    raw.allocate_tensors()
    outs = []
    for _ in range(2):
        raw.set_tensor(raw.get_input_details()[0]["index"], x[:1])
        raw.invoke()
        outs.append(float(raw.get_tensor(raw.get_output_details()[0]["index"]).reshape(-1)[0]))
    assert outs[0] == pytest.approx(float(first[0]), abs=1e-6)
    assert abs(outs[1] - outs[0]) > 1e-6


@pytest.fixture(scope="module")
def masked_exports(float_exports, tmp_path_factory):
    """The LSTM exported with data that has all-zero steps (a user's own padded sequences), and
    with no data at all: both keep Masking (WHILE loop)."""
    folder = tmp_path_factory.mktemp("masked")
    x = float_exports["lstm"]["x"].copy()
    x[2, 40:] = 0.0   # 8 padded steps at the end of one sample
    x[5, :3] = 0.0    # 3 at the start of another
    path = float_exports["lstm"]["keras_path"]
    jobs = [ExportJob(path, folder / "padded.tflite", "float32", calibration_x=x),
            ExportJob(path, folder / "nodata.tflite", "float32"),
            ExportJob(path, folder / "padded.int8.tflite", "int8", calibration_x=x)]
    return {"x": x, "path": path, "folder": folder,
            "outcomes": {p.name: info for p, info in export_tflite_many(jobs, details=True)}}


@pytest.mark.slow
def test_all_zero_steps_keep_masking_and_the_result_names_file_and_count(float_exports, masked_exports):
    outcome = masked_exports["outcomes"]["padded.tflite"]
    assert outcome["route"] == "while + Masking"
    assert outcome["masking"]["dropped"] is False
    assert (outcome["masking"]["masked_samples"], outcome["masking"]["masked_steps"]) == (2, 11)
    assert any("lstm.keras" in w and "2 of 64" in w and "11 time step" in w for w in outcome["warnings"])
    ops = TFLiteModel(masked_exports["folder"] / "padded.tflite").op_names()
    assert "REDUCE_ANY" in ops and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    # exact on the padded data, where a file without Masking would not be
    entry = float_exports["lstm"]
    report = parity_check(entry["model"], masked_exports["folder"] / "padded.tflite", masked_exports["x"])
    assert report["max_abs_diff"] <= FLOAT_TOL
    fused = TFLiteModel(entry["tflite"]).predict(masked_exports["x"])
    assert np.abs(fused - report["p_keras"])[[2, 5]].max() > 1e-4, "the fused file cannot skip padded steps"
    assert masked_exports["outcomes"]["padded.int8.tflite"]["route"] == "unrolled + Masking"
    nodata = masked_exports["outcomes"]["nodata.tflite"]
    assert nodata["route"] == "while + Masking" and "no calibration_x" in nodata["masking"]["reason"]


@pytest.mark.slow
def test_fused_route_refuses_data_with_masked_steps(masked_exports, tmp_path):
    with pytest.raises(ExportError, match=r"fused LSTM op: .*2 of 64 checked samples"):
        export_tflite(masked_exports["path"], tmp_path / "f.tflite", "float32", calibration_x=masked_exports["x"],
                      route="fused")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 5. TensorFlow Lite for Microcontrollers
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fused_float_and_int8_files_run_on_tflm_like_on_litert(float_exports, trained, quantized_exports):
    pytest.importorskip("tflite_micro")
    from condense.export import micro

    cases = [(float_exports["lstm_pruned_8_8"]["tflite"], float_exports["lstm_pruned_8_8"]["x"][:6], 1e-5),
             (quantized_exports["lstm.int8"], trained["lstm"]["x_test"][:6], 0.02),
             (quantized_exports["lstm.int8io"], trained["lstm"]["x_test"][:6], 0.02)]
    arenas = []
    for path, x, tol in cases:
        run = micro.run_micro(path, x)
        litert = TFLiteModel(path).predict(x)
        np.testing.assert_allclose(run["outputs"][:, 0], litert, atol=tol)
        assert run["arena_bytes"] >= run["allocation_bytes"] > 0
        assert micro._fits(str(path), run["arena_bytes"]) and not micro._fits(str(path), run["arena_bytes"] - 16)
        arenas.append(run["arena_bytes"])
    assert arenas[2] < arenas[1], "int8 I/O needs no float input buffer in the arena"


@pytest.mark.slow
def test_files_tflm_cannot_run_say_why(float_exports, quantized_exports):
    pytest.importorskip("tflite_micro")
    from condense.export import micro

    assert "hybrid" in micro.micro_problem(float_exports["lstm_pruned_8_8"]["dynamic"])
    assert "REDUCE_ANY" in micro.micro_problem(float_exports["lstm"]["while"])
    assert "WHILE" in micro.micro_problem(float_exports["hlstm_gates"]["tflite"])
    assert micro.micro_problem(float_exports["lstm"]["tflite"]) == ""
    with pytest.raises(micro.MicroError, match="hybrid"):
        micro.run_micro(float_exports["lstm_pruned_8_8"]["dynamic"], float_exports["lstm"]["x"][:1])


def test_smallest_arena_search_finds_the_threshold_in_16_byte_steps():
    from condense.export.micro import smallest_arena

    probes = []

    def fits(_, arena):
        probes.append(arena)
        return arena >= 21_809

    assert smallest_arena("m.tflite", 21_000, fits=fits) == 21_824
    assert len(probes) < 20
    assert smallest_arena("m.tflite", 21_824, fits=lambda _, a: a >= 21_824) == 21_824


# ---------------------------------------------------------------------------------------------
# 6. Arguments of the routes
# ---------------------------------------------------------------------------------------------


def test_route_arguments_are_checked_before_any_conversion(tmp_path):
    from condense.commands.export import ROUTES as CLI_ROUTES

    model_path = tmp_path / "m.keras"
    models.build_lstm(C, units=(4,)).save(model_path)
    out = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="route"):
        export_tflite(model_path, out, "float32", route="fast")
    with pytest.raises(ValueError, match="route='while' cannot be int8"):
        export_tflite(model_path, out, "int8", route="while", calibration_x=np.zeros((2, T, C), np.float32))
    assert not out.exists()
    assert ROUTES == CLI_ROUTES == ("auto", "fused", "while", "unrolled")


def test_fused_route_refuses_a_model_it_cannot_fuse(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "relu.keras"
    build_lstm_relu().save(path)
    x, _ = realistic_inputs(4, seed=0)
    with pytest.raises(ExportError, match="activation='relu'"):
        export_tflite(path, tmp_path / "relu.tflite", "float32", calibration_x=x, route="fused")
    assert not (tmp_path / "relu.tflite").exists()
