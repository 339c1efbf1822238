"""Data unit tests: named slices of the test data, each with a metric and a threshold.

One accuracy number hides the failures that matter; a suite names the slices that matter
("sensor X off", "cloudy", "winter", "site Y") and the score each must reach, in the spirit of
Plumerai's data unit tests ("Unit Tests Passed: 73 / 84")::

    from fusion.datatest import load_suite, run_suite, write_junit
    from fusion.probe import FusionEmbedder

    result = run_suite(load_suite("configs/datatest_synthetic.yaml"),
                       FusionEmbedder.from_checkpoint(ckpt), load_labelled("synthetic"))
    print(result.summary())       # Data unit tests passed: 7 / 8
    write_junit(result, "datatest.xml")

Each failing slice is mined: its nearest training samples, its most confused classes and the
training samples with the most influence on its failures (TracIn on a linear head), with a
contact sheet of the worst cases (:func:`write_contact_sheet`).
"""

from fusion.datatest.errors import (
    DataTestError,
    SuiteError,
    UnknownFieldError,
    UnknownMetricError,
    UnknownSensorError,
)
from fusion.datatest.fields import cloud_fraction, field_table, sample_fields, season
from fusion.datatest.mining import (
    ConfusedPair,
    Mining,
    TracInHead,
    confused_pairs,
    cosine_neighbours,
    mine_failures,
)
from fusion.datatest.report import print_result, result_table, write_junit
from fusion.datatest.run import SuiteResult, TestResult, run_suite
from fusion.datatest.sheet import write_contact_sheet
from fusion.datatest.slices import OPERATORS, Condition, Slice, parse_where
from fusion.datatest.suite import DataTest, Suite, load_suite

__all__ = [
    "OPERATORS",
    "Condition",
    "ConfusedPair",
    "DataTest",
    "DataTestError",
    "Mining",
    "Slice",
    "Suite",
    "SuiteError",
    "SuiteResult",
    "TestResult",
    "TracInHead",
    "UnknownFieldError",
    "UnknownMetricError",
    "UnknownSensorError",
    "cloud_fraction",
    "confused_pairs",
    "cosine_neighbours",
    "field_table",
    "load_suite",
    "mine_failures",
    "parse_where",
    "print_result",
    "result_table",
    "run_suite",
    "sample_fields",
    "season",
    "write_contact_sheet",
    "write_junit",
]
