"""Pretraining end to end: configs, checkpoints with metadata, resume, NaN stop, DDP on 2 CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fusion.checkpoint import load_pretrained
from fusion.data.collate import collate_samples
from fusion.data.datasets import build_datasets
from fusion.data.errors import ConfigError, IncompatibleDataError
from fusion.data.readers.band_folder import open_band_folders
from fusion.pretrain import (
    ContrastiveFusion,
    NonFiniteLossError,
    PretrainConfig,
    check_memory_bank,
    pretrain,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"width": 16, "depth": 1, "heads": 2, "batch_size": 8, "proj_dim": 16, "log_every": 1}


def _cfg(tmp_path: Path, **kw: object) -> PretrainConfig:
    return PretrainConfig.from_dict({**TINY, "out": str(tmp_path), **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("runs")
    return pretrain(_cfg(out, max_steps=3, name="smoke"), progress=False)


def test_unknown_config_key_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("max_steps: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate") as info:
        PretrainConfig.from_yaml(cfg)
    assert info.value.path == str(cfg)
    cfg.write_text("views: {sensor_dropout: 0.5}\n")
    with pytest.raises(ConfigError, match="sensor_dropout"):
        PretrainConfig.from_yaml(cfg)


def test_memory_bank_that_spans_the_training_set_is_refused(tmp_path: Path) -> None:
    # The synthetic default trains on a few hundred chips: a 4096-entry bank would hold every
    # chip's own earlier embedding as a negative.
    with pytest.raises(ConfigError, match=r"memory_bank 4096 >= \d+ training samples"):
        pretrain(_cfg(tmp_path, max_steps=1, memory_bank=4096), progress=False)
    assert not list(tmp_path.rglob("*.ckpt"))
    cfg = _cfg(tmp_path, memory_bank=30)
    with pytest.warns(UserWarning, match="30% of the samples"):
        check_memory_bank(cfg, 100)
    check_memory_bank(_cfg(tmp_path, memory_bank=10), 100)  # a tenth: accepted silently
    check_memory_bank(_cfg(tmp_path, memory_bank=0), 5)


def test_every_shipped_config_loads() -> None:
    configs = sorted((ROOT / "configs").glob("pretrain_*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        cfg = PretrainConfig.from_yaml(path)
        assert cfg.max_steps > 0 and cfg.data


def test_checkpoint_carries_specs_and_embeds(trained: dict) -> None:  # type: ignore[type-arg]
    assert trained["steps"] == 3
    assert torch.isfinite(torch.tensor(trained["metrics"]["train/loss"]))
    model = load_pretrained(trained["checkpoint"])
    assert set(model.specs) == {"syn_optical", "syn_sar", "syn_thermal"}
    stats = model.specs["syn_optical"].stats
    assert stats is not None and len(stats.mean) == 6 and min(stats.std) > 0
    assert model.meta["version"] and model.meta["pretrain"]["max_steps"] == 3
    bundle = build_datasets("synthetic")
    batch = collate_samples([bundle.val[i] for i in range(4)])
    emb = model.embed(batch)
    assert emb.shape == (4, 16) and torch.isfinite(emb).all()
    # one sensor removed: still an embedding (any non-empty subset of sensors works)
    sar_only = collate_samples(
        [bundle.val[i].without("syn_optical", "syn_thermal") for i in range(4)]
    )
    assert model.embed(sar_only).shape == (4, 16)


def test_checkpoint_refuses_unknown_sensor(trained: dict, shared_data: Path) -> None:  # type: ignore[type-arg]
    model = load_pretrained(trained["checkpoint"])
    from fusion.data.align import align

    scene = align(open_band_folders([shared_data / "bigearthnet-v2" / "BigEarthNet-S1"]))
    sample = scene.read_chip(scene.bounds)
    with pytest.raises(IncompatibleDataError, match="syn_sar") as info:
        model.check(sample)
    assert info.value.sensor == "s1_grd"


def test_checkpoint_with_foreign_weight_layout_is_a_layout_error(
    trained: dict,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    from fusion.data.errors import LayoutError

    ckpt = torch.load(trained["checkpoint"], map_location="cpu", weights_only=False)
    key = next(k for k in ckpt["state_dict"] if k.startswith("encoder."))
    ckpt["state_dict"][key] = torch.zeros(3, 3, 3)  # another layout than the config describes
    bad = tmp_path / "foreign.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(LayoutError, match="do not fit the encoder") as info:
        load_pretrained(bad)
    assert info.value.path == str(bad)


def test_resume_continues_from_the_checkpoint(trained: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    last = Path(trained["checkpoint"]).parent / "last.ckpt"
    assert last.exists()
    summary = pretrain(
        _cfg(tmp_path, max_steps=5, name="resumed", resume=str(last)), progress=False
    )
    assert summary["steps"] == 5


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ContrastiveFusion._loss

    def poisoned(self: ContrastiveFusion, views):  # type: ignore[no-untyped-def]
        loss = original(self, views)
        return loss * float("nan") if self.global_step >= 3 else loss

    monkeypatch.setattr(ContrastiveFusion, "_loss", poisoned)
    cfg = _cfg(tmp_path, max_steps=10, name="nan")
    with pytest.raises(NonFiniteLossError, match="step 3"):
        pretrain(cfg, progress=False)
    ckpts = list((tmp_path / "nan" / "checkpoints").glob("*.ckpt"))
    assert ckpts, "no checkpoint was kept"
    kept = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert kept["global_step"] <= 3
    assert all(
        torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point()
    )


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """The same config on 2 CPU processes with DDP (gloo), through the CLI as a user runs it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, "-m", "cli.main", "pretrain", "--out", str(tmp_path), "--name", "ddp",
        "--max-steps", "2", "--batch-size", "8", "--devices", "2", "--accelerator", "cpu",
        "--strategy", "ddp", "--json", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["config"]["devices"] == 2
    assert "world_size=2" in done.stderr or "distributed_backend=gloo" in done.stderr


