"""Training epochs timed alone in one child (the benchmark's training-time column for parallel grids)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from condense import models  # noqa: E402
from condense.bench.epoch_timing import keras_epoch_seconds  # noqa: E402
from condense.train import TrainConfig  # noqa: E402


@pytest.mark.slow
def test_epochs_are_timed_for_a_saved_model_and_for_a_configuration(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((256, 76)).astype(np.float32), (rng.random(256) < 0.3).astype(np.float32)
    seq = rng.standard_normal((64, 48, 76)).astype(np.float32)
    path = tmp_path / "dnn.keras"
    models.build_dnn(76).save(path)
    result = keras_epoch_seconds([{"model_path": str(path)}, {"config": TrainConfig(model="dnn").to_json()}],
                                 x, y, x[:64], batch_size=32, epochs=2)
    assert len(result) == 2
    for timed in result:
        assert len(timed["epoch_seconds"]) == 2 and timed["warmup_seconds"] > 0
        assert timed["median_s"] == pytest.approx(float(np.median(timed["epoch_seconds"])))
        assert timed["masking_skipped"] is False  # no time axis
    lstm = keras_epoch_seconds([{"config": TrainConfig(model="lstm").to_json()}], seq, y[:64], seq[:16],
                               batch_size=32, epochs=1)
    assert lstm[0]["masking_skipped"] is True, "trained as fit() trains it: no all-zero hour, no Masking"
    with pytest.raises(ValueError, match="Argument `epochs` must be a positive integer"):
        keras_epoch_seconds([], x, y, x, batch_size=32, epochs=0)
