"""Train/test splits of whole Samples: stratified by class, random by item, or by ground blocks.

Every split is seeded and deterministic, returns disjoint sorted index lists (or chip lists), and
keeps at least one item on each side when there are two or more items, so a probe always has
something to fit and something to score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fusion.data.align import AlignedScene
from fusion.data.errors import ConfigError
from fusion.data.sampling import ChipRef, spatial_block_split


def check_fraction(test_fraction: float) -> None:
    """Refuse a test fraction outside ``(0, 1)``.

    Raises:
        ConfigError: the fraction is not strictly between 0 and 1.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")


def _n_test(n: int, test_fraction: float) -> int:
    """Items held out of ``n``: the rounded fraction, at least one and at most ``n - 1``."""
    if n < 2:
        return 0
    return min(max(round(n * test_fraction), 1), n - 1)


def stratified_split(
    labels: Sequence[int] | np.ndarray, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split by ``test_fraction``.

    Classes are visited in increasing order and each is shuffled by one seeded generator, so the
    split depends only on the labels, the fraction and the seed. A class with one member goes to
    train.

    Returns:
        ``(train, test)``: sorted int64 index arrays, disjoint, covering every item.
    """
    check_fraction(test_fraction)
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = _n_test(len(members), test_fraction)
        test.append(members[:k])
        train.append(members[k:])
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.sort(np.concatenate([empty, *train])).astype(np.int64),
        np.sort(np.concatenate([empty, *test])).astype(np.int64),
    )


def random_split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of ``n`` items, at least one on each side when ``n >= 2``.

    Returns:
        ``(train, test)``: sorted int64 index arrays, disjoint, covering ``range(n)``.
    """
    check_fraction(test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    k = _n_test(n, test_fraction)
    return np.sort(order[k:]).astype(np.int64), np.sort(order[:k]).astype(np.int64)


def block_split(
    scenes: Sequence[AlignedScene],
    chips: Sequence[ChipRef],
    *,
    chip_m: float,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[ChipRef], list[ChipRef]]:
    """Chips split by ground blocks of ``4 * chip_m`` (see
    :func:`~fusion.data.sampling.spatial_block_split`), so neighbours never straddle the split.

    Tiny data (one patch per place) can leave a side empty; then the first
    ``floor(len(chips) * test_fraction)`` chips (at least one, and never all of two or more) are
    held out instead, which holds out whole scenes because chips are listed scene by scene. A
    single chip goes to train.

    Returns:
        ``(train, test)`` chip lists.
    """
    check_fraction(test_fraction)
    splits = spatial_block_split(
        scenes,
        chips,
        block_m=4 * chip_m,
        fractions={"train": 1.0 - test_fraction, "test": test_fraction},
        seed=seed,
    )
    if splits["train"] and splits["test"]:
        return splits["train"], splits["test"]
    n = len(chips)
    cut = min(max(1, math.floor(n * test_fraction)), n - 1) if n > 1 else 0
    return list(chips[cut:]), list(chips[:cut])
