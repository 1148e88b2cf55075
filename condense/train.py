"""Training: the paper's protocol, timed, with epoch selection, early stopping and pruning.

The paper's protocol is the default: Adam (learning rate 1e-3), binary cross-entropy, 20 epochs,
batch 8, the model of the LAST epoch. Every epoch's wall time (training only: data preparation
and the validation pass are excluded) and validation AUROC are recorded.

Options a careful practitioner wants on small real data: ``select="best"`` restores the epoch
with the best validation AUROC, ``patience`` stops when validation AUROC has not improved for
that many epochs. With ``prune_quantile`` the schedule is the paper's condensation: train
``prune_after`` epochs, remove the units below the quantile of their importance in every
prunable layer (:mod:`condense.prune`), recompile with a fresh optimizer and train the
remaining epochs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from condense.calibrate import CALIBRATIONS
from condense.checks import check_choice, check_fraction, check_int, check_positive, invalid_argument
from condense.data.gaps import SINCE_LAST
from condense.data.inputs import input_key
from condense.evaluate.measure import param_count
from condense.evaluate.metrics import auroc
from condense.export.recurrent_graphs import masked_steps
from condense.peers.kinds import PEERS

# Deferred on purpose: Keras, TensorFlow and condense.prune are imported inside the functions that use them,
# so importing this module stays light.

#: Which input each Keras model family takes (see :mod:`condense.data.inputs`); the peers on
#: hand-made features (:data:`condense.peers.kinds.PEERS`) read the sequence.
KERAS_INPUT_KIND = {"lstm": "sequence", "hlstm": "sequence", "dnn": "features"}
#: A distillation teacher named ``peer:<model>`` is that peer, fitted with the student (:mod:`condense.distill`).
TEACHER_PEER_PREFIX = "peer:"
SELECT_CHOICES = ("last", "best")


def model_names() -> tuple[str, ...]:
    """What ``--model`` / ``TrainConfig(model=...)`` accepts: the Keras families and every registered peer."""
    return (*KERAS_INPUT_KIND, *PEERS)

#: Early-stopping patience of the ``best`` protocol, measured on PhysioNet 2012 set A
#: (docs/protocol.md): the validation AUROC of the selected epoch against stopping later.
BEST_PATIENCE = 5
#: Training protocols ``condense train --protocol`` names: the model of the best validation epoch
#: with early stopping (the default: safe on small real data), or the paper's (the last of 20 epochs).
PROTOCOLS = {
    "best": {"select": "best", "patience": BEST_PATIENCE},
    "paper": {"select": "last", "patience": None},
}
#: Distillation defaults (:mod:`condense.distill`; chosen on validation, docs/distillation.md).
DEFAULT_ALPHA = 0.2
DEFAULT_TEMPERATURE = 1.0
DEFAULT_FOLDS = 5
PRUNABLE_MODELS = ("lstm", "hlstm", "dnn")
RECURRENT_MODELS = ("lstm", "hlstm")
MAX_SEED = 2**32 - 1  # what numpy's and TensorFlow's seeding accept
PREDICT_BATCH = 256


@dataclass
class TrainConfig:
    """Everything that decides a training run (recorded whole in the manifest)."""

    model: str
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    seed: int = 0
    select: str = "last"
    patience: int | None = None
    hlstm_hidden: str = "gates"
    #: layer widths, first to last (None: the family's default, the paper's: lstm (16, 16), hlstm (16,),
    #: dnn (256, 128, 64)); an hLSTM has one layer, so one width
    units: tuple[int, ...] | None = None
    #: rate of the Dropout layer before the output (None: the family's default, 0.3, or 0.5 for the dnn)
    dropout: float | None = None
    prune_quantile: float | None = None
    prune_after: int = 1
    prune_criterion: str = "mean_abs"
    #: append the hours since each variable was last observed to a recurrent model's input
    #: (:mod:`condense.data.gaps`)
    time_since_last: bool = False
    #: knowledge distillation (:mod:`condense.distill`): teacher model directories, or peers
    #: fitted here on the same data (``"peer:gbm"``, ``"peer:lr"``); the student learns from
    #: ``alpha * label + (1 - alpha) * teachers' mean probability`` (softened by ``temperature``)
    teachers: tuple[str, ...] = ()
    distill_alpha: float = DEFAULT_ALPHA
    distill_temperature: float = DEFAULT_TEMPERATURE
    #: out-of-fold teacher predictions on the training split from this many folds (0: the
    #: teachers score the records they were fitted on)
    teacher_folds: int = DEFAULT_FOLDS
    #: every ``peer:`` teacher is fitted with this many seeds (the student's seed, +1, ...) and averaged:
    #: a seed ensemble of the peer (LightGBM's bagging and feature sampling differ by seed)
    teacher_seeds: int = 1
    #: ``"platt"``: a logistic recalibration of the final logit, fitted on the validation split and
    #: folded into the output layer (:mod:`condense.calibrate`); ``"none"``: the model as trained
    calibrate: str = "none"

    def __post_init__(self):
        """Check every field now, not after an epoch: a ``ValueError`` naming the argument."""
        check_choice("model", self.model, model_names())
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_positive("learning_rate", self.learning_rate)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_choice("select", self.select, SELECT_CHOICES)
        if self.patience is not None:
            check_int("patience", self.patience, 1)
        check_int("prune_after", self.prune_after, 1)
        self._check_shape()
        self._check_distillation()
        if not isinstance(self.time_since_last, bool):
            raise invalid_argument("time_since_last", "True or False", self.time_since_last)
        if self.time_since_last and self.model not in RECURRENT_MODELS:
            raise ValueError(f"Argument `time_since_last` applies to models {RECURRENT_MODELS}, not to "
                             f"model={self.model!r}; got time_since_last=True.")
        check_choice("calibrate", self.calibrate, CALIBRATIONS)
        if self.model in PRUNABLE_MODELS:
            self._check_keras_model()
        else:
            self._check_not_pruned()

    def _check_shape(self) -> None:
        """``units`` and ``dropout`` values (Keras models only: :meth:`_check_not_pruned`); an hLSTM has one layer."""
        if self.units is not None:
            units = self.units
            if isinstance(units, (str, bytes)) or not hasattr(units, "__len__") or not units or not all(
                    isinstance(u, (int, np.integer)) and not isinstance(u, bool) and u >= 1 for u in units):
                raise invalid_argument("units", "a non-empty sequence of positive integers (layer widths)", units)
            self.units = tuple(int(u) for u in units)
            if self.model == "hlstm" and len(self.units) != 1:
                raise invalid_argument("units", "one width for an hlstm (it has one recurrent layer)", list(units))
        if self.dropout is not None and not (isinstance(self.dropout, (int, float))
                                             and not isinstance(self.dropout, bool) and 0.0 <= self.dropout < 1.0):
            raise invalid_argument("dropout", "a rate in [0, 1)", self.dropout)

    def _check_distillation(self) -> None:
        if isinstance(self.teachers, str) or not all(isinstance(t, str) and t for t in self.teachers):
            raise invalid_argument("teachers", "a sequence of model directories or peer names", self.teachers)
        self.teachers = tuple(self.teachers)
        for name in self.teachers:  # peers by name are known here; directories are read by condense.distill
            if name.startswith(TEACHER_PEER_PREFIX) and name[len(TEACHER_PEER_PREFIX):] not in PEERS:
                known = ", ".join(TEACHER_PEER_PREFIX + p for p in sorted(PEERS))
                raise invalid_argument("teachers", f"model directories or one of {known}", list(self.teachers))
        if not (isinstance(self.distill_alpha, (int, float)) and not isinstance(self.distill_alpha, bool)
                and 0.0 <= self.distill_alpha <= 1.0):
            raise invalid_argument("distill_alpha", "a number in [0, 1]", self.distill_alpha)
        if self.teachers and self.distill_alpha == 1.0:
            raise invalid_argument("distill_alpha", "< 1 with teachers (1 trains on the labels alone and ignores "
                                   "them; leave out the teachers to train without distillation)", self.distill_alpha)
        check_positive("distill_temperature", self.distill_temperature)
        if self.teacher_folds != 0:
            check_int("teacher_folds", self.teacher_folds, 2)
        check_int("teacher_seeds", self.teacher_seeds, 1)
        if self.teachers and self.model not in PRUNABLE_MODELS:
            raise ValueError(f"Argument `teachers` applies to the Keras models {PRUNABLE_MODELS} (students), not "
                             f"to model={self.model!r}; got teachers={list(self.teachers)!r}.")

    def _check_not_pruned(self) -> None:
        for name, default in (("prune_quantile", None), ("prune_criterion", "mean_abs"), ("calibrate", "none"),
                              ("units", None), ("dropout", None)):
            value = getattr(self, name)
            if value != default:
                raise ValueError(
                    f"Argument `{name}` applies to models {PRUNABLE_MODELS}, not to model={self.model!r}; "
                    f"got {name}={value!r}."
                )

    def _check_keras_model(self) -> None:
        if self.prune_quantile is not None:
            check_fraction("prune_quantile", self.prune_quantile)
            if self.prune_after >= self.epochs:
                raise invalid_argument(
                    "prune_after", f"an integer in [1, epochs - 1] = [1, {self.epochs - 1}]", self.prune_after
                )
        # Last, as they import Keras: the criterion registry and the hLSTM's forms live with it.
        from condense.layers.hlstm import HIDDEN_FORMS
        from condense.prune.importance import check_criterion

        check_choice("hlstm_hidden", self.hlstm_hidden, HIDDEN_FORMS)
        check_criterion(self.prune_criterion, "prune_criterion")

    @property
    def input_kind(self) -> str:
        """The input key the model reads (:func:`condense.data.inputs.input_key`): its family's
        kind, with ``+since_last`` when :attr:`time_since_last`."""
        kind = KERAS_INPUT_KIND.get(self.model, "sequence")  # a peer reads the sequence
        return input_key(kind, (SINCE_LAST,) if self.time_since_last else ())

    @property
    def distilled(self) -> bool:
        return bool(self.teachers)

    @property
    def protocol(self) -> str:
        """``"best"`` or ``"paper"`` when the epoch selection is one of :data:`PROTOCOLS`, else ``"custom"``."""
        for name, settings in PROTOCOLS.items():
            if self.select == settings["select"] and self.patience == settings["patience"]:
                return name
        return "custom"

    def to_json(self) -> dict:
        return {**asdict(self), "teachers": list(self.teachers), "units": None if self.units is None else list(self.units),
                "protocol": self.protocol}

    @classmethod
    def from_json(cls, record: dict) -> "TrainConfig":
        """The configuration :meth:`to_json` wrote (derived keys dropped; fields added since default)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in record.items() if k in names}
        for name in ("teachers", "units"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass
class TrainResult:
    """A trained model and how it got there (1-based epoch numbers)."""

    model: object
    epoch_seconds: list[float]
    val_auroc: list[float]
    train_loss: list[float]
    selected_epoch: int
    stopped_early: bool = False
    prune: dict | None = None
    params_history: list[int] = field(default_factory=list)
    #: what fit() did with the model's ``Masking`` layer (:func:`masking_plan`)
    masking: dict | None = None

    @property
    def train_seconds(self) -> float:
        return float(sum(self.epoch_seconds))


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and turn on TensorFlow op determinism."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def set_tf_threads(intra_op: int) -> dict:
    """Fix TensorFlow's thread pools (intra-op ``intra_op``, inter-op 1) before its runtime starts.

    The pools are process-wide and fixed once TensorFlow has run an op; a later call changes
    nothing. Returns the setting in force: ``{"intra_op": n, "inter_op": n, "applied": bool}``
    (``applied`` False when the runtime had started with other values; 0 means one per core).
    The number of threads changes how float sums are split, so a training run reproduces only
    with the same setting (see docs/reproducibility.md).
    """
    import tensorflow as tf

    check_int("intra_op", intra_op, 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is initialized: the pools keep what they started with
        pass
    intra = int(tf.config.threading.get_intra_op_parallelism_threads())
    inter = int(tf.config.threading.get_inter_op_parallelism_threads())
    return {"intra_op": intra, "inter_op": inter, "applied": intra == intra_op and inter == 1}


def predict_proba(model, x: np.ndarray) -> np.ndarray:
    """Probabilities (N,) float64 from a Keras model, in a fixed batch size (reproducible)."""
    p = model.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    return np.asarray(p, dtype=np.float64).reshape(-1)


def build_model(config: TrainConfig, input_shape: tuple[int, ...]):
    """The model ``config.model`` describes, sized from the data's ``input_shape``."""
    from condense import models

    kwargs = {"timesteps": input_shape[0]} if config.input_kind.startswith("sequence") else {}
    if config.model == "hlstm":
        kwargs["hidden"] = config.hlstm_hidden
    if config.units is not None:
        kwargs["units"] = config.units[0] if config.model == "hlstm" else config.units
    if config.dropout is not None:
        kwargs["dropout"] = config.dropout
    return models.build_model(config.model, input_shape[-1], **kwargs)


def compile_model(model, learning_rate: float) -> None:
    """Compile with a fresh Adam optimizer and binary cross-entropy (the paper's setting)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="binary_crossentropy")


def masking_plan(model, *arrays) -> dict:
    """Whether :func:`fit` may run the model without its ``Masking`` computation.

    ``Masking`` makes every recurrent step select between the new and the old state with the mask;
    when no time step of the inputs is all mask values, it selects the new one everywhere: the same
    weights, bit for bit, at a fraction of the epoch time (Keras has no fused LSTM on CPU and the
    selects run in Eigen, forward and backward). ``{"skipped": bool, "reason": str}``; the saved
    model keeps its ``Masking`` layer either way.
    """
    import keras

    if any(np.ndim(x) != 3 for x in arrays):
        return {"skipped": False, "reason": "no time axis"}
    masking = [layer for layer in model.layers if isinstance(layer, keras.layers.Masking)]
    if not masking:
        return {"skipped": False, "reason": "the model has no Masking layer"}
    if len(masking) > 1:
        return {"skipped": False, "reason": "the model has several Masking layers"}
    mask_value = float(masking[0].mask_value)
    for name, x in zip(("training", "validation"), arrays):
        samples, steps = masked_steps(x, mask_value)
        if steps:
            return {"skipped": False, "reason": f"{samples} {name} sample(s) have {steps} time step(s) of mask values "
                                                f"{mask_value:g}: Masking is needed"}
    return {"skipped": True, "reason": "no training or validation time step is all mask values: Masking masks "
                                       "nothing, so the model trains without it (the same weights, faster)"}


def _without_masking(model, probe: np.ndarray):
    """The model's layers (the same objects: shared weights) called in order without ``Masking``, or
    None when the model is not such a chain or the twin does not give the model's outputs on ``probe``."""
    import keras

    inputs = keras.Input(shape=model.input_shape[1:], batch_size=model.input_shape[0])
    try:
        x = inputs
        for layer in model.layers:
            if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Masking)):
                x = layer(x)
        twin = keras.Model(inputs, x, name=f"{model.name}_unmasked")
    except (ValueError, TypeError):  # not a single chain of layers
        return None
    same = np.array_equal(np.asarray(twin(probe, training=False)), np.asarray(model(probe, training=False)))
    return twin if same else None


