"""Arrays of a ``predictions.npz`` (and of ``rows/*.npz``) are checked from their ``.npy`` headers
before anything is loaded (issue 31, item 3): a small crafted file declaring a (300000000,) array
took ``condense compare`` to 2.4 GB before its shape was refused."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from condense.bench.predictions import MAX_NPZ_BYTES, load_npz, npz_headers, read_predictions

N = 40
IDS = np.array([f"p{i}" for i in range(N)])
Y = (np.arange(N) % 4 == 0).astype(np.int8)


def _crafted(path, declared: tuple[int, ...], name: str = "lstm@0") -> None:
    """A predictions file whose score array's header declares ``declared`` (its data is a few bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, arr in (("ids", IDS), ("y", Y)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            archive.writestr(f"{key}.npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": declared})
        archive.writestr(f"{name}.npy", buf.getvalue() + bytes(64))


@pytest.fixture
def no_load(monkeypatch):
    """np.load refused: a file rejected from its headers never gets that far."""
    def refuse(*args, **kwargs):
        raise AssertionError("np.load was called on a file its headers refuse")

    monkeypatch.setattr(np, "load", refuse)


def test_a_crafted_huge_array_is_refused_from_its_header(tmp_path, no_load):
    path = tmp_path / "predictions.npz"
    _crafted(path, (300_000_000,))
    assert npz_headers(path)["lstm@0"] == ((300_000_000,), np.dtype("<f8"))
    with pytest.raises(ValueError) as err:
        read_predictions(path)
    declared = 300_000_000 * 8 + IDS.nbytes + Y.nbytes
    assert str(err.value) == (f"{path}: not a predictions file (its arrays declare {declared:,} bytes in all, more "
                              f"than the {MAX_NPZ_BYTES:,} allowed (array 'lstm@0': shape (300000000,), float64); "
                              "refused before loading)")
    # within the bound but not one value per id: the shape is refused from the header too
    _crafted(path, (1_000_000,))
    with pytest.raises(ValueError, match=rf"^{path}: scores 'lstm@0' must be a 1-D array of {N} values \(one per id\), "
                                         r"got shape \(1000000,\)$"):
        read_predictions(path)
    _crafted(path, (N, 2))
    with pytest.raises(ValueError, match=r"scores 'lstm@0' must be a 1-D array of 40 values .* got shape \(40, 2\)"):
        read_predictions(path)


def test_a_sound_file_loads_and_a_bound_can_be_given(tmp_path):
    path = tmp_path / "predictions.npz"
    np.savez_compressed(path, ids=IDS, y=Y, **{"lstm@0": np.linspace(0, 1, N)})
    assert read_predictions(path).score("lstm", 0).shape == (N,)
    assert set(load_npz(path)) == {"ids", "y", "lstm@0"}
    with pytest.raises(ValueError, match=r"more than the 100 allowed .*refused before loading"):
        load_npz(path, max_bytes=100)
    # data cut short behind a sound header: the file named, not a traceback
    _crafted(path, (N,))
    with pytest.raises(ValueError, match=rf"^{path}: not a predictions file"):
        read_predictions(path)


def test_a_damaged_or_crafted_rows_record_runs_again(tmp_path):
    """The run store reads ``rows/seed<S>/<row>.npz`` through the same header check."""
    from test_grid import _job, _result

    from condense.bench.store import RunStore

    store = RunStore(tmp_path / "run")
    job = _job()
    store.save(job, _result(job))
    assert store.load(job) is not None
    scores = tmp_path / "run" / "rows" / "seed1" / "dnn.npz"
    with zipfile.ZipFile(scores, "w") as archive:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (300_000_000,)})
        archive.writestr("dnn.npy", buf.getvalue())
    assert store.load(job) is None
