"""Baseline embedders: ImageNet EfficientNet-Lite0 on RGB, and raw band statistics."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.data.bands import Band
from fusion.data.catalog import S1_GRD, S2_L1C, S2_L2A
from fusion.data.sample import Sample
from fusion.data.specs import Stream
from fusion.probe.baselines import (
    FEATURE_DIM,
    BandStatistics,
    ImageNetRGB,
    MissingRGBError,
    WeightMappingError,
    efficientnet_lite0,
    load_package_state,
    map_by_position,
)
from fusion.probe.embedders import Embedder
from fusion.probe.errors import EmptySubsetError, ProbeError

S2_10M, S2_20M, S2_60M = S2_L2A.streams()
S1 = S1_GRD.streams()[0]

#: ImageNet classes a Landsat view of sea and coast is taken for (the scene has no better class).
MARINE = {
    "grey whale, gray whale, devilfish, Eschrichtius gibbosus, Eschrichtius robustus",
    "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
    "hammerhead, hammerhead shark",
    "tiger shark, Galeocerdo cuvieri",
    "sea lion",
    "coral reef",
    "scuba diver",
    "snorkel",
}


def _sample(
    seed: int, size: int = 64, *, s2: bool = True, s1: bool = True, masked: bool = True
) -> Sample:
    """A hand-made S2 L2A (three streams, reflectance) + S1 (dB) sample; one masked S2 pixel."""
    g = torch.Generator().manual_seed(seed)
    data: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    streams: dict[str, Stream] = {}
    if s2:
        for stream, side in ((S2_10M, size), (S2_20M, size // 2), (S2_60M, size // 6)):
            data[stream.key] = torch.rand(len(stream.bands), side, side, generator=g) * 0.4
            masks[stream.key] = torch.ones(side, side, dtype=torch.bool)
            streams[stream.key] = stream
        if masked:
            masks[S2_10M.key][0, 0] = False
            data[S2_10M.key][:, 0, 0] = 0.0
    if s1:
        data[S1.key] = torch.randn(2, size, size, generator=g) * 3 - 12
        masks[S1.key] = torch.ones(size, size, dtype=torch.bool)
        streams[S1.key] = S1
    return Sample(data, masks, streams)


def _one_stream(stream: Stream, values: torch.Tensor, valid: torch.Tensor | None = None) -> Sample:
    mask = valid if valid is not None else torch.ones(values.shape[1:], dtype=torch.bool)
    return Sample({stream.key: values}, {stream.key: mask}, {stream.key: stream})


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def rgb() -> ImageNetRGB:
    return ImageNetRGB(device=torch.device("cpu"))


def _variant(rgb: ImageNetRGB, **options: object) -> ImageNetRGB:
    """``rgb`` with other preprocessing options, sharing its network (loading one costs time)."""
    twin = copy.copy(rgb)
    for key, value in options.items():
        assert hasattr(twin, key)
        setattr(twin, key, value)
    return twin


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    return load_package_state()


# ----------------------------------------------------------------------- ImageNetRGB


def test_embed_shape_finite_deterministic_batched(rgb: ImageNetRGB) -> None:
    samples = [_sample(0), _sample(1, size=32)]
    a = rgb.embed(samples)
    assert isinstance(rgb, Embedder)
    assert rgb.name == "imagenet-rgb" and rgb.dim == FEATURE_DIM == 1280
    assert a.shape == (2, 1280) and a.dtype == np.float32
    assert np.isfinite(a).all()
    assert not np.allclose(a[0], a[1])
    # deterministic, and S1 and the 20/60 m streams play no part
    only_rgb = samples[0].select_bands({"s2_l2a": ["B02", "B03", "B04"]})
    np.testing.assert_array_equal(rgb.embed([only_rgb, samples[1]]), a)
    # batches of one give the same features
    rgb.batch_size = 1
    try:
        np.testing.assert_allclose(rgb.embed(samples), a, rtol=1e-4, atol=1e-5)
    finally:
        rgb.batch_size = 64
    assert rgb.embed([]).shape == (0, 1280)


def test_fixed_stretch_maps_0_to_0p3_onto_0_to_255(rgb: ImageNetRGB) -> None:
    red = torch.tensor([[0.0, 0.15, 0.3], [0.45, -0.01, 0.1]])
    values = torch.stack([torch.full((2, 3), 0.03), torch.full((2, 3), 0.15), red, red])
    valid = torch.ones(2, 3, dtype=torch.bool)
    valid[1, 2] = False
    r, g, b = rgb.to_uint8(_one_stream(S2_10M, values, valid))  # B02, B03, B04, B08 → R, G, B
    assert r.tolist() == [[0.0, 128.0, 255.0], [255.0, 0.0, 0.0]]  # 0.1 is masked → black
    assert g[0].tolist() == [128.0] * 3 and b[0].tolist() == [26.0] * 3
    assert b[1, 2] == 0  # masked in every band


def test_preprocess_resizes_and_normalises_like_lite(rgb: ImageNetRGB) -> None:
    values = torch.full((4, 5, 7), 0.15)  # → 127.5 → 128 after rounding
    x = rgb.preprocess([_one_stream(S2_10M, values)])
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, (128 - 127) / 128))


def test_rgb_found_by_alias_in_any_order_and_across_streams(rgb: ImageNetRGB) -> None:
    emb = _variant(rgb, bands=("B4", "B3", "B2"))
    reordered = replace(S2_10M, bands=tuple(reversed(S2_10M.bands)))  # B08, B04, B03, B02
    values = torch.stack([torch.full((4, 4), v) for v in (0.3, 0.06, 0.12, 0.18)])
    r, g, b = emb.to_uint8(_one_stream(reordered, values))
    assert (r.unique().tolist(), g.unique().tolist(), b.unique().tolist()) == (
        [51.0],
        [102.0],
        [153.0],
    )
    # red at 20 m, green and blue at 10 m: each band is resized on its own
    fine = Stream("cam_10m", "cam", (S2_10M.bands[0], S2_10M.bands[1]), 10.0)
    coarse = Stream("cam_20m", "cam", (S2_10M.bands[2],), 20.0)
    mixed = Sample(
        {fine.key: torch.full((2, 8, 8), 0.1), coarse.key: torch.full((1, 4, 4), 0.2)},
        {
            fine.key: torch.ones(8, 8, dtype=torch.bool),
            coarse.key: torch.ones(4, 4, dtype=torch.bool),
        },
        {fine.key: fine, coarse.key: coarse},
    )
    assert [tuple(c.shape) for c in emb.to_uint8(mixed)] == [(4, 4), (8, 8), (8, 8)]
    assert emb.preprocess([mixed]).shape == (1, 3, 224, 224)


def test_percentile_stretch_ignores_masked_pixels(rgb: ImageNetRGB) -> None:
    emb = _variant(rgb, stretch="percentile")
    ramp = torch.linspace(0.0, 0.5, 100).reshape(10, 10)
    values = torch.stack([ramp, ramp * 2, ramp, ramp])
    valid = torch.ones(10, 10, dtype=torch.bool)
    valid[9, 9] = False
    values[:, 9, 9] = 100.0  # garbage under the mask must not move the percentiles
    r, g, _b = emb.to_uint8(_one_stream(S2_10M, values, valid))
    x = ramp.numpy().astype(np.float64)
    lo, hi = np.percentile(x[valid.numpy()], [2, 98])
    expected = np.round(np.clip((x - lo) / (hi - lo) * 255, 0, 255))
    expected[9, 9] = 0
    np.testing.assert_allclose(r.numpy(), expected, atol=1)
    np.testing.assert_allclose(g.numpy(), r.numpy(), atol=1)  # B03 = 2 × B04: same image
    assert r.min() == 0 and r.max() == 255


def test_missing_rgb_names_needed_and_found_bands(rgb: ImageNetRGB) -> None:
    sample = _sample(0).select_bands({"s2_l2a": ["B05", "B8A"], "s1_grd": ["VV", "VH"]})
    with pytest.raises(MissingRGBError) as err:
        rgb.embed([sample])
    msg = str(err.value)
    for band in ("B04", "B03", "B02", "B05", "B8A", "VV", "VH", "s1_grd"):
        assert band in msg
    assert isinstance(err.value, ProbeError)
    # a band switched off (flagged absent) counts as missing too
    off = _sample(0, s1=False)
    off.band_present[S2_10M.key] = torch.tensor([True, False, True, True])
    with pytest.raises(MissingRGBError, match=r"s2_l2a_10m: B02, B03 \(off\), B04, B08"):
        rgb.embed([off])


def test_position_mapping_refuses_truncated_or_shuffled_weights(
    package_state: dict[str, torch.Tensor],
) -> None:
    body = [k for k in package_state if not k.startswith("_fc.")]
    truncated = {k: package_state[k] for k in body[:-5]}
    with pytest.raises(
        WeightMappingError,
        match=r"289 entries, the architecture 294; first unmatched model entry .bn2\.weight.",
    ):
        efficientnet_lite0(state=truncated)
    keys = list(package_state)
    keys[0], keys[6] = keys[6], keys[0]  # stem conv ↔ first depthwise conv
    shuffled = {k: package_state[k] for k in keys}
    with pytest.raises(WeightMappingError, match=r"entry 0.*_blocks\.0\._depthwise_conv\.weight"):
        efficientnet_lite0(state=shuffled)
    with pytest.raises(WeightMappingError, match=r"'a\.bias' .*'b\.weight'"):
        map_by_position({"a.bias": torch.zeros(3)}, {"b.weight": torch.zeros(3)})
    with pytest.raises(WeightMappingError, match="no ImageNet classifier"):
        efficientnet_lite0(state={k: package_state[k] for k in body}, classifier=True)


def test_explicit_weights_path(tmp_path: Path, package_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "lite0.pth"
    torch.save(package_state, path)
    a = efficientnet_lite0(path)
    b = efficientnet_lite0()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(WeightMappingError, match="does not exist"):
        ImageNetRGB(weights_path=tmp_path / "absent.pth")


def _top(logits: torch.Tensor) -> tuple[str, float]:
    from timm.data import ImageNetInfo

    p = logits.softmax(-1)
    return ImageNetInfo().index_to_description(int(p.argmax())), float(p.max())


def test_package_classifier_on_timm_features_recognises_a_photo(
    rgb: ImageNetRGB, package_state: dict[str, torch.Tensor]
) -> None:
    """Grace Hopper's portrait (shipped with matplotlib): ImageNet's classic "military uniform"."""
    import matplotlib.image as mpimg
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photo = np.asarray(mpimg.imread(path), dtype=np.float32).transpose(2, 0, 1)  # (3, 600, 512)
    x = torch.nn.functional.interpolate(
        torch.from_numpy(photo)[None], size=(224, 224), mode="bilinear", antialias=True
    )
    x = (x - 127) / 128
    with torch.no_grad():
        logits = rgb.features(x) @ package_state["_fc.weight"].T + package_state["_fc.bias"]
        # the classifier variant is the same network with the package's head on top
        small = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        full = efficientnet_lite0(classifier=True)(small)
        torch.testing.assert_close(
            full, rgb.features(small) @ package_state["_fc.weight"].T + package_state["_fc.bias"]
        )
    name, p = _top(logits[0])
    assert name == "military uniform" and p > 0.3


def test_landsat_scene_through_the_embedder(
    shared_data: Path, rgb: ImageNetRGB, package_state: dict[str, torch.Tensor]
) -> None:
    """rasterio's Landsat RGB scene (coast and sea), bytes turned into reflectance the fixed
    stretch maps back onto the same bytes: ImageNet sees marine life, confidently for 1000
    classes (uniform would be 0.001)."""
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(shared_data / "rasterio" / "RGB.byte.tif") as f:
        raw = torch.from_numpy(f.read().astype(np.float32))  # (3, 718, 791) uint8 values
    bands = tuple(Band(name=n, quantity="reflectance", resolution_m=30.0) for n in "RGB")
    stream = Stream("landsat", "landsat", bands, 30.0)
    sample = _one_stream(stream, raw / 255 * 0.3, (raw > 0).any(0))
    emb = _variant(rgb, bands=("R", "G", "B"))
    assert torch.equal(torch.stack(emb.to_uint8(sample)), raw)
    features = torch.from_numpy(emb.embed([sample]))
    logits = features @ package_state["_fc.weight"].T + package_state["_fc.bias"]
    name, p = _top(logits[0])
    assert name in MARINE and p > 0.1, (name, p)


def test_matches_the_packages_own_model_code() -> None:
    """The weights' companion package (not a dependency) gives identical logits at 224 px."""
    ref_pkg = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch (reference code) absent"
    )
    from fusion.probe.baselines import imagenet_weights_path

    ref = ref_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(imagenet_weights_path())
    ).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(efficientnet_lite0(classifier=True)(x), ref(x))


