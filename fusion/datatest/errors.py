"""Named errors of data unit tests (all ``ValueError`` subclasses; the CLI exits with status 2).

An empty slice is *not* an error: it is a test result with status ``"empty"`` (a failure unless
the test allows it), so that one empty slice does not hide the results of the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class DataTestError(ValueError):
    """Base class: a suite cannot run on the data it was given.

    Args:
        message: what went wrong and what was expected.
        path: the suite file, if known.
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class SuiteError(DataTestError):
    """A suite file is malformed: a missing key, an unknown operator, a test without threshold."""


class UnknownFieldError(DataTestError):
    """A predicate names a field that no sample of the data carries.

    Args:
        field: the field asked for.
        available: the fields the data has.
        test: the test whose predicate names it.
        path: the suite file, if known.
    """

    def __init__(
        self,
        field: str,
        available: Iterable[str],
        *,
        test: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.field = field
        self.available = sorted(available)
        where = f"test {test!r}: " if test else ""
        super().__init__(
            f"{where}no test sample has a field {field!r}; the data has {self.available}",
            path=path,
        )


class UnknownMetricError(DataTestError):
    """A test names a metric that the task does not report (the message lists those it does)."""


class UnknownSensorError(DataTestError):
    """A test switches off a sensor the data does not have (the message lists those it has)."""
