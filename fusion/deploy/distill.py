"""Distilling a pretrained fusion teacher into a microcontroller :class:`~fusion.deploy.Student`.

Loss, per sample::

    1 − cos(A · s(x_S), t(x_all))   [+ λ · cross-entropy(h · s(x_S), y) when labels exist]

* ``t(x_all)``: the teacher's embedding of the **full** sample (every sensor it carries),
  computed once;
* ``s(x_S)``: the student's fused embedding of the same sample with only the sensors of ``S``
  switched on: stems of switched-off sensors are not computed (exactly as the C export skips them);
* ``S`` is drawn per sample: first how many sensors are off, uniform over ``0 … n−1``, then which
  ones, uniform; so every subset is seen and the student learns to infer what missing sensors
  would have added to the teacher's view (ModDrop-style);
* ``A``: a linear adapter to the teacher's embedding size when it differs from the student's
  (training only, not exported); ``h``: the task head, trained jointly, exported as the student's
  head (its outputs are class logits).

The **baseline student** has the same architecture and losses but never drops a sensor in
training; at evaluation a switched-off sensor is **zero-filled** (its normalised input is 0, the
band mean, and its stem still runs), the usual behaviour of a model that was not built for
missing inputs.

Both students are then quantised to full int8 with calibration on training samples
(:func:`~fusion.deploy.int8.quantize_student`); the baseline's calibration also sees zero-filled
subsets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.checkpoint import Pretrained, load_pretrained
from fusion.data.collate import collate_samples
from fusion.data.errors import FusionDataError
from fusion.data.normalise import Normaliser
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec, Stream
from fusion.deploy.errors import StudentInputError, TeacherError
from fusion.deploy.int8 import QuantizedStudent, quantize_student
from fusion.deploy.student import DEFAULT_STRIDES, DEFAULT_WIDTHS, Student, StudentConfig
from fusion.deploy.student_io import StudentBundle

__all__ = [
    "DistillConfig",
    "DistillResult",
    "TensorData",
    "distill",
    "distill_checkpoint",
    "load_teacher",
    "quantize_bundle",
    "sample_sensor_subsets",
    "sensor_streams",
    "stream_presence",
    "tensor_data",
]

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# --- teacher -----------------------------------------------------------------------------------


def load_teacher(path: str | Path) -> Pretrained:
    """Load a ``fusion pretrain`` checkpoint as a teacher.

    Raises:
        TeacherError: the file is not a fusion checkpoint, or it carries no sensor metadata
            (specs with normalisation statistics), without which a student cannot know its
            inputs.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
    except Exception as err:  # torch raises many types for a bad file
        raise TeacherError(f"{path}: cannot read the teacher checkpoint: {err}") from err
    if raw is None:
        raise TeacherError(f"{path}: teacher checkpoint does not exist")
    meta = raw.get("fusion") if isinstance(raw, dict) else None
    if not isinstance(meta, dict):
        raise TeacherError(f"{path}: not a fusion checkpoint (no 'fusion' metadata)")
    specs = meta.get("specs")
    if not specs:
        raise TeacherError(
            f"{path}: the checkpoint carries no sensor metadata ('specs' with bands and "
            "normalisation statistics); re-export it with `fusion pretrain`"
        )
    missing = [d.get("name", "?") for d in specs if not isinstance(d, dict) or not d.get("stats")]
    if missing:
        raise TeacherError(
            f"{path}: sensors {missing} carry no normalisation statistics in the checkpoint"
        )
    try:
        return load_pretrained(path)
    except FusionDataError as err:
        raise TeacherError(f"{path}: {err}") from err
    except (KeyError, TypeError, RuntimeError) as err:
        raise TeacherError(f"{path}: cannot build the teacher encoder: {err}") from err


def sensor_streams(specs: Mapping[str, SensorSpec]) -> dict[str, tuple[str, ...]]:
    """Sensor name → its stream keys (spec order), sensors sorted by name."""
    return {name: tuple(s.key for s in specs[name].streams()) for name in sorted(specs)}


# --- data as tensors ---------------------------------------------------------------------------


