"""Loading a pretrained encoder with the metadata that travelled with its weights.

A checkpoint refuses data it was not trained for: a stream or band it does not know raises
:class:`~fusion.data.errors.IncompatibleDataError` listing what it expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fusion.data.collate import Batch
from fusion.data.errors import IncompatibleDataError, LayoutError
from fusion.data.normalise import Normaliser
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec
from fusion.models import FusionEncoder


@dataclass
class Pretrained:
    """A pretrained encoder and what it expects.

    Args:
        encoder: the fusion encoder (eval mode).
        specs: sensor name → spec (band order, normalisation statistics).
        meta: the checkpoint's ``fusion`` metadata (version, pretraining config).
        path: the checkpoint file.
    """

    encoder: FusionEncoder
    specs: dict[str, SensorSpec]
    meta: dict[str, Any]
    path: str

    @property
    def normaliser(self) -> Normaliser:
        return Normaliser(self.specs)

    def expected(self) -> dict[str, list[str]]:
        """Stream key → band names the encoder was trained with."""
        return {s.key: list(s.band_names) for spec in self.specs.values() for s in spec.streams()}

    def check(self, data: Sample | Batch) -> None:
        """Refuse streams or bands the checkpoint does not know (listing what it expects)."""
        expected = self.expected()
        for key, stream in data.streams.items():
            if key not in expected:
                raise IncompatibleDataError(
                    f"stream {key!r} is not one this checkpoint was trained with; it expects "
                    f"{expected}",
                    path=self.path,
                    sensor=stream.sensor,
                )
            unknown = [b for b in stream.band_names if b not in expected[key]]
            if unknown:
                raise IncompatibleDataError(
                    f"bands {unknown} of stream {key!r} are unknown to this checkpoint; it "
                    f"expects {expected[key]}",
                    path=self.path,
                    sensor=stream.sensor,
                    band=unknown[0],
                )

    @torch.no_grad()
    def embed(self, batch: Batch) -> torch.Tensor:
        """Embeddings ``(B, D)`` of a batch of *normalised* samples."""
        self.check(batch)
        out: torch.Tensor = self.encoder(batch)
        return out


def load_pretrained(path: str | Path, *, map_location: str = "cpu") -> Pretrained:
    """Load the encoder of a ``fusion pretrain`` checkpoint.

    Raises:
        LayoutError: the file is missing, is not a fusion checkpoint, or its weights do not
            fit the encoder its config describes.
    """
    path = Path(path)
    if not path.is_file():
        raise LayoutError("checkpoint file does not exist", path=path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many types for a bad file
        raise LayoutError(f"cannot read checkpoint: {err}", path=path) from err
    meta = ckpt.get("fusion") if isinstance(ckpt, dict) else None
    if meta is None:
        raise LayoutError("not a fusion checkpoint (no 'fusion' metadata)", path=path)
    if meta["encoder"].get("model") != "FusionEncoder":
        raise LayoutError(
            f"checkpoint holds a {meta['encoder'].get('model')} baseline, not a fusion encoder",
            path=path,
        )
    try:
        encoder = FusionEncoder.from_config(meta["encoder"])
    except (ValueError, TypeError, KeyError) as err:
        raise LayoutError(f"cannot rebuild the encoder from its config: {err}", path=path) from err
    prefix = "encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:  # torch reports missing/unexpected keys and shape mismatches so
        first = str(err).splitlines()[:4]
        raise LayoutError(
            "the weights do not fit the encoder its config describes (a checkpoint written by "
            f"another toolkit version?): {' '.join(line.strip() for line in first)}",
            path=path,
        ) from err
    encoder.eval()
    specs = {d["name"]: SensorSpec.from_dict(d, source=path) for d in meta["specs"]}
    return Pretrained(encoder, specs, meta, str(path))
