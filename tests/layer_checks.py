"""The one check every custom condense layer must pass: :func:`check_custom_layer`.

(:func:`check_custom_layers` runs the same checks for several layers with one fresh process.)

Usage in a test::

    from layer_checks import check_custom_layer

    def test_my_layer(tmp_path):
        check_custom_layer(lambda: MyLayer(4), (3, 5, 6), tmp_dir=tmp_path)

It asserts, in order:

1. config: ``get_config()`` holds exactly the constructor arguments (every named ``__init__``
   parameter, plus only the base-layer keywords such as ``name``/``trainable``/``dtype``), and
   ``from_config(get_config())`` (directly and through Keras serialization) gives an equal config;
2. build and call: a call on a random batch builds trainable weights, returns finite values with
   the shapes ``compute_output_shape`` announces, and a symbolic call gives the same shapes;
3. training: one optimizer step of a tiny model around the layer gives a finite loss and changes
   every trainable weight of the layer;
4. saving: the model saved to ``.keras`` reloads in a FRESH Python process with
   ``import condense.layers`` and ``keras.saving.load_model(path, safe_mode=True)`` (no
   ``custom_objects``), and gives the same predictions and the same layer config.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    for module in sys.argv[2:]:
        __import__(module)
    import keras
    for case in json.loads(sys.argv[1]):
        model = keras.saving.load_model(case["model"], safe_mode=True)
        data = np.load(case["io"])
        y = np.asarray(model(data["x"], training=False))
        layer = model.get_layer(case["layer"])
        config = json.dumps(keras.saving.serialize_keras_object(layer.get_config()))
        np.savez(case["out"], y=y, config=config)
    """
)


def _first(outputs):
    import keras

    return keras.tree.flatten(outputs)[0]


def _flat_shapes(outputs):
    import keras

    return [tuple(t.shape) for t in keras.tree.flatten(outputs)]


def _expected_shapes(shape_structure):
    """Flatten the (possibly nested) result of ``compute_output_shape`` into a list of tuples."""
    if isinstance(shape_structure, tuple) and all(d is None or isinstance(d, int) for d in shape_structure):
        return [tuple(shape_structure)]
    if isinstance(shape_structure, dict):
        shape_structure = list(shape_structure.values())
    out = []
    for s in shape_structure:
        out.extend(_expected_shapes(s))
    return out


def _check_config(layer_factory):
    import keras

    layer = layer_factory()
    cls = type(layer)
    config = layer.get_config()

    params = inspect.signature(cls.__init__).parameters
    named = {
        n for n, p in params.items()
        if n != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    base_keywords = set(keras.layers.Layer().get_config())  # name, trainable, dtype, ...
    missing = named - set(config)
    extra = set(config) - named - base_keywords
    assert not missing, f"{cls.__name__}.get_config() lacks constructor arguments {sorted(missing)}"
    assert not extra, f"{cls.__name__}.get_config() has keys that are not constructor arguments: {sorted(extra)}"

    clone = cls.from_config(copy.deepcopy(config))  # some from_config (keras.layers.RNN) mutate it
    assert clone.get_config() == config, f"{cls.__name__}: from_config(get_config()) changed the config"

    serialized = keras.saving.serialize_keras_object(layer)
    json.dumps(serialized)  # must be plain JSON
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(revived) is cls, f"deserialization gave {type(revived).__name__}, not {cls.__name__}"
    assert revived.get_config() == config, f"{cls.__name__}: Keras (de)serialization changed the config"


def _check_build_and_call(layer_factory, input_shape, x):
    import keras

    layer = layer_factory()
    outputs = layer(x)
    assert layer.built, f"{type(layer).__name__} is not built after a call"
    assert layer.trainable_weights, f"{type(layer).__name__} has no trainable weights after a call"
    got = _flat_shapes(outputs)
    expected = _expected_shapes(layer.compute_output_shape(tuple(input_shape)))
    assert got == expected, f"call gave shapes {got}, compute_output_shape says {expected}"
    for t in keras.tree.flatten(outputs):
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(t))), "call returned non-finite values"

    symbolic = layer_factory()(keras.Input(batch_shape=tuple(input_shape)))
    assert _flat_shapes(symbolic) == got, f"symbolic call gave {_flat_shapes(symbolic)}, eager call {got}"


