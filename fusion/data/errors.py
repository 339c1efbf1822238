"""One hierarchy of data errors, each naming the file, sensor and band and what was expected.

The CLI catches :class:`FusionDataError` and prints its message without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class FusionDataError(Exception):
    """Base of every error raised while reading, aligning or sampling sensor data.

    Args:
        message: what went wrong and what was expected.
        path: the file or folder involved, if any.
        sensor: the sensor name involved, if any.
        band: the band name involved, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        sensor: str | None = None,
        band: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.sensor = sensor
        self.band = band
        self.reason = message
        where = [
            f"{k}={v}"
            for k, v in (("file", self.path), ("sensor", sensor), ("band", band))
            if v is not None
        ]
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)


class SpecError(FusionDataError):
    """A sensor spec is malformed or does not exist (unknown sensor, bad YAML field)."""


class UnknownBandError(FusionDataError):
    """A band name is not part of the sensor's spec."""


class BandCountError(FusionDataError):
    """A file or array holds a different number of bands than the spec expects."""


class MissingCRSError(FusionDataError):
    """A raster has no coordinate reference system, so it cannot be placed on a footprint."""


class NoOverlapError(FusionDataError):
    """Sensors' footprints do not overlap (or overlap less than one coarsest pixel)."""


class CRSMismatchError(FusionDataError):
    """Scenes in different CRSs were asked to share one grid (e.g. UTM 48N and 33N)."""


class CorruptFileError(FusionDataError):
    """A file cannot be opened or decoded (truncated, wrong format)."""


class LayoutError(FusionDataError):
    """A folder does not match any known layout, or a required file is missing."""


class ChipError(FusionDataError):
    """A chip size or location is invalid (corner off the lattice, outside the footprint)."""


class IrregularGridError(FusionDataError):
    """A variable's x/y coordinates are not evenly spaced pixel centres, so no affine grid fits."""


class ConfigError(FusionDataError):
    """A config file names an unknown key or holds a value of the wrong type."""


class IncompatibleDataError(FusionDataError):
    """Data holds a sensor, stream or band that a checkpoint was not trained with."""
