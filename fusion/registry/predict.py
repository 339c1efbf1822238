"""One prediction from physical sensor values: pre-processing, the student, post-processing.

The same steps a device runs, in the order a deployable bundle's manifest records them:

1. **Pre-processing**: per stream, the values are checked against the band order and input shape
   the student was built for, standardised with the stored normalisation statistics
   (``(x − mean) / std`` per band; NaN marks an invalid value, which becomes 0 like a masked
   pixel) and, for the int8 engine, quantised with the stream's input scale and zero point.
2. **The student**: the integer golden model (bit-exact with the C export; ``engine="int8"``) or
   the float student (``engine="float"``). Streams left out are absent, not zero-filled.
3. **Post-processing**: softmax of the logits, the label map, and the confidence threshold
   (``min_confidence``: below it the answer is marked not accepted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from fusion.deploy.errors import StudentInputError
from fusion.deploy.golden import golden_forward
from fusion.deploy.student_io import StudentBundle

__all__ = ["Engine", "Predictor", "postprocessing", "preprocessing"]

Engine = Literal["int8", "float"]


def preprocessing(bundle: StudentBundle) -> dict[str, Any]:
    """Per stream key: sensor, band order, mean and std per band, input shape, int8 input scale
    and zero point (what a device must do to raw physical values before inference)."""
    out: dict[str, Any] = {}
    qin = {s.key: s.input for s in bundle.quantized.stems}
    for name, keys in bundle.sensors.items():
        spec = bundle.specs[name]
        for key in keys:
            stream = next(s for s in spec.streams() if s.key == key)
            idx = [spec.band_index(b) for b in stream.band_names]
            stats = spec.stats
            out[key] = {
                "sensor": name,
                "bands": list(stream.band_names),
                "mean": [stats.mean[i] for i in idx] if stats else None,
                "std": [stats.std[i] for i in idx] if stats else None,
                "input_shape": list(bundle.input_shapes[key]),
                "int8_input": qin[key].to_dict(),
                "unit_note": "physical values (after the spec's scale and offset); NaN = invalid",
            }
    return out


def postprocessing(
    bundle: StudentBundle, thresholds: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Task, label map (index → class name), thresholds and the int8 output quantisation."""
    names = bundle.class_names
    return {
        "task": bundle.task,
        "label_map": {str(i): n for i, n in enumerate(names)} if names else None,
        "output": "softmax over class logits" if names else "embedding",
        "thresholds": {"min_confidence": 0.0, **dict(thresholds or {})},
        "int8_output": bundle.quantized.output.to_dict(),
    }


@dataclass
class Predictor:
    """A loaded student answering single predictions (thread-safe: it holds no mutable state).

    Args:
        bundle: the student.
        model: what answers, e.g. ``"imu:1.2.0"`` (returned with every prediction).
        engine: ``"int8"`` (golden model, as on the device) or ``"float"``.
        thresholds: post-processing thresholds (``min_confidence``).
    """

    bundle: StudentBundle
    model: str
    engine: Engine = "int8"
    thresholds: dict[str, float] = field(default_factory=dict)
    pre: dict[str, Any] = field(init=False, repr=False)
    post: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pre = preprocessing(self.bundle)
        self.post = postprocessing(self.bundle, self.thresholds)
        self.bundle.student.eval()

    def normalise(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Physical values per stream key → normalised float32 ``(1, C, ...)`` tensors.

        Raises:
            StudentInputError: no stream, an unknown stream or a wrong shape (naming the
                stream, and the bands and shape expected).
        """
        if not inputs:
            raise StudentInputError(f"no input stream given; this model takes {list(self.pre)}")
        out = {}
        for key, values in inputs.items():
            pre = self.pre.get(key)
            if pre is None:
                raise StudentInputError(
                    f"stream {key!r} is not one this model takes: {list(self.pre)}"
                )
            x = np.asarray(values, dtype=np.float64)
            shape = tuple(pre["input_shape"])
            if x.shape != shape:
                raise StudentInputError(
                    f"stream {key!r} has shape {x.shape}; expected {shape} (bands "
                    f"{'/'.join(pre['bands'])} in this order)"
                )
            view = (-1,) + (1,) * (x.ndim - 1)
            mean = np.asarray(pre["mean"] or [0.0] * shape[0]).reshape(view)
            std = np.asarray(pre["std"] or [1.0] * shape[0]).reshape(view)
            y = np.where(np.isfinite(x), (x - mean) / std, 0.0)
            out[key] = torch.from_numpy(y.astype(np.float32))[None]
        return out

    def logits(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Float logits ``(out_dim,)`` (dequantised for the int8 engine)."""
        x = self.normalise(inputs)
        present = {k: torch.ones(1, dtype=torch.bool) for k in x}
        if self.engine == "float":
            with torch.no_grad():
                out: np.ndarray = self.bundle.student.forward_tensors(x, present)[0].numpy()
            return out.astype(np.float64)
        q = self.bundle.quantized
        raw = golden_forward(q, q.quantize_inputs(x), {k: v.numpy() for k, v in present.items()})
        return q.dequantize_output(raw[0])

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The answer for one sample: ``model``, ``engine``, ``streams`` used, and for a
        classifier ``prediction`` (index), ``label``, ``confidence``, ``accepted`` and
        ``scores`` (softmax); for an embedding model ``embedding``."""
        z = self.logits(inputs)
        out: dict[str, Any] = {
            "model": self.model,
            "engine": self.engine,
            "streams": sorted(inputs),
        }
        label_map = self.post["label_map"]
        if label_map is None:
            out["embedding"] = z.tolist()
            return out
        p = np.exp(z - z.max())
        p /= p.sum()
        k = int(p.argmax())
        out.update(
            {
                "prediction": k,
                "label": label_map[str(k)],
                "confidence": float(p[k]),
                "accepted": bool(p[k] >= self.post["thresholds"]["min_confidence"]),
                "scores": [float(v) for v in p],
            }
        )
        return out
