"""On-device online learning: the heads learn, grow a class, skip NaN samples, roll back a
diverging learning rate; the generated C runtime matches Python; streams and drift."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.data.sample import Sample
from fusion.deploy import QuantizedStudent
from fusion.deploy.drift import apply_drift, parse_drift
from fusion.deploy.errors import (
    DivergenceError,
    DriftSpecError,
    OnlineConfigError,
    StreamChannelError,
)
from fusion.deploy.golden import golden_forward
from fusion.deploy.int8 import QParams
from fusion.deploy.online import OnlineAutoencoder, OnlineClassifier, OnlineNormaliser
from fusion.deploy.replay import ReplayConfig, replay
from fusion.deploy.stream import FrozenExtractor, load_stream
from fusion.deploy.student_io import StudentBundle
from tests.deploy.online_harness import PREDICT, SKIP, UPDATE, compile_online
from tests.deploy.tiny import tiny_bundle

D = 16
QP = QParams(scale=0.05, zero_point=-10)


class Blobs:
    """Gaussian class blobs in D dimensions, quantised like an int8 embedding."""

    def __init__(self, n_classes: int = 4, seed: int = 0, spread: float = 0.6) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(0.0, 1.5, (n_classes, D))
        self.spread = spread

    def int8(self, labels: Sequence[int]) -> np.ndarray:
        x = self.centres[list(labels)] + self.rng.normal(0, self.spread, (len(labels), D))
        return QP.quantize(x)

    def float(self, labels: Sequence[int]) -> np.ndarray:
        return dequantize(self.int8(labels))

    def labels(self, n: int, classes: Sequence[int]) -> list[int]:
        return [int(v) for v in self.rng.choice(list(classes), n)]


def dequantize(q: np.ndarray) -> np.ndarray:
    out: np.ndarray = (q.astype(np.int32) - QP.zero_point).astype(np.float32) * np.float32(QP.scale)
    return out


def prequential(head: OnlineClassifier, x: np.ndarray, y: Sequence[int]) -> np.ndarray:
    """Test, then train, sample by sample: 1 where the prediction was right."""
    ok = []
    for row, label in zip(x, y, strict=True):
        ok.append(head.n_classes > 0 and head.predict(row)[0] == label)
        head.partial_fit(row, label)
    return np.asarray(ok, dtype=float)


# --- the heads ---------------------------------------------------------------------------------


def test_normaliser_is_exact_then_follows_a_drift() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (50, 4)).astype(np.float32)
    norm = OnlineNormaliser(4, window=100)
    for row in x:
        norm.update(row)
    np.testing.assert_allclose(norm.mean_, x.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm.var_, x.var(0), rtol=1e-3)
    for row in rng.normal(-5.0, 1.0, (400, 4)).astype(np.float32):
        norm.update(row)
    # a window of 100 samples: 400 samples later the old regime has faded
    assert np.all(np.abs(norm.mean_ + 5.0) < 0.5)


def test_classifier_learns_a_separable_stream_from_scratch() -> None:
    blobs = Blobs(3)
    y = blobs.labels(300, range(3))
    head = OnlineClassifier(D, lr=0.05)
    ok = prequential(head, blobs.float(y), y)
    assert ok[-100:].mean() >= 0.95
    assert head.classes_ == list(dict.fromkeys(y))  # rows in order of first appearance
    assert head.n_updates_ == 300 and head.n_rollbacks_ == 0


def test_new_class_grows_a_row_is_predicted_and_old_classes_are_kept() -> None:
    blobs = Blobs(4, seed=1)
    warm = blobs.labels(200, range(3))
    head = OnlineClassifier(D, lr=0.05).fit(blobs.float(warm), warm)
    test_old = blobs.labels(300, range(3))
    x_old = blobs.float(test_old)
    before = (head.predict(x_old) == test_old).mean()
    y = blobs.labels(200, range(4))
    head.partial_fit(blobs.float(y), y)
    assert head.classes_[-1] == 3 and head.coef_.shape == (4, D)
    assert (head.predict(blobs.float([3] * 100)) == 3).mean() >= 0.9
    after = (head.predict(x_old) == test_old).mean()
    assert 100 * (before - after) <= 5.0


def test_a_full_head_refuses_another_class() -> None:
    head = OnlineClassifier(D, max_classes=2)
    x = Blobs(3).float([0, 1, 2])
    head.partial_fit(x[:2], [0, 1])
    with pytest.raises(OnlineConfigError, match="max_classes=2"):
        head.partial_fit(x[2], 2)


def test_huge_lr_is_rolled_back_and_lowered_then_learns() -> None:
    blobs = Blobs(3, seed=2)
    y = blobs.labels(400, range(3))
    head = OnlineClassifier(D, lr=1e5)
    ok = prequential(head, blobs.float(y), y)
    assert head.n_rollbacks_ >= 1
    assert head.lr_ < 1e5
    assert np.isfinite(head.coef_).all() and np.isfinite(head.intercept_).all()
    assert ok[-100:].mean() >= 0.9


def test_divergence_below_the_lr_floor_is_a_named_error() -> None:
    blobs = Blobs(3, seed=2)
    y = blobs.labels(100, range(3))
    head = OnlineClassifier(D, lr=1e5, min_lr=5e4)
    with pytest.raises(DivergenceError, match="min_lr"):
        head.partial_fit(blobs.float(y), y)


@pytest.mark.parametrize("kind", ["classifier", "autoencoder"])
def test_nan_samples_are_skipped_counted_and_never_learned(kind: str) -> None:
    blobs = Blobs(3, seed=3)
    y = blobs.labels(60, range(3))
    x = blobs.float(y)
    clean = OnlineClassifier(D) if kind == "classifier" else OnlineAutoencoder(D, hidden=4)
    dirty = clean.copy()
    clean.partial_fit(x, y)
    bad = x.copy()
    bad[::7, 3] = np.nan
    bad[::11, :] = np.inf
    rows, labels = [], []
    for i in range(len(x)):
        if not np.isfinite(bad[i]).all():
            rows.append(bad[i])
            labels.append(y[i])
        rows.append(x[i])
        labels.append(y[i])
    dirty.partial_fit(np.stack(rows), labels)
    assert dirty.n_skipped_ == len(rows) - len(x) > 0
    np.testing.assert_array_equal(dirty.coef_, clean.coef_)
    np.testing.assert_array_equal(dirty.norm_.mean_, clean.norm_.mean_)


def test_autoencoder_scores_an_unseen_class_as_anomalous() -> None:
    from sklearn.metrics import roc_auc_score

    blobs = Blobs(4, seed=4)
    normal = blobs.labels(300, range(3))
    ae = OnlineAutoencoder(D, hidden=4, lr=0.01).fit(blobs.float(normal), epochs=5)
    test = blobs.labels(200, range(4))
    x = blobs.float(test)
    err = ae.reconstruction_error(x)
    assert roc_auc_score(np.asarray(test) == 3, err) >= 0.9
    np.testing.assert_array_equal(ae.score_samples(x), -err)
    assert (ae.predict(blobs.float([3] * 50)) == -1).mean() >= 0.8


def test_default_heads_fit_in_8_kb_of_ram() -> None:
    clf = OnlineClassifier(64)
    ae = OnlineAutoencoder(64)
    for head in (clf, ae):
        assert head.ram_bytes() <= 8 * 1024
        assert sum(head.ram_breakdown().values()) == head.ram_bytes()
        assert head.macs_per_update() > 0
    # max_classes rows reserved: 2 · (8·64 + 8) weights+snapshot, 8 gradients, 64 workspace,
    # 2·64 statistics, 10 scalars, float32 words
    assert clf.ram_bytes() == 4 * (2 * (8 * 64 + 8) + 8 + 64 + 128 + 10)


def test_bad_settings_are_named_errors() -> None:
    with pytest.raises(OnlineConfigError, match="lr > 0"):
        OnlineClassifier(D, lr=0.0)
    with pytest.raises(OnlineConfigError, match="hidden"):
        OnlineAutoencoder(D, hidden=D + 1)
    with pytest.raises(OnlineConfigError, match=r"expected \(16,\)"):
        OnlineClassifier(D).partial_fit(np.zeros(D + 1, dtype=np.float32), 0)


# --- the C runtime -----------------------------------------------------------------------------

TOL = 1e-4  # max abs difference of weights, statistics and scores after every update


def _c_ops(
    head: OnlineClassifier | OnlineAutoencoder, blobs: Blobs, y: Sequence[int]
) -> tuple[list[tuple[int, int, list[np.ndarray]]], np.ndarray]:
    """Drive the Python head and build the same operations for the C driver: predict, then
    update, every sample; every 9th sample is also sent as an invalid (NULL) one."""
    ops: list[tuple[int, int, list[np.ndarray]]] = []
    expected: list[float] = []
    for i, label in enumerate(y):
        q = blobs.int8([label])[0]
        x = dequantize(q)
        if i % 9 == 4:
            ops.append((SKIP, 0, [q]))
            head.partial_fit(np.full(D, np.nan, dtype=np.float32), label)
        ops.append((PREDICT, 0, [q]))
        if isinstance(head, OnlineClassifier):
            empty = head.n_classes == 0  # the C predict answers -1 before any class
            expected.append(-1.0 if empty else float(head.decision_function(x).argmax()))
            index = head.index(label) if label in head.classes_ else head.n_classes
            ops.append((UPDATE, index, [q]))
        else:
            expected.append(float(head.reconstruction_error(x)[0]))
            ops.append((UPDATE, 0, [q]))
        head.partial_fit(x, label)
    return ops, np.asarray(expected)


def _check_state(head: OnlineClassifier | OnlineAutoencoder, state: dict[str, np.ndarray]) -> None:
    assert int(state["sizeof"]) == head.ram_bytes()
    if isinstance(head, OnlineClassifier):
        k = head.n_classes
        assert int(state["n_classes"][0]) == k
        w = state["w"].reshape(head.max_classes, D)[:k]
        np.testing.assert_allclose(w, head.coef_, atol=TOL, rtol=0)
        np.testing.assert_allclose(state["b"][:k], head.intercept_, atol=TOL, rtol=0)
    else:
        np.testing.assert_allclose(state["w"].reshape(head.hidden, D), head.coef_, atol=TOL)
        np.testing.assert_allclose(state["b2"], head.output_bias_, atol=TOL, rtol=0)
    np.testing.assert_allclose(state["mean"], head.norm_.mean_, atol=TOL, rtol=0)
    np.testing.assert_allclose(state["var"], head.norm_.var_, atol=TOL, rtol=0)
    for name in ("n_updates", "n_skipped", "n_rollbacks"):
        assert int(state[name][0]) == getattr(head, f"{name}_"), name
    assert float(state["lr"][0]) == pytest.approx(float(head.lr_), rel=1e-6)


def test_c_classifier_matches_python_through_a_new_class(gcc: str, tmp_path: Path) -> None:
    blobs = Blobs(4, seed=5)
    warm = blobs.labels(120, range(3))
    head = OnlineClassifier(D, lr=0.05, max_classes=6).fit(blobs.float(warm), warm)
    compiled = compile_online(head, QP, tmp_path, gcc=gcc)
    ops, expected = _c_ops(head, blobs, blobs.labels(250, range(4)))
    rc, values, state = compiled.run(ops)
    assert set(rc[[op == UPDATE for op, _, _ in ops]]) == {0}
    assert set(rc[[op == SKIP for op, _, _ in ops]]) == {1}
    np.testing.assert_array_equal(values[[op == PREDICT for op, _, _ in ops]], expected)
    assert head.n_classes == 4
    _check_state(head, state)


def test_c_rollbacks_match_python(gcc: str, tmp_path: Path) -> None:
    blobs = Blobs(3, seed=6)
    head = OnlineClassifier(D, lr=1e5, max_classes=4)
    compiled = compile_online(head, QP, tmp_path, gcc=gcc)
    ops, _ = _c_ops(head, blobs, blobs.labels(150, range(3)))
    rc, _, state = compiled.run(ops)
    assert head.n_rollbacks_ >= 1 and (rc == 2).sum() == head.n_rollbacks_
    _check_state(head, state)


def test_c_autoencoder_matches_python(gcc: str, tmp_path: Path) -> None:
    blobs = Blobs(4, seed=7)
    normal = blobs.labels(150, range(3))
    head = OnlineAutoencoder(D, hidden=4, lr=0.02).fit(blobs.float(normal))
    compiled = compile_online(head, QP, tmp_path, gcc=gcc)
    ops, expected = _c_ops(head, blobs, blobs.labels(200, range(4)))
    _, values, state = compiled.run(ops)
    np.testing.assert_allclose(values[[op == PREDICT for op, _, _ in ops]], expected, atol=TOL)
    _check_state(head, state)


def test_c_chain_student_then_online_head_matches_python(
    gcc: str,
    tmp_path: Path,
    series_q: QuantizedStudent,
    series_samples: list[Sample],
) -> None:
    """The headless student's C export feeds the head: int8 sensor inputs in, learning out."""
    ext = FrozenExtractor(series_q)
    keys = series_q.keys
    inputs = {k: torch.stack([s.data[k] for s in series_samples]) for k in keys}
    rng = np.random.default_rng(8)
    rows = rng.integers(0, len(series_samples), 60)
    x = {k: v[rows] for k, v in inputs.items()}
    feats = ext.embed(x, {})
    labels = [int(r) % 3 for r in rows]
    head = OnlineClassifier(ext.dim, lr=0.05, max_classes=4).fit(feats[:20], labels[:20])
    compiled = compile_online(head, series_q, tmp_path, gcc=gcc, name="imu")
    q_in = series_q.quantize_inputs(x)
    ops = []
    for i in range(20, 60):
        ops.append((UPDATE, head.index(labels[i]), [q_in[k][i] for k in keys]))
        head.partial_fit(feats[i], labels[i])
    rc, _, state = compiled.run(ops)
    assert set(rc) == {0}
    _check_state_dim(head, state)


