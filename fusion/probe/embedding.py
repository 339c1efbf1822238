"""Embedding a labelled dataset with any :class:`~fusion.probe.embedders.Embedder`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import Dataset

from fusion.data.sample import Sample
from fusion.probe.embedders import Embedder
from fusion.probe.errors import EmptySubsetError
from fusion.probe.subsets import Subset

__all__ = ["Embeddings", "Samples", "embed_dataset", "label_array"]

#: What the probing API reads: a torch Dataset of Samples or a plain sequence of them.
Samples = Dataset[Sample] | Sequence[Sample]


@dataclass
class Embeddings:
    """Features of the samples of a dataset that a subset left non-empty.

    Args:
        x: ``(N, D)`` float32 features.
        y: labels of those samples (``None`` when unlabelled).
        index: ``(N,)`` positions of those samples in the dataset.
        total: samples in the dataset (``total - N`` had none of the subset's sensors).
    """

    x: np.ndarray
    y: np.ndarray | None
    index: np.ndarray
    total: int

    @property
    def skipped(self) -> int:
        return self.total - len(self.index)


def label_array(labels: list[Any]) -> np.ndarray | None:
    """Stack Sample labels (ints, floats or multi-hot tensors) into one array."""
    if not labels or all(lab is None for lab in labels):
        return None
    arrays = [lab.numpy() if isinstance(lab, torch.Tensor) else np.asarray(lab) for lab in labels]
    return np.stack(arrays)


def _progress(enabled: bool, description: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


def embed_dataset(
    embedder: Embedder,
    dataset: Samples,
    *,
    subset: Subset | None = None,
    batch_size: int = 64,
    progress: bool = False,
    description: str | None = None,
) -> Embeddings:
    """Embed every sample of ``dataset`` (restricted to ``subset``), in batches.

    Samples that carry none of the subset's sensors or bands, or no valid pixel or time step in
    them, are skipped and counted (:attr:`Embeddings.skipped`).

    Raises:
        EmptySubsetError: no sample carries anything of the subset.
    """
    n = len(dataset)  # type: ignore[arg-type]
    feats, labels, index = [], [], []
    label = description or f"embedding ({embedder.name}{', ' + subset.name if subset else ''})"
    with _progress(progress, label) as bar:
        task = bar.add_task(label, total=n)
        for chunk in _chunks(n, batch_size):
            kept: list[Sample] = []
            for i in chunk:
                sample = dataset[i]
                if subset is not None:
                    cut = subset.apply(sample)
                    if cut is None:
                        continue
                    sample = cut
                if not any(bool(m.any()) for m in sample.masks.values()):
                    continue  # every pixel or step of what the subset sees is invalid
                kept.append(sample)
                index.append(i)
                labels.append(sample.label)
            if kept:
                feats.append(np.asarray(embedder.embed(kept), dtype=np.float32))
            bar.advance(task, len(chunk))
    if not index:
        raise EmptySubsetError(
            f"none of the {n} samples carries any sensor or band of subset "
            f"{subset.name if subset else '(all)'}"
        )
    return Embeddings(np.concatenate(feats), label_array(labels), np.array(index), n)
