"""Argument types for paths the CLI writes: checked when the command line is parsed, before any
data is read or any model trained, so a typo costs nothing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor (where the folders would be created)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_parent(path: Path) -> None:
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot write in {base} (permission denied)")


def output_file(text: str) -> Path:
    """A file to write: not an existing folder, in a folder we can write (created if missing)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give the path of a file to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot overwrite (permission denied)")
    _check_writable_parent(path)
    return path


def output_folder(text: str) -> Path:
    """A folder to write: not an existing file, writable if it exists, creatable otherwise."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give the path of a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot write in it (permission denied)")
    _check_writable_parent(path)
    return path
