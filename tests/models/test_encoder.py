"""FusionEncoder: shapes, absence, band sets, masks, checkpoints, errors and gradients."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fusion.data.collate import Batch, collate_samples
from fusion.data.readers.ts_file import TsCaseDataset
from fusion.data.sample import Sample
from fusion.models import (
    FusionEncoder,
    NoDataError,
    StreamMismatchError,
    UnknownStreamError,
    projection_head,
)
from tests.models.conftest import WIDTH

OPT = "syn_optical_10m"


def _edit(batch: Batch, key: str, **fields: torch.Tensor) -> Batch:
    """A copy of ``batch`` with some of stream ``key``'s tensors replaced."""
    names = {"data": "data", "masks": "masks", "present": "present", "band_present": "band_present"}
    new = {
        attr: {**getattr(batch, attr), key: fields[name]}
        if name in fields
        else getattr(batch, attr)
        for name, attr in names.items()
    }
    return replace(batch, **new)


def _model(batch: Batch, **kw: object) -> FusionEncoder:
    return FusionEncoder(batch.streams, width=WIDTH, **kw).eval()  # type: ignore[arg-type]


def test_raster_output_shape(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    out = model(raster_batch)
    assert out.shape == (4, WIDTH) and model.embed_dim == WIDTH
    assert torch.isfinite(out).all()
    strides = {k: model.stem_for(k).strides for k in raster_batch.streams}
    assert strides == {OPT: (2, 2), "syn_optical_20m": (2,), "syn_sar": (2, 2), "syn_thermal": ()}
    head = projection_head(model.embed_dim, 32, 8).eval()
    assert head(out).shape == (4, 8)


def test_series_output_shape(series_batch: Batch) -> None:
    model = _model(series_batch, series_tokens=5)
    assert series_batch.data["gyroscope"].shape == (4, 3, 100)
    out = model(series_batch)
    assert out.shape == (4, WIDTH) and torch.isfinite(out).all()
    assert model.stem_for("gyroscope").strides == (2,)  # 10 Hz to the 0.2 s series stride


def test_basic_motions_batch(shared_data: Path) -> None:
    ds = TsCaseDataset(shared_data / "imu" / "BasicMotions_TRAIN.ts")
    batch = next(iter(DataLoader(ds, batch_size=8, collate_fn=collate_samples)))
    out = _model(batch)(batch)
    assert out.shape == (8, WIDTH) and torch.isfinite(out).all()


def test_absent_stream_is_left_out_not_zero_filled(raster_samples: list[Sample]) -> None:
    full = collate_samples(raster_samples)
    model = _model(full)
    mixed = collate_samples(
        [s if i % 2 == 0 else s.without("syn_sar") for i, s in enumerate(raster_samples)]
    )
    without = collate_samples([s.without("syn_sar") for s in raster_samples])
    assert mixed.present["syn_sar"].tolist() == [True, False, True, False]
    assert "syn_sar" not in without.data
    # absent SAR fed as "present zeros": what absence must NOT be equivalent to
    zeros = _edit(full, "syn_sar", data=torch.zeros_like(full.data["syn_sar"]))
    with torch.no_grad():
        a, b, c, z = model(mixed), model(without), model(full), model(zeros)
    torch.testing.assert_close(a[1::2], b[1::2], atol=1e-5, rtol=0)
    torch.testing.assert_close(a[0::2], c[0::2], atol=1e-5, rtol=0)
    assert not torch.allclose(c[0::2], b[0::2], atol=1e-3)  # SAR matters where present
    assert not torch.allclose(z[1::2], b[1::2], atol=1e-3)  # and absent is not zeros


def test_band_order_does_not_matter(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    bp = raster_batch.band_present[OPT].clone()
    bp[0, 1] = False  # a partial band set must be order-free too
    base = _edit(raster_batch, OPT, band_present=bp)
    perm = [2, 0, 3, 1]
    stream = raster_batch.streams[OPT]
    permuted = _edit(
        replace(
            base,
            streams={
                **base.streams,
                OPT: replace(stream, bands=tuple(stream.bands[i] for i in perm)),
            },
        ),
        OPT,
        data=base.data[OPT][:, perm],
        band_present=bp[:, perm],
    )
    with torch.no_grad():
        a, b = model(base), model(permuted)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not torch.allclose(a, model(_edit(base, OPT, data=base.data[OPT][:, perm])), atol=1e-4)


def test_dropping_a_band_changes_only_that_sample(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    bp = raster_batch.band_present[OPT].clone()
    bp[0, 3] = False
    dropped = _edit(raster_batch, OPT, band_present=bp)
    with torch.no_grad():
        a, b = model(raster_batch), model(dropped)
    assert a.shape == b.shape
    assert not torch.allclose(a[0], b[0], atol=1e-4)
    torch.testing.assert_close(a[1:], b[1:], atol=1e-6, rtol=0)


def test_invalid_pixels_do_not_matter(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    mask = raster_batch.masks[OPT]
    assert (~mask).any() and mask.any()  # clouds: some pixels invalid, some valid
    junk = torch.where(
        mask.unsqueeze(1), raster_batch.data[OPT], torch.full_like(raster_batch.data[OPT], 1e4)
    )
    junk[:, 0][~mask] = float("nan")
    # values of a dropped band are not data either
    bp = raster_batch.band_present["syn_sar"].clone()
    bp[2, 0] = False
    sar = raster_batch.data["syn_sar"].clone()
    base = _edit(raster_batch, "syn_sar", band_present=bp)
    sar[2, 0] = float("nan")
    noisy = _edit(_edit(base, OPT, data=junk), "syn_sar", data=sar)
    with torch.no_grad():
        a, b = model(base), model(noisy)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_config_round_trip(raster_batch: Batch) -> None:
    model = _model(raster_batch, depth=1, heads=2, mlp_ratio=2.0, band_dim=8)
    cfg = json.loads(json.dumps(model.config()))  # plain data, JSON-safe
    assert cfg["streams"][OPT]["bands"][0]["name"] == "B02"
    rebuilt = FusionEncoder.from_config(cfg)
    assert rebuilt.config() == cfg
    with torch.no_grad():
        before = rebuilt.eval()(raster_batch)
        rebuilt.load_state_dict(model.state_dict())
        assert torch.equal(rebuilt(raster_batch), model(raster_batch))
    assert not torch.allclose(before, model(raster_batch))
    with pytest.raises(ValueError, match="not FusionEncoder"):
        FusionEncoder.from_config({**cfg, "model": "Other"})


def test_unknown_stream_key_is_named(raster_batch: Batch) -> None:
    streams = {k: s for k, s in raster_batch.streams.items() if k != "syn_thermal"}
    model = FusionEncoder(streams, width=WIDTH)
    with pytest.raises(UnknownStreamError, match="'syn_thermal'") as err:
        model(raster_batch)
    assert "syn_sar" in str(err.value)  # the known streams are listed


def test_resolution_mismatch_is_refused(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    bad = replace(
        raster_batch,
        streams={
            **raster_batch.streams,
            "syn_sar": replace(raster_batch.streams["syn_sar"], resolution_m=20.0),
        },
    )
    with pytest.raises(StreamMismatchError, match="'syn_sar' is at 20 m"):
        model(bad)


def test_sample_without_any_stream_is_refused(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    batch = raster_batch
    for key in raster_batch.data:
        present = batch.present[key].clone()
        present[1] = False
        batch = _edit(batch, key, present=present)
    with pytest.raises(NoDataError, match=r"sample\(s\) \[1\] have no present stream"):
        model(batch)
    assert issubclass(NoDataError, ValueError)


def test_gradients_reach_every_stem(raster_batch: Batch) -> None:
    model = FusionEncoder(raster_batch.streams, width=WIDTH).train()
    out = model(raster_batch)
    (out * torch.randn_like(out)).sum().backward()
    for key in raster_batch.streams:
        for name, p in model.stem_for(key).named_parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"{key}.{name}"
    for name, p in model.band_embedding.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # every parameter takes part (DistributedDataParallel refuses unused ones)
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert unused == []
    assert model.series_pos is None


def test_stream_type_comes_from_bands_not_key(raster_batch: Batch) -> None:
    model = _model(raster_batch)
    stream = raster_batch.streams["syn_sar"]
    renamed = replace(stream, key="s1_like", sensor="other")
    bp = torch.ones(2, 2, dtype=torch.bool)
    with torch.no_grad():
        a = model.stream_type_embedding(stream, bp)
        b = model.stream_type_embedding(renamed, bp)
        c = model.stream_type_embedding(raster_batch.streams["syn_thermal"], bp)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("pixel_channels", [0, 8])
def test_both_stems_ignore_band_order_and_invalid_values(
    raster_batch: Batch, pixel_channels: int
) -> None:
    """The pixel-first stem (default) and the patchify-first stem (version 1) keep the same
    contract: band order does not matter and NaN under a mask never leaks."""
    model = _model(raster_batch, pixel_channels=pixel_channels)
    order = [3, 1, 0, 2]
    stream = raster_batch.streams[OPT]
    flipped = replace(
        _edit(
            raster_batch,
            OPT,
            data=raster_batch.data[OPT][:, order],
            band_present=raster_batch.band_present[OPT][:, order],
        ),
        streams={
            **raster_batch.streams,
            OPT: replace(stream, bands=tuple(stream.bands[i] for i in order)),
        },
    )
    mask = raster_batch.masks[OPT]
    junk = raster_batch.data[OPT].clone()
    junk[:, 1][~mask] = float("nan")
    with torch.no_grad():
        a = model(raster_batch)
        torch.testing.assert_close(model(flipped), a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(_edit(raster_batch, OPT, data=junk)), a, atol=1e-6, rtol=0)


def test_version_1_config_rebuilds_the_patchify_first_stem(raster_batch: Batch) -> None:
    cfg = _model(raster_batch, pixel_channels=0).config()
    assert cfg["pixel_channels"] == 0
    old = {k: v for k, v in cfg.items() if k != "pixel_channels"} | {"version": 1}
    rebuilt = FusionEncoder.from_config(old)
    assert rebuilt.stem_for(OPT).pixel_channels == 0
    assert (
        FusionEncoder.from_config({**old, "version": 2, "pixel_channels": 16})
        .stem_for(OPT)
        .pixel_channels
        == 16
    )