@dataclass
class TensorData:
    """Normalised stream tensors of a set of samples.

    Args:
        inputs: stream key → ``(N, C, ...)`` float32 (zeros where the sample lacks the stream).
        present: stream key → bool ``(N,)``: the sample carries the stream.
        labels: int64 ``(N,)`` class indices, or ``None``.
        streams: stream key → band metadata.
    """

    inputs: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    labels: torch.Tensor | None
    streams: dict[str, Stream]

    def __len__(self) -> int:
        return int(next(iter(self.present.values())).shape[0])

    def rows(self, idx: torch.Tensor | slice) -> TensorData:
        return TensorData(
            {k: v[idx] for k, v in self.inputs.items()},
            {k: v[idx] for k, v in self.present.items()},
            None if self.labels is None else self.labels[idx],
            self.streams,
        )

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(int(d) for d in v.shape[1:]) for k, v in self.inputs.items()}


def tensor_data(
    samples: Sequence[Sample],
    normaliser: Normaliser,
    *,
    teacher: Pretrained | None = None,
    batch_size: int = 32,
) -> tuple[TensorData, torch.Tensor | None]:
    """Normalise and stack samples (physical values) and, with a teacher, embed each full sample.

    Returns:
        the tensors and the teacher embeddings ``(N, D_teacher)`` (``None`` without a teacher).

    Raises:
        StudentInputError: a stream changes shape or bands between samples.
        IncompatibleDataError: the teacher does not know a stream or band of the data.
    """
    if not samples:
        raise StudentInputError("no sample to distil from")
    streams: dict[str, Stream] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for s in samples:
        for key, stream in s.streams.items():
            shape = tuple(int(d) for d in s.data[key].shape)
            if streams.setdefault(key, stream).band_names != stream.band_names or (
                shapes.setdefault(key, shape) != shape
            ):
                raise StudentInputError(
                    f"stream {key!r} changes bands or shape between samples ({shape} vs "
                    f"{shapes[key]}); a student needs one fixed input shape per stream"
                )
    keys = sorted(streams)
    chunks: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    flags: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    labels: list[Any] = []
    targets: list[torch.Tensor] = []
    for start in range(0, len(samples), batch_size):
        part = [normaliser(s) for s in samples[start : start + batch_size]]
        batch = collate_samples(part)
        n = len(part)
        for k in keys:
            if k in batch.data:
                chunks[k].append(batch.data[k])
                flags[k].append(batch.present[k])
            else:
                chunks[k].append(torch.zeros((n, *shapes[k])))
                flags[k].append(torch.zeros(n, dtype=torch.bool))
        labels.extend(s.label for s in part)
        if teacher is not None:
            targets.append(teacher.embed(batch).float())
    y = None
    if all(lab is not None for lab in labels):
        try:
            y = torch.as_tensor(np.asarray([int(lab) for lab in labels]), dtype=torch.long)
        except (TypeError, ValueError):
            y = None  # multi-label or regression targets: no classification head
    data = TensorData(
        {k: torch.cat(v) for k, v in chunks.items()},
        {k: torch.cat(v) for k, v in flags.items()},
        y,
        {k: streams[k] for k in keys},
    )
    return data, (torch.cat(targets) if targets else None)


# --- sensor-subset sampling ---------------------------------------------------------------------


def sample_sensor_subsets(n_rows: int, n_sensors: int, generator: torch.Generator) -> torch.Tensor:
    """Bool ``(n_rows, n_sensors)``: which sensors are on. Per row, the number switched off is
    uniform over ``0 … n_sensors − 1``, then which ones is uniform among the subsets of that
    size (so at least one sensor stays on)."""
    off = torch.randint(0, n_sensors, (n_rows,), generator=generator)
    ranks = torch.rand(n_rows, n_sensors, generator=generator).argsort(1).argsort(1)
    on: torch.Tensor = ranks >= off[:, None]
    return on


