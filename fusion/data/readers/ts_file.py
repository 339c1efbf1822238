"""UEA/sktime ``.ts`` files: multivariate time-series classification cases.

The format (https://www.sktime.net/en/stable/api_reference/file_specifications/ts.html): ``#``
comment lines, ``@tag value`` header lines, then ``@data`` and one case per line. In a case the
dimensions are separated by ``:``, the values of a dimension by ``,``, a missing value is ``?`` and,
when ``@classLabel true`` (or ``@targetLabel true``), the label is the last ``:`` field.
Timestamped cases (``@timeStamps true``) are not supported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusion.data.catalog import IMU_SENSORS
from fusion.data.errors import BandCountError, CorruptFileError
from fusion.data.sample import Sample
from fusion.data.specs import SensorSpec
from fusion.data.timeseries import SeriesSource, align_series, spec_at_rate


@dataclass
class TsDataset:
    """The cases of one ``.ts`` file.

    Args:
        values: one float64 ``(D, T)`` array per case (``T`` may differ between cases); NaN where
            the file has ``?``.
        labels: one label string per case, or empty when the file has no labels.
        class_names: the classes declared by ``@classLabel true ...``, in header order (empty for
            unlabelled or regression files).
        header: the header tags (lower-case name → value string, ``""`` for bare tags).
        path: the file read.
    """

    values: list[np.ndarray]
    labels: list[str]
    class_names: tuple[str, ...]
    header: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_dims(self) -> int:
        return int(self.values[0].shape[0]) if self.values else 0

    @property
    def lengths(self) -> list[int]:
        """Number of time steps of each case."""
        return [int(v.shape[1]) for v in self.values]

    @property
    def is_regression(self) -> bool:
        return _flag(self.header.get("targetlabel", "false"))

    def label_index(self, i: int) -> int:
        """Position of case ``i``'s label in :attr:`class_names`."""
        return self.class_names.index(self.labels[i])

    def label_indices(self) -> np.ndarray:
        """int64 ``(n_cases,)`` class indices (classification files only)."""
        return np.array([self.label_index(i) for i in range(len(self))], dtype=np.int64)


def _flag(value: str) -> bool:
    return value.strip().split(" ", 1)[0].lower() == "true"


def _parse_values(text: str, path: Path, line_no: int, dim: int) -> np.ndarray:
    tokens = text.split(",")
    out = np.empty(len(tokens), dtype=np.float64)
    for j, tok in enumerate(tokens):
        tok = tok.strip()
        if tok == "?":
            out[j] = np.nan
            continue
        try:
            out[j] = float(tok)
        except ValueError:
            raise CorruptFileError(
                f"line {line_no}: dimension {dim}, value {j}: {tok!r} is not a number or '?'",
                path=path,
            ) from None
    return out


