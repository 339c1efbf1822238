"""Sensor and band subsets on real synthetic chips."""

from __future__ import annotations

import pytest
import torch

from fusion.data.catalog import S1_GRD, S2_L2A
from fusion.data.errors import UnknownBandError
from fusion.data.sample import Sample
from fusion.data.synthetic import SYN_OPTICAL, SYN_SAR, SYN_THERMAL
from fusion.probe import Subset, SubsetError, band_subsets, parse_subset, sensor_subsets

SPECS = {s.name: s for s in (SYN_OPTICAL, SYN_SAR, SYN_THERMAL)}


def _chip(small: tuple[list[Sample], list[Sample]]) -> Sample:
    return next(s for s in small[0] if len(s.sensors) == 3)


def test_every_non_empty_sensor_combination_largest_first() -> None:
    subsets = sensor_subsets(SPECS)
    assert len(subsets) == 7
    assert subsets[0].name == "syn_optical+syn_sar+syn_thermal"
    assert [len(s.sensors) for s in subsets] == [3, 2, 2, 2, 1, 1, 1]


def test_named_band_subsets_only_where_every_band_exists() -> None:
    names = [s.name for s in band_subsets({**SPECS, "s1_grd": S1_GRD, "s2_l2a": S2_L2A})]
    assert names == ["s2_l2a:RGB", "s2_l2a:RGB+NIR", "syn_optical:RGB", "syn_optical:RGB+NIR"]


def test_rgb_subset_keeps_three_bands_in_stream_order(small: tuple) -> None:  # type: ignore[type-arg]
    chip = _chip(small)
    rgb = parse_subset("syn_optical:RGB", SPECS).apply(chip)
    assert rgb is not None and rgb.sensors == ["syn_optical"]
    (key,) = rgb.data
    assert rgb.streams[key].band_names == ("B02", "B03", "B04")  # the 20 m stream is gone
    full = chip.streams[key].band_names
    idx = [full.index(b) for b in ("B02", "B03", "B04")]
    assert torch.equal(rgb.data[key], chip.data[key][idx])
    assert torch.equal(rgb.masks[key], chip.masks[key])


def test_subset_of_absent_sensors_is_none(small: tuple) -> None:  # type: ignore[type-arg]
    chip = _chip(small).without("syn_thermal")
    assert Subset("thermal", {"syn_thermal": None}).apply(chip) is None
    both = parse_subset("syn_sar,syn_thermal", SPECS).apply(chip)
    assert both is not None and both.sensors == ["syn_sar"]


def test_unknown_bands_and_sensors_are_named(small: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(UnknownBandError, match="B05"):
        _chip(small).select_bands({"syn_optical": ["B04", "B05"]})
    with pytest.raises(SubsetError, match=r"unknown sensor 'radar'.*syn_sar"):
        parse_subset("radar", SPECS)
    with pytest.raises(SubsetError, match=r"no band\(s\) \['B09'\]"):
        parse_subset("syn_optical:B04/B09", SPECS)
    assert parse_subset("syn_optical:red/green", SPECS).bands == {"syn_optical": ("red", "green")}
