"""The benchmark's figures: ``pareto.png``, ``roc.png``, ``calibration.png`` and ``summary.png``, each
also as ``.svg``.

* :func:`pareto_figure` — AUROC against the deployable file's bytes and against its LiteRT
  latency: the Pareto frontier (:func:`pareto_frontier`) as a staircase, one colour per model
  family, one marker per format, a thin line from every baseline to its condensed variants,
  labels only on the frontier and the baselines, placed so that none overlaps another
  (:func:`place_labels`).
* :func:`roc_figure` — one panel per family (LSTM, hLSTM, DNN, peers & reference scores), the
  family's baseline as the dashed black reference curve, AUROC [95 % interval] in the legend.
* :func:`calibration_figure` — reliability diagrams, one panel per family: observed event rate
  against mean predicted probability per decile of predicted risk, for the family's baseline
  (dashed black), its best condensed row and that row's int8 file (peers: every peer whose
  scores are probabilities); ECE and calibration slope in the legend.
* :func:`summary_figure` — every row that has a baseline: file size ÷ baseline, latency ÷
  baseline and the paired AUROC difference with its interval, grouped by method.

The table's rows are those of :mod:`condense.bench.table` (in memory, or :func:`~condense.bench.table.read_table`
from ``table.csv``): numbers go through :func:`~condense.bench.table.finite`, and a row's group is its
``condensation`` column.
Failed rows (``status`` not ``ok``) and rows without the numbers a panel needs are left out of
it and named in the figure's footnote. Figures are drawn with the Agg canvas (no pyplot, no
global state) and written atomically, without dates in their metadata, so the same table gives
the same files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from condense.bench.table import finite, is_ok
from condense.evaluate.metrics import auroc, calibration
from condense.io import atomic_path

# Deferred on purpose: matplotlib and scikit-learn are imported inside the functions that use them, so importing this
# module stays light.

#: Resolution of the PNG files (the canvas is laid out at the same one, so placed labels keep their gaps).
DPI = 120
#: Colour and legend name of each model family (``family`` column); every other family is drawn as ``other``.
FAMILIES = {"lstm": ("LSTM", "tab:blue"), "hlstm": ("hLSTM", "tab:green"), "dnn": ("DNN", "tab:orange"),
            "other": ("LR & reference scores", "tab:purple")}
#: Marker and legend name of each format of a row's deployable form.
MARKERS = {"keras": ("^", "Keras model (no .tflite)"), "float32": ("o", "float32 .tflite"),
           "dynamic": ("D", "dynamic .tflite (int8 weights)"), "int8": ("s", "int8 .tflite (full integer)"),
           "peer": ("X", "peer or reference")}
#: Marker of a format registered later that this module does not know yet.
OTHER_MARKER = "P"
#: Panels of the ROC figure: (group, title).
ROC_PANELS = (("lstm", "LSTM"), ("hlstm", "hLSTM"), ("dnn", "DNN"), ("peer", "peers & reference scores"))
#: Groups of the summary figure, in order: (group, heading).
METHODS = (("pruning", "pruning"), ("hlstm", "hLSTM"), ("distillation", "distillation"),
           ("quantization", "quantization (.tflite files)"),
           ("step", "step files (one hour per call)"), ("peer", "peers"))
#: Colours of the curves within one ROC panel (tab10 without its grey, then tab20's light shades).
CURVE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                 "tab:olive", "tab:cyan", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94")
FIGURE_NAMES = ("pareto", "roc", "calibration", "summary")
#: Bins of the reliability diagrams (equal-frequency: deciles of predicted risk), as in the table's ``ece``.
CALIBRATION_BINS = 10


# -- reading the table ---------------------------------------------------------------------------
def _status(row: dict) -> str:
    """What happened to a row that did not run: its ``status`` (``failed``, ``skipped``)."""
    return str(row.get("status") or "failed")


def family_key(row: dict) -> str:
    """The row's colour key: its ``family`` when it is a model family, else ``"other"``."""
    family = row.get("family") or ""
    return family if family in FAMILIES else "other"


def is_peer(row: dict) -> bool:
    """Peers (tfmot, Keras 3's default conversion, the logistic regression) and reference scores."""
    return row.get("condensation") in ("peer", "reference")


def format_key(row: dict) -> str:
    """The row's marker key: ``peer``, else the format of its ``.tflite`` file, else ``keras``."""
    if is_peer(row):
        return "peer"
    return str(row.get("tflite_format") or "") or "keras"


def file_bytes(row: dict) -> float | None:
    """Bytes of the row's deployable form: its ``.tflite`` (or LR) file, else its ``.keras`` file."""
    value = finite(row.get("deploy_bytes"))
    return value if value is not None else finite(row.get("keras_bytes"))


