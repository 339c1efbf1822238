"""Extra unlabelled sources for pretraining, conformed to the primary source's streams.

A pretraining run reads one *primary* source: its validation split, its normalisation statistics
and its sensor specs go into the checkpoint, so the encoder is used on data like it. Further
unlabelled sources may add their chips to the training split (contrastive pretraining gains from
every footprint; labelled sets are small). Each extra source is normalised with its own
statistics — another region or processing level (Sentinel-2 L2A surface reflectance against L1C
top-of-atmosphere) has its own offset and spread — and its samples are conformed to the primary
streams:

- sensors are renamed by ``sensor_map`` (``{"s2_l2a": "s2_l1c"}`` trains L2A chips through the
  L1C stems: the same instrument and bands, another processing level);
- a stream is matched to the primary stream of the same sensor and resolution (rasters) or rate
  (time series); streams with no match are left out;
- bands are matched by name or alias (case-insensitive), in the primary band order; a primary
  band the extra source lacks keeps its slot, zero and flagged absent, as a view's channel drop
  leaves it;
- where a sample holds a native stream and a renamed one for the same primary stream, the native
  one is kept.

The stems are band-conditioned (:mod:`fusion.models.band_embedding`), so a band flagged absent is
what a deployed sensor with that band switched off looks like to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset

from fusion.data.datasets import DatasetBundle, Transformed, build_datasets
from fusion.data.errors import FusionDataError
from fusion.data.layouts import size
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec, Stream

__all__ = ["add_extra_sources", "conformer", "unlabelled"]


def _grid(stream: Stream) -> float | None:
    return stream.resolution_m if stream.resolution_m is not None else stream.rate_hz


def _targets(specs: Mapping[str, SensorSpec]) -> dict[tuple[str, float | None], Stream]:
    return {(s.sensor, _grid(s)): s for spec in specs.values() for s in spec.streams()}


def _conformed(
    x: torch.Tensor, present: torch.Tensor, source: Stream, target: Stream
) -> tuple[torch.Tensor, torch.Tensor]:
    out = x.new_zeros((len(target.bands), *x.shape[1:]))
    flags = torch.zeros(len(target.bands), dtype=torch.bool)
    # Names and aliases, case-insensitive: a source that calls B08 "B8" still fills its slot.
    index = {n.upper(): j for j, b in enumerate(source.bands) for n in (b.name, *b.aliases)}
    for i, band in enumerate(target.bands):
        j = next((index[n.upper()] for n in (band.name, *band.aliases) if n.upper() in index), None)
        if j is not None:
            out[i] = x[j]
            flags[i] = present[j]
    return out, flags


def conformer(
    specs: Mapping[str, SensorSpec], sensor_map: Mapping[str, str] | None = None
) -> Callable[[Sample], Sample]:
    """``Sample → Sample`` that conforms an extra source's sample to the streams of ``specs``.

    Raises (when called):
        FusionDataError: no stream of the sample matches a primary stream (the message lists
            what the sample holds and what the primary source has).
    """
    targets = _targets(specs)
    rename = dict(sensor_map or {})

    def conform(sample: Sample) -> Sample:
        data: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        streams: dict[str, Stream] = {}
        present: dict[str, torch.Tensor] = {}
        native: set[str] = set()
        for key, stream in sample.streams.items():
            renamed = stream.sensor in rename
            target = targets.get((rename.get(stream.sensor, stream.sensor), _grid(stream)))
            if target is None or (renamed and target.key in native):
                continue
            x, flags = _conformed(sample.data[key], sample.bands_present(key), stream, target)
            if not bool(flags.any()):
                continue
            data[target.key], masks[target.key] = x, sample.masks[key]
            streams[target.key], present[target.key] = target, flags
            if not renamed:
                native.add(target.key)
        if not data:
            raise FusionDataError(
                f"extra sample (scene {sample.meta.get('scene', '?')}, bounds "
                f"{sample.meta.get('bounds')}) has "
                f"streams {sorted(sample.streams)}, none of which matches a stream of the primary "
                f"data {sorted(s.key for s in targets.values())} (sensor_map {rename})"
            )
        return Sample(data, masks, streams, dict(sample.meta), None, present)

    return conform


def unlabelled(sample: Sample) -> Sample:
    """The sample without its label (pretraining mixes labelled and unlabelled sources)."""
    return replace(sample, label=None)


def add_extra_sources(
    bundle: DatasetBundle,
    sources: Sequence[str | Path],
    *,
    sensor_map: Mapping[str, str] | None = None,
    chip_m: float = 640.0,
    seed: int = 0,
) -> DatasetBundle:
    """``bundle`` with every chip of ``sources`` (both of their splits) added to its training
    split, each source normalised with its own statistics and conformed to ``bundle.specs``.

    The validation split and specs stay the primary source's.

    Raises:
        LayoutError: a source path does not exist or holds no known layout.
        FusionDataError: a source shares no sensor with the primary data (after ``sensor_map``).
    """
    if not sources:
        return bundle
    rename = dict(sensor_map or {})
    primary = set(bundle.specs)
    conform = conformer(bundle.specs, rename)
    parts: list[Dataset[Sample]] = [Transformed(bundle.train, unlabelled)]
    notes = []
    for source in sources:
        extra = build_datasets(source, chip_m=chip_m, seed=seed)
        shared = sorted(s for s in extra.specs if rename.get(s, s) in primary)
        if not shared:
            raise FusionDataError(
                f"extra source {str(source)!r} has sensors {sorted(extra.specs)}, none of which is "
                f"a sensor of the primary data {sorted(primary)}; map one with sensor_map "
                f"(e.g. {{{sorted(extra.specs)[0]!r}: {sorted(primary)[0]!r}}})"
            )
        parts += [Transformed(extra.train, conform), Transformed(extra.val, conform)]
        n = size(extra.train) + size(extra.val)
        used = ", ".join(f"{s}→{rename[s]}" if s in rename else s for s in shared)
        notes.append(f"{source} ({n} samples; {used})")
    return DatasetBundle(
        ConcatDataset(parts),
        bundle.val,
        bundle.specs,
        f"{bundle.description}; extra unlabelled: {'; '.join(notes)}",
    )