def test_real_eurosat_chips(shared_data: Path, rgb: ImageNetRGB) -> None:
    rasterio = pytest.importorskip("rasterio")
    from fusion.data.readers.geotiff import EUROSAT_BAND_ORDER

    # EuroSAT resampled every band to 10 m: its spec says so (one stream), its files keep their
    # own band order (B8A last)
    at_10m = replace(S2_L1C, bands=tuple(replace(b, resolution_m=10.0) for b in S2_L1C.bands))
    (spec_stream,) = at_10m.streams()
    stream = replace(spec_stream, bands=tuple(at_10m.band(b) for b in EUROSAT_BAND_ORDER))
    samples = []
    for cls in ("Forest", "SeaLake"):
        path = sorted((shared_data / "eurosat-ms" / cls).glob("*.tif"))[0]
        with rasterio.open(path) as f:
            raw = torch.from_numpy(f.read().astype(np.float32))
        samples.append(_one_stream(stream, raw * 1e-4, (raw > 0).all(0)))
    feats = rgb.embed(samples)
    assert feats.shape == (2, 1280) and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    image = torch.stack(rgb.to_uint8(samples[0]))
    assert 0 < float(image.mean()) < 200 and float((image == 255).float().mean()) < 0.05
    band_stats = BandStatistics({"s2_l1c": at_10m})
    stats = band_stats.embed(samples)
    assert stats.shape == (2, 1 + 5 * 13) and np.isfinite(stats).all()
    b8a = band_stats.feature_names.index("s2_l1c/B8A/mean")
    assert stats[0, b8a] == pytest.approx(float(samples[0].data["s2_l1c"][-1].double().mean()))


