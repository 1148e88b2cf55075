"""Run the files condense exports on LiteRT.

* :func:`open_tflite` — the one chooser: a step file (:class:`~condense.export.step_runner.StepModel`,
  chained over the hours) or any other file (:class:`TFLiteModel`: a whole sequence, or a DNN).
* :class:`TFLiteModel` — one input, one output; fused-LSTM state reset before every prediction, int8
  input quantized and output dequantized, batch-1 files run sample by sample.
* :func:`parity_check` — a file against the Keras model it came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
import os
import sys
from pathlib import Path

import numpy as np

from condense.export.inspection import constant_stats, op_names, variable_tensor_count
from condense.export.step_runner import StepModel, is_step_file

# Deferred on purpose: LiteRT, Keras, condense.layers and scikit-learn are imported inside the functions that
# use them, so importing this module stays light.

__all__ = ["TFLiteModel", "open_tflite", "parity_check"]


def open_tflite(path, *, num_threads: int = 1):
    """The LiteRT runner of any file condense writes: :class:`~condense.export.step_runner.StepModel`
    for a step file (chained over the hours), else :class:`TFLiteModel` (the whole sequence, or a DNN)."""

    if is_step_file(path):
        return StepModel(path, num_threads=num_threads)
    return TFLiteModel(path, num_threads=num_threads)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what native code writes to stderr (file descriptor 2) when TensorFlow's log level
    asks for quiet (``TF_CPP_MIN_LOG_LEVEL`` >= 3, the CLI's default): LiteRT prints an INFO line
    on every interpreter it creates and has no setting for it."""
    try:
        quiet = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 3
    except ValueError:
        quiet = False
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class TFLiteModel:
    """Run a ``.tflite`` model with LiteRT and get probabilities.

    Handles what differs between files so callers do not have to: files with a batch fixed to
    1 (recurrent models) are run one sample at a time, dynamic-batch files (the DNN) are run in
    chunks after resizing the input; int8 input is quantized and int8 output dequantized with
    the scale and zero-point stored in the file.

    Args:
        path: A ``.tflite`` file with one input and one output.
        num_threads: CPU threads for the interpreter. Default 1 (per-sample latency on a phone
            core). XNNPACK is used as LiteRT's default CPU delegate.
        batch_size: Chunk size for dynamic-batch files. Default 256.

    Example::

        runner = TFLiteModel("models/run1/model.int8.tflite")
        p = runner.predict(x_test)          # (N,) float32 probabilities
    """

    def __init__(self, path, num_threads: int = 1, *, batch_size: int = 256):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TFLite model not found: {self.path}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"Argument `num_threads` must be a positive integer, got num_threads={num_threads!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Argument `batch_size` must be a positive integer, got batch_size={batch_size!r}.")
        self.num_threads = num_threads
        self.batch_size = batch_size
        try:
            with _quiet_native_stderr():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate"
                self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path} is not a loadable .tflite model: {exc}") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.path}: TFLiteModel runs single-input, single-output models, "
                             f"this file has {len(inputs)} inputs and {len(outputs)} outputs")
        self._input = inputs[0]
        self._output = outputs[0]
        signature = self._input.get("shape_signature")
        if signature is None or len(signature) == 0:
            signature = self._input["shape"]
        self._dynamic = int(signature[0]) == -1
        self._sample_shape = tuple(int(d) for d in self._input["shape"][1:])
        self._allocated = int(self._input["shape"][0])
        self._stats = None
        data = self.path.read_bytes()
        self._ops = op_names(data)
        #: True when the file has variable tensors (a fused LSTM's state): they are reset before
        #: every prediction, as an app must do (C++ ``Interpreter::ResetVariableTensors()``).
        self.stateful = variable_tensor_count(data) > 0

    # -- description ---------------------------------------------------------------------------
    @property
    def input_details(self) -> dict:
        """The interpreter's description of the input tensor (name, shape, shape_signature,
        dtype, quantization (scale, zero_point))."""
        return dict(self._input)

    @property
    def output_details(self) -> dict:
        """The interpreter's description of the output tensor."""
        return dict(self._output)

    @property
    def input_shape(self) -> tuple:
        """Input shape with ``None`` for a dynamic batch, e.g. ``(1, 48, 76)`` or ``(None, 76)``."""
        return (None if self._dynamic else self._allocated, *self._sample_shape)

    @property
    def dynamic_batch(self) -> bool:
        """True when the file accepts any batch size (the input is resized per call)."""
        return self._dynamic

    @property
    def io_dtype(self) -> np.dtype:
        """dtype of the input tensor: float32, or int8 for files exported with ``int8_io=True``."""
        return np.dtype(self._input["dtype"])

    @property
    def is_quantized(self) -> bool:
        """True when the file stores int8 weights (``dynamic`` and ``int8`` exports)."""
        return self.tensor_dtypes().get("int8", 0) > 0

    def op_names(self) -> list[str]:
        """Builtin operator names of the file, every subgraph, in file order (e.g. a fused
        recurrent file holds ``"UNIDIRECTIONAL_SEQUENCE_LSTM"``, a loop ``"WHILE"``)."""
        return list(self._ops)

    def tensor_dtypes(self, measure: str = "count") -> dict[str, int]:
        """dtype -> number of constant tensors (``measure="count"``) or their bytes
        (``measure="bytes"``), over every subgraph of the file.

        Constant tensors are the ones that carry data in the file: weights, biases,
        quantization-free constants (shapes, axes). An ``int8`` export holds ``int8`` weights
        and ``int32`` biases; a ``float32`` export holds no ``int8`` tensor at all.
        """
        if measure not in ("count", "bytes"):
            raise ValueError(f"Argument `measure` must be 'count' or 'bytes', got measure={measure!r}.")
        if self._stats is None:
            self._stats = constant_stats(self.path.read_bytes())
        return dict(self._stats[measure])

    # -- running -------------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Probabilities for ``X``.

        Args:
            X: Model inputs of shape ``(N, *sample_shape)`` (any ``N >= 1``) or one sample of
                shape ``sample_shape``, float values preprocessed as for training.

        Returns:
            ``(N,)`` float32 for single-unit outputs (the probability), else ``(N, units)``.
        """
        x = np.asarray(X, dtype=np.float32)
        if x.shape == self._sample_shape:
            x = x[None, ...]
        if x.ndim != len(self._sample_shape) + 1 or tuple(x.shape[1:]) != self._sample_shape:
            raise ValueError(f"{self.path} expects inputs of shape (N, {', '.join(map(str, self._sample_shape))}), "
                             f"got {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{self.path}: predict got no samples (shape {x.shape})")
        step = min(self.batch_size, len(x)) if self._dynamic else self._allocated
        outs = [self._run(x[start:start + step]) for start in range(0, len(x), step)]
        out = np.concatenate(outs, axis=0)[: len(x)]
        out = out.reshape(len(x), -1)
        return out[:, 0] if out.shape[1] == 1 else out

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if self._dynamic:
            if n != self._allocated:
                self._interpreter.resize_tensor_input(self._input["index"], [n, *self._sample_shape])
                self._interpreter.allocate_tensors()
                self._allocated = n
        elif n < self._allocated:  # a fixed batch larger than the last chunk: pad with zeros
            chunk = np.concatenate([chunk, np.zeros((self._allocated - n, *self._sample_shape), np.float32)])
        if self.stateful:
            self._interpreter.reset_all_variables()
        self._interpreter.set_tensor(self._input["index"], self.quantize_input(chunk))
        self._interpreter.invoke()
        return self.dequantize_output(self._interpreter.get_tensor(self._output["index"]))[:n]

    def single_sample_call(self, x_one) -> Callable[[], np.ndarray]:
        """A zero-argument function running one prepared sample: reset the state (stateful files
        only) + ``set_tensor`` + ``invoke`` + ``get_tensor`` (the raw output tensor), what an app
        does per prediction. The sample is
        quantized once, here, for int8-input files. Used by :func:`condense.evaluate.measure.tflite_latency`.

        Args:
            x_one: One sample, shape ``sample_shape`` or ``(1, *sample_shape)``.
        """
        x = np.asarray(x_one, dtype=np.float32)
        if x.shape == self._sample_shape:
            x = x[None, ...]
        if x.shape != (1, *self._sample_shape):
            raise ValueError(f"{self.path}: one sample must have shape (1, {', '.join(map(str, self._sample_shape))}), "
                             f"got {x.shape}")
        if self._dynamic and self._allocated != 1:
            self._interpreter.resize_tensor_input(self._input["index"], [1, *self._sample_shape])
            self._interpreter.allocate_tensors()
            self._allocated = 1
        if self._allocated != 1:
            raise ValueError(f"{self.path} has a fixed batch of {self._allocated}, not a single-sample model")
        prepared = self.quantize_input(x)
        interpreter, in_index, out_index = self._interpreter, self._input["index"], self._output["index"]
        reset = interpreter.reset_all_variables if self.stateful else (lambda: None)

        def call() -> np.ndarray:
            reset()
            interpreter.set_tensor(in_index, prepared)
            interpreter.invoke()
            return interpreter.get_tensor(out_index)

        return call

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the input tensor's dtype: unchanged for float input; for int8 input
        ``clip(round(x / scale) + zero_point, -128, 127)``."""
        dtype = self._input["dtype"]
        if not np.issubdtype(dtype, np.integer):
            return np.ascontiguousarray(x, dtype=dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """The output tensor as float32: ``(q - zero_point) * scale`` for int8 output."""
        if not np.issubdtype(y.dtype, np.integer):
            return y.astype(np.float32, copy=False)
        scale, zero_point = self._output["quantization"]
        return ((y.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)

    def __repr__(self) -> str:
        return (f"TFLiteModel({str(self.path)!r}, input {self.input_shape} {self.io_dtype}, "
                f"num_threads={self.num_threads})")


def parity_check(keras_model, tflite_path, X, y=None, *, num_threads: int = 1) -> dict:
    """Compare a ``.tflite`` file with the Keras model it came from on inputs ``X``.

    Args:
        keras_model: A ``keras.Model``, or the path of a ``.keras`` file (loaded with
            ``safe_mode=True``).
        tflite_path: The exported ``.tflite`` file.
        X: Preprocessed model inputs ``(N, *input_shape)``.
        y: Optional 0/1 labels; when given (and both classes occur), the AUROC of each model.

    Returns:
        ``{"n", "max_abs_diff", "mean_abs_diff", "p_keras", "p_tflite"}``, plus
        ``"auroc_keras"``, ``"auroc_tflite"`` and ``"auroc_diff"`` (tflite minus Keras) when
        ``y`` is given with both classes.
    """
    import keras

    if isinstance(keras_model, (str, os.PathLike)):
        import condense.layers  # noqa: F401  (registers the custom layers for safe loading)

        keras_model = keras.saving.load_model(keras_model, safe_mode=True, compile=False)
    x = np.asarray(X, dtype=np.float32)
    p_keras = np.asarray(keras_model.predict(x, batch_size=256, verbose=0), dtype=np.float32).reshape(len(x), -1)
    p_keras = p_keras[:, 0] if p_keras.shape[1] == 1 else p_keras
    p_tflite = TFLiteModel(tflite_path, num_threads=num_threads).predict(x)
    diff = np.abs(p_tflite.astype(np.float64) - p_keras.astype(np.float64))
    report = {
        "n": int(len(x)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "p_keras": p_keras,
        "p_tflite": p_tflite,
    }
    if y is not None:
        labels = np.asarray(y).reshape(-1)
        if len(labels) != len(x):
            raise ValueError(f"y has {len(labels)} labels for {len(x)} samples")
        if len(np.unique(labels)) == 2:
            from sklearn.metrics import roc_auc_score

            report["auroc_keras"] = float(roc_auc_score(labels, p_keras))
            report["auroc_tflite"] = float(roc_auc_score(labels, p_tflite))
            report["auroc_diff"] = report["auroc_tflite"] - report["auroc_keras"]
    return report
