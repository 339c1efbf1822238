"""Generated raster fixtures: real GTiff driver, CRS and transform, fixed seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def write_band(
    path: Path,
    array: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine,
    nodata: float | None = None,
) -> Path:
    """Write one single-band GeoTIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def write_s2_folder(
    folder: Path,
    *,
    size_m: int = 1200,
    left: float = 500_000.0,
    top: float = 5_000_040.0,
    crs: str | None = "EPSG:32633",
    seed: int = 0,
    bands: dict[str, int] | None = None,
) -> Path:
    """A BigEarthNet-like S2 L2A folder: ``patch_Bxx.tif`` at 10/20/60 m, uint16 reflectance."""
    rng = np.random.default_rng(seed)
    bands = bands or {
        "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20,
        "B07": 20, "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
    }  # fmt: skip
    for name, res in bands.items():
        n = size_m // res
        arr = rng.integers(1, 10_000, size=(n, n), dtype=np.uint16)
        write_band(
            folder / f"patch_{name}.tif",
            arr,
            crs=crs,
            transform=Affine(res, 0, left, 0, -res, top),
            nodata=0,
        )
    return folder


def write_s1_folder(
    folder: Path,
    *,
    size_m: int = 1200,
    left: float = 500_000.0,
    top: float = 5_000_040.0,
    crs: str = "EPSG:32633",
    seed: int = 1,
) -> Path:
    """A BigEarthNet-like S1 folder: ``patch_VV.tif``, ``patch_VH.tif`` float32 dB at 10 m."""
    rng = np.random.default_rng(seed)
    n = size_m // 10
    for name in ("VV", "VH"):
        arr = rng.normal(-12, 3, size=(n, n)).astype(np.float32)
        write_band(
            folder / f"patch_{name}.tif", arr, crs=crs, transform=Affine(10, 0, left, 0, -10, top)
        )
    return folder
