"""Probes and metrics on features with a known answer (no encoder involved)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.probe import (
    EmptyClassError,
    ForestProbe,
    KNNProbe,
    LabelError,
    LinearProbe,
    make_probe,
)
from fusion.probe.metrics import check_labels, check_split


def _blobs(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(classes, 8))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(size=(n, 8)), y


@pytest.mark.parametrize("probe", [KNNProbe, LinearProbe, ForestProbe])
def test_classification_probes_separate_blobs_and_not_noise(probe: type) -> None:
    x, y = _blobs(300, 4, 0)
    xtr, ytr, xte, yte = x[:200], y[:200], x[200:], y[200:]
    scores = probe("classification").fit(xtr, ytr).score(xte, yte)
    assert scores["accuracy"] > 0.9 and scores["macro_f1"] > 0.9
    shuffled = np.random.default_rng(1).permutation(ytr)
    chance = probe("classification").fit(xtr, shuffled).score(xte, yte)
    assert chance["accuracy"] < 0.5


def test_regression_probes_recover_a_linear_target() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = x @ np.array([3.0, -2.0, 0.5, 0.0, 1.0]) + 10 + rng.normal(scale=0.1, size=300)
    lin = LinearProbe("regression").fit(x[:200], y[:200]).score(x[200:], y[200:])
    assert lin["rmse"] < 0.2 and lin["r2"] > 0.99
    forest = ForestProbe("regression", trees=50).fit(x[:200], y[:200]).score(x[200:], y[200:])
    assert forest["rmse"] < lin["rmse"] * 20 and forest["r2"] > 0.5
    assert lin["mae"] <= lin["rmse"]


@pytest.mark.parametrize("name", ["knn", "linear", "forest"])
def test_multilabel_probes_score_map(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0.5, x[:, 2] < -0.5], axis=1).astype(int)
    probe = make_probe(name, "multilabel")
    scores = probe.fit(x[:200], y[:200]).score(x[200:], y[200:])
    assert set(scores) == {"mAP", "micro_f1", "macro_f1"}
    assert scores["mAP"] > 0.8
    assert probe.predict(x[200:]).shape == (100, 3)


def test_labels_that_do_not_fit_the_task_are_named() -> None:
    with pytest.raises(LabelError, match="not numeric"):
        check_labels("regression", np.array(["Forest", "River"]))
    with pytest.raises(LabelError, match="use regression"):
        check_labels("classification", np.array([1.5, 2.25]))
    with pytest.raises(LabelError, match="0/1 matrix"):
        check_labels("multilabel", np.array([0, 1, 2]))
    with pytest.raises(LabelError, match="carry no labels"):
        check_labels("classification", None)
    with pytest.raises(LabelError, match="unknown task"):
        LinearProbe("ranking")  # type: ignore[arg-type]


def test_a_class_without_training_samples_is_named() -> None:
    names = ("Forest", "River", "SeaLake")
    with pytest.raises(EmptyClassError, match="SeaLake"):
        check_split("classification", np.array([0, 1, 0]), np.array([2, 1]), names)
    with pytest.raises(EmptyClassError, match="at least two"):
        check_split("classification", np.array([0, 0]), np.array([0]), names)
    with pytest.raises(EmptyClassError, match="never in training"):
        check_split("multilabel", np.array([[1, 0], [1, 0]]), np.array([[0, 1]]), names)
    check_split("classification", np.array([0, 1, 2]), np.array([2]), names)  # fine


def test_forest_scores_a_label_never_positive_in_training_as_zero() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = np.stack([x[:, 0] > 0, np.zeros(60, dtype=bool)], axis=1).astype(int)
    probe = ForestProbe("multilabel", trees=20).fit(x, y)
    scores = probe.decision(x)
    assert scores is not None and scores.shape == (60, 2)
    assert (scores[:, 1] == 0).all() and scores[:, 0].max() > 0.5
