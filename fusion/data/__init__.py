"""Sensor specs, readers, alignment, sampling, normalisation and synthetic scenes.

The names most code needs are re-exported here; each lives in the module named after it.
"""

from fusion.data.align import AlignedScene, align
from fusion.data.bands import Band
from fusion.data.catalog import get_spec, known_sensors, register, register_yaml
from fusion.data.collate import Batch, collate_samples
from fusion.data.errors import FusionDataError
from fusion.data.normalise import Normaliser, compute_stats
from fusion.data.readers.band_folder import open_band_folder, open_band_folders
from fusion.data.sample import Sample
from fusion.data.sampling import (
    ChipDataset,
    ChipRef,
    WindowDataset,
    grid_chips,
    random_chips,
    spatial_block_split,
)
from fusion.data.scenes import group_scenes
from fusion.data.specs import NormStats, SensorSpec, Stream, load_specs, save_specs
from fusion.data.timeseries import AlignedSeries, SeriesSource, align_series

__all__ = [
    "AlignedScene",
    "AlignedSeries",
    "Band",
    "Batch",
    "ChipDataset",
    "ChipRef",
    "FusionDataError",
    "NormStats",
    "Normaliser",
    "Sample",
    "SensorSpec",
    "SeriesSource",
    "Stream",
    "WindowDataset",
    "align",
    "align_series",
    "collate_samples",
    "compute_stats",
    "get_spec",
    "grid_chips",
    "group_scenes",
    "known_sensors",
    "load_specs",
    "open_band_folder",
    "open_band_folders",
    "random_chips",
    "register",
    "register_yaml",
    "save_specs",
    "spatial_block_split",
]
