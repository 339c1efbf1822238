"""Sensor and band subsets: which part of a Sample an embedder is allowed to see.

The missing-sensor matrix evaluates a representation on every non-empty combination of sensors
and on named band subsets (RGB, RGB+NIR) of optical sensors, the rows of CSF's Table 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec
from fusion.probe.errors import SubsetError

__all__ = ["NAMED_BANDS", "Subset", "band_subsets", "parse_subset", "sensor_subsets"]

#: Named band subsets of optical sensors (by Sentinel-2 band names; matched by name or alias).
NAMED_BANDS: dict[str, tuple[str, ...]] = {
    "RGB": ("B04", "B03", "B02"),
    "RGB+NIR": ("B04", "B03", "B02", "B08"),
}


@dataclass(frozen=True)
class Subset:
    """A named selection: sensor name → band names to keep (``None``: every band).

    Args:
        name: label for tables (``"s2_l2a"``, ``"s1_grd+s2_l2a"``, ``"s2_l2a:RGB"``).
        bands: sensor → bands; sensors not named are removed.
    """

    name: str
    bands: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(sorted(self.bands))

    def apply(self, sample: Sample) -> Sample | None:
        """The part of ``sample`` this subset sees, or ``None`` when nothing of it is there."""
        keep = {}
        for sensor in sample.sensors:
            if sensor not in self.bands:
                continue
            names = self.bands[sensor]
            keep[sensor] = names or [
                b for s in sample.streams.values() if s.sensor == sensor for b in s.band_names
            ]
        if not keep:
            return None
        out = sample.select_bands(keep)
        return out if out.data else None


def sensor_subsets(sensors: Iterable[str]) -> list[Subset]:
    """Every non-empty combination of whole sensors, largest first."""
    names = sorted(set(sensors))
    out = []
    for k in range(len(names), 0, -1):
        for combo in combinations(names, k):
            out.append(Subset("+".join(combo), {s: None for s in combo}))
    return out


def band_subsets(
    specs: Mapping[str, SensorSpec], names: Sequence[str] = tuple(NAMED_BANDS)
) -> list[Subset]:
    """Named band subsets (RGB, RGB+NIR, …) of every sensor that has all their bands."""
    out = []
    for sensor in sorted(specs):
        spec = specs[sensor]
        for name in names:
            wanted = NAMED_BANDS[name]
            if all(any(b.matches(w) for b in spec.bands) for w in wanted):
                out.append(Subset(f"{sensor}:{name}", {sensor: wanted}))
    return out


def parse_subset(text: str, specs: Mapping[str, SensorSpec]) -> Subset:
    """Parse ``"s1_grd,s2_l2a"``, ``"s2_l2a:RGB"`` or ``"s2_l2a:B04/B03/B02"`` into a Subset.

    Raises:
        SubsetError: an unknown sensor, band or band subset name (the message lists the known
            ones).
    """
    bands: dict[str, tuple[str, ...] | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        sensor, _, sel = part.partition(":")
        if sensor not in specs:
            raise SubsetError(f"unknown sensor {sensor!r}; the data has {sorted(specs)}")
        if not sel:
            bands[sensor] = None
        elif sel in NAMED_BANDS:
            bands[sensor] = NAMED_BANDS[sel]
        else:
            chosen = tuple(sel.split("/"))
            unknown = [b for b in chosen if not any(x.matches(b) for x in specs[sensor].bands)]
            if unknown:
                raise SubsetError(
                    f"sensor {sensor!r} has no band(s) {unknown}; it has "
                    f"{list(specs[sensor].band_names)} (or a named subset {list(NAMED_BANDS)})"
                )
            bands[sensor] = chosen
    if not bands:
        raise SubsetError("empty sensor subset")
    return Subset(text, bands)