def litert_latency(row: dict) -> float | None:
    """Median LiteRT latency of the row's file (batch 1, one thread, µs)."""
    return finite(row.get("litert_latency_us_median"))


def _rows_by_name(table: Sequence[dict]) -> dict[str, dict]:
    return {str(r.get("row")): r for r in table}


def root(row: dict, by_name: dict[str, dict]) -> str:
    """The first row of the row's baseline chain that has no baseline (itself when it has none)."""
    name, seen = str(row.get("row")), set()
    while by_name.get(name, {}).get("baseline") and name not in seen:
        seen.add(name)
        name = str(by_name[name]["baseline"])
    return name


def _interval(row: dict, prefix: str) -> tuple[float | None, float | None, float | None]:
    return finite(row.get(prefix)), finite(row.get(f"{prefix}_low")), finite(row.get(f"{prefix}_high"))


def auroc_text(row: dict | None, fallback: float | None = None) -> str:
    """``0.846 [0.809, 0.881]`` from the table, or the fallback value alone."""
    a, lo, hi = _interval(row or {}, "auroc")
    if a is None:
        return "–" if fallback is None else f"{fallback:.3f}"
    return f"{a:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{a:.3f}"


# -- the frontier --------------------------------------------------------------------------------
def pareto_frontier(points: Sequence) -> list[int]:
    """Indices of the non-dominated points, by increasing cost.

    ``points`` holds ``(cost, value)`` pairs (bytes or latency, AUROC): lower cost and higher value
    are better. A point is dominated when another costs no more and scores at least as much, one of
    the two strictly. Points that are exactly equal do not dominate each other and are all kept;
    entries that are None or have a missing / NaN / infinite coordinate are skipped.
    """
    valid = []
    for i, point in enumerate(points):
        if point is None:
            continue
        cost, value = (finite(v) for v in point)
        if cost is not None and value is not None:
            valid.append((cost, -value, i))
    valid.sort()
    frontier, best, k = [], -math.inf, 0
    while k < len(valid):
        cost = valid[k][0]
        group = [p for p in valid[k:] if p[0] == cost]
        k += len(group)
        top = -group[0][1]
        if top > best:
            frontier += [p[2] for p in group if -p[1] == top]
            best = top
    return frontier


# -- drawing helpers -----------------------------------------------------------------------------
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> list[Path]:
    """Write ``fig`` to ``path`` (PNG) and beside it as ``.svg``, atomically; returns both paths."""
    import matplotlib

    path = Path(path)
    written = []
    # a fixed salt makes the SVG's element ids repeatable; no date in either file's metadata
    with matplotlib.rc_context({"svg.hashsalt": "condense", "svg.fonttype": "path"}):
        for target, fmt, metadata in ((path, "png", {"Software": None}),
                                      (path.with_suffix(".svg"), "svg", {"Date": None, "Creator": None})):
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
            written.append(target)
    return written


