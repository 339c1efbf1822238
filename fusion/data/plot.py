"""Pictures of Samples: one panel per stream at its native resolution, invalid pixels hatched."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from fusion.data.sample import Sample
from fusion.data.specs import Stream
from fusion.files import save_figure

_RGB_NM = (664.6, 559.8, 492.4)


def _stretch(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """2–98 percentile stretch of valid pixels to [0, 1] (per channel)."""
    out = np.zeros_like(x, dtype=np.float32)
    for i in range(x.shape[0]):
        v = x[i][valid] if valid.any() else x[i].ravel()
        lo, hi = np.percentile(v, [2, 98]) if v.size else (0.0, 1.0)
        out[i] = np.clip((x[i] - lo) / max(hi - lo, 1e-9), 0, 1)
    return out


def stream_image(stream: Stream, x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, str]:
    """An RGB or grey image of a stream, and a title naming the bands shown."""
    wl = [b.wavelength_nm for b in stream.bands]
    if len(stream.bands) >= 3 and all(w is not None and w < 1e4 for w in wl):
        idx = [int(np.argmin([abs((w or 0) - t) for w in wl])) for t in _RGB_NM]
        if len(set(idx)) == 3:
            img = _stretch(x[idx], valid).transpose(1, 2, 0)
            return img, "/".join(stream.bands[i].name for i in idx)
    img = _stretch(x[:1], valid)[0]
    return img, stream.bands[0].name


def plot_sample(sample: Sample, path: str | Path, *, title: str | None = None) -> Path:
    """Write a PNG with one panel per stream (native pixel grid, invalid pixels in red).

    Raster streams are shown as images, time-series streams as line plots.
    """
    path = Path(path)
    keys = list(sample.data)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        stream = sample.streams[key]
        x = sample.data[key].numpy()
        valid = sample.masks[key].numpy()
        if x.ndim == 3:
            img, shown = stream_image(stream, x, valid)
            ax.imshow(img, cmap="gray", interpolation="nearest")
            if (~valid).any():
                overlay = np.zeros((*valid.shape, 4), dtype=np.float32)
                overlay[~valid] = (1.0, 0.0, 0.0, 0.55)
                ax.imshow(overlay, interpolation="nearest")
            res = f"{stream.resolution_m:g} m" if stream.resolution_m else ""
            ax.set_title(f"{key}\n{shown}, {x.shape[2]}×{x.shape[1]} px @ {res}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            t = np.arange(x.shape[1]) / (stream.rate_hz or 1.0)
            for i, band in enumerate(stream.bands):
                ax.plot(t, x[i], lw=0.8, label=band.name)
            ax.set_xlabel("s")
            ax.set_title(f"{key} @ {stream.rate_hz:g} Hz", fontsize=8)
            ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92) if title else None)
    save_figure(fig, path)
    return path
