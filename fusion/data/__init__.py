"""Sensor specs, readers, alignment, sampling and synthetic scenes."""

from fusion.data.bands import Band
from fusion.data.catalog import get_spec, known_sensors, register, register_yaml
from fusion.data.collate import Batch, collate_samples
from fusion.data.errors import FusionDataError
from fusion.data.sample import Sample
from fusion.data.specs import NormStats, SensorSpec, Stream, load_specs

__all__ = [
    "Band",
    "Batch",
    "FusionDataError",
    "NormStats",
    "Sample",
    "SensorSpec",
    "Stream",
    "collate_samples",
    "get_spec",
    "known_sensors",
    "load_specs",
    "register",
    "register_yaml",
]
