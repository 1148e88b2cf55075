"""The tfmot peer bridge: tf_keras + tfmot in child processes, results back as dicts.

Heavy tests share one module-scoped run (3 peers, 64/32/32 samples, 2 epochs, batch 16);
the failure paths cost at most one more short child each.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from condense.peers import tfmot_bridge
from condense.peers.tfmot_bridge import (
    CHILD_PATH,
    DEFAULT_PEERS,
    RESULT_KEYS,
    missing_packages,
    pruning_schedule,
    run_tfmot_peers,
    tfmot_available,
)

requires_tfmot = pytest.mark.skipif(not tfmot_available(), reason=f"missing: {missing_packages()}")

EPOCHS, BATCH, SEED = 2, 16, 0
FLOAT_TOL = 1e-4  # float32 .tflite vs the child's Keras model
INT8_TOL = 0.05  # full-int8 .tflite vs the QAT Keras model (fake-quant simulation)
DENSE_PARAMS = {"prune_dnn": 60_929, "prune_lstm": 8_081, "qat_dnn": 60_929}  # 76 inputs


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """64/32/32 episodes of 48 x 76 with a learnable label; a few all-zero (masked) hours."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", 64), ("val", 32), ("test", 32)):
        seq = rng.normal(size=(n, 48, 76)).astype(np.float32)
        seq[: n // 8, :6] = 0.0  # exercise Masking(0) in Keras and in the .tflite
        y = (seq[:, :, 0].mean(axis=1) + 0.5 * seq[:, :, 1].mean(axis=1) > 0).astype(np.float32)
        out[f"seq_{split}"] = seq
        out[f"feat_{split}"] = seq.mean(axis=1)
        out[f"y_{split}"] = y
    return out


@pytest.fixture(scope="module")
def tfmot_run(tmp_path_factory):
    """One bridge run of the three peers plus an unknown one; the parent env around it."""
    if not tfmot_available():
        pytest.skip(f"missing: {missing_packages()}")
    out_dir = tmp_path_factory.mktemp("tfmot")
    env_before = dict(os.environ)
    results = run_tfmot_peers(
        _arrays(),
        out_dir,
        peers=(*DEFAULT_PEERS, "no_such_peer"),
        epochs=EPOCHS,
        batch_size=BATCH,
        seed=SEED,
    )
    return {"results": {r["peer"]: r for r in results}, "order": [r["peer"] for r in results],
            "out_dir": out_dir, "env_before": env_before, "env_after": dict(os.environ)}


# -- 1. the parent never loads tf_keras / tfmot --------------------------------------------------


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_bridge_imports_no_tensorflow_and_child_imports_no_condense():
    bridge_imports = _imported_roots(Path(tfmot_bridge.__file__))
    assert not bridge_imports & {"tensorflow", "tf_keras", "tensorflow_model_optimization", "keras"}
    child_imports = _imported_roots(CHILD_PATH)
    # condense itself imports no TensorFlow; the child uses only its standard-library helpers
    tree = ast.parse(CHILD_PATH.read_text(encoding="utf-8"))
    condense_modules = {node.module for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("condense")}
    assert condense_modules <= {"condense", "condense._child"}, condense_modules
    probe = subprocess.run([sys.executable, "-c", "import sys, condense.io, condense._child; "
                            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"
    assert not child_imports & {"tensorflow", "tf_keras", "tensorflow_model_optimization", "keras"}, (
        "the child imports TensorFlow lazily, after setting TF_USE_LEGACY_KERAS"
    )


@requires_tfmot
def test_parent_environment_and_keras_version_are_untouched(tfmot_run):
    assert tfmot_run["env_after"] == tfmot_run["env_before"]
    assert os.environ.get("TF_USE_LEGACY_KERAS") == tfmot_run["env_before"].get("TF_USE_LEGACY_KERAS")
    assert "tensorflow_model_optimization" not in sys.modules
    assert "tf_keras" not in sys.modules
    import keras

    assert keras.__version__.startswith("3."), keras.__version__
    ok = tfmot_run["results"]["prune_dnn"]
    assert ok["library_versions"]["tf_keras"].startswith("2."), "the child must run the legacy Keras 2"


# -- 2. the pruning schedule really reaches the target ------------------------------------------


def test_pruning_schedule_reaches_target_within_the_run():
    tiny = pruning_schedule(64, epochs=2, batch_size=16, sparsity=0.5)
    assert tiny["kind"] == "polynomial_decay" and tiny["total_steps"] == 8
    assert tiny["frequency"] == 1 and tiny["end_step"] == 4
    paper = pruning_schedule(14_681, epochs=20, batch_size=8, sparsity=0.5)
    assert paper["total_steps"] == 1836 * 20 and paper["frequency"] == 100
    for s in (tiny, paper, pruning_schedule(1000, epochs=3, batch_size=7, sparsity=0.25)):
        # the last mask update is an update step and happens inside the run
        assert (s["end_step"] - s["begin_step"]) % s["frequency"] == 0
        assert 0 < s["end_step"] <= s["total_steps"] - 1
    single = pruning_schedule(5, epochs=1, batch_size=8, sparsity=0.5)
    assert single["kind"] == "constant" and single["total_steps"] == 1 and single["frequency"] == 1


# -- 3. argument checks and failures that need no child -------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": 0}, "sparsity"),
        ({"lstm_units": ()}, "lstm_units"),
        ({"dnn_units": (64, -1)}, "dnn_units"),
        ({"timeout": 0}, "timeout"),
        ({"seed": -1}, "seed"),
        ({"select": "first"}, "select must be 'last' or 'best'"),
        ({"patience": 0}, "patience"),
    ],
)
def test_invalid_protocol_arguments_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_tfmot_peers(_arrays(), tmp_path, **kwargs)


def test_arrays_must_be_a_mapping(tmp_path):
    with pytest.raises(TypeError, match="mapping"):
        run_tfmot_peers([np.zeros(3)], tmp_path)


def test_unknown_peer_and_missing_arrays_fail_without_a_child(tmp_path):
    arrays = {k: v for k, v in _arrays().items() if not k.startswith("seq_")}
    arrays["feat_val"] = arrays["feat_val"][:, :10]
    results = run_tfmot_peers(arrays, tmp_path, peers=("nope", "prune_lstm", "qat_dnn"))
    assert [r["peer"] for r in results] == ["nope", "prune_lstm", "qat_dnn"]
    assert all(r["status"] == "failed" and r["child_seconds"] is None for r in results)
    assert "unknown tfmot peer 'nope'" in results[0]["error"] and "prune_dnn" in results[0]["error"]
    assert "seq_train" in results[1]["error"]
    assert "feat_val" in results[2]["error"] and "inconsistent" in results[2]["error"]
    assert all(set(r) == set(RESULT_KEYS) for r in results)
    assert not list(tmp_path.iterdir()), "nothing is written when no peer can run"


def test_missing_package_is_reported_by_name_without_a_child(tmp_path, monkeypatch):
    monkeypatch.setitem(tfmot_bridge._REQUIRED_MODULES, "condense_no_such_module_xyz", "no-such-package")
    assert not tfmot_available()
    assert missing_packages() == ["no-such-package"]
    [result] = run_tfmot_peers(_arrays(), tmp_path, peers=("prune_dnn",))
    assert result["status"] == "failed" and result["child_seconds"] is None
    assert "no-such-package" in result["error"] and result["error"].endswith(tfmot_bridge.INSTALL_COMMAND)


# -- 4. the three peers --------------------------------------------------------------------------


@requires_tfmot
@pytest.mark.slow
def test_each_peer_succeeds_and_an_unknown_peer_fails_alone(tfmot_run):
    results = tfmot_run["results"]
    assert tfmot_run["order"] == [*DEFAULT_PEERS, "no_such_peer"]
    for peer in DEFAULT_PEERS:
        r = results[peer]
        assert r["status"] == "ok", f"{peer}: {r['error']}\n{r.get('traceback')}"
        assert r["error"] is None
        assert set(r) == set(RESULT_KEYS)
        assert len(r["epoch_seconds"]) == EPOCHS and r["train_seconds"] > 0
        assert r["config"]["epochs"] == EPOCHS and r["config"]["seed"] == SEED
        for key in ("p_val", "p_test", "p_val_tflite", "p_test_tflite"):
            values = np.asarray(r[key])
            assert values.shape == (32,) and np.all((values >= 0) & (values <= 1)), key
    bad = results["no_such_peer"]
    assert bad["status"] == "failed" and "unknown tfmot peer" in bad["error"]


@requires_tfmot
@pytest.mark.slow
@pytest.mark.parametrize("peer", ["prune_dnn", "prune_lstm"])
def test_pruned_peer_has_half_its_kernel_weights_zero_and_the_dense_param_count(tfmot_run, peer):
    r = tfmot_run["results"][peer]
    assert r["params"] == DENSE_PARAMS[peer], "tfmot pruning zeroes weights, it never removes them"
    assert r["sparsity_reached"] == pytest.approx(0.5, abs=0.01)
    kernels = r["sparsity_per_weight"]
    expected = 4 if peer == "prune_dnn" else 5  # Dense kernels | 2 x (kernel, recurrent_kernel) + Dense
    assert len(kernels) == expected, kernels
    assert all(v == pytest.approx(0.5, abs=0.02) for v in kernels.values()), kernels
    if peer == "prune_lstm":
        assert sum("recurrent_kernel" in name for name in kernels) == 2
    assert r["nonzero_params"] / r["params"] == pytest.approx(0.5, abs=0.03)
    assert r["tflite_quantization"] == "float32"
    # zeros compress: the gzip of the float file is much smaller than the file
    assert r["tflite_gzip_bytes"] < 0.75 * r["tflite_bytes"]


@requires_tfmot
@pytest.mark.slow
def test_qat_peer_exports_full_int8_with_float_io(tfmot_run):
    r = tfmot_run["results"]["qat_dnn"]
    assert r["params"] == DENSE_PARAMS["qat_dnn"]
    assert r["sparsity_reached"] is None
    assert r["tflite_quantization"] == "int8" and r["tflite_io"] == "float32"
    assert {"QUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED"} <= set(r["tflite_ops"])
    assert r["tflite_bytes"] < r["params"] * 4 / 2, "int8 weights: well under half the float32 size"
    assert r["keras_format"] == "h5"


@requires_tfmot
@pytest.mark.slow
@pytest.mark.parametrize(
    "peer, tol", [("prune_dnn", FLOAT_TOL), ("prune_lstm", FLOAT_TOL), ("qat_dnn", INT8_TOL)]
)
def test_tflite_predictions_match_keras(tfmot_run, peer, tol):
    r = tfmot_run["results"][peer]
    for split in ("val", "test"):
        np.testing.assert_allclose(r[f"p_{split}_tflite"], r[f"p_{split}"], rtol=0, atol=tol)
    assert r["tflite_max_abs_diff"] <= tol


@requires_tfmot
@pytest.mark.slow
def test_artifacts_are_written_atomically_with_recorded_sizes(tfmot_run):
    out_dir = tfmot_run["out_dir"]
    names = set()
    for peer in DEFAULT_PEERS:
        r = tfmot_run["results"][peer]
        keras_path, tflite_path = Path(r["keras_path"]), Path(r["tflite_path"])
        assert keras_path.parent == out_dir and tflite_path.parent == out_dir
        assert keras_path.name == f"{peer}.{r['keras_format']}" and tflite_path.name == f"{peer}.tflite"
        assert keras_path.stat().st_size == r["keras_bytes"] > 0
        assert tflite_path.stat().st_size == r["tflite_bytes"] > 0
        assert tflite_path.read_bytes()[4:8] == b"TFL3"
        assert r["keras_includes_optimizer"] is False
        names |= {keras_path.name, tflite_path.name}
    assert {p.name for p in out_dir.iterdir()} == names, "no temporary files left behind"


# -- 5. failures inside children -----------------------------------------------------------------


@requires_tfmot
@pytest.mark.slow
def test_child_crash_fails_that_peer_and_the_next_runs_deterministically(tfmot_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_TFMOT_FAULT", "qat_dnn:abort")
    crashed, ok = run_tfmot_peers(
        _arrays(), tmp_path, peers=("qat_dnn", "prune_dnn"), epochs=EPOCHS, batch_size=BATCH, seed=SEED
    )
    assert crashed["status"] == "failed"
    assert "SIGABRT" in crashed["error"] and "without writing a result" in crashed["error"]
    assert "injected fault" in crashed["error"], "the child's last stderr lines are quoted"
    assert crashed["returncode"] != 0
    assert ok["status"] == "ok", ok["error"]
    # same seed, same data -> the same model as in the shared run
    reference = tfmot_run["results"]["prune_dnn"]
    np.testing.assert_array_equal(ok["p_test"], reference["p_test"])
    np.testing.assert_array_equal(ok["p_test_tflite"], reference["p_test_tflite"])
    assert ok["nonzero_params"] == reference["nonzero_params"]


@requires_tfmot
def test_tfmot_missing_in_the_child_names_the_package(tmp_path, monkeypatch):
    shadow = tmp_path / "shadow"
    (shadow / "tensorflow_model_optimization").mkdir(parents=True)
    (shadow / "tensorflow_model_optimization" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow_model_optimization'\", "
        "name='tensorflow_model_optimization')\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")])))
    [result] = run_tfmot_peers(_arrays(), tmp_path / "out", peers=("prune_dnn",), epochs=1, batch_size=BATCH)
    assert result["status"] == "failed"
    assert "tensorflow-model-optimization is not importable" in result["error"]
    assert tfmot_bridge.INSTALL_COMMAND in result["error"], "the safe command: --no-deps, never the full tensorflow"
    assert result["returncode"] == 0, "an import failure is reported by the child, not a crash"


