"""Benchmark profiles: how big a run ``condense bench --profile NAME`` is.

* ``smoke`` — a tiny cohort and 2 epochs with every row present; minutes; CI compares it with
  ``benchmarks/reference/smoke.csv``.
* ``default`` — what ``make benchmark`` runs: a synthetic cohort big enough for a stable AUROC,
  the paper's 20 epochs with pruning after epoch 1. Batch 32 instead of the paper's 8 keeps it
  within 20 minutes on a 2-core machine (the table header states the batch size).
* ``paper`` — full size: about 21,000 synthetic episodes (the real benchmark's size) or the
  user's own data, batch 8, 20 epochs: the paper's protocol.
* ``real`` — for small real cohorts (``--data`` required, e.g. ``physionet2012:set-a.tar.gz``):
  batch 8, at most 20 epochs, the model of the best validation epoch, early stopping after 5
  epochs without improvement. On PhysioNet set A the paper's last-epoch protocol overfits and
  this one gains 0.03-0.09 test AUROC (measured; see README.md, "Real data").
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, replace

from condense.checks import check_choice, check_int, invalid_argument


@dataclass(frozen=True)
class Profile:
    name: str
    data: str
    epochs: int
    batch_size: int
    prune_after: int = 1
    lstm_quantiles: tuple[float, ...] = (0.25, 0.5)
    dnn_quantiles: tuple[float, ...] = (0.25, 0.5)
    hlstm_quantiles: tuple[float, ...] = (0.5,)
    select: str = "last"
    patience: int | None = None
    calibration: int = 300
    latency_repeats: int = 300
    latency_warmup: int = 20
    bootstrap_resamples: int = 10_000
    peers: bool = True
    threads: int = 1  # TensorFlow intra-op threads of every training job (docs/reproducibility.md)
    #: the recalibration every row's after columns report (``ece_recal`` ...): fitted on the row's
    #: validation probabilities, judged on test (:mod:`condense.calibrate`; docs/calibration.md says why
    #: the intercept: one parameter, the slope kept); ``"none"``: no after columns
    recalibration: str = "intercept"

    def __post_init__(self) -> None:  # a bad profile fails where it is made, naming the field
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("prune_after", self.prune_after, 1)  # < epochs: checked per pruned row that a run selects
        for name in ("lstm_quantiles", "dnn_quantiles", "hlstm_quantiles"):
            for q in getattr(self, name):
                if not (isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q < 1):
                    raise invalid_argument(name, "a tuple of quantiles in (0, 1)", getattr(self, name))
        check_choice("select", self.select, ("last", "best"))
        if self.patience is not None:
            check_int("patience", self.patience, 1)
        for name in ("calibration", "latency_repeats", "bootstrap_resamples"):
            check_int(name, getattr(self, name), 1)
        check_int("latency_warmup", self.latency_warmup, 0)
        check_int("threads", self.threads, 1)
        check_choice("recalibration", self.recalibration, ("intercept", "platt", "none"))

    def to_json(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", data="synthetic:600:0", epochs=2, batch_size=32, calibration=64,
        latency_repeats=50, latency_warmup=5, bootstrap_resamples=1_000,
    ),
    "default": Profile(name="default", data="synthetic:6000:0", epochs=20, batch_size=32),
    "paper": Profile(name="paper", data="synthetic:21000:0", epochs=20, batch_size=8, latency_repeats=1000),
    "real": Profile(name="real", data="", epochs=20, batch_size=8, select="best", patience=5),
}


def profile_from_json(record: dict) -> Profile:
    """The :class:`Profile` that :meth:`Profile.to_json` wrote (a resumed run's settings)."""
    fields = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(record) - fields)
    if unknown:
        raise ValueError(f"profile record has unknown field(s) {unknown}")
    values = {k: tuple(v) if k.endswith("_quantiles") else v for k, v in record.items()}
    return Profile(**values)


def get_profile(name: str, **overrides) -> Profile:
    """The named profile with ``overrides`` (non-None values) applied."""
    check_choice("profile", name, PROFILES)
    profile = replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})
    if not profile.data:
        raise ValueError(f"profile {name!r} has no data of its own: give the `data` argument "
                         "(e.g. physionet2012:set-a.tar.gz)")
    return profile
