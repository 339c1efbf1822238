"""Data layouts → train/test Samples in physical values: the one place scenes, chips and splits
are made.

Pretraining (:func:`fusion.data.datasets.build_datasets`, which normalises) and downstream probes
(:func:`fusion.data.labelled.load_labelled`, which keeps physical values so every embedder can
apply its own preprocessing) both start from a :class:`RawSplits` built here.

Layouts: ``"synthetic"`` (the embedded default), a UEA ``.ts`` file, the Presto arrays folder,
EuroSAT-MS class folders, and band-GeoTIFF folders (BigEarthNet, SSL4EO-S12, Major-TOM), which
carry labels either as BigEarthNet-MM v1 metadata (multi-label per patch) or as a label raster
(a class code per pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from rasterio.coords import BoundingBox
from torch.utils.data import Dataset

from fusion.data.align import AlignedScene, align
from fusion.data.errors import ChipError, LayoutError
from fusion.data.label_raster import CodeLookup, LabelRaster, label_chips
from fusion.data.readers.band_folder import find_band_folders, open_band_folders
from fusion.data.readers.bigearthnet import open_bigearthnet_pairs
from fusion.data.readers.eurosat import (
    EUROSAT_SPEC,
    EuroSatDataset,
    looks_like_eurosat,
    scan_eurosat,
)
from fusion.data.readers.presto import PRESTO_FILES, PrestoDataset
from fusion.data.readers.ts_file import TsCaseDataset
from fusion.data.sample import Sample
from fusion.data.sampling import ChipDataset, ChipRef, grid_chips
from fusion.data.scenes import group_scenes
from fusion.data.specs import SensorSpec
from fusion.data.splits import block_split, random_split, stratified_split
from fusion.data.synthetic import CLASS_NAMES, SyntheticScene, chip_label, make_scene

Task = Literal["classification", "multilabel", "regression"]
Layout = Literal["synthetic", "ts", "presto", "eurosat", "rasters"]

#: What a data source may be, for error messages.
ACCEPTED_LAYOUTS = (
    "'synthetic'; a UEA *_TRAIN.ts file (with its *_TEST.ts sibling); the Presto fuel-moisture "
    "folder (npy/s1_s2_era5_srtm.npy …); EuroSAT-MS class folders (<Class>/*.tif, 13 bands); "
    "band-GeoTIFF folders (BigEarthNet, SSL4EO-S12, Major-TOM), labelled by "
    "*_labels_metadata.json (BigEarthNet-MM v1 pairs) or by a label raster "
    "(*_reference_map.tif, labels.tif, or label_raster=)"
)

#: Sensors of the synthetic places: most see everything, some lack a sensor (absent, not zero).
SYNTHETIC_PLACES: tuple[tuple[str, ...] | None, ...] = (
    None,
    None,
    None,
    ("syn_sar", "syn_thermal"),
    ("syn_optical", "syn_sar"),
)

#: Optical acquisition of each synthetic place (SAR the day before, thermal 30 min later; see
#: :func:`~fusion.data.synthetic.make_scene`). Place i is i·73 days (a fifth of a year) before
#: place 0, so the places step back through the seasons (meteorological, at 47.8° N): 0 summer,
#: 1 spring, 2 winter, 3 autumn (SAR and thermal only), 4 summer (optical and SAR). The winter
#: place has every sensor, so a winter slice is not also a sensor-availability slice. Metadata
#: only: the arrays do not depend on the date.
SYNTHETIC_ACQUIRED: tuple[datetime, ...] = (
    datetime(2023, 6, 15, 10, 0, tzinfo=UTC),  # summer: the default date of make_scene
    datetime(2023, 4, 3, 10, 0, tzinfo=UTC),  # spring
    datetime(2023, 1, 20, 10, 0, tzinfo=UTC),  # winter
    datetime(2022, 11, 8, 10, 0, tzinfo=UTC),  # autumn
    datetime(2022, 8, 27, 10, 0, tzinfo=UTC),  # summer
)


@dataclass
class RawSplits:
    """Train and test Samples of one source in physical values, and what they are.

    Args:
        train: training Samples.
        test: held-out Samples (pretraining uses them for validation).
        specs: sensor name → spec (no normalisation statistics).
        description: what was loaded, for logs.
        task: what the labels are, or ``None`` when Samples carry none.
        class_names: class index → name (classification) or column order (multilabel).
        info: counts worth reporting (e.g. chips dropped for impure labels).
    """

    train: Dataset[Sample]
    test: Dataset[Sample]
    specs: dict[str, SensorSpec]
    description: str
    task: Task | None = None
    class_names: tuple[str, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def size(dataset: Dataset[Sample]) -> int:
    """``len`` of a map-style Dataset (torch's type leaves ``__len__`` out)."""
    return len(dataset)  # type: ignore[arg-type]


def is_presto_folder(path: Path) -> bool:
    return (path / PRESTO_FILES["x"]).exists() or (path / "npy" / PRESTO_FILES["x"]).exists()


def detect_layout(source: str | Path) -> Layout:
    """Which layout a source is (band folders are told apart later, by their labels).

    Raises:
        LayoutError: the path does not exist.
    """
    if str(source) == "synthetic":
        return "synthetic"
    path = Path(source)
    if not path.exists():
        # A relative path (as configs hold: ../shared/data/...) is read against the working
        # directory, not the config file's folder: say which, the usual cause of this error.
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise LayoutError(
            f"data path does not exist{where}; expected one of: {ACCEPTED_LAYOUTS}", path=path
        )
    if path.suffix.lower() == ".ts":
        return "ts"
    if is_presto_folder(path):
        return "presto"
    if looks_like_eurosat(path) and not find_band_folders(path):
        return "eurosat"
    return "rasters"


# -- synthetic -------------------------------------------------------------------------------


class SyntheticLabels:
    """``(scene, bounds) → land-cover class`` of the synthetic scene an aligned scene came from.

    Scenes are matched by identity; pickled together with the ChipDataset that holds the same
    scene objects, the match survives the trip into DataLoader workers.
    """

    def __init__(self, aligned: Sequence[AlignedScene], scenes: Sequence[SyntheticScene]):
        self.pairs = list(zip(aligned, scenes, strict=True))

    def __call__(self, scene: AlignedScene, bounds: BoundingBox) -> int:
        for a, s in self.pairs:
            if a is scene:
                return chip_label(s, bounds)
        raise ChipError(f"chip {tuple(bounds)} belongs to no synthetic scene of this dataset")


def synthetic_splits(
    *, chip_m: float = 640.0, seed: int = 0, test_fraction: float = 0.2
) -> RawSplits:
    """Chips of several synthetic places, split by spatial blocks (labels: land-cover class).

    Place i is ``make_scene(seed + i)`` with the sensors of ``SYNTHETIC_PLACES[i]``, acquired at
    ``SYNTHETIC_ACQUIRED[i]`` (the seasons vary across places; the date does not depend on
    ``seed``).
    """
    scenes = [
        make_scene(seed + i, sensors=list(s) if s else None, acquired=when)
        for i, (s, when) in enumerate(zip(SYNTHETIC_PLACES, SYNTHETIC_ACQUIRED, strict=True))
    ]
    aligned = [align(s.sources) for s in scenes]
    chips = [ChipRef(i, b) for i, a in enumerate(aligned) for b in grid_chips(a, chip_m)]
    train, test = block_split(aligned, chips, chip_m=chip_m, test_fraction=test_fraction, seed=seed)
    label = SyntheticLabels(aligned, scenes)
    return RawSplits(
        ChipDataset(aligned, train, label_fn=label),
        ChipDataset(aligned, test, label_fn=label),
        {src.name: src.spec for s in scenes for src in s.sources},
        f"synthetic: {len(scenes)} places, {chip_m:g} m chips, seed {seed}",
        task="classification",
        class_names=CLASS_NAMES,
    )


# -- band-GeoTIFF folders --------------------------------------------------------------------


def raster_scenes(roots: Sequence[str | Path], *, chip_m: float) -> list[AlignedScene]:
    """Aligned scenes under ``roots`` that hold at least one chip of ``chip_m``.

    Raises:
        LayoutError: no scene is large enough (or none was found).
    """
    aligned = [align(g) for g in group_scenes(open_band_folders(roots))]
    aligned = [a for a in aligned if min(a.size_m) >= chip_m]
    if not aligned:
        raise LayoutError(
            f"no scene under {list(map(str, roots))} is at least {chip_m:g} m on a side",
            path=str(roots[0]),
        )
    return aligned


def _specs_of(scenes: Sequence[AlignedScene]) -> dict[str, SensorSpec]:
    return {src.name: src.spec for a in scenes for src in a.sources.values()}


def raster_splits(
    roots: Sequence[str | Path], *, chip_m: float, seed: int = 0, test_fraction: float = 0.2
) -> RawSplits:
    """Unlabelled chips of every scene under ``roots`` (band-GeoTIFF folders), block split."""
    aligned = raster_scenes(roots, chip_m=chip_m)
    chips = [ChipRef(i, b) for i, a in enumerate(aligned) for b in grid_chips(a, chip_m)]
    train, test = block_split(aligned, chips, chip_m=chip_m, test_fraction=test_fraction, seed=seed)
    return RawSplits(
        ChipDataset(aligned, train),
        ChipDataset(aligned, test),
        _specs_of(aligned),
        f"rasters: {len(aligned)} scenes, {len(chips)} chips of {chip_m:g} m",
    )


def label_raster_splits(
    roots: Sequence[str | Path],
    label_rasters: Sequence[str | Path],
    *,
    chip_m: float,
    seed: int = 0,
    test_fraction: float = 0.2,
    min_purity: float = 0.5,
) -> RawSplits:
    """Chips labelled by the majority code of label rasters; impure chips dropped; block split.

    ``class_names`` are the kept chips' codes as strings, in increasing numeric order.

    Raises:
        LayoutError: no chip keeps a label (the message gives the counts and the label files).
    """
    aligned = raster_scenes(roots, chip_m=chip_m)
    chips = [ChipRef(i, b) for i, a in enumerate(aligned) for b in grid_chips(a, chip_m)]
    rasters = [LabelRaster(p) for p in label_rasters]
    kept = label_chips(aligned, chips, rasters, min_purity=min_purity)
    dropped = (
        f"{kept.dropped_impure} below purity {min_purity:g}, "
        f"{kept.dropped_unlabelled} without label pixels"
    )
    if not kept.chips:
        raise LayoutError(
            f"no {chip_m:g} m chip of {len(chips)} keeps a label ({dropped}); the label raster(s) "
            f"{[str(p) for p in label_rasters]} must overlap the images",
            path=str(label_rasters[0]),
        )
    codes = sorted(set(kept.codes))
    position = {c: i for i, c in enumerate(codes)}
    lookup = CodeLookup(
        {
            (aligned[ref.scene].crs_name, tuple(ref.bounds)): position[code]
            for ref, code in zip(kept.chips, kept.codes, strict=True)
        }
    )
    train, test = block_split(
        aligned, kept.chips, chip_m=chip_m, test_fraction=test_fraction, seed=seed
    )
    return RawSplits(
        ChipDataset(aligned, train, label_fn=lookup),
        ChipDataset(aligned, test, label_fn=lookup),
        _specs_of(aligned),
        f"label raster: {len(aligned)} scenes, {len(kept.chips)} of {len(chips)} chips of "
        f"{chip_m:g} m kept, dropped {dropped}",
        task="classification",
        class_names=tuple(str(c) for c in codes),
        info={
            "chips": len(chips),
            "kept": len(kept.chips),
            "dropped_impure": kept.dropped_impure,
            "dropped_unlabelled": kept.dropped_unlabelled,
            "label_rasters": [str(p) for p in label_rasters],
        },
    )


class MultiHot:
    """``(scene, bounds) → float32 multi-hot`` over ``class_names``, of ``scene.meta["labels"]``.

    A picklable class rather than a closure, so DataLoader workers can receive it.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = tuple(class_names)
        self.position = {c: i for i, c in enumerate(self.class_names)}

    def __call__(self, scene: AlignedScene, bounds: BoundingBox) -> torch.Tensor:
        out = torch.zeros(len(self.class_names), dtype=torch.float32)
        for name in scene.meta["labels"]:
            out[self.position[name]] = 1.0
        return out


def bigearthnet_pairs_splits(
    root: str | Path, *, seed: int = 0, test_fraction: float = 0.2
) -> RawSplits:
    """One multi-label Sample per BigEarthNet-MM v1 S2 patch, with S1 where its pair exists.

    The Sample is the whole patch footprint (``chip_m`` does not apply); patches are split at
    random (seeded), at least one on each side.
    """
    patches = open_bigearthnet_pairs(root)
    aligned = []
    for p in patches:
        scene = align([p.s2, p.s1] if p.s1 is not None else [p.s2], crs=p.s2.crs)
        scene.meta.update(patch=p.name, labels=list(p.labels))
        aligned.append(scene)
    chips = [
        ChipRef(i, a.chip_bounds(a.bounds.left, a.bounds.top, min(a.size_m)))
        for i, a in enumerate(aligned)
    ]
    class_names = tuple(sorted({name for p in patches for name in p.labels}))
    train, test = random_split(len(chips), test_fraction, seed)
    label = MultiHot(class_names)
    paired = sum(p.s1 is not None for p in patches)
    return RawSplits(
        ChipDataset(aligned, [chips[i] for i in train], label_fn=label),
        ChipDataset(aligned, [chips[i] for i in test], label_fn=label),
        _specs_of(aligned),
        f"BigEarthNet-MM pairs: {len(patches)} S2 patches ({paired} with S1), "
        f"{len(class_names)} labels, split {len(train)}/{len(test)} by patch, seed {seed}",
        task="multilabel",
        class_names=class_names,
        info={"patches": len(patches), "with_s1": paired},
    )


# -- EuroSAT, time series, Presto ------------------------------------------------------------


def eurosat_splits(root: str | Path, *, seed: int = 0, test_fraction: float = 0.2) -> RawSplits:
    """EuroSAT-MS images, split by class (stratified, seeded)."""
    index = scan_eurosat(root)
    train, test = stratified_split(index.labels, test_fraction, seed)
    return RawSplits(
        EuroSatDataset(index, train),
        EuroSatDataset(index, test),
        {EUROSAT_SPEC.name: EUROSAT_SPEC},
        f"EuroSAT-MS: {len(index)} images, {len(index.class_names)} classes, stratified split "
        f"{len(train)}/{len(test)}, seed {seed}",
        task="classification",
        class_names=index.class_names,
    )


def ts_test_path(path: Path) -> Path | None:
    """The ``*_TEST.ts`` sibling of a ``*_TRAIN.ts`` file, if it exists."""
    test = path.with_name(path.name.replace("_TRAIN", "_TEST"))
    return test if test != path and test.exists() else None


def ts_splits(path: Path) -> RawSplits:
    """A UEA ``.ts`` training file and its ``_TEST`` sibling (the file itself without one)."""
    test = ts_test_path(path)
    train = TsCaseDataset(path)
    ts = train.ts
    task: Task | None = None
    if ts.class_names:
        task = "classification"
    elif ts.labels and ts.is_regression:
        task = "regression"
    return RawSplits(
        train,
        TsCaseDataset(test) if test is not None else TsCaseDataset(ts),
        {s.name: s for s in train.specs},
        f"time series: {path.name}",
        task=task,
        class_names=ts.class_names or None,
    )


def presto_splits(path: Path) -> RawSplits:
    """The Presto arrays with their published train/test split (label: live fuel moisture %)."""
    train = PrestoDataset(path, "train")
    return RawSplits(
        train,
        PrestoDataset(path, "test"),
        {s.name: s for s in train.sensors},
        "presto fuel moisture",
        task="regression",
    )
