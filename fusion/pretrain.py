"""Contrastive sensor-fusion pretraining: a Lightning module and data module.

Two views of each footprint (whole sensors and single channels dropped, the same ground
augmented consistently at every resolution) are embedded by the native-resolution
:class:`~fusion.models.FusionEncoder`, projected by lightly's SimCLR head and pulled together by
lightly's ``NTXentLoss`` (optionally with a memory bank for small batches). Lightning runs it on
one CPU, N GPUs or N nodes (DDP) with the same config.

A checkpoint carries, besides the weights, everything needed to use the encoder on new data:
the sensor specs with band order and normalisation statistics, the encoder config and the
toolkit version (``checkpoint["fusion"]``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightly.loss import NTXentLoss
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from fusion import __version__
from fusion.config import check_keys, read_mapping
from fusion.data.collate import Batch
from fusion.data.datasets import DatasetBundle, build_datasets, describe
from fusion.data.errors import ConfigError
from fusion.data.extra_sources import add_extra_sources
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec, Stream
from fusion.files import atomic_write
from fusion.guide import GuideHead, check_guide, guide_loss, guide_targets, make_guide
from fusion.models import FusionEncoder, early_fusion_baseline, projection_head
from fusion.views import ViewConfig, ViewMaker, collate_views


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; every field is a YAML key and a CLI option.

    Args:
        data: ``"synthetic"`` or a path (band-GeoTIFF folders, a ``*_TRAIN.ts`` file, the
            Presto arrays folder): the primary source, whose validation split, normalisation
            statistics and sensors the checkpoint keeps.
        extra_data: further unlabelled sources whose chips (both splits) join the training
            split, each normalised with its own statistics and conformed to the primary
            sensors (see :mod:`fusion.data.extra_sources`).
        sensor_map: sensor renames for ``extra_data`` (``{"s2_l2a": "s2_l1c"}``).
        out: folder for runs; the run writes ``<out>/<name>/``.
        name: run name.
        chip_m: chip side in metres (rasters).
        seed: seed of data splits, views and weights.
        max_steps: optimiser steps.
        batch_size: footprints per step (two views each).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the cosine decay.
        temperature: NT-Xent temperature.
        memory_bank: negatives kept in lightly's memory bank (0: off).
        guide: a frozen model whose features of each training chip the views also predict
            (``"imagenet-rgb"``, ``"band-stats"``; see :mod:`fusion.guide`), or ``None``. Its
            features are saved in the run folder and reused on resume and by DDP's processes.
        guide_weight: weight of the guide's cosine term beside NT-Xent.
        width: encoder width (token dimension).
        depth: transformer layers of the shared trunk.
        heads: attention heads.
        token_grid: tokens per side of every raster stream (G×G).
        series_tokens: tokens per time-series stream.
        proj_dim: output size of the projection head.
        pixel_channels: channels K of each stem's native-resolution pixel stage (0: patchify each
            band straight to the fusion stride, the version-1 stem).
        views: view settings (sensor/channel dropout, augmentation), see :class:`ViewConfig`.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``.
        devices: devices per node.
        num_nodes: nodes.
        strategy: Lightning strategy (``"auto"``, ``"ddp"``, ``"ddp_spawn"``...).
        num_workers: DataLoader workers, or ``-1`` (the default) for automatic: none when training
            on CPU (the cores train), ``min(8, (cores - 1) // devices)`` per process when GPUs
            train (one process cannot make views as fast as a GPU consumes them; DDP's processes
            share the node's cores). The view curriculum reaches
            workers through shared memory.
        resume: checkpoint to resume from.
        log_every: steps between logged metrics.
        encoder: ``"fusion"`` (native resolution, the toolkit's encoder) or a baseline for
            benchmarks: ``"early_conv"`` (CSF-style: every stream upsampled to the finest grid,
            stacked, a plain conv stem) or ``"early_bandset"`` (stacked, our band-set stem).
    """

    data: str = "synthetic"
    extra_data: list[str] = field(default_factory=list)
    sensor_map: dict[str, str] = field(default_factory=dict)
    out: str = "runs"
    name: str = "pretrain"
    chip_m: float = 640.0
    seed: int = 0
    max_steps: int = 250
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 25
    temperature: float = 0.2
    memory_bank: int = 0
    guide: str | None = None
    guide_weight: float = 1.0
    width: int = 64
    depth: int = 2
    heads: int = 4
    token_grid: int = 4
    series_tokens: int = 8
    proj_dim: int = 64
    pixel_channels: int = 0
    views: dict[str, Any] = field(default_factory=dict)
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = -1
    resume: str | None = None
    log_every: int = 10
    encoder: str = "fusion"

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainConfig:
        """Read a YAML config; unknown keys raise :class:`ConfigError` naming key and file."""
        return cls.from_dict(read_mapping(path), source=path, overrides=overrides)

    @classmethod
    def from_dict(
        cls,
        values: dict[str, Any],
        *,
        source: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> PretrainConfig:
        """Build a config from plain data; ``overrides`` (CLI options, ``None`` = unset) win."""
        merged = {str(k).replace("-", "_"): v for k, v in values.items()}
        check_keys(merged, (f.name for f in dataclasses.fields(cls)), path=source)
        views = merged.get("views", {})
        check_keys(
            views, (f.name for f in dataclasses.fields(ViewConfig)), path=source, what="views"
        )
        merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if merged.get("guide") is not None:  # named before any data is read
            check_guide(merged["guide"], path=source)
        return cls(**merged)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name


class ViewPairs(Dataset[tuple[Any, ...]]):
    """Two views of each Sample of a dataset, and with ``with_index`` the Sample's index (the
    guide's features are looked up by it)."""

    def __init__(
        self, base: Dataset[Sample], maker: ViewMaker, *, with_index: bool = False
    ) -> None:
        self.base = base
        self.maker = maker
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        views = self.maker(self.base[index])
        return (*views, index) if self.with_index else views


def collate_indexed_views(items: list[tuple[Sample, Sample, int]]) -> tuple[Any, ...]:
    """``(first views, second views, sample indices)`` of :class:`ViewPairs` with an index."""
    first, second = collate_views([(a, b) for a, b, _ in items])
    return first, second, torch.tensor([i for _, _, i in items], dtype=torch.long)


def loader_workers(config: PretrainConfig) -> int:
    """DataLoader workers per training process for a config: its ``num_workers``, or for ``-1``
    none on CPU and ``min(8, (cores - 1) // devices)`` when the run trains on GPUs (each of a
    node's DDP processes starts its own workers, so they split the cores)."""
    if config.num_workers >= 0:
        return config.num_workers
    gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    spare = max(0, (os.cpu_count() or 1) - 1) // max(1, config.devices)
    return min(8, spare) if gpu else 0


class FusionDataModule(L.LightningDataModule):
    """Train/val view pairs of a data source, normalised with statistics from the train split."""

    def __init__(self, config: PretrainConfig, bundle: DatasetBundle | None = None) -> None:
        super().__init__()
        self.config = config
        self.bundle = bundle
        self.view_maker = ViewMaker(ViewConfig(**config.views), seed=config.seed)
        self.val_maker = ViewMaker(ViewConfig(**config.views), seed=config.seed + 1)
        # With a guide, training batches carry sample indices (its features are looked up by them)
        self.with_index = bool(config.guide)

    def setup(self, stage: str | None = None) -> None:
        if self.bundle is None:
            self.bundle = add_extra_sources(
                build_datasets(self.config.data, chip_m=self.config.chip_m, seed=self.config.seed),
                self.config.extra_data,
                sensor_map=self.config.sensor_map,
                chip_m=self.config.chip_m,
                seed=self.config.seed,
            )

    def _loader(self, ds: Dataset[Sample], maker: ViewMaker, shuffle: bool) -> DataLoader[Any]:
        n = len(ds)  # type: ignore[arg-type]
        workers = loader_workers(self.config)
        indexed = shuffle and self.with_index
        return DataLoader(
            ViewPairs(ds, maker, with_index=indexed),
            batch_size=min(self.config.batch_size, n),
            shuffle=shuffle,
            drop_last=shuffle and n > self.config.batch_size,
            collate_fn=collate_indexed_views if indexed else collate_views,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=workers > 0,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, idx: int) -> Any:
        return tuple(b.to(device) for b in batch)

    def train_dataloader(self) -> DataLoader[Any]:
        assert self.bundle is not None
        return self._loader(self.bundle.train, self.view_maker, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        assert self.bundle is not None
        return self._loader(self.bundle.val, self.val_maker, shuffle=False)


def streams_of(specs: dict[str, SensorSpec]) -> dict[str, Stream]:
    """Every stream of every sensor, by key."""
    return {s.key: s for spec in specs.values() for s in spec.streams()}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class ContrastiveFusion(L.LightningModule):
    """The encoder, its projection head and the NT-Xent objective (plus the guide's term).

    Args:
        config: the run config (hyper-parameters are saved with the checkpoint).
        specs: sensor specs with normalisation statistics (saved with the checkpoint).
        guide_features: ``(N, G)`` the guide's features of the training chips
            (:func:`fusion.guide.guide_targets`); training batches then carry sample indices.
    """

    def __init__(
        self,
        config: PretrainConfig,
        specs: dict[str, SensorSpec],
        guide_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.specs = specs
        self.encoder = build_encoder(config, streams_of(specs))
        self.head = projection_head(config.width, 2 * config.width, config.proj_dim)
        self.guide_head: GuideHead | None = None
        if guide_features is not None:
            self.guide_head = GuideHead(config.width, guide_features.shape[1])
            # Not saved: recomputed from the data on resume (deterministic, and as large as the
            # training set).
            self.register_buffer("guide_features", guide_features, persistent=False)
        bank = (config.memory_bank, config.proj_dim) if config.memory_bank > 0 else 0
        self.criterion = NTXentLoss(
            temperature=config.temperature, memory_bank_size=bank, gather_distributed=True
        )
        self._t0 = time.perf_counter()
        self._seen = 0

    def forward(self, batch: Batch) -> torch.Tensor:
        out: torch.Tensor = self.encoder(batch)
        return out

    def _loss(self, views: tuple[Any, ...]) -> torch.Tensor:
        """NT-Xent between the two views, plus (when the batch carries sample indices) the
        weighted guide term, logged on its own."""
        e1, e2 = self.encoder(views[0]), self.encoder(views[1])
        loss: torch.Tensor = self.criterion(self.head(e1), self.head(e2))
        if self.guide_head is not None and len(views) == 3:
            features: torch.Tensor = self.guide_features  # type: ignore[assignment]
            target = features[views[2]]
            guided = (
                guide_loss(self.guide_head(e1), target) + guide_loss(self.guide_head(e2), target)
            ) / 2
            self.log("train/guide_loss", guided, batch_size=len(views[0]))
            loss = loss + self.config.guide_weight * guided
        return loss

    def training_step(self, views: tuple[Any, ...], batch_idx: int) -> torch.Tensor:
        loss = self._loss(views)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.global_step}; the run stopped and the "
                f"last good checkpoint is in {self.config.run_dir / 'checkpoints'} (try a lower "
                f"lr than {self.config.lr})"
            )
        self._seen += len(views[0])
        rate = self._seen / max(time.perf_counter() - self._t0, 1e-9)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(views[0]))
        self.log("train/samples_per_s", rate, prog_bar=True, batch_size=len(views[0]))
        return loss

    def validation_step(self, views: tuple[Batch, Batch], batch_idx: int) -> None:
        self.log("val/loss", self._loss(views), prog_bar=True, batch_size=len(views[0]))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        warm, total = self.config.warmup_steps, max(self.config.max_steps, 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / max(warm, 1)
            progress = min((step - warm) / max(total - warm, 1), 1.0)
            return 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fusion"] = checkpoint_metadata(self.config, self.specs, self.encoder)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("fusion")
        if (
            meta is not None
            and meta["encoder"]
            != checkpoint_metadata(self.config, self.specs, self.encoder)["encoder"]
        ):
            raise ConfigError(
                "checkpoint encoder differs from this config (width, depth, streams); resume with "
                "the config it was trained with"
            )


def build_encoder(config: PretrainConfig, streams: dict[str, Stream]) -> torch.nn.Module:
    """The encoder a config asks for (the fusion encoder, or a baseline for benchmarks)."""
    kwargs: dict[str, Any] = {
        "width": config.width,
        "depth": config.depth,
        "heads": config.heads,
        "token_grid": config.token_grid,
        "series_tokens": config.series_tokens,
        "pixel_channels": config.pixel_channels,
    }
    if config.encoder == "fusion":
        return FusionEncoder(streams, **kwargs)
    if config.encoder in ("early_conv", "early_bandset"):
        return early_fusion_baseline(streams, stem=config.encoder.split("_")[1], **kwargs)
    raise ConfigError(
        f"unknown encoder {config.encoder!r}; expected 'fusion', 'early_conv' or 'early_bandset'"
    )


def checkpoint_metadata(
    config: PretrainConfig, specs: dict[str, SensorSpec], encoder: torch.nn.Module
) -> dict[str, Any]:
    """What travels with the weights: specs (bands, order, normalisation), encoder, version."""
    described = (
        encoder.config()
        if isinstance(encoder, FusionEncoder)
        else {"model": type(encoder).__name__, "baseline": config.encoder}
    )
    return {
        "version": __version__,
        "specs": [s.to_dict() for s in specs.values()],
        "encoder": described,
        "pretrain": asdict(config),
    }


class CurriculumCallback(Callback):
    """Ramps the view drop rates with training progress (CSF ramped channel drop to 0.66)."""

    def __init__(self, maker: ViewMaker, max_steps: int) -> None:
        self.maker = maker
        self.max_steps = max(max_steps, 1)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.maker.set_progress(trainer.global_step / self.max_steps)


class SaveOnInterrupt(Callback):
    """Writes ``interrupted.ckpt`` when a run is stopped (Ctrl-C) so it can be resumed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(
        self, trainer: L.Trainer, module: L.LightningModule, err: BaseException
    ) -> None:
        if isinstance(err, KeyboardInterrupt):
            trainer.save_checkpoint(self.path)
            rank_zero_info(
                f"interrupted at step {trainer.global_step}; resume with --resume {self.path}"
            )


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, titled by the run's step budget: a run bounded by
    ``max_steps`` has no epoch limit (Lightning sets ``max_epochs = -1``), which the stock bar
    printed as "Epoch 0/-2"."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        return f"Epoch {current_epoch} · max {trainer.max_steps} steps"  # set once per epoch


def check_memory_bank(config: PretrainConfig, n_train: int) -> None:
    """Refuse a memory bank that holds every training sample.

    lightly's bank keeps the embeddings of the last ``memory_bank`` samples as extra negatives,
    whoever they were. Once it spans an epoch, every sample meets its own earlier embedding as a
    negative and the loss pushes each sample away from itself: on EuroSAT-MS (217 images, bank
    512, 600 steps) held-out 10-NN accuracy fell to 0.44 against 0.70 without a bank. A smaller
    bank still holds a sample's own earlier embedding for about ``memory_bank / n_train`` of the
    samples; above a tenth that gets a warning.

    Raises:
        ConfigError: ``memory_bank`` is at least the number of training samples.
    """
    bank = config.memory_bank
    if bank <= 0:
        return
    if bank >= n_train:
        raise ConfigError(
            f"memory_bank {bank} >= {n_train} training samples in {config.data!r}: every sample "
            "would meet its own earlier embedding as a negative; use memory_bank: 0 (or a bank "
            f"well below {n_train}, e.g. {max(n_train // 10, 0)})"
        )
    if bank > n_train // 10:
        warnings.warn(
            f"memory_bank {bank} is more than a tenth of the {n_train} training samples: about "
            f"{100 * bank / n_train:.0f}% of the samples will meet their own earlier embedding "
            "as a negative",
            stacklevel=2,
        )


GUIDE_FEATURES = "guide_features.pt"


def _guide_key(config: PretrainConfig, n_train: int) -> dict[str, Any]:
    """What the guide's features depend on: a saved table is reused only when all of it matches."""
    return {
        "guide": config.guide,
        "data": str(config.data),
        "extra_data": [str(p) for p in config.extra_data],
        "sensor_map": dict(config.sensor_map),
        "chip_m": config.chip_m,
        "seed": config.seed,
        "train_chips": n_train,
        "version": __version__,
    }


def saved_guide_features(config: PretrainConfig, n_train: int) -> torch.Tensor | None:
    """The guide's features saved in the run folder by an earlier start of this run (a resumed
    run, or DDP's first process for the others), or ``None`` when there are none for this data."""
    path = config.run_dir / GUIDE_FEATURES
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None  # a damaged table is computed again
    if not isinstance(saved, dict) or saved.get("key") != _guide_key(config, n_train):
        return None  # the key holds the chip count: the table has a row per training chip
    features: torch.Tensor = saved["features"]
    return features


def save_guide_features(config: PretrainConfig, features: torch.Tensor) -> None:
    """Write the guide's features to the run folder (temporary file, then rename)."""
    key = _guide_key(config, features.shape[0])
    atomic_write(
        config.run_dir / GUIDE_FEATURES,
        lambda fh: torch.save({"key": key, "features": features}, fh),
        mode="wb",
    )


def pretrain(config: PretrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run pretraining; returns a JSON-ready summary (also written to ``run_dir/summary.json``)."""
    # Lightning's own deprecation notice about torch's pytree API: not ours to fix, only noise.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = FusionDataModule(config)
    data.setup()
    assert data.bundle is not None
    n_train = len(data.bundle.train)  # type: ignore[arg-type]
    check_memory_bank(config, n_train)
    # The guide's features are computed once per run: a resumed run and DDP's other processes
    # (started by the first one in trainer.fit, after it saved them) read them back.
    features = saved_guide_features(config, n_train) if config.guide else None
    computed: torch.Tensor | None = None
    if config.guide and features is None:
        guide = make_guide(config.guide, data.bundle.specs)
        features = computed = guide_targets(
            guide, data.bundle.train, data.bundle.specs, progress=progress
        )
    run = config.run_dir  # created once the data is known good: bad input leaves no empty run
    run.mkdir(parents=True, exist_ok=True)
    if computed is not None:
        save_guide_features(config, computed)
    module = ContrastiveFusion(config, data.bundle.specs, features)
    ckpt = ModelCheckpoint(
        dirpath=run / "checkpoints",
        filename="step{step}",
        save_last=True,
        every_n_train_steps=max(config.max_steps // 5, 1),
        save_top_k=1,
        monitor=None,
        auto_insert_metric_name=False,
    )
    strategy: Any = config.strategy
    if strategy in ("ddp", "ddp_spawn"):
        # A stream absent from a whole batch leaves its stem without gradient on that rank.
        strategy = DDPStrategy(
            find_unused_parameters=True,
            start_method="spawn" if strategy == "ddp_spawn" else "popen",
        )
    trainer = L.Trainer(
        max_steps=config.max_steps,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=strategy,
        logger=[CSVLogger(run, name="logs"), TensorBoardLogger(run, name="tb")],
        callbacks=[
            ckpt,
            CurriculumCallback(data.view_maker, config.max_steps),
            SaveOnInterrupt(run / "checkpoints" / "interrupted.ckpt"),
            *([StepProgressBar()] if progress else []),
        ],
        log_every_n_steps=config.log_every,
        val_check_interval=max(min(config.max_steps // 2, 100), 1),
        check_val_every_n_epoch=None,
        limit_val_batches=4,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=False,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=config.resume)
    elapsed = time.perf_counter() - t0
    final = run / "checkpoints" / "final.ckpt"
    trainer.save_checkpoint(final)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    summary = {
        "checkpoint": str(final),
        "steps": trainer.global_step,
        "seconds": round(elapsed, 1),
        "samples_per_s": round(trainer.global_step * config.batch_size / max(elapsed, 1e-9), 1),
        "metrics": metrics,
        "data": describe(data.bundle),
        "config": asdict(config),
    }
    if trainer.is_global_zero:
        tmp = run / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=str))
        tmp.replace(run / "summary.json")
    return summary
