"""Knowledge distillation: a small student trained on its labels mixed with teachers' probabilities.

The student's training target for record ``i`` is

    target_i = alpha * y_i + (1 - alpha) * soften(mean over teachers of p_teacher_i, T)

with ``soften(p, T) = sigmoid(logit(p) / T)`` (``T > 1`` pulls the teachers' probabilities
towards 0.5; exact at 0 and 1). The student's loss is its usual binary cross-entropy against
this soft target — which equals ``alpha * BCE(y, s) + (1 - alpha) * BCE(soft, s)``, since
cross-entropy is linear in its target — so the student model is an ordinary Keras model (no
custom loss in the saved file) and a teacher that outputs the labels gives exactly the plain
loss. Validation AUROC, epoch selection, pruning and export use the real labels and are
unchanged.

**Cross-fitting.** A teacher scoring the records it was fitted on hands the student its
overfit (a gradient-boosting model fits its training records almost perfectly). With
``folds = K`` (the default 5) each teacher is refitted K times from its own configuration, each
time on the training records of K - 1 folds (stratified by label, seeded by the student's
seed), and scores the held-out fold: every training record gets a prediction from a teacher
that never saw it. Early stopping of a refit still watches the validation split. ``folds = 0``
uses the teacher as saved (in-sample predictions; measured in docs/distillation.md).

Teachers are model directories written by ``condense train`` (any model: gbm, lr, a wider
LSTM/hLSTM, several seeds) or a feature peer named ``peer:gbm`` / ``peer:lr``, fitted here on
the student's training split with the student's seed. A directory must have been trained on
the same cohort and split as the student (its data fingerprint is checked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condense.data import Dataset
from condense.data.inputs import ModelInputs, fit_inputs, prepared_splits
from condense.evaluate.metrics import auroc
from condense.peers.kinds import PEERS, fit_peer
from condense.runs.model_dir import load_manifest, load_run
from condense.runs.scoring import SavedModel
from condense.train import TEACHER_PEER_PREFIX as PEER_PREFIX, TrainConfig, fit, predict_proba

# Deferred on purpose: Keras is imported inside the functions that use it, so importing this module stays light.

__all__ = ["PEER_PREFIX", "Teacher", "check_teacher_dirs", "distill_targets", "fold_assignment", "resolve_teachers", "soften", "teacher_probabilities"]


def soften(p: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)``, in log space: exact at 0, 0.5 and 1, and finite for any ``T > 0``
    (a tiny ``T`` gives 0 or 1, where ``p^(1/T) / (p^(1/T) + (1-p)^(1/T))`` underflowed to 0/0)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if temperature == 1.0:
        return p
    with np.errstate(divide="ignore", over="ignore"):
        z = (np.log(p) - np.log1p(-p)) / temperature  # +-inf at 1 and 0
        e = np.exp(-np.abs(z))  # in [0, 1]: no overflow
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def distill_targets(y: np.ndarray, p_teacher: np.ndarray, alpha: float, temperature: float = 1.0) -> np.ndarray:
    """The student's training target: ``alpha * y + (1 - alpha) * soften(p_teacher, T)``, float32."""
    y = np.asarray(y, dtype=np.float64)
    p_teacher = np.asarray(p_teacher, dtype=np.float64)
    if y.shape != p_teacher.shape:
        raise ValueError(f"labels {y.shape} and teacher probabilities {p_teacher.shape} differ in shape")
    if not np.all(np.isfinite(p_teacher)) or p_teacher.min() < 0 or p_teacher.max() > 1:
        raise ValueError("teacher probabilities must be finite and in [0, 1]")
    target = (alpha * y + (1.0 - alpha) * soften(p_teacher, temperature)).astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(target) | (target < 0) | (target > 1)))
    if bad:
        raise ValueError(f"{bad} distillation target(s) are not in [0, 1] (alpha {alpha!r}, temperature {temperature!r})")
    return target


