"""`fusion probe` through the typer app: JSON, the missing-sensor matrix, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, ["probe", *args, "--no-progress"])
    return result.exit_code, result.output


def test_probe_json_with_a_baseline(checkpoint: Path) -> None:
    code, out = _run(
        ["--checkpoint", str(checkpoint), "--probe", "knn", "--baseline", "random", "--json"]
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["task"] == "classification" and report["subset"] == "all sensors"
    rows = {(r["representation"], r["probe"]): r for r in report["results"]}
    assert set(rows) == {("fusion", "knn"), ("random init", "knn")}
    for r in rows.values():
        assert 0 <= r["metrics"]["accuracy"] <= 1 and r["n_test"] > 0


def test_missing_matrix_json_and_heatmap(checkpoint: Path, tmp_path: Path) -> None:
    png = tmp_path / "matrix.png"
    code, out = _run(
        [
            "--checkpoint", str(checkpoint), "--sensors", "syn_optical,syn_sar",
            "--missing-matrix", "--probe", "knn", "--plot", str(png), "--json",
        ]
    )  # fmt: skip
    assert code == 0, out
    matrix = json.loads(out)["matrix"]
    assert matrix["rows"] == [
        "syn_optical+syn_sar", "syn_optical", "syn_sar", "syn_optical:RGB", "syn_optical:RGB+NIR"
    ]  # fmt: skip
    assert all(c["scores"]["knn"]["accuracy"] >= 0 for c in matrix["cells"])
    assert png.stat().st_size > 5000


def test_bad_input_gets_named_errors(checkpoint: Path, shared_data: Path) -> None:
    ckpt = ["--checkpoint", str(checkpoint)]
    code, out = _run([*ckpt, "--task", "regression"])
    assert code == 2 and "LabelError" in out and "classification labels" in out
    code, out = _run([*ckpt, "--sensors", "radar"])
    assert code == 2 and "SubsetError" in out and "syn_optical" in out
    code, out = _run([*ckpt, "--data", str(shared_data / "imu" / "BasicMotions_TRAIN.ts")])
    assert code == 2 and "IncompatibleDataError" in out and "syn_optical_10m" in out
    code, out = _run(["--checkpoint", str(shared_data / "imu" / "BasicMotions_TRAIN.ts")])
    assert code == 2 and "checkpoint" in out
    # the message names the file (rich must not swallow "[file=…]" as markup)
    code, out = _run([*ckpt, "--data", "no-such-folder"])
    assert code == 2 and "LayoutError" in out and "[file=no-such-folder]" in out.replace("\n", "")