def _tiny_model(layer_factory, input_shape):
    import keras

    inputs = keras.Input(shape=tuple(input_shape[1:]), name="input")
    layer = layer_factory()
    y = _first(layer(inputs))
    if len(y.shape) > 2:
        y = keras.layers.Flatten(name="flatten")(y)
    outputs = keras.layers.Dense(1, name="head")(y)
    return keras.Model(inputs, outputs, name="layer_check"), layer


def _check_training_step(model, layer, x, rng):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse", jit_compile=False)
    before = [np.array(w.numpy()) for w in layer.trainable_weights]
    target = rng.standard_normal((x.shape[0], 1)).astype("float32")
    loss = model.train_on_batch(x, target)
    loss = float(np.asarray(loss).reshape(-1)[0])
    assert np.isfinite(loss), f"training step gave a non-finite loss {loss}"
    unchanged = [
        w.path for w, b in zip(layer.trainable_weights, before) if np.array_equal(np.asarray(w.numpy()), b)
    ]
    assert not unchanged, f"one training step left these weights unchanged: {unchanged}"


def _check_fresh_process_reload(cases, tmp_dir, imports, atol):
    """Save each ``(model, layer, x)`` to .keras, reload all in ONE fresh process, compare."""
    import keras

    tmp_dir = Path(tmp_dir)
    jobs, expected = [], []
    for k, (model, layer, x) in enumerate(cases):
        model_path = tmp_dir / f"layer_check_{k}.keras"
        io_path = tmp_dir / f"layer_check_{k}_io.npz"
        model.save(model_path)
        np.savez(io_path, x=x)
        y = np.asarray(model(x, training=False))
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer.get_config())))
        expected.append((y, config))
        jobs.append({"model": str(model_path), "io": str(io_path), "layer": layer.name,
                     "out": str(tmp_dir / f"layer_check_{k}_reloaded.npz")})

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(jobs), *imports],
        capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_dir),
    )
    assert proc.returncode == 0, (
        f"reloading the saved .keras files in a fresh process failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )
    for job, (y, config) in zip(jobs, expected):
        with np.load(job["out"]) as reloaded:
            y_child = reloaded["y"]
            child_config = json.loads(str(reloaded["config"]))
        np.testing.assert_allclose(
            y_child, y, rtol=0, atol=atol, err_msg=f"{job['model']}: reloaded model predicts differently"
        )
        assert child_config == config, f"{job['model']}: reloaded layer has a different config"


def check_custom_layer(layer_factory, input_shape, *, tmp_dir=None, imports=("condense.layers",), seed=0, atol=1e-6):
    """Assert that a custom Keras layer meets the house rules (see the module docstring).

    Args:
        layer_factory: Zero-argument callable returning a NEW, unbuilt instance of the layer
            (called several times).
        input_shape: Shape of the test batch including the batch dimension, e.g. ``(3, 5, 6)``.
        tmp_dir: Folder for the saved model and the exchange files (a fresh temporary folder
            when ``None``).
        imports: Modules the fresh process imports before loading (they register the layer).
        seed: Seed for the random inputs and weights.
        atol: Tolerance between predictions before and after the reload.

    Returns:
        The trained tiny ``keras.Model`` around the layer.
    """
    return check_custom_layers(
        [(layer_factory, input_shape)], tmp_dir=tmp_dir, imports=imports, seed=seed, atol=atol
    )[0]


def check_custom_layers(cases, *, tmp_dir=None, imports=("condense.layers",), seed=0, atol=1e-6):
    """:func:`check_custom_layer` for several ``(layer_factory, input_shape)`` cases at once.

    Same checks, but all saved models reload in one fresh process (one TensorFlow start-up
    instead of one per case). Returns the trained tiny models, in order.
    """
    import keras

    trained = []
    for factory, input_shape in cases:
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(tuple(input_shape)).astype("float32")
        _check_config(factory)
        _check_build_and_call(factory, input_shape, x)
        model, layer = _tiny_model(factory, input_shape)
        _check_training_step(model, layer, x, rng)
        trained.append((model, layer, x))
    if tmp_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            _check_fresh_process_reload(trained, tmp, imports, atol)
    else:
        _check_fresh_process_reload(trained, tmp_dir, imports, atol)
    return [model for model, _, _ in trained]
