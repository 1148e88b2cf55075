"""Channel pruning: remove whole units from Dense, LSTM and hLSTM layers, physically.

Score every unit (:mod:`~condense.prune.importance`), keep those above a quantile of the scores
(:mod:`~condense.prune.selection`), and rebuild a smaller model holding the kept slices of the
weights (:mod:`~condense.prune.surgery`), following the model's graph
(:mod:`~condense.prune.graph`). What each layer kind owns is its surgeon's business
(:mod:`~condense.prune.surgeons`); :func:`register_surgeon` adds a kind. Design notes, the
quantile rule and how to add a criterion or a layer kind: docs/pruning.md.

Example::

    pruned, report = prune_units(model, quantile=0.5, return_report=True)
    report["units_kept"]    # {"lstm_1": [8, 16], "lstm_2": [8, 16]}
"""

from __future__ import annotations

from condense.prune.graph import PASS_THROUGH, prunable_layers
from condense.prune.importance import (
    CRITERIA,
    Criterion,
    activation_importance,
    check_criterion,
    incoming_weights,
    register_criterion,
    unit_importance,
    weight_criterion,
)
from condense.prune.selection import select_model_units, select_units
from condense.prune.surgeons import (
    Surgeon,
    gate_columns,
    prune_dense_units,
    prune_hlstm_units,
    prune_input_rows,
    prune_lstm_units,
    register_surgeon,
)
from condense.prune.surgery import PruneReport, prune_model, prune_units

__all__ = [
    "CRITERIA",
    "PASS_THROUGH",
    "PruneReport",
    "Criterion",
    "Surgeon",
    "register_surgeon",
    "register_criterion",
    "check_criterion",
    "weight_criterion",
    "activation_importance",
    "incoming_weights",
    "unit_importance",
    "select_units",
    "select_model_units",
    "prunable_layers",
    "gate_columns",
    "prune_dense_units",
    "prune_lstm_units",
    "prune_hlstm_units",
    "prune_input_rows",
    "prune_model",
    "prune_units",
]
