"""Extra unlabelled pretraining sources: conformed to the primary sensors, own normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer

from cli.pretrain import parse_sensor_map
from fusion.data.bands import Band
from fusion.data.datasets import build_datasets
from fusion.data.errors import FusionDataError
from fusion.data.extra_sources import add_extra_sources, conformer
from fusion.data.layouts import size
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec, Stream
from fusion.pretrain import PretrainConfig, pretrain

TINY = {"width": 16, "depth": 1, "heads": 2, "batch_size": 8, "proj_dim": 16, "log_every": 1}


@pytest.fixture(scope="module")
def eurosat(shared_data: Path):  # type: ignore[no-untyped-def]
    return build_datasets(shared_data / "eurosat-ms")


def test_l2a_chip_is_conformed_to_the_l1c_streams(eurosat, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    extra = build_datasets(shared_data / "major-tom", chip_m=640)
    raw = extra.train[3]
    out = conformer(eurosat.specs, {"s2_l2a": "s2_l1c"})(raw)
    assert set(out.streams) == {"s2_l1c_10m", "s2_l1c_20m", "s2_l1c_60m"}
    assert out.label is None
    sixty = out.streams["s2_l1c_60m"]
    assert sixty.band_names == ("B01", "B09", "B10")  # the primary band order
    assert out.bands_present("s2_l1c_60m").tolist() == [True, True, False]  # L2A has no B10
    assert torch.equal(out.data["s2_l1c_60m"][2], torch.zeros_like(out.data["s2_l1c_60m"][2]))
    src = raw.streams["s2_l2a_60m"]
    assert torch.equal(
        out.data["s2_l1c_60m"][1], raw.data["s2_l2a_60m"][src.band_names.index("B09")]
    )
    assert torch.equal(out.data["s2_l1c_10m"], raw.data["s2_l2a_10m"])  # same bands, same order
    with pytest.raises(FusionDataError, match="none of which matches"):
        conformer(eurosat.specs)(raw)  # L2A without a map is another sensor


def test_bands_are_matched_by_alias_whatever_the_case() -> None:
    def band(name: str, *aliases: str) -> Band:
        return Band(name, wavelength_nm=800.0, resolution_m=10.0, aliases=aliases)

    primary = SensorSpec("s2", "raster", (band("B04", "B4"), band("B08", "B8"), band("B03")))
    # The extra file names its bands "b8" (an alias, lower case) and "B4"; it has no B03.
    source = Stream("s2_10m", "s2", (band("b8"), band("B4")), resolution_m=10.0)
    x = torch.stack([torch.full((2, 2), 8.0), torch.full((2, 2), 4.0)])
    raw = Sample({"s2_10m": x}, {"s2_10m": torch.ones(2, 2, dtype=torch.bool)}, {"s2_10m": source})
    out = conformer({"s2": primary})(raw)
    key = next(iter(primary.streams())).key
    assert out.bands_present(key).tolist() == [True, True, False]
    assert out.data[key][:, 0, 0].tolist() == [4.0, 8.0, 0.0]  # primary order, B03 left empty


def test_native_stream_wins_over_a_renamed_one(eurosat, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    ssl4eo = build_datasets(shared_data / "ssl4eo-s12", chip_m=640)  # holds both L1C and L2A
    raw = ssl4eo.train[0]
    out = conformer(eurosat.specs, {"s2_l2a": "s2_l1c"})(raw)
    assert sorted(out.streams) == ["s2_l1c_10m", "s2_l1c_20m", "s2_l1c_60m"]  # S1 left out
    assert torch.equal(out.data["s2_l1c_10m"], raw.data["s2_l1c_10m"])
    assert out.bands_present("s2_l1c_60m").all()


def test_extra_source_joins_training_split_only(eurosat, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    extra_path = shared_data / "major-tom"
    extra = build_datasets(extra_path, chip_m=640)
    mixed = add_extra_sources(eurosat, [extra_path], sensor_map={"s2_l2a": "s2_l1c"})
    assert size(mixed.train) == size(eurosat.train) + size(extra.train) + size(extra.val)
    assert mixed.val is eurosat.val and mixed.specs is eurosat.specs
    assert "s2_l2a→s2_l1c" in mixed.description
    # Each source keeps its own normalisation: the extra chip equals its own normalised chip.
    tail = mixed.train[size(eurosat.train)]
    assert torch.equal(tail.data["s2_l1c_10m"], extra.train[0].data["s2_l2a_10m"])
    assert mixed.train[0].label is None  # the primary's labels are not pretraining inputs


def test_extra_source_without_a_shared_sensor_is_refused(eurosat, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    ts = shared_data / "imu" / "BasicMotions_TRAIN.ts"
    with pytest.raises(FusionDataError, match="none of which is a sensor of the primary data"):
        add_extra_sources(eurosat, [ts])


def test_pretrain_with_an_extra_source(tmp_path: Path, shared_data: Path) -> None:
    cfg = PretrainConfig.from_dict(
        {
            **TINY,
            "data": str(shared_data / "eurosat-ms"),
            "extra_data": [str(shared_data / "major-tom")],
            "sensor_map": {"s2_l2a": "s2_l1c"},
            "out": str(tmp_path),
            "max_steps": 2,
        }
    )
    summary = pretrain(cfg, progress=False)
    assert summary["steps"] == 2
    assert summary["data"]["train"] > 600 and summary["data"]["sensors"] == ["s2_l1c"]


def test_sensor_map_option_parses_pairs() -> None:
    assert parse_sensor_map(["s2_l2a=s2_l1c", " a = b "]) == {"s2_l2a": "s2_l1c", "a": "b"}
    assert parse_sensor_map(None) is None
    with pytest.raises(typer.BadParameter, match="FROM=TO"):
        parse_sensor_map(["s2_l2a"])
