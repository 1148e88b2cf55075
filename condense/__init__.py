"""condense: make clinical deep-learning models small and fast, and prove it.

The package is laid out as the pipeline runs (see README.md, "Structure map"):
``data`` -> ``layers``/``models`` -> ``train`` -> ``prune`` -> ``export`` -> ``evaluate`` ->
``runs`` -> ``bench``. Importing ``condense`` imports neither TensorFlow nor Keras, so the CLI's
help and every ``condense data`` command answer at once. The custom hLSTM layer is registered
with Keras by ``import condense.layers``; :func:`load_model` does that and loads a saved model.
"""

__version__ = "0.1.0"

import os as _os

# Deferred on purpose: Keras and condense.layers are imported inside the functions that use them, so importing
# this module stays light.

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise for a CLI user; a user who
# wants it sets TF_CPP_MIN_LOG_LEVEL themselves (or passes --verbose to the CLI).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: oneDNN's instruction-set cap condense sets unless the user has set ``ONEDNN_MAX_CPU_ISA``.
#: TensorFlow's matrix products (oneDNN on or off) pick their kernels by the CPU's instruction
#: set at run time, so the same seed trained a different model on an AVX-512 Xeon than on an
#: AVX2-only EPYC; capped at AVX2 (which every x86-64 CPU of the last decade has) both run the
#: same kernels and give the same numbers. Measured in docs/reproducibility.md; the cap is read
#: when TensorFlow first runs a matrix product, so importing condense first is enough.
REPRODUCIBLE_CPU_ISA = "AVX2"
if __import__("platform").machine().lower() in ("x86_64", "amd64"):
    _os.environ.setdefault("ONEDNN_MAX_CPU_ISA", REPRODUCIBLE_CPU_ISA)


def load_model(path, *, compile: bool = True):  # noqa: A002 - Keras' own argument name
    """A ``.keras`` file written by condense (or any Keras 3 model using condense's layers), loaded
    with ``safe_mode=True`` after registering the custom layers (``HLSTM``): plain
    ``keras.saving.load_model`` fails with "Could not locate class 'HLSTM'" unless
    ``condense.layers`` was imported first.

    >>> model = condense.load_model("models/hlstm/model.keras")  # doctest: +SKIP
    """
    import keras

    import condense.layers  # noqa: F401  (registers HLSTM / HLSTMCell)

    return keras.saving.load_model(path, safe_mode=True, compile=compile)
