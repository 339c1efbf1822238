"""Dataset adapters: a data source named on the command line → normalised train/val Datasets.

Sources: ``"synthetic"`` (the embedded default), a folder tree of band GeoTIFFs (BigEarthNet,
SSL4EO-S12, Major-TOM layouts), EuroSAT-MS class folders (labels kept but not needed), a UEA
``.ts`` file (``*_TRAIN.ts``; its ``*_TEST.ts`` sibling is the validation set) and the Presto
arrays folder. Scenes, chips and splits come from :mod:`fusion.data.layouts` (shared with the
labelled data of :mod:`fusion.data.labelled`); this module adds normalisation, whose statistics
are computed in one streaming pass over (a bounded number of) training samples and travel in the
returned specs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from fusion.data.layouts import (
    SYNTHETIC_PLACES,
    RawSplits,
    detect_layout,
    eurosat_splits,
    presto_splits,
    raster_splits,
    size,
    synthetic_splits,
    ts_splits,
)
from fusion.data.normalise import Normaliser, compute_stats
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec

__all__ = [
    "SYNTHETIC_PLACES",
    "DatasetBundle",
    "Transformed",
    "build_datasets",
    "describe",
    "eurosat_datasets",
    "presto_datasets",
    "raster_datasets",
    "synthetic_datasets",
    "ts_datasets",
]


class Transformed(Dataset[Sample]):
    """A Dataset of Samples with a ``Sample → Sample`` function applied on access."""

    def __init__(self, base: Dataset[Sample], fn: Callable[[Sample], Sample]) -> None:
        self.base = base
        self.fn = fn

    def __len__(self) -> int:
        return size(self.base)

    def __getitem__(self, index: int) -> Sample:
        return self.fn(self.base[index])


@dataclass
class DatasetBundle:
    """Train and validation Samples (normalised) and the specs that normalised them.

    Args:
        train: training Samples.
        val: validation Samples (spatially or officially separate from ``train``).
        specs: sensor name → spec with normalisation statistics.
        description: what was loaded, for logs.
    """

    train: Dataset[Sample]
    val: Dataset[Sample]
    specs: dict[str, SensorSpec]
    description: str


def _finish(raw: RawSplits, stats_samples: int) -> DatasetBundle:
    """Normalise both splits with statistics of (an even subsample of) the training split."""
    n = size(raw.train)
    step = max(1, n // max(stats_samples, 1))
    stats = compute_stats((raw.train[i] for i in range(0, n, step)), raw.specs)
    norm = Normaliser(stats)
    return DatasetBundle(
        Transformed(raw.train, norm), Transformed(raw.test, norm), stats, raw.description
    )


def synthetic_datasets(
    *, chip_m: float = 640.0, seed: int = 0, stats_samples: int = 256
) -> DatasetBundle:
    """Chips of several synthetic places, split by spatial blocks (labels: land-cover class)."""
    return _finish(synthetic_splits(chip_m=chip_m, seed=seed), stats_samples)


def raster_datasets(
    roots: Sequence[str | Path], *, chip_m: float, seed: int = 0, stats_samples: int = 256
) -> DatasetBundle:
    """Chips of every scene found under ``roots`` (band-GeoTIFF folders), spatial-block split."""
    return _finish(raster_splits(roots, chip_m=chip_m, seed=seed), stats_samples)


def eurosat_datasets(path: Path, *, seed: int = 0, stats_samples: int = 256) -> DatasetBundle:
    """EuroSAT-MS images, 80/20 stratified split (the class labels ride along unused)."""
    return _finish(eurosat_splits(path, seed=seed), stats_samples)


def ts_datasets(path: Path, *, stats_samples: int = 256) -> DatasetBundle:
    """A UEA ``.ts`` training file and its ``_TEST`` sibling as validation."""
    return _finish(ts_splits(path), stats_samples)


def presto_datasets(path: Path, *, stats_samples: int = 256) -> DatasetBundle:
    """The Presto arrays with their published train/test split."""
    return _finish(presto_splits(path), stats_samples)


def build_datasets(
    source: str | Path, *, chip_m: float = 640.0, seed: int = 0, stats_samples: int = 256
) -> DatasetBundle:
    """Datasets for a source: ``"synthetic"``, a ``.ts`` file, a Presto folder, EuroSAT-MS
    class folders or raster folders.

    Raises:
        LayoutError: the path does not exist or holds no known layout.
    """
    layout = detect_layout(source)
    if layout == "synthetic":
        return synthetic_datasets(chip_m=chip_m, seed=seed, stats_samples=stats_samples)
    path = Path(source)
    if layout == "ts":
        return ts_datasets(path, stats_samples=stats_samples)
    if layout == "presto":
        return presto_datasets(path, stats_samples=stats_samples)
    if layout == "eurosat":
        return eurosat_datasets(path, seed=seed, stats_samples=stats_samples)
    return raster_datasets([path], chip_m=chip_m, seed=seed, stats_samples=stats_samples)


def describe(bundle: DatasetBundle) -> dict[str, Any]:
    """Sizes and sensors of a bundle, JSON-ready."""
    return {
        "description": bundle.description,
        "train": size(bundle.train),
        "val": size(bundle.val),
        "sensors": sorted(bundle.specs),
    }
