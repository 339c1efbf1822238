"""EuroSAT-MS: class folders of 13-band Sentinel-2 L1C GeoTIFFs, one labelled Sample per file.

Layout: ``<root>/<ClassName>/*.tif``; the class index is the position of the folder name among
the sorted class folders. Each file holds 64×64 px of about 10 m (the pixel size drifts by
reprojection, 9.97-10.03 m) with *every* band resampled to 10 m, in the order
:data:`~fusion.data.readers.geotiff.EUROSAT_BAND_ORDER` (B8A last). Band descriptions, when a
file has them and they name Sentinel-2 bands, take precedence over that order.

Each band is brought back to its native grid so a model sees the same streams as on any other
Sentinel-2 L1C product (``s2_l1c_10m``, ``s2_l1c_20m``, ``s2_l1c_60m`` of
:data:`~fusion.data.catalog.S2_L1C`): a native pixel is the area average of the ``k × k`` file
pixels it covers (``k = 1, 2, 6``), anchored at the file's top-left corner. That corner rule is
the one :meth:`~fusion.data.align.AlignedScene.read_chip` uses: a 640 m chip is 64 px at 10 m,
32 px at 20 m and ``ceil(640 / 60) = 11`` px at 60 m covering 660 m. Where the scene goes on,
``read_chip`` fills the last 60 m row and column with real pixels; a EuroSAT file ends at 640 m,
so those cells average the 40 m of the file they cover (the mean of what is there, as GDAL's
``average`` resampling treats a partial source pixel) and stay valid. Stretching 64 px into 11
(``read(out_shape=...)``) was rejected: its 58.2 m pixels would sit on another grid than every
other 60 m stream.

The averaging is a masked block mean in numpy rather than GDAL's ``Resampling.average``: the
files carry no nodata tag, so GDAL would average the spec's nodata (0) into its neighbours; here
a fine pixel counts only when every band of its stream is non-zero, and a native pixel is valid
when at least one of its fine pixels is. Values are physical: raw × 1e-4 (reflectance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.data.catalog import S2_L1C
from fusion.data.errors import BandCountError, LayoutError
from fusion.data.readers.arrays import RESOLUTION_RTOL, canonical_band_names
from fusion.data.readers.geotiff import EUROSAT_BAND_ORDER
from fusion.data.sample import Sample
from fusion.data.sources import grid_of, open_raster
from fusion.data.specs import SensorSpec, Stream

#: The sensor of every EuroSAT-MS file.
EUROSAT_SPEC: SensorSpec = S2_L1C
#: Pixel size (m) every band of a EuroSAT file is stored at.
EUROSAT_PIXEL_M = 10.0
_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class EuroSatIndex:
    """The files of a EuroSAT-MS folder and their classes (nothing read but the folder names).

    Args:
        root: the folder holding the class folders.
        files: every image, class by class, sorted by name within a class.
        labels: int64 class index of each file.
        class_names: class folder names, sorted; ``labels`` index into them.
    """

    root: Path
    files: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        """Files per class."""
        n = np.bincount(self.labels, minlength=len(self.class_names))
        return {c: int(k) for c, k in zip(self.class_names, n, strict=True)}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` (hidden ones left out), sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def looks_like_eurosat(root: Path) -> bool:
    """Whether ``root`` holds no GeoTIFF itself but class folders with GeoTIFFs in them.

    Callers rule out band folders (``B02.tif``…) first: this only looks one level down.
    """
    if not root.is_dir() or _images(root):
        return False
    return any(_images(folder) for folder in class_folders(root))


def scan_eurosat(root: str | Path) -> EuroSatIndex:
    """List the images and classes of a EuroSAT-MS folder.

    Raises:
        LayoutError: ``root`` is not a folder, has no class folders, or a class folder holds no
            GeoTIFF (the message names the folder).
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("EuroSAT-MS root is not a folder", path=root)
    folders = class_folders(root)
    if not folders:
        raise LayoutError(
            "no class folders; expected <root>/<ClassName>/*.tif (EuroSAT-MS layout)", path=root
        )
    files: list[Path] = []
    labels: list[int] = []
    for index, folder in enumerate(folders):
        images = _images(folder)
        if not images:
            raise LayoutError(
                f"class folder {folder.name!r} holds no .tif image; every class needs at least one",
                path=folder,
            )
        files.extend(images)
        labels.extend([index] * len(images))
    return EuroSatIndex(
        root=root,
        files=tuple(files),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(f.name for f in folders),
    )


def _band_order(ds: Any, path: Path) -> tuple[list[str], str]:
    """Canonical band names in file order, and where they came from."""
    spec = EUROSAT_SPEC
    if ds.count != len(EUROSAT_BAND_ORDER):
        raise BandCountError(
            f"file holds {ds.count} bands, expected {len(EUROSAT_BAND_ORDER)} EuroSAT-MS bands "
            f"{list(EUROSAT_BAND_ORDER)}",
            path=path,
            sensor=spec.name,
        )
    descriptions = [d or "" for d in ds.descriptions]
    if all(descriptions) and all(spec.has_band(d) for d in descriptions):
        return canonical_band_names(spec, descriptions, path=path), "descriptions"
    return list(EUROSAT_BAND_ORDER), "EuroSAT order"


