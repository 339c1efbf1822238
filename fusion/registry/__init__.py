"""Registry: versioned students with lineage, aliases and tags, deployable bundles, per-site
calibration and a model server that swaps versions without failing a request.

Flow::

    student directory ──register──► Registry (SQLite + content-addressed files, immutable
                                     versions NAME:MAJOR.MINOR.PATCH, aliases, tags, lineage)
        │                                   │
        │ calibrate (site data) ─► new version, parent = base, tag site:SITE
        │                                   │
        ▼                                   ▼
    Bundle (one .zip: manifest, student, C source, .tflite when available, sha256 of each)
                                     serve: /predict/{site}, /swap/{site}

Modules importing torch (:mod:`~fusion.registry.students`, :mod:`~fusion.registry.bundle`,
:mod:`~fusion.registry.calibrate`, :mod:`~fusion.registry.serve`) are not imported here, so that
listing a registry stays fast.
"""

from fusion.registry.errors import (
    BadReferenceError,
    BundleChecksumError,
    BundleError,
    BundleFormatError,
    BundleSensorError,
    CalibrationError,
    RegistryCorruptError,
    RegistryError,
    RegistryNotFoundError,
    RollbackError,
    ServeError,
    SiteDataError,
    UnknownAliasError,
    UnknownModelError,
    UnknownSiteError,
    UnknownVersionError,
    VersionExistsError,
)
from fusion.registry.lineage import data_fingerprint, diff_versions
from fusion.registry.records import AliasEvent, ModelVersion
from fusion.registry.refs import ModelRef, SemVer, parse_ref, parse_tag
from fusion.registry.store import Registry

__all__ = [
    "AliasEvent",
    "BadReferenceError",
    "BundleChecksumError",
    "BundleError",
    "BundleFormatError",
    "BundleSensorError",
    "CalibrationError",
    "ModelRef",
    "ModelVersion",
    "Registry",
    "RegistryCorruptError",
    "RegistryError",
    "RegistryNotFoundError",
    "RollbackError",
    "SemVer",
    "ServeError",
    "SiteDataError",
    "UnknownAliasError",
    "UnknownModelError",
    "UnknownSiteError",
    "UnknownVersionError",
    "VersionExistsError",
    "data_fingerprint",
    "diff_versions",
    "parse_ref",
    "parse_tag",
]
