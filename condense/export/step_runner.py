"""Run a step ``.tflite`` file (one hour in, the output and the new state out) with LiteRT.

:class:`StepModel` keeps the state on the caller's side, as a device app would: ``start()`` for a
new patient (zero state), ``step(x_t)`` for each new hour (returns the output after it), and
``predict(X)`` for whole sequences (each from zero state, the output after the last hour: what
the sequence model computes).

    >>> model = StepModel("models/hlstm/model.int8.step.tflite")  # doctest: +SKIP
    >>> model.start(); [model.step(x_t) for x_t in hours][-1]      # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from condense.export.step_graph import INPUT_NAME, OUTPUT_NAME, STATE_OUT_SUFFIX

# Deferred on purpose: LiteRT is imported inside the functions that use it, so importing this module stays light.

__all__ = ["StepModel", "is_step_file", "step_io_names"]


def _data(source) -> bytes:
    return bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()


def step_io_names(data: bytes) -> tuple[list[str], list[str]]:
    """The signature names of the main subgraph's inputs and outputs, in tensor order (runtimes
    without signatures, such as TFLM, address a step file's tensors by position: the converter
    orders them as it likes, e.g. ``h1, h2, x, c2, c1``)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(_data(data), 0)
    if model.SignatureDefsLength() != 1:
        raise ValueError(f"not a step file: {model.SignatureDefsLength()} signatures (a step file has one)")
    signature = model.SignatureDefs(0)
    inputs = {signature.Inputs(k).TensorIndex(): signature.Inputs(k).Name().decode()
              for k in range(signature.InputsLength())}
    outputs = {signature.Outputs(k).TensorIndex(): signature.Outputs(k).Name().decode()
               for k in range(signature.OutputsLength())}
    subgraph = model.Subgraphs(signature.SubgraphIndex())
    return ([inputs[subgraph.Inputs(k)] for k in range(subgraph.InputsLength())],
            [outputs[subgraph.Outputs(k)] for k in range(subgraph.OutputsLength())])


def _interpreter(source, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(source, (bytes, bytearray)):
        return Interpreter(model_content=bytes(source), num_threads=num_threads)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"step .tflite file not found: {path}")
    return Interpreter(model_path=str(path), num_threads=num_threads)