def _note(fig, lines: list[str]) -> None:
    """A small footnote under the figure (the saved file's tight box takes it in)."""
    if lines:
        fig.text(0.01, 0.0, "\n".join(lines), fontsize=7, color="0.35", va="top", ha="left", wrap=True)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _log_ticks(ax, unit: str) -> None:
    """Readable ticks on a log x axis (limits set): 1, 2, 5 per decade (fewer on wide axes), in the
    unit given ("B", "µs", "×")."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def fmt(value, _pos=None):
        if unit == "B":
            for scale, name in ((1e6, "MB"), (1e3, "kB"), (1, "B")):
                if value >= scale:
                    return f"{value / scale:g} {name}"
            return f"{value:g} B"
        if unit == "×":
            return f"{value:g}×"
        return f"{value:g} {unit}"

    lo, hi = ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0, 3.0) if decades <= 4 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log_limits(values: Iterable[float], pad: float = 1.35, low_pad: float | None = None) -> tuple[float, float]:
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return 0.5, 2.0
    lo, hi = min(values), max(values)
    return lo / (low_pad or pad), hi * pad


# -- label placement -----------------------------------------------------------------------------
#: Directions tried around a point (degrees, in order: right, up-right, down-right, up, ...), and the
#: distances tried (points), nearest first.
_DIRECTIONS = (0, 45, -45, 90, -90, 135, -135, 180, 20, -20, 160, -160, 65, -65, 115, -115)
_RADII = (5, 9, 14, 20, 28, 38, 50, 64, 80, 100, 125)


@dataclass
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: "_Box", gap: float = 0.0) -> bool:
        return (self.x0 < other.x1 + gap and other.x0 < self.x1 + gap
                and self.y0 < other.y1 + gap and other.y0 < self.y1 + gap)

    def inside(self, other: "_Box") -> bool:
        return self.x0 >= other.x0 and self.x1 <= other.x1 and self.y0 >= other.y0 and self.y1 <= other.y1


def _alignment(angle: float) -> tuple[str, str]:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    ha = "left" if c > 0.3 else "right" if c < -0.3 else "center"
    va = "bottom" if s > 0.3 else "top" if s < -0.3 else "center"
    return ha, va


def place_labels(ax, items: Sequence[tuple[str, float, float]], obstacles: Sequence[tuple[float, float]] = (),
                 *, fontsize: float = 7.5, gap_px: float = 4.0, marker_px: float = 5.0) -> list:
    """Label points of ``ax`` so that no two labels overlap: greedy, in the order given.

    ``items`` are ``(text, x, y)`` in data coordinates; ``obstacles`` are further points (data
    coordinates) that labels must not cover. Each label takes the first offset of
    :data:`_DIRECTIONS` x :data:`_RADII` whose text box lies inside the axes, keeps ``gap_px``
    from every label placed so far and covers no marker; a label far from its point gets a thin
    leader line. The axes' limits must be final. Returns the annotations, in the order of ``items``.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    frame = _Box(frame.x0 + 1, frame.y0 + 1, frame.x1 - 1, frame.y1 - 1)
    to_px = ax.transData.transform
    markers = [_Box(px - marker_px, py - marker_px, px + marker_px, py + marker_px)
               for px, py in (to_px((x, y)) for x, y in [*[(i[1], i[2]) for i in items], *obstacles])]
    placed: list[_Box] = []
    labels = []
    scale = fig.dpi / 72.0
    for text, x, y in items:
        probe = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        width, height = extent.width, extent.height
        px, py = to_px((x, y))
        best = None
        for radius in _RADII:
            for angle in _DIRECTIONS:
                dx = radius * math.cos(math.radians(angle))
                dy = radius * math.sin(math.radians(angle))
                ha, va = _alignment(angle)
                ax0 = px + dx * scale - {"left": 0, "center": width / 2, "right": width}[ha]
                ay0 = py + dy * scale - {"bottom": 0, "center": height / 2, "top": height}[va]
                box = _Box(ax0, ay0, ax0 + width, ay0 + height)
                if not box.inside(frame) or any(box.overlaps(b, gap_px) for b in placed) \
                        or any(box.overlaps(m) for m in markers):
                    continue
                best = (dx, dy, ha, va, radius, box)
                break
            if best:
                break
        if best is None:  # nowhere free within the largest radius: beside the point, overlaps and all
            ha, va = "left", "bottom"
            best = (4, 3, ha, va, 5, _Box(px, py, px + width, py + height))
        dx, dy, ha, va, radius, box = best
        arrow = {"arrowstyle": "-", "color": "0.45", "lw": 0.5, "shrinkA": 0, "shrinkB": 3} if radius > 14 else None
        label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            ha=ha, va=va, arrowprops=arrow, zorder=6, annotation_clip=False,
                            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        placed.append(box)
        labels.append(label)
    return labels


# -- the Pareto figure ---------------------------------------------------------------------------
_PARETO_PANELS = (
    ("bytes", "deployable file (log scale)", "B", "AUROC against file size"),
    ("latency", "LiteRT latency per sample, batch 1, one thread (log scale)", "µs", "AUROC against speed"),
)


def _pareto_x(row: dict, panel: str) -> float | None:
    value = file_bytes(row) if panel == "bytes" else litert_latency(row)
    return value if value is not None and value > 0 else None


def _is_labelled_reference(row: dict) -> bool:
    """Baselines (no baseline of their own) and the logistic regression every row is compared with."""
    return not row.get("baseline") or row.get("family") == "lr"


def _legend_handles(families: Iterable[str], formats: Iterable[str], extra: Sequence = ()) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", marker="o", ms=7, color=FAMILIES[f][1], label=FAMILIES[f][0])
               for f in FAMILIES if f in set(families)]
    handles += [Line2D([], [], ls="none", marker=MARKERS.get(f, (OTHER_MARKER,))[0], ms=7, color="0.3",
                       label=MARKERS.get(f, (None, f"{f} .tflite"))[1])
                for f in [*MARKERS, *sorted(set(formats) - set(MARKERS))] if f in set(formats)]
    return handles + list(extra)