@requires_tfmot
def test_timeout_kills_the_child_and_fails_the_peer(tmp_path):
    [result] = run_tfmot_peers(_arrays(), tmp_path, peers=("prune_dnn",), epochs=1, timeout=0.2)
    assert result["status"] == "failed"
    assert "timed out after 0.2 s" in result["error"]


@requires_tfmot
@pytest.mark.slow
def test_select_best_restores_a_fully_sparse_epoch_and_stops_early(tmp_path):
    """With select="best" a pruned peer keeps the best validation epoch among those that end at
    the target sparsity; patience stops it; its predictions are those of the restored weights."""
    from sklearn.metrics import roc_auc_score

    epochs = 6
    arrays = _arrays(seed=3)
    schedule = pruning_schedule(64, epochs=epochs, batch_size=BATCH, sparsity=0.5)
    [r] = run_tfmot_peers(arrays, tmp_path, peers=("prune_dnn",), epochs=epochs, batch_size=BATCH, seed=SEED,
                          select="best", patience=1)
    assert r["status"] == "ok", r["error"]
    assert r["config"]["select"] == "best" and r["config"]["patience"] == 1
    assert r["eligible_from_epoch"] == -(-(schedule["end_step"] + 1) // 4)  # 4 steps per epoch
    ran = len(r["epoch_seconds"])
    assert len(r["val_auroc"]) == ran
    assert r["eligible_from_epoch"] <= r["selected_epoch"] <= ran
    eligible = r["val_auroc"][r["eligible_from_epoch"] - 1 :]
    assert r["val_auroc"][r["selected_epoch"] - 1] == max(eligible)
    assert r["stopped_early"] == (ran < epochs)
    if r["stopped_early"]:
        assert ran - r["selected_epoch"] == 1
    assert roc_auc_score(arrays["y_val"], r["p_val"]) == pytest.approx(r["val_auroc"][r["selected_epoch"] - 1], abs=1e-6)
    assert r["sparsity_reached"] == pytest.approx(0.5, abs=0.01), "the restored weights are as sparse as the target"
    assert r["train_seconds"] == pytest.approx(sum(r["epoch_seconds"]))
