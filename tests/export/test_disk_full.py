"""Disk full while the manifest records a new export (issue 31, item 10): one line naming the file,
and no unrecorded ``.tflite`` left for ``evaluate`` to call stale."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from build_once import copy_of

from condense.cli import main
from condense.io import atomic_write


def _disk_full_for(monkeypatch, name: str) -> None:
    """Writes of ``name`` (through :func:`condense.io.atomic_path`'s temporary file) fail like a full disk."""
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name.startswith(f".{Path(name).stem}.") and ".tmp" in self.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write error carries no file name
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_failed_atomic_write_names_its_file_and_leaves_nothing(tmp_path, monkeypatch):
    _disk_full_for(monkeypatch, "manifest.json")
    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "manifest.json", "{}")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "manifest.json")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_recording_an_export_removes_the_unrecorded_file(trained_hlstm, tiny_cache, tmp_path,
                                                                         monkeypatch, capsys):
    model = copy_of(trained_hlstm, tmp_path / "model")
    manifest = (model / "manifest.json").read_bytes()
    _disk_full_for(monkeypatch, "manifest.json")
    assert main(["export", "--model", str(model), "--format", "float32", "--cache-dir", str(tiny_cache),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"condense export: error: {model / 'manifest.json'}: no space left on device (the new "
                   "model.float32.tflite was removed, since the manifest could not record it; free space and "
                   "export again)")
    assert not (model / "model.float32.tflite").exists()
    assert (model / "manifest.json").read_bytes() == manifest
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    assert main(["evaluate", "--model", str(model), "--format", "float32", "--cache-dir", str(tiny_cache)]) == 2
    assert "model.float32.tflite does not exist: run `condense export" in capsys.readouterr().err
