"""condense: make clinical deep-learning models small and fast, and prove it.

Importing the package registers the custom Keras objects (the hLSTM cell and layer), so
``keras.saving.load_model(path, safe_mode=True)`` reloads a saved condense model without
``custom_objects``.
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise for a CLI user; a user who
# wants it sets TF_CPP_MIN_LOG_LEVEL themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # registration needs Keras; the data layer (condense.data) does not.
    from condense import cells as _cells  # noqa: F401
except ImportError:  # pragma: no cover - cells.py not present or Keras not installed
    _cells = None
