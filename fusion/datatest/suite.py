"""Suites of data unit tests: reading and checking the YAML, and the generated sensor-off tests.

A suite file::

    name: synthetic
    data: synthetic          # default for --data
    probe: knn               # default for --probe (knn, linear or forest)
    metric: accuracy         # default metric of every test
    sensor_off:              # one generated test per sensor of the data, switched off
      max_drop: 0.2          # (default) at most 0.2 below the same samples with every sensor
    tests:
      - name: cloudy
        description: optical chips with a fifth or more under cloud
        where: {cloud_fraction: {">=": 0.2}}
        min: 0.5
      - name: thermal_off_at_site_0
        where: {site: 0}
        switch_off: [syn_thermal]
        min: 0.4
        allow_empty: true    # report "empty" without failing when no sample matches

Thresholds (at least one per test): ``min`` (the metric must reach it), ``max`` (must not exceed
it, e.g. for rmse) and ``max_drop`` (it must not be worse by more than this than the reference:
the same samples with every sensor for a test that switches sensors off, else every test
sample). ``sensor_off: false`` generates no sensor-off test; a test of your own named
``<sensor>_off`` replaces the generated one. Conditions are described in
:mod:`fusion.datatest.slices`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fusion.config import read_mapping
from fusion.data.errors import ConfigError
from fusion.datatest.errors import (
    SuiteError,
    UnknownFieldError,
    UnknownMetricError,
    UnknownSensorError,
)
from fusion.datatest.slices import Slice, parse_where
from fusion.probe.metrics import LOWER_IS_BETTER, METRICS, Task
from fusion.probe.probes import PROBES

__all__ = ["DataTest", "Suite", "load_suite"]

ALL_METRICS = tuple(dict.fromkeys(m for ms in METRICS.values() for m in ms))
_SUITE_KEYS = {"name", "description", "data", "probe", "metric", "sensor_off", "tests"}
_OFF_KEYS = {"metric", "min", "max", "max_drop", "allow_empty"}
_TEST_KEYS = _OFF_KEYS | {"name", "description", "where", "switch_off"}
#: Threshold of generated sensor-off tests when the suite sets none.
DEFAULT_SENSOR_OFF = {"max_drop": 0.2}


def _number(value: Any, key: str, test: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise SuiteError(f"test {test!r}: {key} must be a number, got {value!r}")
    return float(value)


def _check_keys(spec: Mapping[str, Any], allowed: Collection[str], what: str) -> None:
    unknown = sorted(set(spec) - set(allowed), key=str)
    if unknown:
        # YAML 1.1 reads unquoted off/on/yes/no as booleans, keys included.
        hint = (
            " (quote keys such as 'off' or 'on')"
            if any(isinstance(k, bool) for k in unknown)
            else ""
        )
        raise SuiteError(
            f"{what}: unknown key(s) {unknown}{hint}; expected some of {sorted(allowed)}"
        )


def _check_metric(metric: str, test: str, allowed: Iterable[str] = ALL_METRICS) -> None:
    allowed = list(allowed)
    if metric not in allowed:
        raise UnknownMetricError(
            f"test {test!r}: unknown metric {metric!r}; expected one of {allowed}"
        )


@dataclass(frozen=True)
class DataTest:
    """One data unit test: a slice, a metric and its threshold(s).

    Args:
        name: a short identifier (``cloudy``, ``syn_thermal_off``).
        slice: which test samples, with which sensors switched off.
        metric: a metric of :data:`fusion.probe.metrics.METRICS`.
        minimum: the metric must be at least this (``min:``).
        maximum: the metric must be at most this (``max:``).
        max_drop: the metric may be at most this much worse than its reference.
        allow_empty: an empty slice is reported as ``"empty"`` without failing.
        description: free text for reports.
        generated: made by the suite's ``sensor_off`` rule, not written in the file.
    """

    name: str
    slice: Slice
    metric: str
    minimum: float | None = None
    maximum: float | None = None
    max_drop: float | None = None
    allow_empty: bool = False
    description: str = ""
    generated: bool = False

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, default_metric: str | None) -> DataTest:
        """A test from its suite entry.

        Raises:
            SuiteError: a missing name or threshold, an unknown key, a non-numeric threshold.
            UnknownMetricError: the metric is none of any task's.
        """
        if not isinstance(spec, Mapping) or not spec.get("name"):
            raise SuiteError(f"every test is a mapping with a 'name', got {spec!r}")
        name = str(spec["name"])
        _check_keys(spec, _TEST_KEYS, f"test {name!r}")
        metric = spec.get("metric", default_metric)
        if not metric:
            raise SuiteError(f"test {name!r} names no metric (and the suite sets no default)")
        _check_metric(str(metric), name)
        off = spec.get("switch_off") or []
        off = [off] if isinstance(off, str) else off
        if not isinstance(off, list) or not all(isinstance(s, str) for s in off):
            raise SuiteError(f"test {name!r}: 'switch_off' lists sensor names, got {off!r}")
        test = cls(
            name=name,
            slice=Slice(parse_where(spec.get("where"), test=name), tuple(off)),
            metric=str(metric),
            minimum=_number(spec.get("min"), "min", name),
            maximum=_number(spec.get("max"), "max", name),
            max_drop=_number(spec.get("max_drop"), "max_drop", name),
            allow_empty=bool(spec.get("allow_empty", False)),
            description=str(spec.get("description", "")),
        )
        if test.minimum is None and test.maximum is None and test.max_drop is None:
            raise SuiteError(f"test {name!r} has no threshold; give min, max or max_drop")
        return test

    def drop(self, value: float, reference: float) -> float:
        """How much worse ``value`` is than ``reference`` (negative when better)."""
        return value - reference if self.metric in LOWER_IS_BETTER else reference - value

    def failures(self, value: float, reference: float | None = None) -> list[str]:
        """Why ``value`` fails the thresholds (empty when it passes; NaN always fails)."""
        out = []
        if math.isnan(value):
            out.append(f"{self.metric} is undefined on this slice")
        if self.minimum is not None and not value >= self.minimum:
            out.append(f"{self.metric} {value:.3f} < min {self.minimum:g}")
        if self.maximum is not None and not value <= self.maximum:
            out.append(f"{self.metric} {value:.3f} > max {self.maximum:g}")
        if self.max_drop is not None and reference is not None:
            drop = self.drop(value, reference)
            if not drop <= self.max_drop:
                out.append(
                    f"{self.metric} {value:.3f} is {drop:.3f} worse than {reference:.3f} "
                    f"(max_drop {self.max_drop:g})"
                )
        return out

    def threshold(self) -> str:
        """``≥ 0.5``, ``≤ 0.3``, ``drop ≤ 0.2``, joined by commas."""
        parts = []
        if self.minimum is not None:
            parts.append(f"≥ {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"≤ {self.maximum:g}")
        if self.max_drop is not None:
            parts.append(f"drop ≤ {self.max_drop:g}")
        return ", ".join(parts)


@dataclass
class Suite:
    """A named list of data unit tests and the rule that generates sensor-off tests.

    Args:
        name: the suite name (JUnit test-suite name).
        tests: the tests written in the file.
        sensor_off: settings of the generated sensor-off tests, ``None`` for none.
        metric: the default metric.
        data: the default data source (``--data`` wins).
        probe: the default probe (``--probe`` wins).
        description: free text.
        path: the file it was read from.
    """

    name: str
    tests: list[DataTest]
    sensor_off: dict[str, Any] | None = field(default_factory=lambda: dict(DEFAULT_SENSOR_OFF))
    metric: str | None = None
    data: str | None = None
    probe: str | None = None
    description: str = ""
    path: Path | None = None

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, path: str | Path | None = None) -> Suite:
        """A suite from its parsed YAML.

        Raises:
            SuiteError, UnknownMetricError: see :meth:`DataTest.from_dict`; also duplicate test
                names and a malformed ``sensor_off``.
        """
        try:
            _check_keys(spec, _SUITE_KEYS, "suite")
            probe = spec.get("probe")
            if probe is not None and probe not in PROBES:
                raise SuiteError(f"unknown probe {probe!r}; expected one of {sorted(PROBES)}")
            metric = spec.get("metric")
            if metric is not None:
                _check_metric(str(metric), "(suite default)")
            raw_tests = spec.get("tests") or []
            if not isinstance(raw_tests, list):
                raise SuiteError("'tests' is a list of tests")
            tests = [DataTest.from_dict(t, default_metric=metric) for t in raw_tests]
            names = [t.name for t in tests]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise SuiteError(f"test name(s) {twice} appear more than once")
            off = spec.get("sensor_off", DEFAULT_SENSOR_OFF)
            if off is True or off is None:
                off = dict(DEFAULT_SENSOR_OFF)
            if off is not False:
                if not isinstance(off, Mapping):
                    raise SuiteError(f"'sensor_off' is a mapping or false, got {off!r}")
                _check_keys(off, _OFF_KEYS, "sensor_off")
                DataTest.from_dict({"name": "<sensor>_off", **off}, default_metric=metric)
            if not tests and off is False:
                raise SuiteError("the suite holds no test and generates none (sensor_off: false)")
        except (SuiteError, UnknownMetricError) as err:
            raise type(err)(str(err), path=path) from None
        return cls(
            name=str(spec.get("name") or (Path(path).stem if path else "datatest")),
            tests=tests,
            sensor_off=dict(off) if off is not False else None,
            metric=str(metric) if metric else None,
            data=str(spec["data"]) if spec.get("data") else None,
            probe=str(probe) if probe else None,
            description=str(spec.get("description", "")),
            path=Path(path) if path else None,
        )

    def expand(self, sensors: Iterable[str]) -> list[DataTest]:
        """The suite's tests, then one generated test per sensor switched off (unless a test
        of that name exists)."""
        tests = list(self.tests)
        if self.sensor_off is None:
            return tests
        names = {t.name for t in tests}
        for sensor in sorted(sensors):
            name = f"{sensor}_off"
            if name in names:
                continue
            base = DataTest.from_dict({"name": name, **self.sensor_off}, default_metric=self.metric)
            tests.append(
                replace(
                    base,
                    slice=Slice(off=(sensor,)),
                    description=f"every test sample with {sensor}, {sensor} switched off",
                    generated=True,
                )
            )
        return tests

    def check(
        self,
        tests: Iterable[DataTest],
        *,
        task: Task,
        fields: Collection[str],
        sensors: Collection[str],
    ) -> None:
        """Refuse tests that cannot run on this data, before anything is embedded.

        Raises:
            UnknownMetricError: a metric the task does not report (listing those it does).
            UnknownFieldError: a condition on a field no sample has (listing those they have).
            UnknownSensorError: a sensor switched off that the data does not have.
        """
        for test in tests:
            if test.metric not in METRICS[task]:
                raise UnknownMetricError(
                    f"test {test.name!r}: metric {test.metric!r} is not reported for {task}; "
                    f"expected one of {list(METRICS[task])}",
                    path=self.path,
                )
            for name in test.slice.fields:
                if name not in fields:
                    raise UnknownFieldError(name, fields, test=test.name, path=self.path)
            unknown = [s for s in test.slice.off if s not in sensors]
            if unknown:
                raise UnknownSensorError(
                    f"test {test.name!r} switches off {unknown}; the data has sensors "
                    f"{sorted(sensors)}",
                    path=self.path,
                )


def load_suite(path: str | Path) -> Suite:
    """Read a suite file (see the module docstring).

    Raises:
        SuiteError: the file is unreadable, not YAML, or malformed.
        UnknownMetricError: a metric is none of any task's.
    """
    try:
        spec = read_mapping(path)
    except ConfigError as err:
        raise SuiteError(str(err)) from None
    return Suite.from_dict(spec, path=path)
