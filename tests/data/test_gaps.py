"""condense.data.gaps: hours since each variable was last observed, on hand-written records."""

from __future__ import annotations

import numpy as np
import pytest

from condense.data.channels import HEADER, IHM_LAYOUT, VARIABLES
from condense.data.gaps import hours_since_observed, since_last_channels, since_last_names
from condense.data.inputs import ModelInputs, parse_input_key
from condense.data.preprocessing import Discretizer


def _row(hours, **values):
    cells = {name.replace(" ", "_"): "" for name in HEADER[1:]}
    cells.update(values)
    return [hours] + [cells[name.replace(" ", "_")] for name in HEADER[1:]]


@pytest.fixture(scope="module")
def episode():
    """Heart rate at 0.5 h, 3.2 h and 3.9 h (bins 0, 3, 3); glucose at 10.0 h (bin 9: the
    benchmark's bins end on the hour, ``int(t - eps)``); nothing else."""
    rows = [_row(0.5, Heart_Rate=80), _row(3.2, Heart_Rate=95), _row(3.9, Heart_Rate=90), _row(10.0, Glucose=140)]
    return Discretizer().transform_episode(rows, header=HEADER)[None]  # (1, 48, 76)


def test_hours_since_the_last_measurement_per_variable(episode):
    gaps = hours_since_observed(episode, IHM_LAYOUT)
    assert gaps.shape == (1, 48, len(VARIABLES)) and gaps.dtype == np.float32
    hr = gaps[0, :, VARIABLES.index("Heart Rate")]
    assert hr[:8].tolist() == [0, 1, 2, 0, 1, 2, 3, 4]  # measured in bins 0 and 3, then counting up
    assert hr[47] == 44
    glucose = gaps[0, :, VARIABLES.index("Glucose")]
    assert glucose[:12].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]  # before the first: hours since the start
    never = gaps[0, :, VARIABLES.index("pH")]
    assert never.tolist() == list(range(1, 49))


def test_the_model_input_channels_are_the_gaps_in_window_units_after_the_layout(episode):
    inputs = ModelInputs.fit("sequence+since_last", np.repeat(episode, 3, axis=0), IHM_LAYOUT)
    assert inputs.key == "sequence+since_last" and inputs.extras == ("since_last",)
    assert inputs.width == 76 + 17 and inputs.input_shape(48) == (48, 93)
    x = inputs.transform(episode)
    assert x.shape == (1, 48, 93) and x.dtype == np.float32
    plain = ModelInputs.fit("sequence", np.repeat(episode, 3, axis=0), IHM_LAYOUT).transform(episode)
    np.testing.assert_array_equal(x[..., :76], plain)
    np.testing.assert_array_equal(x[..., 76:], hours_since_observed(episode, IHM_LAYOUT) / 48)
    assert np.array_equal(x[..., 76:], since_last_channels(episode, IHM_LAYOUT))
    assert inputs.channel_names[76] == "since_last:mask->Capillary refill rate"
    assert len(since_last_names(IHM_LAYOUT)) == 17


def test_the_extras_travel_in_the_saved_state_and_old_files_have_none(episode, tmp_path):
    train = np.repeat(episode, 3, axis=0)
    with_gaps = ModelInputs.fit("sequence+since_last", train, IHM_LAYOUT)
    with_gaps.save(tmp_path / "p.json")
    again = ModelInputs.load(tmp_path / "p.json")
    np.testing.assert_array_equal(again.transform(episode), with_gaps.transform(episode))
    plain = ModelInputs.fit("sequence", train, IHM_LAYOUT)
    assert "extras" not in plain.to_json()  # files of models without extras are as they were
    assert ModelInputs.from_json(plain.to_json()).extras == ()


def test_bad_keys_and_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown extra input channel"):
        parse_input_key("sequence+hours")
    with pytest.raises(ValueError, match="input kind must be one of"):
        parse_input_key("images")
    with pytest.raises(ValueError, match="apply to sequence inputs"):
        ModelInputs.fit("features+since_last", np.zeros((2, 48, 76)), IHM_LAYOUT)
    with pytest.raises(ValueError, match=r"expected X of shape \(N, T, 76\)"):
        hours_since_observed(np.zeros((1, 48, 10)), IHM_LAYOUT)


def test_physionet_records_get_one_channel_per_measured_variable(tmp_path):
    from physionet_files import small_cohort

    from condense.data import load_dataset

    dataset = load_dataset(f"physionet2012:{small_cohort(tmp_path / 'p')}", cache_dir=tmp_path / "c", quiet=True)
    layout = dataset.layout
    gaps = hours_since_observed(dataset.train.X, layout)
    assert gaps.shape[-1] == len(layout.mask_channels)
    hr = [i for i, c in enumerate(layout.mask_channels) if "HR" in layout.names[c]]
    assert len(hr) == 1
    # small_cohort measures HR at hours 2, 5, ..., 38: the gap is 0 there and counts up between
    first = dataset.train.X[0, :, layout.mask_channels[hr[0]]] > 0.5
    assert first.sum() > 0 and np.all(gaps[0, first, hr[0]] == 0) and np.all(gaps[0, ~first, hr[0]] > 0)
