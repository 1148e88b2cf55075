"""A user's plugin module, as a test would write one: a custom Keras layer and a file check, registered
on import. ``condense.plugins`` must make the conversion child import it."""

from __future__ import annotations

import keras

from condense.export.file_checks import register_file_check

PACKAGE = "condense_plugin_test"
CHECK = "refuses_models_named_reject"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Scale(keras.layers.Layer):
    """Multiplies its input by a fixed factor (a layer Keras does not know)."""

    def __init__(self, factor: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@register_file_check(CHECK)
def refuse_models_named_reject(file) -> None:
    """Runs in the conversion child: proves the check travelled there, and that it can stop a file."""
    if file.model.name.startswith("reject"):
        raise RuntimeError(f"the plugin check refused the model {file.model.name!r}")
