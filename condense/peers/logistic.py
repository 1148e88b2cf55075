"""The logistic-regression peer: hand-made summary statistics + L2 logistic regression.

This is the MIMIC-III benchmark's strongest classical baseline for in-hospital mortality
(Harutyunyan et al. 2019: AUROC 0.848, AUPRC 0.474 on the test set), rebuilt on our
discretized ``(N, T, C)`` tensors so it reads the same arrays as the neural models.

Features: :mod:`condense.peers.features` (the benchmark's statistics over seven windows).

The model (:class:`LogisticRegressionPeer`): training-mean imputation, standardization with the
training mean / std, ``sklearn.linear_model.LogisticRegression`` (L2, lbfgs). It is saved as
plain JSON (coefficients, intercept, imputation and scaling vectors, feature names, layout), so
loading never executes code, and predictions after a reload are bit-identical.
"""

from __future__ import annotations

import math

import numpy as np

from condense.data.layout import ChannelLayout
from condense.io import read_json, write_json
from condense.peers.base import HandFeaturePeer
from condense.peers.features import feature_names, hand_features

# Deferred on purpose: scikit-learn is imported inside the functions that use it, so importing this module stays
# light.

__all__ = ["LogisticRegressionPeer"]

_FORMAT = "condense.peers.logistic"
_FORMAT_VERSION = 1
_STD_FLOOR = 1e-7



# --------------------------------------------------------------------------- the peer


