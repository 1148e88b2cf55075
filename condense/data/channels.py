"""The MIMIC-III in-hospital-mortality (IHM) benchmark's variables and 76 channels, as data.

Source of truth: ``shared/reference/ihm-format.md`` (Harutyunyan et al., Sci Data 2019). The
one-hot order of each categorical variable is part of the format and must not be re-sorted.
"""

from __future__ import annotations

from condense.data.layout import ChannelLayout

#: The 17 variables, in the benchmark's column order (the CSV header after ``Hours``).
VARIABLES: tuple[str, ...] = (
    "Capillary refill rate",
    "Diastolic blood pressure",
    "Fraction inspired oxygen",
    "Glascow coma scale eye opening",
    "Glascow coma scale motor response",
    "Glascow coma scale total",
    "Glascow coma scale verbal response",
    "Glucose",
    "Heart Rate",
    "Height",
    "Mean blood pressure",
    "Oxygen saturation",
    "Respiratory rate",
    "Systolic blood pressure",
    "Temperature",
    "Weight",
    "pH",
)

#: The exact episode CSV header.
HEADER: tuple[str, ...] = ("Hours",) + VARIABLES

#: Imputation default before a variable's first observation (the benchmark's "normal values").
NORMAL_VALUES: dict[str, str] = {
    "Capillary refill rate": "0.0",
    "Diastolic blood pressure": "59.0",
    "Fraction inspired oxygen": "0.21",
    "Glascow coma scale eye opening": "4 Spontaneously",
    "Glascow coma scale motor response": "6 Obeys Commands",
    "Glascow coma scale total": "15",
    "Glascow coma scale verbal response": "5 Oriented",
    "Glucose": "128.0",
    "Heart Rate": "86",
    "Height": "170.0",
    "Mean blood pressure": "77.0",
    "Oxygen saturation": "98.0",
    "Respiratory rate": "19",
    "Systolic blood pressure": "118.0",
    "Temperature": "36.6",
    "Weight": "81.0",
    "pH": "7.4",
}

#: Categorical variables and their values in one-hot order.
CATEGORICAL_VALUES: dict[str, tuple[str, ...]] = {
    "Capillary refill rate": ("0.0", "1.0"),
    "Glascow coma scale eye opening": (
        "To Pain", "3 To speech", "1 No Response", "4 Spontaneously",
        "None", "To Speech", "Spontaneously", "2 To pain",
    ),
    "Glascow coma scale motor response": (
        "1 No Response", "3 Abnorm flexion", "Abnormal extension", "No response",
        "4 Flex-withdraws", "Localizes Pain", "Flex-withdraws", "Obeys Commands",
        "Abnormal Flexion", "6 Obeys Commands", "5 Localizes Pain", "2 Abnorm extensn",
    ),
    "Glascow coma scale total": ("11", "10", "13", "12", "15", "14", "3", "5", "4", "7", "6", "9", "8"),
    "Glascow coma scale verbal response": (
        "1 No Response", "No Response", "Confused", "Inappropriate Words", "Oriented",
        "No Response-ETT", "5 Oriented", "Incomprehensible sounds", "1.0 ET/Trach",
        "4 Confused", "2 Incomp sounds", "3 Inapprop words",
    ),
}

CONTINUOUS_VARIABLES: tuple[str, ...] = tuple(v for v in VARIABLES if v not in CATEGORICAL_VALUES)

