"""Batching Samples in which some sensors are absent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fusion.data.errors import FusionDataError
from fusion.data.sample import Sample
from fusion.data.specs import Stream


@dataclass
class Batch:
    """A batch of Samples.

    Args:
        data: stream key → ``(B, C, H, W)`` or ``(B, C, T)``; rows of samples without the stream
            are zeros and flagged absent in ``present`` (the model must not read them).
        masks: stream key → bool ``(B, H, W)`` / ``(B, T)``, all ``False`` where absent.
        present: stream key → bool ``(B,)``: which samples carry the stream.
        band_present: stream key → bool ``(B, C)``: which bands carry data (``False`` for every
            band of an absent stream and for bands dropped by a view).
        streams: stream key → band metadata.
        meta: per-sample metadata, in batch order.
        labels: stacked labels, or ``None`` when no sample has one.
    """

    data: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    streams: dict[str, Stream]
    meta: list[dict[str, Any]]
    labels: torch.Tensor | None
    band_present: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.meta)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            data={k: v.to(device) for k, v in self.data.items()},
            masks={k: v.to(device) for k, v in self.masks.items()},
            present={k: v.to(device) for k, v in self.present.items()},
            streams=self.streams,
            meta=self.meta,
            labels=None if self.labels is None else self.labels.to(device),
            band_present={k: v.to(device) for k, v in self.band_present.items()},
        )


def _stack_labels(samples: Sequence[Sample]) -> torch.Tensor | None:
    labels = [s.label for s in samples]
    if all(lab is None for lab in labels):
        return None
    if any(lab is None for lab in labels):
        raise FusionDataError("some samples in the batch have a label and some do not")
    return torch.stack([torch.as_tensor(lab) for lab in labels])


def collate_samples(samples: Sequence[Sample]) -> Batch:
    """Stack Samples into a :class:`Batch`; a stream absent from some samples is flagged absent.

    Raises:
        FusionDataError: a stream has different shapes or band lists across the batch.
    """
    if not samples:
        raise FusionDataError("cannot collate an empty batch")
    streams: dict[str, Stream] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for s in samples:
        for key, stream in s.streams.items():
            shape = tuple(s.data[key].shape)
            if key not in streams:
                streams[key], shapes[key] = stream, shape
            elif stream.band_names != streams[key].band_names or shape != shapes[key]:
                raise FusionDataError(
                    f"stream {key!r} differs within the batch: bands "
                    f"{list(stream.band_names)} shape {shape} vs {list(streams[key].band_names)} "
                    f"shape {shapes[key]}",
                    sensor=stream.sensor,
                )
    n = len(samples)
    data, masks, present, bands = {}, {}, {}, {}
    for key in sorted(streams):
        shape = shapes[key]
        x = torch.zeros((n, *shape), dtype=torch.float32)
        m = torch.zeros((n, *shape[1:]), dtype=torch.bool)
        p = torch.zeros(n, dtype=torch.bool)
        b = torch.zeros((n, shape[0]), dtype=torch.bool)
        for i, s in enumerate(samples):
            if key in s.data:
                x[i] = s.data[key]
                m[i] = s.masks[key]
                p[i] = True
                b[i] = s.bands_present(key)
        data[key], masks[key], present[key], bands[key] = x, m, p, b
    return Batch(
        data=data,
        masks=masks,
        present=present,
        streams={k: streams[k] for k in sorted(streams)},
        meta=[s.meta for s in samples],
        labels=_stack_labels(samples),
        band_present=bands,
    )
