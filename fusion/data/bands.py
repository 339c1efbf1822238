"""`Band`: one channel of a sensor and the physical metadata that lets a model recognise it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fusion.data.errors import SpecError


@dataclass(frozen=True)
class Band:
    """One channel of a sensor.

    Optical bands carry a centre wavelength and bandwidth, SAR bands a polarisation, other sensors
    the physical quantity and unit. Rasters give the native ground sample distance, time series the
    native sample rate.

    Args:
        name: canonical name, e.g. ``"B08"``, ``"VV"``, ``"accel_x"``.
        wavelength_nm: centre wavelength in nanometres (optical) or ``None``.
        bandwidth_nm: full width at half maximum in nanometres (optical) or ``None``.
        polarisation: SAR polarisation (``"VV"``, ``"VH"``, ...) or ``None``.
        quantity: physical quantity (``"reflectance"``, ``"backscatter"``, ``"acceleration"``).
        unit: unit of the stored values after scale/offset (``"1"``, ``"dB"``, ``"m/s^2"``).
        resolution_m: native ground sample distance in metres (rasters).
        rate_hz: native sample rate in hertz (time series).
        aliases: other names the band goes by in files (``"B8"`` for ``"B08"``).
    """

    name: str
    wavelength_nm: float | None = None
    bandwidth_nm: float | None = None
    polarisation: str | None = None
    quantity: str | None = None
    unit: str | None = None
    resolution_m: float | None = None
    rate_hz: float | None = None
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("a band needs a non-empty name")
        if self.resolution_m is not None and self.resolution_m <= 0:
            raise SpecError(f"resolution_m must be > 0, got {self.resolution_m}", band=self.name)
        if self.rate_hz is not None and self.rate_hz <= 0:
            raise SpecError(f"rate_hz must be > 0, got {self.rate_hz}", band=self.name)
        if self.resolution_m is not None and self.rate_hz is not None:
            raise SpecError("a band has either resolution_m or rate_hz, not both", band=self.name)

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this band's name or one of its aliases (case-insensitive)."""
        key = name.upper()
        return key == self.name.upper() or key in (a.upper() for a in self.aliases)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for YAML/JSON; ``None`` fields are left out."""
        out = {k: v for k, v in asdict(self).items() if v is not None and v != ()}
        if "aliases" in out:
            out["aliases"] = list(out["aliases"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Band:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`SpecError`."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SpecError(
                f"unknown band field(s) {sorted(unknown)}; expected some of {sorted(known)}",
                band=str(data.get("name")),
            )
        kwargs = dict(data)
        kwargs["aliases"] = tuple(kwargs.get("aliases", ()))
        return cls(**kwargs)