#: The plausible range ``(low, high)``, inclusive, of each continuous variable as the benchmark's
#: files store it. A value outside it (or one that is not finite as float32, which the tensors
#: are) cannot be a charted measurement of the variable and is counted as
#: ``implausible_value:<variable>`` and treated as missing (:mod:`condense.data.episodes`).
#:
#: The bounds catch garbage (``-1e30``, ``1e308``, negative rates), not clinical outliers: the
#: benchmark removes no outliers (its ``variable_ranges.csv`` is never applied, YerevaNN/
#: mimic3-benchmarks#25), so its files keep MIMIC-III's typos, and the synthetic cohort writes
#: them on purpose (a lost decimal point: SpO2 98.0 charted as 9800, diastolic 62 as 6200).
#: So ``high`` is 100 x a generous physiological maximum in the largest unit the files use,
#: and ``low`` is 0 for quantities that cannot be negative:
#:
#: * pressures: 300 mmHg (diastolic, mean), 400 mmHg (systolic);
#: * Fraction inspired oxygen: 100, the benchmark writes fractions (0.21..1) and, for some
#:   rows of its FiO2 cleaning, percents (21..100);
#: * Glucose 2000 mg/dL; Heart Rate 400 /min; Respiratory rate 1000 /min (oscillator rates);
#:   Oxygen saturation 100 %; Height 300 cm; Weight 500 kg (the benchmark converts lb, oz, in);
#: * Temperature: the benchmark converts every value >= 79 (and any charted in F) from F to C,
#:   so a charted 0 F becomes -17.8 C and a lost decimal point of 98.6 F some 5000 C: -50..10000;
#: * pH: the pH scale's 14.
#:
#: Part of the discretizer's settings (cache keys and fingerprints): change a bound and cached
#: arrays are read again.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "Diastolic blood pressure": (0.0, 30_000.0),
    "Fraction inspired oxygen": (0.0, 10_000.0),
    "Glucose": (0.0, 200_000.0),
    "Heart Rate": (0.0, 40_000.0),
    "Height": (0.0, 30_000.0),
    "Mean blood pressure": (0.0, 30_000.0),
    "Oxygen saturation": (0.0, 10_000.0),
    "Respiratory rate": (0.0, 100_000.0),
    "Systolic blood pressure": (0.0, 40_000.0),
    "Temperature": (-50.0, 10_000.0),
    "Weight": (0.0, 50_000.0),
    "pH": (0.0, 1_400.0),
}

NUM_BINS = 48
NUM_CHANNELS = 76
#: The benchmark's time tolerance in hours: an event at ``t`` goes to bin ``int(t / timestep - EPS)``,
#: rows with ``t > end + EPS`` are dropped, and ``-EPS < t < 0`` still counts as bin 0.
EPS = 1e-6


def _build_layout() -> tuple[ChannelLayout, dict[str, slice]]:
    names: list[str] = []
    variables: list[str] = []
    spans: dict[str, slice] = {}
    for var in VARIABLES:
        start = len(names)
        if var in CATEGORICAL_VALUES:
            for value in CATEGORICAL_VALUES[var]:
                names.append(f"{var}->{value}")
                variables.append(var)
        else:
            names.append(var)
            variables.append(var)
        spans[var] = slice(start, len(names))
    mask_start = len(names)
    for k, var in enumerate(VARIABLES):
        names.append(f"mask->{var}")
        variables.append(var)
    observed_by = [mask_start + VARIABLES.index(v) for v in variables[:mask_start]] + [-1] * len(VARIABLES)
    continuous = [spans[v].start for v in CONTINUOUS_VARIABLES]
    layout = ChannelLayout(
        name="ihm-76",
        names=tuple(names),
        continuous=tuple(continuous),
        observed_by=tuple(observed_by),
        variables=tuple(variables),
    )
    return layout, spans


#: The 76-channel layout, and each variable's channel span (a slice; one channel if continuous).
IHM_LAYOUT, CHANNEL_SPANS = _build_layout()
#: Index of each variable's mask channel (59..75).
MASK_INDEX: dict[str, int] = {v: 59 + k for k, v in enumerate(VARIABLES)}

assert IHM_LAYOUT.width == NUM_CHANNELS
assert IHM_LAYOUT.continuous == (2, 3, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58)
assert tuple(PLAUSIBLE_RANGES) == CONTINUOUS_VARIABLES
assert all(low < float(NORMAL_VALUES[v]) < high for v, (low, high) in PLAUSIBLE_RANGES.items())
