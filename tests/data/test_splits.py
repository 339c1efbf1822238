"""Train/test splits: stratified, random and by ground blocks, with their small-data edges."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.data.align import align
from fusion.data.errors import ConfigError
from fusion.data.sampling import ChipRef, grid_chips
from fusion.data.splits import block_split, random_split, stratified_split
from fusion.data.synthetic import make_scene


def test_stratified_split_keeps_single_members_in_train():
    labels = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    train, test = stratified_split(labels, 0.2, seed=0)
    assert 5 in train and set(labels[test]) == {0, 2}
    assert sorted([*train, *test]) == list(range(len(labels)))


def test_random_split_has_both_sides_from_two_items():
    for n in (2, 3, 10):
        train, test = random_split(n, 0.01, seed=1)
        assert len(test) == 1 and len(train) == n - 1
    train, test = random_split(4, 0.99, seed=1)
    assert len(train) == 1 and len(test) == 3
    with pytest.raises(ConfigError, match="test_fraction"):
        random_split(4, 0.0)


def test_block_split_falls_back_to_holding_out_chips():
    scene = align(make_scene(0, size_m=1200.0).sources)
    chips = [ChipRef(0, b) for b in grid_chips(scene, 600.0)]
    train, test = block_split([scene], chips, chip_m=600.0, seed=0)
    assert train and test and not set(train) & set(test)
    one_train, one_test = block_split([scene], chips[:1], chip_m=600.0, seed=0)
    assert one_train == chips[:1] and one_test == []
