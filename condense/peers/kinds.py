"""The peers ``condense train --model NAME``, distillation teachers (``peer:NAME``) and the
benchmark's peer rows can name: one :class:`PeerKind` per peer, added with :func:`register_peer`.

Pure Python: the CLI and :class:`~condense.train.TrainConfig` read it without importing
scikit-learn or LightGBM; a peer's module is imported when one is fitted or loaded.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

from condense.registry import add_entry

__all__ = ["PeerKind", "PEERS", "register_peer", "fit_peer", "peer_of_file"]


@dataclass(frozen=True)
class PeerKind:
    """One peer on hand-made features.

    Attributes:
        name: ``--model NAME``, teacher ``peer:NAME``.
        description: how messages call it ("the logistic regression").
        module, class_name: where its :class:`~condense.peers.base.HandFeaturePeer` subclass lives.
        files: the files it saves in a model directory, the one ``save``/``load`` take first.
    """

    name: str
    description: str
    module: str
    class_name: str
    files: tuple[str, ...]

    def peer_class(self):
        """The peer's class (imports its module)."""
        return getattr(importlib.import_module(self.module), self.class_name)


#: The registered peers by name.
PEERS: dict[str, PeerKind] = {}


def register_peer(kind: PeerKind) -> PeerKind:
    """Add ``kind`` (a new name, files no other peer uses); returns it."""
    if not isinstance(kind, PeerKind):
        raise TypeError(f"register_peer expects a PeerKind, got {type(kind).__name__}")
    taken = {f for other in PEERS.values() if other.name != kind.name for f in other.files} & set(kind.files)
    if not kind.files or taken:
        raise ValueError(f"peer {kind.name!r} needs files of its own, got {kind.files} (taken: {sorted(taken)})")
    return add_entry(PEERS, kind.name, kind, "peer")


def fit_peer(name: str, seed: int, x_train, y_train, x_val, y_val, layout):
    """Fit the peer ``name`` with its training defaults (:meth:`~condense.peers.base.HandFeaturePeer.for_training`);
    returns (peer, seconds). Peers that stop early watch the validation split; the others ignore it."""
    peer = PEERS[name].peer_class().for_training(seed)
    t0 = time.perf_counter()
    peer.fit(x_train, y_train, layout, X_val=x_val, y_val=y_val)
    return peer, time.perf_counter() - t0


def peer_of_file(model_file: str) -> PeerKind | None:
    """The peer whose model directory's model file is ``model_file`` (None: not a peer's)."""
    return next((kind for kind in PEERS.values() if kind.files[0] == model_file), None)


register_peer(PeerKind("lr", "the logistic regression", "condense.peers.logistic", "LogisticRegressionPeer",
                       ("model.lr.json",)))
register_peer(PeerKind("gbm", "the gradient-boosting model", "condense.peers.gbm", "GradientBoostingPeer",
                       ("model.gbm.txt", "model.gbm.json")))
