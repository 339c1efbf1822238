"""Presto fuel-moisture arrays (nasaharvest/presto): labelled monthly pixel time series.

``npy/s1_s2_era5_srtm.npy`` holds ``(pixels, months, 18)`` float64 values whose channels are, in
order, S1 VV, VH; S2 B2..B12 without B1/B10 (11); ERA5 temperature_2m, total_precipitation; SRTM
elevation, slope; NDVI — the bands of :data:`~fusion.data.catalog.PRESTO_SENSORS`. Each pixel
becomes one Sample with one ``(C, months)`` stream per sensor and the live fuel moisture (%) as
its regression label.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.data.catalog import PRESTO_SENSORS
from fusion.data.errors import BandCountError, CorruptFileError, LayoutError, SpecError
from fusion.data.sample import Sample
from fusion.data.shared import shared_data_dir
from fusion.data.specs import SensorSpec
from fusion.data.timeseries import series_tensors

PrestoSplit = Literal["train", "test", "all"]

#: The arrays of the fuel-moisture folder, by field name of :class:`PrestoArrays`.
PRESTO_FILES: dict[str, str] = {
    "x": "s1_s2_era5_srtm.npy",
    "target": "target.npy",
    "is_test": "is_test.npy",
    "latlon": "latlon.npy",
    "month": "month.npy",
    "site": "site.npy",
}


def default_presto_root() -> Path:
    """``<shared data>/presto/fuel_moisture``."""
    return shared_data_dir() / "presto" / "fuel_moisture"


@dataclass
class PrestoArrays:
    """The fuel-moisture arrays, checked for consistent lengths.

    Args:
        x: float64 ``(N, T, C)`` raw values, channels in Presto order.
        target: float64 ``(N,)`` live fuel moisture in percent.
        is_test: bool ``(N,)`` the published test split.
        latlon: float64 ``(N, 2)`` latitude and longitude in degrees.
        month: int64 ``(N, T)`` month of each step, 0 = January.
        site: ``(N,)`` site names.
        root: the folder the arrays were read from.
    """

    x: np.ndarray
    target: np.ndarray
    is_test: np.ndarray
    latlon: np.ndarray
    month: np.ndarray
    site: np.ndarray
    root: Path

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _npy_dir(root: Path) -> Path:
    return root / "npy" if (root / "npy").is_dir() else root


def load_presto_arrays(
    root: str | Path | None = None, sensors: Sequence[SensorSpec] = PRESTO_SENSORS
) -> PrestoArrays:
    """Read and check the fuel-moisture arrays.

    Args:
        root: the ``fuel_moisture`` folder or its ``npy`` subfolder; defaults to the shared data.
        sensors: the specs whose bands, in order, are the file's channels.

    Raises:
        LayoutError: a file is missing.
        CorruptFileError: a file is not a readable ``.npy`` array or its shape disagrees with
            the others.
        BandCountError: the value array's channel count differs from the specs' band count.
    """
    folder = _npy_dir(Path(root) if root is not None else default_presto_root())
    arrays: dict[str, np.ndarray] = {}
    for key, name in PRESTO_FILES.items():
        path = folder / name
        if not path.is_file():
            raise LayoutError(
                f"missing {name}; expected the Presto fuel-moisture files "
                f"{list(PRESTO_FILES.values())}",
                path=path,
            )
        try:
            arrays[key] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise CorruptFileError(f"cannot read .npy array: {err}", path=path) from err

    x_path = folder / PRESTO_FILES["x"]
    x = arrays["x"]
    expected = sum(len(s.bands) for s in sensors)
    if x.ndim != 3:
        raise CorruptFileError(
            f"values have shape {x.shape}, expected (pixels, months, {expected})", path=x_path
        )
    if x.shape[2] != expected:
        names = [b for s in sensors for b in s.band_names]
        raise BandCountError(
            f"values have {x.shape[2]} channels, expected {expected}: {names}", path=x_path
        )
    n, t = x.shape[:2]
    shapes = {"target": (n,), "is_test": (n,), "latlon": (n, 2), "month": (n, t), "site": (n,)}
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise CorruptFileError(
                f"array has shape {arrays[key].shape}, expected {shape} to match "
                f"{PRESTO_FILES['x']} {x.shape}",
                path=folder / PRESTO_FILES[key],
            )
    return PrestoArrays(
        x=x.astype(np.float64, copy=False),
        target=arrays["target"].astype(np.float64, copy=False),
        is_test=arrays["is_test"].astype(bool),
        latlon=arrays["latlon"].astype(np.float64, copy=False),
        month=arrays["month"].astype(np.int64, copy=False),
        site=arrays["site"],
        root=folder,
    )


class PrestoDataset(Dataset[Sample]):
    """Per-pixel Samples of the Presto fuel-moisture arrays.

    Each Sample holds one ``(C, T)`` stream per sensor of ``sensors`` (T = 3 monthly steps), the
    live fuel moisture (%) as a float32 scalar label, and ``meta`` with ``index`` (row in the
    arrays), ``latlon`` (degrees), ``site``, ``month`` (0 = January, per step) and
    ``is_test``.

    Args:
        root: the ``fuel_moisture`` folder (or its ``npy`` subfolder); defaults to the shared data.
        split: ``"train"`` (``is_test == 0``), ``"test"`` (``is_test == 1``) or ``"all"``.
        sensors: specs covering the 18 channels in file order (default :data:`PRESTO_SENSORS`).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: PrestoSplit = "train",
        sensors: Sequence[SensorSpec] = PRESTO_SENSORS,
    ) -> None:
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self.sensors = tuple(sensors)
        for spec in self.sensors:
            if spec.kind != "timeseries" or len(spec.streams()) != 1:
                raise SpecError(
                    "Presto channels need time-series specs with one rate each", sensor=spec.name
                )
        self.arrays = load_presto_arrays(root, self.sensors)
        self.split = split
        if split == "all":
            rows = np.arange(len(self.arrays))
        else:
            rows = np.flatnonzero(self.arrays.is_test == (split == "test"))
        self.rows = rows
        bounds = np.cumsum([0, *(len(s.bands) for s in self.sensors)])
        self._slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self._streams = {s.streams()[0].key: s.streams()[0] for s in self.sensors}

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def targets(self) -> np.ndarray:
        """float64 ``(len(self),)`` live fuel moisture (%) of the split, in dataset order."""
        return self.arrays.target[self.rows]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"pixel {i} out of range for {len(self)} in split {self.split!r}")
        row = int(self.rows[i])
        a = self.arrays
        pixel = a.x[row].T  # (C, T): channels first like every time-series stream
        data: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for spec, slc in zip(self.sensors, self._slices, strict=True):
            key = spec.streams()[0].key
            data[key], masks[key] = series_tensors(spec, pixel[slc])
        meta: dict[str, Any] = {
            "index": row,
            "latlon": (float(a.latlon[row, 0]), float(a.latlon[row, 1])),
            "site": str(a.site[row]),
            "month": [int(m) for m in a.month[row]],
            "is_test": bool(a.is_test[row]),
            "path": str(a.root / PRESTO_FILES["x"]),
        }
        return Sample(
            data=data,
            masks=masks,
            streams=dict(self._streams),
            meta=meta,
            label=torch.tensor(float(a.target[row]), dtype=torch.float32),
        )