def read_ts_file(path: str | Path) -> TsDataset:
    """Read a UEA/sktime ``.ts`` file.

    Args:
        path: the ``.ts`` file.

    Returns:
        The cases, labels and header.

    Raises:
        CorruptFileError: the file cannot be read, has no ``@data`` line, no cases, a non-numeric
            value, an unknown class label, lengths that contradict the header, or timestamps.
        BandCountError: a case has a different number of dimensions than ``@dimensions`` (or than
            the first case when the header does not say).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"cannot read .ts file: {err}", path=path) from err

    header: dict[str, str] = {}
    data_line = 0
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise CorruptFileError(
                f"line {line_no}: expected a header tag (@...) or a comment (#) before @data, "
                f"got {line[:40]!r}",
                path=path,
            )
        tag, _, value = line[1:].partition(" ")
        tag = tag.lower()
        if tag == "data":
            data_line = line_no
            break
        header[tag] = value.strip()
    if not data_line:
        raise CorruptFileError(
            f"no @data line in {len(lines)} lines; expected the header to end with @data",
            path=path,
        )
    if _flag(header.get("timestamps", "false")):
        raise CorruptFileError(
            "timestamped .ts files (@timeStamps true) are not supported", path=path
        )

    class_spec = header.get("classlabel", "false").split()
    class_names = tuple(class_spec[1:]) if _flag(header.get("classlabel", "false")) else ()
    has_label = bool(class_names) or _flag(header.get("targetlabel", "false"))
    if _flag(header.get("classlabel", "false")) and not class_names:
        raise CorruptFileError(
            "@classLabel true declares no class names; expected '@classLabel true A B ...'",
            path=path,
        )
    n_dims: int | None = None
    if "dimensions" in header:
        try:
            n_dims = int(header["dimensions"])
        except ValueError:
            raise CorruptFileError(
                f"@dimensions {header['dimensions']!r} is not an integer", path=path
            ) from None
    elif _flag(header.get("univariate", "false")):
        n_dims = 1
    series_length: int | None = None
    equal = _flag(header.get("equallength", "false"))
    if equal and "serieslength" in header:
        try:
            series_length = int(header["serieslength"])
        except ValueError:
            raise CorruptFileError(
                f"@seriesLength {header['serieslength']!r} is not an integer", path=path
            ) from None

    values: list[np.ndarray] = []
    labels: list[str] = []
    for line_no in range(data_line + 1, len(lines) + 1):
        line = lines[line_no - 1].strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if has_label:
            if len(fields) < 2:
                raise CorruptFileError(
                    f"line {line_no}: case has no label; expected dimensions then ':<label>' "
                    "(truncated line?)",
                    path=path,
                )
            label = fields.pop().strip()
            if class_names and label not in class_names:
                raise CorruptFileError(
                    f"line {line_no}: label {label!r} is not one of the declared classes "
                    f"{list(class_names)} (truncated line?)",
                    path=path,
                )
            labels.append(label)
        if n_dims is None:
            n_dims = len(fields)
        if len(fields) != n_dims:
            raise BandCountError(
                f"line {line_no}: case has {len(fields)} dimensions, expected {n_dims} "
                "(from @dimensions or the first case)",
                path=path,
            )
        dims = [_parse_values(f, path, line_no, d) for d, f in enumerate(fields)]
        lengths = {len(d) for d in dims}
        if len(lengths) != 1:
            raise CorruptFileError(
                f"line {line_no}: dimensions have different lengths {[len(d) for d in dims]}; "
                "expected one length per case",
                path=path,
            )
        length = lengths.pop()
        if series_length is not None and length != series_length:
            raise CorruptFileError(
                f"line {line_no}: case has {length} steps, expected @seriesLength {series_length}",
                path=path,
            )
        if equal and values and length != values[0].shape[1]:
            raise CorruptFileError(
                f"line {line_no}: case has {length} steps, expected {values[0].shape[1]} like the "
                "first case (@equalLength true)",
                path=path,
            )
        values.append(np.stack(dims))
    if not values:
        raise CorruptFileError(
            f"no cases after @data (line {data_line}); file empty or truncated", path=path
        )
    return TsDataset(
        values=values, labels=labels, class_names=class_names, header=header, path=str(path)
    )


def case_to_sources(
    values: np.ndarray,
    specs: Sequence[SensorSpec] = IMU_SENSORS,
    *,
    rate_hz: float | None = 10.0,
    start_s: float = 0.0,
    meta: dict[str, Any] | None = None,
    source: str = "",
) -> list[SeriesSource]:
    """Split one case's dimensions into per-sensor recordings.

    Args:
        values: ``(D, T)`` raw values of one case.
        specs: sensors that consume the dimensions in order (default: accelerometer x, y, z then
            gyroscope x, y, z); their band counts must add up to ``D``.
        rate_hz: sample rate of the recording in hertz, replacing the specs' own rates; ``None``
            keeps each spec's rate.
        start_s: time of the first step, in seconds.
        meta: metadata copied into every source.
        source: file path or description, for errors and metadata.

    Raises:
        BandCountError: the specs' bands do not add up to ``D``.
    """
    values = np.asarray(values)
    expected = sum(len(s.bands) for s in specs)
    if values.ndim != 2 or values.shape[0] != expected:
        names = [f"{s.name}({len(s.bands)})" for s in specs]
        raise BandCountError(
            f"case has shape {tuple(values.shape)}, expected {expected} dimensions for sensors "
            f"{names}",
            path=source or None,
        )
    out = []
    row = 0
    for spec in specs:
        if rate_hz is not None:
            spec = spec_at_rate(spec, rate_hz)
        n = len(spec.bands)
        out.append(
            SeriesSource(
                spec=spec,
                values=values[row : row + n],
                start_s=start_s,
                meta=dict(meta or {}),
                source=source,
            )
        )
        row += n
    return out


class TsCaseDataset(Dataset[Sample]):
    """One :class:`~fusion.data.sample.Sample` per case of a ``.ts`` file.

    Each case becomes one whole-length window: ``T`` steps per sensor, ``meta`` with the file,
    case index and class name; the label is the class index (or the float target of regression
    files, or ``None`` without labels).

    Args:
        source: a ``.ts`` file or an already read :class:`TsDataset`.
        specs: sensors consuming the dimensions in order (see :func:`case_to_sources`).
        rate_hz: sample rate in hertz (BasicMotions: 10 Hz); ``None`` keeps the specs' rates.
    """

    def __init__(
        self,
        source: str | Path | TsDataset,
        specs: Sequence[SensorSpec] = IMU_SENSORS,
        *,
        rate_hz: float | None = 10.0,
    ) -> None:
        self.ts = source if isinstance(source, TsDataset) else read_ts_file(source)
        self.specs = tuple(specs)
        self.rate_hz = rate_hz
        expected = sum(len(s.bands) for s in self.specs)
        if self.ts.n_dims != expected:
            raise BandCountError(
                f"file has {self.ts.n_dims} dimensions, expected {expected} for sensors "
                f"{[s.name for s in self.specs]}",
                path=self.ts.path,
            )

    def __len__(self) -> int:
        return len(self.ts)

    def _label(self, i: int) -> Any:
        if not self.ts.labels:
            return None
        if self.ts.class_names:
            return torch.tensor(self.ts.label_index(i), dtype=torch.int64)
        return torch.tensor(float(self.ts.labels[i]), dtype=torch.float32)

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"case {i} out of range for {len(self)} cases")
        meta: dict[str, Any] = {"path": self.ts.path, "case": i}
        if self.ts.labels:
            meta["class_name"] = self.ts.labels[i]
        sources = case_to_sources(
            self.ts.values[i], self.specs, rate_hz=self.rate_hz, meta=meta, source=self.ts.path
        )
        aligned = align_series(sources)
        sample = aligned.window(aligned.start_s, aligned.duration_s, label=self._label(i))
        sample.meta.update(meta)
        return sample
