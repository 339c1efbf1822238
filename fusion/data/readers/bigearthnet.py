"""BigEarthNet-MM v1: Sentinel-2 patches with multi-label metadata and their Sentinel-1 partners.

Layout (any depth under the root)::

    <S2 root>/<patch>/<patch>_B01.tif … _B12.tif, <patch>_labels_metadata.json
    <S1 root>/<s1 patch>/<s1 patch>_VV.tif, _VH.tif, <s1 patch>_labels_metadata.json

The S2 metadata lists the patch's CORINE class names (``"labels"``); an S1 folder's metadata
names its partner in ``"corresponding_s2_patch"``. The band folders are opened by
:func:`~fusion.data.readers.band_folder.open_band_folders`, which already reads both fields into
each source's ``meta``; this module only pairs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion.data.errors import LayoutError
from fusion.data.readers.band_folder import FolderReport, open_band_folders
from fusion.data.sources import SensorSource

#: Sensors a BigEarthNet S2 patch may be read as.
S2_SENSORS = ("s2_l2a", "s2_l1c")


@dataclass
class BigEarthNetPatch:
    """One labelled S2 patch and, when present, its S1 partner.

    Args:
        name: the S2 patch folder name.
        s2: the Sentinel-2 source (bands on their native 10/20/60 m grids).
        s1: the Sentinel-1 source whose metadata names this patch, or ``None``.
        labels: the patch's class names, as in its metadata.
    """

    name: str
    s2: SensorSource
    s1: SensorSource | None
    labels: tuple[str, ...]


def has_label_metadata(root: str | Path) -> bool:
    """Whether any ``*_labels_metadata.json`` lies at or under ``root``."""
    root = Path(root)
    return root.is_dir() and next(root.rglob("*_labels_metadata.json"), None) is not None


def open_bigearthnet_pairs(
    root: str | Path, *, report: FolderReport | None = None
) -> list[BigEarthNetPatch]:
    """Every labelled S2 patch under ``root``, sorted by name, with its S1 partner if found.

    Unreadable folders are skipped into ``report``; S1 folders whose partner is absent are left
    out.

    Raises:
        LayoutError: no S2 patch folder with a labels metadata file.
    """
    sources = open_band_folders([root], report=report)
    s2: dict[str, SensorSource] = {}
    s1: dict[str, SensorSource] = {}
    for src in sources:
        partner = src.meta.get("corresponding_s2_patch")
        if partner is not None:
            s1[str(partner)] = src
        elif src.name in S2_SENSORS and src.meta.get("labels") is not None:
            s2[Path(src.meta["folder"]).name] = src
    if not s2:
        raise LayoutError(
            "no Sentinel-2 patch folder with *_labels_metadata.json (BigEarthNet-MM v1 layout: "
            "<patch>/<patch>_Bxx.tif + <patch>_labels_metadata.json)",
            path=root,
        )
    return [
        BigEarthNetPatch(
            name=name,
            s2=s2[name],
            s1=s1.get(name),
            labels=tuple(str(label) for label in s2[name].meta["labels"]),
        )
        for name in sorted(s2)
    ]
