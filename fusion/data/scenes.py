"""Grouping sensor sources into scenes: the sensors that saw the same ground at one acquisition.

Sources are grouped by footprint overlap (computed in WGS 84, so sources in different CRSs can be
compared without merging their grids). Within a group, each sensor's acquisitions are ordered in
time and the k-th acquisition of every sensor forms the k-th scene: SSL4EO-S12's location with S1,
S2-L1C and S2-L2A at two dates becomes two scenes of three sensors. Every scene is aligned in its
own CRS; scenes in different UTM zones are never forced onto one grid.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from rasterio.coords import BoundingBox
from rasterio.warp import transform_bounds

from fusion.data.sources import SensorSource


def geographic_bounds(source: SensorSource) -> BoundingBox:
    """The source's footprint in WGS 84 degrees (intersection of its bands)."""
    bs = [r.grid.bounds for r in source.bands.values()]
    left, bottom = max(b.left for b in bs), max(b.bottom for b in bs)
    right, top = min(b.right for b in bs), min(b.top for b in bs)
    return BoundingBox(*transform_bounds(source.crs, "EPSG:4326", left, bottom, right, top))


def overlap_fraction(a: BoundingBox, b: BoundingBox) -> float:
    """Intersection area over the smaller footprint's area (0 when disjoint)."""
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.top, b.top) - max(a.bottom, b.bottom)
    if w <= 0 or h <= 0:
        return 0.0
    area = min((a.right - a.left) * (a.top - a.bottom), (b.right - b.left) * (b.top - b.bottom))
    return float(w * h / area) if area > 0 else 0.0


def group_scenes(
    sources: Sequence[SensorSource], *, min_overlap: float = 0.5
) -> list[list[SensorSource]]:
    """Group sources into scenes of at most one source per sensor.

    Args:
        sources: sensor sources from any number of places and dates.
        min_overlap: two sources belong to one place when they share at least this fraction of
            the smaller footprint.
    """
    boxes = [geographic_bounds(s) for s in sources]
    parent = list(range(len(sources)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(sources)):
        for j in range(i + 1, len(sources)):
            if overlap_fraction(boxes[i], boxes[j]) >= min_overlap:
                parent[find(i)] = find(j)
    places: dict[int, list[int]] = defaultdict(list)
    for i in range(len(sources)):
        places[find(i)].append(i)
    scenes: list[list[SensorSource]] = []
    epoch = datetime.min.replace(tzinfo=UTC)
    for members in sorted(places.values()):
        by_sensor: dict[str, list[SensorSource]] = defaultdict(list)
        for i in members:
            by_sensor[sources[i].name].append(sources[i])
        for acquisitions in by_sensor.values():
            acquisitions.sort(key=lambda s: s.time or epoch)
        depth = max(len(v) for v in by_sensor.values())
        for k in range(depth):
            scenes.append([v[k] for _, v in sorted(by_sensor.items()) if k < len(v)])
    return scenes
