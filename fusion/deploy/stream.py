"""Recorded streams for on-device learning: the frozen int8 feature extractor and stream loading
(``.ts``, CSV, ``synthetic``) checked against the student's sensors. Drift injected into a
stream: :mod:`fusion.deploy.drift`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.data.errors import FusionDataError
from fusion.deploy.distill import TensorData
from fusion.deploy.errors import StreamChannelError, StreamError
from fusion.deploy.golden import golden_forward
from fusion.deploy.int8 import QuantizedStudent
from fusion.deploy.student_io import StudentBundle

__all__ = ["FrozenExtractor", "StreamPool", "describe_expected", "load_stream"]

#: Label columns looked for in a CSV stream when none is named.
LABEL_COLUMNS = ("label", "class", "activity", "is_anomaly")


class FrozenExtractor:
    """The int8 student up to its fused embedding, frozen: the golden model (bit-exact with the
    C export) followed by dequantisation. The student's own head, if any, is not used.

    Args:
        q: the quantised student.
    """

    def __init__(self, q: QuantizedStudent) -> None:
        self.q = dataclasses.replace(q, head=None, output=q.fused)
        self.scale = np.float32(q.fused.scale)
        self.zero_point = int(q.fused.zero_point)

    @property
    def dim(self) -> int:
        """D, the embedding size."""
        return self.q.dim

    def macs(self, keys: Sequence[str] | None = None) -> int:
        """Multiply-accumulates of one embedding with these streams on (default: all)."""
        per = self.q.macs()
        return sum(per[k] for k in (keys if keys is not None else self.q.keys))

    def embed_int8(
        self,
        inputs: Mapping[str, torch.Tensor | np.ndarray],
        present: Mapping[str, torch.Tensor | np.ndarray],
        *,
        batch_size: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """int8 embeddings ``(N, D)`` of normalised inputs ``(N, C, ...)`` per stream and their
        validity ``(N,)``: a row is invalid (left 0) when a present stream holds a non-finite
        value or no stream is present."""
        x = {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
        p = {k: np.asarray(v, dtype=bool) for k, v in present.items() if k in x}
        n = int(next(iter(x.values())).shape[0])
        on = np.zeros(n, dtype=bool)
        valid = np.ones(n, dtype=bool)
        for k, v in x.items():
            flag = p.get(k, np.ones(n, dtype=bool))
            on |= flag
            finite = np.isfinite(v.reshape(n, -1)).all(axis=1)
            valid &= finite | ~flag
        valid &= on
        out = np.zeros((n, self.dim), dtype=np.int8)
        idx = np.flatnonzero(valid)
        for s in range(0, len(idx), batch_size):
            rows = idx[s : s + batch_size]
            # NaN in a switched-off stream is never read; zero it so the quantiser stays quiet
            part = {
                k: np.nan_to_num(v[rows], nan=0.0, posinf=0.0, neginf=0.0) for k, v in x.items()
            }
            qin = self.q.quantize_inputs(part)
            out[rows] = golden_forward(self.q, qin, {k: v[rows] for k, v in p.items()})
        return out, valid

    def dequantize(self, q8: np.ndarray) -> np.ndarray:
        """float32 ``scale · (q − zero_point)``, exactly as the C runtime computes it."""
        out: np.ndarray = (q8.astype(np.int32) - self.zero_point).astype(np.float32) * self.scale
        return out

    def embed(
        self,
        inputs: Mapping[str, torch.Tensor | np.ndarray],
        present: Mapping[str, torch.Tensor | np.ndarray],
    ) -> np.ndarray:
        """Dequantised float32 embeddings ``(N, D)``; invalid rows are NaN."""
        q8, valid = self.embed_int8(inputs, present)
        out = self.dequantize(q8)
        out[~valid] = np.nan
        return out


# --- streams -----------------------------------------------------------------------------------


@dataclass
class StreamPool:
    """The distinct samples a replay draws from, normalised with the student's statistics.

    Args:
        data: the tensors (labels: class indices into ``class_names``, or ``None``).
        class_names: class index → name, or ``None`` for an unlabelled stream.
        description: what was read.
        source: the stream argument.
    """

    data: TensorData
    class_names: tuple[str, ...] | None
    description: str
    source: str

    def label_names(self) -> list[str] | None:
        if self.data.labels is None or self.class_names is None:
            return None
        return [self.class_names[int(i)] for i in self.data.labels]


def describe_expected(bundle: StudentBundle) -> str:
    """The student's sensors and bands, ``name (band/band, …); …``, for error messages."""
    exp = bundle.expected()
    return "; ".join(
        f"{name} ({', '.join('/'.join(b) for b in streams.values())})"
        for name, streams in exp.items()
    )


