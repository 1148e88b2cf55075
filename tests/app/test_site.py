"""``condense app`` without a browser: what the site holds, what it refuses, how it is served.
(The page itself runs in Chromium in ``test_app_browser.py``, the end-to-end tier.)"""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from condense.cli import main

pytest.importorskip("keras")


@pytest.fixture(scope="module")
def litert(tmp_path_factory):
    """A stand-in node_modules with LiteRT.js's file layout (the site copies the files; their content
    matters only in the browser tests, which use the real package)."""
    from condense.app.site import LITERTJS_FILES

    root = tmp_path_factory.mktemp("node_modules")
    for rel in LITERTJS_FILES.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"// {rel}\n")
    return root


@pytest.fixture(scope="module")
def hlstm_dir(trained_hlstm, tmp_path_factory):
    """The shared trained hLSTM, copied: the site exports its step file into the directory."""
    from build_once import copy_of

    return copy_of(trained_hlstm, tmp_path_factory.mktemp("app-site") / "hlstm")


def test_the_site_holds_the_page_the_runtime_and_the_step_file_with_its_rules(hlstm_dir, litert, tiny_cache, tmp_path,
                                                                              capsys):
    from condense.app.site import LITERTJS_FILES, SITE_MARKER, STATIC_FILES
    from condense.export.metadata import read_metadata

    site = tmp_path / "site"
    args = ["app", "--model", str(hlstm_dir), "--out", str(site), "--litert", str(litert), "--cache-dir",
            str(tiny_cache), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "exported now" in out and "reads an IHM episode: <stay>_timeseries.csv" in out
    assert {p.name for p in site.iterdir()} >= set(STATIC_FILES) | {"model.tflite", "litert", SITE_MARKER}
    assert all((site / rel).is_file() for rel in LITERTJS_FILES)
    shipped = (site / "model.tflite").read_bytes()
    assert shipped == (hlstm_dir / "model.int8.step.tflite").read_bytes()
    metadata, note = read_metadata(shipped)
    assert note == "" and metadata["form"] == "step" and metadata["rules"]["source"] == "ihm"
    assert [v["name"] for v in metadata["rules"]["variables"]][:2] == ["Capillary refill rate", "Diastolic blood pressure"]
    # a second run reuses the current file and replaces the earlier site whole
    (site / "stale.txt").write_text("from an earlier site")
    assert main(args) == 0
    assert "exported now" not in capsys.readouterr().out and not (site / "stale.txt").exists()
    assert json.loads((site / SITE_MARKER).read_text())["model_file"] == "model.int8.step.tflite"


def test_what_the_site_refuses(hlstm_dir, trained_lr, litert, tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's folder")
    assert main(["app", "--model", str(hlstm_dir), "--out", str(mine), "--litert", str(litert)]) == 2
    assert "exists and is not a condense app site: choose a new or empty folder" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "a user's folder"
    assert main(["app", "--model", str(trained_lr), "--out", str(tmp_path / "s"), "--litert", str(litert)]) == 2
    assert "has no .tflite file for the page to run" in capsys.readouterr().err
    monkeypatch.setenv("CONDENSE_LITERTJS", str(tmp_path / "nowhere"))
    monkeypatch.setattr("condense.app.site.PROJECT_NODE_MODULES", tmp_path / "web" / "node_modules")
    assert main(["app", "--model", str(hlstm_dir), "--out", str(tmp_path / "s"), "--litert", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "LiteRT.js (@litertjs/core, @litertjs/wasm-utils) is not installed" in err and "make install" in err
    assert not (tmp_path / "s").exists()


def test_the_site_is_served_with_the_headers_the_runtime_wants(tmp_path):
    from condense.app.serve import SITE_HEADERS, make_server

    with pytest.raises(FileNotFoundError, match="is not a condense app site"):
        make_server(tmp_path)
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "runtime.wasm").write_bytes(b"\0asm")
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/runtime.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
            for name, value in SITE_HEADERS.items():
                assert response.headers[name] == value
    finally:
        server.shutdown()
        server.server_close()
