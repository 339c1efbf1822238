"""Errors raised when a batch does not fit a model."""

from __future__ import annotations

__all__ = ["ModelInputError", "NoDataError", "StreamMismatchError", "UnknownStreamError"]


class ModelInputError(ValueError):
    """A batch cannot be encoded by this model (base class)."""


class UnknownStreamError(ModelInputError):
    """The batch holds a stream the model was not built for (the message lists the known ones)."""


class StreamMismatchError(ModelInputError):
    """A stream's resolution, rate or kind differs from the one the model was built for."""


class NoDataError(ModelInputError):
    """Some sample has no present stream (or no valid pixel or step in any present stream)."""
