"""Drift injected into a replayed stream (:mod:`fusion.deploy.replay`).

Drift specification: items separated by commas, each ``KIND:TARGET[=VALUE]@T`` where ``T`` is the
stream sample (0-based) from which the drift holds:

* ``gain:SENSOR=F@T``: the sensor's physical values are multiplied by ``F`` (``SENSOR/BAND`` for
  one band);
* ``offset:SENSOR=V@T``: ``V`` (in the band's physical unit, e.g. ``+2``) is added;
* ``off:SENSOR@T``: the sensor is switched off (its streams are absent, as the C API's present
  mask says);
* ``nan:SENSOR=P@T``: a share ``P`` of the samples read NaN on that sensor (a glitch): those
  samples are skipped and counted, never learned from;
* ``newclass:LABEL@T``: samples of class ``LABEL`` are held out of the warm start and of the
  stream before ``T``, and appear from ``T`` on.

Gain and offset act on physical values; the stream holds normalised values
``(x − mean) / std``, so they become ``g·x_n + (g − 1)·mean/std`` and ``x_n + v/std`` per band.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from fusion.deploy.errors import DriftSpecError
from fusion.deploy.stream import describe_expected
from fusion.deploy.student_io import StudentBundle

__all__ = ["Drift", "apply_drift", "parse_drift"]

DriftKind = Literal["gain", "offset", "off", "nan", "newclass"]
_KINDS: tuple[str, ...] = ("gain", "offset", "off", "nan", "newclass")
_ITEM = re.compile(r"^(?P<kind>\w+):(?P<target>[^=@]+)(?:=(?P<value>[^@]+))?@(?P<at>\d+)$")


@dataclass(frozen=True)
class Drift:
    """One drift event (see the module docstring).

    Args:
        kind: ``gain``, ``offset``, ``off``, ``nan`` or ``newclass``.
        target: a sensor name, or a class label for ``newclass``.
        at: first stream sample it applies to.
        value: gain factor, offset (physical units) or NaN share; ``None`` for ``off`` and
            ``newclass``.
        band: one band of the sensor, or ``None`` for all.
    """

    kind: DriftKind
    target: str
    at: int
    value: float | None = None
    band: str | None = None

    @property
    def transforms(self) -> bool:
        """Changes the input values or the present sensors (so the embeddings)."""
        return self.kind in ("gain", "offset", "off")

    def __str__(self) -> str:
        tgt = self.target + (f"/{self.band}" if self.band else "")
        val = "" if self.value is None else f"={self.value:g}"
        return f"{self.kind}:{tgt}{val}@{self.at}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "band": self.band,
            "value": self.value,
            "at": self.at,
            "spec": str(self),
        }


def parse_drift(
    spec: str | Sequence[str],
    bundle: StudentBundle | None = None,
    class_names: Sequence[str] | None = None,
) -> list[Drift]:
    """Parse drift items (one string with commas, or several strings), checking sensors and
    bands against ``bundle`` and ``newclass`` labels against ``class_names`` when given.

    Raises:
        DriftSpecError: a malformed item, an unknown kind, sensor, band or class, a value out of
            range, or switching off every sensor.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    parts = [p.strip() for s in items for p in s.split(",") if p.strip()]
    out = []
    for part in parts:
        m = _ITEM.match(part)
        if m is None:
            raise DriftSpecError(
                f"drift {part!r} is not KIND:TARGET[=VALUE]@SAMPLE, e.g. "
                "gain:accelerometer=0.5@100, offset:accelerometer=+2@100, off:gyroscope@150, "
                "nan:accelerometer=0.05@50, newclass:Badminton@200"
            )
        kind, target, raw, at = m["kind"], m["target"].strip(), m["value"], int(m["at"])
        if kind not in _KINDS:
            raise DriftSpecError(f"drift {part!r}: unknown kind {kind!r}; expected one of {_KINDS}")
        needs_value = kind in ("gain", "offset", "nan")
        if needs_value != (raw is not None):
            raise DriftSpecError(
                f"drift {part!r}: {kind} " + ("needs =VALUE" if needs_value else "takes no value")
            )
        value = None
        if raw is not None:
            try:
                value = float(raw)
            except ValueError:
                raise DriftSpecError(f"drift {part!r}: value {raw!r} is not a number") from None
            if not np.isfinite(value) or (kind == "nan" and not 0 < value <= 1):
                raise DriftSpecError(f"drift {part!r}: value {raw!r} out of range")
        band = None
        if kind != "newclass" and "/" in target:
            target, band = target.split("/", 1)
        if kind == "newclass":
            if class_names is not None and target not in class_names:
                raise DriftSpecError(
                    f"drift {part!r}: class {target!r} is not in the stream's {list(class_names)}"
                )
        elif bundle is not None:
            sensors = bundle.expected()
            if target not in sensors:
                raise DriftSpecError(
                    f"drift {part!r}: sensor {target!r} is not the student's; it has "
                    f"{describe_expected(bundle)}"
                )
            bands = [b for bs in sensors[target].values() for b in bs]
            if band is not None and band not in bands:
                raise DriftSpecError(
                    f"drift {part!r}: sensor {target!r} has no band {band!r}; bands {bands}"
                )
        out.append(Drift(kind, target, at, value, band))  # type: ignore[arg-type]
    if bundle is not None:
        off = {d.target for d in out if d.kind == "off" and d.band is None}
        if off >= set(bundle.sensors):
            raise DriftSpecError(
                f"drifts switch off every sensor of the student {sorted(off)}; "
                "at least one must stay on"
            )
    if len([d for d in out if d.kind == "newclass"]) > 1:
        raise DriftSpecError("one newclass drift per stream")
    return sorted(out, key=lambda d: d.at)


def apply_drift(
    bundle: StudentBundle,
    inputs: Mapping[str, torch.Tensor],
    present: Mapping[str, torch.Tensor],
    drifts: Sequence[Drift],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Normalised inputs and present flags with the value-changing drifts (gain, offset, off)
    applied to every row (others are ignored)."""
    x = {k: v.clone() for k, v in inputs.items()}
    p = {k: v.clone() for k, v in present.items()}
    sensors = bundle.sensors
    for d in drifts:
        if not d.transforms:
            continue
        spec = bundle.specs[d.target]
        for key in sensors[d.target]:
            if key not in x:
                continue
            if d.kind == "off":
                p[key] = torch.zeros_like(p[key])
                continue
            stream = next(s for s in spec.streams() if s.key == key)
            assert spec.stats is not None and d.value is not None
            for c, name in enumerate(stream.band_names):
                if d.band is not None and name != d.band:
                    continue
                i = spec.band_index(name)
                mean, std = spec.stats.mean[i], spec.stats.std[i]
                if d.kind == "gain":
                    x[key][:, c] = d.value * x[key][:, c] + (d.value - 1.0) * mean / std
                else:
                    x[key][:, c] = x[key][:, c] + d.value / std
    return x, p
