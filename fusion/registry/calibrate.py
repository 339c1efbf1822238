"""Per-site calibration: adapt a shared student to one site's labelled data by changing only
what is cheap and safe, and measure it on the site's held-out data.

What can be adapted (``adapt``), in the order it is applied:

* ``"stats"`` — the normalisation statistics (per-band mean and std of the site's training
  data, physical values). Nothing learned changes: a sensor mounted with another gain or offset
  is brought back to the range the student was trained on.
* ``"bn"`` — BatchNorm running statistics re-estimated on the site's data (AdaBN); the weights
  stay.
* ``"last-block"`` — the last depthwise-separable block of every stem and the head, fine-tuned
  with a small learning rate (BatchNorm frozen), for sites with more data.
* ``"head"`` — the linear task head, refitted on the frozen fused embeddings with cross-entropy
  plus an L2 pull towards the general model's head (``anchor``), with the same sensor-subset
  sampling as distillation so the head stays good when sensors are switched off.

The architecture and the class list never change, so the calibrated student fits the same
microcontroller budget and C interface; its int8 form is re-quantised with the site's data.

Measured on the site's **test** split (never used to calibrate): the general model (its own
statistics), the general model with only the statistics adapted, and the calibrated model —
each float and int8, with every sensor and averaged over every sensor subset.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.data.errors import FusionDataError
from fusion.data.normalise import Normaliser, compute_stats
from fusion.data.sample import Sample
from fusion.data.specs import NormStats, SensorSpec
from fusion.deploy.degradation import evaluate_subsets
from fusion.deploy.distill import (
    TensorData,
    quantize_bundle,
    sample_sensor_subsets,
    stream_presence,
    tensor_data,
)
from fusion.deploy.errors import DeployError
from fusion.deploy.int8 import QuantizedStudent
from fusion.deploy.student import SeparableBlock, Stem, Student
from fusion.deploy.student_io import StudentBundle
from fusion.registry.errors import CalibrationError, SiteDataError

__all__ = [
    "ADAPTABLE",
    "CalibrationConfig",
    "CalibrationResult",
    "SiteData",
    "calibrate",
    "load_site_data",
]

#: The parts :func:`calibrate` may adapt, in the order they are applied.
ADAPTABLE = ("stats", "bn", "last-block", "head")


@dataclass(frozen=True)
class CalibrationConfig:
    """What to adapt and how hard.

    Args:
        adapt: parts to adapt (see :data:`ADAPTABLE` and the module docstring).
        head_steps: full-batch Adam steps of the head refit.
        head_lr: learning rate of the head refit.
        anchor: weight of the L2 pull of the head towards the general model's head.
        block_steps: Adam steps of the last-block fine-tuning.
        block_lr: learning rate of the last-block fine-tuning.
        batch_size: samples per last-block step.
        calibration_rows: site training samples that calibrate the int8 ranges.
        min_samples: fewest site training samples accepted.
        seed: seed of subset draws and batches.
    """

    adapt: tuple[str, ...] = ("stats", "head")
    head_steps: int = 300
    head_lr: float = 0.01
    anchor: float = 0.01
    block_steps: int = 100
    block_lr: float = 1e-3
    batch_size: int = 32
    calibration_rows: int = 128
    min_samples: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [a for a in self.adapt if a not in ADAPTABLE]
        if unknown or not self.adapt:
            raise CalibrationError(
                f"cannot adapt {unknown or 'nothing'}; choose from {', '.join(ADAPTABLE)}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adapt"] = [a for a in ADAPTABLE if a in self.adapt]
        return out


@dataclass
class SiteData:
    """One site's labelled samples (physical values) split into train and held-out test."""

    site: str
    source: str
    train: list[Sample]
    test: list[Sample]
    specs: dict[str, SensorSpec]
    class_names: tuple[str, ...]
    description: str