def fold_assignment(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold number of every record: stratified by label, shuffled with ``seed``."""
    y = np.asarray(y)
    rng = np.random.default_rng([int(seed), 0x5EED_F01D])
    fold = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % folds
    return fold


@dataclass
class Teacher:
    """One teacher: how to (re)fit it and the preprocessing it reads.

    ``model_dir`` is None for a peer named on the command line (fitted here); ``inputs`` is the
    directory's saved preprocessing, or None (fitted on the student's training split).
    """

    name: str
    config: TrainConfig
    model_dir: Path | None = None
    inputs: ModelInputs | None = None


def _teacher_manifest(name: str) -> dict:
    """The manifest of teacher directory ``name`` (a clear error when it is none)."""

    if not Path(name).is_dir():
        raise FileNotFoundError(f"teacher {name}: no such model directory (a peer fitted here is named "
                                f"{' or '.join(PEER_PREFIX + p for p in sorted(PEERS))})")
    return load_manifest(name)


def check_teacher_dirs(config: TrainConfig, out_dir=None) -> None:
    """Every teacher directory exists, holds a readable manifest and is not ``out_dir`` (the
    student would replace its teacher): checked before the data is read."""
    for name in config.teachers:
        if not name.startswith(PEER_PREFIX):
            if out_dir is not None and Path(name).resolve() == Path(out_dir).resolve():
                raise ValueError(f"teacher {name} is the output folder (--out {out_dir}): the student would replace "
                                 "its teacher; give another --out")
            _teacher_manifest(name)


def resolve_teachers(config: TrainConfig, dataset: Dataset) -> list[Teacher]:
    """The student's teachers, each checked: a directory whose files do not load or do not match
    its manifest's hashes (whatever the folds: cross-fitting refits from the configuration, but a
    damaged teacher is no teacher), trained on another cohort or split, or distilled (cross-fitting
    would have to refit its own teachers too), is refused."""

    teachers = []
    for name in config.teachers:
        if name.startswith(PEER_PREFIX):  # a known peer: TrainConfig checked the name; one fit per teacher seed
            for k in range(config.teacher_seeds):
                teachers.append(Teacher(name, TrainConfig(model=name[len(PEER_PREFIX):], seed=config.seed + k)))
            continue
        model_dir = Path(name)
        manifest = _teacher_manifest(name)
        recorded = (manifest.get("data") or {}).get("fingerprint")
        if recorded and recorded != dataset.fingerprint:
            raise ValueError(
                f"teacher {model_dir} was trained on another cohort or split (fingerprint {recorded[:12]}…, the "
                f"student's data {dataset.fingerprint[:12]}…): train the teacher on the same data with the "
                f"student's --seed ({config.seed})"
            )
        try:
            teacher_config = TrainConfig.from_json(manifest["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"teacher {model_dir}: its manifest has no usable training configuration ({exc})") from None
        if teacher_config.teachers and config.teacher_folds:
            raise ValueError(f"teacher {model_dir} was itself distilled: cross-fitting it would refit its own "
                             "teachers too; use --teacher-folds 0 or an undistilled teacher")
        _, inputs, _ = load_run(model_dir)  # every file loads and matches its recorded sha256
        if inputs.layout.to_json() != dataset.layout.to_json():
            raise ValueError(f"teacher {model_dir} reads layout {inputs.layout.name!r}, the data is "
                             f"{dataset.layout.name!r}")
        teachers.append(Teacher(str(model_dir), teacher_config, model_dir, inputs))
    return teachers


def _fit_predict(config: TrainConfig, x_fit, y_fit, x_val, y_val, layout, x_out) -> tuple[np.ndarray, bool]:
    """Fit ``config``'s model on (x_fit, y_fit) and score x_out; (probabilities, whether Keras ran)."""

    if config.model in PEERS:
        peer, _ = fit_peer(config.model, config.seed, x_fit, y_fit, x_val, y_val, layout)
        return peer.predict_proba(x_out), False
    result = fit(config, x_fit, y_fit, x_val, y_val, verbose=0)
    return predict_proba(result.model, x_out), True


def _in_sample(teacher: Teacher, x: dict, y: dict, layout) -> tuple[np.ndarray, bool]:
    if teacher.model_dir is None:
        return _fit_predict(teacher.config, x["train"], y["train"], x["val"], y["val"], layout, x["train"])

    return SavedModel(teacher.model_dir).predict_inputs(x["train"]), False


def _teacher_row(teacher: Teacher, y_train: np.ndarray, p: np.ndarray, log, how_text: str) -> dict:
    row = {"teacher": teacher.name, "model": teacher.config.model, "seed": teacher.config.seed,
           "train_auroc": float(auroc(y_train, p))}
    if log is not None:
        log(f"teacher {teacher.name} ({teacher.config.model}, seed {teacher.config.seed}): train AUROC "
            f"{row['train_auroc']:.4f} {how_text}")
    return row


