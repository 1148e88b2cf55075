"""Write a ``condense app`` site: the scoring page, its JavaScript, LiteRT.js and the model file.

The model file is the model directory's step file (``model.<format>.step.tflite``; a model without a
time axis, the DNN, has no step form and ships its batch-1 file); it is exported first when it is
missing, stale or older than the metadata that the page reads from it. Every preprocessing rule
travels inside that file (:mod:`condense.export.metadata`), so the site holds no second copy.

LiteRT.js comes from the project's ``web/node_modules`` (``make install`` runs ``npm ci`` there),
from ``$CONDENSE_LITERTJS``, or from ``litert=`` (a ``node_modules`` folder): its ES modules and the
two WebAssembly builds the runtime picks between (with and without relaxed SIMD).

The site is built in a sibling temporary folder and swapped in whole; an existing folder is
replaced only when it is an earlier ``condense app`` site (or empty).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from condense.data.contract import input_rules
from condense.data.inputs import PREPROCESSING_FILE, ModelInputs
from condense.export.formats import get_format
from condense.export.metadata import read_metadata
from condense.peers.kinds import PEERS
from condense.runs.model_dir import ModelDirError, check_export, load_manifest, tflite_file
from condense.runs.workflow import export_run

__all__ = ["build_site", "find_litertjs", "LITERTJS_FILES", "SITE_MARKER", "STATIC_FILES"]

#: Our files, from ``condense/app/static``.
STATIC_FILES = ("index.html", "app.js", "preprocess.js", "runtime.js", "model.js")
#: LiteRT.js files: site path -> path under ``node_modules``.
LITERTJS_FILES = {
    "litert/core/index.js": "@litertjs/core/dist/index.js",
    "litert/wasm-utils/index.js": "@litertjs/wasm-utils/dist/index.js",
    **{f"litert/wasm/{name}": f"@litertjs/core/wasm/{name}"
       for name in ("litert_wasm_internal.js", "litert_wasm_internal.wasm",
                    "litert_wasm_compat_internal.js", "litert_wasm_compat_internal.wasm")},
}
#: The file that marks a folder as a site this command wrote (and may replace).
SITE_MARKER = ".condense-site.json"
#: Where ``make install`` puts LiteRT.js (``npm ci`` in ``web/``).
PROJECT_NODE_MODULES = Path(__file__).resolve().parents[2] / "web" / "node_modules"
#: The model file's name in the site.
MODEL_FILE = "model.tflite"


def find_litertjs(litert=None) -> Path:
    """The ``node_modules`` folder that holds ``@litertjs/core``: ``litert``, ``$CONDENSE_LITERTJS`` or
    the project's ``web/node_modules``; a clear error naming the fix when none has it."""
    candidates = [litert] if litert else []
    if os.environ.get("CONDENSE_LITERTJS"):
        candidates.append(os.environ["CONDENSE_LITERTJS"])
    candidates.append(PROJECT_NODE_MODULES)
    for folder in candidates:
        folder = Path(folder)
        if all((folder / rel).is_file() for rel in LITERTJS_FILES.values()):
            return folder
    looked = ", ".join(str(Path(c)) for c in candidates)
    raise FileNotFoundError(f"LiteRT.js (@litertjs/core, @litertjs/wasm-utils) is not installed in {looked}: run "
                            "`make install` (npm ci in web/), or pass --litert NODE_MODULES")


def _model_file(model_dir: Path, fmt: str, *, data, cache_dir, quiet: bool) -> tuple[Path, dict, bool]:
    """The model file the site ships (exported first when needed), its metadata, and whether it was exported."""

    get_format(fmt)  # an unknown format: say so before anything runs
    manifest = load_manifest(model_dir)
    if manifest.get("model") in PEERS:
        raise ValueError(f"{model_dir}: {PEERS[manifest['model']].description} has no .tflite file for the page to run")
    inputs = ModelInputs.load(model_dir / PREPROCESSING_FILE)
    if inputs.extras:
        raise ValueError(f"{model_dir}: the model takes extra channels {list(inputs.extras)} that the page does not "
                         "compute; train it without them for the page")
    if not input_rules(inputs.layout.name, inputs.layout.names):
        raise ValueError(f"{model_dir}: trained on layout {inputs.layout.name!r}, which has no patient-file rules "
                         "(the page reads IHM episodes and PhysioNet 2012 records)")
    form = "sequence" if inputs.kind == "features" else "step"
    path = model_dir / tflite_file(fmt, form)
    try:
        check_export(model_dir, manifest, fmt, form)
        metadata, _ = read_metadata(path)
    except (FileNotFoundError, ModelDirError):
        metadata = None
    exported = metadata is None or "rules" not in metadata
    if exported:
        export_run(model_dir, fmt, form=form, data=data, cache_dir=cache_dir, quiet=quiet)
        metadata, note = read_metadata(path)
        if metadata is None:
            raise RuntimeError(f"{path}: {note}")
    return path, metadata, exported


def build_site(model_dir, out, *, fmt: str = "int8", litert=None, data: str | None = None, cache_dir=None,
               quiet: bool = False) -> dict:
    """Write the scoring site for ``model_dir`` into ``out``; returns what it wrote.

    ``fmt`` picks the model file (``int8``, the smallest, by default). Returns ``{"out", "model_file",
    "exported", "files": {site path: bytes}, "total_bytes", "model_bytes", "metadata"}``.
    """
    model_dir, out = Path(model_dir), Path(out)
    modules = find_litertjs(litert)  # before any export: a missing runtime is the cheaper error
    if out.exists() and not (out / SITE_MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a condense app site: choose a new or empty folder")
    path, metadata, exported = _model_file(model_dir, fmt, data=data, cache_dir=cache_dir, quiet=quiet)
    static = Path(__file__).resolve().parent / "static"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in STATIC_FILES:
            shutil.copyfile(static / name, work / name)
        shutil.copyfile(path, work / MODEL_FILE)
        for site_path, rel in LITERTJS_FILES.items():
            (work / site_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(modules / rel, work / site_path)
        marker = {"model_dir": str(model_dir.resolve()), "model_file": path.name, "format": fmt,
                  "form": metadata.get("form")}
        (work / SITE_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        _swap_in(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return {"out": str(out), "model_file": str(path), "exported": exported, "files": files,
            "total_bytes": sum(files.values()), "model_bytes": files[MODEL_FILE], "metadata": metadata}


def _swap_in(work: Path, out: Path) -> None:
    """``work`` becomes ``out`` (an earlier site there is removed only after the swap)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        work.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