def _student_shape(bundle: StudentBundle, key: str) -> tuple[int, ...]:
    return tuple(bundle.input_shapes.get(key, bundle.quantized.stems[0].input_shape))


def _from_samples(bundle: StudentBundle, samples: Sequence[Any], source: str) -> TensorData:
    from fusion.data.normalise import Normaliser
    from fusion.deploy.distill import tensor_data

    data, _ = tensor_data(samples, Normaliser(bundle.specs))
    for key, shape in data.shapes.items():
        want = _student_shape(bundle, key)
        if shape != want:
            raise StreamChannelError(
                f"stream {source}: stream {key!r} has per-sample shape {shape}, the student "
                f"expects {want}"
            )
    return data


def _ts_pool(bundle: StudentBundle, path: Path) -> StreamPool:
    from fusion.data.readers.ts_file import TsCaseDataset, read_ts_file

    try:
        ts = read_ts_file(path)
    except FusionDataError as err:
        raise StreamError(f"stream {path}: {err}") from err
    specs = list(bundle.specs.values())
    want = sum(len(s.bands) for s in specs)
    if ts.n_dims != want:
        raise StreamChannelError(
            f"stream {path} has {ts.n_dims} dimensions per case; the student expects {want}, in "
            f"this order: {describe_expected(bundle)}"
        )
    ds = TsCaseDataset(ts, specs, rate_hz=None)
    samples = [ds[i] for i in range(len(ds))]
    data = _from_samples(bundle, samples, str(path))
    names = tuple(ts.class_names) or None
    desc = f"{path.name}: {len(ds)} recordings" + (f", classes {list(names)}" if names else "")
    return StreamPool(data, names, desc, str(path))


def _synthetic_pool(bundle: StudentBundle, source: str) -> StreamPool:
    """``synthetic``: the test chips of the default places (seed 0); ``synthetic:SEED``: every
    chip of the places generated with another seed (places the student never saw)."""
    from fusion.data.labelled import load_labelled
    from fusion.deploy.errors import StudentSensorError

    _, _, raw_seed = source.partition(":")
    try:
        seed = int(raw_seed) if raw_seed else 0
    except ValueError:
        raise StreamError(f"stream {source!r}: expected 'synthetic' or 'synthetic:SEED'") from None
    labelled = load_labelled("synthetic", seed=seed)
    try:
        bundle.check_sensors(labelled.specs)
    except StudentSensorError as err:
        raise StreamChannelError(f"stream {source!r}: {err}") from err
    if raw_seed:
        parts, what = [labelled.train, labelled.test], "every chip"
    else:
        parts, what = [labelled.test], "test split"
    samples = [ds[i] for ds in parts for i in range(len(ds))]  # type: ignore[arg-type]
    data = _from_samples(bundle, samples, source)
    desc = f"{labelled.description} ({what}, {len(samples)} chips)"
    return StreamPool(data, labelled.class_names, desc, source)


