"""The gradient-boosting peer: the LR peer's hand-made features + LightGBM.

On real patients (PhysioNet 2012) the condensed models tie a logistic regression; a careful
practitioner would also try gradient-boosted trees on the same features, the strongest tabular
baseline. This module is that peer.

Features: exactly the logistic-regression peer's, :func:`condense.peers.features.hand_features`
(seven statistics over seven windows of every variable's observed bins, static channels'
means; columns named by :func:`condense.peers.features.feature_names`). Trees need neither the
LR's imputation nor its scaling: an undefined statistic stays NaN and LightGBM sends it down
each split's learned "missing" branch (``use_missing``; zeros are values, not missing).

Fitting (:meth:`GradientBoostingPeer.fit`): ``lightgbm.train`` with the binary log-loss
objective, at most ``max_rounds`` boosting rounds, early stopping on the **validation** split's
AUROC (``lgb.early_stopping(early_stopping_rounds)``: stop when it has not improved for that
many rounds; the model keeps the rounds up to the best one, ``best_iteration_``). Small-data
defaults, meant for cohorts of a few thousand stays: learning rate 0.05, 15 leaves per tree,
at least 20 training episodes per leaf, 80 % of the features per tree, bagging 80 % of the
episodes every round, up to 1000 rounds, patience 50.

Determinism: a fixed ``seed`` (LightGBM derives its bagging, feature-fraction and binning seeds
from it), ``deterministic=True``, ``force_row_wise=True`` and ``num_threads=1`` (the benchmark's
jobs run on one thread each): the same data and seed give the same model file, byte for byte.
Prediction also runs on one thread.

Files (:meth:`GradientBoostingPeer.save`): ``model.gbm.txt`` is the booster in LightGBM's own
text format (``Booster.model_to_string``, what ``Booster.save_model`` writes; the trees up to
``best_iteration_`` only), readable by any LightGBM (``lgb.Booster(model_file=...)``); beside it
``model.gbm.json`` (:func:`sidecar_path`) holds what the features need and LightGBM's file
cannot carry: the channel layout, the feature names, the configuration, the best and last
iterations, and the sha256 of the booster text (a mismatched pair is refused). Loading parses
text and JSON only (never pickle, never code); the in-memory booster after :meth:`fit` is
itself parsed from the saved text, so predictions after a reload, in any process, are
bit-identical.

Why LightGBM: its wheel is about 3.5 MB (NumPy and SciPy its only dependencies) against about
131 MB for XGBoost's; it handles missing values natively and is deterministic on one thread.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from condense.data.layout import ChannelLayout
from condense.io import atomic_write, read_json, write_json
from condense.peers.base import HandFeaturePeer
from condense.peers.features import feature_names, hand_features

# Deferred on purpose: LightGBM is imported inside the functions that use it, so importing this module stays light.

__all__ = ["GradientBoostingPeer", "sidecar_path"]

_FORMAT = "condense.peers.gbm"
_FORMAT_VERSION = 1
#: The first line of every LightGBM text model.
_TEXT_HEADER = "tree\n"


def sidecar_path(path) -> Path:
    """The JSON beside a booster file: ``model.gbm.txt`` -> ``model.gbm.json``."""
    return Path(path).with_suffix(".json")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _labels(y, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match its X, got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 labels, got values {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int64)
    if y.size == 0 or y.min() == y.max():
        raise ValueError(f"{name} must hold both classes, got {np.unique(y).tolist()}")
    return y


def _check_whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value, *, closed: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating)) and math.isfinite(value)
    if not ok or not (0 < value < 1 or (closed and value == 1)):
        interval = "(0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


class GradientBoostingPeer(HandFeaturePeer):
    """LightGBM gradient-boosted trees on :func:`~condense.peers.features.hand_features`.

    Args:
        learning_rate: shrinkage per round, in (0, 1). Default 0.05.
        num_leaves: leaves per tree at most (>= 2). Default 15.
        min_child_samples: training episodes per leaf at least (>= 1). Default 20.
        feature_fraction: share of the features drawn for each tree, in (0, 1]. Default 0.8.
        bagging_fraction: share of the training episodes drawn for each round, in (0, 1]
            (1 turns bagging off). Default 0.8, redrawn every round.
        max_rounds: boosting rounds at most (>= 1). Default 1000.
        early_stopping_rounds: stop when the validation AUROC has not improved for this many
            rounds (>= 1). Default 50.
        seed: LightGBM's ``seed`` (bagging, feature fraction, binning). Default 0.

    Fitted state (trailing underscore): ``layout_``, ``feature_names_``, ``booster_`` (a
    ``lightgbm.Booster`` parsed from ``model_text_``), ``model_text_`` (the booster file's
    text), ``best_iteration_`` (1-based; the trees kept), ``iterations_run_`` (rounds trained
    before stopping), ``val_auroc_`` (validation AUROC of the best iteration) and, after
    :meth:`fit` only, ``val_auroc_history_`` (validation AUROC after each round).

    Example:
        >>> peer = GradientBoostingPeer(seed=0).fit(X_train, y_train, layout, X_val=X_val, y_val=y_val)
        >>> p = peer.predict_proba(X_test)            # (N,) probabilities of death
        >>> peer.save("models/gbm/model.gbm.txt"); GradientBoostingPeer.load("models/gbm/model.gbm.txt")
    """

    def __init__(self, learning_rate: float = 0.05, num_leaves: int = 15, min_child_samples: int = 20,
                 feature_fraction: float = 0.8, bagging_fraction: float = 0.8, max_rounds: int = 1000,
                 early_stopping_rounds: int = 50, seed: int = 0):
        self.learning_rate = _check_fraction("learning_rate", learning_rate, closed=False)
        self.num_leaves = _check_whole("num_leaves", num_leaves, 2)
        self.min_child_samples = _check_whole("min_child_samples", min_child_samples, 1)
        self.feature_fraction = _check_fraction("feature_fraction", feature_fraction, closed=True)
        self.bagging_fraction = _check_fraction("bagging_fraction", bagging_fraction, closed=True)
        self.max_rounds = _check_whole("max_rounds", max_rounds, 1)
        self.early_stopping_rounds = _check_whole("early_stopping_rounds", early_stopping_rounds, 1)
        self.seed = _check_whole("seed", seed, 0)

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {
            "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction, "max_rounds": self.max_rounds,
            "early_stopping_rounds": self.early_stopping_rounds, "seed": self.seed,
        }

    fitted_attribute = "booster_"
    file_format, file_format_version = _FORMAT, _FORMAT_VERSION

    def lightgbm_params(self) -> dict:
        """The parameters handed to ``lightgbm.train`` (objective, metric, determinism, threads)."""
        return {
            "objective": "binary", "metric": "auc", "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0, "seed": self.seed,
            "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbosity": -1,
        }

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, layout: ChannelLayout, *, X_val=None, y_val=None) -> "GradientBoostingPeer":
        """Grow trees on the training episodes, stopping early on the validation AUROC.

        Args:
            X: (N, T, C) training tensor in ``layout``.
            y: (N,) labels, 0 or 1, both classes present.
            layout: the channel layout of ``X`` (saved with the model).
            X_val, y_val: the validation split (same layout), both classes present: the
                AUROC that early stopping watches and that picks ``best_iteration_``.

        Returns:
            ``self``.
        """
        import lightgbm as lgb

        if X_val is None or y_val is None:
            raise ValueError("the gradient-boosting peer stops early on a validation split: pass X_val and y_val")
        features = hand_features(X, layout)
        y = _labels(y, features.shape[0], "y")
        val_features = hand_features(X_val, layout)
        y_val = _labels(y_val, val_features.shape[0], "y_val")
        params = self.lightgbm_params()
        train_set = lgb.Dataset(features, label=y, params=params, free_raw_data=True)
        val_set = lgb.Dataset(val_features, label=y_val, reference=train_set, free_raw_data=True)
        history: dict = {}
        booster = lgb.train(
            params, train_set, num_boost_round=self.max_rounds, valid_sets=[val_set], valid_names=["val"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False),
                       lgb.record_evaluation(history)],
        )
        aurocs = [float(a) for a in history["val"]["auc"]]
        best = int(booster.best_iteration) or len(aurocs)
        text = booster.model_to_string(num_iteration=best)
        self._set_state(layout, feature_names(layout), text, best_iteration=best, iterations_run=len(aurocs),
                        val_auroc=aurocs[best - 1])
        self.val_auroc_history_ = aurocs
        return self

    def _set_state(self, layout, names, text: str, *, best_iteration: int, iterations_run: int, val_auroc: float):
        import lightgbm as lgb

        booster = lgb.Booster(model_str=text)
        if booster.num_feature() != len(names):
            raise ValueError(f"the booster reads {booster.num_feature()} features, the layout gives {len(names)}")
        if booster.num_trees() != best_iteration:
            raise ValueError(f"the booster holds {booster.num_trees()} trees, best_iteration is {best_iteration}")
        self.layout_ = layout
        self.feature_names_ = list(names)
        self.model_text_ = text
        self.booster_ = booster
        self.best_iteration_ = int(best_iteration)
        self.iterations_run_ = int(iterations_run)
        self.val_auroc_ = float(val_auroc)

    # ------------------------------------------------------------------ inference

    def transform(self, X) -> np.ndarray:
        """(N, F) hand-made features of a (N, T, C) tensor (NaN where undefined: the model's input)."""
        self._check_fitted()
        return hand_features(X, self.layout_)

    def decision_function(self, X) -> np.ndarray:
        """(N,) log-odds of the positive class (the trees' summed raw score)."""
        features = self.transform(X)  # checks the peer is fitted
        raw = self.booster_.predict(features, raw_score=True, num_threads=1)
        return np.asarray(raw, dtype=np.float64).reshape(-1)

    def predict_proba(self, X) -> np.ndarray:
        """(N,) float64 probability of the positive class (in-hospital death), one thread."""
        features = self.transform(X)  # checks the peer is fitted
        p = self.booster_.predict(features, num_threads=1)
        return np.asarray(p, dtype=np.float64).reshape(-1)

    def training_record(self, seconds: float) -> dict:
        """The boosting rounds are the "epochs": the validation AUROC after each, the one kept."""
        return {**super().training_record(seconds), "val_auroc_history": self.val_auroc_history_,
                "selected_epoch": self.best_iteration_, "stopped_early": self.iterations_run_ < self.max_rounds}

    @property
    def param_count(self) -> int:
        """Tree nodes: every leaf (one value) plus every split (a feature and a threshold), summed
        over the trees kept: ``sum(2 * leaves - 1)``."""
        self._check_fitted()
        if not hasattr(self, "_param_count"):
            trees = self.booster_.dump_model()["tree_info"]
            self._param_count = int(sum(2 * int(t["num_leaves"]) - 1 for t in trees))
        return self._param_count

    # ------------------------------------------------------------------ persistence

    def metadata(self) -> dict:
        """What :func:`sidecar_path` holds: everything but the trees, as plain JSON."""
        return {
            **self.saved_header(),
            "best_iteration": self.best_iteration_,
            "iterations_run": self.iterations_run_,
            "val_auroc": self.val_auroc_,
            "model_sha256": _sha256(self.model_text_),
        }

    def save(self, path) -> list[Path]:
        """Write the booster text to ``path`` and the metadata to :func:`sidecar_path` (atomically
        each; no pickle). Returns the two paths."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".txt":
            raise ValueError(f"a gradient-boosting model file ends in .txt (its metadata goes beside it), got {path}")
        atomic_write(path, self.model_text_)
        write_json(sidecar_path(path), self.metadata())
        return [path, sidecar_path(path)]

    @classmethod
    def load(cls, path) -> "GradientBoostingPeer":
        """Read a peer written by :meth:`save` (LightGBM text + JSON; nothing is executed)."""
        path = Path(path)
        meta_path = sidecar_path(path)
        for p, what in ((path, "gradient-boosting model"), (meta_path, "gradient-boosting metadata")):
            if not p.is_file():
                raise FileNotFoundError(f"no {what} at {p}")
        raw = path.read_bytes()
        if not raw.startswith(_TEXT_HEADER.encode()):
            raise ValueError(f"{path}: not a LightGBM text model (it starts with {raw[:12]!r}, not 'tree')")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a LightGBM text model (not UTF-8 text)") from None
        try:
            meta = read_json(meta_path)
        except ValueError as exc:
            raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
        try:
            return cls._from_parts(text, meta)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def _from_parts(cls, text: str, meta) -> "GradientBoostingPeer":
        peer, layout, names = cls.from_saved_header(meta, "model's metadata")
        try:
            best, run = int(meta["best_iteration"]), int(meta["iterations_run"])
            val_auroc = float(meta["val_auroc"])
            recorded = str(meta["model_sha256"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{_FORMAT} metadata is missing or mistypes a field: {exc}") from None
        if recorded != _sha256(text):
            raise ValueError("the booster file is not the one its metadata was written with (sha256 differs)")
        if not 1 <= best <= run:
            raise ValueError(f"best_iteration {best} is not within the {run} iteration(s) run")
        from lightgbm.basic import LightGBMError

        try:
            peer._set_state(layout, names, text, best_iteration=best, iterations_run=run, val_auroc=val_auroc)
        except LightGBMError as exc:
            raise ValueError(f"LightGBM cannot parse the booster: {' '.join(str(exc).split())[:300]}") from None
        return peer
