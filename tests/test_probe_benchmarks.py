"""The probing benchmarks run end to end on real data: a one-step pretraining, a few samples,
small forests (numbers themselves are not asserted, only their presence and finiteness)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_presto_fuel_moisture_quick(shared_data: Path, tmp_path: Path) -> None:
    from benchmarks.presto_fuel_moisture import GROUPS, PUBLISHED, main

    data = shared_data / "presto" / "fuel_moisture"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    out, png = tmp_path / "presto.json", tmp_path / "presto.png"
    main(["--data", str(data), "--max-steps", "1", "--batch-size", "8", "--out",
          str(tmp_path / "runs"), "--limit", "48", "--trees", "8", "--json", str(out),
          "--plot", str(png)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["pretraining"]["steps"] == 1 and report["pretraining"]["pretrained_here"]
    assert report["seed"] == 0 and "benchmarks.presto_fuel_moisture" in report["command"]
    assert report["n_train"] == report["n_test"] == 48
    reps = {"fusion", "random init", "raw series", "band stats"}
    subsets = {"all sensors", *(f"without {g}" for g in GROUPS)}
    rows = report["rows"]
    assert {(r["representation"], r["subset"], r["probe"]) for r in rows} == {
        (rep, sub, probe) for rep in reps for sub in subsets for probe in ("linear", "forest")
    }
    assert all(_finite(r["rmse"]) and r["rmse"] > 0 and r["n_test"] == 48 for r in rows)
    assert _finite(report["train_mean"]["rmse"])
    assert [c["published_rmse"] for c in report["comparison"]][1:] == [
        PUBLISHED[k]
        for k in ("linear regression", "random forest", "Presto + random forest",
                  "Presto fine-tuned")
    ]  # fmt: skip
    assert all(_finite(c["ours_rmse"]) for c in report["comparison"])
    assert report["target"]["verdict"] in ("PASS", "MISS")
    assert png.stat().st_size > 5_000


def test_presto_validation_split_keeps_sites_apart(shared_data: Path) -> None:
    from benchmarks.presto_fuel_moisture import validation_split
    from fusion.data.readers.presto import PrestoDataset

    data = shared_data / "presto" / "fuel_moisture"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    train = PrestoDataset(data, "train")
    fit, val, info = validation_split(train, 1 / 3, seed=0)
    sites = train.arrays.site[train.rows]
    fit_sites = {sites[i] for i in fit.indices}  # type: ignore[attr-defined]
    val_sites = {sites[i] for i in val.indices}  # type: ignore[attr-defined]
    assert fit_sites and val_sites and not fit_sites & val_sites
    assert info["fit"] + info["val"] == len(train)


def test_imu_basicmotions_quick(shared_data: Path, tmp_path: Path) -> None:
    from benchmarks.imu_basicmotions import main

    data = shared_data / "imu" / "BasicMotions_TRAIN.ts"
    if not data.is_file():
        pytest.skip(f"{data} is absent")
    out, png = tmp_path / "imu.json", tmp_path / "imu.png"
    main(["--data", str(data), "--max-steps", "1", "--batch-size", "8", "--out",
          str(tmp_path / "runs"), "--limit", "16", "--trees", "8", "--json", str(out),
          "--plot", str(png)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["pretraining"]["steps"] == 1
    assert report["n_train"] == report["n_test"] == 16
    reps = {"fusion", "random init", "band stats"}
    subsets = {"accelerometer+gyroscope", "accelerometer", "gyroscope"}
    rows = report["rows"]
    assert {(r["representation"], r["subset"], r["probe"]) for r in rows} == {
        (rep, sub, probe)
        for rep in reps
        for sub in subsets
        for probe in ("linear", "knn", "forest")
    }
    assert all(_finite(r["accuracy"]) and 0 <= r["accuracy"] <= 1 for r in rows)
    assert all(_finite(v) for v in report["headline"].values())
    assert png.stat().st_size > 5_000
