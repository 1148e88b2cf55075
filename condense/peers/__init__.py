"""Peer methods the condensed models are compared against.

* :mod:`condense.peers.logistic` — logistic regression on hand-made summary statistics, the
  MIMIC-III benchmark's classical baseline (:class:`~condense.peers.logistic.LogisticRegressionPeer`,
  saved as plain JSON).
* :mod:`condense.peers.gbm` — LightGBM gradient boosting on the same features
  (:class:`~condense.peers.gbm.GradientBoostingPeer`, saved as LightGBM text + JSON).
* :mod:`condense.peers.tfmot_bridge` — TensorFlow Model Optimization peers, trained in child
  processes on the legacy Keras (see that module).

Each peer lives in its own module and is imported from there (``from condense.peers.logistic
import LogisticRegressionPeer``); this package imports nothing on its own, so a peer with heavy
or optional dependencies never slows down or breaks another.
"""