class LogisticRegressionPeer(HandFeaturePeer):
    """Logistic regression on :func:`hand_features`, the benchmark's classical baseline.

    Args:
        C: inverse L2 regularization strength of ``sklearn.linear_model.LogisticRegression``
            (the benchmark's tuned value for this task is 0.001; smaller is stronger).
        seed: ``random_state`` of the solver (lbfgs is deterministic; kept for the record).
        max_iter: solver iterations at most.

    Fitted state (trailing underscore): ``layout_``, ``feature_names_``, ``impute_mean_``
    (training mean of each feature over episodes where it is defined), ``scale_mean_`` and
    ``scale_std_`` (of the imputed training features; a std below 1e-7 becomes 1), ``coef_``
    (F,), ``intercept_`` (float), ``n_iter_``.

    Example:
        >>> peer = LogisticRegressionPeer(C=0.001).fit(X_train, y_train, layout)
        >>> p = peer.predict_proba(X_test)            # (N,) probabilities of death
        >>> peer.save("models/lr/model.lr.json"); LogisticRegressionPeer.load(...)
    """

    def __init__(self, C: float = 1.0, seed: int = 0, max_iter: int = 1000):
        if isinstance(C, bool) or not isinstance(C, (int, float, np.floating)) or not (math.isfinite(C) and C > 0):
            raise ValueError(f"C must be a positive finite number, got {C!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive whole number, got {max_iter!r}")
        self.C = float(C)
        self.seed = int(seed)
        self.max_iter = int(max_iter)

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {"C": self.C, "seed": self.seed, "max_iter": self.max_iter}

    fitted_attribute = "coef_"
    file_format, file_format_version = _FORMAT, _FORMAT_VERSION

    @classmethod
    def for_training(cls, seed: int) -> "LogisticRegressionPeer":
        """``C=0.001``: the inverse L2 strength the MIMIC-III benchmark tuned for its LR on this task."""
        return cls(C=0.001, seed=seed)

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, layout: ChannelLayout, *, X_val=None, y_val=None) -> "LogisticRegressionPeer":
        """Learn imputation, scaling and coefficients from training episodes.

        Args:
            X: (N, T, C) training tensor in ``layout``.
            y: (N,) labels, 0 or 1, both classes present.
            layout: the channel layout of ``X`` (saved with the model).

        Returns:
            ``self``.
        """
        from sklearn.linear_model import LogisticRegression

        features = hand_features(X, layout)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != features.shape[0]:
            raise ValueError(f"y must have shape ({features.shape[0]},) to match X, got {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"y must hold only 0/1 labels, got values {np.unique(y)[:5].tolist()}")
        y = y.astype(np.int64)
        if y.min() == y.max():
            raise ValueError(f"y must hold both classes to fit a classifier, got only class {int(y[0])}")

        defined = ~np.isnan(features)
        n_defined = defined.sum(axis=0)
        sums = np.where(defined, features, 0.0).sum(axis=0)
        impute = np.divide(sums, n_defined, out=np.zeros(features.shape[1]), where=n_defined > 0)
        filled = np.where(defined, features, impute)
        mean = filled.mean(axis=0)
        std = filled.std(axis=0)
        std = np.where(std < _STD_FLOOR, 1.0, std)

        model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed, solver="lbfgs")
        model.fit((filled - mean) / std, y)

        self.layout_ = layout
        self.feature_names_ = feature_names(layout)
        self.impute_mean_ = impute
        self.scale_mean_ = mean
        self.scale_std_ = std
        self.coef_ = model.coef_.reshape(-1).astype(np.float64)
        self.intercept_ = float(model.intercept_[0])
        self.n_iter_ = int(np.max(model.n_iter_))
        return self

    # ------------------------------------------------------------------ inference

    def transform(self, X) -> np.ndarray:
        """(N, F) imputed, standardized features of a (N, T, C) tensor (the model's input)."""
        self._check_fitted()
        features = hand_features(X, self.layout_)
        filled = np.where(np.isnan(features), self.impute_mean_, features)
        return (filled - self.scale_mean_) / self.scale_std_

    def decision_function(self, X) -> np.ndarray:
        """(N,) log-odds of the positive class."""
        return self.transform(X) @ self.coef_ + self.intercept_

    @property
    def param_count(self) -> int:
        """Learned parameters: one coefficient per feature plus the intercept."""
        self._check_fitted()
        return int(self.coef_.size) + 1

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict:
        """The fitted state as plain JSON types (floats round-trip exactly)."""
        return {
            **self.saved_header(),
            "impute_mean": self.impute_mean_.tolist(),
            "scale_mean": self.scale_mean_.tolist(),
            "scale_std": self.scale_std_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "n_iter": self.n_iter_,
        }

    @classmethod
    def from_json(cls, obj: dict) -> "LogisticRegressionPeer":
        """Rebuild a fitted peer from :meth:`to_json` output; ValueError when it does not fit."""
        peer, layout, names = cls.from_saved_header(obj, "model")
        try:
            vectors = {
                key: np.asarray(obj[key], dtype=np.float64)
                for key in ("impute_mean", "scale_mean", "scale_std", "coef")
            }
            intercept = float(obj["intercept"])
            n_iter = int(obj.get("n_iter", 0))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{_FORMAT} model is missing or mistypes a field: {exc}") from None
        for key, vector in vectors.items():
            if vector.shape != (len(names),):
                raise ValueError(f"{key} has shape {vector.shape}, expected ({len(names)},)")
            if not np.isfinite(vector).all():
                raise ValueError(f"{key} holds non-finite values")
        if not math.isfinite(intercept):
            raise ValueError(f"intercept must be finite, got {intercept}")
        if (vectors["scale_std"] <= 0).any():
            raise ValueError("scale_std must be positive")
        peer.layout_ = layout
        peer.feature_names_ = names
        peer.impute_mean_ = vectors["impute_mean"]
        peer.scale_mean_ = vectors["scale_mean"]
        peer.scale_std_ = vectors["scale_std"]
        peer.coef_ = vectors["coef"]
        peer.intercept_ = intercept
        peer.n_iter_ = n_iter
        return peer

    def save(self, path) -> None:
        """Write the fitted state as JSON, atomically (no pickle: loading runs no code)."""
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "LogisticRegressionPeer":
        """Read a peer written by :meth:`save`."""
        try:
            obj = read_json(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"no logistic-regression model at {path}") from None
        except ValueError as exc:  # json.JSONDecodeError
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_json(obj)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
