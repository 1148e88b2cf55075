"""Peer methods the condensed models are compared against.

* :mod:`condense.peers.logistic` — logistic regression on hand-made summary statistics, the
  MIMIC-III benchmark's classical baseline (:class:`~condense.peers.logistic.LogisticRegressionPeer`,
  saved as plain JSON).
* :mod:`condense.peers.gbm` — LightGBM gradient boosting on the same features
  (:class:`~condense.peers.gbm.GradientBoostingPeer`, saved as LightGBM text + JSON).
* :mod:`condense.peers.tfmot_bridge` — TensorFlow Model Optimization peers, trained in child
  processes on the legacy Keras (see that module).
* :mod:`condense.peers.base` — what the two peers on hand-made features share
  (:class:`~condense.peers.base.HandFeaturePeer`); :mod:`condense.peers.kinds` — their registry
  (``--model lr``, teacher ``peer:gbm``, the files they save; ``register_peer``).

Each peer lives in its own module and is imported from there (``from condense.peers.logistic
import LogisticRegressionPeer``); this package imports nothing on its own, so a peer with heavy
or optional dependencies never slows down or breaks another.
"""