def _check_state_dim(head: OnlineClassifier, state: dict[str, np.ndarray]) -> None:
    k, d = head.n_classes, head.n_features
    w = state["w"].reshape(head.max_classes, d)[:k]
    np.testing.assert_allclose(w, head.coef_, atol=TOL, rtol=0)
    np.testing.assert_allclose(state["mean"], head.norm_.mean_, atol=TOL, rtol=0)
    assert int(state["sizeof"]) == head.ram_bytes()


# --- extractor, streams, drift, replay ---------------------------------------------------------


def test_extractor_is_the_students_int8_embedding(
    series_q: QuantizedStudent, series_samples: list[Sample]
) -> None:
    ext = FrozenExtractor(series_q)
    inputs = {k: torch.stack([s.data[k] for s in series_samples]) for k in series_q.keys}
    q8, valid = ext.embed_int8(inputs, {})
    headless = FrozenExtractor(series_q).q
    expected = golden_forward(headless, series_q.quantize_inputs(inputs), {})
    np.testing.assert_array_equal(q8, expected)
    assert valid.all() and q8.shape == (len(series_samples), series_q.dim)
    bad = {k: v.clone() for k, v in inputs.items()}
    bad[series_q.keys[0]][1, 0, 5] = float("nan")
    feats = ext.embed(bad, {})
    assert np.isnan(feats[1]).all() and np.isfinite(np.delete(feats, 1, axis=0)).all()
    # a NaN in a stream that is switched off does not spoil the sample
    off = {series_q.keys[0]: np.array([True, False] + [True] * (len(series_samples) - 2))}
    assert np.isfinite(ext.embed(bad, off)[1]).all()


