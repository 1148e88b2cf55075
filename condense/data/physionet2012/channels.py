"""PhysioNet 2012's 37 time-series variables, 5 descriptors and 82 channels, as data.

Also the fixed per-variable rules that do not depend on the data: the physiologically possible
range (:data:`VALID_RANGES`) and the imputation fallback (:data:`NORMAL_VALUES`); the fitted
rules are in :mod:`condense.data.physionet2012.state`. Channel order and meaning:
``docs/physionet2012.md``.
"""

from __future__ import annotations

from condense.data.layout import ChannelLayout

#: Bumped whenever the arrays produced for the same input and settings change (cache key, saved state).
FORMAT_VERSION = 1
NUM_BINS = 48
HOURS = 48.0

#: The 37 time-series variables of the challenge (``sorted`` order, which is the tensor order).
TIME_SERIES_VARIABLES: tuple[str, ...] = (
    "ALP", "ALT", "AST", "Albumin", "BUN", "Bilirubin", "Cholesterol", "Creatinine", "DiasABP",
    "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "MAP", "MechVent", "Mg",
    "NIDiasABP", "NIMAP", "NISysABP", "Na", "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2",
    "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC", "Weight", "pH",
)
#: Static descriptors after ``RecordID``, as they are named in the state and the layout.
STATIC_DESCRIPTORS: tuple[str, ...] = ("Age", "Gender", "Height", "AdmissionWeight", "ICUType")
#: Continuous static descriptors (one channel each, standardized by the normalizer).
STATIC_CONTINUOUS: tuple[str, ...] = ("Age", "Height", "AdmissionWeight")
#: ``ICUType`` codes, in one-hot order.
ICU_TYPES: tuple[int, ...] = (1, 2, 3, 4)
#: Time-series variables that are indicators, not measurements: not standardized, imputed 0.
INDICATORS: tuple[str, ...] = ("MechVent",)

#: Physiologically possible range per variable (inclusive, challenge units); outside -> missing.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "ALP": (1.0, 10000.0),          # U/L
    "ALT": (1.0, 20000.0),          # U/L
    "AST": (1.0, 30000.0),          # U/L
    "Albumin": (0.5, 8.0),          # g/dL
    "BUN": (1.0, 300.0),            # mg/dL
    "Bilirubin": (0.1, 80.0),       # mg/dL
    "Cholesterol": (20.0, 1000.0),  # mg/dL
    "Creatinine": (0.1, 40.0),      # mg/dL
    "DiasABP": (1.0, 300.0),        # mmHg, invasive
    "FiO2": (0.21, 1.0),            # fraction
    "GCS": (3.0, 15.0),
    "Glucose": (10.0, 2500.0),      # mg/dL
    "HCO3": (1.0, 60.0),            # mmol/L
    "HCT": (5.0, 75.0),             # %
    "HR": (1.0, 300.0),             # bpm
    "K": (1.0, 15.0),               # mEq/L
    "Lactate": (0.1, 40.0),         # mmol/L
    "MAP": (1.0, 300.0),            # mmHg, invasive
    "MechVent": (0.0, 1.0),         # indicator
    "Mg": (0.1, 10.0),              # mmol/L
    "NIDiasABP": (1.0, 300.0),      # mmHg, non-invasive
    "NIMAP": (1.0, 300.0),
    "NISysABP": (1.0, 350.0),
    "Na": (90.0, 200.0),            # mEq/L
    "PaCO2": (5.0, 200.0),          # mmHg
    "PaO2": (1.0, 800.0),           # mmHg
    "Platelets": (1.0, 3000.0),     # 10^3/uL
    "RespRate": (1.0, 100.0),       # breaths/min
    "SaO2": (1.0, 100.0),           # %
    "SysABP": (1.0, 350.0),         # mmHg, invasive
    "Temp": (25.0, 45.0),           # degC
    "TroponinI": (0.0, 100.0),      # ug/L
    "TroponinT": (0.0, 100.0),      # ug/L
    "Urine": (0.0, 20000.0),        # mL per charting interval
    "WBC": (0.1, 500.0),            # 10^3/uL
    "Weight": (10.0, 400.0),        # kg
    "pH": (6.5, 8.0),
    "Age": (0.0, 120.0),            # years (the challenge caps at 90)
    "Gender": (0.0, 1.0),           # 0 female, 1 male
    "Height": (100.0, 250.0),       # cm
    "AdmissionWeight": (10.0, 400.0),  # kg
    "ICUType": (1.0, 4.0),
}

#: Imputation fallback for a variable with no valid training measurement (adult normal values).
NORMAL_VALUES: dict[str, float] = {
    "ALP": 80.0, "ALT": 25.0, "AST": 30.0, "Albumin": 3.5, "BUN": 15.0, "Bilirubin": 0.7,
    "Cholesterol": 170.0, "Creatinine": 1.0, "DiasABP": 60.0, "FiO2": 0.21, "GCS": 15.0,
    "Glucose": 120.0, "HCO3": 24.0, "HCT": 40.0, "HR": 80.0, "K": 4.2, "Lactate": 1.2,
    "MAP": 80.0, "MechVent": 0.0, "Mg": 2.0, "NIDiasABP": 60.0, "NIMAP": 80.0, "NISysABP": 120.0,
    "Na": 140.0, "PaCO2": 40.0, "PaO2": 95.0, "Platelets": 250.0, "RespRate": 16.0, "SaO2": 97.0,
    "SysABP": 120.0, "Temp": 37.0, "TroponinI": 0.5, "TroponinT": 0.05, "Urine": 60.0,
    "WBC": 8.0, "Weight": 80.0, "pH": 7.4,
    "Age": 65.0, "Gender": 1.0, "Height": 170.0, "AdmissionWeight": 80.0, "ICUType": 3.0,
}


_V = len(TIME_SERIES_VARIABLES)


def _build_layout() -> ChannelLayout:
    names = list(TIME_SERIES_VARIABLES)
    variables = list(TIME_SERIES_VARIABLES)
    names += [f"mask->{v}" for v in TIME_SERIES_VARIABLES]
    variables += list(TIME_SERIES_VARIABLES)
    names += ["Age", "Gender", "Height", "AdmissionWeight"] + [f"ICUType->{k}" for k in ICU_TYPES]
    variables += ["Age", "Gender", "Height", "AdmissionWeight"] + ["ICUType"] * len(ICU_TYPES)
    observed_by = [_V + k for k in range(_V)] + [-1] * (len(names) - _V)
    continuous = [k for k, v in enumerate(TIME_SERIES_VARIABLES) if v not in INDICATORS]
    continuous += [names.index(v) for v in STATIC_CONTINUOUS]
    return ChannelLayout(
        name="physionet2012",
        names=tuple(names),
        continuous=tuple(continuous),
        observed_by=tuple(observed_by),
        variables=tuple(variables),
    )


#: The 82-channel layout of PhysioNet 2012 arrays (``docs/physionet2012.md``, "Channels").
PHYSIONET_LAYOUT = _build_layout()
NUM_CHANNELS = PHYSIONET_LAYOUT.width
assert NUM_CHANNELS == 82
assert set(VALID_RANGES) == set(TIME_SERIES_VARIABLES) | set(STATIC_DESCRIPTORS) == set(NORMAL_VALUES)