def model_to_train(model, plan: dict, probe: np.ndarray):
    """What fit() runs: the model, or its unmasked twin when :func:`masking_plan` allows it."""
    if not plan["skipped"]:
        return model
    twin = _without_masking(model, probe)
    if twin is None:
        plan.update(skipped=False, reason="the model is not a chain of layers whose twin without Masking gives "
                                          "its outputs: Masking kept")
        return model
    return twin


def _epoch_tracker(x_val, y_val, patience, on_epoch):
    """A Keras callback timing each epoch and scoring validation AUROC after the clock stops."""
    import keras

    class EpochTracker(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_seconds: list[float] = []
            self.val_auroc: list[float] = []
            self.train_loss: list[float] = []
            self.best = (-np.inf, 0, None)  # (auroc, epoch, weights)
            self.stopped_early = False
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_seconds.append(time.perf_counter() - self._t0)
            self.train_loss.append(float((logs or {}).get("loss", np.nan)))
            score = auroc(y_val, predict_proba(self.model, x_val))
            self.val_auroc.append(float(score))
            if score > self.best[0]:
                self.best = (score, epoch + 1, [w.copy() for w in self.model.get_weights()])
            if on_epoch is not None:
                on_epoch(epoch + 1, self.epoch_seconds[-1], self.train_loss[-1], score)
            if patience is not None and epoch + 1 - self.best[1] >= patience:
                self.stopped_early = True
                self.model.stop_training = True

        def reset_best(self):
            self.best = (-np.inf, 0, None)

    return EpochTracker()


def fit(
    config: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    verbose: int = 1,
    on_epoch=None,
    model=None,
) -> TrainResult:
    """Train a Keras model of ``config.model`` on preprocessed arrays.

    Args:
        config: the run's :class:`TrainConfig` (``model`` must not be a peer, :data:`condense.peers.kinds.PEERS`).
        x_train, y_train, x_val, y_val: model inputs and 0/1 labels (``y_train`` may hold soft
            targets in [0, 1]: a distilled student's, :mod:`condense.distill`).
        verbose: Keras progress output (1 bar, 2 one line per epoch, 0 silent).
        on_epoch: optional ``f(epoch, seconds, loss, val_auroc)`` called after each epoch.
        model: an already built (e.g. user-supplied) model to train instead of a new one.
    """
    if config.model in PEERS:
        raise ValueError(f"fit() trains Keras models; {PEERS[config.model].description} is fitted by "
                         "condense.peers.kinds.fit_peer")
    set_determinism(config.seed)
    if model is None:
        model = build_model(config, x_train.shape[1:])

    masking = masking_plan(model, x_train, x_val)
    probe = np.asarray(x_train[:8], np.float32)
    trainer = model_to_train(model, masking, probe)
    compile_model(trainer, config.learning_rate)
    tracker = _epoch_tracker(x_val, y_val.astype(np.int64), config.patience, on_epoch)
    fit_kwargs = dict(batch_size=config.batch_size, verbose=verbose, callbacks=[tracker], shuffle=True)
    y_train = y_train.astype(np.float32)
    params_history = [param_count(model)]
    prune_info = None

    first_stop = config.prune_after if config.prune_quantile is not None else config.epochs
    trainer.fit(x_train, y_train, epochs=first_stop, **fit_kwargs)

    if config.prune_quantile is not None and not tracker.stopped_early:
        from condense.prune import prune_units

        before = param_count(model)
        pruned, report = prune_units(
            model,
            quantile=config.prune_quantile,
            criterion=config.prune_criterion,
            calibration_x=x_train[: min(len(x_train), 256)],
            return_report=True,
        )
        model = pruned
        trainer = model_to_train(model, masking, probe)
        compile_model(trainer, config.learning_rate)
        tracker.reset_best()  # "best" is chosen among epochs of the final (pruned) architecture
        prune_info = {
            "quantile": config.prune_quantile,
            "criterion": config.prune_criterion,
            "after_epoch": config.prune_after,
            "params_before": before,
            "params_after": param_count(model),
            "units_kept": report["units_kept"],
        }
        params_history.append(param_count(model))
        trainer.fit(x_train, y_train, initial_epoch=first_stop, epochs=config.epochs, **fit_kwargs)

    if trainer is not model:  # the saved model carries the optimizer that trained its weights
        model.compile(optimizer=trainer.optimizer, loss="binary_crossentropy")
    selected = len(tracker.epoch_seconds)
    if config.select == "best" and tracker.best[2] is not None:
        model.set_weights(tracker.best[2])
        selected = tracker.best[1]
    return TrainResult(
        model=model,
        epoch_seconds=[float(s) for s in tracker.epoch_seconds],
        val_auroc=tracker.val_auroc,
        train_loss=tracker.train_loss,
        selected_epoch=int(selected),
        stopped_early=tracker.stopped_early,
        prune=prune_info,
        params_history=params_history,
        masking=masking,
    )

