"""Named errors of the deploy path (student, quantisation, golden model, C export)."""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "DeployError",
    "DivergenceError",
    "DriftSpecError",
    "NoStreamPresentError",
    "OnlineConfigError",
    "PowerConfigError",
    "QuantisationError",
    "StreamChannelError",
    "StreamError",
    "StudentConfigError",
    "StudentInputError",
    "StudentSensorError",
    "StudentStoreError",
    "TeacherError",
    "ToolchainMissingError",
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


class OnlineConfigError(DeployError):
    """An online-learning head is set up wrongly: a bad hyper-parameter, a feature count that
    differs from the embedding, or a class beyond the head's capacity."""


class DivergenceError(DeployError):
    """On-device training kept diverging: the learning rate fell below its floor after repeated
    rollbacks to the last good head."""


class StreamError(DeployError):
    """A recorded stream cannot be replayed through a student (unreadable, unlabelled where
    labels are needed, too short)."""


class StreamChannelError(StreamError):
    """A stream's sensors, channels or rate do not match the student's (both are listed)."""


class DriftSpecError(StreamError):
    """A drift specification (``gain:SENSOR=F@T`` …) is malformed or names an unknown sensor or
    class."""


class ToolchainMissingError(DeployError):
    """A cross-compiler or emulator the job needs is not installed (the message names the
    package to install)."""
