"""``condense data``: make a synthetic cohort, export split tensors, inspect data, time the reader.

* ``condense data synth --out DIR --episodes N --seed S [--difficulty D]``
* ``condense data tensors --data DATA --split train|val|test --out FILE.npz``
* ``condense data inspect --data DATA``
* ``condense data speed --episodes 21000 [--workers N]``

``DATA`` is anything :func:`condense.data.load_dataset` accepts: an IHM benchmark folder,
``synthetic[:EPISODES[:SEED]]`` or ``physionet2012:PATH``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from condense.commands.paths import output_file, output_folder
from condense.io import atomic_path, write_json

# numpy is imported inside the functions: registering the commands needs none.


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="make, export, inspect and time the data (synth | tensors | inspect | speed)",
        description="Data tools: write a synthetic cohort, export one split as arrays, inspect a data "
        "source, or measure the reader's throughput.",
    )
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    s = actions.add_parser(
        "synth",
        help="write a synthetic cohort in the IHM benchmark layout",
        description="Write a synthetic ICU cohort into DIR in the MIMIC-III IHM benchmark layout "
        "(train/, test/, listfiles); the same --episodes/--seed/--difficulty give identical files.",
    )
    s.add_argument("--out", required=True, type=output_folder, help="folder to create (must not exist, or be empty)")
    s.add_argument("--episodes", type=int, required=True, help="number of episode files")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--difficulty", type=float, default=None, help="0..1, the unobserved share of the death risk (default: the generator's)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(handler=cmd_synth)

    t = actions.add_parser(
        "tensors",
        help="write one split's raw arrays (X, y, stays) to an .npz file",
        description="Write the split's raw discretized tensors to FILE.npz: X (N, 48, 76) float32 (not "
        "normalized; (N, T, C) for other sources), y (N,) int, stays (N,) unicode; numpy.load(FILE, allow_pickle=False) reads it.",
    )
    _data_options(t)
    t.add_argument("--split", required=True, choices=("train", "val", "test"))
    t.add_argument("--out", required=True, type=output_file, help="the .npz file to write")
    t.set_defaults(handler=cmd_tensors)

    i = actions.add_parser(
        "inspect",
        help="episodes, deaths, observation rates, value ranges and bad input of a data source",
        description="Summarize DATA: episodes and deaths per split, per variable the fraction of "
        "hourly bins observed and of episodes with any observation, value ranges of observed values "
        "(categorical: most frequent values), and the bad-input summary.",
    )
    _data_options(i)
    i.add_argument("--json", default=None, type=output_file, help="also write the summary to this JSON file")
    i.set_defaults(handler=cmd_inspect)

    sp = actions.add_parser(
        "speed",
        help="time CSV -> arrays on a synthetic cohort (1 worker, all cores, cache)",
        description="Generate (or reuse from the cache) a synthetic cohort of EPISODES episodes and time "
        "the IHM reader from CSV files to arrays: the benchmark-style per-row discretizer on a sample, "
        "then condense with 1 worker and with WORKERS (no cache), then CSV -> cached arrays and a cache hit.",
    )
    sp.add_argument("--episodes", type=int, default=21000, help="cohort size (default 21000, the real task's)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--workers", type=int, default=None, help="processes for the parallel run (default: all cores)")
    sp.add_argument("--reference-episodes", type=int, default=500, help="episodes timed with the per-row reference (default 500)")
    sp.add_argument("--cache-dir", default=None, help="where the cohort is generated/reused (default $CONDENSE_CACHE or ~/.cache/condense)")
    sp.add_argument("--json", default=None, type=output_file, help="also write the timings to this JSON file")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(handler=cmd_speed)


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="IHM folder, synthetic[:EPISODES[:SEED]] or physionet2012:PATH")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level validation split when the data has none")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input instead of counting it")
    p.add_argument("--cache-dir", default=None, help="array cache (default $CONDENSE_CACHE or ~/.cache/condense)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


# --------------------------------------------------------------------------------------------
# synth
# --------------------------------------------------------------------------------------------
def cmd_synth(args: argparse.Namespace) -> int:
    from condense.data.synthetic import write_cohort

    options = {} if args.difficulty is None else {"difficulty": args.difficulty}
    out = write_cohort(args.out, args.episodes, args.seed, quiet=args.quiet, **options)
    print(f"wrote a synthetic cohort of {args.episodes} episodes (seed {args.seed}) to {out}")
    return 0


# --------------------------------------------------------------------------------------------
# tensors
# --------------------------------------------------------------------------------------------
def cmd_tensors(args: argparse.Namespace) -> int:
    import numpy as np

    from condense.data import load_dataset

    dataset = load_dataset(args.data, seed=args.seed, strict=args.strict, cache_dir=args.cache_dir, quiet=args.quiet)
    split = dataset.split(args.split)
    stays = np.asarray(split.ids)
    if stays.dtype.kind != "U":
        stays = stays.astype(str)
    write_tensors(args.out, X=split.X, y=split.y, stays=stays)
    deaths = int(np.sum(split.y == 1))
    print(
        f"wrote {args.out}: {args.split} split of {args.data}, X {tuple(split.X.shape)} float32 (raw), "
        f"y ({len(split)},) with {deaths} deaths, stays ({len(split)},) {stays.dtype}"
    )
    return 0


def write_tensors(path, *, X, y, stays) -> Path:
    """Write ``X`` (float32), ``y`` and ``stays`` to an uncompressed ``.npz``, atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy never appends ".npz" to the name
            np.savez(fh, X=np.asarray(X, dtype=np.float32), y=np.asarray(y), stays=np.asarray(stays))
    return Path(path)


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from condense.data import load_dataset

    dataset = load_dataset(args.data, seed=args.seed, strict=args.strict, cache_dir=args.cache_dir, quiet=args.quiet)
    summary = describe_dataset(dataset)
    print(format_description(summary, args.data))
    if args.json:
        write_json(args.json, summary)
    return 0


