"""Reporting a suite's results: a pass/fail table, mining summaries and JUnit XML for CI."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from fusion.datatest.run import SuiteResult, TestResult
from fusion.files import atomic_write

__all__ = ["label_text", "mining_lines", "print_result", "result_table", "write_junit"]


def _value(r: TestResult) -> str:
    return "—" if math.isnan(r.value) else f"{r.value:.3f}"


def _status(r: TestResult) -> str:
    if r.status == "empty":
        return "[yellow]empty[/]" if r.ok else "[bold red]EMPTY[/]"
    return "[green]pass[/]" if r.ok else "[bold red]FAIL[/]"


def result_table(result: SuiteResult) -> Table:
    """A rich table: one row per test (status, slice, value, metric and threshold, samples)."""
    table = Table(
        title=f"{result.suite.name}: {result.probe} probe on {result.description}",
        title_justify="left",
    )
    table.add_column("status")
    table.add_column("test", no_wrap=True)
    table.add_column("slice")
    table.add_column("value", justify="right")
    table.add_column("threshold")
    table.add_column("n", justify="right")
    for r in result.results:
        threshold = f"{r.test.metric} {r.test.threshold()}"
        if r.reference is not None:
            threshold += f" (vs {r.reference:.3f})"
        if r.status == "empty" and r.ok:
            threshold += ", may be empty"
        table.add_row(
            _status(r), r.test.name, r.test.slice.describe(), _value(r), threshold, str(r.n)
        )
    return table


def label_text(result: SuiteResult, y: Any) -> str:
    """A label (class index, multi-hot, value; tensor or array) as text, with class names."""
    y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    names = result.class_names
    if y.ndim == 1:  # multi-hot
        hot = [i for i, v in enumerate(y.tolist()) if v > 0.5]
        return "+".join(names[i] if names else str(i) for i in hot) or "∅"
    if names and float(y) == int(y):
        return names[int(y)]
    return f"{float(y):.3g}"


def _train_label(result: SuiteResult, index: int) -> str:
    return label_text(result, result.train[index].label)


def mining_lines(result: SuiteResult, r: TestResult) -> list[str]:
    """A few lines on what failure mining found for one failing test."""
    m = r.mining
    if m is None:
        return []
    lines = [f"[bold]{r.test.name}[/]: {m.n_failures} of {r.n} wrong; " + "; ".join(r.reasons)]
    if m.confused:
        pairs = ", ".join(f"{p.true} → {p.predicted} ×{p.count}" for p in m.confused)
        lines.append(f"  most confused: {pairs}")
    if m.worst.size:
        pos = {int(i): k for k, i in enumerate(r.index)}
        for t, nb, sim in list(zip(m.worst, m.neighbours, m.similarity, strict=True))[:3]:
            k = pos[int(t)]
            near = ", ".join(
                f"#{int(i)} {_train_label(result, int(i))} ({s:.2f})"
                for i, s in zip(nb, sim, strict=True)
            )
            lines.append(
                f"  test #{int(t)} {label_text(result, r.y_true[k])} → "
                f"{label_text(result, r.y_pred[k])}; nearest train: {near}"
            )
    if m.harmful:
        worst = ", ".join(f"#{i} {_train_label(result, i)} ({v:.3g})" for i, v in m.harmful[:5])
        lines.append(f"  most harmful training samples (TracIn): {worst}")
    if m.sheet:
        lines.append(f"  contact sheet: {m.sheet}")
    return lines


def print_result(result: SuiteResult, console: Console | None = None) -> None:
    """The table, the mining summaries of failing tests, and the pass count."""
    console = console or Console()
    console.print(result_table(result))
    for r in result.results:
        if r.status == "empty" and not r.ok:
            console.print(f"[yellow]{r.test.name}[/]: {r.reasons[0]}", highlight=False)
        for line in mining_lines(result, r):
            console.print(line, highlight=False)
    style = "bold green" if result.ok else "bold red"
    console.print(f"[{style}]{result.summary()}[/]")


def _testcase(parent: ET.Element, suite: str, r: TestResult) -> None:
    case = ET.SubElement(parent, "testcase", classname=f"datatest.{suite}", name=r.test.name)
    case.set("time", "0")
    detail = f"slice: {r.test.slice.describe()}; {r.test.metric} {_value(r)} on {r.n} samples"
    if r.status == "empty" and r.ok:
        ET.SubElement(case, "skipped", message="empty slice (allowed)")
    elif not r.ok:
        kind = "empty" if r.status == "empty" else "threshold"
        fail = ET.SubElement(case, "failure", message="; ".join(r.reasons), type=kind)
        extra: Sequence[str] = []
        if r.mining is not None:
            extra = [f"worst test samples: {r.mining.worst.tolist()}"]
            extra += [f"harmful training samples: {[i for i, _ in r.mining.harmful]}"]
            if r.mining.sheet:
                extra += [f"contact sheet: {r.mining.sheet}"]
        fail.text = "\n".join([detail, *extra])
    ET.SubElement(case, "system-out").text = detail


def write_junit(result: SuiteResult, path: str | Path) -> Path:
    """JUnit XML that CI systems read: one ``testcase`` per test, ``failure`` for failing and
    disallowed empty slices, ``skipped`` for allowed empty ones. Written atomically."""
    counts = {
        "tests": str(result.total),
        "failures": str(result.failed),
        "errors": "0",
        "skipped": str(result.skipped),
    }
    root = ET.Element("testsuites", {"name": "fusion datatest", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": result.suite.name, **counts})
    props = ET.SubElement(suite, "properties")
    for key, value in (("data", result.description), ("probe", result.probe)):
        ET.SubElement(props, "property", name=key, value=value)
    for r in result.results:
        _testcase(suite, result.suite.name, r)
    ET.indent(root)
    tree = ET.ElementTree(root)
    return atomic_write(
        path, lambda fh: tree.write(fh, encoding="utf-8", xml_declaration=True), mode="wb"
    )
