"""Failure mining on toy embeddings: neighbours, confusions and TracIn influence."""

from __future__ import annotations

import numpy as np

from fusion.datatest import TracInHead, confused_pairs, cosine_neighbours, mine_failures
from fusion.probe import KNNProbe


def _blobs(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well separated classes in 8 dimensions (class 0 around -2·e0, class 1 around +2·e0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.5, size=(2 * n, 8))
    y = np.repeat([0, 1], n)
    x[:, 0] += np.where(y == 0, -2.0, 2.0)
    x[:, 1] += 3.0  # off the origin, so that cosine similarity tells the blobs apart
    return x, y


def test_cosine_neighbours() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    idx, sim = cosine_neighbours(np.array([[2.0, 0.1]]), ref, k=2)
    assert idx.tolist() == [[0, 2]] and sim[0, 0] > sim[0, 1] > 0.7


def test_confused_pairs_are_counted_and_named() -> None:
    y_true = np.array([0, 0, 0, 1, 2, 2])
    y_pred = np.array([1, 1, 0, 1, 0, 1])
    pairs = confused_pairs(y_true, y_pred, ["water", "forest", "urban"])
    assert [(p.true, p.predicted, p.count) for p in pairs] == [
        ("water", "forest", 2), ("urban", "water", 1), ("urban", "forest", 1)
    ]  # fmt: skip
    multi = confused_pairs(np.array([[1, 0, 1]]), np.array([[0, 1, 1]]), ["a", "b", "c"])
    assert [(p.true, p.predicted) for p in multi] == [("a", "b")]


def test_tracin_ranks_a_mislabelled_training_sample_most_harmful() -> None:
    x, y = _blobs()
    y_bad = y.copy()
    y_bad[5] = 1  # a class-0 sample labelled 1
    head = TracInHead("classification", steps=200).fit(x, y_bad)
    assert (head.loss(x, y) < 0.7).mean() > 0.9  # the head learnt the blobs
    # A class-0 test sample right beside the mislabelled one.
    x_test, y_test = x[5:6] + 0.05, np.array([0])
    influence = head.influence(x, y_bad, x_test, y_test)[:, 0]
    assert int(np.argmin(influence)) == 5 and influence[5] < 0
    assert int(np.argmax(head.self_influence(x, y_bad))) == 5


def test_mining_a_failing_slice_points_at_the_mislabelled_neighbours() -> None:
    x, y = _blobs()
    y_bad = y.copy()
    y_bad[:8] = 1  # a cluster of class-0 samples mislabelled: the k-NN probe follows them
    x[:8, 0] = -3.0
    probe = KNNProbe(k=3).fit(x, y_bad)
    x_test = np.full((3, 8), 0.0)
    x_test[:, 0], x_test[:, 1] = -3.0, 3.0
    y_test = np.zeros(3, dtype=np.int64)
    y_pred = probe.predict(x_test)
    assert (y_pred == 1).all()
    head = TracInHead("classification").fit(x, y_bad)
    train_index = np.arange(100, 100 + len(x))  # dataset positions differ from row numbers
    mining = mine_failures(
        head,
        x_train=x,
        y_train=y_bad,
        train_index=train_index,
        x_slice=x_test,
        y_slice=y_test,
        y_pred=y_pred,
        slice_index=np.array([7, 8, 9]),
        class_names=["water", "forest"],
        worst=2,
        neighbours=3,
    )
    assert mining.n_failures == 3 and set(mining.worst.tolist()) <= {7, 8, 9}
    assert mining.neighbours.shape == (2, 3) and set(mining.neighbours.ravel()) <= set(
        range(100, 108)
    )
    assert [(p.true, p.predicted, p.count) for p in mining.confused] == [("water", "forest", 3)]
    harmful = [i for i, _ in mining.harmful[:8]]
    assert set(harmful) == set(range(100, 108))
    assert mining.to_dict()["harmful"][0]["train_index"] in range(100, 108)


def test_tracin_head_for_regression_and_multilabel() -> None:
    x, y = _blobs()
    target = x[:, 0] * 3.0 + 1.0
    reg = TracInHead("regression").fit(x, target)
    assert (
        np.abs(
            (x - reg.mean_) / reg.scale_ @ reg.weights_[:-1, 0]
            + reg.weights_[-1, 0]
            - (target - target.mean()) / target.std()
        ).mean()
        < 0.2
    )
    multi = np.stack([y, 1 - y, np.ones_like(y)], axis=1)
    head = TracInHead("multilabel").fit(x, multi)
    assert head.influence(x[:3], multi[:3], x[:2], multi[:2]).shape == (3, 2)
    assert (head.loss(x, multi) < 1.0).mean() > 0.9
