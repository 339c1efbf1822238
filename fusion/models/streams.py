"""Stream metadata helpers shared by the encoders: kind, checks and plain-data (de)serialisation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from fusion.data.bands import Band
from fusion.data.collate import Batch
from fusion.data.specs import Stream
from fusion.models.errors import NoDataError, StreamMismatchError, UnknownStreamError

__all__ = [
    "StreamKind",
    "batch_size",
    "check_known",
    "check_matches",
    "model_config",
    "read_model_config",
    "stream_from_dict",
    "stream_kind",
    "stream_to_dict",
]

StreamKind = Literal["raster", "series"]


def stream_kind(stream: Stream) -> StreamKind:
    """``"raster"`` (has ``resolution_m``) or ``"series"`` (has ``rate_hz``).

    Raises:
        StreamMismatchError: the stream has neither or both.
    """
    if (stream.resolution_m is None) == (stream.rate_hz is None):
        raise StreamMismatchError(
            f"stream {stream.key!r} needs exactly one of resolution_m and rate_hz "
            f"(got resolution_m={stream.resolution_m}, rate_hz={stream.rate_hz})"
        )
    return "raster" if stream.resolution_m is not None else "series"


def stream_to_dict(stream: Stream) -> dict[str, Any]:
    """Plain-data form of a stream (JSON/YAML-safe), bands via :meth:`Band.to_dict`."""
    return {
        "key": stream.key,
        "sensor": stream.sensor,
        "bands": [b.to_dict() for b in stream.bands],
        "resolution_m": stream.resolution_m,
        "rate_hz": stream.rate_hz,
    }


def stream_from_dict(data: Mapping[str, Any]) -> Stream:
    """Inverse of :func:`stream_to_dict`."""
    return Stream(
        key=str(data["key"]),
        sensor=str(data["sensor"]),
        bands=tuple(Band.from_dict(dict(b)) for b in data["bands"]),
        resolution_m=None if data.get("resolution_m") is None else float(data["resolution_m"]),
        rate_hz=None if data.get("rate_hz") is None else float(data["rate_hz"]),
    )


def check_known(keys: Iterable[str], known: Iterable[str]) -> None:
    """Refuse stream keys the model has no stem for.

    Raises:
        UnknownStreamError: naming the unknown key(s) and listing the known ones.
    """
    known = sorted(known)
    unknown = sorted(set(keys) - set(known))
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise UnknownStreamError(
            f"unknown stream key(s) {names}: this model was built for streams {known}; build "
            "the model with these streams (or drop them from the batch)"
        )


def check_matches(expected: Stream, got: Stream) -> None:
    """Refuse a batch stream whose resolution or rate differs from the one a stem was built for.

    Bands may differ in order and number (stems embed them from metadata), but the stem's strides
    were chosen from the resolution or rate.

    Raises:
        StreamMismatchError: naming the stream and both values.
    """
    if stream_kind(expected) != stream_kind(got):
        raise StreamMismatchError(
            f"stream {got.key!r} is a {stream_kind(got)} in the batch but the model was built "
            f"for a {stream_kind(expected)}"
        )
    for field, unit in (("resolution_m", "m"), ("rate_hz", "Hz")):
        a, b = getattr(expected, field), getattr(got, field)
        if a is not None and b is not None and abs(a - b) > 1e-9 * max(abs(a), 1.0):
            raise StreamMismatchError(
                f"stream {got.key!r} is at {b:g} {unit} in the batch but the model was built for "
                f"{a:g} {unit}; resample the data or build a model for this stream"
            )


def batch_size(batch: Batch) -> int:
    """Number of samples, read from the tensors (``len(batch)`` counts metadata entries).

    Raises:
        NoDataError: the batch holds no stream at all.
    """
    if not batch.present:
        raise NoDataError("the batch holds no stream")
    return int(next(iter(batch.present.values())).shape[0])


def model_config(
    model: str, version: int, streams: Mapping[str, Stream], hparams: Mapping[str, Any]
) -> dict[str, Any]:
    """The plain-data (JSON/YAML-safe) description of a model built on ``streams``."""
    return {
        "model": model,
        "version": version,
        "streams": {k: stream_to_dict(s) for k, s in streams.items()},
        **hparams,
    }


def read_model_config(
    cfg: Mapping[str, Any], model: str, version: int
) -> tuple[dict[str, Stream], dict[str, Any], int]:
    """Split a :func:`model_config` into ``(streams, hyper-parameters, its version)``.

    Raises:
        ValueError: the config is for another model or a newer format than ``version``.
    """
    rest = dict(cfg)
    name = rest.pop("model", model)
    if name != model:
        raise ValueError(f"config is for model {name!r}, not {model}")
    found = int(rest.pop("version", version))
    if found > version:
        raise ValueError(f"config version {found} is newer than supported {version}")
    streams = {k: stream_from_dict(v) for k, v in rest.pop("streams").items()}
    return streams, rest, found
