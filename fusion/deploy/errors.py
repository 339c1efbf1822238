"""Named errors of the deploy path (student, quantisation, golden model, C export)."""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "DeployError",
    "NoStreamPresentError",
    "PowerConfigError",
    "QuantisationError",
    "StudentConfigError",
    "StudentInputError",
    "StudentSensorError",
    "StudentStoreError",
    "TeacherError",
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


class TeacherError(DeployError):
    """A teacher checkpoint cannot be distilled: not a fusion checkpoint, or it lacks the sensor
    metadata (specs with normalisation statistics) a student must inherit."""


class StudentSensorError(DeployError):
    """A student was built for other sensors, streams or bands than the data or caller names
    (the message lists both)."""


class StudentStoreError(DeployError):
    """A student directory is missing, incomplete or of an unknown format version."""


class BudgetExceededError(DeployError):
    """A student does not fit a microcontroller target (the message says by how much)."""


class PowerConfigError(DeployError):
    """A sensor power file is unreadable, lacks a sensor or holds an impossible figure."""
