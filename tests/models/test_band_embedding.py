"""Band embeddings from metadata: deterministic, order-free, smooth in wavelength."""

from __future__ import annotations

from dataclasses import replace

import torch

from fusion.data.bands import Band
from fusion.data.catalog import ACCELEROMETER, GYROSCOPE, S1_GRD, S2_L2A
from fusion.data.specs import Stream
from fusion.models.band_embedding import (
    NUM_BAND_FEATURES,
    POLARISATIONS,
    BandEmbedding,
    band_features,
    quantity_bucket,
)

RED = Band(name="red", wavelength_nm=664.6, bandwidth_nm=31.0, quantity="reflectance")


def test_features_are_deterministic_and_sized() -> None:
    f1 = band_features(RED, resolution_m=10.0)
    f2 = band_features(replace(RED, name="B04", aliases=("B4",)), resolution_m=10.0)
    assert len(f1) == NUM_BAND_FEATURES
    # the name (other than an axis suffix) is not part of the physical description
    assert f1 == f2
    assert band_features(RED, resolution_m=20.0) != f1


def test_nearby_wavelengths_get_nearby_features() -> None:
    # smooth in log-wavelength: an unseen band's features sit close to its neighbours'
    ref = torch.tensor(band_features(RED))
    dist = [
        float((torch.tensor(band_features(replace(RED, wavelength_nm=w))) - ref).norm())
        for w in (670.0, 680.0, 720.0, 900.0, 2200.0)
    ]
    assert dist == sorted(dist)
    assert dist[0] < 0.2 * dist[-1]


def test_polarisation_one_hot_and_axes() -> None:
    vv, vh = S1_GRD.bands
    assert band_features(vv) != band_features(vh)
    assert band_features(replace(vv, polarisation="vv")) == band_features(vv)
    assert len(POLARISATIONS) == 4
    x, y, z = (band_features(b, rate_hz=10.0) for b in ACCELEROMETER.bands)
    assert len({x, y, z}) == 3  # accel_x/y/z share every other property


def test_quantity_hash_is_stable_and_separates_known_quantities() -> None:
    # golden value: CRC-32, not Python's per-process salted hash()
    assert quantity_bucket("Brightness Temperature", 64) == 15
    assert quantity_bucket("brightness-temperature", 64) == 15
    assert quantity_bucket(None, 64) == quantity_bucket("  ", 64) == 64
    assert 0 <= quantity_bucket("never_seen_quantity", 64) < 64
    known = {b.quantity for s in (S2_L2A, S1_GRD, ACCELEROMETER, GYROSCOPE) for b in s.bands}
    known |= {"brightness_temperature"}
    assert len({quantity_bucket(q, 64) for q in known}) == len(known)


def test_embedding_depends_on_band_not_slot() -> None:
    emb = BandEmbedding(8).eval()
    s10 = S2_L2A.streams()[0]
    rev = replace(s10, key="renamed", bands=tuple(reversed(s10.bands)))
    a, b = emb(s10), emb(rev)
    assert a.shape == (len(s10.bands), 8)
    torch.testing.assert_close(a, b.flip(0))
    one = emb(Stream("x", "y", (s10.bands[2],), resolution_m=10.0))
    torch.testing.assert_close(one[0], a[2])
    unknown = Band(name="Q", quantity="soil_moisture", unit="m3/m3")
    assert torch.isfinite(emb.embed_bands([unknown], resolution_m=30.0)).all()