@pytest.fixture(scope="module")
def bm_bundle(basicmotions: list[Sample]) -> StudentBundle:
    """A tiny student on BasicMotions windows (accelerometer + gyroscope, 3 × 100)."""
    return tiny_bundle(basicmotions[:12], steps=3)


def test_parse_drift_and_its_errors(bm_bundle: StudentBundle) -> None:
    drifts = parse_drift(
        ["gain:accelerometer=0.5@100,off:gyroscope@150", "nan:gyroscope=0.1@5"], bm_bundle
    )
    assert [str(d) for d in drifts] == [
        "nan:gyroscope=0.1@5",
        "gain:accelerometer=0.5@100",
        "off:gyroscope@150",
    ]
    assert parse_drift("gain:accelerometer/accel_x=2@1", bm_bundle)[0].band == "accel_x"
    assert parse_drift("newclass:b@3", bm_bundle, ["a", "b"])[0].target == "b"
    bad = {
        "gain:accelerometer@3": "needs =VALUE",
        "gain:magnetometer=2@3": "magnetometer",
        "gain:accelerometer/accel_q=2@3": "no band",
        "warp:accelerometer=2@3": "unknown kind",
        "gain:accelerometer=2": "KIND:TARGET",
        "off:accelerometer@1,off:gyroscope@2": "every sensor",
        "nan:gyroscope=2@3": "out of range",
    }
    for spec, message in bad.items():
        with pytest.raises(DriftSpecError, match=message):
            parse_drift(spec, bm_bundle)
    with pytest.raises(DriftSpecError, match="not in the stream"):
        parse_drift("newclass:zebra@3", bm_bundle, ["a", "b"])


