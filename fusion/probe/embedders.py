"""Embedders: whatever turns a list of physical Samples into a matrix of features.

A probe compares representations, so every representation is wrapped the same way: an
:class:`Embedder` receives Samples in *physical* values (scale and offset applied, not normalised)
and applies the preprocessing it was trained with itself — a checkpoint its own normalisation
statistics, an ImageNet model its 8-bit RGB stretch, a statistics baseline nothing at all. That is
what makes a comparison on the same chips and the same split fair.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from fusion.checkpoint import Pretrained, load_pretrained
from fusion.data.collate import collate_samples
from fusion.data.errors import IncompatibleDataError
from fusion.data.normalise import Normaliser
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec
from fusion.models import FusionEncoder

__all__ = ["Concatenated", "Embedder", "FusionEmbedder", "default_device"]


@runtime_checkable
class Embedder(Protocol):
    """Turns physical Samples into features.

    Attributes:
        name: a short label for tables (``"fusion"``, ``"imagenet-rgb"``, …).
    """

    name: str

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """Features ``(N, D)`` float32 of ``N`` physical Samples (each with ≥ 1 stream)."""
        ...


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class FusionEmbedder:
    """A fusion encoder with the normalisation statistics it was trained with.

    Args:
        pretrained: the loaded checkpoint (encoder, specs with statistics, metadata).
        name: label for tables.
        device: where to run (default: CUDA when present, else CPU).
    """

    def __init__(
        self, pretrained: Pretrained, *, name: str = "fusion", device: torch.device | None = None
    ) -> None:
        self.pretrained = pretrained
        self.name = name
        self.device = device or default_device()
        self.normaliser = Normaliser(pretrained.specs)
        pretrained.encoder.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, name: str = "fusion") -> FusionEmbedder:
        """Load a ``fusion pretrain`` checkpoint (refuses files that are not one)."""
        return cls(load_pretrained(path), name=name)

    def random_init(self, *, seed: int = 0, name: str = "random init") -> FusionEmbedder:
        """The same architecture and normalisation with freshly initialised weights."""
        torch.manual_seed(seed)
        encoder = FusionEncoder.from_config(self.pretrained.encoder.config()).eval()
        twin = copy.copy(self.pretrained)
        twin.encoder = encoder
        return FusionEmbedder(twin, name=name, device=self.device)

    @property
    def encoder(self) -> FusionEncoder:
        return self.pretrained.encoder

    @property
    def dim(self) -> int:
        return int(self.encoder.embed_dim)

    def check_sensors(self, specs: Mapping[str, SensorSpec]) -> None:
        """Refuse data whose sensors, streams or bands the checkpoint does not know, before any
        sample is read.

        Raises:
            IncompatibleDataError: listing what the checkpoint expects.
        """
        expected = self.pretrained.expected()
        for spec in specs.values():
            for stream in spec.streams():
                unknown = [b for b in stream.band_names if b not in expected.get(stream.key, [])]
                if stream.key not in expected or unknown:
                    what = f"bands {unknown} of " if stream.key in expected else ""
                    raise IncompatibleDataError(
                        f"{what}stream {stream.key!r} of sensor {spec.name!r} is unknown to this "
                        f"checkpoint; it expects {expected} (choose a sensor subset it knows)",
                        path=self.pretrained.path,
                        sensor=spec.name,
                    )

    def prepare(self, samples: Sequence[Sample]) -> list[Sample]:
        """Check (refusing unknown sensors or bands, listing what the checkpoint expects) and
        normalise with the checkpoint's statistics."""
        for s in samples:
            self.pretrained.check(s)
        return [self.normaliser(s) for s in samples]

    @torch.no_grad()
    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        self.encoder.eval()
        batch = collate_samples(self.prepare(samples)).to(self.device)
        out: torch.Tensor = self.encoder(batch)
        return out.float().cpu().numpy()


class Concatenated:
    """Late fusion of embedders: each embeds the same Samples, features side by side.

    The naive answer to "does learned fusion beat simply joining what each model sees?": e.g.
    ImageNet features of the RGB image next to per-band statistics of every band. The probes
    standardise each column, so the parts' scales do not matter.

    Args:
        parts: the embedders, in column order.
        name: label for tables (default: the parts' names joined with ``+``).
    """

    def __init__(self, *parts: Embedder, name: str | None = None) -> None:
        if len(parts) < 2:
            raise ValueError(f"Concatenated needs at least two embedders, got {len(parts)}")
        self.parts = parts
        self.name = name or "+".join(p.name for p in parts)

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.hstack([np.asarray(p.embed(samples), dtype=np.float32) for p in self.parts])
