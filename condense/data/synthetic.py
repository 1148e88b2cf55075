"""A synthetic ICU cohort written in the MIMIC-III in-hospital-mortality (IHM) benchmark layout.

MIMIC-III needs credentialed access, so condense ships a generator instead of data: it writes a
folder that the IHM reader cannot tell from the real benchmark's output (same file names, same
18-column header, same listfiles, the benchmark's categorical spellings, irregular event times,
missing cells, gross outliers), with a mortality label driven mostly by how a patient's state
*changes* over the first 48 hours rather than by its average level.

Public API:

* :func:`write_cohort` writes a cohort into a folder, atomically.
* :func:`ensure_cohort` generates a cohort once into the cache and reuses it afterwards; this is
  what ``load_dataset("synthetic:EPISODES:SEED")`` calls.

The generative model
--------------------
Each patient has a frailty; each ICU episode has a latent severity path ``z(t)`` over the 48 h:

``z(t) = acuity + trend * (t/24 - 1) + recovery_bump(t) + deterioration(t) + slow_noise(t)``

* ``acuity`` (baseline severity, shared in part between a patient's episodes) raises the chance
  of ventilation, of blood gases and of a late deterioration.
* ``trend`` makes a patient improve or worsen steadily over the window: it leaves the window
  average unchanged and moves only the end.
* ``recovery_bump`` (post-operative arrivals) is high at admission and decays within hours: it
  raises the window average of a patient who is in fact getting better.
* ``deterioration`` is zero until an onset late in the window, then grows linearly; it also
  makes the vital signs more variable.

Vital signs read ``z(t)`` through per-episode baselines that carry no outcome information (a
patient's usual heart rate), autocorrelated physiological noise and measurement noise: heart and
respiratory rate rise with ``z``, blood pressures, SpO2 and the Glasgow coma scale fall, pH falls,
FiO2 and temperature rise. The probability of death is a logistic function of
``acuity + trend + deterioration at 48 h`` (that is, the end of the path and its late slope) plus
an unobserved factor whose size is set by ``difficulty``; an intercept fitted on the cohort puts
the expected death rate at 13 %. A model that sees the sequence can read the end of the path and
its slope; a model that sees only per-channel averages over the window cannot, and is confounded
by recovery bumps.

Observation follows the rhythm of ICU charting: vitals on the clock hour (so an episode's hourly
rows share the minute offset of its admission time; about 1 episode in 60 charts on whole hours),
extra vital checks when a patient deteriorates, temperature and GCS every 2 to 4 hours, glucose
and blood gases at odd times (blood gases mostly in ventilated, sicker patients), height once or
never, weight once or twice, capillary refill rarely, and some admission rows at exactly
``Hours = 0``. A few episodes have one row just after 48 h, which the reader must drop. Each
patient is charted in one of MIMIC-III's two systems: CareVue spellings ("Spontaneously", GCS
total charted) or MetaVision's numbered ones ("4 Spontaneously", no total). Values are written as
the real files write them (whole numbers for heart rate and pressures, one decimal for
temperature, two for pH), with rare gross typos (SpO2 9800, diastolic 6200).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from condense.data.cache import resolve_cache_dir
from condense.data.channels import CATEGORICAL_VALUES, HEADER
from condense.data.progress import Progress
from condense.io import write_json

__all__ = [
    "DEFAULT_DIFFICULTY",
    "GENERATOR_VERSION",
    "MIN_EPISODES",
    "SPLIT_FRACTIONS",
    "TARGET_PREVALENCE",
    "ensure_cohort",
    "write_cohort",
]

#: Bumped whenever the same (episodes, seed, difficulty) would produce different bytes; part of
#: the cache folder name, so a new generator never reuses an old cohort.
GENERATOR_VERSION = 1

#: The default ``difficulty``: a 2-layer LSTM(16) lands near the real task's AUROC (about 0.85)
#: while a model on per-channel window averages stays several points lower.
DEFAULT_DIFFICULTY = 0.5

#: The smallest cohort :func:`write_cohort` accepts (three patient-level splits need patients).
MIN_EPISODES = 20

#: Expected fraction of deaths (the real benchmark: 13.5 % in train+val, 11.6 % in test).
TARGET_PREVALENCE = 0.13

#: Fraction of patients in train, validation and test.
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)

# --------------------------------------------------------------------------------------------
# Model constants. Changing any of them changes the bytes written: bump GENERATOR_VERSION.
# --------------------------------------------------------------------------------------------
_HOURS = 48
_MINUTES = _HOURS * 60
_CHUNK = 1000  # episodes simulated and rendered together (fixed: part of the byte-exact output)

# Latent severity path and the death risk.
_TREND_SD = 1.0  # size of the steady improvement/worsening (severity units at either end)
_RISK_ACUITY = 1.1  # weight of the baseline acuity in the death logit
_RISK_TREND = 0.9  # weight of the trend (end-of-window state, slope)
_RISK_DETERIORATION = 0.9  # weight of the late deterioration reached at 48 h
_RISK_SCALE = 1.6  # overall sharpness of the death logit
_NOISE_AT_0 = 0.3  # sd of the unobserved risk factor at difficulty 0 ...
_NOISE_AT_1 = 4.0  # ... and at difficulty 1 (linear in between)

# Slots an event can fall into (columns of the per-chunk arrays), all at distinct minutes:
# admission (minute 0), 48 clock hours, 16 lab draws (one per 3 h window, minute 1-29 past a
# clock hour), 48 extra vital checks (minute 31-59 past a clock hour), one row after 48 h.
_ADM = 0
_HOURLY = slice(1, 49)
_LAB = slice(49, 65)
_CHECK = slice(65, 113)
_BEYOND = 113
_SLOTS = 114

# Outliers like the real data's typos (a dropped decimal point: SpO2 98.0 charted as 9800).
_SPO2_OUTLIER_RATE = 0.0015
_DBP_OUTLIER_RATE = 0.0003

# Categorical spellings: CareVue (words only, GCS total charted) and MetaVision (numbered, no
# total). Index = score (index 0 unused); verbal index 0 = intubated.
_EYE = {
    "carevue": ("", "None", "To Pain", "To Speech", "Spontaneously"),
    "metavision": ("", "1 No Response", "2 To pain", "3 To speech", "4 Spontaneously"),
}
_MOTOR = {
    "carevue": ("", "No response", "Abnormal extension", "Abnormal Flexion", "Flex-withdraws",
                "Localizes Pain", "Obeys Commands"),
    "metavision": ("", "1 No Response", "2 Abnorm extensn", "3 Abnorm flexion", "4 Flex-withdraws",
                   "5 Localizes Pain", "6 Obeys Commands"),
}
_VERBAL = {
    "carevue": ("No Response-ETT", "No Response", "Incomprehensible sounds", "Inappropriate Words",
                "Confused", "Oriented"),
    "metavision": ("1.0 ET/Trach", "1 No Response", "2 Incomp sounds", "3 Inapprop words",
                   "4 Confused", "5 Oriented"),
}

# Text of every value a cell can hold, looked up by an integer code (fast, exact, deterministic).
_INT_TEXT = np.array([str(i) for i in range(20001)], dtype=object)
_ONE_DECIMAL_TEXT = np.array([f"{i // 10}.{i % 10}" for i in range(5001)], dtype=object)
_TWO_DECIMAL_TEXT = np.array([f"{i // 100}.{i % 100:02d}" for i in range(1001)], dtype=object)
_FRACTION_TEXT = np.array([repr(i / 100) for i in range(101)], dtype=object)  # 0.21, 0.4, 1.0
_HOURS_TEXT = np.array([repr(round(m / 60, 4)) for m in range(_MINUTES + 61)], dtype=object)


def _check_spellings() -> None:
    """Every GCS spelling the generator writes is one the benchmark's one-hot lists know."""
    for table, variable in ((_EYE, "eye opening"), (_MOTOR, "motor response"), (_VERBAL, "verbal response")):
        allowed = CATEGORICAL_VALUES[f"Glascow coma scale {variable}"]
        written = {text for spellings in table.values() for text in spellings if text}
        assert written <= set(allowed), (variable, written - set(allowed))


