"""Custom Keras layers: the hLSTM (:mod:`condense.layers.hlstm`).

Importing this package registers them with Keras (package name ``condense``), so that
``keras.saving.load_model(path, safe_mode=True)`` reloads a saved condense model without
``custom_objects``. Every condense function that loads a model imports it first.
"""

from condense.layers.hlstm import HLSTM, HLSTMCell

__all__ = ["HLSTM", "HLSTMCell"]
