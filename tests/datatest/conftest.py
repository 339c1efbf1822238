"""Fixtures of the data unit tests: one intra-op thread, and small labelled synthetic data."""

from __future__ import annotations

import pytest

from fusion.data.labelled import LabelledData
from fusion.data.sample import Sample


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test module here runs with one intra-op thread."""


@pytest.fixture(scope="session")
def test_chips(small: tuple[list[Sample], list[Sample]]) -> list[Sample]:
    """Every 2nd synthetic test chip (in memory)."""
    return small[1]


@pytest.fixture(scope="session")
def small_data(synthetic: LabelledData, small: tuple[list[Sample], list[Sample]]) -> LabelledData:
    """The synthetic default cut to every 8th training and every 2nd test chip (in memory)."""
    train, test = small
    return LabelledData(
        train=train,  # type: ignore[arg-type]  # a list of Samples serves as a Dataset
        test=test,  # type: ignore[arg-type]
        specs=synthetic.specs,
        task=synthetic.task,
        class_names=synthetic.class_names,
        description="synthetic (small)",
    )