def test_gain_and_offset_act_on_physical_values(bm_bundle: StudentBundle) -> None:
    spec = bm_bundle.specs["accelerometer"]
    assert spec.stats is not None
    mean = torch.tensor(spec.stats.mean).view(1, -1, 1)
    std = torch.tensor(spec.stats.std).view(1, -1, 1)
    phys = torch.randn(2, 3, 100) * 3 + 1
    x = {"accelerometer": (phys - mean) / std}
    p = {"accelerometer": torch.ones(2, dtype=torch.bool)}
    gain = parse_drift("gain:accelerometer=0.5@0", bm_bundle)
    out, _ = apply_drift(bm_bundle, x, p, gain)
    torch.testing.assert_close(out["accelerometer"], (0.5 * phys - mean) / std)
    off = parse_drift("offset:accelerometer=2@0", bm_bundle)
    out, _ = apply_drift(bm_bundle, x, p, off)
    torch.testing.assert_close(out["accelerometer"], (phys + 2 - mean) / std)
    _, present = apply_drift(bm_bundle, x, p, parse_drift("off:accelerometer@0", bm_bundle))
    assert not present["accelerometer"].any()


def test_streams_with_other_channels_are_refused(
    bm_bundle: StudentBundle, tmp_path: Path, shared_data: Path
) -> None:
    ts = tmp_path / "three_axes.ts"
    case = ",".join(["0.1"] * 100)
    ts.write_text(
        "@problemName X\n@timeStamps false\n@univariate false\n@dimensions 3\n"
        "@equalLength true\n@seriesLength 100\n@classLabel true a b\n@data\n"
        f"{case}:{case}:{case}:a\n"
    )
    with pytest.raises(StreamChannelError, match=r"3 dimensions.*expects 6.*accelerometer"):
        load_stream(bm_bundle, ts)
    with pytest.raises(StreamChannelError, match=r"accel_x.*ankle_horiz_fwd"):
        load_stream(bm_bundle, shared_data / "imu" / "S06R02E0.csv")