_check_spellings()


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def write_cohort(
    out_dir: str | os.PathLike,
    episodes: int,
    seed: int,
    *,
    difficulty: float = DEFAULT_DIFFICULTY,
    quiet: bool = True,
) -> Path:
    """Write a synthetic cohort of ``episodes`` ICU stays into ``out_dir``, in the IHM layout.

    The folder gets ``train/`` and ``test/`` (each with ``listfile.csv`` headed ``stay,y_true``
    and one ``<SUBJECT>_episode<N>_timeseries.csv`` per episode) and, at the top,
    ``train_listfile.csv``, ``val_listfile.csv`` (validation episodes live in ``train/``) and
    ``test_listfile.csv``. Patients, not episodes, are split about 70/15/15 into train,
    validation and test; some patients have two or more episodes. The whole tree is written into
    a temporary sibling folder and renamed into place, so an interrupted run leaves nothing.

    Args:
        out_dir: the folder to create (conventionally named ``in-hospital-mortality``). It must
            not exist, or be an empty folder.
        episodes: number of episode files, at least :data:`MIN_EPISODES`.
        seed: non-negative integer; the same ``(episodes, seed, difficulty)`` gives byte-identical
            files.
        difficulty: 0 to 1, the size of the unobserved part of the death risk. It changes the
            labels only (the episode files are the same for every difficulty). Measured with a
            2-layer LSTM(16) trained on 2,100 episodes: about 0.90 AUROC at 0, 0.85 at the
            default :data:`DEFAULT_DIFFICULTY` (the real task's level), 0.77 at 1; a model on
            per-channel window averages stays 5 to 9 points lower.
        quiet: if False, show progress on stderr.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: a bad argument (the message names it), or ``out_dir`` exists and is not empty.

    Example:
        >>> path = write_cohort("/tmp/demo/in-hospital-mortality", episodes=200, seed=0)  # doctest: +SKIP
        >>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
        ['test', 'test_listfile.csv', 'train', 'train_listfile.csv', 'val_listfile.csv']
    """
    episodes, seed, difficulty = _check_arguments(episodes, seed, difficulty)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"out_dir {str(out_dir)!r} already exists and is not an empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        _write_tree(tmp, episodes, seed, difficulty, quiet)
        if out_dir.exists():  # an empty folder the caller made: replace it
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def ensure_cohort(episodes: int, seed: int, cache_dir=None, quiet: bool = False) -> Path:
    """Return the path of the synthetic cohort ``(episodes, seed)``, generating it on first use.

    The cohort (at :data:`DEFAULT_DIFFICULTY`) lives in
    ``<cache>/synthetic/<episodes>-<seed>-v<GENERATOR_VERSION>/in-hospital-mortality``, with a
    ``cohort.json`` beside it recording how it was made. A complete cohort (every listed episode
    file present) is reused; an incomplete one is regenerated. Two processes racing to create the
    same cohort both end up with the same, complete folder.

    Args:
        episodes: number of episodes, at least :data:`MIN_EPISODES`.
        seed: non-negative integer.
        cache_dir: cache root; default :func:`~condense.data.cache.default_cache_dir`
            (``$CONDENSE_CACHE`` or ``~/.cache/condense``).
        quiet: if False, say on stderr whether the cohort was reused or generated (with progress).

    Returns:
        The ``in-hospital-mortality`` folder, ready for ``load_dataset``.
    """
    episodes, seed, difficulty = _check_arguments(episodes, seed, DEFAULT_DIFFICULTY)
    root = resolve_cache_dir(cache_dir)
    home = root / "synthetic" / f"{episodes}-{seed}-v{GENERATOR_VERSION}"
    target = home / "in-hospital-mortality"
    label = f"synthetic cohort ({episodes} episodes, seed {seed}, generator v{GENERATOR_VERSION})"

    if _is_complete(target, episodes):
        if not quiet:
            print(f"{label}: reusing {target}", file=sys.stderr)
        return target
    if target.exists():  # left incomplete by hand (our own writes are atomic): start over
        if not quiet:
            print(f"{label}: {target} is incomplete, regenerating", file=sys.stderr)
        shutil.rmtree(target)
    if not quiet:
        print(f"{label}: generating into {target}", file=sys.stderr)
    home.mkdir(parents=True, exist_ok=True)
    try:
        write_cohort(target, episodes, seed, difficulty=difficulty, quiet=quiet)
    except (ValueError, OSError):
        if not _is_complete(target, episodes):  # not a lost race with another process
            raise
    write_json(
        home / "cohort.json",
        {
            "generator": "condense.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "episodes": episodes,
            "seed": seed,
            "difficulty": difficulty,
        },
    )
    return target


