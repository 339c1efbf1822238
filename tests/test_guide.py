"""Guided pretraining: guide features of every training chip, the cosine term, bad guides."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from fusion.checkpoint import load_pretrained
from fusion.data.datasets import build_datasets
from fusion.data.errors import ConfigError
from fusion.data.normalise import Normaliser
from fusion.guide import guide_loss, guide_targets, make_guide
from fusion.pretrain import PretrainConfig, pretrain
from fusion.probe.baselines import BandStatistics

TINY = {"width": 16, "depth": 1, "heads": 2, "batch_size": 8, "proj_dim": 16, "log_every": 1}


@pytest.fixture(scope="module")
def synthetic():  # type: ignore[no-untyped-def]
    return build_datasets("synthetic")


def test_invert_gives_back_physical_values(synthetic) -> None:  # type: ignore[no-untyped-def]
    raw = synthetic.train.base[0]  # the physical Sample behind the normalised one
    back = Normaliser(synthetic.specs).invert(synthetic.train[0])
    for key, x in raw.data.items():
        valid = raw.masks[key].unsqueeze(0).expand_as(x)
        assert torch.allclose(back.data[key][valid], x[valid], rtol=1e-4, atol=1e-4)


def test_guide_targets_are_centred_unit_rows_in_dataset_order(synthetic) -> None:  # type: ignore[no-untyped-def]
    guide = BandStatistics(synthetic.specs)
    target = guide_targets(guide, synthetic.train, synthetic.specs)
    n = len(synthetic.train)
    assert target.shape == (n, guide.dim)
    assert torch.allclose(target.norm(dim=1), torch.ones(n), atol=1e-5)
    # row i is chip i: the guide's own features of chip 5, centred, point the same way
    feats = torch.from_numpy(guide.embed([synthetic.train.base[i] for i in range(n)]))
    centred = feats - feats.mean(dim=0)
    assert torch.nn.functional.cosine_similarity(centred[5], target[5], dim=0) > 0.999


def test_guide_loss_is_cosine_distance() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert float(guide_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(guide_loss(x, -x)) == pytest.approx(2.0)


def test_guided_pretraining_logs_the_guide_term_and_checkpoint_loads(
    tmp_path: Path,
    synthetic,  # type: ignore[no-untyped-def]
) -> None:
    cfg = PretrainConfig.from_dict(
        {**TINY, "out": str(tmp_path), "name": "g", "max_steps": 4, "guide": "band-stats"}
    )
    summary = pretrain(cfg, progress=False)
    with open(tmp_path / "g" / "logs" / "version_0" / "metrics.csv") as f:
        logged = [float(r["train/guide_loss"]) for r in csv.DictReader(f) if r["train/guide_loss"]]
    assert len(logged) == 4 and all(0.0 <= v <= 2.0 for v in logged)
    assert summary["config"]["guide"] == "band-stats"
    pretrained = load_pretrained(summary["checkpoint"])  # the guide head stays behind
    assert pretrained.encoder.embed_dim == 16
    # resume: the guide's features are read back from the run folder (not computed again), the
    # head's weights come from the checkpoint
    saved = tmp_path / "g" / "guide_features.pt"
    table = torch.load(saved, weights_only=True)["features"]
    assert table.shape == (len(synthetic.train), BandStatistics(synthetic.specs).dim)
    calls = []
    import fusion.pretrain as pretrain_module

    real = pretrain_module.guide_targets

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pretrain_module, "guide_targets", counted)
        more = PretrainConfig.from_dict(
            {**cfg.__dict__, "max_steps": 6, "resume": summary["checkpoint"]}
        )
        assert pretrain(more, progress=False)["steps"] == 6
        assert not calls  # reused
        # another data seed is another training split: the saved table does not match
        other = PretrainConfig.from_dict({**cfg.__dict__, "max_steps": 1, "seed": 1})
        pretrain(other, progress=False)
        assert len(calls) == 1
        saved.write_bytes(b"damaged")  # a damaged table is computed again, not an error
        pretrain(other, progress=False)
        assert len(calls) == 2


def test_unknown_guide_and_guide_that_cannot_read_the_data_are_named(
    tmp_path: Path,
    synthetic,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(ConfigError, match=r"unknown guide 'dino'.*imagenet-rgb"):
        make_guide("dino", synthetic.specs)
    config = tmp_path / "bad.yaml"
    config.write_text("guide: dino\n")
    with pytest.raises(ConfigError, match=r"unknown guide 'dino'.*bad\.yaml"):
        PretrainConfig.from_yaml(config)  # named with its file, before any data is read
    config.unlink()
    cfg = PretrainConfig.from_dict(
        {**TINY, "out": str(tmp_path), "max_steps": 1, "guide": "imagenet-rgb"}
    )
    with pytest.raises(ConfigError, match="guide 'imagenet-rgb' cannot embed the training data"):
        pretrain(cfg, progress=False)
    assert not list(tmp_path.iterdir())  # refused before the run folder exists


def test_cli_guide_option_names_a_bad_guide_and_none_turns_a_configs_guide_off(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    base = ["pretrain", "--out", str(tmp_path), "--max-steps", "1", "--no-progress", "--json"]
    result = runner.invoke(app, [*base, "--guide", "dino"])
    assert result.exit_code == 2 and "unknown guide 'dino'" in result.output
    config = tmp_path / "guided.yaml"
    config.write_text(
        "guide: imagenet-rgb\nwidth: 16\ndepth: 1\nheads: 2\nbatch_size: 8\nproj_dim: 16\n"
    )
    # the synthetic default has no RGB: the config's guide would fail, 'none' turns it off
    result = runner.invoke(app, [*base, "--config", str(config), "--guide", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"]["guide"] is None