def _block_mean(
    values: np.ndarray, valid: np.ndarray, factor: int, n: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid fine pixels in each ``factor × factor`` block, anchored top-left.

    ``values`` ``(C, H, W)``, ``valid`` ``(H, W)``; the output ``(C, *n)`` may reach past the
    image (``n * factor > H``): those blocks average the part inside.
    """
    if factor == 1:
        return values, valid
    c, h, w = values.shape
    rows, cols = n[0] * factor, n[1] * factor
    padded = np.zeros((c, rows, cols), dtype=np.float32)
    weight = np.zeros((rows, cols), dtype=np.float32)
    padded[:, :h, :w] = values * valid
    weight[:h, :w] = valid
    sums = padded.reshape(c, n[0], factor, n[1], factor).sum(axis=(2, 4))
    counts = weight.reshape(n[0], factor, n[1], factor).sum(axis=(1, 3))
    ok = counts > 0
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=ok)
    return mean.astype(np.float32, copy=False), ok


def read_eurosat(path: str | Path, *, label: Any = None, class_name: str | None = None) -> Sample:
    """One EuroSAT-MS file as a Sample of three ``s2_l1c`` streams at their native grids.

    Returns:
        Streams ``s2_l1c_10m`` ``(4, 64, 64)``, ``s2_l1c_20m`` ``(6, 32, 32)`` and ``s2_l1c_60m``
        ``(3, 11, 11)`` for a 64 px file, in reflectance; ``meta`` with ``path``, ``crs``,
        ``bounds``, ``class_name``, ``extent_m`` (stream → metres covered, as
        :meth:`~fusion.data.align.AlignedScene.read_chip` reports) and ``band_order_from``.

    Raises:
        CorruptFileError: the file cannot be opened.
        MissingCRSError: the file has no CRS.
        BandCountError: the file does not hold the 13 EuroSAT bands.
        LayoutError: its pixels are not about 10 m.
    """
    path = Path(path)
    with open_raster(path) as ds:
        grid = grid_of(ds, path)
        names, names_from = _band_order(ds, path)
        raw = ds.read()
    pixel = grid.res[0]
    if not math.isclose(pixel, EUROSAT_PIXEL_M, rel_tol=RESOLUTION_RTOL):
        raise LayoutError(
            f"pixel size {pixel:g} m; EuroSAT-MS stores every band at {EUROSAT_PIXEL_M:g} m",
            path=path,
        )
    spec = EUROSAT_SPEC
    position = {name: i for i, name in enumerate(names)}
    height, width = raw.shape[1:]
    data: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    streams: dict[str, Stream] = {}
    extent: dict[str, tuple[float, float]] = {}
    for stream in spec.streams():
        assert stream.resolution_m is not None
        fine = raw[[position[b] for b in stream.band_names]].astype(np.float32)
        valid = np.ones((height, width), dtype=bool)
        if spec.nodata is not None:
            valid = (fine != spec.nodata).all(axis=0)
        factor = round(stream.resolution_m / EUROSAT_PIXEL_M)
        n = (math.ceil(height / factor), math.ceil(width / factor))
        values, ok = _block_mean(fine, valid, factor, n)
        values = values * spec.scale + spec.offset
        values *= ok
        data[stream.key] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        masks[stream.key] = torch.from_numpy(np.ascontiguousarray(ok))
        streams[stream.key] = stream
        extent[stream.key] = (n[1] * stream.resolution_m, n[0] * stream.resolution_m)
    meta: dict[str, Any] = {
        "path": str(path),
        "crs": grid.crs.to_string(),
        "bounds": tuple(grid.bounds),
        "class_name": class_name if class_name is not None else path.parent.name,
        "extent_m": extent,
        "band_order_from": names_from,
    }
    return Sample(data=data, masks=masks, streams=streams, meta=meta, label=label)


class EuroSatDataset(Dataset[Sample]):
    """Labelled Samples of EuroSAT-MS files (see :func:`read_eurosat`); label = class index.

    Files are opened only when a Sample is read, so a bad file raises when it is reached.

    Args:
        source: the EuroSAT-MS root or an already scanned :class:`EuroSatIndex`.
        indices: which files of the index to serve (a split), in this order; default all.
    """

    def __init__(
        self, source: str | Path | EuroSatIndex, indices: Sequence[int] | np.ndarray | None = None
    ) -> None:
        self.index = source if isinstance(source, EuroSatIndex) else scan_eurosat(source)
        rows = np.arange(len(self.index)) if indices is None else np.asarray(indices)
        self.rows = rows.astype(np.int64)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.index.class_names

    @property
    def spec(self) -> SensorSpec:
        return EUROSAT_SPEC

    def __len__(self) -> int:
        return int(self.rows.size)

    def labels(self) -> np.ndarray:
        """int64 class index of every Sample, in dataset order (no file is read)."""
        out: np.ndarray = self.index.labels[self.rows]
        return out

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"image {i} out of range for {len(self)} EuroSAT-MS images")
        row = int(self.rows[i])
        label = int(self.index.labels[row])
        sample = read_eurosat(
            self.index.files[row],
            label=torch.tensor(label, dtype=torch.int64),
            class_name=self.index.class_names[label],
        )
        sample.meta["index"] = row
        return sample