def stream_presence(
    data: TensorData,
    sensors: Mapping[str, Sequence[str]],
    on: torch.Tensor | Sequence[str],
    *,
    zero_fill: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Inputs and present flags with some sensors switched off.

    Args:
        data: the tensors.
        sensors: sensor → stream keys (the column order of ``on``).
        on: bool ``(N, n_sensors)`` per row, or the names of the sensors on for every row.
        zero_fill: keep a switched-off stream "present" but zero (the baseline's behaviour)
            instead of marking it absent.
    """
    names = list(sensors)
    n = len(data)
    if not isinstance(on, torch.Tensor):
        wanted = set(on)
        on = torch.tensor([[name in wanted for name in names]] * n, dtype=torch.bool)
    inputs, present = {}, {}
    for j, name in enumerate(names):
        for key in sensors[name]:
            if key not in data.inputs:
                continue
            flag = on[:, j]
            x = data.inputs[key]
            if zero_fill:
                shape = (-1,) + (1,) * (x.dim() - 1)
                inputs[key] = x * flag.view(shape).to(x.dtype)
                present[key] = data.present[key]
            else:
                inputs[key] = x
                present[key] = data.present[key] & flag
    return inputs, present


def _ensure_one(
    present: dict[str, torch.Tensor], fallback: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rows left with no present stream (the sample lacked every sensor kept) get their own."""
    any_on = torch.stack(list(present.values())).any(0)
    if bool(any_on.all()):
        return present
    return {k: torch.where(any_on, v, fallback[k]) for k, v in present.items()}


# --- training ----------------------------------------------------------------------------------


@dataclass
class DistillConfig:
    """Distillation hyper-parameters (defaults: the synthetic default in about a minute per
    student on 2 CPU cores).

    Args:
        steps: optimiser steps per student.
        batch_size: samples per step.
        lr: peak AdamW learning rate (cosine decay to 5 % after a 5 % warm-up).
        weight_decay: AdamW weight decay.
        task_weight: weight λ of the task cross-entropy (0: embedding only).
        widths, strides: per-block output channels and depthwise strides of every stem.
        seed: seed of weights and subset draws.
        baseline: also train the baseline student (no sensor dropout).
        calibration_rows: training samples used to calibrate int8 ranges.
    """

    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    task_weight: float = 0.5
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    strides: tuple[int, ...] = DEFAULT_STRIDES
    seed: int = 0
    baseline: bool = True
    calibration_rows: int = 128

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["widths"], out["strides"] = list(self.widths), list(self.strides)
        return out


@dataclass
class DistillResult:
    """A trained student (eval mode, task head installed when labels existed) and its losses.

    Args:
        student: the float student.
        cosine: mean ``1 − cos`` per logged step (first to last).
        task: mean cross-entropy per logged step (empty without labels).
        seconds: training time.
    """

    student: Student
    cosine: list[float] = field(default_factory=list)
    task: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _lr_factor(step: int, steps: int) -> float:
    warm = max(1, steps // 20)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t))


def distill(
    data: TensorData,
    targets: torch.Tensor,
    sensors: Mapping[str, Sequence[str]],
    config: DistillConfig | None = None,
    *,
    sensor_dropout: bool = True,
    n_classes: int | None = None,
    log: Log = _quiet,
    log_every: int = 50,
) -> DistillResult:
    """Train one student against fixed teacher embeddings (see the module docstring).

    Args:
        data: normalised training tensors (labels used when ``n_classes`` is given).
        targets: the teacher's embeddings of the full samples, ``(N, D_teacher)``.
        sensors: sensor → stream keys; subsets are drawn over these sensors.
        config: hyper-parameters.
        sensor_dropout: draw a sensor subset per sample (``False``: the baseline student).
        n_classes: train a task head with this many classes (needs ``data.labels``).
        log: receives one progress line every ``log_every`` steps.
    """
    cfg = config or DistillConfig()
    if len(targets) != len(data):
        raise StudentInputError(f"{len(targets)} teacher embeddings for {len(data)} samples")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    student = Student.from_streams(data.streams, widths=cfg.widths, strides=cfg.strides)
    dim, t_dim = student.cfg.dim, int(targets.shape[1])
    adapter: nn.Module = nn.Linear(dim, t_dim) if dim != t_dim else nn.Identity()
    use_task = n_classes is not None and data.labels is not None and cfg.task_weight > 0
    head = nn.Linear(dim, n_classes) if use_task and n_classes is not None else None
    params = [*student.parameters(), *adapter.parameters()]
    if head is not None:
        params += list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg.steps))
    target_n = F.normalize(targets.float(), dim=1)
    names = list(sensors)
    n = len(data)
    result = DistillResult(student)
    cos_acc: list[float] = []
    task_acc: list[float] = []
    start = time.perf_counter()
    student.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        part = data.rows(idx)
        if sensor_dropout and len(names) > 1:
            on = sample_sensor_subsets(len(idx), len(names), gen)
            inputs, present = stream_presence(part, sensors, on)
            present = _ensure_one(present, part.present)
        else:
            inputs, present = part.inputs, part.present
        fused = student.forward_tensors(inputs, present)
        cos = 1.0 - F.cosine_similarity(adapter(fused), target_n[idx], dim=1).mean()
        loss = cos
        if head is not None and part.labels is not None:
            ce = F.cross_entropy(head(fused), part.labels)
            loss = loss + cfg.task_weight * ce
            task_acc.append(float(ce.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        cos_acc.append(float(cos.detach()))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            result.cosine.append(float(np.mean(cos_acc)))
            if task_acc:
                result.task.append(float(np.mean(task_acc)))
            log(
                f"step {step + 1}/{cfg.steps}: cosine loss {result.cosine[-1]:.4f}"
                + (f", task CE {result.task[-1]:.4f}" if task_acc else "")
            )
            cos_acc, task_acc = [], []
    result.seconds = time.perf_counter() - start
    if head is not None:
        final = Student(
            StudentConfig(
                student.cfg.stems,
                head_dim=n_classes,
                batchnorm=student.cfg.batchnorm,
                extra=student.cfg.extra,
            )
        )
        state = dict(student.state_dict())
        state.update({f"head.{k}": v for k, v in head.state_dict().items()})
        final.load_state_dict(state)
        student = final
    result.student = student.eval()
    return result


def _subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(names) + 1) for c in combinations(names, r)]


def calibration_pairs(
    data: TensorData,
    sensors: Mapping[str, Sequence[str]],
    rows: int,
    *,
    zero_fill_subsets: bool = False,
    batch_size: int = 64,
) -> list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Calibration batches: the first ``rows`` samples with every sensor on and, for a student
    evaluated with zero-filled sensors, the same rows under every zero-filled subset."""
    part = data.rows(slice(0, min(rows, len(data))))
    pairs = []
    subsets = _subsets(list(sensors)) if zero_fill_subsets else [tuple(sensors)]
    for subset in subsets:
        inputs, present = stream_presence(part, sensors, subset, zero_fill=zero_fill_subsets)
        for s in range(0, len(part), batch_size):
            pairs.append(
                (
                    {k: v[s : s + batch_size] for k, v in inputs.items()},
                    {k: v[s : s + batch_size] for k, v in present.items()},
                )
            )
    return pairs


def quantize_bundle(
    student: Student,
    data: TensorData,
    sensors: Mapping[str, Sequence[str]],
    rows: int = 128,
    *,
    zero_fill: bool = False,
) -> QuantizedStudent:
    """Full-int8 quantisation calibrated on ``rows`` training samples (and, for a zero-filling
    baseline, on every zero-filled sensor subset of them)."""
    pairs = calibration_pairs(data, sensors, rows, zero_fill_subsets=zero_fill)
    return quantize_student(student, pairs, input_shapes=data.shapes)


# --- the whole pipeline --------------------------------------------------------------------------


def _training_samples(source: str | Path) -> tuple[list[Sample], str, str | None, Any]:
    """Training samples (physical values) of a source: the labelled train split when the source
    has labels, else the pretraining train split (unlabelled)."""
    from fusion.data.labelled import load_labelled

    try:
        labelled = load_labelled(source)
    except FusionDataError:
        from fusion.data.datasets import Transformed, build_datasets

        bundle = build_datasets(source)
        base = bundle.train.base if isinstance(bundle.train, Transformed) else bundle.train
        n = len(base)  # type: ignore[arg-type]
        return [base[i] for i in range(n)], bundle.description, None, None
    train = [labelled.train[i] for i in range(len(labelled.train))]  # type: ignore[arg-type]
    return train, labelled.description, labelled.task, labelled.class_names


def distill_checkpoint(
    teacher_path: str | Path,
    data: str | Path | None = None,
    config: DistillConfig | None = None,
    *,
    budget: Any = None,
    log: Log = _quiet,
) -> StudentBundle:
    """Teacher checkpoint → distilled student, baseline student and their int8 forms.

    Args:
        teacher_path: a ``fusion pretrain`` checkpoint.
        data: the data source (default: the one the teacher was pretrained on). Its labelled
            training split (when it has labels) trains the students; labels, when they are
            class indices, train the task head.
        config: hyper-parameters.
        budget: a :class:`~fusion.deploy.budget.Target`: the widest stems that fit it are chosen
            before training (see :func:`~fusion.deploy.budget.fit_widths`).
        log: progress lines.

    Raises:
        TeacherError: the checkpoint is not a teacher (no sensor metadata).
        IncompatibleDataError: the data carries streams or bands the teacher does not know.
        BudgetExceededError: no width fits ``budget``.
    """
    cfg = config or DistillConfig()
    teacher = load_teacher(teacher_path)
    source = data if data is not None else teacher.meta.get("pretrain", {}).get("data")
    if source is None:
        raise TeacherError(f"{teacher_path}: no --data given and the teacher names none")
    log(f"loading {source}")
    samples, description, task, class_names = _training_samples(source)
    for s in samples[:1]:
        teacher.check(s)
    specs = {
        k: teacher.specs[k]
        for k in sorted({st.sensor for s in samples for st in s.streams.values()})
    }
    log(f"embedding {len(samples)} samples with the teacher")
    tensors, targets = tensor_data(samples, Normaliser(teacher.specs), teacher=teacher)
    assert targets is not None
    sensors = {
        name: tuple(k for k in keys if k in tensors.inputs)
        for name, keys in sensor_streams(specs).items()
    }
    n_classes = len(class_names) if task == "classification" and class_names else None
    if n_classes is not None and tensors.labels is None:
        n_classes = None
    if budget is not None:
        from fusion.deploy.budget import fit_widths

        widths, strides = fit_widths(
            tensors.streams, tensors.shapes, budget, cfg.widths, cfg.strides, head_dim=n_classes
        )
        if widths != cfg.widths:
            log(f"budget {budget.name}: stem widths {list(widths)}")
        cfg = DistillConfig(**{**asdict(cfg), "widths": widths, "strides": strides})
    log(f"distilling the student ({cfg.steps} steps, sensor-subset sampling)")
    main = distill(tensors, targets, sensors, cfg, n_classes=n_classes, log=log)
    log("quantising the student to int8")
    q = quantize_bundle(main.student, tensors, sensors, cfg.calibration_rows)
    baseline = baseline_q = None
    meta: dict[str, Any] = {}
    if cfg.baseline:
        log(f"training the baseline student ({cfg.steps} steps, no sensor dropout)")
        base = distill(
            tensors, targets, sensors, cfg, sensor_dropout=False, n_classes=n_classes, log=log
        )
        baseline = base.student
        baseline_q = quantize_bundle(
            baseline, tensors, sensors, cfg.calibration_rows, zero_fill=True
        )
        meta["baseline_losses"] = {"cosine": base.cosine, "task": base.task}
        meta["baseline_seconds"] = round(base.seconds, 1)
    from fusion import __version__

    meta.update(
        {
            "toolkit_version": __version__,
            "teacher": str(Path(teacher_path)),
            "teacher_dim": int(targets.shape[1]),
            "data": str(source),
            "data_description": description,
            "train_samples": len(tensors),
            "steps": cfg.steps,
            "distill": cfg.to_dict(),
            "task": task if n_classes is not None else None,
            "class_names": list(class_names) if n_classes is not None and class_names else None,
            "losses": {"cosine": main.cosine, "task": main.task},
            "seconds": round(main.seconds, 1),
            "budget": None if budget is None else budget.name,
            "baseline_note": "same architecture, trained without sensor dropout; switched-off "
            "sensors are zero-filled at evaluation",
        }
    )
    return StudentBundle(
        student=main.student,
        quantized=q,
        specs={k: teacher.specs[k] for k in specs},
        input_shapes=tensors.shapes,
        meta=meta,
        baseline=baseline,
        baseline_quantized=baseline_q,
    )
