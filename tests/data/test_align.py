"""Alignment on real data (BigEarthNet, SSL4EO-S12, Major-TOM) and generated GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import calculate_default_transform, reproject

from fusion.data.align import align
from fusion.data.errors import (
    ChipError,
    CRSMismatchError,
    LayoutError,
    MissingCRSError,
    NoOverlapError,
)
from fusion.data.readers.band_folder import open_band_folder, open_band_folders
from fusion.data.scenes import group_scenes
from tests.data.generated import write_band, write_s1_folder, write_s2_folder


def test_bigearthnet_v2_three_grids_plus_s1(shared_data: Path) -> None:
    sources = open_band_folders([shared_data / "bigearthnet-v2"])
    scenes = [align(g) for g in group_scenes(sources)]
    by_sensor = {tuple(s.sources): s for s in scenes}
    s2 = by_sensor[("s2_l2a",)]
    chip = s2.read_chip(s2.chip_bounds(s2.bounds.left, s2.bounds.top, 1200))
    assert chip.shapes() == {
        "s2_l2a_10m": (4, 120, 120),
        "s2_l2a_20m": (6, 60, 60),
        "s2_l2a_60m": (2, 20, 20),
    }
    s1 = by_sensor[("s1_grd",)]
    chip1 = s1.read_chip(s1.chip_bounds(s1.bounds.left, s1.bounds.top, 1200))
    assert chip1.shapes() == {"s1_grd": (2, 120, 120)}
    # no resampling: files already on their native grids
    assert all(not a.resampled for a in s2.streams.values())
    # values are the file's, scaled to reflectance
    with rasterio.open(next((shared_data / "bigearthnet-v2").rglob("*_B8A.tif"))) as ds:
        raw = ds.read(1).astype(np.float32) * 1e-4
    b8a = chip.data["s2_l2a_20m"][list(chip.streams["s2_l2a_20m"].band_names).index("B8A")]
    np.testing.assert_allclose(b8a.numpy(), raw, rtol=1e-6)


def test_bigearthnet_v2_s1_and_s2_patches_do_not_overlap(shared_data: Path) -> None:
    sources = open_band_folders([shared_data / "bigearthnet-v2"])
    with pytest.raises(NoOverlapError, match="do not overlap"):
        align(sources)


def test_bigearthnet_v1_pairs_align(shared_data: Path) -> None:
    groups = group_scenes(open_band_folders([shared_data / "bigearthnet-v1-pairs"]))
    assert len(groups) == 6
    for group in groups:
        assert sorted(s.name for s in group) == ["s1_grd", "s2_l2a"]
        s1 = next(s for s in group if s.name == "s1_grd")
        s2 = next(s for s in group if s.name == "s2_l2a")
        assert s1.meta["corresponding_s2_patch"] in s2.meta["folder"]
        scene = align(group)
        assert scene.size_m == (1200.0, 1200.0)
        sample = scene.read_chip(scene.bounds)
        assert sample.shapes()["s1_grd"] == (2, 120, 120)
        assert sample.shapes()["s2_l2a_60m"] == (2, 20, 20)


def test_ssl4eo_three_products_two_dates(shared_data: Path) -> None:
    groups = group_scenes(open_band_folders([shared_data / "ssl4eo-s12"]))
    assert len(groups) == 2
    for group in groups:
        assert [s.name for s in group] == ["s1_grd", "s2_l1c", "s2_l2a"]
        scene = align(group)
        # geographic inputs are placed in their UTM zone (43N for India at 73.3°E)
        assert scene.crs.to_epsg() == 32643
        # lattice at multiples of 60 m from the UTM origin: the Sentinel-2 tile grid
        assert scene.bounds.left % 60 == 0 and scene.bounds.top % 60 == 0
        grids = {k: a.grid for k, a in scene.streams.items()}
        assert grids["s2_l1c_10m"].res == (10.0, 10.0) and grids["s2_l2a_60m"].res == (60.0, 60.0)
        for g in grids.values():  # every stream starts at the footprint's corner
            assert (g.transform.c, g.transform.f) == (scene.bounds.left, scene.bounds.top)
        sample = scene.read_chip(scene.chip_bounds(scene.bounds.left, scene.bounds.top, 1200))
        assert sample.shapes()["s2_l1c_60m"] == (3, 20, 20)  # B01, B09, B10
        assert min(sample.valid_fraction().values()) > 0.95
    times = [g[0].time for g in groups]
    assert times[0] is not None and times[1] is not None and times[0] < times[1]


def test_major_tom_cells_keep_their_own_utm_zone(shared_data: Path) -> None:
    """torchgeo put the 48N cell into 33N (3.3x stretched); we keep each in its own CRS."""
    sources = open_band_folders([shared_data / "major-tom"])
    groups = group_scenes(sources)
    assert len(groups) == 2
    scenes = [align(g) for g in groups]
    assert sorted(s.crs.to_epsg() for s in scenes) == [32633, 32648]
    for scene in scenes:
        assert scene.size_m == (10680.0, 10680.0)  # 1068 px at 10 m, not stretched
        assert scene.streams["s2_l2a_10m"].grid.width == 1068
        assert not any(a.resampled for a in scene.streams.values())
    with pytest.raises(CRSMismatchError, match="different projected CRSs"):
        align([sources[0], _renamed(sources[1])])


def _renamed(source):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(source, spec=replace(source.spec, name="other_s2"))


def test_major_tom_cloud_mask_becomes_invalid_pixels(tmp_path: Path, shared_data: Path) -> None:
    src_folder = next((shared_data / "major-tom").rglob("B02.tif")).parent
    folder = tmp_path / "cell"
    folder.mkdir()
    for f in ("B02.tif", "B03.tif", "B04.tif", "B08.tif", "B05.tif"):
        (folder / f).symlink_to(src_folder / f)
    with rasterio.open(src_folder / "cloud_mask.tif") as ds:
        profile, mask = ds.profile, np.zeros((ds.height, ds.width), dtype=np.uint8)
    mask[:64, :64] = 1  # a cloud over the top-left 640 m
    with rasterio.open(folder / "cloud_mask.tif", "w", **profile) as dst:
        dst.write(mask, 1)
    scene = align([open_band_folder(folder)])
    sample = scene.read_chip(scene.chip_bounds(scene.bounds.left, scene.bounds.top, 1200))
    valid10 = sample.masks["s2_l2a_10m"].numpy()
    assert not valid10[:64, :64].any() and valid10[64:, 64:].all()
    valid20 = sample.masks["s2_l2a_20m"].numpy()
    assert not valid20[:32, :32].any() and valid20[32:, 32:].all()
    assert (sample.data["s2_l2a_10m"][:, :64, :64] == 0).all()


def test_generated_mixed_grids_and_chip_sizes(tmp_path: Path) -> None:
    s2 = open_band_folder(write_s2_folder(tmp_path / "s2", size_m=2400))
    s1 = open_band_folder(write_s1_folder(tmp_path / "s1", size_m=2400, left=500_600.0))
    scene = align([s1, s2])
    assert scene.bounds.left == 500_600.0 and scene.size_m == (1800.0, 2400.0)
    # 640 m is not a multiple of 60 m: the 60 m stream covers 11 px (660 m) from the same corner
    sample = scene.read_chip(scene.chip_bounds(scene.bounds.left, scene.bounds.top, 640))
    assert sample.shapes()["s2_l2a_10m"][1:] == (64, 64)
    assert sample.shapes()["s2_l2a_60m"][1:] == (11, 11)
    assert sample.meta["extent_m"]["s2_l2a_60m"] == (660.0, 660.0)
    with pytest.raises(ChipError, match="lattice"):
        scene.read_chip(
            scene.chip_bounds(scene.bounds.left, scene.bounds.top, 600)._replace(
                left=scene.bounds.left + 10, right=scene.bounds.left + 610
            )
        )


def test_missing_crs_is_named(tmp_path: Path) -> None:
    folder = write_s2_folder(tmp_path / "nocrs", crs=None, bands={"B02": 10, "B03": 10})
    with pytest.raises(MissingCRSError) as info:
        open_band_folder(folder, strict=True)
    assert "patch_B0" in str(info.value)


def test_corrupt_file_is_skipped_or_raised_in_strict_mode(tmp_path: Path) -> None:
    folder = write_s2_folder(tmp_path / "s2", bands={"B02": 10, "B03": 10, "B04": 10})
    data = (folder / "patch_B03.tif").read_bytes()
    (folder / "patch_B03.tif").write_bytes(data[:200])  # truncated
    from fusion.data.errors import CorruptFileError
    from fusion.data.readers.band_folder import FolderReport

    report = FolderReport()
    source = open_band_folder(folder, report=report)
    assert list(source.bands) == ["B02", "B04"]
    assert len(report.skipped) == 1 and "patch_B03.tif" in report.skipped[0][0]
    with pytest.raises(CorruptFileError, match="patch_B03"):
        open_band_folder(folder, strict=True)


def test_unknown_band_files_name_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    t = Affine(10, 0, 0, 0, -10, 40)
    write_band(folder / "B02.tif", np.ones((4, 4), np.uint16), transform=t)
    write_band(folder / "VV.tif", np.ones((4, 4), np.float32), transform=t)
    with pytest.raises(LayoutError, match="match no known sensor") as info:
        open_band_folder(folder)  # optical and SAR names in one folder: no single sensor
    assert info.value.path == str(folder)
    other = tmp_path / "y"
    write_band(other / "B99.tif", np.ones((4, 4), np.uint16), transform=t)
    with pytest.raises(LayoutError, match="no band files") as info:
        open_band_folder(other)
    assert info.value.path == str(other)


def _subpixel_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Shift (rows, cols) of ``a`` relative to ``b`` by cross-correlation with a parabolic peak."""
    fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
    cc = np.fft.fftshift(np.real(np.fft.ifft2(fa * np.conj(fb))))
    r, c = np.unravel_index(np.argmax(cc), cc.shape)
    out = []
    for axis, (i, line) in enumerate(((r, cc[:, c]), (c, cc[r, :]))):
        lo, mid, hi = line[i - 1], line[i], line[i + 1]
        frac = 0.5 * (lo - hi) / (lo - 2 * mid + hi)
        out.append(i + frac - cc.shape[axis] // 2)
    return out[0], out[1]


def test_geographic_sources_with_offset_bounds_keep_positions(tmp_path: Path) -> None:
    """SSL4EO-like: one UTM scene exported to EPSG:4326 per resolution group, with group bounds
    that differ by a fraction of a pixel. Aligned back, each stream must sit where the scene
    was drawn: the measured shift against the truth stays under 0.2 px."""
    crs_utm = "EPSG:32643"
    n = 256
    left, top = 336_000.0, 3_372_000.0
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(n // 8, n // 8)).repeat(8, 0).repeat(8, 1).astype(np.float32)
    truth = (2000 + 800 * truth).clip(1, 9000)
    src_t = Affine(10, 0, left, 0, -10, top)
    folder = tmp_path / "geo"
    for name, res, frac in (("B02", 10, 0.0), ("B05", 20, 0.37)):
        dst_t, w, h = calculate_default_transform(
            crs_utm,
            "EPSG:4326",
            n,
            n,
            left,
            top - n * 10,
            left + n * 10,
            top,
            resolution=(res / 96_000, res / 111_000),
        )
        dst_t = dst_t @ Affine.translation(frac, -frac)  # group bounds offset by a sub-pixel
        out = np.zeros((h, w), np.float32)
        reproject(
            truth,
            out,
            src_transform=src_t,
            src_crs=crs_utm,
            dst_transform=dst_t,
            dst_crs="EPSG:4326",
        )
        write_band(
            folder / f"{name}.tif",
            out.round().astype(np.uint16),
            crs="EPSG:4326",
            transform=dst_t,
            nodata=0,
        )
    from fusion.data.catalog import S2_L2A

    scene = align([open_band_folder(folder, S2_L2A)])
    assert scene.crs.to_epsg() == 32643
    sample = scene.read_chip(scene.bounds)
    for key in ("s2_l2a_10m", "s2_l2a_20m"):
        g = scene.streams[key].grid
        # the truth resampled onto the stream's grid is where the pixels must land
        ref = np.zeros((g.height, g.width), np.float32)
        reproject(
            truth,
            ref,
            src_transform=src_t,
            src_crs=crs_utm,
            dst_transform=g.transform,
            dst_crs=g.crs,
            resampling=rasterio.enums.Resampling.average,
        )
        got = sample.data[key][0].numpy() / 1e-4
        m = 4  # leave out the borders, where the warped exports have no data
        a, b = got[m:-m, m:-m], ref[m:-m, m:-m]
        dy, dx = _subpixel_shift(a, b)
        assert abs(dy) < 0.2 and abs(dx) < 0.2, (key, dy, dx)
        # the measurement itself sees a real shift of one pixel
        _, dx1 = _subpixel_shift(np.roll(a, 1, axis=1), b)
        assert abs(dx1 - 1) < 0.2