def test_csv_stream_is_cut_into_labelled_windows(bm_bundle: StudentBundle, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    n = 350
    cols = ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"]
    lines = ["timestamp," + ",".join(cols) + ",label"]
    for i in range(n):
        values = ",".join(f"{v:.4f}" for v in rng.normal(size=6))
        lines.append(f"{i / 10:.1f},{values},{int(i >= 200)}")
    path = tmp_path / "stream.csv"
    path.write_text("\n".join(lines) + "\n")
    pool = load_stream(bm_bundle, path)
    assert len(pool.data) == 3 and pool.data.shapes["accelerometer"] == (3, 100)
    assert pool.label_names() == ["0", "0", "1"]
    assert pool.class_names == ("0", "1")


def test_replay_reports_drift_nan_and_a_new_class(
    bm_bundle: StudentBundle, shared_data: Path
) -> None:
    pool = load_stream(bm_bundle, shared_data / "imu" / "BasicMotions_TEST.ts")
    drifts = parse_drift(
        "gain:accelerometer=0.2@30,nan:gyroscope=0.2@10,newclass:Badminton@60",
        bm_bundle,
        pool.class_names,
    )
    cfg = ReplayConfig(length=120, window=30, horizon=60, eval_every=10)
    report = replay(bm_bundle, pool, drifts, cfg)
    out = report.to_dict()
    assert out["windows"]["t_end"] == [30.0, 60.0, 90.0, 120.0]
    assert out["counters"]["skipped_nan"] > 0
    assert out["counters"]["updates"] + out["counters"]["skipped_nan"] == 120
    assert out["counters"]["classes"][-1] == "Badminton"
    assert out["counters"]["grew_at"][0] >= 60
    assert out["forgetting"]["drift"] == "newclass:Badminton@60"
    (rec,) = out["recovery"]
    assert rec["drift"] == "gain:accelerometer=0.2@30" and rec["horizon"] == 60
    assert out["costs"]["ram_bytes"] <= 8 * 1024
    assert out["costs"]["us_per_update_median"] > 0
    assert report.lines()[0].startswith("stream: BasicMotions_TEST.ts")


def test_autoencoder_replay_scores_the_new_class(
    bm_bundle: StudentBundle, shared_data: Path
) -> None:
    pool = load_stream(bm_bundle, shared_data / "imu" / "BasicMotions_TEST.ts")
    drifts = parse_drift("newclass:Running@20", bm_bundle, pool.class_names)
    cfg = ReplayConfig(length=80, window=40, head="autoencoder", eval_every=20)
    report = replay(bm_bundle, pool, drifts, cfg)
    assert report.metric == "auc"
    assert np.isfinite(report.windows["online"][-1])
    assert report.forgetting is None and report.counters["classes"] == []
