"""`Student`: a microcontroller-sized fusion model (per-stream depthwise-separable stems, mean
fusion over the streams that are present, optional linear head).

Architecture, per stream (``Conv1d`` for time series ``(B, C, T)``, ``Conv2d`` for rasters
``(B, C, H, W)``)::

    [depthwise conv k3 stride s (pad 1) → BN → ReLU → pointwise 1×1 conv → BN → ReLU] × depth
    → global average pool → D-dim vector

Fusion is the mean of the vectors of the streams *present* in each sample: a missing stream is not
computed and contributes nothing. An optional linear head maps the fused vector to an embedding or
to task logits. BatchNorm is for training only: :meth:`Student.folded` folds it into the convs, so
the exported graph holds convolutions, ReLU, average pooling, the mean and a linear layer only.

Inputs are the *normalised* stream tensors (see :class:`fusion.data.normalise.Normaliser`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from fusion.data.collate import Batch
from fusion.data.specs import SensorSpec, Stream
from fusion.deploy.errors import StudentConfigError, StudentInputError

__all__ = [
    "DEFAULT_STRIDES",
    "DEFAULT_WIDTHS",
    "FoldedConv",
    "StemConfig",
    "Student",
    "StudentConfig",
]

StreamKind = Literal["raster", "timeseries"]

#: Output channels of each depthwise-separable block (the last one is the embedding size D).
DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64, 64)
#: Stride of each block's depthwise conv.
DEFAULT_STRIDES: tuple[int, ...] = (2, 2, 2, 1)


@dataclass(frozen=True)
class StemConfig:
    """One stream's stem.

    Args:
        key: the stream key (as in :class:`~fusion.data.sample.Sample` mappings).
        kind: ``"raster"`` (``Conv2d`` on ``(B, C, H, W)``) or ``"timeseries"`` (``Conv1d`` on
            ``(B, C, T)``).
        bands: the band names, in input channel order.
        widths: output channels of each block; the last is the embedding size shared by all
            stems.
        strides: depthwise stride of each block (as many as ``widths``).
    """

    key: str
    kind: StreamKind
    bands: tuple[str, ...]
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    strides: tuple[int, ...] = DEFAULT_STRIDES

    def __post_init__(self) -> None:
        if self.kind not in ("raster", "timeseries"):
            raise StudentConfigError(f"stem {self.key!r}: unknown kind {self.kind!r}")
        if not self.bands:
            raise StudentConfigError(f"stem {self.key!r} has no band")
        if not self.widths or len(self.widths) != len(self.strides):
            raise StudentConfigError(
                f"stem {self.key!r}: {len(self.widths)} widths and {len(self.strides)} strides; "
                "need one stride per block and at least one block"
            )
        if any(w < 1 for w in self.widths) or any(s < 1 for s in self.strides):
            raise StudentConfigError(f"stem {self.key!r}: widths and strides must be ≥ 1")

    @property
    def channels(self) -> int:
        return len(self.bands)

    @property
    def ndim(self) -> int:
        """Spatial dimensions of the input: 1 (series) or 2 (raster)."""
        return 2 if self.kind == "raster" else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "bands": list(self.bands),
            "widths": list(self.widths),
            "strides": list(self.strides),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StemConfig:
        kind = str(data["kind"])
        if kind not in ("raster", "timeseries"):
            raise StudentConfigError(f"stem {data.get('key')!r}: unknown kind {kind!r}")
        return cls(
            key=str(data["key"]),
            kind="raster" if kind == "raster" else "timeseries",
            bands=tuple(str(b) for b in data["bands"]),
            widths=tuple(int(w) for w in data["widths"]),
            strides=tuple(int(s) for s in data["strides"]),
        )


@dataclass(frozen=True)
class StudentConfig:
    """The whole student: its stems (in stream order: bit ``i`` of a present mask is stem ``i``),
    an optional linear head and whether blocks carry BatchNorm.

    Args:
        stems: one per stream, in a fixed order.
        head_dim: output size of the linear head, or ``None`` for the fused embedding itself.
        batchnorm: train with BatchNorm after each conv (folded away for export).
    """

    stems: tuple[StemConfig, ...]
    head_dim: int | None = None
    batchnorm: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.stems:
            raise StudentConfigError("a student needs at least one stream")
        keys = [s.key for s in self.stems]
        if len(set(keys)) != len(keys):
            raise StudentConfigError(f"stream keys repeat: {keys}")
        if len(keys) > 32:
            raise StudentConfigError(f"{len(keys)} streams; the present bitmask holds 32 at most")
        dims = {s.widths[-1] for s in self.stems}
        if len(dims) != 1:
            raise StudentConfigError(
                f"every stem must end with the same width (the embedding size); got "
                f"{ {s.key: s.widths[-1] for s in self.stems} }"
            )
        if self.head_dim is not None and self.head_dim < 1:
            raise StudentConfigError(f"head_dim must be ≥ 1, got {self.head_dim}")

    @property
    def dim(self) -> int:
        """Embedding size D (the last width of every stem)."""
        return self.stems[0].widths[-1]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.stems)

    @property
    def out_dim(self) -> int:
        return self.dim if self.head_dim is None else self.head_dim

    def to_dict(self) -> dict[str, Any]:
        return {
            "stems": [s.to_dict() for s in self.stems],
            "head_dim": self.head_dim,
            "batchnorm": self.batchnorm,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudentConfig:
        unknown = set(data) - {"stems", "head_dim", "batchnorm", "extra"}
        if unknown:
            raise StudentConfigError(f"unknown student config keys {sorted(unknown)}")
        head = data.get("head_dim")
        return cls(
            stems=tuple(StemConfig.from_dict(s) for s in data["stems"]),
            head_dim=None if head is None else int(head),
            batchnorm=bool(data.get("batchnorm", True)),
            extra=dict(data.get("extra", {})),
        )


@dataclass(frozen=True)
class FoldedConv:
    """One convolution of a stem with BatchNorm folded in (float64, for quantisation).

    ``kind`` is ``"dw"`` (depthwise k3, weight ``(C, 3)`` or ``(C, 3, 3)``) or ``"pw"``
    (pointwise 1×1, weight ``(C_out, C_in)``); every conv is followed by a ReLU.
    """

    kind: Literal["dw", "pw"]
    ndim: int
    weight: np.ndarray
    bias: np.ndarray
    stride: int


def _conv(
    ndim: int, cin: int, cout: int, k: int, stride: int, groups: int, bias: bool
) -> nn.Module:
    cls = nn.Conv2d if ndim == 2 else nn.Conv1d
    pad = 1 if k == 3 else 0
    return cls(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=bias)


def _norm(ndim: int, c: int, enabled: bool) -> nn.Module:
    if not enabled:
        return nn.Identity()
    return nn.BatchNorm2d(c) if ndim == 2 else nn.BatchNorm1d(c)


class SeparableBlock(nn.Module):
    """Depthwise conv k3 (stride s) → BN → ReLU → pointwise 1×1 → BN → ReLU."""

    def __init__(self, ndim: int, cin: int, cout: int, stride: int, batchnorm: bool) -> None:
        super().__init__()
        self.dw = _conv(ndim, cin, cin, 3, stride, cin, not batchnorm)
        self.dw_bn = _norm(ndim, cin, batchnorm)
        self.pw = _conv(ndim, cin, cout, 1, 1, 1, not batchnorm)
        self.pw_bn = _norm(ndim, cout, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw_bn(self.dw(x)))
        return torch.relu(self.pw_bn(self.pw(x)))


class Stem(nn.Module):
    """Depthwise-separable blocks then a global average pool: ``(B, C, ...) → (B, D)``."""

    def __init__(self, cfg: StemConfig, batchnorm: bool) -> None:
        super().__init__()
        self.cfg = cfg
        blocks = []
        cin = cfg.channels
        for width, stride in zip(cfg.widths, cfg.strides, strict=True):
            blocks.append(SeparableBlock(cfg.ndim, cin, width, stride, batchnorm))
            cin = width
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.blocks(x)
        return y.flatten(2).mean(dim=2)


def _fold(conv: nn.Module, bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    assert isinstance(conv, nn.Conv1d | nn.Conv2d)
    w = conv.weight.detach().double()
    b = (
        conv.bias.detach().double()
        if conv.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64)
    )
    if isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
        assert bn.running_mean is not None and bn.running_var is not None
        gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
        beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
        inv = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * inv.view(-1, *([1] * (w.dim() - 1)))
        b = (b - bn.running_mean.double()) * inv + beta
    return w.numpy(), b.numpy()


def _out_len(n: int, stride: int) -> int:
    """Output length of a k3 pad-1 conv with this stride."""
    return (n - 1) // stride + 1


def stem_shapes(cfg: StemConfig, in_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Activation shapes through a stem: input, then after each conv (dw, pw, dw, pw, …)."""
    if len(in_shape) != 1 + cfg.ndim:
        raise StudentInputError(
            f"stream {cfg.key!r}: input shape {tuple(in_shape)} does not fit a {cfg.kind} stem "
            f"(expected {'(C, H, W)' if cfg.ndim == 2 else '(C, T)'})"
        )
    if in_shape[0] != cfg.channels:
        raise StudentInputError(
            f"stream {cfg.key!r}: {in_shape[0]} channels, expected {cfg.channels} {list(cfg.bands)}"
        )
    shapes = [tuple(int(v) for v in in_shape)]
    c, spatial = int(in_shape[0]), [int(v) for v in in_shape[1:]]
    for width, stride in zip(cfg.widths, cfg.strides, strict=True):
        spatial = [_out_len(n, stride) for n in spatial]
        shapes.append((c, *spatial))
        c = width
        shapes.append((c, *spatial))
    return shapes


