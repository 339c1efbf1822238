"""Contact sheets of failing slices: each worst case beside its nearest training samples.

One row per worst case (the test sample as the slice scored it, then its nearest training
samples by cosine similarity), and a last row of the most harmful training samples by TracIn.
Rasters are drawn as RGB where the stream has red, green and blue bands (else the first band in
grey; invalid pixels red), time series as line plots of every band over the whole window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from fusion.data.plot import stream_image
from fusion.data.sample import Sample
from fusion.datatest.report import label_text
from fusion.datatest.run import SuiteResult, TestResult
from fusion.files import save_figure

__all__ = ["draw_sample", "write_contact_sheet"]


def _raster_key(sample: Sample) -> str | None:
    """The stream to show: the finest with three or more bands, else the finest raster."""
    rasters = [k for k, x in sample.data.items() if x.dim() == 3]
    if not rasters:
        return None
    wide = [k for k in rasters if sample.data[k].shape[0] >= 3] or rasters
    return max(wide, key=lambda k: sample.data[k].shape[1] * sample.data[k].shape[2])


def draw_sample(ax: Any, sample: Sample, title: str) -> None:
    """Draw one Sample into a matplotlib axes (a raster stream as an image, else every
    time-series band as a line)."""
    key = _raster_key(sample)
    if key is not None:
        x, valid = sample.data[key].numpy(), sample.masks[key].numpy()
        img, _ = stream_image(sample.streams[key], x, valid)
        ax.imshow(img, cmap="gray", interpolation="nearest")
        if (~valid).any():
            overlay = np.zeros((*valid.shape, 4), dtype=np.float32)
            overlay[~valid] = (1.0, 0.0, 0.0, 0.45)
            ax.imshow(overlay, interpolation="nearest")
    else:
        for k, series in sample.data.items():
            rate = sample.streams[k].rate_hz or 1.0
            t = np.arange(series.shape[1]) / rate
            for i, band in enumerate(sample.streams[k].bands):
                ax.plot(t, series[i].numpy(), lw=0.6, label=band.name)
    # No ticks: a contact sheet is for the eye, and ticks are most of matplotlib's drawing time.
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=6)


def write_contact_sheet(result: SuiteResult, r: TestResult, path: str | Path) -> Path:
    """Write the contact sheet of one mined failing test and record it in ``r.mining.sheet``.

    Raises:
        ValueError: the test was not mined.
    """
    m = r.mining
    if m is None:
        raise ValueError(f"test {r.test.name!r} has no failure mining to draw")
    rows = len(m.worst) + (1 if m.harmful else 0)
    cols = 1 + max(m.neighbours.shape[1], min(len(m.harmful), 5))
    height = 1.8 * rows + 0.6  # inches; 0.6 for the title above the first row's two-line labels
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, height), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    pos = {int(i): k for k, i in enumerate(r.index)}
    for row, (t, nb, sim) in enumerate(zip(m.worst, m.neighbours, m.similarity, strict=True)):
        k = pos[int(t)]
        truth, pred = label_text(result, r.y_true[k]), label_text(result, r.y_pred[k])
        ax = axes[row, 0]
        ax.set_axis_on()
        draw_sample(ax, r.test.slice.apply(result.test[int(t)]), f"test #{t}\n{truth} → {pred}")
        for col, (i, s) in enumerate(zip(nb, sim, strict=True), start=1):
            ax = axes[row, col]
            ax.set_axis_on()
            sample = result.train[int(i)]
            draw_sample(ax, sample, f"train #{i} ({s:.2f})\n{label_text(result, sample.label)}")
    if m.harmful:
        axes[-1, 0].text(0.5, 0.5, "most harmful\n(TracIn)", ha="center", va="center", fontsize=7)
        for col, (i, v) in enumerate(m.harmful[: cols - 1], start=1):
            ax = axes[-1, col]
            ax.set_axis_on()
            sample = result.train[i]
            draw_sample(ax, sample, f"train #{i} ({v:.2g})\n{label_text(result, sample.label)}")
    fig.suptitle(
        f"{r.test.name}: {r.test.slice.describe()} — {'; '.join(r.reasons)}",
        fontsize=7,
        y=1 - 0.12 / height,
    )
    # Fixed margins: tight_layout takes seconds on a sheet of forty axes.
    fig.subplots_adjust(left=0.04, right=0.98, bottom=0.03, top=1 - 0.75 / height)
    fig.subplots_adjust(hspace=0.55, wspace=0.25)
    m.sheet = save_figure(fig, path)
    return m.sheet
