"""Sizes and the latency protocol (behaviour only: keys, units, positivity; never a time bound)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense.evaluate import measure
from condense import models  # noqa: E402

LATENCY_KEYS = {"median_us", "p95_us", "mean_us", "min_us", "repeats"}


def _check_latency(result: dict, repeats: int) -> None:
    assert LATENCY_KEYS <= set(result)
    assert result["repeats"] == repeats
    assert 0 < result["min_us"] <= result["median_us"] <= result["p95_us"]
    assert result["mean_us"] > 0


@pytest.fixture(scope="module")
def small_dnn(tmp_path_factory):
    """A small DNN saved as .keras and as a float32 .tflite (converted in-process: this module
    tests measuring, not exporting)."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("measure")
    model = models.build_dnn(76, units=(32, 16))
    keras_path = folder / "dnn.keras"
    model.save(keras_path)
    tflite_path = folder / "dnn.tflite"
    tflite_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return model, keras_path, tflite_path


def test_param_count_matches_the_builders():
    assert measure.param_count(models.build_dnn(76)) == 60_929
    assert measure.param_count(models.build_lstm(76)) == 8_081
    small = models.build_lstm(76, units=(8, 8))
    assert measure.param_count(small) == small.count_params() == 3_273
    with pytest.raises(ValueError, match="Keras model"):
        measure.param_count(object())


def test_file_bytes_is_the_size_on_disk(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 1234)
    assert measure.file_bytes(path) == 1234
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        measure.file_bytes(tmp_path / "missing.bin")


def test_gzip_bytes_shrinks_zero_heavy_files_and_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal(20_000).astype(np.float32)
    sparse = dense.copy()
    sparse[rng.random(sparse.size) < 0.9] = 0.0  # 90 % of the weights pruned to zero
    dense_path, sparse_path = tmp_path / "dense.bin", tmp_path / "sparse.bin"
    dense_path.write_bytes(dense.tobytes())
    sparse_path.write_bytes(sparse.tobytes())
    assert measure.file_bytes(sparse_path) == measure.file_bytes(dense_path)
    assert measure.gzip_bytes(sparse_path) < 0.5 * measure.file_bytes(sparse_path)
    assert measure.gzip_bytes(sparse_path) < 0.5 * measure.gzip_bytes(dense_path)
    assert measure.gzip_bytes(sparse_path) == measure.gzip_bytes(sparse_path)
    with pytest.raises(ValueError, match="level"):
        measure.gzip_bytes(sparse_path, level=12)
    with pytest.raises(FileNotFoundError):
        measure.gzip_bytes(tmp_path / "missing.bin")


def test_measure_latency_times_every_repeat_after_warmup():
    calls = []
    result = measure.measure_latency(calls.append, "sample", warmup=3, repeats=25)
    _check_latency(result, 25)
    assert calls == ["sample"] * 28
    no_arg = []
    _check_latency(measure.measure_latency(lambda: no_arg.append(1), warmup=0, repeats=5), 5)
    assert len(no_arg) == 5


def test_measure_latency_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeats"):
        measure.measure_latency(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure.measure_latency(lambda: None, warmup=-1)
    with pytest.raises(ValueError, match="callable"):
        measure.measure_latency("not callable")


def test_tflite_latency_reports_microseconds_per_sample(small_dnn):
    model, _, tflite_path = small_dnn
    x = np.random.default_rng(1).standard_normal((1, 76)).astype(np.float32)
    result = measure.tflite_latency(tflite_path, x, warmup=5, repeats=30)
    _check_latency(result, 30)
    assert result["num_threads"] == 1
    # one sample without the batch axis works too; a batch of two is refused
    _check_latency(measure.tflite_latency(tflite_path, x[0], warmup=1, repeats=3), 3)
    with pytest.raises(ValueError, match="one sample"):
        measure.tflite_latency(tflite_path, np.zeros((2, 76), np.float32), repeats=3)


def test_keras_latency_in_this_process(small_dnn):
    model, _, _ = small_dnn
    x = np.zeros((1, 76), np.float32)
    result = measure.keras_latency(model, x, warmup=3, repeats=20)
    _check_latency(result, 20)
    assert result["process"] == "this"
    assert result["intra_op_threads"] >= 0
    with pytest.raises(ValueError, match="one sample"):
        measure.keras_latency(model, np.zeros((3, 76), np.float32), repeats=2)


@pytest.mark.slow
def test_keras_latency_of_a_file_runs_in_a_child_with_one_thread(small_dnn):
    _, keras_path, _ = small_dnn
    result = measure.keras_latency(keras_path, np.zeros((1, 76), np.float32), warmup=3, repeats=20)
    _check_latency(result, 20)
    assert result["process"] == "child"
    assert result["intra_op_threads"] == 1


@pytest.mark.slow
def test_several_keras_files_are_timed_in_one_child_and_a_broken_one_is_its_own_error(small_dnn, tmp_path):
    _, keras_path, _ = small_dnn
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    x = np.zeros((1, 76), np.float32)
    result = measure.keras_latencies({"a": (keras_path, x), "bad": (broken, x), "b": (keras_path, x)},
                                     warmup=2, repeats=10)
    for name in ("a", "b"):
        _check_latency(result[name], 10)
        assert result[name]["process"] == "child" and result[name]["intra_op_threads"] == 1
    assert set(result["bad"]) == {"error"}
    with pytest.raises(FileNotFoundError, match="Keras model not found"):
        measure.keras_latencies({"a": (tmp_path / "none.keras", x)})


def test_interleaved_latency_times_every_file_the_same_number_of_calls(small_dnn):
    _, _, tflite_path = small_dnn
    x = np.random.default_rng(1).standard_normal((1, 76)).astype(np.float32)
    result = measure.tflite_latency_interleaved({"a": (tflite_path, x), "b": (tflite_path, x[0])},
                                                warmup=2, repeats=23, block=5)
    assert sorted(result) == ["a", "b"]
    for entry in result.values():
        _check_latency(entry, 23)
        assert entry["num_threads"] == 1
    assert measure.tflite_latency_interleaved({}, repeats=3) == {}
    with pytest.raises(ValueError, match="block"):
        measure.tflite_latency_interleaved({"a": (tflite_path, x)}, block=0)