# ----------------------------------------------------------------------- BandStatistics


def _expected(values: torch.Tensor, valid: torch.Tensor) -> list[float]:
    x = values.double().numpy()[valid.numpy()]
    return [x.mean(), x.std(), *np.percentile(x, [10, 50, 90])]


def test_band_statistics_layout() -> None:
    emb = BandStatistics({"s2_l2a": S2_L2A, "s1_grd": S1_GRD})
    assert isinstance(emb, Embedder) and emb.name == "band-stats"
    assert emb.streams == ["s2_l2a_10m", "s2_l2a_20m", "s2_l2a_60m", "s1_grd"]
    assert emb.dim == 4 + 5 * (12 + 2) == len(emb.feature_names)
    assert emb.feature_names[:3] == [
        "s2_l2a_10m/present",
        "s2_l2a_10m/B02/mean",
        "s2_l2a_10m/B02/std",
    ]
    stats = ("mean", "std", "p10", "p50", "p90")
    assert emb.feature_names[-11:] == ["s1_grd/present"] + [
        f"s1_grd/{b}/{s}" for b in ("VV", "VH") for s in stats
    ]
    with pytest.raises(ValueError, match="twice"):
        BandStatistics([("s1_grd", "VV"), ("s1_grd", "vv")])
    with pytest.raises(ValueError, match="at least one"):
        BandStatistics([])


