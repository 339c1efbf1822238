"""Named errors of the deploy path (student, quantisation, golden model, C export)."""

from __future__ import annotations

__all__ = [
    "DeployError",
    "NoStreamPresentError",
    "QuantisationError",
    "StudentConfigError",
    "StudentInputError",
]


class DeployError(ValueError):
    """Base class of every deploy error."""


class StudentConfigError(DeployError):
    """A student configuration is inconsistent (widths, strides, embedding size, streams)."""


class StudentInputError(DeployError):
    """An input does not fit the student: unknown stream, wrong band list, shape or dtype."""


class NoStreamPresentError(StudentInputError):
    """Some sample has no present stream the student knows (the integer path needs at least one)."""


class QuantisationError(DeployError):
    """Calibration or integer arithmetic cannot represent the model (empty calibration,
    a multiplier out of range, an int32 accumulator overflow)."""
