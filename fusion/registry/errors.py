"""Named errors of the registry, the deployable bundle, calibration and serving.

Every one is a :class:`RegistryError`, which the CLI reports as one line with exit status 2.
"""

from __future__ import annotations

__all__ = [
    "BadReferenceError",
    "BundleChecksumError",
    "BundleError",
    "BundleFormatError",
    "BundleSensorError",
    "CalibrationError",
    "RegistryCorruptError",
    "RegistryError",
    "RegistryNotFoundError",
    "RollbackError",
    "ServeError",
    "SiteDataError",
    "UnknownAliasError",
    "UnknownModelError",
    "UnknownSiteError",
    "UnknownVersionError",
    "VersionExistsError",
]


class RegistryError(ValueError):
    """Base class of every registry, bundle, calibration and serving error."""


class RegistryNotFoundError(RegistryError):
    """No registry database in the folder given (and creating one was not asked for)."""


class BadReferenceError(RegistryError):
    """A model reference, name, version or tag is malformed (``NAME:1.2.0``, ``NAME@alias``)."""


class UnknownModelError(RegistryError):
    """No version of this model name is registered (the message lists the names that are)."""


class UnknownVersionError(RegistryError):
    """The model exists but not this version (the message lists the versions that do)."""


class UnknownAliasError(RegistryError):
    """The model has no such alias (the message lists its aliases)."""


class VersionExistsError(RegistryError):
    """A version is immutable: registering ``NAME:VERSION`` again is refused."""


class RollbackError(RegistryError):
    """An alias has no earlier target to roll back to."""


class RegistryCorruptError(RegistryError):
    """A stored file is missing or its content no longer matches its sha256."""


class BundleError(RegistryError):
    """A deployable bundle cannot be built or read."""


class BundleFormatError(BundleError):
    """The file is not a deployable bundle, or of an unknown format version, or lacks a member."""


class BundleChecksumError(BundleError):
    """A member of a bundle is missing, extra or differs from its sha256 in the manifest (the
    message names each member and both digests)."""


class BundleSensorError(BundleError):
    """A bundle was built for other sensors, streams or bands than the caller expects, or its
    manifest disagrees with the student inside (the message lists both)."""


class CalibrationError(RegistryError):
    """A base model cannot be calibrated (no task head, no labels, an unknown part to adapt)."""


class SiteDataError(CalibrationError):
    """A site's data is missing, unreadable, unlabelled, too small or of other sensors."""


class ServeError(RegistryError):
    """A prediction request or a model swap of the HTTP service is malformed."""


class UnknownSiteError(ServeError):
    """The service has no model for this site (the message lists the sites it serves)."""