@pytest.mark.slow
def test_interrupted_run_leaves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    import signal
    import time

    cmd = [
        sys.executable, "-m", "cli.main", "pretrain", "--out", str(tmp_path), "--name", "intr",
        "--max-steps", "1000", "--batch-size", "8", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Wait until training has started (the loggers' folders appear), whatever the machine's load.
    deadline = time.monotonic() + 300
    while not (tmp_path / "intr" / "logs").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(5)  # a few steps
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, _ = proc.communicate(timeout=300)
    ckpt = tmp_path / "intr" / "checkpoints" / "interrupted.ckpt"
    assert ckpt.exists(), out[-2000:]
    assert "resume with --resume" in out
    step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    summary = pretrain(
        _cfg(tmp_path, max_steps=step + 2, name="intr2", resume=str(ckpt), width=64, depth=2,
             heads=4, proj_dim=64, batch_size=8),
        progress=False,
    )  # fmt: skip
    assert summary["steps"] == step + 2


def test_loader_workers_auto_only_on_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusion.pretrain import loader_workers

    assert loader_workers(_cfg(tmp_path, num_workers=3)) == 3  # an explicit count is kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loader_workers(_cfg(tmp_path)) == 0  # CPU: the cores train
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert loader_workers(_cfg(tmp_path, accelerator="gpu")) == 8
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loader_workers(_cfg(tmp_path)) == 8  # auto resolves to the GPU
    assert loader_workers(_cfg(tmp_path, accelerator="cpu")) == 0
    # DDP on one node: each process starts its own workers, so they share the 15 spare cores
    assert loader_workers(_cfg(tmp_path, devices=4)) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert loader_workers(_cfg(tmp_path)) == 0


def test_progress_bar_titles_a_step_bounded_run_by_its_steps() -> None:
    from types import SimpleNamespace

    from fusion.pretrain import StepProgressBar

    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1, max_steps=250)  # type: ignore[assignment]
    assert bar._get_train_description(3) == "Epoch 3 · max 250 steps"  # not "Epoch 3/-2"
    bar._trainer = SimpleNamespace(max_epochs=5, max_steps=-1)  # type: ignore[assignment]
    assert bar._get_train_description(3).startswith("Epoch 3/4")  # epoch-bounded: Lightning's
