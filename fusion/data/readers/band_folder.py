"""One-file-per-band folders at mixed resolutions, and discovery of the scenes under a path.

Layouts recognised (all in ``../shared/data``):

- BigEarthNet v1/v2: ``<patch>/<patch>_B02.tif`` (S2) and ``<patch>/<patch>_VV.tif`` (S1), with
  ``*_labels_metadata.json`` and ``*_reference_map.tif`` beside them;
- SSL4EO-S12: ``s1|s2a|s2c/<location>/<product>/B2.tif`` with ``metadata.json``;
- Major-TOM: ``S2L2A/<row>/<cell>/<product>/B02.tif`` with ``cloud_mask.tif``.

Any folder whose ``.tif`` files are named after bands of a known sensor (optionally after a
``_``-separated prefix) is a sensor folder; sensor folders that cover the same ground are grouped
into scenes (one source per sensor and acquisition).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fusion.data.catalog import get_spec, known_sensors
from fusion.data.errors import CorruptFileError, FusionDataError, LayoutError
from fusion.data.sources import BandReader, FileBand, SensorSource
from fusion.data.specs import SensorSpec

#: Sensors recognised from file names alone, before other registered sensors with the same names.
BUILTIN_RASTERS = ("s1_grd", "s2_l1c", "s2_l2a")
#: File stems (after any prefix) that hold a cloud or quality mask (non-zero = invalid).
MASK_STEMS = ("cloud_mask", "cloudmask", "cloud")
#: File stems that hold a per-pixel label map.
LABEL_STEMS = ("reference_map", "labels", "label")
_TIME_RE = re.compile(r"(\d{8}T\d{6})")


@dataclass
class FolderReport:
    """What a walk over folders found and skipped.

    Args:
        skipped: (path, reason) for each file that could not be read and was left out.
    """

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str | Path, err: Exception) -> None:
        self.skipped.append((str(path), str(err)))


def _band_token(stem: str, spec: SensorSpec | None = None) -> str | None:
    """The band name a file stem refers to: the whole stem or its last ``_`` token, matched
    against ``spec`` or, when ``None``, against every registered sensor."""
    specs = [spec] if spec is not None else [get_spec(n) for n in known_sensors()]
    for cand in (stem, stem.rsplit("_", 1)[-1]):
        for sp in specs:
            if sp.kind == "raster" and sp.has_band(cand):
                return sp.band(cand).name if spec is not None else cand.upper()
    return None


def _role(stem: str) -> str | None:
    low = stem.lower()
    if any(low == s or low.endswith("_" + s) for s in MASK_STEMS):
        return "mask"
    if any(low == s or low.endswith("_" + s) for s in LABEL_STEMS):
        return "labels"
    return None


def guess_spec(folder: Path, tokens: Iterable[str]) -> SensorSpec:
    """Pick the registered raster sensor whose bands the file names match.

    A folder (or parent) named after a sensor wins; Sentinel-2 L1C and L2A share names, so B10,
    ``L1C`` or ``s2c`` in the path mean L1C.

    Raises:
        LayoutError: the names match no sensor, or several equally well.
    """
    names = {t.upper() for t in tokens}
    specs = [get_spec(n) for n in known_sensors()]
    fits = [s for s in specs if s.kind == "raster" and names and all(s.has_band(n) for n in names)]
    parts = {p.lower() for p in folder.parts}
    for spec in fits:
        if spec.name in parts:
            return spec
    builtin = [s for s in fits if s.name in BUILTIN_RASTERS]
    fits = builtin or fits  # real products first; synthetic/user specs are picked by folder name
    hint = "/".join(folder.parts).upper() + "/"
    s2 = [s for s in fits if s.name in ("s2_l1c", "s2_l2a")]
    if len(s2) == len(fits) == 2:
        is_l1c = "B10" in names or "L1C" in hint or "/S2C/" in hint
        return get_spec("s2_l1c" if is_l1c else "s2_l2a")
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise LayoutError(
            f"band files {sorted(names)} match no known sensor; pass a sensor spec "
            "(built-in name or YAML)",
            path=folder,
        )
    raise LayoutError(
        f"band files {sorted(names)} fit several sensors {[s.name for s in fits]}; pass one",
        path=folder,
    )


def _time_of(folder: Path) -> datetime | None:
    for meta in sorted(folder.glob("*.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if "system:time_start" in data:
            return datetime.fromtimestamp(data["system:time_start"] / 1000, tz=UTC)
        for key in ("acquisition_time", "acquisition_date"):
            if key in data:
                return datetime.fromisoformat(str(data[key])).replace(tzinfo=UTC)
    match = _TIME_RE.search(folder.name) or _TIME_RE.search(str(folder))
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return None


def _folder_meta(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {"folder": str(folder)}
    for path in sorted(folder.glob("*labels_metadata.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        meta["labels"] = data.get("labels")
        if "corresponding_s2_patch" in data:
            meta["corresponding_s2_patch"] = data["corresponding_s2_patch"]
    return meta


def open_band_folder(
    folder: str | Path,
    spec: SensorSpec | str | None = None,
    *,
    strict: bool = False,
    report: FolderReport | None = None,
) -> SensorSource:
    """Open a folder holding one GeoTIFF per band (bands may sit on different grids).

    Args:
        folder: the folder.
        spec: the sensor (spec or built-in name); guessed from the file names when ``None``.
        strict: raise on the first unreadable file instead of skipping it.
        report: collects skipped files when not strict.

    Raises:
        LayoutError: no band files, or names that match no sensor.
        CorruptFileError: an unreadable file (only when ``strict``, or when every band is bad).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LayoutError("not a folder", path=folder)
    if isinstance(spec, str):
        spec = get_spec(spec)
    tifs = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    band_files: dict[str, Path] = {}
    mask_files: list[Path] = []
    label_files: list[Path] = []
    for path in tifs:
        role = _role(path.stem)
        if role == "mask":
            mask_files.append(path)
        elif role == "labels":
            label_files.append(path)
        else:
            token = _band_token(path.stem, spec)
            if token is not None:
                band_files[token] = path
    if not band_files:
        raise LayoutError("no band files (e.g. B02.tif, *_VV.tif) in this folder", path=folder)
    if spec is None:
        spec = guess_spec(folder, band_files)
    report = report if report is not None else FolderReport()
    readers: dict[str, BandReader] = {}
    for token, path in band_files.items():
        name = spec.band(token).name
        try:
            readers[name] = FileBand(path, nodata=spec.nodata)
        except CorruptFileError as err:
            if strict:
                raise
            report.skip(path, err)
    if not readers:
        raise CorruptFileError("every band file in this folder is unreadable", path=folder)
    masks: list[BandReader] = []
    for path in mask_files:
        try:
            masks.append(FileBand(path, nodata=None))
        except FusionDataError as err:
            if strict:
                raise
            report.skip(path, err)
    meta = _folder_meta(folder)
    if label_files:
        meta["label_map"] = str(label_files[0])
    ordered = [b.name for b in spec.bands if b.name in readers]
    return SensorSource(
        spec=spec.subset(ordered),
        bands={n: readers[n] for n in ordered},
        time=_time_of(folder),
        masks=masks,
        meta=meta,
    )


def find_band_folders(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) holding band-named GeoTIFFs."""
    root = Path(root)
    if not root.exists():
        raise LayoutError("path does not exist", path=root)
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir())] if root.is_dir() else []
    found = []
    for folder in folders:
        for p in folder.iterdir():
            if p.suffix.lower() in (".tif", ".tiff") and _band_token(p.stem) and not _role(p.stem):
                found.append(folder)
                break
    return found


def open_band_folders(
    roots: Sequence[str | Path],
    *,
    spec: SensorSpec | str | None = None,
    strict: bool = False,
    report: FolderReport | None = None,
) -> list[SensorSource]:
    """Open every band folder under ``roots``; unreadable folders are skipped unless ``strict``."""
    report = report if report is not None else FolderReport()
    sources = []
    for root in roots:
        for folder in find_band_folders(root):
            try:
                sources.append(open_band_folder(folder, spec, strict=strict, report=report))
            except FusionDataError as err:
                if strict:
                    raise
                report.skip(folder, err)
    return sources