class Student(nn.Module):
    """Per-stream depthwise-separable stems, mean fusion over present streams, optional head.

    Build it with :meth:`from_streams`, :meth:`from_specs` or :meth:`from_config`.
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.cfg = config
        # Module names by position: stream keys may hold characters a module name cannot.
        self.stems = nn.ModuleList([Stem(s, config.batchnorm) for s in config.stems])
        self.head = nn.Linear(config.dim, config.head_dim) if config.head_dim is not None else None

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_streams(
        cls,
        streams: Mapping[str, Stream] | Iterable[Stream],
        *,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        strides: Sequence[int] = DEFAULT_STRIDES,
        head_dim: int | None = None,
        batchnorm: bool = True,
        overrides: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
    ) -> Student:
        """A student for these streams (sorted by key), every stem with the same ``widths`` and
        ``strides`` unless ``overrides`` gives a stream its own ``(widths, strides)``."""
        items = list(streams.values()) if isinstance(streams, Mapping) else list(streams)
        overrides = dict(overrides or {})
        unknown = set(overrides) - {s.key for s in items}
        if unknown:
            raise StudentConfigError(f"overrides name unknown streams {sorted(unknown)}")
        stems = []
        for s in sorted(items, key=lambda s: s.key):
            w, st = overrides.get(s.key, (widths, strides))
            stems.append(
                StemConfig(
                    key=s.key,
                    kind="timeseries" if s.rate_hz is not None else "raster",
                    bands=s.band_names,
                    widths=tuple(int(v) for v in w),
                    strides=tuple(int(v) for v in st),
                )
            )
        return cls(StudentConfig(tuple(stems), head_dim=head_dim, batchnorm=batchnorm))

    @classmethod
    def from_specs(cls, specs: Iterable[SensorSpec], **kwargs: Any) -> Student:
        """A student with one stem per stream of each sensor spec (see :meth:`from_streams`)."""
        return cls.from_streams([st for spec in specs for st in spec.streams()], **kwargs)

    def config(self) -> dict[str, Any]:
        """Plain data that :meth:`from_config` turns back into an identical architecture."""
        return self.cfg.to_dict()

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | StudentConfig) -> Student:
        cfg = data if isinstance(data, StudentConfig) else StudentConfig.from_dict(data)
        return cls(cfg)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.cfg.keys

    # --- forward ------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> torch.Tensor:  # type: ignore[override]
        """Output ``(B, out_dim)`` for a fusion :class:`~fusion.data.collate.Batch` (normalised)."""
        for key, stream in batch.streams.items():
            if key not in self.keys:
                raise StudentInputError(
                    f"stream {key!r} is not one the student was built for {list(self.keys)}"
                )
            cfg = self.cfg.stems[self.keys.index(key)]
            if tuple(stream.band_names) != cfg.bands:
                raise StudentInputError(
                    f"stream {key!r} carries bands {list(stream.band_names)}, the student "
                    f"expects {list(cfg.bands)}"
                )
        return self.forward_tensors(batch.data, batch.present)

    def forward_tensors(
        self, inputs: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Output ``(B, out_dim)`` from stream tensors and per-sample present flags.

        A stream missing from ``inputs`` is absent for every sample; one without an entry in
        ``present`` is present for every sample. Each stem runs only on the rows where its stream
        is present. A sample with no present stream gets a zero fused vector.
        """
        unknown = set(inputs) - set(self.keys)
        if unknown:
            raise StudentInputError(
                f"streams {sorted(unknown)} are not ones the student was built for "
                f"{list(self.keys)}"
            )
        if not inputs:
            raise StudentInputError("no input stream given")
        sizes = {int(x.shape[0]) for x in inputs.values()}
        if len(sizes) != 1:
            raise StudentInputError(f"streams disagree on the batch size: {sorted(sizes)}")
        n = sizes.pop()
        first = next(iter(inputs.values()))
        total = torch.zeros(n, self.cfg.dim, dtype=first.dtype, device=first.device)
        count = torch.zeros(n, dtype=first.dtype, device=first.device)
        for cfg, stem in zip(self.cfg.stems, self.stems, strict=True):
            x = inputs.get(cfg.key)
            if x is None:
                continue
            stem_shapes(cfg, tuple(x.shape[1:]))  # raises a named error on a bad shape
            if not torch.is_floating_point(x):
                raise StudentInputError(f"stream {cfg.key!r} has dtype {x.dtype}, expected float")
            p = present.get(cfg.key)
            if p is None:
                idx = torch.arange(n, device=x.device)
            else:
                if tuple(p.shape) != (n,):
                    raise StudentInputError(
                        f"present[{cfg.key!r}] has shape {tuple(p.shape)}, expected ({n},)"
                    )
                idx = torch.nonzero(p.bool(), as_tuple=False).squeeze(1)
            if idx.numel() == 0:
                continue
            z = stem(x.index_select(0, idx))
            total = total.index_add(0, idx, z)
            count = count.index_add(0, idx, torch.ones_like(idx, dtype=count.dtype))
        fused = total / count.clamp(min=1).unsqueeze(1)
        return self.head(fused) if self.head is not None else fused

    # --- export helpers -----------------------------------------------------------------------
    def folded_stem(self, key: str) -> list[FoldedConv]:
        """The convs of one stem with BatchNorm folded in (running statistics: eval semantics)."""
        i = self.keys.index(key)
        cfg, stem = self.cfg.stems[i], self.stems[i]
        assert isinstance(stem, Stem)
        out = []
        for block, stride in zip(stem.blocks, cfg.strides, strict=True):
            assert isinstance(block, SeparableBlock)
            w, b = _fold(block.dw, block.dw_bn)
            out.append(FoldedConv("dw", cfg.ndim, w.reshape(w.shape[0], *w.shape[2:]), b, stride))
            w, b = _fold(block.pw, block.pw_bn)
            out.append(FoldedConv("pw", cfg.ndim, w.reshape(w.shape[0], w.shape[1]), b, 1))
        return out

    def folded_head(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.head is None:
            return None
        return (
            self.head.weight.detach().double().numpy(),
            self.head.bias.detach().double().numpy(),
        )

    def folded(self) -> Student:
        """An equivalent student without BatchNorm (conv biases absorb it), in eval mode."""
        cfg = StudentConfig(
            self.cfg.stems, self.cfg.head_dim, batchnorm=False, extra=self.cfg.extra
        )
        out = Student(cfg)
        with torch.no_grad():
            for key, stem in zip(self.keys, out.stems, strict=True):
                assert isinstance(stem, Stem)
                convs = self.folded_stem(key)
                for j, block in enumerate(stem.blocks):
                    assert isinstance(block, SeparableBlock)
                    for conv, folded in ((block.dw, convs[2 * j]), (block.pw, convs[2 * j + 1])):
                        assert isinstance(conv, nn.Conv1d | nn.Conv2d)
                        assert conv.bias is not None
                        w = torch.from_numpy(folded.weight).reshape(conv.weight.shape)
                        conv.weight.copy_(w.to(conv.weight.dtype))
                        conv.bias.copy_(torch.from_numpy(folded.bias).to(conv.bias.dtype))
            if self.head is not None and out.head is not None:
                out.head.load_state_dict(self.head.state_dict())
        return out.eval()

    # --- cost ---------------------------------------------------------------------------------
    def param_count(self, *, folded: bool = True) -> int:
        """Parameters; ``folded=True`` counts the exported graph (BN folded into conv biases)."""
        if not folded:
            return sum(p.numel() for p in self.parameters())
        n = 0
        for cfg in self.cfg.stems:
            cin = cfg.channels
            taps = 3**cfg.ndim
            for width in cfg.widths:
                n += cin * taps + cin + cin * width + width
                cin = width
        if self.cfg.head_dim is not None:
            n += self.cfg.dim * self.cfg.head_dim + self.cfg.head_dim
        return n

    def int8_weight_bytes(self) -> int:
        """Bytes of the exported tables: int8 weights, int32 biases and per-channel int32
        multipliers and int8 shifts (what :mod:`fusion.deploy.c_export` writes)."""
        total = 0
        for cfg in self.cfg.stems:
            cin = cfg.channels
            taps = 3**cfg.ndim
            for width in cfg.widths:
                total += cin * taps + cin * (4 + 4 + 1)
                total += cin * width + width * (4 + 4 + 1)
                cin = width
        if self.cfg.head_dim is not None:
            total += self.cfg.dim * self.cfg.head_dim + self.cfg.head_dim * (4 + 4 + 1)
        return total

    def macs(self, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
        """Multiply-accumulates per stream for inputs of these per-sample shapes (``(C, T)`` or
        ``(C, H, W)``), plus ``"head"``; pooling and the mean count no MAC."""
        out: dict[str, int] = {}
        for cfg in self.cfg.stems:
            if cfg.key not in shapes:
                continue
            acts = stem_shapes(cfg, shapes[cfg.key])
            total = 0
            for j in range(len(cfg.widths)):
                dw_out, pw_out = acts[2 * j + 1], acts[2 * j + 2]
                positions = int(np.prod(dw_out[1:]))
                total += dw_out[0] * positions * 3**cfg.ndim
                total += dw_out[0] * pw_out[0] * positions
            out[cfg.key] = total
        out["head"] = self.cfg.dim * self.cfg.head_dim if self.cfg.head_dim is not None else 0
        return out