# --------------------------------------------------------------------------------------------
# Arguments and files
# --------------------------------------------------------------------------------------------
def _check_arguments(episodes, seed, difficulty) -> tuple[int, int, float]:
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)):
        raise ValueError(f"episodes must be a whole number, got {episodes!r}")
    if episodes < MIN_EPISODES:
        raise ValueError(f"episodes must be at least {MIN_EPISODES}, got {episodes}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float, np.number)):
        raise ValueError(f"difficulty must be a number between 0 and 1, got {difficulty!r}")
    if not 0.0 <= float(difficulty) <= 1.0:  # also rejects NaN
        raise ValueError(f"difficulty must be between 0 and 1, got {difficulty}")
    return int(episodes), int(seed), float(difficulty)


def _is_complete(folder: Path, episodes: int) -> bool:
    names = {}
    for listfile, sub in (("train/listfile.csv", "train"), ("test/listfile.csv", "test")):
        path = folder / listfile
        if not path.is_file():
            return False
        rows = path.read_text(encoding="utf-8").splitlines()[1:]
        names[sub] = [row.split(",", 1)[0] for row in rows]
    if not (folder / "val_listfile.csv").is_file():
        return False
    if sum(len(v) for v in names.values()) != episodes:
        return False
    return all((folder / sub / name).is_file() for sub, listed in names.items() for name in listed)


def _write_tree(root: Path, episodes: int, seed: int, difficulty: float, quiet: bool) -> None:
    cohort = _simulate_episodes(episodes, seed, difficulty)
    names = [f"{s}_episode{n}_timeseries.csv" for s, n in zip(cohort["subject"], cohort["episode_no"])]
    split = cohort["split"]
    (root / "train").mkdir()
    (root / "test").mkdir()
    folders = [root / ("test" if code == 2 else "train") for code in split]

    progress = Progress("  writing episodes", episodes, quiet=quiet, lines=4)
    header = ",".join(HEADER) + "\n"
    for start in range(0, episodes, _CHUNK):
        stop = min(start + _CHUNK, episodes)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 + start // _CHUNK,)))
        texts = _render_chunk(_slice(cohort, start, stop), rng)
        for i, text in enumerate(texts, start):
            with open(folders[i] / names[i], "w", encoding="utf-8", newline="") as fh:
                fh.write(header)
                fh.write(text)
        progress.update(stop)
    progress.close()

    # Listfiles the way the benchmark writes them: train/ (train + val) shuffled, test sorted.
    y = cohort["y"]
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, 1))).permutation(episodes)
    train_part = [i for i in order if split[i] != 2]
    test_part = sorted((i for i in range(episodes) if split[i] == 2), key=lambda i: names[i])

    def listfile(indices) -> str:
        return "stay,y_true\n" + "".join(f"{names[i]},{y[i]}\n" for i in indices)

    files = {
        "train/listfile.csv": listfile(train_part),
        "train_listfile.csv": listfile([i for i in train_part if split[i] == 0]),
        "val_listfile.csv": listfile([i for i in train_part if split[i] == 1]),
        "test/listfile.csv": listfile(test_part),
        "test_listfile.csv": listfile(test_part),
    }
    for rel, text in files.items():
        with open(root / rel, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)


