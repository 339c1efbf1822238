"""CSV sensor streams: one timestamp column and one column per channel, several sensors per file.

Rows are placed on a uniform grid at the stream's rate: consecutive rows one period apart fill
consecutive steps, and a jump of more than 1.5 periods leaves NaN steps (masked out) in between,
so a window never silently joins samples from both sides of a dropout.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.bands import Band
from fusion.data.errors import CorruptFileError, LayoutError, SpecError, UnknownBandError
from fusion.data.specs import SensorSpec
from fusion.data.timeseries import SeriesSource

#: A time step longer than this many periods means samples are missing there.
GAP_FACTOR = 1.5
#: Relative difference allowed between the rate estimated from timestamps and a spec's rate.
RATE_TOLERANCE = 0.02


def specs_from_columns(
    groups: Mapping[str, Sequence[str]],
    *,
    rate_hz: float,
    quantity: str = "acceleration",
    unit: str = "1",
    description: str = "",
) -> list[SensorSpec]:
    """Ad-hoc time-series specs, one per group of columns.

    Args:
        groups: sensor name → its column names, in channel order, e.g.
            ``{"ankle": ["ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral"], ...}``.
        rate_hz: sample rate of every band, in hertz.
        quantity: physical quantity of every band.
        unit: unit of the values as stored (e.g. ``"mg"`` for Daphnet's milli-g).
        description: free text copied into every spec.

    Returns:
        One spec per group whose band names are the column names.
    """
    return [
        SensorSpec(
            name=name,
            kind="timeseries",
            bands=tuple(
                Band(name=c, quantity=quantity, unit=unit, rate_hz=rate_hz) for c in columns
            ),
            description=description,
        )
        for name, columns in groups.items()
    ]


def _timestamps_s(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """Seconds (float64) from numeric seconds or date-time strings."""
    if pd.api.types.is_numeric_dtype(column):
        t = column.to_numpy(dtype=np.float64)
    else:
        try:
            # One inferred format parses fast; per-element parsing only for mixed files.
            try:
                with warnings.catch_warnings():
                    # pandas warns before falling back to per-element parsing, which is the
                    # intended behaviour for files whose first stamp does not fix a format.
                    warnings.simplefilter("ignore", UserWarning)
                    parsed = pd.to_datetime(column)
            except ValueError:
                parsed = pd.to_datetime(column, format="mixed")
        except (ValueError, TypeError) as err:
            raise CorruptFileError(
                f"time column {name!r} holds neither seconds nor date-times: {err}", path=path
            ) from err
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        # Resolution (us, ns) differs between pandas versions; go through a fixed unit.
        ns = parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)
        t = ns.astype(np.float64) / 1e9
        t[parsed.isna().to_numpy()] = np.nan
    t = np.asarray(t, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise CorruptFileError(
            f"line {int(bad[0]) + 2}: time column {name!r} is empty or not a time", path=path
        )
    return t


def estimate_rate_hz(t_s: np.ndarray) -> float:
    """Sample rate (Hz) of increasing timestamps (seconds), robust to gaps and clock rounding.

    The median step finds the nominal period; the mean of the steps shorter than 1.5 of it then
    averages out timestamps rounded to the millisecond (Daphnet's 15.625 ms period is stored as
    alternating 15 and 16 ms steps). A rate within 0.1 % of a whole number is rounded to it.
    """
    dt = np.diff(np.asarray(t_s, dtype=np.float64))
    med = float(np.median(dt))
    regular = dt[dt < GAP_FACTOR * med]
    rate = 1.0 / float(regular.mean())
    whole = round(rate)
    if whole > 0 and abs(rate - whole) < 1e-3 * whole:
        return float(whole)
    return float(f"{rate:.6g}")


def _columns_of(spec: SensorSpec, available: Sequence[str], path: Path) -> list[str]:
    out = []
    for band in spec.bands:
        match = [c for c in available if band.matches(c)]
        if not match:
            raise UnknownBandError(
                f"no column matches band {band.name!r} (aliases {list(band.aliases)}); "
                f"available columns: {list(available)}",
                path=path,
                sensor=spec.name,
                band=band.name,
            )
        out.append(match[0])
    return out


def read_csv_stream(
    path: str | Path,
    sensors: Mapping[str, Sequence[str]] | Sequence[SensorSpec],
    *,
    time_column: str = "timestamp",
    rate_hz: float | None = None,
    quantity: str = "acceleration",
    unit: str = "1",
) -> list[SeriesSource]:
    """Read a CSV stream into one :class:`SeriesSource` per sensor.

    Args:
        path: the CSV file (header row, then one row per time stamp).
        sensors: either sensor name → column names (ad-hoc specs are built with
            :func:`specs_from_columns` from ``quantity``/``unit``), or specs whose band names or
            aliases match columns (their rate is checked against the timestamps).
        time_column: the column of time stamps: numeric seconds or date-time strings.
        rate_hz: nominal rate in hertz; estimated from the timestamps when ``None``.
        quantity: physical quantity of ad-hoc bands.
        unit: unit of ad-hoc bands as stored.

    Returns:
        One source per sensor, all starting at the first timestamp (seconds since the epoch for
        date-times) and sharing one rate. ``meta`` holds the file, columns, estimated rate and the
        number of rows and gap steps.

    Raises:
        CorruptFileError: the file cannot be parsed, a time stamp is missing or not increasing,
            a value is not numeric, or there are too few rows to estimate the rate.
        LayoutError: the time column is missing.
        UnknownBandError: a requested column (or a spec band) is not in the file.
        SpecError: the estimated rate differs from ``rate_hz`` or a spec's rate by more than 2 %.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"cannot parse CSV: {err}", path=path) from err
    available = [str(c) for c in frame.columns]
    if time_column not in frame.columns:
        raise LayoutError(
            f"no time column {time_column!r}; available columns: {available}", path=path
        )
    if isinstance(sensors, Mapping):
        groups = {name: list(cols) for name, cols in sensors.items()}
        for name, cols in groups.items():
            for c in cols:
                if c not in frame.columns:
                    raise UnknownBandError(
                        f"unknown column {c!r}; available columns: {available}",
                        path=path,
                        sensor=name,
                        band=c,
                    )
        given_specs: list[SensorSpec] | None = None
    else:
        given_specs = list(sensors)
        for spec in given_specs:
            if spec.kind != "timeseries":
                raise SpecError("CSV streams need time-series specs", path=path, sensor=spec.name)
        groups = {s.name: _columns_of(s, available, path) for s in given_specs}

    if len(frame) < 2:
        raise CorruptFileError(
            f"{len(frame)} data row(s); at least two are needed to place samples in time",
            path=path,
        )
    t = _timestamps_s(frame[time_column], path, time_column)
    dt = np.diff(t)
    bad = np.flatnonzero(dt <= 0)
    if bad.size:
        line = int(bad[0]) + 3  # header is line 1, row i is line i + 2, the later row is i + 1
        raise CorruptFileError(
            f"line {line}: time stamps do not increase ({t[bad[0]]:.6f} s then "
            f"{t[bad[0] + 1]:.6f} s)",
            path=path,
        )
    estimated = estimate_rate_hz(t)
    nominal: list[float] = []
    for spec in given_specs or []:
        rates = sorted({b.rate_hz for b in spec.bands if b.rate_hz is not None})
        if len(rates) != 1:
            raise SpecError(
                f"bands of one CSV stream share one rate; spec has {rates} Hz",
                path=path,
                sensor=spec.name,
            )
        nominal.append(rates[0])
    if rate_hz is not None:
        nominal.append(rate_hz)
    for expected in nominal:
        if abs(estimated - expected) > RATE_TOLERANCE * expected:
            raise SpecError(
                f"time stamps give {estimated:g} Hz, expected {expected:g} Hz (tolerance "
                f"{RATE_TOLERANCE:.0%})",
                path=path,
            )
    rate = nominal[0] if nominal else estimated
    if any(abs(r - rate) > 1e-9 * rate for r in nominal):
        raise SpecError(
            f"all sensors of one CSV stream share one rate; got {sorted(set(nominal))} Hz",
            path=path,
        )
    specs = (
        given_specs
        if given_specs is not None
        else specs_from_columns(groups, rate_hz=rate, quantity=quantity, unit=unit)
    )

    # Steps from local differences rather than absolute time, so clock drift within the rate
    # tolerance never accumulates into spurious gaps or collisions.
    step = np.maximum(1, np.floor(dt * rate + 0.5).astype(np.int64))
    index = np.concatenate([[0], np.cumsum(step)])
    n_steps = int(index[-1]) + 1

    sources = []
    for spec in specs:
        cols = groups[spec.name]
        raw = np.full((len(cols), n_steps), np.nan, dtype=np.float64)
        for ch, col in enumerate(cols):
            numeric = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
            # Empty cells are gaps; text that is not a number is a defect worth stopping on.
            bad_cells = np.flatnonzero(np.isnan(numeric) & frame[col].notna().to_numpy())
            if bad_cells.size:
                r = int(bad_cells[0])
                raise CorruptFileError(
                    f"line {r + 2}: column {col!r} holds {frame[col].iloc[r]!r}, not a number",
                    path=path,
                    sensor=spec.name,
                    band=col,
                )
            raw[ch, index] = numeric
        meta: dict[str, Any] = {
            "path": str(path),
            "columns": list(cols),
            "estimated_rate_hz": estimated,
            "rows": len(frame),
            "gap_steps": n_steps - len(frame),
        }
        sources.append(
            SeriesSource(spec=spec, values=raw, start_s=float(t[0]), meta=meta, source=str(path))
        )
    return sources
