"""Running a suite: embed both splits once, fit the probe on train, score every test slice.

    from fusion.datatest import load_suite, run_suite
    from fusion.probe import FusionEmbedder

    result = run_suite(load_suite("configs/datatest_synthetic.yaml"),
                       FusionEmbedder.from_checkpoint(path), load_labelled("synthetic"))
    print(f"Data unit tests passed: {result.passed} / {result.total}")

The probe is fitted once, on the training split with every sensor, and never sees a slice:
a slice is scored as the deployed model would meet it. Slices that switch a sensor off are
embedded again without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fusion.data.labelled import LabelledData
from fusion.data.sample import Sample
from fusion.datatest.fields import field_table
from fusion.datatest.mining import Mining, TracInHead, mine_failures
from fusion.datatest.suite import DataTest, Suite
from fusion.probe.embedders import Embedder
from fusion.probe.embedding import Embeddings, embed_dataset
from fusion.probe.errors import EmptySubsetError
from fusion.probe.metrics import Task, check_labels, check_split
from fusion.probe.probes import Probe, make_probe

__all__ = ["Status", "SuiteResult", "TestResult", "run_suite"]

Status = Literal["pass", "fail", "empty"]


@dataclass
class TestResult:
    """The outcome of one data unit test.

    Args:
        test: the test.
        status: ``"pass"``, ``"fail"`` or ``"empty"`` (no test sample in the slice).
        value: the metric on the slice (NaN when empty).
        reference: what ``max_drop`` compared with (``None`` when the test has no max_drop).
        scores: every metric of the task on the slice.
        reasons: why it failed (empty when it passed).
        index: test positions scored, ``(n,)`` (``n = 0`` when empty).
        y_true: their labels; ``y_pred``: the probe's predictions.
        x: their embeddings ``(n, D)`` (as scored: switched-off sensors removed).
        mining: failure mining, for failing tests when asked for.
    """

    __test__ = False  # not a pytest class, despite its name

    test: DataTest
    status: Status
    value: float
    reference: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    y_true: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_pred: np.ndarray = field(default_factory=lambda: np.zeros(0))
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    mining: Mining | None = None

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def ok(self) -> bool:
        """Passed, or empty where the test allows it."""
        return self.status == "pass" or (self.status == "empty" and self.test.allow_empty)

    def to_dict(self) -> dict[str, Any]:
        t = self.test
        return {
            "name": t.name,
            "description": t.description,
            "slice": t.slice.describe(),
            "generated": t.generated,
            "metric": t.metric,
            "threshold": t.threshold(),
            "min": t.minimum,
            "max": t.maximum,
            "max_drop": t.max_drop,
            "allow_empty": t.allow_empty,
            "status": self.status,
            "ok": self.ok,
            "n": self.n,
            "value": None if math.isnan(self.value) else self.value,
            "reference": self.reference,
            "scores": self.scores,
            "reasons": self.reasons,
            "mining": self.mining.to_dict() if self.mining else None,
        }


@dataclass
class SuiteResult:
    """Every test's outcome, and what was run.

    Args:
        suite: the suite.
        results: one per test (the file's, then the generated ones).
        task: the data's task.
        probe: the probe name.
        class_names: class index → name.
        description: what data was loaded.
        n_train: training samples the probe was fitted on.
        n_test: test samples embedded.
        train: the training Samples (for contact sheets); ``test``: the test Samples.
    """

    suite: Suite
    results: list[TestResult]
    task: Task
    probe: str
    class_names: tuple[str, ...] | None
    description: str
    n_train: int
    n_test: int
    train: Sequence[Sample] = field(default_factory=list, repr=False)
    test: Sequence[Sample] = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> int:
        return sum(r.status == "pass" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)

    @property
    def skipped(self) -> int:
        """Empty slices that the test allows."""
        return sum(r.ok and r.status == "empty" for r in self.results)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        """``Data unit tests passed: N / M`` (and the allowed empty slices, if any)."""
        extra = f" ({self.skipped} empty, allowed)" if self.skipped else ""
        return f"Data unit tests passed: {self.passed} / {self.total}{extra}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite.name,
            "suite_file": str(self.suite.path) if self.suite.path else None,
            "data": self.description,
            "task": self.task,
            "probe": self.probe,
            "class_names": list(self.class_names) if self.class_names else None,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "total": self.total,
            "ok": self.ok,
            "tests": [r.to_dict() for r in self.results],
        }


def _embed(
    embedder: Embedder, samples: Sequence[Sample], *, batch_size: int, progress: bool, what: str
) -> Embeddings | None:
    """Embeddings of ``samples`` (``None`` when none has a valid pixel or step left)."""
    if not samples:
        return None
    try:
        return embed_dataset(
            embedder, samples, batch_size=batch_size, progress=progress, description=what
        )
    except EmptySubsetError:
        return None


class _TestSplit:
    """The test split as the probe scores it: embeddings as is and with sensors switched off
    (each sample embedded once per set of sensors off), labels, and the fitted probe."""

    def __init__(
        self,
        embedder: Embedder,
        samples: Sequence[Sample],
        full: Embeddings,
        labels: np.ndarray,
        probe: Probe,
        *,
        batch_size: int,
        progress: bool,
    ) -> None:
        self.embedder = embedder
        self.samples = samples
        self.labels = dict(zip(full.index.tolist(), labels, strict=True))
        self.probe = probe
        self.batch_size = batch_size
        self.progress = progress
        self.cache: dict[tuple[str, ...], dict[int, np.ndarray]] = {}
        self.cache[()] = {int(i): full.x[r] for r, i in enumerate(full.index)}
        # (off, position) pairs with nothing valid left, so that they are not embedded again.
        self.nothing: set[tuple[tuple[str, ...], int]] = set()
        self.overall = probe.score(full.x, labels)

    def rows(self, positions: np.ndarray, off: tuple[str, ...]) -> dict[int, np.ndarray]:
        """Embedding of each test position with ``off`` removed (missing: nothing valid left)."""
        known = self.cache.setdefault(off, {})
        todo = [int(p) for p in positions if int(p) not in known]
        todo = [p for p in todo if (off, p) not in self.nothing]
        if todo:
            emb = _embed(
                self.embedder,
                [self.samples[p].without(*off) for p in todo],
                batch_size=self.batch_size,
                progress=self.progress,
                what=f"embedding ({', '.join(off)} off)",
            )
            if emb is not None:
                for r, i in enumerate(emb.index):
                    known[todo[int(i)]] = emb.x[r]
            self.nothing.update((off, p) for p in todo if p not in known)
        return {int(p): known[int(p)] for p in positions if int(p) in known}

    def scores(self, positions: np.ndarray, off: tuple[str, ...]) -> dict[str, float] | None:
        """Every metric on these positions with ``off`` removed (``None``: none left)."""
        rows = self.rows(positions, off)
        if not rows:
            return None
        index = sorted(rows)
        x = np.stack([rows[i] for i in index])
        return self.probe.score(x, np.stack([self.labels[i] for i in index]))

    def run(self, test: DataTest, table: Sequence[Mapping[str, Any]]) -> TestResult:
        """Score one test: its slice, its metric against the thresholds."""
        rows = self.rows(np.flatnonzero(test.slice.mask(table)), test.slice.off)
        if not rows:
            why = f"empty slice ({test.slice.explain_empty(table)})"
            return TestResult(test, "empty", math.nan, reasons=[why])
        index = np.array(sorted(rows))
        x = np.stack([rows[i] for i in index])
        y = np.stack([self.labels[i] for i in index])
        scores = self.probe.score(x, y)
        reference = None
        if test.max_drop is not None:
            # With sensors off: the same samples with every sensor; else the whole test split.
            ref = self.scores(index, ()) if test.slice.off else self.overall
            reference = ref[test.metric] if ref is not None else None
        value = scores[test.metric]
        reasons = test.failures(value, reference)
        return TestResult(
            test,
            "fail" if reasons else "pass",
            value,
            reference=reference,
            scores=scores,
            reasons=reasons,
            index=index,
            y_true=y,
            y_pred=self.probe.predict(x),
            x=x,
        )


def run_suite(
    suite: Suite,
    embedder: Embedder,
    data: LabelledData,
    *,
    probe: str | None = None,
    mine: bool = True,
    neighbours: int = 4,
    worst: int = 6,
    batch_size: int = 64,
    progress: bool = False,
) -> SuiteResult:
    """Run every test of ``suite`` (and the generated sensor-off tests) on ``data``.

    Args:
        suite: the suite.
        embedder: turns Samples into embeddings (e.g. a :class:`~fusion.probe.FusionEmbedder`).
        data: labelled train/test Samples.
        probe: ``"knn"`` or ``"linear"`` (default: the suite's, else ``"knn"``).
        mine: mine the failures of failing tests (neighbours, confusions, influence).
        neighbours: nearest training samples per worst case.
        worst: worst cases per failing test.
        batch_size: samples per embedding batch.
        progress: show progress bars.

    Raises:
        UnknownMetricError, UnknownFieldError, UnknownSensorError: the suite does not fit the
            data (raised before anything is embedded).
        LabelError, EmptyClassError: the labels do not fit the task.
    """
    probe_name = probe or suite.probe or "knn"
    # Every test reads the test split again: read each sample once (a windowed read per chip).
    train = [data.train[i] for i in range(len(data.train))]  # type: ignore[arg-type]
    test = [data.test[i] for i in range(len(data.test))]  # type: ignore[arg-type]
    table = field_table(test, data.class_names)
    tests = suite.expand(data.specs)
    fields = {k for row in table for k in row}
    suite.check(tests, task=data.task, fields=fields, sensors=set(data.specs))
    kw: dict[str, Any] = {"batch_size": batch_size, "progress": progress}
    tr = embed_dataset(embedder, train, description="embedding train", **kw)
    te = embed_dataset(embedder, test, description="embedding test", **kw)
    ytr = check_labels(data.task, tr.y, where="train split")
    yte = check_labels(data.task, te.y, where="test split")
    check_split(data.task, ytr, yte, data.class_names)
    fitted = make_probe(probe_name, data.task).fit(tr.x, ytr)
    split = _TestSplit(embedder, test, te, yte, fitted, **kw)
    head: TracInHead | None = None
    results = []
    for t in tests:
        result = split.run(t, table)
        if mine and result.status == "fail":
            if head is None:  # fitted once, and only when something fails
                n_out = len(data.class_names) if data.class_names else None
                head = TracInHead(data.task, n_outputs=n_out).fit(tr.x, ytr)
            result.mining = mine_failures(
                head,
                x_train=tr.x,
                y_train=ytr,
                train_index=tr.index,
                x_slice=result.x,
                y_slice=result.y_true,
                y_pred=result.y_pred,
                slice_index=result.index,
                class_names=data.class_names,
                worst=worst,
                neighbours=neighbours,
            )
        results.append(result)
    return SuiteResult(
        suite=suite,
        results=results,
        task=data.task,
        probe=probe_name,
        class_names=data.class_names,
        description=data.description,
        n_train=len(tr.index),
        n_test=len(te.index),
        train=train,
        test=test,
    )
