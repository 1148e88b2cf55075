"""``condense.load_model``: a saved hLSTM loads in a fresh interpreter that imported only ``condense``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense import models  # noqa: E402

FRESH = """
import sys, numpy as np, condense
assert "keras" not in sys.modules, "import condense stays light"
model = condense.load_model(sys.argv[1], compile=False)
print(type(model.get_layer("hlstm")).__name__, float(model.predict(np.load(sys.argv[2]), verbose=0)[0, 0]))
"""


def test_a_saved_hlstm_loads_with_condense_load_model_alone(tmp_path):
    model = models.build_hlstm(76, timesteps=48)
    x = np.random.default_rng(0).standard_normal((1, 48, 76)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "m.keras"), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, p = proc.stdout.split()[-2:]
    assert name == "HLSTM" and float(p) == pytest.approx(float(model.predict(x, verbose=0)[0, 0]), abs=1e-6)