def test_band_statistics_against_numpy_with_mask_and_missing_sensor() -> None:
    emb = BandStatistics([S2_L2A, S1_GRD])
    names = emb.feature_names
    with_s1, without_s1 = _sample(1), _sample(2, s1=False)
    with_s1.data[S2_10M.key][:, 0, 0] = 50.0  # masked garbage: must not count
    out = emb.embed([with_s1, without_s1])
    assert out.shape == (2, emb.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    for row, sample in zip(out, (with_s1, without_s1), strict=True):
        for key, stream in sample.streams.items():
            assert row[names.index(f"{key}/present")] == 1
            for i, band in enumerate(stream.bands):
                j = names.index(f"{key}/{band.name}/mean")
                expected = _expected(sample.data[key][i], sample.masks[key])
                np.testing.assert_allclose(row[j : j + 5], expected, rtol=1e-5, atol=1e-6)
    s1_cols = [i for i, n in enumerate(names) if n.startswith("s1_grd/")]
    assert out[0, names.index("s1_grd/present")] == 1
    assert (out[1, s1_cols] == 0).all()
    # the masked pixel was excluded: the mean differs from the unmasked one
    b02 = names.index("s2_l2a_10m/B02/mean")
    assert out[0, b02] < 1


def test_band_statistics_aliases_switched_off_bands_and_empty_streams() -> None:
    emb = BandStatistics([("s2_l2a_10m", "B4"), ("s2_l2a_10m", "B8"), ("s1_grd", "VV")])
    assert emb.dim == 2 + 5 * 3
    sample = _sample(3)
    sample.band_present[S2_10M.key] = torch.tensor([True, True, True, False])  # B08 off
    sample.masks[S1.key][:] = False  # S1 present but nothing valid
    row = emb.embed([sample])[0]
    np.testing.assert_allclose(
        row[1:6], _expected(sample.data[S2_10M.key][2], sample.masks[S2_10M.key]), rtol=1e-5
    )
    assert row[0] == 1 and (row[6:11] == 0).all()
    assert row[11] == 0 and (row[12:] == 0).all()
    with pytest.raises(EmptySubsetError, match="none of the layout"):
        BandStatistics([S1_GRD]).embed([_sample(0, s1=False)])
    assert emb.embed([]).shape == (0, emb.dim)


def test_band_statistics_on_time_series() -> None:
    from fusion.data.catalog import get_spec

    acc = get_spec("accelerometer").streams()[0]
    values = torch.arange(30, dtype=torch.float32).reshape(3, 10)
    valid = torch.ones(10, dtype=torch.bool)
    valid[-1] = False
    row = BandStatistics([get_spec("accelerometer")]).embed([_one_stream(acc, values, valid)])[0]
    assert row[0] == 1
    np.testing.assert_allclose(row[1:6], _expected(values[0], valid), rtol=1e-6)


def test_concatenated_puts_each_embedders_features_side_by_side() -> None:
    from fusion.probe import Concatenated

    stats = BandStatistics([("s2_l2a_10m", "B4")])
    both = BandStatistics([("s2_l2a_10m", "B4"), ("s1_grd", "VV")])
    late = Concatenated(stats, both)
    assert isinstance(late, Embedder) and late.name == "band-stats+band-stats"
    samples = [_sample(0), _sample(1)]
    out = late.embed(samples)
    assert out.shape == (2, stats.dim + both.dim) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, : stats.dim], stats.embed(samples))
    np.testing.assert_array_equal(out[:, stats.dim :], both.embed(samples))
    with pytest.raises(ValueError, match="at least two"):
        Concatenated(stats)
