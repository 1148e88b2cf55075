"""condense: make clinical deep-learning models small and fast, and prove it.

The package is laid out as the pipeline runs (see README.md, "Structure map"):
``data`` -> ``layers``/``models`` -> ``train`` -> ``prune`` -> ``export`` -> ``evaluate`` ->
``runs`` -> ``bench``. Importing ``condense`` imports neither TensorFlow nor Keras, so the CLI's
help and every ``condense data`` command answer at once. The custom hLSTM layer is registered
with Keras by ``import condense.layers``, which every place that loads a saved model does.
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise for a CLI user; a user who
# wants it sets TF_CPP_MIN_LOG_LEVEL themselves (or passes --verbose to the CLI).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