def pareto_figure(table: Sequence[dict]):
    """AUROC against deployable bytes (left) and LiteRT latency (right); returns ``(figure, labels)``.

    ``labels`` are the placed annotations of both panels (the frontier's rows and the baselines).
    """
    from matplotlib.lines import Line2D

    fig = _new_figure(14.5, 6.6)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.2, wspace=0.16)
    rows = [r for r in table if is_ok(r) and finite(r.get("auroc")) is not None]
    labels, left_out = [], {}
    for r in table:
        if not is_ok(r):
            left_out[str(r.get("row"))] = _status(r)
        elif finite(r.get("auroc")) is None:
            left_out[str(r.get("row"))] = "no AUROC"
    shown = [r for r in rows if any(_pareto_x(r, panel[0]) is not None for panel in _PARETO_PANELS)]
    ylo = [v for r in shown for v in (finite(r.get("auroc_low")), finite(r["auroc"])) if v is not None]
    yhi = [v for r in shown for v in (finite(r.get("auroc_high")), finite(r["auroc"])) if v is not None]
    ylim = (min(ylo) - 0.012, max(yhi) + 0.012) if shown else (0.4, 1.0)
    for ax, (panel, xlabel, unit, title) in zip(axes, _PARETO_PANELS):
        points = [(r, _pareto_x(r, panel), finite(r["auroc"])) for r in rows]
        points = [p for p in points if p[1] is not None]
        for r in rows:
            if _pareto_x(r, panel) is None and str(r.get("row")) not in left_out:
                left_out[str(r.get("row"))] = "no file size" if panel == "bytes" else "no LiteRT latency"
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test AUROC (bar: 95 % bootstrap interval)")
        ax.set_xscale("log")
        ax.grid(True, which="major", alpha=0.25)
        if not points:
            _empty(ax, "no row with an AUROC and a " + ("file size" if panel == "bytes" else "LiteRT latency"))
            continue
        where = {str(r.get("row")): (x, y) for r, x, y in points}
        frontier = {str(points[i][0].get("row")) for i in pareto_frontier([(x, y) for _, x, y in points])}
        for r, x, y in points:  # condensation paths: baseline -> variant, thin, in the variant's colour
            base = where.get(str(r.get("baseline") or ""))
            if base and family_key(r) != "other":
                ax.plot([base[0], x], [base[1], y], color=FAMILIES[family_key(r)][1], lw=0.8, alpha=0.35, zorder=1)
        for r, x, y in points:
            lo, hi = finite(r.get("auroc_low")), finite(r.get("auroc_high"))
            colour = FAMILIES[family_key(r)][1]
            if lo is not None and hi is not None:
                ax.plot([x, x], [lo, hi], color=colour, alpha=0.18, lw=2.2, solid_capstyle="butt", zorder=1)
            on_front = str(r.get("row")) in frontier
            ax.scatter([x], [y], marker=MARKERS.get(format_key(r), (OTHER_MARKER,))[0], s=46 if on_front else 34,
                       color=colour, edgecolors="black" if on_front else "white", linewidths=1.0 if on_front else 0.5,
                       zorder=4)
        front = sorted((where[n] for n in frontier), key=lambda p: p[0])
        fx, fy = [p[0] for p in front], [p[1] for p in front]
        ax.plot(fx, fy, color="black", lw=1.1, ls="--", alpha=0.75, drawstyle="steps-post", zorder=2)
        ax.set_xlim(*_log_limits([x for _, x, _ in points], pad=1.6, low_pad=2.4))  # room for labels on the left
        ax.set_ylim(*ylim)
        _log_ticks(ax, unit)
        labelled = [str(r.get("row")) in frontier or _is_labelled_reference(r) for r, _, _ in points]
        chosen = sorted((p for p, keep in zip(points, labelled) if keep),  # baselines first, then along the front
                        key=lambda p: (not _is_labelled_reference(p[0]), p[1]))
        others = [(x, y) for (_, x, y), keep in zip(points, labelled) if not keep]
        labels += place_labels(ax, [(str(r.get("row")), x, y) for r, x, y in chosen], others)
    extra = [Line2D([], [], color="black", ls="--", lw=1.1, label="Pareto frontier (nothing above-left of it)"),
             Line2D([], [], color="0.4", lw=0.8, alpha=0.6, label="baseline → its condensed variant"),
             Line2D([], [], ls="none", marker="o", ms=7, mfc="white", mec="black", label="on the frontier (labelled)")]
    handles = _legend_handles([family_key(r) for r in shown], [format_key(r) for r in shown], extra)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.5, 0.02))
    fig.suptitle("Which model to ship: test AUROC against file size and speed; labelled: the Pareto frontier "
                 "(no row is smaller or faster and better) and the baselines", fontsize=12)
    _note(fig, [f"not plotted: {', '.join(f'{k} ({v})' for k, v in left_out.items())}"] if left_out else [])
    return fig, labels


# -- the ROC figure ------------------------------------------------------------------------------
def roc_group(row: dict) -> str:
    """The ROC panel of a row: its model family, or ``peer`` for peers and reference scores."""
    if is_peer(row) or family_key(row) == "other":
        return "peer"
    return family_key(row)


