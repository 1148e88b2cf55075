"""The documented recipe: the small student ``condense tune`` chose on validation (docs/tuning.md).

:data:`RECIPE` is one setting of :data:`condense.tune.TUNABLE` (widths, pruning, dropout, batch,
learning rate, distillation); :func:`train_settings` turns a setting into the ``TrainConfig`` fields
that train it. The benchmark's ``hlstm-recipe`` row trains it, ``condense tune`` starts every
search from it (trial ``t000``), and README's command is :func:`condense.tune.train_command` of it.
"""

from __future__ import annotations

#: Settings a search may vary, the distillation ones applying when the student has teachers.
DISTILL_SETTINGS = ("distill_alpha", "distill_temperature", "teacher_seeds")
#: The teacher of the recipe: gradient boosting, refitted on folds of the training split.
RECIPE_TEACHERS = ("peer:gbm",)

#: The recipe before ``condense tune`` (2026-12-06): hLSTM 16 pruned at q=0.5 after epoch 1, distilled
#: from gradient boosting with alpha 0.2 (docs/distillation.md); the benchmark row ``hlstm-prune50-distill``.
DISTILLED_PRUNED = {"units": 16, "prune_quantile": 0.5, "dropout": 0.3, "batch_size": 8, "learning_rate": 1e-3,
                    "distill_alpha": 0.2, "distill_temperature": 1.0, "teacher_seeds": 1, "time_since_last": False}

#: The recipe: what ``condense tune`` chose on PhysioNet set A's validation split (docs/tuning.md: trial
#: t016 of 24, 3 seeds, validation AUROC 0.8815 against 0.8752 for the recipe before): the same student
#: (16 units pruned to 8, 3,177 parameters on PhysioNet), trained faster (batch 16, learning rate 0.004)
#: on more of the teacher (alpha 0.5).
RECIPE = {**DISTILLED_PRUNED, "batch_size": 16, "learning_rate": 4e-3, "distill_alpha": 0.5}


def train_settings(setting: dict, *, model: str = "hlstm", teachers: tuple[str, ...] = RECIPE_TEACHERS) -> dict:
    """The ``TrainConfig`` fields (model, widths, pruning, optimisation, distillation) of ``setting``."""
    width = int(setting["units"])
    train = {"model": model, "units": (width,) if model == "hlstm" else (width, width),
             "prune_quantile": setting["prune_quantile"], "dropout": setting["dropout"],
             "batch_size": setting["batch_size"], "learning_rate": setting["learning_rate"],
             "time_since_last": setting["time_since_last"]}
    if teachers:
        train.update(teachers=tuple(teachers), **{k: setting[k] for k in DISTILL_SETTINGS})
    return train
