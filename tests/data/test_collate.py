from __future__ import annotations

import pytest
import torch

from fusion.data.catalog import S1_GRD, S2_L2A
from fusion.data.collate import collate_samples
from fusion.data.errors import FusionDataError
from fusion.data.sample import Sample


def _sample(with_s1: bool, label: int) -> Sample:
    s2 = S2_L2A.streams()[0]
    data = {s2.key: torch.ones(4, 8, 8)}
    masks = {s2.key: torch.ones(8, 8, dtype=torch.bool)}
    streams = {s2.key: s2}
    if with_s1:
        s1 = S1_GRD.streams()[0]
        data[s1.key] = torch.full((2, 8, 8), -12.0)
        masks[s1.key] = torch.ones(8, 8, dtype=torch.bool)
        streams[s1.key] = s1
    return Sample(data, masks, streams, {"i": label}, label)


def test_absent_sensor_is_flagged_not_present() -> None:
    batch = collate_samples([_sample(True, 0), _sample(False, 1), _sample(True, 2)])
    assert batch.present["s1_grd"].tolist() == [True, False, True]
    assert not batch.masks["s1_grd"][1].any()
    assert batch.data["s1_grd"][0].mean() == -12
    assert batch.labels is not None and batch.labels.tolist() == [0, 1, 2]
    assert batch.data["s2_l2a_10m"].shape == (3, 4, 8, 8)


def test_sample_refuses_channel_mismatch() -> None:
    s2 = S2_L2A.streams()[0]
    with pytest.raises(FusionDataError, match="expected 4"):
        Sample(
            {s2.key: torch.ones(3, 8, 8)},
            {s2.key: torch.ones(8, 8, dtype=torch.bool)},
            {s2.key: s2},
        )


def test_collate_refuses_shape_mismatch() -> None:
    a, b = _sample(False, 0), _sample(False, 1)
    b.data["s2_l2a_10m"] = torch.ones(4, 4, 4)
    b.masks["s2_l2a_10m"] = torch.ones(4, 4, dtype=torch.bool)
    with pytest.raises(FusionDataError, match="differs within the batch"):
        collate_samples([a, b])


def test_without_drops_every_stream_of_a_sensor() -> None:
    s = _sample(True, 0).without("s1_grd")
    assert s.sensors == ["s2_l2a"] and "s1_grd" not in s.data


def test_band_presence_is_batched() -> None:
    a, b = _sample(True, 0), _sample(False, 1)
    a.band_present["s2_l2a_10m"] = torch.tensor([True, False, True, True])
    batch = collate_samples([a, b])
    assert batch.band_present["s2_l2a_10m"].tolist() == [[True, False, True, True]] * 1 + [
        [True] * 4
    ]
    assert batch.band_present["s1_grd"].tolist() == [[True, True], [False, False]]
