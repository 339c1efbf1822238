"""Embedding, evaluating and the missing-sensor matrix with a (tiny) pretrained checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.data.catalog import S2_L2A
from fusion.data.errors import IncompatibleDataError
from fusion.data.sample import Sample
from fusion.probe import (
    FineTuneProbe,
    FusionEmbedder,
    ProbeError,
    Subset,
    band_subsets,
    embed_dataset,
    evaluate,
    missing_matrix,
    sensor_subsets,
)

Small = tuple[list[Sample], list[Sample]]


class OpticalOnly:
    """An embedder that, like an RGB model, cannot see other sensors."""

    name = "optical-only"

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        if any("syn_optical" not in s.sensors for s in samples):
            raise ProbeError("needs the optical sensor")
        return np.stack([s.data["syn_optical_10m"].mean(dim=(1, 2)).numpy() for s in samples])


def test_embeddings_skip_samples_without_the_subset(checkpoint: Path, small: Small) -> None:
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    train = small[0]
    full = embed_dataset(fusion, train, batch_size=16)
    assert full.x.shape == (len(train), fusion.dim) and np.isfinite(full.x).all()
    assert full.y is not None and full.skipped == 0
    thermal = embed_dataset(fusion, train, subset=Subset("t", {"syn_thermal": None}))
    has = [i for i, s in enumerate(train) if "syn_thermal" in s.sensors]
    assert thermal.skipped > 0 and thermal.index.tolist() == has


def test_random_init_is_the_same_architecture_with_other_weights(
    checkpoint: Path, small: Small
) -> None:
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    before = {k: v.clone() for k, v in fusion.encoder.state_dict().items()}
    rnd = fusion.random_init(seed=1)
    assert rnd.encoder.config() == fusion.encoder.config()
    assert not np.allclose(rnd.embed(small[1][:4]), fusion.embed(small[1][:4]))
    assert all(torch.equal(v, fusion.encoder.state_dict()[k]) for k, v in before.items())


def test_checkpoint_refuses_sensors_it_does_not_know(checkpoint: Path) -> None:
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    with pytest.raises(IncompatibleDataError, match=r"s2_l2a_10m.*expects.*syn_optical_10m"):
        fusion.check_sensors({"s2_l2a": S2_L2A})


def test_evaluate_scores_every_probe(checkpoint: Path, small: Small) -> None:
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    cell = evaluate(fusion, *small, task="classification", probes=("knn", "linear", "forest"))
    assert set(cell.scores) == {"knn", "linear", "forest"}
    assert cell.n_train == len(small[0]) and cell.n_test == len(small[1])
    for scores in cell.scores.values():
        assert 0.0 <= scores["accuracy"] <= 1.0 and 0.0 <= scores["macro_f1"] <= 1.0


def test_missing_matrix_covers_every_subset_and_records_what_cannot_run(
    checkpoint: Path, small: Small, tmp_path: Path
) -> None:
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    specs = fusion.pretrained.specs
    every = sensor_subsets(specs) + band_subsets(specs)
    assert len(every) == 9  # 7 sensor combinations + RGB + RGB+NIR
    subsets = [s for s in every if s.name in ("syn_optical+syn_sar", "syn_optical", "syn_sar")]
    matrix = missing_matrix(
        [fusion, OpticalOnly()], *small, task="classification", subsets=subsets, probes=("knn",)
    )
    assert matrix.rows == [s.name for s in subsets]
    values = matrix.values("knn")
    assert np.isfinite(values[:, 0]).all()  # the fusion encoder serves every subset
    sar = matrix.rows.index("syn_sar")
    assert np.isnan(values[sar, 1]) and "optical" in matrix.cells[("syn_sar", "optical-only")].error
    assert np.isfinite(values[matrix.rows.index("syn_optical"), 1])
    table = matrix.markdown("knn")
    assert "| syn_sar | " in table and "n/a" in table
    png = matrix.plot(tmp_path / "m.png", "knn")
    assert png.stat().st_size > 5000
    assert len(matrix.to_dict()["cells"]) == 6


def test_finetuning_trains_a_copy(checkpoint: Path, small: Small) -> None:
    fusion = FusionEmbedder.from_checkpoint(checkpoint)
    before = {k: v.clone() for k, v in fusion.encoder.state_dict().items()}
    ft = FineTuneProbe("classification", epochs=1, lr=1e-3).fit(fusion, small[0][:32])
    scores = ft.score(small[1])
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert ft.embedder is not None
    tuned = ft.embedder.encoder.state_dict()
    assert any(not torch.equal(v, tuned[k]) for k, v in before.items())
    assert all(torch.equal(v, fusion.encoder.state_dict()[k]) for k, v in before.items())
