"""Sensor sources from in-memory arrays: one (C, H, W) raster, or one array per band."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from fusion.data.catalog import get_spec
from fusion.data.errors import (
    BandCountError,
    FusionDataError,
    MissingCRSError,
    UnknownBandError,
)
from fusion.data.grid import Grid
from fusion.data.readers.arrays import from_array, from_arrays, spec_for_grids
from fusion.data.sources import ArrayBand

UTM33 = CRS.from_epsg(32633)
ORIGIN = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 6_000_000.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_from_array_spec_order_and_values(rng: np.random.Generator) -> None:
    spec = get_spec("s1_grd")
    arr = rng.normal(-12, 3, (2, 16, 20)).astype("float32")
    src = from_array(arr, spec, transform=ORIGIN, crs="EPSG:32633")
    assert list(src.bands) == ["VV", "VH"]
    vh = src.bands["VH"]
    assert vh.grid == Grid(UTM33, ORIGIN, 20, 16)
    values, valid = vh.read(Window(2, 3, 5, 4))
    np.testing.assert_array_equal(values, arr[1, 3:7, 2:7])
    assert valid.all()
    # 10 m pixels are S1's native resolution: the spec is untouched.
    assert src.spec == spec and src.meta["resampled_from_native"] is False


def test_from_array_named_subset_reordered_to_spec(rng: np.random.Generator) -> None:
    spec = get_spec("s2_l2a")
    arr = rng.integers(1, 10_000, (3, 8, 8)).astype("uint16")
    # File order B04, B03, B02 (an RGB export), names given as aliases.
    src = from_array(arr, spec, transform=ORIGIN, crs=32633, band_names=["B4", "B3", "B2"])
    assert list(src.bands) == ["B02", "B03", "B04"]
    assert src.spec.band_names == ("B02", "B03", "B04")
    np.testing.assert_array_equal(src.bands["B04"].read(Window(0, 0, 8, 8))[0], arr[0])
    np.testing.assert_array_equal(src.bands["B02"].read(Window(0, 0, 8, 8))[0], arr[2])


def test_from_array_nodata_defaults_to_spec_and_masks(rng: np.random.Generator) -> None:
    spec = get_spec("s2_l2a")
    arr = rng.integers(1, 10_000, (3, 4, 4)).astype("uint16")
    arr[0, 1, 1] = 0  # spec.nodata for Sentinel-2
    src = from_array(arr, spec, transform=ORIGIN, crs=UTM33, band_names=["B02", "B03", "B04"])
    _, valid = src.bands["B02"].read(Window(0, 0, 4, 4))
    assert not valid[1, 1] and valid.sum() == 15
    src = from_array(
        arr, spec, transform=ORIGIN, crs=UTM33, band_names=["B02", "B03", "B04"], nodata=65535
    )
    assert src.bands["B02"].read(Window(0, 0, 4, 4))[1].all()


def test_from_array_resampled_bands_get_the_array_pixel_size(rng: np.random.Generator) -> None:
    spec = get_spec("s2_l1c")
    arr = rng.integers(1, 10_000, (13, 8, 8)).astype("uint16")
    src = from_array(arr, spec, transform=ORIGIN, crs=UTM33)
    assert src.meta["resampled_from_native"] is True
    assert {b.resolution_m for b in src.spec.bands} == {10.0}
    assert len(src.spec.streams()) == 1  # one grid, one stream: nothing claims 60 m any more
    # Everything else about the bands is unchanged.
    assert src.spec.band("B01").wavelength_nm == spec.band("B01").wavelength_nm


def test_from_array_keeps_dask_lazy(rng: np.random.Generator) -> None:
    data = rng.normal(size=(2, 64, 64)).astype("float32")
    arr = dsa.from_array(data, chunks=(1, 16, 16))  # type: ignore[no-untyped-call]
    src = from_array(arr, get_spec("s1_grd"), transform=ORIGIN, crs=UTM33)
    band = src.bands["VV"]
    assert isinstance(band, ArrayBand) and isinstance(band.array, dsa.Array)
    values, _ = band.read(Window(16, 16, 16, 16))
    np.testing.assert_array_equal(values, arr[0, 16:32, 16:32].compute())


@pytest.mark.parametrize(
    ("shape", "names", "match"),
    [
        ((3, 4, 4), None, "3 channels but s1_grd has 2"),
        ((2, 4, 4), ["VV"], "2 channels but band_names lists 1"),
        ((4, 4), None, r"\(C, H, W\)"),
    ],
)
def test_from_array_band_count_errors(
    shape: tuple[int, ...], names: list[str] | None, match: str
) -> None:
    with pytest.raises(BandCountError, match=match):
        from_array(
            np.zeros(shape, "float32"),
            get_spec("s1_grd"),
            transform=ORIGIN,
            crs=UTM33,
            band_names=names,
        )


def test_from_array_unknown_and_duplicate_names() -> None:
    arr = np.zeros((2, 4, 4), "float32")
    with pytest.raises(UnknownBandError) as info:
        from_array(arr, get_spec("s1_grd"), transform=ORIGIN, crs=UTM33, band_names=["VV", "HH"])
    assert info.value.band == "HH" and info.value.sensor == "s1_grd"
    with pytest.raises(BandCountError, match="twice"):
        from_array(arr, get_spec("s2_l2a"), transform=ORIGIN, crs=UTM33, band_names=["B08", "B8"])


def test_from_array_requires_crs() -> None:
    arr = np.zeros((2, 4, 4), "float32")
    with pytest.raises(MissingCRSError):
        from_array(arr, get_spec("s1_grd"), transform=ORIGIN, crs=None)
    with pytest.raises(MissingCRSError, match="cannot parse"):
        from_array(arr, get_spec("s1_grd"), transform=ORIGIN, crs="not a crs")


def test_from_arrays_native_grids_from_spec_resolutions(rng: np.random.Generator) -> None:
    spec = get_spec("s2_l2a")
    arrays = {
        "B02": rng.integers(1, 9999, (12, 12)).astype("uint16"),
        "B5": rng.integers(1, 9999, (6, 6)).astype("uint16"),  # alias of B05, 20 m
        "B01": rng.integers(1, 9999, (2, 2)).astype("uint16"),  # 60 m
    }
    src = from_arrays(arrays, spec, transform=ORIGIN, crs=UTM33)
    assert list(src.bands) == ["B01", "B02", "B05"]
    assert src.bands["B02"].grid.res == (10.0, 10.0)
    assert src.bands["B05"].grid.res == (20.0, 20.0)
    assert src.bands["B01"].grid.res == (60.0, 60.0)
    # All three cover the same 120 m footprint from the same corner.
    assert {src.bands[b].grid.bounds for b in src.bands} == {src.bands["B02"].grid.bounds}
    assert [s.resolution_m for s in src.spec.streams()] == [10.0, 20.0, 60.0]
    assert src.meta["resampled_from_native"] is False
    np.testing.assert_array_equal(src.bands["B05"].read(Window(0, 0, 6, 6))[0], arrays["B5"])


def test_from_arrays_explicit_grids(rng: np.random.Generator) -> None:
    spec = get_spec("s1_grd")
    grid = Grid(UTM33, ORIGIN, 5, 4)
    arrays = {"VV": rng.normal(size=(4, 5)), "VH": rng.normal(size=(4, 5))}
    src = from_arrays(arrays, spec, grids=grid)
    assert src.bands["VV"].grid is grid
    src = from_arrays(arrays, spec, grids={"vv": grid, "VH": grid})
    assert src.bands["VH"].grid is grid


def test_from_arrays_errors(rng: np.random.Generator) -> None:
    spec = get_spec("s2_l2a")
    good = {"B02": np.zeros((12, 12), "uint16")}
    with pytest.raises(MissingCRSError):
        from_arrays(good, spec, transform=ORIGIN)
    with pytest.raises(UnknownBandError) as info:
        from_arrays({"B99": np.zeros((4, 4))}, spec, transform=ORIGIN, crs=UTM33)
    assert info.value.band == "B99"
    with pytest.raises(BandCountError):
        from_arrays({}, spec, transform=ORIGIN, crs=UTM33)
    # A 10 m-sized array passed as a 20 m band covers twice the footprint.
    wrong = {"B02": np.zeros((12, 12)), "B05": np.zeros((12, 12))}
    with pytest.raises(FusionDataError, match="wrong resolution") as err:
        from_arrays(wrong, spec, transform=ORIGIN, crs=UTM33)
    assert err.value.band == "B05"
    with pytest.raises(FusionDataError, match="no entry"):
        from_arrays(
            {"B02": np.zeros((4, 4)), "B03": np.zeros((4, 4))},
            spec,
            grids={"B02": Grid(UTM33, ORIGIN, 4, 4)},
        )
    with pytest.raises(FusionDataError, match="does not match grid"):
        from_arrays({"B02": np.zeros((4, 4))}, spec, grids=Grid(UTM33, ORIGIN, 5, 4))


def test_spec_for_grids_leaves_geographic_grids_alone() -> None:
    spec = get_spec("s2_l2a").subset(["B01", "B02"])
    grid = Grid(CRS.from_epsg(4326), Affine(0.0001, 0, 10, 0, -0.0001, 50), 4, 4)
    out, resampled = spec_for_grids(spec, {"B01": grid, "B02": grid})
    assert out is spec and resampled is False
