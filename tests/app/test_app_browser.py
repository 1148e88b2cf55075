"""``condense app`` in a real browser: Debian's headless Chromium driven by Playwright (no downloaded
browser) opens the served site, is given patient files, and scores them with LiteRT.js.

For the 240 synthetic IHM episodes and 200 real PhysioNet 2012 set-A records, the page's 48-hour
probabilities equal Python LiteRT on the same file (int8: 1e-6) and ``condense predict --form step``
(float32: 1e-5); a malformed file shows its error; every request goes to the site on 127.0.0.1 and
none is made after the page is ready. With ``CONDENSE_APP_SCREENSHOT=PATH`` the PhysioNet test saves
a screenshot of the page scoring a real record (``make app-screenshot`` writes the README's).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from condense.cli import main

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps"]
INT8_TOL = 1e-6
FLOAT_TOL = 1e-5
PHYSIONET_RECORDS = 200


def _require_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install --no-install-recommends chromium "
                    "chromium-driver; .ci/run does): the page is not checked in a browser")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    from condense.app.site import find_litertjs

    try:
        find_litertjs()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Served:
    """A site served on 127.0.0.1 (any free port) in a thread."""

    def __init__(self, site: Path):
        from condense.app.serve import make_server

        self.server = make_server(site, port=0)
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def score_in_page(browser, site: Path, files: list[Path], screenshot_of: str | None = None) -> dict:
    """Open the site, give it ``files``, wait for every result; the results, timings and requests."""
    served = Served(site)
    page = browser.new_page(viewport={"width": 1100, "height": 1300})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(served.url)
        page.evaluate("window.condenseApp.ready")
        before = len(requests)
        page.set_input_files("#files", [str(f) for f in files])
        page.wait_for_function(f"document.body.dataset.done === '{len(files)}'", timeout=300_000)
        results = page.evaluate("window.condenseApp.results.map(r => ({name: r.name, p: r.probability, "
                                "error: r.error, issues: r.issues, steps: r.trajectory ? r.trajectory.length : 0, "
                                "scoreMs: r.scoreMs}))")
        timings = page.evaluate("window.condenseApp.timings")
        status = page.text_content("#status")
        if screenshot_of is not None:
            index = next(k for k, r in enumerate(results) if r["name"] == screenshot_of)
            page.click(f"#results tr:nth-child({index + 1})")
            page.screenshot(path=os.environ["CONDENSE_APP_SCREENSHOT"])
    finally:
        page.close()
        served.close()
    return {"results": {r["name"]: r for r in results}, "timings": timings, "requests": requests,
            "after_ready": requests[before:], "errors": errors, "status": status, "url": served.url}


def assert_private(run: dict) -> None:
    assert run["errors"] == []
    assert run["after_ready"] == [], "scoring made requests"
    assert all(url.startswith(run["url"]) for url in run["requests"]), run["requests"]


def report(name: str, run: dict, site: dict) -> None:
    scored = [r["scoreMs"] for r in run["results"].values() if r["scoreMs"] is not None]
    print(f"\n{name}: page ready {run['timings']['pageToReadyMs']:.0f} ms after navigation, first result at "
          f"{run['timings']['firstResultMs']:.0f} ms; scoring per patient median {statistics.median(scored):.3f} ms "
          f"(p90 {np.percentile(scored, 90):.3f} ms, {len(scored)} patients); site {site['total_bytes']:,} B, "
          f"model file {site['model_bytes']:,} B")


def build(model_dir: Path, out: Path, fmt: str, cache: Path | None = None) -> dict:
    from condense.app.site import build_site

    return build_site(model_dir, out, fmt=fmt, cache_dir=cache, quiet=True)


def predicted(model_dir: Path, fmt: str, data: str, tmp: Path, cache=None) -> dict[str, float]:
    """``condense predict --form step`` on ``data``: {id: probability} (6 decimals, as the CSV has)."""
    out = tmp / f"{fmt}.csv"
    args = ["predict", "--model", str(model_dir), "--format", fmt, "--form", "step", "--data", data, "--out", str(out),
            "--quiet"] + (["--cache-dir", str(cache)] if cache else [])
    assert main(args) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    key = "stay" if "stay" in rows[0] else "RecordID"
    return {row[key]: float(row["probability"]) for row in rows}


# -- IHM episodes (synthetic cohort) --------------------------------------------------------------
@pytest.fixture(scope="module")
def ihm_model(tiny_cohort, tiny_cache, tmp_path_factory):
    _require_browser()
    out = tmp_path_factory.mktemp("app-ihm") / "hlstm-pruned"
    assert main(["train", "--data", str(tiny_cohort), "--model", "hlstm", "--prune-quantile", "0.5", "--epochs", "3",
                 "--batch-size", "32", "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet"]) == 0
    return out


def test_the_page_scores_ihm_episodes_like_python(browser, ihm_model, tiny_cohort, tiny_cache, tmp_path):
    from condense.data import load_records
    from condense.runs.scoring import SavedModel

    site = build(ihm_model, tmp_path / "site", "int8", tiny_cache)
    assert site["exported"] and site["metadata"]["form"] == "step" and not site["metadata"]["normalizer_folded"]
    files = sorted(tiny_cohort.rglob("*_timeseries.csv"))
    bad = tmp_path / "broken_timeseries.csv"
    bad.write_text("Time,Heart Rate\n1,80\n")
    run = score_in_page(browser, tmp_path / "site", files + [bad])
    report("IHM int8 step", run, site)
    assert_private(run)
    assert run["results"]["broken_timeseries.csv"]["p"] is None
    assert "no 'Hours' column in the header" in run["results"]["broken_timeseries.csv"]["error"]
    split, _, _ = load_records(str(tiny_cohort), cache_dir=tiny_cache, quiet=True)
    python = dict(zip(split.ids, SavedModel(ihm_model, "int8", form="step").predict_raw(split.X)))
    assert len(files) == len(python) == 240
    worst = max(abs(run["results"][f.name]["p"] - python[f.name]) for f in files)
    assert worst <= INT8_TOL, worst
    cli = predicted(ihm_model, "int8", str(tiny_cohort), tmp_path, tiny_cache)
    assert max(abs(run["results"][f.name]["p"] - cli[f.name]) for f in files) <= 5e-7 + INT8_TOL
    assert all(run["results"][f.name]["steps"] == 48 for f in files)


def test_a_model_without_a_time_axis_ships_its_batch_one_file(browser, tiny_cohort, tiny_cache, tmp_path):
    """The DNN has no step form: the site ships its batch-1 int8 file and the page computes its features."""
    from condense.data import load_records
    from condense.runs.scoring import SavedModel

    dnn = tmp_path / "dnn"
    assert main(["train", "--data", str(tiny_cohort), "--model", "dnn", "--epochs", "2", "--batch-size", "32",
                 "--out", str(dnn), "--cache-dir", str(tiny_cache), "--quiet"]) == 0
    site = build(dnn, tmp_path / "site", "int8", tiny_cache)
    assert site["metadata"]["form"] == "sequence" and site["metadata"]["preprocessing"]["kind"] == "features"
    files = sorted(tiny_cohort.rglob("*_timeseries.csv"))
    run = score_in_page(browser, tmp_path / "site", files)
    assert_private(run)
    split, _, _ = load_records(str(tiny_cohort), cache_dir=tiny_cache, quiet=True)
    python = dict(zip(split.ids, SavedModel(dnn, "int8").predict_raw(split.X)))
    assert max(abs(run["results"][f.name]["p"] - python[f.name]) for f in files) <= INT8_TOL
    assert all(run["results"][f.name]["steps"] == 1 for f in files)


# -- PhysioNet 2012 records (real, set A) ---------------------------------------------------------
@pytest.fixture(scope="module")
def physionet_model(physionet_set_a, tmp_path_factory):
    _require_browser()
    root = tmp_path_factory.mktemp("app-pn")
    out, cache = root / "pn-hlstm", root / "cache"
    assert main(["train", "--data", f"physionet2012:{physionet_set_a}", "--model", "hlstm", "--prune-quantile", "0.5",
                 "--epochs", "6", "--batch-size", "64", "--out", str(out), "--cache-dir", str(cache), "--quiet"]) == 0
    records = root / "records" / "set-a"
    records.mkdir(parents=True)
    with tarfile.open(physionet_set_a) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".txt") and "/" in m.name),
                         key=lambda m: m.name)[-PHYSIONET_RECORDS:]  # the last records: mostly outside training
        for m in members:
            (records / Path(m.name).name).write_bytes(tar.extractfile(m).read())
    return out, cache, records


@pytest.mark.parametrize("fmt", ["int8", "float32"])
def test_the_page_scores_physionet_records_like_condense_predict(browser, physionet_model, fmt, tmp_path):
    from condense.runs.scoring import SavedModel

    model_dir, cache, records = physionet_model
    site = build(model_dir, tmp_path / "site", fmt, cache)
    assert site["metadata"]["normalizer_folded"] == (fmt == "float32")
    files = sorted(records.glob("*.txt"))
    wrong = tmp_path / "10001_episode1_timeseries.csv"
    wrong.write_text("Hours,Heart Rate\n1,80\n")
    run = score_in_page(browser, tmp_path / "site", files + [wrong])
    report(f"PhysioNet {fmt} step", run, site)
    assert_private(run)
    assert "this model reads PhysioNet 2012 records" in run["results"][wrong.name]["error"]
    cli = predicted(model_dir, fmt, f"physionet2012:{records.parent}", tmp_path)
    assert len(cli) == len(files) == PHYSIONET_RECORDS
    page = {f.stem: run["results"][f.name]["p"] for f in files}
    assert max(abs(page[rid] - cli[rid]) for rid in cli) <= FLOAT_TOL
    if fmt == "int8":
        from condense.data import load_records

        split, _, _ = load_records(f"physionet2012:{records.parent}", source_state=json.loads(
            (model_dir / "preprocessing.json").read_text())["source"], quiet=True)
        python = dict(zip(split.ids, SavedModel(model_dir, "int8", form="step").predict_raw(split.X)))
        assert max(abs(page[rid] - python[rid]) for rid in python) <= INT8_TOL
        assert site["model_bytes"] <= 20_000, site["model_bytes"]
    # the problems the command line counts are counted in the page too
    assert sum(sum(r["issues"].values()) for r in run["results"].values()) > 0
    if fmt == "int8" and os.environ.get("CONDENSE_APP_SCREENSHOT"):  # the README's picture: a few records
        score_in_page(browser, tmp_path / "site", files[:5], screenshot_of=files[1].name)