def describe_dataset(dataset) -> dict:
    """Episodes and deaths per split; per variable observation rates and observed-value ranges.

    Works on any :class:`~condense.data.layout.ChannelLayout`: a variable's channels are those
    sharing its name in ``layout.variables`` (mask channels excluded), its mask is their
    ``observed_by`` channel. Statistics are over all three splits together.
    """
    import numpy as np

    layout = dataset.layout
    splits = {name: dataset.split(name) for name in ("train", "val", "test")}
    out = {"source": dataset.source, "fingerprint": dataset.fingerprint, "issues": dict(dataset.issues), "splits": {}, "variables": []}
    for name, split in splits.items():
        n, deaths = len(split), int(np.sum(split.y == 1))
        out["splits"][name] = {"episodes": n, "deaths": deaths, "prevalence": deaths / n if n else float("nan")}
    n_all = sum(len(s) for s in splits.values())
    deaths_all = sum(v["deaths"] for v in out["splits"].values())
    out["splits"]["all"] = {"episodes": n_all, "deaths": deaths_all, "prevalence": deaths_all / n_all if n_all else float("nan")}

    masks = set(layout.mask_channels)
    groups: dict[str, list[int]] = {}
    for c in range(layout.width):
        if c in masks:
            continue
        name = layout.variables[c] if layout.variables else layout.names[c]
        groups.setdefault(name, []).append(c)
    Xs = [s.X for s in splits.values() if len(s)]
    for name, channels in groups.items():
        mask_channel = layout.observed_by[channels[0]]
        if mask_channel >= 0:
            observed = [X[:, :, mask_channel] > 0.5 for X in Xs]
        else:
            observed = [np.ones(X.shape[:2], dtype=bool) for X in Xs]
        bins = sum(int(o.size) for o in observed)
        entry = {
            "variable": name,
            "channels": channels,
            "bins_observed": sum(int(o.sum()) for o in observed) / bins if bins else float("nan"),
            "episodes_observed": sum(int(o.any(axis=1).sum()) for o in observed) / n_all if n_all else float("nan"),
        }
        if len(channels) == 1:
            values = np.concatenate([X[:, :, channels[0]][o] for X, o in zip(Xs, observed)]) if Xs else np.zeros(0)
            entry["kind"] = "continuous" if channels[0] in layout.continuous else "value"
            entry["observed_values"] = int(values.size)
            if values.size:
                entry["min"], entry["median"], entry["max"] = (float(v) for v in np.percentile(values, [0, 50, 100]))
        else:
            counts = np.zeros(len(channels), dtype=np.int64)
            for X, o in zip(Xs, observed):
                counts += (X[:, :, channels] > 0.5)[o].sum(axis=0).astype(np.int64)
            labels = [layout.names[c].split("->", 1)[-1] for c in channels]
            entry["kind"] = "categorical"
            entry["observed_values"] = int(counts.sum())
            entry["value_counts"] = {label: int(n) for label, n in sorted(zip(labels, counts.tolist()), key=lambda t: -t[1]) if n}
        out["variables"].append(entry)
    return out


