"""Dropping ``Masking`` from an exported recurrent model is exact for the IHM and PhysioNet pipelines.

Keras' ``Masking(0)`` skips a time step only when *every* feature of that step is 0. Both
pipelines carry a group of categorical one-hot channels that the normalizer never touches and
that hold exactly one 1 at every step, whatever the record contains:

* IHM (76 channels): five categorical variables (capillary refill, the four Glasgow coma scale
  items); a missing value is carried forward or imputed with the benchmark's "normal value",
  an unknown category is counted as a bad cell and treated as missing. So every step has five
  ones, in channels the normalizer leaves as they are.
* PhysioNet 2012 (82 channels): ``ICUType->1..4``, a static one-hot broadcast to all 48 steps; a
  missing or impossible ICU type is imputed with the most frequent training value.

So no model input of either pipeline has an all-zero step, and the fused LSTM (which has no
mask input) computes exactly what the Keras model computes.
"""

from __future__ import annotations

import numpy as np
import pytest

from condense.data.channels import CATEGORICAL_VALUES, CHANNEL_SPANS, HEADER, IHM_LAYOUT
from condense.data.inputs import ModelInputs
from condense.data.physionet2012 import PHYSIONET_LAYOUT, PhysioNetState, read_records
from condense.data.preprocessing import Discretizer
from condense.export.recurrent_graphs import masked_steps
from physionet_files import record_text, write_set


def _onehot_groups(layout, variables) -> list[list[int]]:
    return [[i for i, v in enumerate(layout.variables) if v == var and i not in layout.mask_channels]
            for var in variables]


def test_masked_steps_counts_samples_and_steps():
    x = np.ones((4, 6, 3), np.float32)
    x[1, 2] = 0.0
    x[1, 5] = 0.0
    x[3, 0] = 0.0
    x[2, 4, :2] = 0.0  # not every feature: not masked
    assert masked_steps(x) == (2, 3)
    assert masked_steps(np.full((2, 3, 2), 7.0), mask_value=7.0) == (2, 6)
    with pytest.raises(ValueError, match="samples, time, features"):
        masked_steps(np.zeros((3, 4)))


def test_ihm_categorical_one_hot_groups_are_never_normalized():
    groups = _onehot_groups(IHM_LAYOUT, CATEGORICAL_VALUES)
    assert [len(g) for g in groups] == [len(v) for v in CATEGORICAL_VALUES.values()]
    for group in groups:
        assert not set(group) & set(IHM_LAYOUT.continuous)


@pytest.mark.parametrize("rows", [
    [],                                                          # no observation at all
    [["0.5"] + [""] * 17],                                       # one empty row
    [["3.0"] + ["junk"] * 17],                                   # every cell unparseable
    [["1.0", "7.0"] + ["not a category"] * 16],                  # unknown categories
    [["47.9", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "7.1"]],  # last bin only
])
def test_every_ihm_step_has_one_hot_ones_after_normalization(rows):
    x = Discretizer().transform_episode(rows, header=HEADER)
    for var in CATEGORICAL_VALUES:
        assert np.all(x[:, CHANNEL_SPANS[var]].sum(axis=1) == 1.0), var
    rng = np.random.default_rng(0)
    train = np.stack([x, x + rng.normal(0, 1, x.shape).astype(np.float32)])
    inputs = ModelInputs.fit("sequence", train, IHM_LAYOUT)
    z = inputs.transform(x[None])
    assert masked_steps(z) == (0, 0)
    assert np.count_nonzero(z[0], axis=1).min() >= len(CATEGORICAL_VALUES)


def test_synthetic_ihm_cohort_model_inputs_have_no_masked_step(tiny_dataset):
    inputs = ModelInputs.fit("sequence", tiny_dataset.train.X, tiny_dataset.layout)
    for split in ("train", "val", "test"):
        assert masked_steps(inputs.transform(tiny_dataset.split(split).X)) == (0, 0), split


def test_physionet_icu_type_one_hot_is_static_and_never_normalized():
    group = [i for i, name in enumerate(PHYSIONET_LAYOUT.names) if name.startswith("ICUType->")]
    assert len(group) == 4
    assert not set(group) & set(PHYSIONET_LAYOUT.continuous)


def test_every_physionet_step_has_an_icu_type_even_when_missing_or_impossible(tmp_path):
    records = {
        "1001": record_text("1001", [("00:30", "HR", 70)], icutype=2),
        "1002": record_text("1002", [], icutype=-1),                   # missing: imputed
        "1003": record_text("1003", [("01:00", "HR", 0)], icutype=7),  # impossible: counted, imputed
        "1004": "Time,Parameter,Value\n00:00,RecordID,1004\n",         # nothing at all
    }
    raw = read_records(write_set(tmp_path, records))
    state = PhysioNetState.fit(raw)
    X, _ = state.transform(raw)
    group = [i for i, name in enumerate(PHYSIONET_LAYOUT.names) if name.startswith("ICUType->")]
    assert np.all(X[:, :, group].sum(axis=2) == 1.0)
    z = ModelInputs.fit("sequence", X, PHYSIONET_LAYOUT).transform(X)
    assert masked_steps(z) == (0, 0)


@pytest.mark.realdata
def test_physionet_set_a_model_inputs_have_no_masked_step(physionet_set_a, tmp_path):
    from condense.data import load_dataset

    dataset = load_dataset(f"physionet2012:{physionet_set_a}", seed=0, cache_dir=tmp_path, quiet=True)
    inputs = ModelInputs.fit("sequence", dataset.train.X, dataset.layout, source=dataset.extras.get("source_state"))
    for split in ("train", "val", "test"):
        assert masked_steps(inputs.transform(dataset.split(split).X)) == (0, 0), split
