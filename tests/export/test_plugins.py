"""A format, a file check and a custom layer registered in a user's module reach the conversion child
(condense.plugins), like Keras's custom_object_scope; what a child cannot import is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense.export.convert import ExportError, export_tflite  # noqa: E402
from condense.export.file_checks import FILE_CHECKS, register_file_check  # noqa: E402
from condense.export.formats import FORMATS, ExportFormat, register_format  # noqa: E402
from condense.export.litert_runner import TFLiteModel  # noqa: E402
from condense.plugins import plugin_modules  # noqa: E402

import export_plugin  # noqa: E402  (registers Scale and the check, as a user's import would)

FORMAT = "float32-plugin"


@pytest.fixture
def plugin_format():
    fmt = register_format(ExportFormat(FORMAT, "TFLite float32 (plugin check)", "float32 with a user's check",
                                       weights="float32", activations="float32",
                                       checks=("smoke", export_plugin.CHECK)))
    yield fmt
    FORMATS.pop(FORMAT)


def _model(tmp_path, name: str):
    inputs = keras.Input((4,))
    x = export_plugin.Scale(3.0)(keras.layers.Dense(1, kernel_initializer="ones")(inputs))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(x), name=name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return model, path


def test_a_users_format_check_and_layer_run_in_the_conversion_child(plugin_format, tmp_path):
    model, path = _model(tmp_path, "accept")
    out = export_tflite(path, tmp_path / "accept.tflite", FORMAT)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    assert np.allclose(TFLiteModel(out).predict(x), model.predict(x, verbose=0).ravel(), atol=1e-6)
    _, rejected = _model(tmp_path, "reject_me")
    with pytest.raises(ExportError, match="the plugin check refused the model 'reject_me'"):
        export_tflite(rejected, tmp_path / "reject.tflite", FORMAT)
    assert not (tmp_path / "reject.tflite").exists()


def test_the_plugin_list_names_the_users_module_and_where_it_lives():
    entries = {e["module"]: e["path"] for e in plugin_modules()}
    assert "export_plugin" in entries and (entries["export_plugin"] + "/export_plugin.py").endswith(
        "tests/export/export_plugin.py")
    assert not [m for m in entries if m.startswith(("condense", "keras"))]
    with pytest.raises(ValueError, match="plugin module 'no_such_module_xyz' cannot be imported"):
        plugin_modules(["no_such_module_xyz"])


def test_something_registered_in_a_script_is_refused_by_name():
    def from_a_script(file):
        raise AssertionError("never runs")

    from_a_script.__module__ = "__main__"
    register_file_check("from_a_script", from_a_script)
    try:
        with pytest.raises(ValueError, match=r"the file check 'from_a_script' is defined in a script \(__main__\)"):
            plugin_modules(checks={"smoke", "from_a_script"})
        assert all(e["module"] != "__main__" for e in plugin_modules(checks={"smoke"}))  # unused here: no matter
    finally:
        FILE_CHECKS.pop("from_a_script")
    with pytest.raises(ValueError, match="a file check named 'smoke' already exists"):
        register_file_check("smoke", lambda file: None)


def test_a_keras_object_from_a_script_matters_only_to_a_model_that_names_it(tmp_path):
    import zipfile

    class FromAScript(keras.layers.Layer):
        pass

    FromAScript.__module__ = "__main__"
    keras.saving.register_keras_serializable(package="scripttest")(FromAScript)
    uses, plain = tmp_path / "uses.keras", tmp_path / "plain.keras"
    for path, name in ((uses, "scripttest>FromAScript"), (plain, "Dense")):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", '{"config": {"layers": [{"registered_name": "%s"}]}}' % name)
    try:
        assert all(e["module"] != "__main__" for e in plugin_modules(checks=set(), models=[plain]))
        with pytest.raises(ValueError, match=r"the Keras object 'scripttest>FromAScript' is defined in a script"):
            plugin_modules(checks=set(), models=[plain, uses])
    finally:
        keras.saving.get_custom_objects().pop("scripttest>FromAScript")
