"""Hand-written PhysioNet 2012 record files for the tests (the challenge's text format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def record_text(rid, rows=(), *, age=60, gender=1, height=175, icutype=3, weight=80, header=True):
    lines = ["Time,Parameter,Value"] if header else []
    lines += [f"00:00,RecordID,{rid}", f"00:00,Age,{age}", f"00:00,Gender,{gender}",
              f"00:00,Height,{height}", f"00:00,ICUType,{icutype}", f"00:00,Weight,{weight}"]
    lines += [row if isinstance(row, str) else f"{row[0]},{row[1]},{row[2]}" for row in rows]
    return "\n".join(lines) + "\n"


def write_set(root: Path, records: dict, outcomes: dict | None = None, letter: str = "a") -> Path:
    """records: {rid: text or rows}; outcomes: {rid: (saps, sofa, death)} written as Outcomes-<letter>.txt."""
    set_dir = root / f"set-{letter}"
    set_dir.mkdir(parents=True, exist_ok=True)
    for rid, content in records.items():
        text = content if isinstance(content, str) else record_text(rid, content)
        (set_dir / f"{rid}.txt").write_text(text)
    if outcomes is not None:
        lines = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
        lines += [f"{rid},{s},{f},5,-1,{d}" for rid, (s, f, d) in outcomes.items()]
        (root / f"Outcomes-{letter}.txt").write_text("\n".join(lines) + "\n")
    return root


def small_cohort(root: Path, shift: float = 0.0, n: int = 60, seed: int = 1) -> Path:
    """``n`` records (RecordID 3000...) with HR and Glucose series, static descriptors and outcomes
    (about 30 % deaths); ``shift`` is added to every HR and Glucose value (a shifted copy)."""
    rng = np.random.default_rng(seed)
    records, outcomes = {}, {}
    for k in range(n):
        rid = str(3000 + k)
        rows = [(f"{h:02d}:{int(m):02d}", "HR", round(float(v) + shift, 1))
                for h, m, v in zip(range(2, 40, 3), rng.integers(0, 60, 13), rng.normal(85, 15, 13))]
        rows += [(f"{h:02d}:00", "Glucose", round(float(v) + shift, 1)) for h, v in zip((4, 20), rng.normal(130, 30, 2))]
        records[rid] = record_text(rid, rows, age=int(rng.integers(20, 90)), icutype=int(rng.integers(1, 5)))
        outcomes[rid] = (int(rng.integers(5, 25)), int(rng.integers(0, 12)), int(rng.random() < 0.3))
    return write_set(root, records, outcomes)
