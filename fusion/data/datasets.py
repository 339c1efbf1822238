"""Dataset adapters: a data source named on the command line → normalised train/val Datasets.

Sources: ``"synthetic"`` (the embedded default), a folder tree of band GeoTIFFs (BigEarthNet,
SSL4EO-S12, Major-TOM layouts), a UEA ``.ts`` file (``*_TRAIN.ts``; its ``*_TEST.ts`` sibling is
the validation set) and the Presto arrays folder. Normalisation statistics are computed in one
streaming pass over (a bounded number of) training samples and travel in the returned specs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasterio.coords import BoundingBox
from torch.utils.data import Dataset

from fusion.data.align import AlignedScene, align
from fusion.data.errors import LayoutError
from fusion.data.normalise import Normaliser, compute_stats
from fusion.data.readers.band_folder import open_band_folders
from fusion.data.readers.presto import PRESTO_FILES, PrestoDataset
from fusion.data.readers.ts_file import TsCaseDataset
from fusion.data.sample import Sample
from fusion.data.sampling import ChipDataset, ChipRef, grid_chips, spatial_block_split
from fusion.data.scenes import group_scenes
from fusion.data.specs import SensorSpec
from fusion.data.synthetic import SyntheticScene, chip_label, make_scene


class Transformed(Dataset[Sample]):
    """A Dataset of Samples with a ``Sample → Sample`` function applied on access."""

    def __init__(self, base: Dataset[Sample], fn: Callable[[Sample], Sample]) -> None:
        self.base = base
        self.fn = fn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

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


#: Sensors of the synthetic places: most see everything, some lack a sensor (absent, not zero).
SYNTHETIC_PLACES: tuple[tuple[str, ...] | None, ...] = (
    None,
    None,
    None,
    ("syn_sar", "syn_thermal"),
    ("syn_optical", "syn_sar"),
)


def _finish(
    train: Dataset[Sample],
    val: Dataset[Sample],
    specs: dict[str, SensorSpec],
    description: str,
    stats_samples: int,
) -> DatasetBundle:
    n = len(train)  # type: ignore[arg-type]
    step = max(1, n // max(stats_samples, 1))
    stats = compute_stats((train[i] for i in range(0, n, step)), specs)
    norm = Normaliser(stats)
    return DatasetBundle(Transformed(train, norm), Transformed(val, norm), stats, description)


def synthetic_datasets(
    *, chip_m: float = 640.0, seed: int = 0, stats_samples: int = 256
) -> DatasetBundle:
    """Chips of several synthetic places, split by spatial blocks (labels: land-cover class)."""
    scenes: list[SyntheticScene] = [
        make_scene(seed + i, sensors=list(s) if s else None) for i, s in enumerate(SYNTHETIC_PLACES)
    ]
    aligned = [align(s.sources) for s in scenes]
    chips = [ChipRef(i, b) for i, a in enumerate(aligned) for b in grid_chips(a, chip_m)]
    splits = spatial_block_split(
        aligned, chips, block_m=4 * chip_m, fractions={"train": 0.8, "val": 0.2}, seed=seed
    )
    by_id = {id(a): s for a, s in zip(aligned, scenes, strict=True)}

    def label(scene: AlignedScene, bounds: BoundingBox) -> int:
        return chip_label(by_id[id(scene)], bounds)

    specs = {src.name: src.spec for s in scenes for src in s.sources}
    return _finish(
        ChipDataset(aligned, splits["train"], label_fn=label),
        ChipDataset(aligned, splits["val"], label_fn=label),
        specs,
        f"synthetic: {len(scenes)} places, {chip_m:g} m chips, seed {seed}",
        stats_samples,
    )


def raster_datasets(
    roots: Sequence[str | Path], *, chip_m: float, seed: int = 0, stats_samples: int = 256
) -> DatasetBundle:
    """Chips of every scene found under ``roots`` (band-GeoTIFF folders), spatial-block split."""
    groups = group_scenes(open_band_folders(roots))
    aligned = [align(g) for g in groups]
    aligned = [a for a in aligned if min(a.size_m) >= chip_m]
    if not aligned:
        raise LayoutError(
            f"no scene under {list(map(str, roots))} is at least {chip_m:g} m on a side",
            path=str(roots[0]),
        )
    chips = [ChipRef(i, b) for i, a in enumerate(aligned) for b in grid_chips(a, chip_m)]
    splits = spatial_block_split(
        aligned, chips, block_m=4 * chip_m, fractions={"train": 0.8, "val": 0.2}, seed=seed
    )
    if not splits["val"]:  # tiny data (one patch per place): hold out whole scenes instead
        cut = max(1, len(chips) // 5)
        splits = {"train": chips[cut:], "val": chips[:cut]}
    specs = {src.name: src.spec for a in aligned for src in a.sources.values()}
    return _finish(
        ChipDataset(aligned, splits["train"]),
        ChipDataset(aligned, splits["val"]),
        specs,
        f"rasters: {len(aligned)} scenes, {len(chips)} chips of {chip_m:g} m",
        stats_samples,
    )


def ts_datasets(path: Path, *, stats_samples: int = 256) -> DatasetBundle:
    """A UEA ``.ts`` training file and its ``_TEST`` sibling as validation."""
    test = path.with_name(path.name.replace("_TRAIN", "_TEST"))
    train = TsCaseDataset(path)
    val = TsCaseDataset(test) if test.exists() and test != path else TsCaseDataset(path)
    specs = {s.name: s for s in train.specs}
    return _finish(train, val, specs, f"time series: {path.name}", stats_samples)


def presto_datasets(path: Path, *, stats_samples: int = 256) -> DatasetBundle:
    """The Presto arrays with their published train/test split."""
    train = PrestoDataset(path, "train")
    specs = {s.name: s for s in train.sensors}
    return _finish(train, PrestoDataset(path, "test"), specs, "presto fuel moisture", stats_samples)


def build_datasets(
    source: str | Path, *, chip_m: float = 640.0, seed: int = 0, stats_samples: int = 256
) -> DatasetBundle:
    """Datasets for a source: ``"synthetic"``, a ``.ts`` file, a Presto folder or raster folders.

    Raises:
        LayoutError: the path does not exist or holds no known layout.
    """
    if str(source) == "synthetic":
        return synthetic_datasets(chip_m=chip_m, seed=seed, stats_samples=stats_samples)
    path = Path(source)
    if not path.exists():
        raise LayoutError("data path does not exist (or use 'synthetic')", path=path)
    if path.suffix.lower() == ".ts":
        return ts_datasets(path, stats_samples=stats_samples)
    if (path / PRESTO_FILES["x"]).exists() or (path / "npy" / PRESTO_FILES["x"]).exists():
        return presto_datasets(path, stats_samples=stats_samples)
    return raster_datasets([path], chip_m=chip_m, seed=seed, stats_samples=stats_samples)


def describe(bundle: DatasetBundle) -> dict[str, Any]:
    """Sizes and sensors of a bundle, JSON-ready."""
    return {
        "description": bundle.description,
        "train": len(bundle.train),  # type: ignore[arg-type]
        "val": len(bundle.val),  # type: ignore[arg-type]
        "sensors": sorted(bundle.specs),
    }
