"""One model end to end, on disk.

* :mod:`~condense.runs.model_dir` — the model directory (``model.keras``, ``preprocessing.json``,
  ``manifest.json``, ``model.<format>.tflite``): save and load.
* :mod:`~condense.runs.workflow` — train / evaluate / export / predict one model (what the CLI
  and the benchmark both call).
* :mod:`~condense.runs.scoring` — score arrays with a saved model in any of its formats.
"""
