"""Band embeddings computed from a band's physical description, never from its position.

A band is described by fixed input features (:func:`band_features`): Fourier features of its log
centre wavelength and log bandwidth, a polarisation one-hot, a vector-axis one-hot and the log
resolution (rasters) or log sample rate (time series) of its stream. Its physical quantity is
hashed into a learned table (:func:`quantity_bucket`), so a quantity never seen in training still
gets a (shared) embedding instead of an error. :class:`BandEmbedding` maps these to a vector.

The same :class:`~fusion.data.bands.Band` in the same kind of stream always gives the same
features, whatever its slot in the band order and however many bands sit beside it, which is what
lets stems treat a stream's bands as a set.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

import torch
from torch import nn

from fusion.data.bands import Band
from fusion.data.specs import Stream

__all__ = [
    "AXES",
    "NUM_BAND_FEATURES",
    "POLARISATIONS",
    "BandEmbedding",
    "band_features",
    "quantity_bucket",
    "stream_band_features",
]

#: SAR polarisations with their own one-hot slot; any other string uses the extra "other" slot.
POLARISATIONS: tuple[str, ...] = ("VV", "VH", "HH", "HV")
#: Components of vector quantities (IMU axes), read from a ``_x``/``_y``/``_z`` name suffix.
AXES: tuple[str, ...] = ("X", "Y", "Z")


def _geometric(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(lo * (hi / lo) ** (i / (n - 1)) for i in range(n))


# Each scalar is encoded in decades (log10 of its unit) as (present flag, linear term, sin/cos at
# geometric periods). The shortest period is short enough to tell neighbouring bands apart (B02 vs
# B03 differ by 0.056 decade) and the longest spans the whole range, so an unseen value lands
# smoothly between the features of the values around it.
_WAVELENGTH = (3.0, 5.0, _geometric(0.05, 8.0, 8))  # (centre, scale, periods) of log10(nm)
_BANDWIDTH = (2.0, 2.0, _geometric(0.25, 8.0, 4))  # log10(nm)
_RESOLUTION = (1.0, 2.0, _geometric(0.25, 8.0, 4))  # log10(m)
_RATE = (0.0, 5.0, _geometric(0.5, 16.0, 4))  # log10(Hz); monthly series sit near -6.4


def _scalar_width(spec: tuple[float, float, tuple[float, ...]]) -> int:
    return 2 + 2 * len(spec[2])


#: Length of the vector :func:`band_features` returns.
NUM_BAND_FEATURES = (
    _scalar_width(_WAVELENGTH)
    + _scalar_width(_BANDWIDTH)
    + len(POLARISATIONS)
    + 1
    + len(AXES)
    + _scalar_width(_RESOLUTION)
    + _scalar_width(_RATE)
)


def _encode(value: float | None, spec: tuple[float, float, tuple[float, ...]]) -> list[float]:
    centre, scale, periods = spec
    if value is None or not value > 0:
        return [0.0] * _scalar_width(spec)
    u = math.log10(value)
    out = [1.0, (u - centre) / scale]
    for p in periods:
        out += [math.sin(2 * math.pi * u / p), math.cos(2 * math.pi * u / p)]
    return out


_AXIS_SUFFIX = re.compile(r"[_\-. ]([xyz])$", re.IGNORECASE)


def _axis(name: str) -> str | None:
    # Band has no field for the component of a vector quantity, and accel_x/y/z are otherwise
    # identical in metadata; without this the stem could not tell the axes apart.
    m = _AXIS_SUFFIX.search(name)
    return m.group(1).upper() if m else None


def band_features(
    band: Band, *, resolution_m: float | None = None, rate_hz: float | None = None
) -> tuple[float, ...]:
    """Fixed input features of one band (deterministic, independent of band order).

    Args:
        band: the band's physical description.
        resolution_m: ground sample distance of the band's stream in metres (rasters).
        rate_hz: sample rate of the band's stream in hertz (time series).

    Returns:
        :data:`NUM_BAND_FEATURES` floats: wavelength (nm) and bandwidth (nm) Fourier features,
        polarisation one-hot (VV, VH, HH, HV, other), axis one-hot (x, y, z), resolution (m) and
        rate (Hz) Fourier features; absent properties are all zeros.
    """
    pol = [0.0] * (len(POLARISATIONS) + 1)
    if band.polarisation:
        p = band.polarisation.strip().upper()
        pol[POLARISATIONS.index(p) if p in POLARISATIONS else len(POLARISATIONS)] = 1.0
    axis = [0.0] * len(AXES)
    a = _axis(band.name)
    if a is not None:
        axis[AXES.index(a)] = 1.0
    feats = (
        _encode(band.wavelength_nm, _WAVELENGTH)
        + _encode(band.bandwidth_nm, _BANDWIDTH)
        + pol
        + axis
        + _encode(resolution_m, _RESOLUTION)
        + _encode(rate_hz, _RATE)
    )
    assert len(feats) == NUM_BAND_FEATURES
    return tuple(feats)


def quantity_bucket(quantity: str | None, buckets: int) -> int:
    """Row of the learned quantity table for a quantity string.

    A stable hash (CRC-32, not Python's per-process salted ``hash``) of the normalised string
    modulo ``buckets``; ``None`` or an empty string gets the extra row ``buckets``.
    """
    if not quantity or not quantity.strip():
        return buckets
    key = re.sub(r"[\s\-]+", "_", quantity.strip().lower())
    return zlib.crc32(key.encode("utf-8")) % buckets


def stream_band_features(
    stream: Stream, *, quantity_buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and quantity rows of every band of a stream, in the stream's band order.

    Returns:
        ``(features, rows)``: float32 ``(C, NUM_BAND_FEATURES)`` and int64 ``(C,)``.
    """
    feats = [
        band_features(b, resolution_m=stream.resolution_m, rate_hz=stream.rate_hz)
        for b in stream.bands
    ]
    rows = [quantity_bucket(b.quantity, quantity_buckets) for b in stream.bands]
    return torch.tensor(feats, dtype=torch.float32), torch.tensor(rows, dtype=torch.int64)


_CacheKey = tuple[tuple[Band, ...], float | None, float | None, str]


class BandEmbedding(nn.Module):
    """Learned map from band metadata to a vector: MLP(features) + quantity table row.

    Args:
        dim: output size E.
        hidden: hidden size of the feature MLP (default ``2 * dim``).
        quantity_buckets: rows of the hashed quantity table (one more is kept for "no quantity").
    """

    def __init__(self, dim: int, *, hidden: int | None = None, quantity_buckets: int = 64) -> None:
        super().__init__()
        hidden = hidden or 2 * dim
        self.dim = dim
        self.quantity_buckets = quantity_buckets
        self.mlp = nn.Sequential(
            nn.Linear(NUM_BAND_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )
        self.quantity = nn.Embedding(quantity_buckets + 1, dim)
        nn.init.normal_(self.quantity.weight, std=0.02)
        # Python-side feature construction is cheap but not free; streams repeat every batch.
        self._cache: dict[_CacheKey, tuple[torch.Tensor, torch.Tensor]] = {}

    def _inputs(self, stream: Stream) -> tuple[torch.Tensor, torch.Tensor]:
        # Cached on the device the weights live on: a host-to-device copy every forward would
        # be two synchronising transfers per stream and step on a GPU.
        device = self.quantity.weight.device
        key = (stream.bands, stream.resolution_m, stream.rate_hz, str(device))
        hit = self._cache.get(key)
        if hit is None:
            feats, rows = stream_band_features(stream, quantity_buckets=self.quantity_buckets)
            hit = (feats.to(device), rows.to(device))
            self._cache[key] = hit
        return hit

    def forward(self, stream: Stream) -> torch.Tensor:
        """Embeddings of a stream's bands.

        Args:
            stream: the bands (in the order the data holds them) and their resolution or rate.

        Returns:
            ``(C, E)``, row ``i`` for ``stream.bands[i]``.
        """
        feats, rows = self._inputs(stream)
        out: torch.Tensor = self.mlp(feats) + self.quantity(rows)
        return out

    def embed_bands(
        self,
        bands: Sequence[Band],
        *,
        resolution_m: float | None = None,
        rate_hz: float | None = None,
    ) -> torch.Tensor:
        """Embeddings of loose bands (``(len(bands), E)``), as if they formed one stream."""
        stream = Stream(
            key="_", sensor="_", bands=tuple(bands), resolution_m=resolution_m, rate_hz=rate_hz
        )
        return self.forward(stream)
