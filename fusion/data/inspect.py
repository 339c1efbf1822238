"""What a set of paths holds: sensors, bands, grids, CRSs, footprint overlaps, nodata fractions.

Backs ``fusion data inspect``. Raster folders are grouped into scenes and each scene is aligned,
so the report also shows the grid every stream gets on the common footprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from fusion.data.align import align
from fusion.data.errors import FusionDataError, LayoutError
from fusion.data.inspect_files import INSPECTORS, inspect_geotiff, inspector_for
from fusion.data.readers.band_folder import FolderReport, find_band_folders, open_band_folder
from fusion.data.scenes import geographic_bounds, group_scenes, overlap_fraction
from fusion.data.sources import BandReader, FileBand, SensorSource

_MAX_PIXELS = 1 << 20  # nodata fractions of larger bands are estimated on a decimated read


def nodata_fraction(reader: BandReader) -> float:
    """Fraction of a band's pixels that are nodata/non-finite (decimated for large bands)."""
    g = reader.grid
    if isinstance(reader, FileBand) and g.width * g.height > _MAX_PIXELS:
        factor = int(np.ceil(np.sqrt(g.width * g.height / _MAX_PIXELS)))
        shape = (max(g.height // factor, 1), max(g.width // factor, 1))
        arr = reader._open().read(reader.index, out_shape=shape, resampling=Resampling.nearest)
        bad = ~np.isfinite(arr) if arr.dtype.kind == "f" else np.zeros(arr.shape, dtype=bool)
        if reader.nodata is not None:
            bad |= arr == reader.nodata
        return float(bad.mean())
    _, valid = reader.read(Window(0, 0, g.width, g.height))
    return float(1.0 - valid.mean())


def describe_source(source: SensorSource) -> dict[str, Any]:
    """Report entry for one raster sensor source."""
    bands = []
    for name, reader in source.bands.items():
        band = source.spec.band(name)
        bands.append(
            {
                "name": name,
                "resolution_m": band.resolution_m,
                "pixel_size": list(reader.grid.res),
                "shape": [reader.grid.height, reader.grid.width],
                "nodata_fraction": round(nodata_fraction(reader), 6),
                "file": reader.name,
            }
        )
    bounds = geographic_bounds(source)
    return {
        "name": source.name,
        "kind": source.spec.kind,
        "crs": source.crs.to_string(),
        "time": source.time.isoformat() if source.time else None,
        "folder": source.meta.get("folder"),
        "bounds_wgs84": [round(v, 6) for v in bounds],
        "nodata_fraction": round(float(np.mean([b["nodata_fraction"] for b in bands])), 6),
        "bands": bands,
    }


def inspect_paths(
    paths: Sequence[str | Path], *, strict: bool = False, sensor: str | None = None
) -> dict[str, Any]:
    """Inspect files and folders; unreadable files are reported and skipped unless ``strict``.

    Returns:
        A JSON-ready dict with ``sensors`` (each with ``name``, ``crs``, ``bands`` holding
        ``name`` and ``resolution_m`` or ``rate_hz``), ``scenes`` (aligned footprint, stream grids,
        pairwise overlaps) and ``skipped``.
    """
    report = FolderReport()
    sources: list[SensorSource] = []
    sensors: list[dict[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise LayoutError("path does not exist", path=path)
        inspector = inspector_for(path)
        if inspector is not None:
            try:
                sensors.extend(inspector(path, sensor))
            except FusionDataError as err:
                if strict:
                    raise
                report.skip(path, err)
            continue
        folders = find_band_folders(path)
        tifs = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
        if not folders and tifs:  # a folder of multi-band GeoTIFFs (EuroSAT-like class folders)
            for tif in tifs:
                try:
                    sensors.extend(inspect_geotiff(tif, sensor))
                except FusionDataError as err:
                    if strict:
                        raise
                    report.skip(tif, err)
            continue
        if not folders:
            raise LayoutError(
                "no sensor data found: expected band GeoTIFFs (B02.tif, *_VV.tif), a multi-band "
                f".tif, or one of {sorted(INSPECTORS)}",
                path=path,
            )
        for folder in folders:
            try:
                sources.append(open_band_folder(folder, sensor, strict=strict, report=report))
            except FusionDataError as err:
                if strict:
                    raise
                report.skip(folder, err)
    scenes = []
    for i, group in enumerate(group_scenes(sources)):
        entries = [describe_source(s) for s in group]
        for e in entries:
            e["scene"] = i
        sensors.extend(entries)
        scenes.append(_describe_scene(group))
    return {
        "sensors": sensors,
        "scenes": scenes,
        "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
        "n_skipped": len(report.skipped),
    }


def _describe_scene(group: list[SensorSource]) -> dict[str, Any]:
    boxes = {s.name: geographic_bounds(s) for s in group}
    names = sorted(boxes)
    overlaps = [
        {"a": a, "b": b, "fraction": round(overlap_fraction(boxes[a], boxes[b]), 4)}
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    entry: dict[str, Any] = {"sensors": names, "overlap": overlaps}
    try:
        scene = align(group)
    except FusionDataError as err:
        entry["error"] = str(err)
        return entry
    entry.update(
        {
            "crs": scene.crs.to_string(),
            "footprint": list(scene.bounds),
            "size_m": list(scene.size_m),
            "lattice_m": scene.lattice_m,
            "streams": {
                k: {
                    "bands": list(a.stream.band_names),
                    "resolution_m": a.stream.resolution_m,
                    "shape": [a.grid.height, a.grid.width],
                    "resampled": a.resampled,
                }
                for k, a in scene.streams.items()
            },
        }
    )
    return entry