def roc_figure(curves: dict, table: Sequence[dict]):
    """ROC curves (first seed) per family; the baselines of a panel's rows are its dashed black
    reference curves. ``curves`` maps a row to ``(y, score)``; legend: ``row: AUROC [low, high]``
    from the table. Step-file rows are left out (the same models as their sequence files, to 1e-7 in
    float32: the step table compares them) and the note says how many."""
    from sklearn.metrics import roc_curve

    fig = _new_figure(12.5, 11.5)
    axes = fig.subplots(2, 2).ravel()
    fig.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.07, hspace=0.22, wspace=0.15)
    by_name = _rows_by_name(table)
    steps = [name for name in curves if by_name.get(name, {}).get("condensation") == "step"]
    drawable = {name: yp for name, yp in curves.items()
                if is_ok(by_name.get(name, {"status": "ok"})) and name not in steps}
    missing = [str(r.get("row")) for r in table if str(r.get("row")) not in drawable and str(r.get("row")) not in steps]
    order = {name: i for i, name in enumerate(by_name)}

    def curve(name):
        y, p = (np.asarray(a, dtype=np.float64).reshape(-1) for a in drawable[name])
        fpr, tpr, _ = roc_curve(y, p)
        return fpr, tpr, auroc(y, p)

    for ax, (group, title) in zip(axes, ROC_PANELS):
        names = [n for n in drawable if roc_group(by_name.get(n, {})) == group]
        used = {b for n in names for b in [root(by_name.get(n, {"row": n}), by_name)] if b != n and b in drawable}
        refs = sorted(used, key=lambda b: order.get(b, len(order)))  # the baselines, in table order
        ax.plot([0, 1], [0, 1], color="0.75", lw=0.8, ls=":")
        for k, name in enumerate(refs):
            fpr, tpr, value = curve(name)
            ax.plot(fpr, tpr, color="black", lw=1.6, ls=("--", "-.", ":")[k % 3], zorder=3,
                    label=f"{name} (baseline): {auroc_text(by_name.get(name), value)}")
        for k, name in enumerate(n for n in names if n not in refs):
            fpr, tpr, value = curve(name)
            fmt = format_key(by_name.get(name, {}))
            ax.plot(fpr, tpr, color=CURVE_COLOURS[k % len(CURVE_COLOURS)], lw=1.2,
                    ls={"int8": (0, (1, 1.5)), "dynamic": (0, (5, 2))}.get(fmt, "-"),
                    label=f"{name}: {auroc_text(by_name.get(name), value)}")
        ax.set_title(title, fontsize=11)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.25)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        if names:
            ax.legend(fontsize=7, loc="lower right", title="row: AUROC [95 % interval]", title_fontsize=7,
                      handlelength=2.6)
        else:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", color="0.4", transform=ax.transAxes)
    fig.suptitle("ROC on the test set (first seed), one panel per family; dashed black: the baseline; "
                 "dotted / dash: int8 / dynamic files", fontsize=11.5)
    notes = [f"no curve: {', '.join(missing)}"] if missing else []
    if steps:
        notes.append(f"{len(steps)} step-file rows not drawn: the same models as their sequence files (table: Step files)")
    _note(fig, notes)
    return fig


# -- the calibration figure ----------------------------------------------------------------------
def _not_probability(row: dict | None) -> bool:
    """A row the table scored as a risk score, not a probability: an AUROC but no Brier (reference scores)."""
    return bool(row) and "brier" in row and finite(row.get("brier")) is None and finite(row.get("auroc")) is not None


def calibration_rows(names: Sequence[str], table: Sequence[dict]) -> dict[str, tuple[list[str], list[str]]]:
    """``{group: (references, rows)}`` of each calibration panel (groups of :data:`ROC_PANELS`), among ``names``.

    The references are the baselines of the panel's rows (the roots of their baseline chains, as in
    the ROC figure). A family panel's rows are its best condensed row (pruned or hLSTM, the highest
    table AUROC) and that row's int8 file (its dynamic file when it has no int8 one; the baseline's
    file when it has neither); the peers panel's, every peer.
    """
    by_name = _rows_by_name(table)
    order = {name: i for i, name in enumerate(by_name)}
    names = sorted(names, key=lambda n: order.get(n, len(order)))
    panels: dict[str, tuple[list[str], list[str]]] = {}
    for group, _ in ROC_PANELS:
        members = [n for n in names if roc_group(by_name.get(n, {})) == group]
        used = {b for n in members for b in [root(by_name.get(n, {"row": n}), by_name)] if b != n and b in names}
        refs = sorted(used, key=lambda b: order.get(b, len(order)))
        if group == "peer":
            panels[group] = (refs, [n for n in members if n not in refs])
            continue
        condensed = [n for n in members if n not in refs
                     and by_name.get(n, {}).get("condensation") in ("pruning", "hlstm", "distillation")]
        best = max(condensed, key=lambda n: (finite(by_name.get(n, {}).get("auroc")) or -1.0, -order.get(n, 0)),
                   default=None)
        files = [n for n in members if by_name.get(n, {}).get("condensation") == "quantization"]
        # the best row's int8 file, else its dynamic one, else the baseline's int8 / dynamic file
        files.sort(key=lambda n: (by_name[n].get("baseline") != best, format_key(by_name[n]) != "int8",
                                  order.get(n, 0)))
        files = [n for n in files if by_name[n].get("baseline") in {best, *refs[:1]} - {None}]
        rows = ([best] if best else []) + files[:1]
        panels[group] = (refs, rows or ([] if refs else [n for n in members if n not in refs][:3]))
    return panels