def format_description(summary: dict, data: str) -> str:
    """The ``inspect`` report as text."""
    lines = [f"data: {data} (source {summary['source']}, fingerprint {summary['fingerprint'][:12]})", ""]
    lines.append(f"{'split':<6} {'episodes':>9} {'deaths':>7} {'prevalence':>10}")
    for name, s in summary["splits"].items():
        lines.append(f"{name:<6} {s['episodes']:>9} {s['deaths']:>7} {s['prevalence']:>9.1%}")
    lines += ["", f"{'variable':<36} {'bins obs':>8} {'episodes':>8}  values (observed bins)"]
    for v in summary["variables"]:
        head = f"{v['variable'][:36]:<36} {v['bins_observed']:>8.1%} {v['episodes_observed']:>8.1%}  "
        if v["kind"] == "categorical":
            top = list(v["value_counts"].items())
            shown = ", ".join(f"{label!s}: {n}" for label, n in top[:4])
            more = f", +{len(top) - 4} more" if len(top) > 4 else ""
            lines.append(head + (f"{len(top)} value(s): {shown}{more}" if top else "never observed"))
        elif "min" in v:
            lines.append(head + f"min {v['min']:.4g}  median {v['median']:.4g}  max {v['max']:.4g}")
        else:
            lines.append(head + "never observed")
    lines.append("")
    issues = summary["issues"]
    if issues:
        lines.append("bad input: " + ", ".join(f"{kind} {n}" for kind, n in issues.items()))
    else:
        lines.append("bad input: none")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------
def cmd_speed(args: argparse.Namespace) -> int:
    import numpy as np

    from condense.data.ihm import default_workers, digest_files, load_ihm, read_episodes, read_listfile
    from condense.data.issues import IssueLog
    from condense.data.reference import discretize_reference
    from condense.data.synthetic import ensure_cohort

    workers = args.workers or default_workers()
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if args.reference_episodes < 1:
        raise ValueError(f"--reference-episodes must be at least 1, got {args.reference_episodes}")
    root = ensure_cohort(args.episodes, args.seed, cache_dir=args.cache_dir, quiet=args.quiet)
    log = IssueLog()
    paths = [root / e.folder / e.stay for lf, folder in ((root / "train" / "listfile.csv", "train"), (root / "test" / "listfile.csv", "test"))
             for e in read_listfile(lf, folder, issues=log)]
    digest_files(paths, workers)  # warm the page cache: the timings below measure parsing, not the disk
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results: dict = {"episodes": len(paths), "cohort": str(root), "cores": default_workers(), "load_average_1min": load}
    print(f"cohort: {len(paths)} episodes at {root}")
    print(f"machine: {default_workers()} cores available to this process, 1-minute load average {load:.1f}")

    # the benchmark's per-row discretizer on a sample (its reader: split each line on commas)
    sample = paths[: args.reference_episodes]
    started = time.perf_counter()
    reference = []
    for path in sample:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
            rows = [line.strip().split(",") for line in fh if line.strip()]
        reference.append(discretize_reference(rows, header))
    seconds = time.perf_counter() - started
    results["per_row_reference"] = {"episodes": len(sample), "seconds": seconds, "episodes_per_s": len(sample) / seconds}
    ref_rate = len(sample) / seconds
    print(f"{'benchmark-style per-row discretizer':<44} {len(sample):>6} episodes {seconds:7.2f} s {ref_rate:8.0f} episodes/s")
    X_sample, _ = read_episodes(sample, workers=1)
    same_as_reference = bool(np.array_equal(np.stack(reference), X_sample))

    runs = {}
    for label, w in (("1 worker", 1), (f"{workers} workers", workers)):
        started = time.perf_counter()
        dataset = load_ihm(root, workers=w, use_cache=False, quiet=True)
        seconds = time.perf_counter() - started
        runs[w] = dataset
        rate = len(paths) / seconds
        results[f"workers_{w}"] = {"seconds": seconds, "episodes_per_s": rate, "x_reference": rate / ref_rate}
        print(f"{'condense, ' + label + ', CSV -> arrays':<44} {len(paths):>6} episodes {seconds:7.2f} s {rate:8.0f} episodes/s ({rate / ref_rate:.1f}x per-row)")
    one, many = runs[1], runs[workers]
    same_across_workers = all(np.array_equal(one.split(s).X, many.split(s).X) for s in ("train", "val", "test"))

    cache = Path(tempfile.mkdtemp(prefix="condense-speed-cache-"))
    try:
        started = time.perf_counter()
        load_ihm(root, workers=workers, cache_dir=cache, quiet=True)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        load_ihm(root, workers=workers, cache_dir=cache, quiet=True)
        hit = time.perf_counter() - started
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    results["cold_cache_seconds"], results["cache_hit_seconds"] = cold, hit
    print(f"{'condense, ' + str(workers) + ' workers, CSV -> cached arrays':<44} {len(paths):>6} episodes {cold:7.2f} s {len(paths) / cold:8.0f} episodes/s")
    print(f"{'cache hit (content digests + load)':<44} {len(paths):>6} episodes {hit:7.2f} s")
    results["identical_across_workers"] = same_across_workers
    results["identical_to_reference"] = same_as_reference
    print(f"arrays identical with 1 and {workers} workers: {'yes' if same_across_workers else 'NO'}; "
          f"per-row reference agrees on {len(sample)} episodes: {'yes' if same_as_reference else 'NO'}")
    if args.json:
        write_json(args.json, results)
    if not (same_across_workers and same_as_reference):
        print("condense data speed: error: the arrays differ (see above)", file=sys.stderr)
        return 1
    return 0