# --------------------------------------------------------------------------------------------
# Episode-level simulation: patients, latent paths, labels, splits
# --------------------------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _simulate_episodes(episodes: int, seed: int, difficulty: float) -> dict[str, np.ndarray]:
    """Per-episode parameters (one entry per episode, grouped by patient)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))

    # Patients and their episodes (about 1.2 episodes per patient).
    counts = rng.choice([1, 2, 3, 4], size=episodes, p=[0.84, 0.12, 0.03, 0.01])
    cum = np.cumsum(counts)
    n_patients = int(np.searchsorted(cum, episodes)) + 1
    counts = counts[:n_patients].copy()
    counts[-1] -= cum[n_patients - 1] - episodes
    id_pool = max(99_900, 3 * n_patients)
    subject_of_patient = 100 + np.sort(rng.choice(id_pool, size=n_patients, replace=False))
    subject_of_patient = rng.permutation(subject_of_patient)
    patient = np.repeat(np.arange(n_patients), counts)
    first_no = 1 + (rng.random(n_patients) < 0.08)  # an earlier stay that did not qualify
    first_index = np.cumsum(counts) - counts  # index of each patient's first episode
    within = np.arange(episodes) - np.repeat(first_index, counts)
    p: dict[str, np.ndarray] = {
        "subject": subject_of_patient[patient],
        "episode_no": first_no[patient] + within,
    }

    # Patient traits (shared by a patient's episodes).
    frailty = rng.normal(0.0, 1.0, n_patients)[patient]
    height = np.clip(rng.normal(170.0, 10.0, n_patients), 140.0, 205.0)[patient]
    weight = np.clip(81.0 * np.exp(rng.normal(0.0, 0.24, n_patients)), 35.0, 250.0)[patient]
    diabetic = (rng.random(n_patients) < 0.25)[patient]
    hr_base = rng.normal(84.0, 9.0, n_patients)[patient] + rng.normal(0.0, 4.0, episodes)
    sbp_base = rng.normal(122.0, 11.0, n_patients)[patient] + rng.normal(0.0, 5.0, episodes)

    # Episode latents.
    acuity = 0.6 * frailty + 0.8 * rng.normal(0.0, 1.0, episodes)
    trend = rng.normal(0.0, 1.0, episodes)  # standardized; scaled by _TREND_SD in the path
    has_bump = rng.random(episodes) < 0.30
    bump = has_bump * rng.uniform(0.8, 2.2, episodes)
    bump_tau = rng.uniform(4.0, 12.0, episodes)
    deteriorates = rng.random(episodes) < _sigmoid(-1.7 + 0.6 * acuity)
    onset = rng.uniform(16.0, 46.0, episodes)
    slope = deteriorates * np.exp(rng.normal(np.log(0.10), 0.5, episodes))
    vent = rng.random(episodes) < _sigmoid(-1.0 + 1.0 * acuity + 0.6 * bump)
    neuro = rng.normal(-0.8, 0.9, episodes) + 0.3 * acuity

    # Death: the end of the path and its late slope, plus an unobserved factor.
    det48 = slope * (_HOURS - onset)
    risk = _RISK_SCALE * (_RISK_ACUITY * acuity + _RISK_TREND * trend + _RISK_DETERIORATION * det48)
    noise_sd = _NOISE_AT_0 + (_NOISE_AT_1 - _NOISE_AT_0) * difficulty
    risk = risk + noise_sd * rng.normal(0.0, 1.0, episodes)
    intercept = _fit_intercept(risk, TARGET_PREVALENCE)
    p["y"] = (rng.random(episodes) < _sigmoid(intercept + risk)).astype(np.int64)

    # Patient-level split, about 70/15/15, every split non-empty.
    order = rng.permutation(n_patients)
    n_val = max(1, int(round(SPLIT_FRACTIONS[1] * n_patients)))
    n_test = max(1, int(round(SPLIT_FRACTIONS[2] * n_patients)))
    split_of_patient = np.zeros(n_patients, dtype=np.int64)
    split_of_patient[order[:n_test]] = 2
    split_of_patient[order[n_test:n_test + n_val]] = 1
    p["split"] = split_of_patient[patient]

    # Charting habits.
    carevue = (rng.random(n_patients) < 0.55)[patient]
    p.update(
        acuity=acuity, trend=trend, bump=bump, bump_tau=bump_tau, onset=onset, slope=slope,
        vent=vent, neuro=neuro, diabetic=diabetic, height=height, weight=weight,
        hr_base=hr_base, sbp_base=sbp_base,
        dbp_base=0.52 * sbp_base + rng.normal(0.0, 5.0, episodes),
        rr_base=rng.normal(18.0, 2.5, episodes),
        spo2_deficit=rng.normal(0.5, 0.35, episodes),
        temp_base=rng.normal(36.9, 0.35, episodes),
        glucose_base=np.log(125.0) + 0.3 * diabetic + rng.normal(0.0, 0.15, episodes),
        carevue=carevue,
        intime_minute=rng.integers(0, 60, episodes),
        vital_rate=np.clip(rng.normal(0.92, 0.05, episodes), 0.6, 1.0),
        gcs_period=np.where((neuro > 0.5) | vent, 2, 4),
        gcs_phase=rng.integers(0, 4, episodes),
        temp_phase=rng.integers(0, 4, episodes),
        admission_row=rng.random(episodes) < 0.30,
        has_height=rng.random(episodes) < 0.35,
        second_weight=rng.random(episodes) < 0.25,
        cap_refill=carevue & (rng.random(episodes) < 0.15),
        beyond_48=rng.random(episodes) < 0.02,
    )
    return p


def _fit_intercept(risk: np.ndarray, prevalence: float) -> float:
    """The intercept b with mean(sigmoid(b + risk)) == prevalence (bisection; monotone in b)."""
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _sigmoid(mid + risk).mean() < prevalence:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _slice(p: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in p.items()}


# --------------------------------------------------------------------------------------------
# Event-level simulation and CSV text, one chunk of episodes at a time
# --------------------------------------------------------------------------------------------
def _ou_grid(rng, n: int, sd: float, rho: float) -> np.ndarray:
    """Stationary AR(1) noise on the 49 whole hours 0..48, shape (n, 49)."""
    out = np.empty((n, _HOURS + 1))
    out[:, 0] = rng.normal(0.0, sd, n)
    step = sd * np.sqrt(1.0 - rho * rho)
    shocks = rng.normal(0.0, step, (n, _HOURS))
    for k in range(_HOURS):
        out[:, k + 1] = rho * out[:, k] + shocks[:, k]
    return out


def _at(grid: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Linear interpolation of hourly ``grid`` (n, 49) at ``hours`` (n, S)."""
    h = np.clip(hours, 0.0, float(_HOURS))
    k = np.minimum(h.astype(np.int64), _HOURS - 1)
    frac = h - k
    return np.take_along_axis(grid, k, 1) * (1.0 - frac) + np.take_along_axis(grid, k + 1, 1) * frac