def _csv_pool(bundle: StudentBundle, path: Path, label_column: str | None) -> StreamPool:
    import pandas as pd

    from fusion.data.readers.csv_stream import read_csv_stream

    specs = list(bundle.specs.values())
    try:
        sources = read_csv_stream(path, specs)
    except FusionDataError as err:
        # the reader's message names the file, sensor, band and the columns it found
        raise StreamChannelError(
            f"stream {path} does not match the student: {err}. The student expects "
            f"{describe_expected(bundle)}"
        ) from err
    columns = list(pd.read_csv(path, nrows=0).columns)
    label_col = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
    if label_column is not None and label_column not in columns:
        raise StreamError(f"stream {path}: no label column {label_column!r}; columns {columns}")
    labels_raw = None
    if label_col is not None:
        (lab,) = read_csv_stream(path, {"label": [label_col]})
        labels_raw = lab.values[0]
    inputs: dict[str, torch.Tensor] = {}
    streams = {}
    n_win = None
    for spec, src in zip(specs, sources, strict=True):
        (stream,) = spec.streams()
        t = _student_shape(bundle, stream.key)[-1]
        n = src.values.shape[1] // t
        n_win = n if n_win is None else min(n_win, n)
        stats = spec.stats
        assert stats is not None
        mean = np.asarray(stats.mean, dtype=np.float64)[:, None]
        std = np.asarray(stats.std, dtype=np.float64)[:, None]
        norm = (src.values[:, : n * t] - mean) / std
        inputs[stream.key] = torch.from_numpy(
            norm.reshape(len(spec.bands), n, t).transpose(1, 0, 2).astype(np.float32)
        )
        streams[stream.key] = stream
    if not n_win:
        raise StreamError(f"stream {path} is shorter than one student window")
    inputs = {k: v[:n_win] for k, v in inputs.items()}
    labels, names = None, None
    if labels_raw is not None:
        t = next(iter(inputs.values())).shape[-1]
        per = labels_raw[: n_win * t].reshape(n_win, t)
        values = np.asarray([_mode(row) for row in per])
        names = tuple(f"{v:g}" for v in sorted({v for v in values if np.isfinite(v)}))
        labels = torch.as_tensor(
            [names.index(f"{v:g}") if np.isfinite(v) else -1 for v in values], dtype=torch.long
        )
    present = {k: torch.ones(n_win, dtype=torch.bool) for k in inputs}
    data = TensorData(inputs, present, labels, streams)
    if labels is not None:
        data = data.rows(labels >= 0)  # windows without any label cannot be scored
        n_win = len(data)
    desc = f"{path.name}: {n_win} windows" + (f", labels {label_col!r}" if label_col else "")
    return StreamPool(data, names, desc, str(path))


def _mode(values: np.ndarray) -> float:
    """Most frequent finite value (ties: the smallest), NaN when none is finite."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan")
    uniq, counts = np.unique(v, return_counts=True)
    return float(uniq[int(np.argmax(counts))])


def load_stream(
    bundle: StudentBundle, source: str | Path, *, label_column: str | None = None
) -> StreamPool:
    """Read a stream for a student: ``"synthetic"`` (the default scenes' test chips;
    ``"synthetic:SEED"``: every chip of places made with another seed), a UEA
    ``.ts`` file (one sample per case) or a CSV file (a timestamp column and the student's band
    columns, cut into windows of the student's input length; a label column, if any, gives each
    window its most frequent label).

    Raises:
        StreamChannelError: the stream's sensors, channels, rate or shapes are not the
            student's (both are listed).
        StreamError: the file is missing, unreadable or of an unknown kind.
    """
    if str(source) == "synthetic" or str(source).startswith("synthetic:"):
        return _synthetic_pool(bundle, str(source))
    path = Path(source)
    if not path.is_file():
        raise StreamError(f"stream {path} does not exist (give a .ts or .csv file or 'synthetic')")
    if path.suffix.lower() == ".ts":
        return _ts_pool(bundle, path)
    if path.suffix.lower() == ".csv":
        return _csv_pool(bundle, path, label_column)
    raise StreamError(
        f"stream {path}: unknown kind {path.suffix!r}; expected .ts, .csv or synthetic"
    )
