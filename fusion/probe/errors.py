"""Named errors of the probing API (all are ``ValueError`` subclasses, caught by the CLI)."""

from __future__ import annotations


class ProbeError(ValueError):
    """Base class: a probe cannot run on the data it was given."""


class LabelError(ProbeError):
    """Labels do not fit the task (e.g. regression asked of class names, no labels at all)."""


class EmptyClassError(ProbeError):
    """A class has no training sample, or a split leaves a class empty."""


class EmptySubsetError(ProbeError):
    """No sample carries any sensor or band of a requested subset."""


class SubsetError(ProbeError):
    """A sensor subset names a sensor or band the data does not have."""