def load_site_data(source: str | Path, site: str) -> SiteData:
    """Read a site's labelled data (any layout of :func:`fusion.data.labelled.load_labelled`:
    a UEA ``*_TRAIN.ts`` with its ``_TEST`` sibling, a folder of band GeoTIFFs with labels …).

    Raises:
        SiteDataError: the path is missing or unreadable, the data is unlabelled or not a
            classification task (the message names the site and the path).
    """
    from fusion.data.labelled import load_labelled

    if not Path(source).exists():
        raise SiteDataError(f"site {site!r} has no data: {source} does not exist")
    try:
        labelled = load_labelled(source)
    except FusionDataError as err:
        raise SiteDataError(f"site {site!r}: cannot read labelled data at {source}: {err}") from err
    if labelled.task != "classification" or not labelled.class_names:
        raise SiteDataError(
            f"site {site!r}: {source} holds {labelled.task} labels; calibration needs classes"
        )
    train = [labelled.train[i] for i in range(len(labelled.train))]  # type: ignore[arg-type]
    test = [labelled.test[i] for i in range(len(labelled.test))]  # type: ignore[arg-type]
    return SiteData(
        site, str(source), train, test, labelled.specs, labelled.class_names, labelled.description
    )


@dataclass
class CalibrationResult:
    """The calibrated student and what was measured.

    Args:
        bundle: the calibrated student (site statistics, adapted parts, re-quantised; no
            baseline student).
        report: site, config, data, and per model (``general``, ``stats_only``,
            ``calibrated``) the held-out accuracies.
    """

    bundle: StudentBundle
    report: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        r = self.report
        out = [
            f"site {r['site']}: {r['data']['description']}",
            f"adapted: {', '.join(r['config']['adapt'])}; held-out site test: "
            f"{r['data']['test']} samples",
            f"{'model':<12} {'all float':>9} {'all int8':>9} {'subsets f':>10} {'subsets q':>10}",
        ]
        for name in ("general", "stats_only", "calibrated"):
            s = r["scores"][name]
            a, m = s["all_sensors"], s["mean_over_subsets"]
            out.append(
                f"{name:<12} {a['float']:>9.3f} {a['int8']:>9.3f} {m['float']:>10.3f} "
                f"{m['int8']:>10.3f}"
            )
        gain = r["gain_int8_points"]
        out.append(f"calibrated vs general (int8, all sensors): {gain:+.1f} points")
        out.extend(f"warning: {w}" for w in r["warnings"])
        return out


# --- scoring ------------------------------------------------------------------------------------


def _present_sensors(
    bundle_sensors: Mapping[str, Sequence[str]], data: TensorData
) -> dict[str, tuple[str, ...]]:
    sensors = {n: tuple(k for k in keys if k in data.inputs) for n, keys in bundle_sensors.items()}
    return {n: keys for n, keys in sensors.items() if keys}


