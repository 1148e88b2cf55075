"""The benchmark's rows, as data: :func:`plan_rows` lists every row of a profile.

A row is a :class:`RowSpec`: what to make (train a model, convert a trained row's file in an
export format, run a tfmot peer, fit a peer on hand-made features, read a reference score) and what
its AUROC is compared with. Adding a row of an existing kind is one line here; the converted
rows come from the export format registry (:attr:`condense.export.formats.ExportFormat.bench_sources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from condense.bench.profiles import Profile
from condense.bench.table import CONDENSATIONS
from condense.export.formats import FORMATS
from condense.recipe import RECIPE, train_settings

RECURRENT = ("lstm", "hlstm")
#: Formats of the step-file rows ``{row}-step`` (float32) and ``{row}-int8-step`` of every recurrent row.
STEP_FORMATS = ("float32", "int8")
#: The row whose LiteRT latency every file's latency ratio refers to (the baseline LSTM's float32 file).
LATENCY_REFERENCE = "lstm"
#: Every model row also gets paired AUROC differences against these peers: {row: column prefix}
#: (the logistic regression, and gradient boosting, the strongest tabular peer).
PAIRED_REFERENCES = {"lr": "auroc_diff_lr", "gbm": "auroc_diff_gbm"}
#: The teacher of the distilled row (:mod:`condense.distill`): the gradient-boosting peer, refitted
#: on folds of the training split inside the job, so that the job needs no other row.
DISTILL_TEACHER = "peer:gbm"


@dataclass(frozen=True)
class RowSpec:
    """One row of the table.

    ``kind`` is ``"train"`` (a Keras model trained here), ``"convert"`` (a ``.tflite`` made from
    the trained row ``source``), ``"tfmot"`` (a TensorFlow Model Optimization Toolkit peer),
    ``"peer"`` (a peer on hand-made features, ``train["model"]`` one of
    :data:`condense.peers.kinds.PEERS`: the logistic regression, gradient boosting) or
    ``"score"`` (a reference risk score shipped with the data,
    e.g. PhysioNet's SAPS-I; ``train["score"]`` names the ``Dataset.extras`` column), or ``"trial"``
    (a ``condense tune`` setting, scored on validation only; never a table row).
    ``baseline`` names the row AUROC differences refer to.
    """

    row: str
    model: str
    method: str
    kind: str
    family: str
    baseline: str | None = None
    train: dict = field(default_factory=dict)
    source: str | None = None
    fmt: str | None = None
    route: str = "auto"  # the export route of a "convert" row (condense.export.convert.ROUTES)
    form: str = "sequence"  # a "convert" row's file: the whole sequence, or one step (condense.export.step_graph)
    weight: float = 1.0  # relative cost, for the time-left estimate
    #: What made the row (:data:`condense.bench.table.CONDENSATIONS`); derived from the fields when empty.
    condensation: str = ""

    def __post_init__(self) -> None:
        if not self.condensation:
            object.__setattr__(self, "condensation", self._derived_condensation())
        if self.condensation not in CONDENSATIONS:
            raise ValueError(f"row {self.row!r}: condensation must be one of {CONDENSATIONS}, got {self.condensation!r}")

    def _derived_condensation(self) -> str:
        if self.kind == "score":
            return "reference"
        if self.kind in ("peer", "tfmot"):
            return "peer"
        if self.kind == "convert":
            return "step" if self.form == "step" else "quantization"
        if self.train.get("teachers"):
            return "distillation"
        if self.family == "hlstm":
            return "hlstm"
        return "pruning" if self.train.get("prune_quantile") else "baseline"


def recipe_text(setting: dict) -> str:
    """``16 units, q=0.5, dropout 0.3, batch 8, lr 0.001, alpha 0.2 from GBM``: a recipe in a few words."""
    text = f"{setting['units']} units"
    if setting["prune_quantile"]:
        text += f", q={setting['prune_quantile']:g}"
    text += f", dropout {setting['dropout']:g}, batch {setting['batch_size']}, lr {setting['learning_rate']:g}"
    if setting["time_since_last"]:
        text += ", + hours since last"
    teachers = f"GBM x {setting['teacher_seeds']} seeds" if setting["teacher_seeds"] > 1 else "GBM"
    text += f", alpha {setting['distill_alpha']:g}"
    if setting["distill_temperature"] != 1:
        text += f", T {setting['distill_temperature']:g}"
    return text + f" from {teachers}"


def _q(q: float) -> str:
    return f"{round(q * 100):d}"


def plan_rows(profile: Profile, reference_scores: dict[str, str] | None = None) -> list[RowSpec]:
    """The rows of a profile, in table order (baselines first, then condensed, then peers).

    ``reference_scores`` ({extras column: display name}, from ``Dataset.extras``) adds one
    reference row per score at the end; they train nothing and are only scored on the test set.
    """
    rows: list[RowSpec] = [RowSpec("lstm", "LSTM", "baseline (2 x LSTM 16)", "train", "lstm", None, {"model": "lstm"})]
    for q in profile.lstm_quantiles:
        rows.append(RowSpec(f"lstm-prune{_q(q)}", "LSTM", f"channel pruning q={q:g} after epoch {profile.prune_after}",
                            "train", "lstm", "lstm", {"model": "lstm", "prune_quantile": q}))
    rows.append(RowSpec("hlstm", "hLSTM", "hLSTM, hidden layer in the gates", "train", "hlstm", "lstm",
                        {"model": "hlstm", "hlstm_hidden": "gates"}, weight=0.7))
    rows.append(RowSpec("hlstm-input", "hLSTM", "hLSTM, hidden layer on the input path", "train", "hlstm", "lstm",
                        {"model": "hlstm", "hlstm_hidden": "input"}, weight=0.7))
    for q in profile.hlstm_quantiles:
        rows.append(RowSpec(f"hlstm-prune{_q(q)}", "hLSTM", f"hLSTM + channel pruning q={q:g}", "train", "hlstm", "lstm",
                            {"model": "hlstm", "hlstm_hidden": "gates", "prune_quantile": q}, weight=0.7))
    if profile.peers and profile.hlstm_quantiles:  # the teacher is the gradient-boosting peer, cross-fitted in the job
        q = max(profile.hlstm_quantiles)
        rows.append(RowSpec(f"hlstm-prune{_q(q)}-distill", "hLSTM",
                            f"hLSTM + channel pruning q={q:g}, distilled from gradient boosting", "train", "hlstm",
                            f"hlstm-prune{_q(q)}", {"model": "hlstm", "hlstm_hidden": "gates", "prune_quantile": q,
                                                    "teachers": (DISTILL_TEACHER,)}, weight=0.8))
    if profile.peers and profile.hlstm_quantiles:  # the documented recipe (condense tune, docs/tuning.md)
        rows.append(RowSpec("hlstm-recipe", "hLSTM", f"hLSTM recipe ({recipe_text(RECIPE)})", "train", "hlstm",
                            f"hlstm-prune{_q(max(profile.hlstm_quantiles))}-distill",
                            train_settings(RECIPE), weight=0.8))
    rows.append(RowSpec("dnn", "DNN", "baseline (256-128-64)", "train", "dnn", None, {"model": "dnn"}, weight=0.2))
    for q in profile.dnn_quantiles:
        rows.append(RowSpec(f"dnn-prune{_q(q)}", "DNN", f"channel pruning q={q:g} after epoch {profile.prune_after}",
                            "train", "dnn", "dnn", {"model": "dnn", "prune_quantile": q}, weight=0.2))
    trained = [r for r in rows if r.kind == "train"]
    sources = {"dnn": [r for r in trained if r.family == "dnn" and r.row == "dnn"],
               "recurrent": [r for r in trained if r.family in RECURRENT]}
    for fmt in FORMATS.values():  # one converted row per trained source the format asks for
        for src in [r for group in fmt.bench_sources for r in sources[group]]:
            rows.append(RowSpec(f"{src.row}-{fmt.name}", src.model, f"{src.method} -> {fmt.label}", "convert",
                                src.family, src.row, source=src.row, fmt=fmt.name, weight=0.1))
    for fmt in STEP_FORMATS:  # one step per call, the state as inputs and outputs (docs/streaming.md)
        label = "float32" if fmt == "float32" else FORMATS[fmt].label
        for src in sources["recurrent"]:
            name = f"{src.row}-step" if fmt == "float32" else f"{src.row}-{fmt}-step"
            rows.append(RowSpec(name, src.model, f"{src.method} -> {label}, one step per call", "convert",
                                src.family, src.row, source=src.row, fmt=fmt, form="step", weight=0.1))
    if profile.peers:
        rows.append(RowSpec("dnn-dynamic", "DNN", "peer: TFLite dynamic-range quantization", "convert",
                            "dnn", "dnn", source="dnn", fmt="dynamic", weight=0.1, condensation="peer"))
        rows.append(RowSpec("lstm-keras3", "LSTM", "peer: Keras 3 default conversion (WHILE loop + Masking), float32",
                            "convert", "lstm", "lstm", source="lstm", fmt="float32", route="while", weight=0.1, condensation="peer"))
        rows.append(RowSpec("lstm-keras3-int8", "LSTM", "peer: Keras 3 default conversion (unrolled + Masking), int8",
                            "convert", "lstm", "lstm", source="lstm", fmt="int8", route="unrolled", weight=0.1, condensation="peer"))
        rows.append(RowSpec("tfmot-prune-dnn", "DNN", "peer: tfmot magnitude pruning 50 % sparsity", "tfmot", "dnn", "dnn",
                            train={"peer": "prune_dnn"}, weight=0.4))
        rows.append(RowSpec("tfmot-prune-lstm", "LSTM", "peer: tfmot magnitude pruning 50 % sparsity", "tfmot", "lstm", "lstm",
                            train={"peer": "prune_lstm"}, weight=1.2))
        rows.append(RowSpec("tfmot-qat-dnn", "DNN", "peer: tfmot quantization-aware training, int8", "tfmot", "dnn", "dnn",
                            train={"peer": "qat_dnn"}, weight=0.4))
        rows.append(RowSpec("lr", "LR", "peer: logistic regression on hand-made features", "peer", "lr", "lstm",
                            {"model": "lr"}, weight=0.05))
        rows.append(RowSpec("gbm", "GBM", "peer: gradient boosting (LightGBM) on hand-made features", "peer", "gbm",
                            "lstm", {"model": "gbm"}, weight=0.1))
    for column, name in (reference_scores or {}).items():
        rows.append(RowSpec(name.lower(), name, f"reference: {name} score from the data (records that have one)",
                            "score", "score", None, {"score": column}, weight=0.01))
    return rows
