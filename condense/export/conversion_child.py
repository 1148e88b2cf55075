"""The conversion child: ``python -m condense.export.conversion_child REQUEST.json``, run by
:func:`condense.export.convert.export_tflite_many` through :mod:`condense._child`.

For each job it loads the model with ``safe_mode=True`` (after importing the parent's plugin modules,
:mod:`condense.plugins`), chooses the graph (the *route*: fused LSTM, hoisted hLSTM gates, WHILE
loop or unrolled; ``Masking`` dropped only where exact), converts with the settings of the format it
was sent (an :class:`~condense.export.formats.ExportFormat` as data, so a format registered only in
the parent converts the same), applies the edits the converter cannot make
(:mod:`condense.export.tflite_edit`), runs the format's checks (:mod:`condense.export.file_checks`)
and only then writes the bytes. Design notes: ``docs/export.md`` and ``docs/recurrent-export.md``.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from condense._child import child_main, error_result, write_result
from condense.export import recurrent_graphs as rg, tflite_edit
from condense.export.file_checks import ConvertedFile, FILE_CHECKS
from condense.export.formats import ExportFormat
from condense.export.inspection import constant_stats, op_names
from condense.export.metadata import with_metadata
from condense.export.step_export import check_step_file, convert_step

# Deferred on purpose: Keras, condense.layers, condense.models and TensorFlow are imported inside the
# functions that use them, so importing this module stays light.

#: Environment variable read by the conversion child only: ``segfault`` or ``error`` makes every
#: conversion fail that way after a partial output is written (the parent must clean it up).
FAULT_ENV = "CONDENSE_EXPORT_FAULT"
_FAULTS = ("segfault", "error")
#: The cell clip the converter hard-codes on fused Keras LSTM ops (kept in full-int8 files).
CONVERTER_CELL_CLIP = 10.0


def _is_recurrent(model) -> bool:
    """True when ``model`` (or a nested model) has a recurrent layer (anything with a time loop)."""
    import keras

    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) or hasattr(layer, "unroll"):
            return True
        stack.extend(getattr(layer, "layers", []) or [])
    return False


def _convert(request: dict) -> dict:
    """Load, choose the graph, convert, edit, check; write the bytes to ``request['out_path']``."""
    started = time.perf_counter()
    fault = os.environ.get(FAULT_ENV, "").strip().lower()
    if fault and fault not in _FAULTS:
        raise ValueError(f"{FAULT_ENV} must be one of {_FAULTS} or unset, got {fault!r}")

    import keras
    import tensorflow as tf

    import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

    fmt = request["fmt"]
    model = keras.saving.load_model(request["model_path"], safe_mode=True, compile=False)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"only single-input, single-output models are supported, got "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
    sample_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    calibration = np.load(request["calibration"]) if request.get("calibration") else None
    if calibration is not None and tuple(calibration.shape[1:]) != sample_shape:
        raise ValueError(f"calibration_x has samples of shape {tuple(calibration.shape[1:])}, "
                         f"the model expects {sample_shape}")
    recurrent = _is_recurrent(model)
    spec = ExportFormat(**{k: tuple(v) if isinstance(v, list) else v for k, v in request["format"].items()})
    unknown = [c for c in spec.checks if c not in FILE_CHECKS]
    if unknown:
        raise ValueError(f"format {fmt!r} asks for file check(s) {unknown} that the conversion child does not know "
                         f"(known: {sorted(FILE_CHECKS)}); register them with register_file_check in a module")
    if request.get("form", "sequence") == "step":
        return _convert_step(request, model, calibration, spec, sample_shape, started)
    float_head = spec.integer_only and not request["int8_io"]
    if recurrent:
        plan = _plan_recurrent(model, request, spec, calibration, float_head)
    elif request.get("dynamic_batch") or model.inputs[0].shape[0] is not None:
        route = "dynamic batch" if model.inputs[0].shape[0] is None else f"batch {model.inputs[0].shape[0]}"
        plan = {"route": route, "graph": model, "head": None, "masking": None, "warnings": []}
    else:  # batch 1 unless a batched file is asked for: LiteRT.js and TFLM take a fixed shape
        from condense.models import rebuild_with_batch

        plan = {"route": "batch 1", "graph": rebuild_with_batch(model, batch_size=1), "head": None, "masking": None,
                "warnings": []}

    graph = plan["graph"]
    if isinstance(graph, keras.Model):
        converter = tf.lite.TFLiteConverter.from_keras_model(graph)
    else:  # a rebuilt graph: (concrete function, the module that owns it)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([graph[0]], graph[1])
    if spec.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.integer_only:
        def representative_dataset():
            for row in calibration:
                yield [row[None, ...]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if request["int8_io"] else tf.float32
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type

    if fault:
        with open(request["out_path"], "wb") as fh:  # a partial output the parent must clean up
            fh.write(b"TFL3 partial")
        if fault == "segfault":
            import ctypes

            ctypes.string_at(0)  # a real invalid read: the process dies with SIGSEGV
            os.kill(os.getpid(), signal.SIGSEGV)  # pragma: no cover - should not get here
        raise RuntimeError(f"injected converter error ({FAULT_ENV}=error)")

    data = _edit(bytes(converter.convert()), spec, plan)
    data = _with_request_metadata(data, request, route=plan["route"])
    ops = op_names(data)
    stats = constant_stats(data)
    file = ConvertedFile(data=data, model=model, plan=plan, ops=ops, stats=stats, sample_shape=sample_shape,
                          recurrent=recurrent, calibration=calibration)
    for check in spec.checks:
        FILE_CHECKS[check](file)
    _write_output(request["out_path"], data)
    return {
        "fmt": fmt, "route": plan["route"], "recurrent": recurrent, "ops": sorted(set(ops)),
        "input_shape": [None, *sample_shape] if plan["route"] == "dynamic batch" else [1, *sample_shape],
        "io": "int8" if request.get("int8_io") else "float32",
        "masking": plan["masking"], "cell_state_max_abs": plan.get("cell_state_max_abs"),
        "warnings": plan["warnings"],
        "bytes": len(data), "constant_bytes": stats["bytes"],
        "seconds": round(time.perf_counter() - started, 3),
    }


def _with_request_metadata(data: bytes, request: dict, **facts) -> bytes:
    """``data`` with the job's metadata (:mod:`condense.export.metadata`) plus what the conversion
    found (route, states), when the job carries metadata."""
    if not request.get("metadata"):
        return data

    return with_metadata(data, {**request["metadata"], **facts})


def _write_output(path: str, data: bytes) -> None:
    """The checked file's bytes, on disk (the parent renames the temporary path into place)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _convert_step(request: dict, model, calibration, spec, sample_shape: tuple, started: float) -> dict:
    """The step form (:mod:`condense.export.step_export`): convert, check, write."""

    if not _is_recurrent(model):
        raise ValueError(f"{request['model_path']} has no recurrent layer: a step file steps a recurrent state "
                         "hour by hour (export the sequence form)")
    normalizer = request.get("normalizer")
    data, plan = convert_step(model, calibration, spec, request["model_path"], normalizer=normalizer)
    data = _with_request_metadata(data, request, route=plan["route"], states=plan["states"],
                                  inputs=["x", *(s["name"] for s in plan["states"])],
                                  outputs=["p", *(s["output"] for s in plan["states"])])
    ops = op_names(data)
    stats = constant_stats(data)
    if spec.integer_only:
        FILE_CHECKS["int8_weights_only"](ConvertedFile(data, model, plan, ops, stats, sample_shape, True, calibration))
    measured = check_step_file(data, ops, model, calibration, request["fmt"], normalizer=normalizer)
    _write_output(request["out_path"], data)
    return {
        "fmt": request["fmt"], "form": "step", "route": plan["route"], "recurrent": True, "ops": sorted(set(ops)),
        "input_shape": [1, sample_shape[-1]], "steps": plan["steps"], "states": plan["states"], "io": "float32",
        "masking": plan["masking"], "cell_state_max_abs": None, "warnings": plan["warnings"],
        "normalizer_folded": normalizer is not None,
        "bytes": len(data), "constant_bytes": stats["bytes"], **measured,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _plan_recurrent(model, request: dict, spec: ExportFormat, calibration, float_head: bool) -> dict:
    """Choose the graph of a recurrent model (see "How recurrent models are converted")."""
    from condense.models import rebuild_with_batch

    route = request.get("route", "auto")
    name = request["model_path"]
    warnings: list[str] = []
    if route in ("while", "unrolled"):  # the Keras 3 default conversion, exactly as Keras builds it
        graph = rebuild_with_batch(model, batch_size=1, unroll=route == "unrolled")
        return {"route": f"{route} (Keras 3 default conversion)", "graph": graph, "head": None,
                "masking": {"dropped": False, "reason": "requested route keeps the model as it is"},
                "warnings": warnings}
    chain = rg.analyse(model)
    masking = {"dropped": chain.masking is None, "reason": "the model has no Masking layer"}
    if chain.problem:
        masking = {"dropped": False, "reason": f"not a chain the rebuilt graphs know ({chain.problem})"}
    elif chain.masking is not None:
        mask_value = float(chain.masking.mask_value)
        if calibration is None:
            masking["reason"] = "no calibration_x to check that no time step is masked"
        else:
            samples, steps = rg.masked_steps(calibration, mask_value)
            masking.update(checked_samples=int(len(calibration)), masked_samples=samples, masked_steps=steps)
            masking["dropped"] = steps == 0
            masking["reason"] = ("no time step of the checked data is masked: dropping Masking is exact"
                                 if steps == 0 else
                                 f"{name}: {samples} of {len(calibration)} checked samples have {steps} time step(s) "
                                 f"with every feature equal to the mask value {mask_value:g}: Masking kept")
            if steps:
                warnings.append(masking["reason"])
    if not masking["dropped"]:
        if route == "fused":
            raise ValueError(f"cannot export {name} with the fused LSTM op: {masking['reason']}")
        unroll = spec.integer_only  # full-int8 calibration of a WHILE loop crashes
        return {"route": ("unrolled" if unroll else "while") + " + Masking",
                "graph": rebuild_with_batch(model, batch_size=1, unroll=unroll), "head": None,
                "masking": masking, "warnings": warnings}
    # int8 with float output: quantize up to the last hidden state, append the Dense head in float
    head = None
    if float_head and chain.head is not None:
        kernel, bias = (np.asarray(w, np.float32) for w in chain.head.get_weights())
        head = (kernel, bias, chain.head_activation)
    if not chain.fused_problem:
        graph = rg.FusedGraph(chain, head=head is None)
        plan = {"route": "fused", "graph": graph.concrete_function(), "head": head, "masking": masking,
                "warnings": warnings}
        if calibration is not None:
            peaks = rg.lstm_cell_state_max(chain, calibration)
            plan["cell_state_max_abs"] = max(peaks.values()) if peaks else None
            if spec.integer_only and peaks and max(peaks.values()) > CONVERTER_CELL_CLIP:
                warnings.append(f"{name}: the LSTM cell state reaches {max(peaks.values()):.1f} on the calibration "
                                f"data; the int8 LSTM op clips it at {CONVERTER_CELL_CLIP:g}")
        return plan
    if route == "fused":
        raise ValueError(f"cannot export {name} with the fused LSTM op: {chain.fused_problem}")
    if spec.integer_only and not chain.hoist_problem:
        graph = rg.HoistedGatesGraph(chain, head=head is None)
        return {"route": "hoisted, unrolled", "graph": graph.concrete_function(), "head": head,
                "masking": masking, "warnings": warnings, "strip": True}
    unroll = spec.integer_only
    return {"route": "unrolled" if unroll else "while", "graph": rg.keras_chain(model, chain, unroll=unroll),
            "head": None, "masking": masking, "warnings": warnings, "strip": unroll}


def _edit(data: bytes, spec: ExportFormat, plan: dict) -> bytes:
    """The edits the converter cannot make (:mod:`condense.export.tflite_edit`) for this route."""

    fused = plan["route"].startswith("fused")
    if not (fused or plan.get("head") is not None or plan.get("strip")):
        return data
    model = tflite_edit.read_model(data)
    if fused:
        for edit in spec.fused_lstm_edits:
            getattr(tflite_edit, edit)(model)
    if plan.get("head") is not None:
        kernel, bias, activation = plan["head"]
        tflite_edit.append_dense_head(model, kernel, bias, activation)
    if plan.get("strip"):
        tflite_edit.strip_names(model)
    return tflite_edit.write_model(model)


def _convert_jobs(request: dict) -> list[dict]:
    """The child's handler: convert the jobs in order, reporting after each; stop at the first
    failure (the parent writes nothing then)."""
    outcomes: list[dict] = []
    for job in request["jobs"]:
        try:
            outcome = {"ok": True, **_convert(job)}
        except Exception as exc:  # one structured outcome per job for the parent
            outcome = error_result(exc)
        outcomes.append(outcome)
        write_result(request, outcomes)  # after every job: the parent sees how far we got
        if not outcome["ok"]:
            raise SystemExit(1)  # the outcomes so far are written; exit status 1 says a job failed
        import keras

        keras.backend.clear_session()
    return outcomes


if __name__ == "__main__":
    raise SystemExit(child_main(_convert_jobs))
