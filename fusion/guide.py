"""Guided pretraining: views also predict a frozen off-the-shelf model's features of their chip.

With a few hundred unlabelled chips, contrastive learning from scratch learns little that a
generic model does not already know (on EuroSAT-MS, 217 chips: our encoder 0.67 linear-probe
accuracy against 0.81 for ImageNet EfficientNet-Lite0 on RGB). A *guide* brings that knowledge in
without labels: before training, the guide embeds every training chip once, from the physical
values of the chip as the loader holds it; during training, a small head on the fusion embedding of
each view regresses (cosine) onto the centred, unit-length guide features of the view's chip,
beside the NT-Xent term. Views drop sensors and bands, so the encoder learns to recover what the
guide sees from whichever bands remain.

Cost: one guide forward pass per training chip before the first step (EfficientNet-Lite0 at
224 px: about 0.1 s per chip on 2 CPU cores, 25 s for EuroSAT-MS's 217 chips; once per run:
:func:`fusion.pretrain.pretrain` saves the table in the run folder for a resumed run and for
DDP's other processes) and a ``(chips, G)`` float32 table on the training device.

Guides are :class:`~fusion.probe.Embedder` s named in :data:`GUIDES`: ``"imagenet-rgb"``
(EfficientNet-Lite0, true colour, as the ImageNet baseline of the probes) and ``"band-stats"``
(per-band statistics, cheap; for tests and for sensors without RGB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fusion.data.datasets import Transformed
from fusion.data.errors import ConfigError
from fusion.data.normalise import Normaliser
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec
from fusion.probe.baselines import BandStatistics, ImageNetRGB
from fusion.probe.embedders import Embedder
from fusion.probe.embedding import embed_dataset
from fusion.probe.errors import ProbeError

__all__ = ["GUIDES", "GuideHead", "check_guide", "guide_loss", "guide_targets", "make_guide"]

#: Guide name → factory from the sensor specs.
GUIDES: dict[str, Callable[[Mapping[str, SensorSpec]], Embedder]] = {
    "imagenet-rgb": lambda specs: ImageNetRGB(),
    "band-stats": lambda specs: BandStatistics(specs),
}


def check_guide(name: str, *, path: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` (naming the config file ``path``, if any) unless a guide is
    called ``name``."""
    if name not in GUIDES:
        raise ConfigError(f"unknown guide {name!r}; expected one of {sorted(GUIDES)}", path=path)


def make_guide(name: str, specs: Mapping[str, SensorSpec]) -> Embedder:
    """The guide called ``name``.

    Raises:
        ConfigError: no guide has that name.
    """
    check_guide(name)
    return GUIDES[name](specs)


def guide_targets(
    guide: Embedder,
    train: Dataset[Sample],
    specs: Mapping[str, SensorSpec],
    *,
    progress: bool = False,
) -> torch.Tensor:
    """The guide's features of every training chip: centred over the chips, unit length.

    Args:
        guide: the frozen model.
        train: the *normalised* training Samples (as the data module holds them); the guide sees
            them back in physical values of the primary source. Chips of extra sources
            (``extra_data``) were normalised with their own statistics, so the guide sees them
            harmonised to the primary source's scale, as the encoder does.
        specs: the specs (with statistics) that normalised them.
        progress: show a progress bar.

    Returns:
        ``(N, D)`` float32, row ``i`` for ``train[i]``.

    Raises:
        ConfigError: the guide cannot embed some training chip (e.g. no RGB bands), or a chip
            holds no valid data for it.
    """
    physical = Transformed(train, Normaliser(specs).invert)
    try:
        emb = embed_dataset(guide, physical, progress=progress, description="guide features")
    except ProbeError as err:
        raise ConfigError(f"guide {guide.name!r} cannot embed the training data: {err}") from err
    n = len(train)  # type: ignore[arg-type]
    if len(emb.index) != n:
        raise ConfigError(
            f"guide {guide.name!r}: {n - len(emb.index)} of {n} training chips hold no valid data "
            "it can read"
        )
    x = torch.from_numpy(emb.x).float()
    # Centred: what every chip shares (the guide's bias on this domain) is no target to learn.
    return F.normalize(x - x.mean(dim=0, keepdim=True), dim=1)


class GuideHead(nn.Module):
    """Embedding ``(B, D)`` → prediction of the guide's features ``(B, G)`` (a 2-layer MLP)."""

    def __init__(self, width: int, guide_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, guide_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def guide_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance (0 when every prediction points along its target)."""
    return (1 - F.cosine_similarity(prediction, target, dim=1)).mean()
