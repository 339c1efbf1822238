"""Multi-band GeoTIFFs: band naming, validation, corrupt files and the real EuroSAT-MS files."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
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
from fusion.data.readers.geotiff import EUROSAT_BAND_ORDER, open_geotiff
from fusion.data.sources import FileBand

TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 6_000_000.0)


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    descriptions: Sequence[str] | None = None,
    nodata: float | None = None,
    transform: object = TRANSFORM,
) -> Path:
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": str(data.dtype),
        "transform": transform,
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if descriptions is not None:
            ds.descriptions = tuple(descriptions)
    return path


@pytest.fixture
def cube() -> np.ndarray:
    return np.random.default_rng(3).integers(1, 10_000, (13, 32, 32)).astype("uint16")


def test_spec_order_when_counts_match(tmp_path: Path, cube: np.ndarray) -> None:
    spec = get_spec("s2_l1c")
    src = open_geotiff(write_tif(tmp_path / "a.tif", cube), spec)
    assert src.meta["band_names_from"] == "spec order"
    assert list(src.bands) == list(spec.band_names)
    band = src.bands["B8A"]
    assert isinstance(band, FileBand) and band.index == 9  # spec position of B8A, 1-based
    np.testing.assert_array_equal(band.read(Window(0, 0, 32, 32))[0], cube[8])
    assert src.bands["B02"].grid.crs == CRS.from_epsg(32633)


def test_eurosat_order_puts_b8a_last(tmp_path: Path, cube: np.ndarray) -> None:
    src = open_geotiff(
        write_tif(tmp_path / "e.tif", cube), get_spec("s2_l1c"), band_names=EUROSAT_BAND_ORDER
    )
    assert src.meta["band_names_from"] == "band_names"
    assert src.meta["file_band_order"] == EUROSAT_BAND_ORDER
    # The source lists bands in spec order, each reading its own file band.
    assert list(src.bands)[8] == "B8A"
    np.testing.assert_array_equal(src.bands["B8A"].read(Window(0, 0, 32, 32))[0], cube[12])
    np.testing.assert_array_equal(src.bands["B09"].read(Window(0, 0, 32, 32))[0], cube[8])


def test_descriptions_name_a_subset_in_file_order(tmp_path: Path, cube: np.ndarray) -> None:
    path = write_tif(tmp_path / "rgb.tif", cube[:3], descriptions=["B4", "B3", "B2"])
    src = open_geotiff(path, get_spec("s2_l2a"))
    assert src.meta["band_names_from"] == "descriptions"
    assert list(src.bands) == ["B02", "B03", "B04"]
    np.testing.assert_array_equal(src.bands["B04"].read(Window(0, 0, 4, 4))[0], cube[0, :4, :4])


def test_resampled_bands_take_the_file_pixel_size(tmp_path: Path, cube: np.ndarray) -> None:
    src = open_geotiff(write_tif(tmp_path / "a.tif", cube), get_spec("s2_l1c"))
    assert src.meta["resampled_from_native"] is True
    assert {b.resolution_m for b in src.spec.bands} == {10.0}
    # A file at the bands' native resolution keeps the spec as it is.
    s1 = np.zeros((2, 8, 8), "float32")
    src = open_geotiff(write_tif(tmp_path / "s1.tif", s1), get_spec("s1_grd"))
    assert src.meta["resampled_from_native"] is False
    assert src.spec == get_spec("s1_grd")


def test_nodata_from_file_then_spec(tmp_path: Path, cube: np.ndarray) -> None:
    data = cube[:2].copy()
    data[:, 0, 0] = 0
    data[:, 0, 1] = 9
    src = open_geotiff(write_tif(tmp_path / "n.tif", data, nodata=9), get_spec("s1_grd"))
    _, valid = src.bands["VV"].read(Window(0, 0, 2, 1))
    assert valid.tolist() == [[True, False]]  # the file says 9, not the spec's (none)
    src = open_geotiff(write_tif(tmp_path / "m.tif", cube), get_spec("s2_l1c"))
    b01 = src.bands["B01"]
    assert isinstance(b01, FileBand) and b01.nodata == 0  # no file nodata: the spec's 0


def test_no_spec_describes_the_file(tmp_path: Path, cube: np.ndarray) -> None:
    src = open_geotiff(write_tif(tmp_path / "x.tif", cube[:4]))
    assert src.spec.band_names == ("band_1", "band_2", "band_3", "band_4")
    assert src.spec.bands[0].resolution_m == 10.0 and src.spec.dtype == "uint16"


def test_band_count_mismatch_names_file_and_counts(tmp_path: Path, cube: np.ndarray) -> None:
    path = write_tif(tmp_path / "twelve.tif", cube[:12])
    with pytest.raises(BandCountError) as info:
        open_geotiff(path, get_spec("s2_l1c"))
    msg = str(info.value)
    assert "12 bands" in msg and "expected 13" in msg and str(path) in msg
    with pytest.raises(BandCountError, match="band_names lists 13"):
        open_geotiff(path, get_spec("s2_l1c"), band_names=EUROSAT_BAND_ORDER)


def test_unknown_band_name(tmp_path: Path, cube: np.ndarray) -> None:
    path = write_tif(tmp_path / "u.tif", cube[:2])
    with pytest.raises(UnknownBandError) as info:
        open_geotiff(path, get_spec("s1_grd"), band_names=["VV", "HV"])
    assert info.value.band == "HV" and info.value.path == str(path)


def test_missing_crs(tmp_path: Path, cube: np.ndarray) -> None:
    path = write_tif(tmp_path / "nocrs.tif", cube[:2], crs=None)
    with pytest.raises(MissingCRSError) as info:
        open_geotiff(path, get_spec("s1_grd"))
    assert info.value.path == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no such file"):
        open_geotiff(tmp_path / "absent.tif", get_spec("s1_grd"))


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "junk.tif"
    path.write_bytes(b"definitely not a TIFF" * 50)
    with pytest.raises(CorruptFileError):
        open_geotiff(path, get_spec("s1_grd"))


@pytest.mark.parametrize("descriptions", [None, list(EUROSAT_BAND_ORDER)])
def test_truncated_file_is_corrupt(
    tmp_path: Path, cube: np.ndarray, descriptions: list[str] | None
) -> None:
    # With descriptions GDAL rewrites the directory at the end of the file, so the cut removes
    # it (fails at open); without, the header survives and only pixel blocks are lost.
    full = write_tif(tmp_path / "full.tif", cube, descriptions=descriptions)
    cut = tmp_path / "cut.tif"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as info:
        src = open_geotiff(cut, get_spec("s2_l1c"), band_names=EUROSAT_BAND_ORDER)
        for band in src.bands.values():
            band.read(Window(0, 0, 32, 32))
    assert info.value.path == str(cut)


def test_source_pickles_and_reads(tmp_path: Path, cube: np.ndarray) -> None:
    src = open_geotiff(write_tif(tmp_path / "p.tif", cube[:2]), get_spec("s1_grd"))
    src.bands["VV"].read(Window(0, 0, 2, 2))  # opens the file handle that must not pickle
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.bands["VH"].read(Window(1, 1, 3, 3))[0], cube[1, 1:4, 1:4])


# --------------------------------------------------------------------- real EuroSAT-MS files


def _eurosat_files(root: Path, per_class: int = 1) -> list[Path]:
    folder = root / "eurosat-ms"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    files = [f for d in sorted(folder.iterdir()) for f in sorted(d.glob("*.tif"))[:per_class]]
    assert files, f"no GeoTIFFs under {folder}"
    return files


def test_eurosat_files_open_as_s2_l1c(shared_data: Path) -> None:
    files = _eurosat_files(shared_data)
    assert len(files) == 10  # one per class
    spec = get_spec("s2_l1c")
    for path in files:
        src = open_geotiff(path, spec, band_names=EUROSAT_BAND_ORDER)
        assert len(src.bands) == 13
        assert list(src.bands) == list(spec.band_names)
        grid = src.bands["B01"].grid
        assert (grid.width, grid.height) == (64, 64)
        epsg = grid.crs.to_epsg()
        assert epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760), epsg
        assert src.meta["resampled_from_native"] is True
        assert len(src.spec.streams()) == 1
        assert all(b.resolution_m == pytest.approx(10.0, rel=0.01) for b in src.spec.bands)
        assert src.spec.bands[0].resolution_m == pytest.approx(grid.res[0])
        values, valid = src.bands["B04"].read(Window(0, 0, 64, 64))
        assert values.shape == (64, 64) and values.dtype == np.uint16 and valid.any()


def test_eurosat_band_mapping_is_physical(shared_data: Path) -> None:
    """B8A sits last in the file: the mapped bands must behave like the bands they claim to be."""
    folder = shared_data / "eurosat-ms" / "Forest"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    spec = get_spec("s2_l1c")
    whole = Window(0, 0, 64, 64)
    for path in sorted(folder.glob("*.tif"))[:3]:
        src = open_geotiff(path, spec, band_names=EUROSAT_BAND_ORDER)
        read = {name: src.bands[name].read(whole)[0].astype("float64") for name in src.bands}
        # Over forest, the two NIR bands are bright and alike; red is dark (chlorophyll
        # absorption) and the cirrus band B10 sees almost no ground signal.
        assert read["B8A"].mean() > 2 * read["B04"].mean()
        assert abs(read["B8A"].mean() / read["B08"].mean() - 1) < 0.25
        assert read["B10"].mean() < 0.2 * read["B08"].mean()
        assert np.corrcoef(read["B08"].ravel(), read["B8A"].ravel())[0, 1] > 0.8