#: Probabilities of ``peer:`` teachers fitted in this process, by :func:`_peer_memo_key`: a tuning run
#: or a benchmark grid distils many students from the same peer on the same data and seed, and a peer's
#: fit is deterministic (same data, seed and folds: the same model), so it is fitted once per process.
_PEER_MEMO: dict[tuple, np.ndarray] = {}
_PEER_MEMO_SIZE = 16


def _peer_memo_key(teacher: Teacher, config: TrainConfig, x: dict, y: dict) -> tuple | None:
    """What a peer teacher's probabilities depend on: the peer, its seed, the folds (drawn with the
    student's seed) and the arrays it is fitted and stopped on (None for a model directory: read from disk)."""
    if teacher.model_dir is not None:
        return None
    digest = hashlib.blake2b(digest_size=16)
    for a in (x["train"], y["train"], x["val"], y["val"]):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.data)
    return (teacher.config.model, teacher.config.seed, config.teacher_folds,
            config.seed if config.teacher_folds else None, digest.hexdigest())


def _remember(key: tuple, p: np.ndarray) -> None:
    if len(_PEER_MEMO) >= _PEER_MEMO_SIZE:
        _PEER_MEMO.pop(next(iter(_PEER_MEMO)))
    _PEER_MEMO[key] = p.copy()
    _PEER_MEMO[key].setflags(write=False)


def teacher_probabilities(config: TrainConfig, dataset: Dataset, *, prepared=None, log=None) -> tuple[np.ndarray, dict]:
    """The mean teacher probability of every training record, and what the manifest records.

    ``prepared``: ``(ModelInputs, arrays)`` the student already made; a peer teacher of the same
    input key reuses them. ``log(message)`` reports each teacher.
    """

    y = {name: dataset.split(name).y for name in ("train", "val")}
    folds = config.teacher_folds
    smaller = int(min(np.unique(y["train"], return_counts=True)[1]))
    if folds > smaller:  # more folds than records of a label: empty folds, or fits that never see that label
        raise ValueError(f"Argument `teacher_folds` must be at most {smaller}, the training records of the rarer "
                         f"label (every fold holds out records of both labels); got teacher_folds={folds}.")
    fold = fold_assignment(y["train"], folds, config.seed) if folds else None
    rows, probabilities, keras_ran = [], {}, False
    for teacher in resolve_teachers(config, dataset):
        inputs = teacher.inputs
        if inputs is None and prepared is not None and prepared[0].key == teacher.config.input_kind:
            inputs, x = prepared
        else:
            inputs = inputs or fit_inputs(dataset, teacher.config.input_kind)
            x = prepared_splits(dataset, inputs)
        how = f"out of fold ({folds} folds)" if folds else "in sample"
        key = _peer_memo_key(teacher, config, x, y)
        p = _PEER_MEMO.get(key) if key is not None else None  # the same peer, seed, folds and data
        if p is not None:
            how += ", fitted earlier in this process"
        elif fold is None:
            p, ran = _in_sample(teacher, x, y, dataset.layout)
            keras_ran |= ran
        else:
            p = np.empty(len(y["train"]), dtype=np.float64)
            for k in range(folds):
                held = fold == k
                p[held], ran = _fit_predict(teacher.config, x["train"][~held], y["train"][~held], x["val"],
                                            y["val"], dataset.layout, x["train"][held])
                keras_ran |= ran
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        if key is not None and key not in _PEER_MEMO:
            _remember(key, p)
        probabilities.setdefault(teacher.name, []).append(p)
        rows.append(_teacher_row(teacher, y["train"], p, log, how))
    if keras_ran:  # the student's layer names restart as if no teacher had been built in this process
        import keras

        keras.backend.clear_session()
    # each named teacher's seeds averaged first, then the named teachers: every name weighs the same
    mean = np.mean([np.mean(ps, axis=0) for ps in probabilities.values()], axis=0)
    info = {"teachers": rows, "alpha": float(config.distill_alpha), "temperature": float(config.distill_temperature),
            "teacher_folds": int(folds), "teacher_seeds": int(config.teacher_seeds), "teacher_train_auroc": float(auroc(y["train"], mean))}
    return mean, info
