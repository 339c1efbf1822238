"""Multi-band GeoTIFFs (all bands on one grid) as a :class:`SensorSource` of windowed file reads.

Band names come from, in order of preference: the caller's ``band_names``, the file's band
descriptions when they name bands of the spec, or the spec's band order when the counts match.
EuroSAT-MS files have no descriptions and a band order that is *not* the spec's (B8A last), so
open them with ``band_names=EUROSAT_BAND_ORDER`` and the ``s2_l1c`` spec.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fusion.data.bands import Band
from fusion.data.errors import BandCountError, CorruptFileError, LayoutError
from fusion.data.readers.arrays import canonical_band_names, pixel_size_m, spec_for_grids
from fusion.data.sources import BandReader, FileBand, SensorSource, grid_of, open_raster
from fusion.data.specs import SensorSpec

#: Band order of the EuroSAT-MS GeoTIFFs (Helber et al. 2019): 13 Sentinel-2 L1C bands, all
#: resampled to 10 m, with B8A stored *last* rather than after B08 as in the spec.
EUROSAT_BAND_ORDER: tuple[str, ...] = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
)


def _is_local(path: str) -> bool:
    return not path.startswith("/vsi") and "://" not in path


def _check_not_truncated(ds: Any, path: str) -> None:
    """Refuse a TIFF whose last data block lies past the end of the file.

    GDAL opens a truncated TIFF as long as its header survives and only fails (or, for some
    layouts, returns zeros) when a missing block is read; comparing block offsets with the file
    size catches the cut at open time without reading pixels.
    """
    if ds.driver != "GTiff" or not _is_local(path):
        return
    size = os.path.getsize(path)
    rows = -(-ds.height // ds.block_shapes[0][0])
    cols = -(-ds.width // ds.block_shapes[0][1])
    # Pixel-interleaved files keep all bands in one block; band-interleaved ones store the last
    # band's blocks last, so checking the last block of the first and last band covers both.
    for bidx in sorted({1, ds.count}):
        key = f"{cols - 1}_{rows - 1}"
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{key}", "TIFF", bidx=bidx)
        nbytes = ds.get_tag_item(f"BLOCK_SIZE_{key}", "TIFF", bidx=bidx)
        if offset is None or nbytes is None:
            continue  # sparse block or a driver that does not expose offsets
        end = int(offset) + int(nbytes)
        if end > size:
            raise CorruptFileError(
                f"file is truncated: band {bidx}'s last block ends at byte {end} but the file "
                f"has {size} bytes",
                path=path,
            )


def _generic_spec(ds: Any, path: str) -> SensorSpec:
    """A spec describing the file itself, for callers without one (names from descriptions)."""
    descriptions = [d or "" for d in ds.descriptions]
    usable = all(descriptions) and len({d.upper() for d in descriptions}) == len(descriptions)
    names = descriptions if usable else [f"band_{i}" for i in range(1, ds.count + 1)]
    res = round(ds.res[0], 6)  # CRS units: metres for projected CRSs
    return SensorSpec(
        name="geotiff",
        kind="raster",
        bands=tuple(Band(name=n, resolution_m=res) for n in names),
        dtype=str(ds.dtypes[0]),
        nodata=ds.nodata,
        description=f"bands of {Path(path).name} as found in the file",
    )


def _resolve_names(
    ds: Any, spec: SensorSpec, band_names: Sequence[str] | None, path: str
) -> tuple[list[str], str]:
    count = int(ds.count)
    if band_names is not None:
        if len(band_names) != count:
            raise BandCountError(
                f"file holds {count} bands but band_names lists {len(band_names)} "
                f"{list(band_names)}",
                path=path,
                sensor=spec.name,
            )
        return canonical_band_names(spec, band_names, path=path), "band_names"
    descriptions = [d or "" for d in ds.descriptions]
    if all(descriptions) and all(spec.has_band(d) for d in descriptions):
        # Descriptions that name spec bands are the file's own statement of its order.
        return canonical_band_names(spec, descriptions, path=path), "descriptions"
    if count == len(spec.bands):
        return list(spec.band_names), "spec order"
    raise BandCountError(
        f"file holds {count} bands, expected {len(spec.bands)} for {spec.name} "
        f"{list(spec.band_names)}; its band descriptions {descriptions} do not name them, so pass "
        "band_names= in file order",
        path=path,
        sensor=spec.name,
    )


def open_geotiff(
    path: str | Path,
    spec: SensorSpec | None = None,
    *,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    time: datetime | None = None,
) -> SensorSource:
    """Open a multi-band GeoTIFF whose bands share one grid.

    Nothing but the header is read: each band becomes a :class:`FileBand` that reads windows on
    demand.

    Args:
        path: the GeoTIFF (any raster GDAL opens; the truncation check is TIFF-only).
        spec: the sensor spec; ``None`` describes the file itself (sensor ``"geotiff"``, bands
            named after the band descriptions or ``band_1..band_N``, resolution = pixel size).
        band_names: name or alias of each band of the file, in file order (e.g.
            :data:`EUROSAT_BAND_ORDER`); overrides the file's descriptions.
        nodata: raw value marking missing pixels; defaults to the file's nodata, then
            ``spec.nodata``.
        time: acquisition time, if known.

    Returns:
        A :class:`SensorSource` whose ``bands`` map canonical names (spec order) to readers of
        the file's bands. If the file's pixel size is not the bands' native resolution (EuroSAT
        resampled 20 m and 60 m bands to 10 m), the source's spec has ``resolution_m`` equal to
        the file's pixel size for every band and ``meta["resampled_from_native"]`` is ``True``.
        ``meta`` also holds ``path``, ``file_band_order`` (canonical names in file order) and
        ``band_names_from`` (``"band_names"``, ``"descriptions"`` or ``"spec order"``).

    Raises:
        LayoutError: the file does not exist.
        CorruptFileError: GDAL cannot open the file, or it is truncated.
        MissingCRSError: the file has no CRS.
        BandCountError: the band count matches neither ``band_names`` nor the spec.
        UnknownBandError: a band name (argument or description) is not in the spec.
    """
    spath = str(path)
    if _is_local(spath) and not Path(spath).exists():
        raise LayoutError("no such file", path=spath)
    with open_raster(spath) as ds:
        grid = grid_of(ds, spath)
        _check_not_truncated(ds, spath)
        if spec is None:
            spec = _generic_spec(ds, spath)
        names, names_from = _resolve_names(ds, spec, band_names, spath)
        file_nodata = ds.nodata
    fill = nodata if nodata is not None else file_nodata if file_nodata is not None else spec.nodata
    readers: dict[str, BandReader] = {
        name: FileBand(spath, i, nodata=fill, grid=grid) for i, name in enumerate(names, start=1)
    }
    sub, resampled = spec_for_grids(spec.subset(names), dict.fromkeys(names, grid))
    meta: dict[str, Any] = {
        "path": spath,
        "file_band_order": tuple(names),
        "band_names_from": names_from,
        "resampled_from_native": resampled,
        "pixel_size_m": pixel_size_m(grid),
    }
    bands = {b.name: readers[b.name] for b in sub.bands}
    return SensorSource(spec=sub, bands=bands, time=time, meta=meta)
