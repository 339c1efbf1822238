"""Shared fixtures: the real data folder (skipped, with the reason, when absent), a tiny
checkpoint pretrained for a few steps on the synthetic default, and labelled synthetic data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fusion.data.labelled import LabelledData, load_labelled
from fusion.data.shared import shared_data_dir
from fusion.pretrain import PretrainConfig, pretrain
from tests.threads import one_thread


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for a whole module (request it with
    ``pytestmark = pytest.mark.usefixtures("single_thread")`` or from an autouse fixture)."""
    with one_thread():
        yield


class SharedData(type(Path())):  # type: ignore[misc]
    """The real data folder; ``shared_data / "eurosat-ms"`` skips the test, naming the folder,
    when that dataset is absent (a partial copy of the data folder), and gives a plain Path."""

    def __truediv__(self, name: str) -> Path:
        child = Path(str(self)) / name
        if not child.exists():
            pytest.skip(f"real data {child} is absent (FUSION_SHARED_DATA={self})")
        return child


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set FUSION_SHARED_DATA)")
    return SharedData(root)


#: A model small enough that every test using it runs in seconds.
TINY_MODEL = {"width": 16, "depth": 1, "heads": 2, "batch_size": 8, "proj_dim": 16, "log_every": 1}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe-runs")
    summary = pretrain(
        PretrainConfig.from_dict({**TINY_MODEL, "out": str(out), "max_steps": 3, "name": "probe"}),
        progress=False,
    )
    return Path(summary["checkpoint"])


@pytest.fixture(scope="session")
def synthetic() -> LabelledData:
    return load_labelled("synthetic")


@pytest.fixture(scope="session")
def small(synthetic: LabelledData) -> tuple[list, list]:  # type: ignore[type-arg]
    """Every 8th training chip and every 2nd test chip, read once (physical values)."""
    train = [synthetic.train[i] for i in range(0, len(synthetic.train), 8)]  # type: ignore[arg-type]
    test = [synthetic.test[i] for i in range(0, len(synthetic.test), 2)]  # type: ignore[arg-type]
    return train, test