def calibration_figure(curves: dict, table: Sequence[dict]):
    """Reliability diagrams (first seed), one panel per family: observed event rate against mean
    predicted probability per decile of predicted risk, the diagonal, the baseline dashed black;
    legend: ``row: ECE …, slope …`` from the table (computed from the curve where the table has none).
    Rows whose scores are not probabilities (reference scores) are left out and named."""

    fig = _new_figure(12.5, 11.8)
    axes = fig.subplots(2, 2).ravel()
    fig.subplots_adjust(left=0.07, right=0.98, top=0.91, bottom=0.07, hspace=0.22, wspace=0.15)
    by_name = _rows_by_name(table)
    cal, skipped = {}, {}
    for name, (y, p) in curves.items():
        row = by_name.get(name)
        y, p = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (y, p))
        if row is not None and not is_ok(row):
            skipped[name] = _status(row)
        elif _not_probability(row) or not (p.size and np.all((p >= 0.0) & (p <= 1.0))):
            skipped[name] = "not a probability"
        elif not (0 < y.sum() < y.size):
            skipped[name] = "one class"
        else:
            cal[name] = calibration(y, p, n_bins=CALIBRATION_BINS)
    for r in table:
        if str(r.get("row")) not in curves:
            skipped[str(r.get("row"))] = _status(r) if not is_ok(r) else "no curve"
    panels = calibration_rows(list(cal), table)
    shown = [cal[n] for refs, rows in panels.values() for n in refs + rows]
    top = max([v for c in shown for key in ("mean_predicted", "observed") for v in c["reliability"][key]] or [0.5])
    limit = min(1.0, math.ceil(top * 10.0 - 1e-9) / 10.0 + 0.05)

    def label(name: str, baseline: bool) -> str:
        row, c = by_name.get(name, {}), cal[name]
        ece = finite(row.get("ece"))
        slope = finite(row.get("cal_slope")) if "cal_slope" in row else c["slope"]
        ece = c["ece"] if ece is None else ece
        slope_text = "–" if slope is None or not math.isfinite(slope) else f"{slope:.2f}"
        return f"{name}{' (baseline)' if baseline else ''}: ECE {ece:.3f}, slope {slope_text}"

    for ax, (group, title) in zip(axes, ROC_PANELS):
        refs, rows = panels.get(group, ([], []))
        ax.plot([0, 1], [0, 1], color="0.75", lw=0.8, ls=":")
        for k, name in enumerate(refs):
            points = cal[name]["reliability"]
            ax.plot(points["mean_predicted"], points["observed"], color="black", lw=1.6, ls=("--", "-.", ":")[k % 3],
                    marker="o", ms=4, zorder=3, label=label(name, True))
        for k, name in enumerate(rows):
            points = cal[name]["reliability"]
            fmt = format_key(by_name.get(name, {}))
            ax.plot(points["mean_predicted"], points["observed"], color=CURVE_COLOURS[k % len(CURVE_COLOURS)], lw=1.3,
                    ls={"int8": (0, (1, 1.5)), "dynamic": (0, (5, 2))}.get(fmt, "-"),
                    marker=MARKERS.get(fmt, (OTHER_MARKER,))[0] if fmt in ("int8", "dynamic") else "o", ms=4.5,
                    label=label(name, False))
        ax.set_title(title, fontsize=11)
        ax.set_xlim(0, limit)
        ax.set_ylim(0, limit)
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.25)
        ax.set_xlabel("mean predicted probability (decile of predicted risk)")
        ax.set_ylabel("observed event rate")
        if refs or rows:
            ax.legend(fontsize=7, loc="upper left", title="row: ECE, calibration slope", title_fontsize=7,
                      handlelength=2.6)
        else:
            ax.text(0.5, 0.5, "no rows with probabilities", ha="center", va="center", color="0.4",
                    transform=ax.transAxes)
    fig.suptitle("Calibration on the test set (first seed): observed event rate against mean predicted probability, "
                 "one point per decile of predicted risk;\non the dotted diagonal = calibrated, above it = risk "
                 "under-estimated; dashed black: the baseline; dotted / dash: int8 / dynamic files", fontsize=11)
    notes = ["families: the baseline, the condensed row (pruned or hLSTM) with the highest AUROC and its int8 file; "
             "ECE: mean |observed − predicted| over the deciles; slope: logistic recalibration (1 = calibrated, "
             "< 1: predictions too extreme)."]
    if skipped:
        notes.append("not drawn: " + ", ".join(f"{k} ({v})" for k, v in skipped.items()))
    _note(fig, notes)
    return fig


