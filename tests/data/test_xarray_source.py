"""Labelled arrays (netCDF, zarr, open Datasets) as sensor sources: layouts, grids, laziness."""

from __future__ import annotations

import importlib.util
import pickle
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback
from rasterio.crs import CRS
from rasterio.windows import Window

from fusion.data.catalog import get_spec
from fusion.data.errors import (
    BandCountError,
    CorruptFileError,
    LayoutError,
    MissingCRSError,
    UnknownBandError,
)
from fusion.data.readers.xarray_source import IrregularGridError, open_xarray, open_xarray_series
from fusion.data.sources import ArrayBand

UTM33 = CRS.from_epsg(32633)
X0, Y0 = 500_000.0, 6_000_000.0
HAS_H5PY = importlib.util.find_spec("h5py") is not None
NC_ENGINES = [
    "netcdf4",
    pytest.param("h5netcdf", marks=pytest.mark.skipif(not HAS_H5PY, reason="h5netcdf needs h5py")),
]


def centres(n: int, res: float, origin: float, sign: float = 1.0) -> np.ndarray:
    """Pixel-centre coordinates of ``n`` pixels of size ``res`` from the edge ``origin``."""
    return origin + sign * res * (np.arange(n) + 0.5)


def spatial_ref(crs: CRS = UTM33) -> xr.DataArray:
    # What rioxarray writes: a 0-d variable with the WKT under both CF and GDAL names.
    return xr.DataArray(0, attrs={"crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt()})


def two_resolution_dataset(rng: np.random.Generator) -> xr.Dataset:
    """S2-like bands B02, B03 at 10 m (24×24) and B05, B8A at 20 m (12×12) over one footprint."""
    gm = {"grid_mapping": "spatial_ref"}
    fine, coarse = (24, 24), (12, 12)
    b02 = rng.integers(1, 10_000, fine).astype("uint16")
    b02[0, 0] = 65535
    data = {
        "B02": (("y10", "x10"), b02, {**gm, "_FillValue": 65535}),
        "B03": (("y10", "x10"), rng.integers(1, 10_000, fine).astype("uint16"), gm),
        "B05": (("y20", "x20"), rng.integers(1, 10_000, coarse).astype("uint16"), gm),
        "B8A": (("y20", "x20"), rng.integers(1, 10_000, coarse).astype("uint16"), gm),
        "SCL": (("y20", "x20"), rng.integers(0, 11, coarse).astype("uint8"), gm),
        "spatial_ref": spatial_ref(),
    }
    coords = {
        "x10": centres(24, 10, X0),
        "y10": centres(24, 10, Y0, -1),
        "x20": centres(12, 20, X0),
        "y20": centres(12, 20, Y0, -1),
    }
    return xr.Dataset(data, coords=coords)


def band_cube(rng: np.random.Generator, *, steps: int = 3) -> xr.Dataset:
    """A (time, band, y, x) cube with alias labels, as stackstac/odc-stac produce."""
    values = rng.integers(1, 10_000, (steps, 4, 16, 16)).astype("uint16")
    times = np.array(["2021-05-01", "2021-06-01", "2021-07-01"][:steps], dtype="datetime64[ns]")
    da = xr.DataArray(
        values,
        dims=("time", "band", "y", "x"),
        coords={
            "time": times,
            "band": ["B2", "B3", "B4", "B8"],
            "x": centres(16, 10, X0),
            "y": centres(16, 10, Y0, -1),
            "spatial_ref": spatial_ref(),
        },
        attrs={"grid_mapping": "spatial_ref"},
        name="reflectance",
    )
    return da.to_dataset()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


class TaskCounter(Callback):  # type: ignore[misc]
    """Counts dask tasks executed while active."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.count = 0

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        self.count += 1


@pytest.fixture
def tasks() -> Iterator[TaskCounter]:
    with TaskCounter() as counter:
        yield counter


def whole(band: Any) -> np.ndarray:
    return np.asarray(band.read(Window(0, 0, band.grid.width, band.grid.height))[0])


# ------------------------------------------------------------------------------ two resolutions


@pytest.mark.parametrize("engine", NC_ENGINES)
def test_netcdf_two_resolutions(
    tmp_path: Path, rng: np.random.Generator, engine: Literal["netcdf4", "h5netcdf"]
) -> None:
    ds = two_resolution_dataset(rng)
    path = tmp_path / "s2.nc"
    ds.to_netcdf(path, engine=engine)
    src = open_xarray(path, get_spec("s2_l2a"))
    assert list(src.bands) == ["B02", "B03", "B05", "B8A"]
    g10, g20 = src.bands["B02"].grid, src.bands["B05"].grid
    assert g10.res == (10.0, 10.0) and g20.res == (20.0, 20.0)
    assert (g10.width, g10.height, g20.width, g20.height) == (24, 24, 12, 12)
    assert g10.bounds == g20.bounds == (X0, Y0 - 240, X0 + 240, Y0)
    assert g10.crs == UTM33 and g10.is_north_up()
    assert src.bands["B03"].grid == g10 and src.bands["B8A"].grid == g20
    # Native resolutions: two streams, nothing resampled.
    assert [s.resolution_m for s in src.spec.streams()] == [10.0, 20.0]
    assert src.meta["resampled_from_native"] is False
    assert src.meta["format"] == "netcdf" and src.meta["unused_variables"] == ["SCL"]
    np.testing.assert_array_equal(whole(src.bands["B8A"]), ds["B8A"].values)
    values, valid = src.bands["B02"].read(Window(0, 0, 3, 2))
    np.testing.assert_array_equal(values, ds["B02"].values[:2, :3])
    assert not valid[0, 0] and valid.sum() == 5  # _FillValue 65535, raw values kept
    b05 = src.bands["B05"]
    assert isinstance(b05, ArrayBand) and b05.nodata == 0  # no attribute: the spec's nodata


def test_zarr_two_resolutions_lazy(
    tmp_path: Path, rng: np.random.Generator, tasks: TaskCounter
) -> None:
    ds = two_resolution_dataset(rng).chunk({"x10": 8, "y10": 8, "x20": 4, "y20": 4})
    path = tmp_path / "s2.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr 3's note on consolidated metadata
        ds.to_zarr(path, mode="w")
    tasks.count = 0
    src = open_xarray(path, get_spec("s2_l2a"), bands=["B02", "B8A"])
    assert tasks.count == 0, "opening computed dask tasks"
    assert list(src.bands) == ["B02", "B8A"] and src.meta["format"] == "zarr"
    band = src.bands["B8A"]
    assert isinstance(band, ArrayBand) and isinstance(band.array, dsa.Array)
    values, _ = band.read(Window(4, 4, 4, 4))
    assert tasks.count > 0
    np.testing.assert_array_equal(values, ds["B8A"].values[4:8, 4:8])


def test_lazy_dask_dataset_reads_only_the_window(
    rng: np.random.Generator, tasks: TaskCounter
) -> None:
    cube = band_cube(rng, steps=1).chunk({"x": 4, "y": 4, "band": 1})
    tasks.count = 0
    src = open_xarray(cube, get_spec("s2_l2a"))
    assert tasks.count == 0
    arr = src.bands["B08"].array  # type: ignore[attr-defined]
    assert isinstance(arr, dsa.Array) and arr.shape == (16, 16)
    assert arr.numblocks == (4, 4)
    values, _ = src.bands["B08"].read(Window(4, 8, 4, 4))
    # One 4×4 chunk of one band of one step, not the 64 chunks of the cube.
    assert 0 < tasks.count < 8
    np.testing.assert_array_equal(values, cube["reflectance"].values[0, 3, 8:12, 4:8])


def test_in_memory_dataset_is_wrapped_in_dask_or_kept(rng: np.random.Generator) -> None:
    cube = band_cube(rng, steps=1)
    src = open_xarray(cube, get_spec("s2_l2a"))
    assert isinstance(src.bands["B02"].array, dsa.Array)  # type: ignore[attr-defined]
    src = open_xarray(cube, get_spec("s2_l2a"), chunks=None)
    assert isinstance(src.bands["B02"].array, xr.DataArray)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(whole(src.bands["B04"]), cube["reflectance"].values[0, 2])


# ------------------------------------------------------------------------ band dimension, time


def test_band_dimension_labels_and_time_steps(tmp_path: Path, rng: np.random.Generator) -> None:
    cube = band_cube(rng)
    path = tmp_path / "cube.nc"
    cube.to_netcdf(path, engine="netcdf4")
    spec = get_spec("s2_l2a")
    with pytest.raises(LayoutError, match="3 time steps"):
        open_xarray(path, spec)
    src = open_xarray(path, spec, time=1)
    assert list(src.bands) == ["B02", "B03", "B04", "B08"]  # aliases B2.. → canonical
    assert src.time == datetime(2021, 6, 1) and src.meta["time_index"] == 1
    np.testing.assert_array_equal(whole(src.bands["B08"]), cube["reflectance"].values[1, 3])
    by_label = open_xarray(path, spec, time="2021-07-01")
    assert by_label.meta["time_index"] == 2
    assert open_xarray(path, spec, time=-1).time == datetime(2021, 7, 1)
    with pytest.raises(LayoutError, match="available"):
        open_xarray(path, spec, time="2020-01-01")
    with pytest.raises(LayoutError, match="out of range"):
        open_xarray(path, spec, time=3)

    series = open_xarray_series(path, spec)
    assert [s.time for s in series] == [datetime(2021, m, 1) for m in (5, 6, 7)]
    for i, s in enumerate(series):
        np.testing.assert_array_equal(whole(s.bands["B03"]), cube["reflectance"].values[i, 1])


def test_series_without_time_is_one_source(rng: np.random.Generator) -> None:
    ds = two_resolution_dataset(rng)
    series = open_xarray_series(ds, get_spec("s2_l2a"))
    assert len(series) == 1 and series[0].time is None
    with pytest.raises(LayoutError, match="no time dimension"):
        open_xarray(ds, get_spec("s2_l2a"), time=0)


def test_rioxarray_style_numbered_bands(rng: np.random.Generator) -> None:
    spec = get_spec("s1_grd")
    values = rng.normal(-12, 3, (2, 8, 8)).astype("float32")
    da = xr.DataArray(
        values,
        dims=("band", "y", "x"),
        coords={"band": [1, 2], "x": centres(8, 10, X0), "y": centres(8, 10, Y0, -1)},
        attrs={"crs": "EPSG:32633", "long_name": ("VH", "VV")},
    )
    src = open_xarray(da, spec)
    np.testing.assert_array_equal(whole(src.bands["VH"]), values[0])  # named by long_name
    del da.attrs["long_name"]
    src = open_xarray(da, spec)  # numbered, count matches: spec order VV, VH
    np.testing.assert_array_equal(whole(src.bands["VV"]), values[0])
    src = open_xarray(da, spec, bands=["VH", "VV"])
    np.testing.assert_array_equal(whole(src.bands["VV"]), values[1])
    with pytest.raises(BandCountError, match="bands= lists 3"):
        open_xarray(da, spec, bands=["VV", "VH", "VV"])
    with pytest.raises(BandCountError, match="2 unnamed bands"):
        open_xarray(da, get_spec("s2_l2a"))


def test_single_variable_dataarray(rng: np.random.Generator) -> None:
    # Taken out of its Dataset, a variable loses the spatial_ref data variable it points to.
    da = two_resolution_dataset(rng)["B05"]
    with pytest.raises(MissingCRSError, match="no CRS found") as info:
        open_xarray(da, get_spec("s2_l2a"))
    assert info.value.path == "<in-memory dataset>" and info.value.band == "B05"
    src = open_xarray(da.assign_coords(spatial_ref=spatial_ref()), get_spec("s2_l2a"))
    assert list(src.bands) == ["B05"] and src.bands["B05"].grid.res == (20.0, 20.0)
    assert src.meta["path"] is None and src.meta["format"] == "xarray"


# ------------------------------------------------------------------------------- grids and CRS


def test_south_up_and_float32_coordinates(rng: np.random.Generator) -> None:
    values = rng.normal(size=(6, 5)).astype("float32")
    ds = xr.Dataset(
        {"VV": (("y", "x"), values)},
        coords={
            "x": centres(5, 10, X0).astype("float32"),
            "y": centres(6, 10, Y0 - 60).astype("float32"),  # increasing: south-up storage
        },
        attrs={"crs": "EPSG:32633"},
    )
    src = open_xarray(ds, get_spec("s1_grd"))
    grid = src.bands["VV"].grid
    assert grid.is_north_up() and grid.bounds == pytest.approx((X0, Y0 - 60, X0 + 50, Y0))
    np.testing.assert_array_equal(whole(src.bands["VV"]), values[::-1])  # row 0 = north


def test_irregular_coordinates_are_refused(rng: np.random.Generator) -> None:
    x = centres(8, 10, X0)
    x[5] += 3.0
    ds = xr.Dataset(
        {"VV": (("y", "x"), rng.normal(size=(8, 8)))},
        coords={"x": x, "y": centres(8, 10, Y0, -1)},
        attrs={"crs": "EPSG:32633"},
    )
    with pytest.raises(IrregularGridError, match="not evenly spaced"):
        open_xarray(ds, get_spec("s1_grd"))
    with pytest.raises(IrregularGridError, match="no coordinate values"):
        open_xarray(ds.drop_vars("x"), get_spec("s1_grd"))


def test_missing_crs_names_the_file(tmp_path: Path, rng: np.random.Generator) -> None:
    ds = two_resolution_dataset(rng).drop_vars("spatial_ref")
    for v in ds.data_vars.values():
        v.attrs.pop("grid_mapping")
    path = tmp_path / "nocrs.nc"
    ds.to_netcdf(path, engine="netcdf4")
    with pytest.raises(MissingCRSError) as info:
        open_xarray(path, get_spec("s2_l2a"))
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_crs_from_grid_mapping_name(rng: np.random.Generator) -> None:
    # The grid mapping may have any name; the variable's grid_mapping attribute points to it.
    utm32 = CRS.from_epsg(32632)
    ds = two_resolution_dataset(rng).rename({"spatial_ref": "transverse_mercator"})
    ds["transverse_mercator"].attrs = {"crs_wkt": utm32.to_wkt()}
    for v in ("B02", "B03", "B05", "B8A"):
        ds[v].attrs["grid_mapping"] = "transverse_mercator"
    src = open_xarray(ds, get_spec("s2_l2a"))
    assert src.crs == utm32


# ------------------------------------------------------------------------------------ bad input


def test_unknown_band_labels(rng: np.random.Generator) -> None:
    cube = band_cube(rng, steps=1)
    cube = cube.assign_coords(band=["B2", "B3", "B4", "B99"])
    with pytest.raises(UnknownBandError) as info:
        open_xarray(cube, get_spec("s2_l2a"))
    assert info.value.band == "B99"
    ds = two_resolution_dataset(rng).rename({"B02": "blue", "B03": "green"})
    ds = ds.drop_vars(["B05", "B8A"])
    with pytest.raises(UnknownBandError, match="no data variable is named after a band"):
        open_xarray(ds, get_spec("s2_l2a"))


def test_explicit_band_list_count_mismatch(rng: np.random.Generator) -> None:
    cube = band_cube(rng, steps=1)
    with pytest.raises(BandCountError, match="holds 4 bands"):
        open_xarray(cube, get_spec("s2_l2a"), bands=["B02", "B03", "B04"])
    ds = two_resolution_dataset(rng)
    with pytest.raises(BandCountError, match=r"missing \['B11'\]"):
        open_xarray(ds, get_spec("s2_l2a"), bands=["B02", "B11"])


def test_duplicate_band_variables(rng: np.random.Generator) -> None:
    ds = two_resolution_dataset(rng)
    ds["B2"] = ds["B02"]  # alias of B02: the same band twice
    with pytest.raises(BandCountError, match="twice"):
        open_xarray(ds, get_spec("s2_l2a"))


def test_unexpected_dimensions(rng: np.random.Generator) -> None:
    cube = band_cube(rng, steps=1).rename({"band": "channel"})
    with pytest.raises(LayoutError, match="expected \\(y, x\\)"):
        open_xarray(cube, get_spec("s2_l2a"), variable="reflectance")
    src = open_xarray(cube, get_spec("s2_l2a"), band_dim="channel")
    assert len(src.bands) == 4
    with pytest.raises(LayoutError, match="no data variable 'nope'"):
        open_xarray(cube, get_spec("s2_l2a"), variable="nope")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no such file"):
        open_xarray(tmp_path / "absent.nc", get_spec("s1_grd"))
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"\x89HDF not really" * 64)
    with pytest.raises(CorruptFileError) as info:
        open_xarray(junk, get_spec("s1_grd"))
    assert info.value.path == str(junk)
    truncated = tmp_path / "cut.nc"
    full = tmp_path / "full.nc"
    xr.Dataset(
        {"VV": (("y", "x"), np.ones((64, 64), "float32"))},
        coords={"x": centres(64, 10, X0), "y": centres(64, 10, Y0, -1)},
    ).to_netcdf(full, engine="netcdf4")
    truncated.write_bytes(full.read_bytes()[:1000])
    with pytest.raises(CorruptFileError):
        open_xarray(truncated, get_spec("s1_grd"))


def test_netcdf_source_pickles(tmp_path: Path, rng: np.random.Generator) -> None:
    ds = two_resolution_dataset(rng)
    path = tmp_path / "p.nc"
    ds.to_netcdf(path, engine="netcdf4")
    src = open_xarray(path, get_spec("s2_l2a"))
    clone = pickle.loads(pickle.dumps(src))  # DataLoader workers receive sources pickled
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(whole(clone.bands["B05"]), ds["B05"].values)
