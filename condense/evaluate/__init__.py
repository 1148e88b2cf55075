"""How good, how big, how fast: :mod:`~condense.evaluate.metrics` (AUROC, AUPRC, Brier,
calibration, bootstrap intervals; numpy only) and :mod:`~condense.evaluate.measure` (parameters,
bytes, Keras and LiteRT latency)."""