# -- the summary figure --------------------------------------------------------------------------
def _ratio(row: dict, base: dict | None, value) -> float | None:
    if base is None:
        return None
    a, b = value(row), value(base)
    return a / b if a is not None and b is not None and a > 0 and b > 0 else None


def _params(row: dict) -> float | None:
    nonzero = finite(row.get("nonzero_params"))
    return nonzero if nonzero is not None else finite(row.get("params"))


def summary_rows(table: Sequence[dict]) -> list[tuple[str, list[dict]]]:
    """The summary's groups, in :data:`METHODS` order: every ok row that has a baseline."""
    rows = [r for r in table if is_ok(r) and r.get("baseline")]
    groups = [(heading, [r for r in rows if r.get("condensation") == key]) for key, heading in METHODS]
    return [(heading, members) for heading, members in groups if members]


def summary_figure(table: Sequence[dict]):
    """Each condensed row against its baseline: size and latency ratios (log), AUROC difference."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    groups = summary_rows(table)
    by_name = _rows_by_name([r for r in table if is_ok(r)])
    lines: list[tuple[str, dict | None]] = []  # (tick label, row or None for a heading)
    for heading, members in groups:
        lines.append((heading, None))
        lines += [(f"{r['row']}  vs {r['baseline']}", r) for r in members]
    height = 2.2 + 0.27 * max(len(lines), 3)
    fig = _new_figure(13.5, height)
    axes = fig.subplots(1, 3, sharey=True, gridspec_kw={"width_ratios": (1, 1, 1.15)})
    fig.subplots_adjust(left=0.2, right=0.99, top=1 - 1.15 / height, bottom=1.0 / height, wspace=0.06)
    fig.suptitle("Each condensed row against its baseline: size, speed and AUROC (the paper's claims, measured)",
                 fontsize=12, y=1 - 0.08 / height, va="top")
    failed = {}  # status -> rows that did not run (failed, or skipped: an optional peer not installed)
    for r in table:
        if not is_ok(r):
            failed.setdefault(_status(r), []).append(str(r.get("row")))
    if not lines:
        for ax in axes:
            _empty(ax, "")
        axes[1].text(0.5, 0.5, "no condensed row with a baseline", transform=axes[1].transAxes, ha="center")
        _note(fig, [f"{status}: {', '.join(rows)}" for status, rows in failed.items()])
        return fig
    y_of = {i: len(lines) - 1 - i for i in range(len(lines))}
    size_ax, speed_ax, diff_ax = axes
    ratios = {"size": [], "speed": []}
    for i, (_, r) in enumerate(lines):
        if r is None:
            continue
        y = y_of[i]
        base = by_name.get(str(r["baseline"]))
        colour = FAMILIES[family_key(r)][1]
        marker = MARKERS.get(format_key(r), (OTHER_MARKER,))[0]
        for ax, key, value, second in ((size_ax, "size", file_bytes, _params),
                                       (speed_ax, "speed", litert_latency,
                                        lambda row: finite(row.get("keras_latency_us_median")))):
            main, other = _ratio(r, base, value), _ratio(r, base, second)
            if other is not None and other != 1.0:  # hollow: only where it says something (same parameters: no)
                ax.scatter([other], [y], marker=marker, s=34, facecolors="none", edgecolors=colour, lw=1.0, zorder=3)
                ratios[key].append(other)
            if main is not None:
                ax.scatter([main], [y], marker=marker, s=40, color=colour, edgecolors="white", lw=0.5, zorder=4)
                ratios[key].append(main)
                ax.annotate(f"{main:.2f}×", (1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 0),
                            textcoords="offset points", ha="right", va="center", fontsize=7, color="0.25")
            elif other is None:
                ax.annotate("n/a", (1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 0),
                            textcoords="offset points", ha="right", va="center", fontsize=7, color="0.55")
        d, lo, hi = _interval(r, "auroc_diff")
        if d is not None:
            if lo is not None and hi is not None:
                diff_ax.plot([lo, hi], [y, y], color=colour, lw=2.0, alpha=0.45, solid_capstyle="butt", zorder=2)
            significant = lo is not None and hi is not None and (lo > 0 or hi < 0)
            diff_ax.scatter([d], [y], marker=marker, s=40, color=colour, edgecolors="black" if significant else "white",
                            lw=0.9 if significant else 0.5, zorder=4)
            text = f"{d:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else "")
            diff_ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 0),
                             textcoords="offset points", ha="right", va="center", fontsize=7, color="0.25")
        else:
            diff_ax.annotate("n/a", (1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 0),
                             textcoords="offset points", ha="right", va="center", fontsize=7, color="0.55")
    for ax, key, title in ((size_ax, "size", "size ÷ baseline  (← smaller)"),
                           (speed_ax, "speed", "LiteRT latency ÷ baseline  (← faster)")):
        ax.set_xscale("log")
        lo, hi = _log_limits([*ratios[key], 1.0], pad=1.25)
        ax.set_xlim(lo, hi * 4.5)  # room on the right for the value column
        _log_ticks(ax, "×")
        ax.axvline(1.0, color="black", lw=0.9, zorder=1)
        ax.set_title(title, fontsize=10.5)
    diffs = [v for _, r in lines if r is not None for v in _interval(r, "auroc_diff") if v is not None]
    span = max([abs(v) for v in diffs] + [0.01]) * 1.15
    diff_ax.set_xlim(-span, span + 2.4 * span)  # the value column on the right
    diff_ax.axvline(0.0, color="black", lw=0.9, zorder=1)
    diff_ax.set_title("AUROC − baseline, paired 95 % interval  (better →)", fontsize=10.5)
    ticks = MaxNLocator(3, symmetric=True, steps=[1, 2, 5, 10]).tick_values(-span, span)
    ticks = [t for t in ticks if -span <= t <= span]
    diff_ax.set_xticks(ticks, [f"{t:+.2f}" if abs(t) > 1e-12 else "0" for t in ticks])
    heads = [y_of[i] for i, (_, r) in enumerate(lines) if r is None]
    for ax in axes:
        ax.grid(True, axis="x", which="major", alpha=0.25)
        for y in heads[1:]:
            ax.axhline(y + 0.5, color="0.8", lw=0.6)
        ax.tick_params(axis="y", length=0)
    size_ax.set_yticks([y_of[i] for i in range(len(lines))])
    size_ax.set_yticklabels([label for label, _ in lines], fontsize=8)
    for tick, (_, r) in zip(size_ax.get_yticklabels(), lines):
        if r is None:
            tick.set_fontweight("bold")
            tick.set_fontsize(9)
    size_ax.set_ylim(-0.7, len(lines) - 0.3)
    present = [r for _, r in lines if r is not None]
    extra = [Line2D([], [], ls="none", marker="o", ms=7, color="0.3",
                    label="filled: deployable file bytes / LiteRT latency"),
             Line2D([], [], ls="none", marker="o", ms=7, mfc="none", mec="0.3",
                    label="hollow: parameters (non-zero, where they change) / Keras latency"),
             Line2D([], [], ls="none", marker="o", ms=7, mfc="0.6", mec="black", label="interval excludes 0")]
    handles = _legend_handles([family_key(r) for r in present], [format_key(r) for r in present], extra)
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), fontsize=8, frameon=False,
               bbox_to_anchor=(0.55, 1 - 0.38 / height))
    notes = ["baseline: the row's `baseline` column (a .tflite file: the model it was converted from; "
             "hLSTM and peers: the LSTM or DNN baseline)."]
    notes += [f"{status}, not shown: {', '.join(rows)}" for status, rows in failed.items()]
    _note(fig, notes)
    return fig


# -- writing -------------------------------------------------------------------------------------
def write_pareto(table: Sequence[dict], path: Path) -> list[Path]:
    fig, _ = pareto_figure(table)
    return save_figure(fig, path)


def write_roc(curves: dict, table: Sequence[dict], path: Path) -> list[Path]:
    return save_figure(roc_figure(curves, table), path)


def write_calibration(curves: dict, table: Sequence[dict], path: Path) -> list[Path]:
    return save_figure(calibration_figure(curves, table), path)


def write_summary(table: Sequence[dict], path: Path) -> list[Path]:
    return save_figure(summary_figure(table), path)


def write_figures(out_dir: Path, table: Sequence[dict], curves: dict | None = None) -> list[Path]:
    """``pareto``, ``summary`` and (with curves) ``roc`` and ``calibration``, each ``.png`` and ``.svg``,
    into ``out_dir``."""
    out_dir = Path(out_dir)
    written = write_pareto(table, out_dir / "pareto.png") + write_summary(table, out_dir / "summary.png")
    if curves:
        written += write_roc(curves, table, out_dir / "roc.png")
        written += write_calibration(curves, table, out_dir / "calibration.png")
    return written
