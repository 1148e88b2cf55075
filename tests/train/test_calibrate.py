"""Platt recalibration folded into the output layer: the same ranking, probabilities that mean what they
say, no extra op; `condense train --calibrate platt` records it and the exported file carries it."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense.calibrate import final_logits, fit_intercept, fit_platt, fold_platt, recalibrate  # noqa: E402
from condense.cli import main  # noqa: E402
from condense.evaluate.measure import param_count  # noqa: E402
from condense.evaluate.metrics import auroc, calibration  # noqa: E402
from condense.io import read_json  # noqa: E402
from condense.runs.workflow import export_run  # noqa: E402
from condense.train import TrainConfig  # noqa: E402


def _model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(hidden))


def _miscalibrated_outcomes(model, x, seed: int = 1):
    """Outcomes whose true risk is sigmoid(2 * logit + 1): the model is too timid and too low."""
    true_risk = 1.0 / (1.0 + np.exp(-(2.0 * final_logits(model, x) + 1.0)))
    return (np.random.default_rng(seed).random(len(x)) < true_risk).astype(np.int64)


def test_the_fold_gives_the_recalibrated_probabilities_and_keeps_the_ranking():
    model = _model()
    x = np.random.default_rng(0).normal(size=(4000, 6)).astype(np.float32)
    y = _miscalibrated_outcomes(model, x)
    logits = final_logits(model, x)
    p_before = model.predict(x, verbose=0).ravel()
    params = param_count(model)
    record = recalibrate(model, x, y)
    a, b = record["a"], record["b"]
    assert 1.5 < a < 2.5 and 0.5 < b < 1.5  # the fit finds the miscalibration it was given
    p_after = model.predict(x, verbose=0).ravel()
    assert np.max(np.abs(p_after - 1.0 / (1.0 + np.exp(-(a * logits + b))))) < 1e-6
    assert abs(auroc(y, p_after) - auroc(y, p_before)) < 1e-9 and param_count(model) == params
    assert record["val_after"]["ece"] < record["val_before"]["ece"]
    assert record["val_after"]["slope"] == pytest.approx(1.0, abs=1e-6)  # on the data it was fitted on
    assert calibration(y, p_after)["ece"] < 0.5 * calibration(y, p_before)["ece"]


def test_the_intercept_alone_makes_predicted_deaths_match_and_keeps_the_slope():
    model = _model(3)
    x = np.random.default_rng(5).normal(size=(3000, 6)).astype(np.float32)
    y = _miscalibrated_outcomes(model, x)
    logits = final_logits(model, x)
    b = fit_intercept(y, logits)
    assert np.sum(1.0 / (1.0 + np.exp(-(logits + b)))) == pytest.approx(y.sum(), rel=1e-9)  # the score equation
    record = recalibrate(model, x, y, "intercept")
    assert record["method"] == "intercept" and record["a"] == 1.0 and record["b"] == pytest.approx(b, abs=1e-9)
    p_after = model.predict(x, verbose=0).ravel()
    assert np.max(np.abs(p_after - 1.0 / (1.0 + np.exp(-(logits + b))))) < 1e-6
    assert record["val_after"]["slope"] == pytest.approx(record["val_before"]["slope"], rel=1e-6)
    with pytest.raises(ValueError, match="needs both classes"):
        fit_intercept(np.zeros(5), np.zeros(5))
    rng = np.random.default_rng(0)  # logits far from the observed rate (a plain Newton step overshoots here)
    for centre in (-5.0, 3.0):
        far = rng.normal(centre, 0.5, 1000)
        deaths = (rng.random(1000) < 0.14).astype(int)
        b_far = fit_intercept(deaths, far)
        assert np.sum(1.0 / (1.0 + np.exp(-(far + b_far)))) == pytest.approx(deaths.sum(), rel=1e-9)
    with pytest.raises(ValueError, match="Argument `method` must be 'platt' or 'intercept'"):
        recalibrate(model, x, y, "isotonic")


def test_what_cannot_be_folded_is_refused_by_name():
    model = _model()
    x = np.random.default_rng(0).normal(size=(500, 6)).astype(np.float32)
    y = _miscalibrated_outcomes(model, x)
    with pytest.raises(ValueError, match=r"slope -\d.* <= 0 \(the model ranks validation patients backwards\)"):
        fit_platt(1 - y, final_logits(model, x))
    with pytest.raises(ValueError, match="the predictions separate the classes"):
        fit_platt(np.array([0, 0, 1, 1]), np.array([-2.0, -1.0, 1.0, 2.0]))
    inputs = keras.Input((6,))
    linear = keras.Model(inputs, keras.layers.Dense(1, name="score")(inputs), name="linear")
    with pytest.raises(ValueError, match=r"final Dense\(1, sigmoid\) layer; 'linear' ends with Dense 'score' "
                                         r"\(activation linear\)"):
        fold_platt(linear, 2.0, 1.0)
    with pytest.raises(ValueError, match="Argument `calibrate` must be one of"):
        TrainConfig(model="dnn", calibrate="isotonic")
    with pytest.raises(ValueError, match="Argument `calibrate` applies to models"):
        TrainConfig(model="gbm", calibrate="platt")


def test_train_with_platt_records_it_and_the_exported_file_carries_it(tiny_cohort, tiny_cache, tmp_path):
    out = tmp_path / "dnn"
    args = ["train", "--data", str(tiny_cohort), "--model", "dnn", "--epochs", "2", "--batch-size", "32",
            "--cache-dir", str(tiny_cache), "--quiet"]
    assert main([*args, "--out", str(out), "--calibrate", "platt"]) == 0
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    manifest, plain = read_json(out / "manifest.json"), read_json(tmp_path / "plain" / "manifest.json")
    record = manifest["calibration"]
    assert record["method"] == "platt" and record["a"] > 0 and manifest["config"]["calibrate"] == "platt"
    assert "calibration" not in plain and plain["config"]["calibrate"] == "none"
    # the same trained network (same seed), recalibrated: same test AUROC, another calibration
    assert manifest["metrics"]["test"]["auroc"] == pytest.approx(plain["metrics"]["test"]["auroc"], abs=1e-6)
    assert manifest["metrics"]["test"]["cal_intercept"] != plain["metrics"]["test"]["cal_intercept"]
    exported = export_run(out, "float32", cache_dir=tiny_cache, quiet=True)  # the file vs the recalibrated Keras model
    assert exported["max_abs_diff"] < 1e-5


def test_the_table_s_maps_on_probabilities_match_the_folded_ones():
    from condense.calibrate import apply_map, fit_map, probability_logits, recalibrated_calibration

    rng = np.random.default_rng(3)
    z = rng.normal(-1.5, 1.2, 800)
    y = (rng.random(800) < 1 / (1 + np.exp(-(0.8 * z - 0.4)))).astype(int)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(probability_logits(p), z, atol=1e-9)
    assert fit_map(y, p, "platt") == pytest.approx(fit_platt(y, z), rel=1e-9)
    assert fit_map(y, p, "intercept") == pytest.approx((1.0, fit_intercept(y, z)), rel=1e-9)
    a, b = fit_map(y, p, "intercept")
    assert apply_map(p, a, b).sum() == pytest.approx(y.sum(), rel=1e-9)  # deaths predicted = deaths seen
    q = apply_map(p, *fit_map(y, p, "platt"))
    assert auroc(y, q) == auroc(y, p)  # monotone
    after = recalibrated_calibration(y, p, 1.0, 0.0)  # the identity map: the before numbers
    before = calibration(y, p)
    assert (after["ece_recal"], after["cal_slope_recal"]) == pytest.approx((before["ece"], before["slope"]), rel=1e-9)
    with pytest.raises(ValueError, match="method"):
        fit_map(y, p, "isotonic")
