"""Labelled train/test Samples for downstream probes, in physical values.

Probes (k-NN, linear, fine-tuning on frozen embeddings) compare embedders that each bring their
own preprocessing (a checkpoint's normalisation statistics, an ImageNet 8-bit RGB stretch), so
Samples here are *not* normalised: values are physical (scale and offset applied), as every
reader returns them. Scenes, chips and splits come from :mod:`fusion.data.layouts`, the same
code pretraining uses.

Layouts and their tasks:

- ``"synthetic"``: land-cover class of each chip (classification; the pretraining split).
- EuroSAT-MS class folders: class of each image (classification; stratified split).
- BigEarthNet-MM v1 pairs (``*_labels_metadata.json``): CORINE classes of each S2 patch, S1
  attached where paired (multilabel; split by patch).
- Band-GeoTIFF folders with a label raster (``*_reference_map.tif``, ``labels.tif`` or
  ``label_raster=``): majority code of each chip, impure chips dropped (classification;
  spatial-block split).
- The Presto arrays: live fuel moisture (regression; the published split).
- A UEA ``*_TRAIN.ts`` file and its ``*_TEST.ts`` sibling (classification; the published split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.data.errors import FusionDataError, LayoutError
from fusion.data.label_raster import find_label_rasters
from fusion.data.layouts import (
    ACCEPTED_LAYOUTS,
    RawSplits,
    Task,
    bigearthnet_pairs_splits,
    detect_layout,
    eurosat_splits,
    label_raster_splits,
    presto_splits,
    size,
    synthetic_splits,
    ts_splits,
    ts_test_path,
)
from fusion.data.readers.bigearthnet import has_label_metadata
from fusion.data.readers.presto import PrestoDataset
from fusion.data.readers.ts_file import TsCaseDataset
from fusion.data.sample import Sample
from fusion.data.sampling import ChipDataset
from fusion.data.specs import SensorSpec
from fusion.data.splits import check_fraction

__all__ = ["LabelledData", "Split", "Task", "label_array", "load_labelled"]

Split = Literal["train", "test"]


@dataclass
class LabelledData:
    """Labelled Samples split into train and test, and what the labels mean.

    Args:
        train: training Samples, each with ``label`` set.
        test: test Samples, each with ``label`` set.
        specs: sensor name → spec of the sensors in the Samples (no normalisation statistics).
        task: ``"classification"`` (label = class index), ``"multilabel"`` (label = multi-hot
            over ``class_names``) or ``"regression"`` (label = float).
        class_names: class index → name (classification) or column order (multilabel);
            ``None`` for regression.
        description: what was loaded and how it was split, for logs and reports.
        info: counts behind the description (e.g. chips dropped for impure labels).
    """

    train: Dataset[Sample]
    test: Dataset[Sample]
    specs: dict[str, SensorSpec]
    task: Task
    class_names: tuple[str, ...] | None
    description: str
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: Split) -> Dataset[Sample]:
        """The ``"train"`` or ``"test"`` Samples."""
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        raise ValueError(f"split must be 'train' or 'test', got {name!r}")

    def labels(self, split: Split) -> np.ndarray:
        """Labels of a split in dataset order (see :func:`label_array`)."""
        n_classes = len(self.class_names) if self.class_names is not None else None
        return label_array(self.split(split), self.task, n_classes=n_classes)


def _cheap_labels(dataset: Dataset[Sample]) -> Sequence[Any] | np.ndarray | None:
    """Labels the dataset can give without reading its rasters, or ``None``."""
    method = getattr(dataset, "labels", None)
    if callable(method):
        out: Sequence[Any] | np.ndarray = method()
        return out
    if isinstance(dataset, ChipDataset) and dataset.label_fn is not None:
        fn = dataset.label_fn
        return [fn(dataset.scenes[ref.scene], ref.bounds) for ref in dataset.chips]
    if isinstance(dataset, PrestoDataset):
        return dataset.targets
    if isinstance(dataset, TsCaseDataset) and dataset.ts.labels:
        ts = dataset.ts
        if ts.class_names:
            return ts.label_indices()
        return [float(v) for v in ts.labels]
    return None


def _as_numpy(value: Any, index: int) -> np.ndarray:
    if value is None:
        raise FusionDataError(f"sample {index} carries no label; labelled data needs one on each")
    if isinstance(value, torch.Tensor):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def label_array(
    dataset: Dataset[Sample], task: Task, *, n_classes: int | None = None
) -> np.ndarray:
    """Labels of every Sample of ``dataset``, in order, without reading rasters when possible.

    Datasets with a ``labels()`` method, chip datasets with a label function, the Presto and
    ``.ts`` datasets answer from their indexes; any other dataset is iterated.

    Returns:
        int64 ``(N,)`` class indices (classification), float32 ``(N, K)`` multi-hot
        (multilabel; ``K = n_classes`` when there are no samples) or float32 ``(N,)`` values
        (regression).

    Raises:
        FusionDataError: a Sample has no label.
    """
    raw = _cheap_labels(dataset)
    if raw is None:
        raw = [dataset[i].label for i in range(size(dataset))]
    values = [_as_numpy(v, i) for i, v in enumerate(raw)]
    if task == "multilabel":
        if not values:
            return np.zeros((0, n_classes or 0), dtype=np.float32)
        return np.stack(values).astype(np.float32)
    if task == "classification":
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray([float(v) for v in values], dtype=np.float32)


def _raster_labels(
    path: Path,
    *,
    label_raster: str | Path | None,
    chip_m: float,
    seed: int,
    test_fraction: float,
    min_purity: float,
) -> RawSplits:
    """Band-GeoTIFF folders: an explicit label raster, BigEarthNet-MM metadata, or found rasters."""
    if label_raster is not None:
        rasters = [Path(label_raster)]
    elif has_label_metadata(path):
        return bigearthnet_pairs_splits(path, seed=seed, test_fraction=test_fraction)
    else:
        rasters = find_label_rasters(path)
    if not rasters:
        raise LayoutError(
            "no labels found: no *_labels_metadata.json and no label raster (*_reference_map.tif, "
            f"labels.tif); pass label_raster= or use one of: {ACCEPTED_LAYOUTS}",
            path=path,
        )
    return label_raster_splits(
        [path],
        rasters,
        chip_m=chip_m,
        seed=seed,
        test_fraction=test_fraction,
        min_purity=min_purity,
    )


def load_labelled(
    source: str | Path,
    *,
    chip_m: float = 640.0,
    seed: int = 0,
    test_fraction: float = 0.2,
    min_purity: float = 0.5,
    label_raster: str | Path | None = None,
) -> LabelledData:
    """Labelled train/test Samples of a source, in physical values (see the module docstring).

    Args:
        source: ``"synthetic"``, a ``*_TRAIN.ts`` file, the Presto folder, a EuroSAT-MS root, or
            a folder of band GeoTIFFs with labels (BigEarthNet-MM metadata or a label raster).
        chip_m: chip side in metres (synthetic and label-raster layouts; a BigEarthNet patch and
            a EuroSAT image are one Sample each, a series one window).
        seed: split seed (the Presto and ``.ts`` layouts use their published split instead).
        test_fraction: share held out for testing, in ``(0, 1)``.
        min_purity: label-raster layouts drop chips whose majority code covers less than this
            fraction of their labelled pixels.
        label_raster: a label raster to use instead of the ones found beside the images.

    Raises:
        LayoutError: the path does not exist, matches no layout, carries no labels, a ``.ts``
            file has no ``_TEST`` sibling, or no chip keeps a label, or a split is empty.
        ConfigError: ``test_fraction`` is not in ``(0, 1)`` or ``min_purity`` not in ``[0, 1]``.
    """
    check_fraction(test_fraction)
    layout = detect_layout(source)
    if label_raster is not None:
        if layout != "rasters":
            raise LayoutError(
                f"label_raster= applies to folders of band GeoTIFFs, not to the {layout} layout",
                path=str(source),
            )
        if not Path(label_raster).is_file():
            raise LayoutError("label raster does not exist", path=label_raster)
    path = Path(source)
    if layout == "synthetic":
        raw = synthetic_splits(chip_m=chip_m, seed=seed, test_fraction=test_fraction)
    elif layout == "ts":
        if ts_test_path(path) is None:
            raise LayoutError(
                "no *_TEST.ts sibling; labelled data needs the published test split "
                f"({path.name.replace('_TRAIN', '_TEST')})",
                path=path,
            )
        raw = ts_splits(path)
    elif layout == "presto":
        raw = presto_splits(path)
    elif layout == "eurosat":
        raw = eurosat_splits(path, seed=seed, test_fraction=test_fraction)
    else:
        raw = _raster_labels(
            path,
            label_raster=label_raster,
            chip_m=chip_m,
            seed=seed,
            test_fraction=test_fraction,
            min_purity=min_purity,
        )
    if raw.task is None:
        raise LayoutError(f"the {layout} data carries no labels", path=str(source))
    n_train, n_test = size(raw.train), size(raw.test)
    if not n_train or not n_test:
        raise LayoutError(
            f"{raw.description}: {n_train} train and {n_test} test samples; a probe needs at "
            "least one of each (use smaller chips, a lower min_purity or more data)",
            path=str(source),
        )
    return LabelledData(
        train=raw.train,
        test=raw.test,
        specs=raw.specs,
        task=raw.task,
        class_names=raw.class_names,
        description=f"{raw.description}; {raw.task}, {n_train} train / {n_test} test",
        info={**raw.info, "layout": layout, "train": n_train, "test": n_test},
    )