def _slot_minutes(p, rng) -> tuple[np.ndarray, np.ndarray]:
    """Minute since admission of every slot (n, S) and whether the slot lies in the stay."""
    n = len(p["acuity"])
    m0 = p["intime_minute"][:, None]
    minutes = np.empty((n, _SLOTS), dtype=np.int64)
    minutes[:, _ADM] = 0
    minutes[:, _HOURLY] = 60 * np.arange(1, _HOURS + 1)[None, :] - m0
    lab_hour = 3 * np.arange(16)[None, :] + rng.integers(0, 3, (n, 16))
    minutes[:, _LAB] = 60 * lab_hour - m0 + rng.integers(1, 30, (n, 16))
    minutes[:, _CHECK] = 60 * np.arange(_HOURS)[None, :] - m0 + rng.integers(31, 60, (n, _HOURS))
    minutes[:, _BEYOND] = _MINUTES + rng.integers(1, 20, n)
    valid = (minutes > 0) & (minutes <= _MINUTES)
    valid[:, _ADM] = p["admission_row"]
    valid[:, _BEYOND] = p["beyond_48"]
    return minutes, valid


class _Chunk:
    """One chunk of episodes being simulated: per-episode parameters and random draws shaped
    (episodes, slots), plus where each slot lies in time."""

    def __init__(self, p: dict[str, np.ndarray], rng: np.random.Generator):
        self.p, self.rng = p, rng
        self.n = len(p["acuity"])
        self.minutes, self.valid = _slot_minutes(p, rng)
        self.hours = self.minutes / 60.0

    def col(self, name: str) -> np.ndarray:
        """A per-episode parameter as a column, to broadcast against the slots."""
        return self.p[name][:, None]

    def uniform(self) -> np.ndarray:
        return self.rng.random((self.n, _SLOTS))

    def normal(self, sd: float) -> np.ndarray:
        return self.rng.normal(0.0, sd, (self.n, _SLOTS))

    def wander(self, sd: float, rho: float) -> np.ndarray:
        """Slowly wandering physiological noise (hourly AR(1), interpolated at the slots)."""
        return _at(_ou_grid(self.rng, self.n, sd, rho), self.hours)

    def kind(self, part: slice | int) -> np.ndarray:
        """Boolean (episodes, slots): True in the slots of one kind (``_HOURLY``, ``_LAB``, ...)."""
        out = np.zeros((self.n, _SLOTS), dtype=bool)
        out[:, part] = True
        return out