def _scores(
    student: Student,
    q: QuantizedStudent,
    specs: Mapping[str, SensorSpec],
    samples: Sequence[Sample],
    sensors: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    data, _ = tensor_data(samples, Normaliser(specs))
    rows = evaluate_subsets(student, q, data, _present_sensors(sensors, data))
    return {
        "all_sensors": {"float": rows[0].acc_float, "int8": rows[0].acc_int8},
        "mean_over_subsets": {
            "float": float(np.mean([r.acc_float for r in rows])),
            "int8": float(np.mean([r.acc_int8 or 0.0 for r in rows])),
        },
        "subsets": [r.to_dict() for r in rows],
    }


# --- the adaptable parts ------------------------------------------------------------------------


def site_specs(base: Mapping[str, SensorSpec], samples: Sequence[Sample]) -> dict[str, SensorSpec]:
    """The base specs with statistics of the site's samples (bands the site never saw keep the
    base statistics)."""
    fresh = compute_stats(samples, base)
    out = {}
    for name, spec in base.items():
        new, old = fresh[name].stats, spec.stats
        assert new is not None
        if old is None:
            out[name] = fresh[name]
            continue
        keep = [c == 0 for c in new.count]
        out[name] = spec.with_stats(
            NormStats(
                tuple(o if k else n for n, o, k in zip(new.mean, old.mean, keep, strict=True)),
                tuple(o if k else n for n, o, k in zip(new.std, old.std, keep, strict=True)),
                tuple(int(c) for c in new.count),
            )
        )
    return out


def _batchnorms(student: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def adapt_batchnorm(student: Student, data: TensorData, batch_size: int = 64) -> int:
    """Re-estimate every BatchNorm's running statistics on ``data`` (cumulative average, every
    sensor on); return how many layers were adapted."""
    norms = _batchnorms(student)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every site sample weighs the same
    student.train()
    with torch.no_grad():
        for s in range(0, len(data), batch_size):
            part = data.rows(slice(s, s + batch_size))
            student.forward_tensors(part.inputs, part.present)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    student.eval()
    return len(norms)


def _subset_rows(
    data: TensorData, sensors: Mapping[str, Sequence[str]], gen: torch.Generator
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every row with every sensor on, plus every row again with a random sensor subset on."""
    n, names = len(data), list(sensors)
    full_on = torch.ones(n, len(names), dtype=torch.bool)
    on = (
        torch.cat([full_on, sample_sensor_subsets(n, len(names), gen)])
        if len(names) > 1
        else full_on
    )
    both = data.rows(torch.cat([torch.arange(n)] * (len(on) // n)))
    inputs, present = stream_presence(both, sensors, on)
    # A row whose kept sensors the sample lacks falls back to the streams it has.
    any_on = torch.stack(list(present.values())).any(0)
    present = {k: torch.where(any_on, v, both.present[k]) for k, v in present.items()}
    return inputs, present


def fit_head(
    student: Student,
    data: TensorData,
    sensors: Mapping[str, Sequence[str]],
    config: CalibrationConfig,
) -> list[float]:
    """Refit the task head on frozen fused embeddings (see the module docstring); return the
    loss every 50 steps."""
    head = student.head
    assert head is not None and data.labels is not None
    gen = torch.Generator().manual_seed(config.seed)
    inputs, present = _subset_rows(data, sensors, gen)
    labels = torch.cat([data.labels] * (len(next(iter(present.values()))) // len(data)))
    student.eval()
    with torch.no_grad():  # the stems are frozen: embed once
        fused = _fused_without_head(student, inputs, present)
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    opt = torch.optim.Adam(head.parameters(), lr=config.head_lr)
    losses = []
    for step in range(config.head_steps):
        ce = F.cross_entropy(head(fused), labels)
        pull = (head.weight - w0).pow(2).sum() + (head.bias - b0).pow(2).sum()
        loss = ce + config.anchor * pull
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if step % 50 == 0 or step + 1 == config.head_steps:
            losses.append(float(ce.detach()))
    return losses


def _fused_without_head(
    student: Student, inputs: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    head, student.head = student.head, None
    try:
        return student.forward_tensors(inputs, present)
    finally:
        student.head = head


def tune_last_blocks(
    student: Student,
    data: TensorData,
    sensors: Mapping[str, Sequence[str]],
    config: CalibrationConfig,
) -> list[float]:
    """Fine-tune the last block of every stem and the head (BatchNorm frozen in eval mode);
    return the loss every 25 steps."""
    assert data.labels is not None
    params: list[nn.Parameter] = []
    for stem in student.stems:
        assert isinstance(stem, Stem)
        last = stem.blocks[-1]
        assert isinstance(last, SeparableBlock)
        params += [p for name, p in last.named_parameters() if "_bn" not in name]
    if student.head is not None:
        params += list(student.head.parameters())
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.Adam(params, lr=config.block_lr)
    student.eval()  # BatchNorm keeps its statistics: a few site samples would make them noisy
    losses = []
    try:
        for step in range(config.block_steps):
            idx = torch.randint(0, len(data), (min(config.batch_size, len(data)),), generator=gen)
            part = data.rows(idx)
            assert part.labels is not None
            inputs, present = _subset_rows(part, sensors, gen)
            labels = torch.cat([part.labels] * (len(next(iter(present.values()))) // len(part)))
            ce = F.cross_entropy(student.forward_tensors(inputs, present), labels)
            opt.zero_grad(set_to_none=True)
            ce.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if step % 25 == 0 or step + 1 == config.block_steps:
                losses.append(float(ce.detach()))
    finally:
        for p in student.parameters():
            p.requires_grad_(True)
    return losses


# --- the whole calibration ----------------------------------------------------------------------


def _check_site(base: StudentBundle, site: SiteData, config: CalibrationConfig) -> None:
    if base.student.cfg.head_dim is None or base.class_names is None:
        raise CalibrationError(
            "the base student has no task head (it was distilled without labels); calibration "
            "adapts a classifier"
        )
    try:
        base.check_sensors(site.specs)
    except DeployError as err:
        raise SiteDataError(f"site {site.site!r}: {err}") from err
    if tuple(site.class_names) != tuple(base.class_names):
        raise SiteDataError(
            f"site {site.site!r}: the data's classes {list(site.class_names)} are not the base "
            f"model's {list(base.class_names)} (same names, same order)"
        )
    if len(site.train) < config.min_samples or not site.test:
        raise SiteDataError(
            f"site {site.site!r}: {len(site.train)} training and {len(site.test)} test samples; "
            f"calibration needs at least {config.min_samples} and 1"
        )


def calibrate(
    base: StudentBundle, site: SiteData, config: CalibrationConfig | None = None
) -> CalibrationResult:
    """Adapt ``base`` to ``site`` (see the module docstring) and score it on the held-out data.

    Raises:
        CalibrationError: the base student has no task head.
        SiteDataError: the site's sensors, bands, classes, input shapes or sizes do not fit.
    """
    cfg = config or CalibrationConfig()
    _check_site(base, site, cfg)
    sensors = base.sensors
    adapted = site_specs(base.specs, site.train)
    specs = adapted if "stats" in cfg.adapt else dict(base.specs)
    train, _ = tensor_data(site.train, Normaliser(specs))
    if train.shapes != {k: v for k, v in base.input_shapes.items() if k in train.shapes}:
        raise SiteDataError(
            f"site {site.site!r}: input shapes {train.shapes} differ from the student's "
            f"{base.input_shapes} (same window length or chip size needed)"
        )
    if train.labels is None:
        raise SiteDataError(f"site {site.site!r}: the training samples carry no class labels")
    used = _present_sensors(sensors, train)
    rows = cfg.calibration_rows
    torch.manual_seed(cfg.seed)

    general = _scores(base.student, base.quantized, base.specs, site.test, sensors)
    # The statistics-only reference is measured whatever is adapted: it shows what the cheapest
    # step alone buys.
    stats_train = train if "stats" in cfg.adapt else tensor_data(site.train, Normaliser(adapted))[0]
    stats_q = quantize_bundle(base.student, stats_train, used, rows)
    stats_only = _scores(base.student, stats_q, adapted, site.test, sensors)

    student = copy.deepcopy(base.student)
    log: dict[str, Any] = {}
    if "bn" in cfg.adapt:
        log["bn_layers"] = adapt_batchnorm(student, train)
    if "last-block" in cfg.adapt:
        log["last_block_loss"] = tune_last_blocks(student, train, used, cfg)
    if "head" in cfg.adapt:
        log["head_loss"] = fit_head(student, train, used, cfg)
    student.eval()
    q = quantize_bundle(student, train, used, rows)
    calibrated = _scores(student, q, specs, site.test, sensors)

    seen = set(train.labels.tolist())
    absent = [n for i, n in enumerate(base.class_names or ()) if i not in seen]
    warnings = (
        [f"classes absent from the site's training data: {', '.join(absent)}"] if absent else []
    )
    gain = 100 * (calibrated["all_sensors"]["int8"] - general["all_sensors"]["int8"])
    if gain < 0:
        warnings.append("the calibrated model is worse than the general one on the held-out data")
    report = {
        "site": site.site,
        "base": base.meta.get("registry_ref"),
        "config": cfg.to_dict(),
        "data": {
            "source": site.source,
            "description": site.description,
            "train": len(site.train),
            "test": len(site.test),
        },
        "scores": {"general": general, "stats_only": stats_only, "calibrated": calibrated},
        "gain_int8_points": gain,
        "training": log,
        "warnings": warnings,
    }
    meta = {
        **{
            k: v
            for k, v in base.meta.items()
            if not k.startswith("baseline") and k != "registry_ref"
        },
        "data": site.source,
        "data_description": site.description,
        "site": site.site,
        "calibration": {k: report[k] for k in ("base", "config", "gain_int8_points")},
    }
    bundle = StudentBundle(
        student=student,
        quantized=q,
        specs=specs,
        input_shapes=dict(base.input_shapes),
        meta=meta,
    )
    return CalibrationResult(bundle, report)