def is_step_file(source) -> bool:
    """True when the ``.tflite`` file (path or bytes) has the step form's inputs (``x`` and a state):
    read from its signature, whatever the file is called."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(_data(source), 0)
    if model.SignatureDefsLength() != 1:
        return False
    signature = model.SignatureDefs(0)
    inputs = {signature.Inputs(k).Name().decode() for k in range(signature.InputsLength())}
    return INPUT_NAME in inputs and len(inputs) > 1


class StepModel:
    """A step ``.tflite`` file with its state held here (see the module docstring).

    Args:
        source: path of the file, or its bytes.
        num_threads: LiteRT interpreter threads. Default 1.

    Attributes:
        features: width of one hour's input.
        states: ``{name: units}`` of the state inputs (``h1, c1, ...``).
    """

    def __init__(self, source: str | os.PathLike | bytes, *, num_threads: int = 1):
        self.name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
        self._source = bytes(source) if isinstance(source, (bytes, bytearray)) else source
        self._num_threads = num_threads
        self._interpreter = _interpreter(source, num_threads)
        signatures = self._interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"{self.name}: not a step file (it has {len(signatures)} signatures, a step file has one)")
        key = next(iter(signatures))
        self._runner = self._interpreter.get_signature_runner(key)
        details = self._runner.get_input_details()
        if INPUT_NAME not in details or len(details) < 2:
            raise ValueError(f"{self.name}: not a step file (inputs {sorted(details)}; a step file takes "
                             f"{INPUT_NAME!r} and the recurrent state)")
        self.features = int(details[INPUT_NAME]["shape"][-1])
        self.states = {name: int(d["shape"][-1]) for name, d in sorted(details.items()) if name != INPUT_NAME}
        outputs = set(self._runner.get_output_details())
        missing = {OUTPUT_NAME, *(n + STATE_OUT_SUFFIX for n in self.states)} - outputs
        if missing:
            raise ValueError(f"{self.name}: not a step file (outputs {sorted(outputs)} lack {sorted(missing)})")
        self.state: dict[str, np.ndarray] = {}
        self.start()

    def single_step_call(self, x_t):
        """A zero-argument function that runs one hour ``x_t`` the way an app does: set the hour and
        the state from the previous call's outputs, invoke, read the output and the new state (raw
        tensor indices: no per-call dictionaries). Used for per-step latency."""
        x_t = np.ascontiguousarray(np.asarray(x_t, np.float32).reshape(1, self.features))
        # a plain interpreter of its own: LiteRT refuses invoke() on one a signature runner holds
        data = _data(self._source)
        interpreter = _interpreter(data, self._num_threads)
        interpreter.allocate_tensors()
        input_names, output_names = step_io_names(data)
        inputs = {name: d["index"] for name, d in zip(input_names, interpreter.get_input_details())}
        outputs = {name: d["index"] for name, d in zip(output_names, interpreter.get_output_details())}
        x_index, p_index = inputs[INPUT_NAME], outputs[OUTPUT_NAME]
        carry = [(inputs[name], outputs[name + STATE_OUT_SUFFIX]) for name in self.states]
        for in_index, _ in carry:  # a new patient: zero state
            interpreter.set_tensor(in_index, np.zeros(interpreter.get_tensor(in_index).shape, np.float32))

        def call() -> np.ndarray:
            interpreter.set_tensor(x_index, x_t)
            interpreter.invoke()
            for in_index, out_index in carry:  # the new state into the next call's inputs (get_tensor copies)
                interpreter.set_tensor(in_index, interpreter.get_tensor(out_index))
            return interpreter.get_tensor(p_index)

        return call

    def zero_state(self) -> dict[str, np.ndarray]:
        return {name: np.zeros((1, units), np.float32) for name, units in self.states.items()}

    def start(self, state: dict | None = None) -> None:
        """Begin a patient: zero state, or ``state`` (``{name: (1, units)}``, every state name)."""
        if state is None:
            self.state = self.zero_state()
            return
        if set(state) != set(self.states):
            raise ValueError(f"{self.name}: the state must have the entries {sorted(self.states)}, got {sorted(state)}")
        checked = {}
        for name, value in state.items():
            value = np.asarray(value, np.float32)
            if value.size != self.states[name]:
                raise ValueError(f"{self.name}: state {name!r} has shape {value.shape}; the file takes "
                                 f"(1, {self.states[name]})")
            checked[name] = value.reshape(1, self.states[name])
        self.state = checked

    def step(self, x_t) -> float:
        """Feed one hour ``x_t`` (``(features,)`` or ``(1, features)``); returns the output after it."""
        x_t = np.asarray(x_t, np.float32)
        if x_t.size != self.features or x_t.ndim > 2:
            raise ValueError(f"{self.name}: one hour has {self.features} values, got an array of shape {x_t.shape}")
        out = self._runner(**{INPUT_NAME: x_t.reshape(1, self.features)}, **self.state)
        self.state = {name: np.array(out[name + STATE_OUT_SUFFIX], np.float32) for name in self.states}
        return float(np.asarray(out[OUTPUT_NAME]).reshape(-1)[0])

    def trajectory(self, x: np.ndarray) -> np.ndarray:
        """The output after each hour of one sequence ``x`` ``(T, features)``, from zero state."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"{self.name}: expected one sequence of shape (T, {self.features}), got {x.shape}")
        self.start()
        return np.array([self.step(x_t) for x_t in x], np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The output after the last hour of each sequence of ``x`` ``(N, T, features)``, each from
        zero state: ``(N,)`` float64."""
        x = np.asarray(x, np.float32)
        if x.ndim != 3 or x.shape[2] != self.features:
            raise ValueError(f"{self.name}: expected inputs of shape (N, T, {self.features}), got {x.shape}")
        return np.array([self.trajectory(seq)[-1] for seq in x], np.float64).reshape(len(x))