def _render_chunk(p: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """The CSV body (the rows after the header) of each episode of the chunk ``p``."""
    c = _Chunk(p, rng)
    z, det = _severity(c)
    observed = _observations(c, det)
    text = _values(c, z, det)
    return _csv_bodies(c, [(observed[v], text[v]) for v in HEADER[1:]])


def _severity(c: _Chunk) -> tuple[np.ndarray, np.ndarray]:
    """The latent severity ``z`` at every slot, and its late-deterioration part."""
    t = c.hours
    det = c.col("slope") * np.maximum(0.0, t - c.col("onset"))
    z = (
        c.col("acuity")
        + _TREND_SD * c.col("trend") * (t / 24.0 - 1.0)
        + c.col("bump") * np.exp(-t / c.col("bump_tau"))
        + det
        + c.wander(0.25, 0.85)
    )
    return z, det


def _observations(c: _Chunk, det: np.ndarray) -> dict[str, np.ndarray]:
    """Which slot charts which variable: boolean (episodes, slots) per variable."""
    hourly, lab, check, adm = c.kind(_HOURLY), c.kind(_LAB), c.kind(_CHECK), c.kind(_ADM)
    hour_no = np.zeros((c.n, _SLOTS), dtype=np.int64)
    hour_no[:, _HOURLY] = np.arange(1, _HOURS + 1)
    rate = c.col("vital_rate")
    vent = c.col("vent")
    recovering = c.col("bump") * np.exp(-c.hours / c.col("bump_tau")) > 0.8

    # Vitals on the clock hour; extra checks when the patient deteriorates or is fresh from theatre.
    extra = check & (c.uniform() < 0.02 + 0.12 * np.minimum(det, 2.0) + 0.05 * recovering)
    hr = (hourly & (c.uniform() < rate)) | extra | (adm & (c.uniform() < 0.3))
    hr[:, _BEYOND] = True
    bp = (hourly & (c.uniform() < rate - 0.04)) | (extra & (c.uniform() < 0.8)) | (adm & hr & (c.uniform() < 0.7))
    spo2 = (hourly & (c.uniform() < rate - 0.02)) | (extra & (c.uniform() < 0.6))
    spo2[:, _BEYOND] = c.uniform()[:, _BEYOND] < 0.5
    obs = {
        "Heart Rate": hr,
        "Systolic blood pressure": bp,
        "Diastolic blood pressure": bp,
        "Mean blood pressure": bp & (c.uniform() < 0.96),
        "Respiratory rate": (hourly & (c.uniform() < rate - 0.02)) | (extra & (c.uniform() < 0.5)),
        "Oxygen saturation": spo2,
    }

    # Nursing assessments: temperature every 4 h, GCS every 2 or 4 h, capillary refill rarely.
    temp_due = hourly & ((hour_no - c.col("temp_phase")) % 4 == 0)
    obs["Temperature"] = (temp_due & (c.uniform() < 0.9)) | (hourly & ~temp_due & (c.uniform() < 0.015))
    gcs = hourly & ((hour_no - c.col("gcs_phase")) % c.col("gcs_period") == 0) & (c.uniform() < 0.9)
    for part in ("eye opening", "motor response", "verbal response"):
        obs[f"Glascow coma scale {part}"] = gcs
    obs["Glascow coma scale total"] = gcs & c.col("carevue") & (c.uniform() < 0.97)
    obs["Capillary refill rate"] = gcs & c.col("cap_refill") & (c.uniform() < 0.5)

    # Labs at odd times: glucose a few times a day (hourly on an insulin drip), blood gases
    # mostly in ventilated and sicker patients, FiO2 with the gases and the vent checks.
    glucose = lab & (c.uniform() < np.where(c.col("diabetic"), 0.45, 0.25))
    glucose |= hourly & c.col("diabetic") & (c.col("acuity") > 1.2) & (c.uniform() < 0.25)
    ph_rate = np.clip(0.01 + 0.22 * vent + 0.05 * np.maximum(c.col("acuity"), 0.0), 0.0, 0.6)
    ph = lab & (c.uniform() < ph_rate)
    obs["Glucose"] = glucose
    obs["pH"] = ph
    obs["Fraction inspired oxygen"] = (
        (ph & vent & (c.uniform() < 0.8)) | (gcs & vent & (c.uniform() < 0.5)) | (lab & (c.uniform() < 0.005))
    )

    # Height once or never, weight once or twice: at admission when there is an admission row.
    rows = np.arange(c.n)
    first = np.where(c.p["admission_row"], _ADM, 1 + c.rng.integers(0, 4, c.n))
    height = np.zeros((c.n, _SLOTS), dtype=bool)
    height[rows, first] = c.p["has_height"]
    weight = np.zeros((c.n, _SLOTS), dtype=bool)
    weight[rows, first] = True
    weight[rows, 1 + c.rng.integers(22, 30, c.n)] |= c.p["second_weight"]
    weight &= (c.rng.random(c.n) >= 0.08)[:, None]  # some episodes are never weighed
    obs["Height"] = height
    obs["Weight"] = weight
    return obs


def _values(c: _Chunk, z: np.ndarray, det: np.ndarray) -> dict[str, np.ndarray]:
    """The text every variable would have at every slot (formatted like the real files)."""
    wobble = 1.0 + 0.8 * np.minimum(det, 3.0)  # deterioration makes vitals noisier

    hr = np.rint(c.col("hr_base") + 9.0 * z + c.wander(4.0, 0.8) + wobble * c.normal(3.0))
    bp_wander = c.wander(6.0, 0.8)
    sbp = np.clip(np.rint(c.col("sbp_base") - 10.0 * z + bp_wander + wobble * c.normal(5.0)), 55, 240)
    dbp = np.clip(np.rint(c.col("dbp_base") - 5.0 * z + 0.5 * bp_wander + wobble * c.normal(3.0)), 20, 140)
    dbp = np.minimum(dbp, sbp - 15)
    mbp = np.clip(np.rint(dbp + (sbp - dbp) / 3.0 + c.normal(1.5)), dbp + 1, sbp - 1)  # dia < mean < sys
    rr = np.rint(c.col("rr_base") + 2.5 * z + c.wander(1.5, 0.7) + wobble * c.normal(1.5))
    spo2 = np.clip(np.rint(100.0 - np.exp(c.col("spo2_deficit") + 0.35 * z + wobble * c.normal(0.15))), 55, 100)
    temp = c.col("temp_base") + 0.2 * z + c.wander(0.3, 0.8) + c.normal(0.12)
    glucose = np.rint(np.exp(c.col("glucose_base") + 0.06 * z + c.normal(0.18)))
    ph = 7.40 - 0.035 * z - 0.02 * c.col("vent") + c.normal(0.03)
    fio2 = np.where(c.col("vent"), 0.35 + 0.08 * np.maximum(z, 0.0) + c.normal(0.06), 0.21 + np.abs(c.normal(0.12)))
    fio2_percent = np.where(fio2 < 0.25, 21, np.clip(5 * np.rint(20.0 * fio2), 25, 100))  # 0.21 or steps of 0.05
    cap_refill = c.uniform() < _sigmoid(-3.0 + 1.2 * z)
    weight = c.col("weight") + c.normal(1.0) * (~c.kind(_ADM))

    # Gross outliers like the real data's typos (a lost decimal point: 98.0 charted as 9800).
    spo2 = np.where(c.uniform() < _SPO2_OUTLIER_RATE, spo2 * 100, spo2)
    dbp = np.where(c.uniform() < _DBP_OUTLIER_RATE, np.maximum(dbp, 50) * 100, dbp)

    # Glasgow coma scale: a neurological impairment that worsens with severity and sedation; the
    # total is the sum of the components (an intubated patient's verbal score counts 1).
    g = c.col("neuro") + 0.45 * z + 1.2 * c.col("vent")
    eye = 4 - _levels(g + c.normal(0.3), (0.6, 1.3, 2.0))
    motor = 6 - _levels(g + c.normal(0.3), (1.0, 1.6, 2.1, 2.5, 2.9))
    verbal = 5 - _levels(g + c.normal(0.3), (0.3, 0.9, 1.5, 2.1))
    intubated = c.col("vent") & (c.uniform() < 0.9)
    total = eye + motor + np.where(intubated, 1, verbal)
    verbal = np.where(intubated, 0, verbal)
    carevue = np.broadcast_to(c.col("carevue"), (c.n, _SLOTS))

    def integer(x, lo, hi):
        return _INT_TEXT[np.clip(x, lo, hi).astype(np.int64)]

    def tenths(x, lo, hi):
        return _ONE_DECIMAL_TEXT[np.rint(np.clip(x, lo, hi) * 10.0).astype(np.int64)]

    return {
        "Capillary refill rate": np.array(["0.0", "1.0"], dtype=object)[cap_refill.astype(np.int64)],
        "Diastolic blood pressure": integer(dbp, 0, 20000),
        "Fraction inspired oxygen": _FRACTION_TEXT[fio2_percent.astype(np.int64)],
        "Glascow coma scale eye opening": _spelled(_EYE, eye, carevue),
        "Glascow coma scale motor response": _spelled(_MOTOR, motor, carevue),
        "Glascow coma scale total": _INT_TEXT[total],
        "Glascow coma scale verbal response": _spelled(_VERBAL, verbal, carevue),
        "Glucose": integer(glucose, 30, 900),
        "Heart Rate": integer(hr, 25, 230),
        "Height": tenths(np.broadcast_to(c.col("height"), (c.n, _SLOTS)), 0.0, 500.0),
        "Mean blood pressure": integer(mbp, 0, 300),
        "Oxygen saturation": integer(spo2, 0, 20000),
        "Respiratory rate": integer(rr, 4, 60),
        "Systolic blood pressure": integer(sbp, 0, 300),
        "Temperature": tenths(temp, 32.0, 42.5),
        "Weight": tenths(weight, 0.0, 500.0),
        "pH": _TWO_DECIMAL_TEXT[np.rint(np.clip(ph, 6.8, 7.7) * 100.0).astype(np.int64)],
    }


def _csv_bodies(c: _Chunk, columns: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Join the observed cells into rows: slots with at least one observation, in time order."""
    observed = c.valid & np.any([mask for mask, _ in columns], axis=0)
    key = np.where(observed, c.minutes, np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")
    kept = np.take_along_axis(observed, order, 1)
    flat = [_HOURS_TEXT[np.take_along_axis(c.minutes, order, 1)[kept]].tolist()]
    for mask, text in columns:
        cells = np.where(mask, text, "")
        flat.append(np.take_along_axis(cells, order, 1)[kept].tolist())
    lines = list(map(",".join, zip(*flat)))
    counts = kept.sum(axis=1)
    ends = np.cumsum(counts)
    return ["".join(line + "\n" for line in lines[end - count:end]) for count, end in zip(counts, ends)]


def _levels(value: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """How many of ``thresholds`` ``value`` exceeds (0..len(thresholds))."""
    return sum((value > th).astype(np.int64) for th in thresholds)


def _spelled(table: dict[str, tuple[str, ...]], score: np.ndarray, carevue: np.ndarray) -> np.ndarray:
    """GCS scores as text, in the CareVue or MetaVision spelling of each episode."""
    words = np.array(table["carevue"], dtype=object)[score]
    numbered = np.array(table["metavision"], dtype=object)[score]
    return np.where(carevue, words, numbered)
