"""Conversion of a :class:`~condense.export.step_graph.StepGraph` to a step ``.tflite`` file (child side).

Called by the conversion child (:mod:`condense.export.conversion_child`) for ``form="step"``.
float32 and dynamic convert the graph as it is; full int8 is calibrated on ``(x_t, state_t)``
pairs: the calibration sequences run through the float step equations from zero state, every
hour's input and incoming state one sample (the state's int8 ranges come from real trajectories,
not from zeros). The file is written only after its checks: no ``WHILE`` and no variable tensor
in it, a finite output, int8 weights where the format says so, and for float32 the 48 chained
steps equal Keras on the calibration data to :data:`STEP_FLOAT_TOL`.
"""

from __future__ import annotations

import numpy as np

from condense.export import tflite_edit
from condense.export.recurrent_graphs import analyse, masked_steps
from condense.export.step_graph import OUTPUT_NAME, StepGraph, step_problem
from condense.export.step_runner import StepModel

# Deferred on purpose: TensorFlow is imported inside the functions that use it, so importing this module stays light.

__all__ = ["convert_step", "STEP_FLOAT_TOL", "STEP_CALIBRATION_PAIRS"]

#: Largest |p_step - p_keras| a float32 step file may have after the chained steps.
STEP_FLOAT_TOL = 1e-5
#: Sequences whose chained float32 steps are compared with Keras before a step file is written.
STEP_CHECK_SEQUENCES = 32
#: ``(x_t, state_t)`` pairs the int8 calibration runs (a seeded sample of all the pairs).
STEP_CALIBRATION_PAIRS = 4000
#: Operators a step file must not hold (a loop or state kept inside the file).
FORBIDDEN_STEP_OPS = ("WHILE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "UNIDIRECTIONAL_SEQUENCE_LSTM")


def _masking_checked(chain, calibration, name: str) -> dict:
    """Dropping Masking from the step must be exact on the data (no all-mask time step)."""

    if chain.masking is None:
        return {"dropped": True, "reason": "the model has no Masking layer"}
    if calibration is None:
        raise ValueError(f"cannot build a step file of {name} without calibration_x: it is the data that shows "
                         "that no time step is masked (the step graph has no Masking)")
    mask_value = float(chain.masking.mask_value)
    samples, steps = masked_steps(calibration, mask_value)
    if steps:
        raise ValueError(f"cannot build a step file of {name}: {samples} of {len(calibration)} checked samples have "
                         f"{steps} time step(s) with every feature equal to the mask value {mask_value:g}, which "
                         "Keras skips and a step file cannot")
    return {"dropped": True, "reason": "no time step of the checked data is masked: dropping Masking is exact",
            "checked_samples": int(len(calibration)), "masked_samples": 0, "masked_steps": 0}


def _calibration_pairs(graph, calibration: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    _, pairs = graph.run(calibration, pairs=True)
    total = len(pairs["x"])
    if total > STEP_CALIBRATION_PAIRS:
        keep = np.sort(np.random.default_rng(seed).choice(total, STEP_CALIBRATION_PAIRS, replace=False))
        pairs = {name: value[keep] for name, value in pairs.items()}
    return pairs


def convert_step(model, calibration, spec, name: str, normalizer=None) -> tuple[bytes, dict]:
    """The step file's bytes for ``model`` in format ``spec``, and the plan (route, masking, states);
    ``normalizer=(mean, scale)`` folds the input standardization into the first layer (float32)."""
    import tensorflow as tf

    chain = analyse(model)
    # full int8 stops before a sigmoid/linear Dense head and appends it in float after conversion:
    # an int8 probability has 256 levels, and most patients would tie
    head = None
    if spec.integer_only and not step_problem(chain) and chain.head is not None:
        kernel, bias = (np.asarray(w, np.float32) for w in chain.head.get_weights())
        head = (kernel, bias, chain.head_activation)
    graph = StepGraph(chain, head=head is None, normalizer=normalizer)  # raises ValueError naming the layer that cannot be stepped
    masking = _masking_checked(chain, calibration, name)
    fn, module = graph.concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    if spec.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.integer_only:
        pairs = _calibration_pairs(graph, calibration)

        def representative_dataset():
            for k in range(len(pairs["x"])):
                yield {key: value[k:k + 1] for key, value in pairs.items()}

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32  # the state stays float between calls
        converter.inference_output_type = tf.float32
    data = bytes(converter.convert())
    if head is not None:
        edited = tflite_edit.read_model(data)
        tflite_edit.append_dense_head(edited, *head, output=OUTPUT_NAME)
        data = tflite_edit.write_model(edited)
    plan = {"route": "step" + (" + float head" if head is not None else ""), "masking": masking, "warnings": [],
            "states": [{"name": s.name, "output": s.output, "units": s.units, "layer": s.layer}
                       for s in graph.states],
            "steps": chain.timesteps}
    return data, plan


def unnormalized(x: np.ndarray, mean, scale) -> np.ndarray:
    """``x * scale + mean`` per feature (float32): the input of a file with the normalizer folded in."""
    return (np.asarray(x, np.float64) * np.asarray(scale, np.float64) + np.asarray(mean, np.float64)).astype(np.float32)


def check_step_file(data: bytes, ops: list[str], model, calibration, fmt: str, normalizer=None) -> dict:
    """Checks before a step file is written; returns what they measured (raises when one fails).
    With ``normalizer=(mean, scale)`` folded into the file, the file is fed ``calibration * scale + mean``."""

    held = sorted(set(ops) & set(FORBIDDEN_STEP_OPS))
    if held:
        raise RuntimeError(f"the step file holds {held}: a loop or state inside the file")
    runner = StepModel(data)
    p0 = runner.predict(np.zeros((1, 1, runner.features), np.float32))
    if not np.all(np.isfinite(p0)):
        raise RuntimeError("the step file returns non-finite values")
    if fmt != "float32" or calibration is None:
        return {}
    x = calibration[:STEP_CHECK_SEQUENCES]
    p_keras = np.asarray(model.predict(x, batch_size=len(x), verbose=0), np.float64).reshape(-1)
    x_file = x if normalizer is None else unnormalized(x, *normalizer)
    worst = float(np.max(np.abs(runner.predict(x_file) - p_keras)))
    if worst > STEP_FLOAT_TOL:
        raise RuntimeError(f"the float32 step file chained over {x.shape[1]} steps differs from Keras by {worst:.2e} "
                           f"on the calibration data (tolerance {STEP_FLOAT_TOL:g}); not written")
    return {"step_parity_max_abs": worst}
