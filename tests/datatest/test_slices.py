"""Sample fields and slice predicates: what a condition selects, on real synthetic chips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fusion.data.labelled import LabelledData
from fusion.data.sample import Sample
from fusion.datatest import (
    Condition,
    Slice,
    SuiteError,
    cloud_fraction,
    field_table,
    parse_where,
    season,
)

Table = list[dict[str, Any]]
CLASSES = ("water", "forest", "grassland", "cropland", "urban", "bare")
#: Season of each synthetic place at 47.8° N (fusion.data.layouts.SYNTHETIC_ACQUIRED).
SEASONS = {0: "summer", 1: "spring", 2: "winter", 3: "autumn", 4: "summer"}


@pytest.fixture(scope="module")
def table(test_chips: list[Sample], small_data: LabelledData) -> Table:
    assert small_data.class_names == CLASSES
    return field_table(test_chips, CLASSES)


def test_fields_of_synthetic_chips(test_chips: list[Sample], table: Table) -> None:
    for sample, row in zip(test_chips, table, strict=True):
        assert row["sensors"] == sample.sensors and row["n_sensors"] == len(sample.sensors)
        assert row["label"] == CLASSES[sample.label] and row["label_index"] == sample.label
        assert row["site"] == sample.meta["scene"]
        # The earliest acquisition of a sensor present: the SAR pass the day before, if any.
        times = sample.meta["time"]
        assert row["time"] == min(times[s] for s in sample.sensors)
        assert row["month"] == int(row["time"][5:7]) and row["season"] == SEASONS[row["site"]]
        assert 47 < row["latitude"] < 49
        if "syn_optical" in sample.sensors:  # clouds are the invalid pixels of the 10 m bands
            clouds = 1 - float(sample.masks["syn_optical_10m"].float().mean())
            assert row["cloud_fraction"] == pytest.approx(clouds)
        else:
            assert "cloud_fraction" not in row and cloud_fraction(sample) is None
    assert {row["season"] for row in table} == {"winter", "spring", "summer", "autumn"}


def test_a_numeric_bin_selects_exactly_the_chips_in_it(table: Table) -> None:
    where = parse_where({"cloud_fraction": {">=": 0.05, "<": 0.5}}, test="t")
    mask = Slice(where).mask(table)
    expected = [0.05 <= r.get("cloud_fraction", -1) < 0.5 for r in table]
    assert mask.tolist() == expected and 0 < mask.sum() < len(table)


def test_sensor_presence_labels_and_sites(table: Table) -> None:
    def select(where: dict[str, Any]) -> list[int]:
        return np.flatnonzero(Slice(parse_where(where, test="t")).mask(table)).tolist()

    no_optical = select({"sensors": {"not_in": ["syn_optical"]}})
    assert no_optical == [i for i, r in enumerate(table) if "syn_optical" not in r["sensors"]]
    assert no_optical and all(table[i]["site"] == 3 for i in no_optical)
    assert select({"sensors": "syn_thermal"}) == [
        i for i, r in enumerate(table) if "syn_thermal" in r["sensors"]
    ]
    water = select({"label": "water"})
    assert water == [i for i, r in enumerate(table) if r["label"] == "water"]
    assert select({"label": ["water", "forest"]}) == sorted(
        water + select({"label": {"==": "forest"}})
    )
    assert select({"site": 0}) == select({"site": "0"}) == select({"scene": {"in": [0]}})
    assert select({"site": 0, "label": {"!=": "water"}}) == [
        i for i in select({"site": 0}) if i not in water
    ]
    winter = select({"season": "winter"})
    assert winter and winter == select({"site": 2})  # the January place, every sensor
    assert select({"season": ["spring", "autumn"]}) == select({"site": [1, 3]})
    assert select({"season": "winter", "sensors": {"not_in": ["syn_optical"]}}) == []


def test_switching_a_sensor_off_keeps_chips_that_had_it_and_another(
    test_chips: list[Sample], table: Table
) -> None:
    cut = Slice(off=("syn_thermal",))
    mask = cut.mask(table)
    assert mask.tolist() == ["syn_thermal" in r["sensors"] for r in table]  # never thermal alone
    sample = test_chips[int(np.flatnonzero(mask)[0])]
    assert "syn_thermal" not in cut.apply(sample).sensors
    assert cut.describe() == "syn_thermal off"


def test_conditions_on_missing_fields_and_mismatched_types_select_nothing() -> None:
    rows: Table = [{"x": 0.1}, {"x": "high"}, {}, {"x": [0.1]}, {"x": True}]
    assert Slice((Condition("x", "<", 0.2),)).mask(rows).tolist() == [1, 0, 0, 0, 0]
    assert Slice((Condition("x", "not_in", ["high"]),)).mask(rows).tolist() == [1, 0, 0, 1, 1]


def test_bad_conditions_are_named() -> None:
    with pytest.raises(SuiteError, match=r"unknown operator '~'.*'<='"):
        parse_where({"cloud_fraction": {"~": 0.2}}, test="cloudy")
    with pytest.raises(SuiteError, match="needs a number"):
        parse_where({"cloud_fraction": {"<": [0.2]}}, test="cloudy")
    with pytest.raises(SuiteError, match="maps field names"):
        parse_where(["cloud_fraction"], test="cloudy")


def test_seasons_flip_south_of_the_equator() -> None:
    assert [season(m) for m in (1, 4, 7, 10)] == ["winter", "spring", "summer", "autumn"]
    assert season(7, latitude=-33.9) == "winter" and season(12, latitude=10) == "winter"
