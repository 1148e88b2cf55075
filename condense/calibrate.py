"""Recalibration that costs nothing at run time: Platt scaling folded into the last Dense layer.

A model's probabilities are risks only when they are calibrated. Distillation, for one, inherits
its teacher's underestimate (docs/calibration.md). ``condense train --calibrate platt`` fits a
logistic recalibration of the model's final logit on the **validation split only**,

    logit' = a * logit + b,

and folds it into the output layer, ``Dense(1, sigmoid)``: kernel ``a * W``, bias ``a * c + b``.
``--calibrate intercept`` fits ``b`` alone (``a = 1``: calibration in the large, the slope kept).
The model keeps its architecture, its parameter count and its operators, so ``model.keras`` and
every ``.tflite`` file made from it (sequence and step forms) carry the recalibration exactly,
with no extra op. ``a > 0`` keeps the ranking (AUROC unchanged); a fit with ``a <= 0`` (a model
that ranks backwards on validation) or without a maximum is refused with its reason.

The logit is computed in float64 from the layer's input (not recovered from a float32 probability,
whose logit loses precision near 0 and 1).
"""

from __future__ import annotations

import numpy as np

from condense.evaluate.metrics import brier, calibration, hosmer_lemeshow, logistic_recalibration, sigmoid

# Deferred on purpose: Keras is imported inside the functions that use it, so importing this module stays light.

__all__ = ["CALIBRATIONS", "final_logits", "fit_intercept", "fit_platt", "fold_platt", "recalibrate",
           "probability_logits", "fit_map", "apply_map", "recalibrated_calibration"]

#: ``--calibrate`` choices: Platt scaling (slope and intercept), the intercept alone (calibration in
#: the large: the slope stays 1), or the model as trained.
CALIBRATIONS = ("platt", "intercept", "none")


def _output_dense(model):
    """The model's last layer when it is ``Dense(1, sigmoid)``; ValueError naming what it is otherwise."""
    import keras

    layer = model.layers[-1]
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if not isinstance(layer, keras.layers.Dense) or layer.units != 1 or activation != "sigmoid":
        raise ValueError(f"recalibration folds into a final Dense(1, sigmoid) layer; {model.name!r} ends with "
                         f"{type(layer).__name__} {layer.name!r}" + (f" (activation {activation})" if activation else ""))
    return layer


def final_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N,) float64 logits of the model's output layer (its input times its weights, in float64)."""
    import keras

    layer = _output_dense(model)
    features = keras.Model(model.inputs, layer.input).predict(x, batch_size=batch_size, verbose=0)
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    return np.asarray(features, np.float64).reshape(len(x), -1) @ kernel[:, 0] + bias[0]


def fit_platt(y_val: np.ndarray, logits_val: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``logit' = a * logit + b``, the maximum-likelihood fit on the validation split."""
    b, a, problem = logistic_recalibration(np.asarray(y_val).astype(np.int8), np.asarray(logits_val, np.float64))
    if problem is not None:
        raise ValueError(f"Platt recalibration has no fit on the validation split: {problem}")
    if not a > 0:
        raise ValueError(f"Platt recalibration on the validation split gives slope {a:.3g} <= 0 (the model ranks "
                         "validation patients backwards): refusing to fold a ranking reversal into it")
    return a, b


def fit_intercept(y_val: np.ndarray, logits_val: np.ndarray) -> float:
    """``b`` of ``logit' = logit + b`` (the slope kept at 1), the maximum-likelihood fit on the validation
    split: the predicted deaths then sum to the observed ones. One parameter: steadier than Platt's two
    on a few hundred validation deaths (docs/calibration.md).

    The score ``sum(y - sigmoid(logit + b))`` falls monotonically in ``b``, so its root is bracketed and
    bisected: no step can overshoot, however far the logits are from the observed rate."""
    y = np.asarray(y_val, np.float64)
    z = np.asarray(logits_val, np.float64)
    if y.min() == y.max():
        raise ValueError("intercept recalibration needs both classes in the validation split")

    def score(b: float) -> float:
        return float(np.sum(y - sigmoid(z + b)))

    low, high = -1.0, 1.0
    while score(low) < 0.0:
        low *= 2.0
    while score(high) > 0.0:
        high *= 2.0
    while high - low > 1e-12 * max(1.0, abs(low)):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if score(mid) > 0.0 else (low, mid)
    return 0.5 * (low + high)


def fold_platt(model, a: float, b: float) -> None:
    """Fold ``logit' = a * logit + b`` into the model's output layer, in place."""
    layer = _output_dense(model)
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    layer.set_weights([(a * kernel).astype(np.float32), (a * bias + b).astype(np.float32)])


def recalibrate(model, x_val: np.ndarray, y_val: np.ndarray, method: str = "platt") -> dict:
    """Fit the recalibration ``method`` (``"platt"``: a and b; ``"intercept"``: b, a = 1) on the
    validation split and fold it into ``model`` (in place).

    Returns what a manifest records: ``{"method", "a", "b", "val_before", "val_after"}``,
    the last two the validation calibration (ECE, slope, intercept) before and after; after is
    on the data the fit was made on (slope 1 and intercept 0 by construction), so judge it on test.
    """
    y_val = np.asarray(y_val)
    logits = final_logits(model, x_val)
    a, b = _fit_logits(y_val, logits, method)
    before = calibration(y_val, sigmoid(logits))
    fold_platt(model, a, b)
    after = calibration(y_val, sigmoid(a * logits + b))
    keep = ("ece", "slope", "intercept")
    return {"method": method, "a": a, "b": b, "val_before": {k: before[k] for k in keep},
            "val_after": {k: after[k] for k in keep}}


# -- the same maps on probabilities: what the benchmark table reports for every row -------------------
def probability_logits(p: np.ndarray) -> np.ndarray:
    """``logit(p)`` in float64, ``p`` clipped to ``[1e-12, 1 - 1e-12]`` (a file's or a peer's output,
    where no layer input is at hand)."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1.0 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _fit_logits(y_val: np.ndarray, logits_val: np.ndarray, method: str) -> tuple[float, float]:
    """``(a, b)`` of the recalibration ``method`` (``"platt"`` or ``"intercept"``: a = 1) on validation logits."""
    if method == "platt":
        return fit_platt(y_val, logits_val)
    if method == "intercept":
        return 1.0, fit_intercept(y_val, logits_val)
    raise ValueError(f"Argument `method` must be 'platt' or 'intercept', got method={method!r}.")


def fit_map(y_val: np.ndarray, p_val: np.ndarray, method: str) -> tuple[float, float]:
    """``(a, b)`` of the recalibration ``method`` fitted on validation probabilities."""
    return _fit_logits(y_val, probability_logits(p_val), method)


def apply_map(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(p) + b)``: the probabilities after the recalibration ``(a, b)``."""
    return sigmoid(a * probability_logits(p) + b)


def recalibrated_calibration(y_test: np.ndarray, p_test: np.ndarray, a: float, b: float) -> dict:
    """The table's after-recalibration columns: ECE, slope, intercept, Brier and Hosmer-Lemeshow H of
    ``p_test`` mapped by ``(a, b)`` (fitted on validation: the test labels judge it, never fit it)."""
    q = apply_map(p_test, a, b)
    cal = calibration(y_test, q)
    return {"recal_a": a, "recal_b": b, "ece_recal": cal["ece"], "cal_slope_recal": cal["slope"],
            "cal_intercept_recal": cal["intercept"], "brier_recal": brier(y_test, q),
            "hl_h_recal": hosmer_lemeshow(y_test, q)["hl_h"]}
