"""PhysioNet 2012 set -> :class:`~condense.data.Dataset`; new records -> a score-ready :class:`Split`.

:func:`load_physionet2012` reads a set, splits it by record (seeded, stratified by label), fits
the state on the training records only, discretizes every record with it and caches the arrays
(:mod:`condense.data.cache`) under the data's SHA-256 and every setting.
:func:`load_physionet2012_records` applies a saved state to records it has never seen, never
refitting (``docs/physionet2012.md``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from condense.data.cache import ArrayCache, cache_key
from condense.data.dataset import Dataset, Split
from condense.data.physionet2012.channels import FORMAT_VERSION, NORMAL_VALUES, PHYSIONET_LAYOUT, VALID_RANGES
from condense.data.physionet2012.files import read_files
from condense.data.physionet2012.parse import parse_files, read_records
from condense.data.physionet2012.state import WINSOR_QUANTILES, PhysioNetState

__all__ = ["REFERENCE_SCORES", "load_physionet2012", "load_physionet2012_records", "split_records"]

#: The outcomes file's bedside severity scores: ``Dataset.extras`` key -> name in tables.
#: Higher means sicker, so each score is used as-is as a risk score (AUROC on records with a score).
REFERENCE_SCORES = {"saps_i": "SAPS-I", "sofa": "SOFA"}


def split_records(y, *, seed: int = 0, fractions=(0.70, 0.15, 0.15)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded record-level train/val/test indices, stratified by label (``-1`` is a stratum).

    Records are ordered by (label, random key); walking that order, each record joins the split
    furthest below its share so far, so every stratum is split in proportion and each total is
    within one record of ``len(y) * fraction``. Indices come back sorted.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not math.isclose(float(f.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    y = np.asarray(y)
    n = len(y)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(n), y))
    taken = np.zeros(3)
    assign = np.empty(n, dtype=np.int64)
    for k, i in enumerate(order):
        j = int(np.argmax((k + 1) * f - taken))
        assign[i] = j
        taken[j] += 1
    return tuple(np.flatnonzero(assign == j) for j in range(3))


def _settings(seed: int, split) -> dict:
    return {
        "reader": "physionet2012",
        "format_version": FORMAT_VERSION,
        "seed": int(seed),
        "split": [float(s) for s in split],
        "winsor_quantiles": list(WINSOR_QUANTILES),
        "valid_ranges": {k: list(v) for k, v in sorted(VALID_RANGES.items())},
        "normal_values": dict(sorted(NORMAL_VALUES.items())),
    }


def load_physionet2012(
    path: str | os.PathLike,
    *,
    seed: int = 0,
    strict: bool = False,
    cache_dir=None,
    quiet: bool = False,
    split=(0.70, 0.15, 0.15),
    use_cache: bool = True,
) -> Dataset:
    """Read a PhysioNet 2012 set into train/val/test arrays (raw values, not normalized).

    The outlier/imputation state is fitted on the training records only and returned as JSON in
    ``extras["source_state"]`` (save it with a model; score new records with
    :func:`load_physionet2012_records`). ``extras["saps_i"]`` and ``extras["sofa"]`` hold the
    outcomes file's scores per split (NaN where ``-1``); ``extras["reference_scores"]`` names
    them (:data:`REFERENCE_SCORES`) for the benchmark's reference rows. Arrays are cached on disk
    (:mod:`condense.data.cache`), keyed by the data's content hash and these settings.

    Args:
        path: ``set-a.tar.gz``, a folder holding one ``set-*/`` folder, or the set folder.
        seed: seed of the stratified record-level split.
        strict: raise at the first format problem (``file:line``) instead of counting it.
        cache_dir: cache folder; default ``$CONDENSE_CACHE`` or ``~/.cache/condense``.
        quiet: no progress output.
        split: train/val/test fractions.
        use_cache: read and write the array cache (False: always parse, write nothing).
    """
    started = time.perf_counter()
    files = read_files(path)
    settings = _settings(seed, split)
    fingerprint = cache_key("physionet2012", files.data_hash, settings)
    key = cache_key(fingerprint, "strict" if strict else "lenient")  # strict must re-check the input
    cache = ArrayCache(cache_dir) if use_cache else None
    cached = cache.get("physionet2012", key) if cache is not None else None
    if cached is not None:
        dataset = _dataset_from_arrays(cached, fingerprint)
        _report(dataset, files.source, time.perf_counter() - started, quiet, cached=True)
        return dataset

    raw = parse_files(files, strict=strict, quiet=quiet)
    parts = split_records(raw.y, seed=seed, fractions=split)
    state = PhysioNetState.fit(raw, parts[0])
    X, value_issues = state.transform(raw)
    issues = Counter(raw.issues)
    issues.update(value_issues)
    arrays: dict[str, np.ndarray] = {}
    for name, index in zip(("train", "val", "test"), parts):
        arrays[f"{name}/X"] = X[index]
        arrays[f"{name}/y"] = raw.y[index]
        arrays[f"{name}/ids"] = raw.ids[index]
        arrays[f"{name}/saps_i"] = raw.saps_i[index]
        arrays[f"{name}/sofa"] = raw.sofa[index]
    arrays["meta"] = np.array(json.dumps({"issues": dict(sorted(issues.items())), "state": state.to_json()}))
    if cache is not None:
        try:
            cache.put("physionet2012", key, arrays)
        except OSError as exc:  # a read-only cache must not stop the run
            print(f"physionet2012: warning: cannot write the array cache: {exc}", file=sys.stderr)
    dataset = _dataset_from_arrays(arrays, fingerprint)
    _report(dataset, files.source, time.perf_counter() - started, quiet, cached=False)
    return dataset


def _dataset_from_arrays(arrays: dict, fingerprint: str) -> Dataset:
    meta = json.loads(str(arrays["meta"]))
    splits = {
        name: Split(X=arrays[f"{name}/X"], y=arrays[f"{name}/y"].astype(np.int64), ids=arrays[f"{name}/ids"])
        for name in ("train", "val", "test")
    }
    return Dataset(
        source="physionet2012",
        layout=PHYSIONET_LAYOUT,
        **splits,  # train, val, test
        fingerprint=fingerprint,
        issues=meta["issues"],
        extras={
            "saps_i": {name: arrays[f"{name}/saps_i"] for name in splits},
            "sofa": {name: arrays[f"{name}/sofa"] for name in splits},
            "reference_scores": dict(REFERENCE_SCORES),
            "source_state": meta["state"],
        },
    )


def _report(dataset: Dataset, source: str, seconds: float, quiet: bool, *, cached: bool) -> None:
    if quiet:
        return
    sizes = {name: len(dataset.split(name)) for name in ("train", "val", "test")}
    labels = np.concatenate([dataset.split(name).y for name in sizes])
    deaths = int((labels == 1).sum())
    problems = sum(dataset.issues.values())
    print(
        f"physionet2012: {Path(source).name}: {sum(sizes.values())} records "
        f"(train {sizes['train']}, val {sizes['val']}, test {sizes['test']}), {deaths} deaths, "
        f"{problems} issues{' (cached)' if cached else ''}, {seconds:.1f} s",
        file=sys.stderr,
    )
    if problems:
        grouped = Counter()
        for key, count in dataset.issues.items():
            grouped[key.split(":", 1)[0]] += count
        print("physionet2012: issues: " + ", ".join(f"{k} {v}" for k, v in sorted(grouped.items())), file=sys.stderr)


def load_physionet2012_records(
    path: str | os.PathLike,
    state: PhysioNetState | dict,
    *,
    strict: bool = False,
    quiet: bool = True,
) -> tuple[Split, dict[str, int]]:
    """Score-ready arrays for every record at ``path`` using a saved state (never refitted).

    Returns a :class:`Split` of all records in ascending RecordID (``y`` is ``-1`` where the
    folder has no outcomes file) and the issue counts of this read.
    """
    if isinstance(state, dict):
        state = PhysioNetState.from_json(state)
    raw = read_records(path, strict=strict, quiet=quiet)
    X, value_issues = state.transform(raw)
    issues = Counter(raw.issues)
    issues.update(value_issues)
    return Split(X=X, y=raw.y, ids=raw.ids), dict(sorted(issues.items()))
