from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from fusion.data.demo import run_demo


def test_demo_generates_aligns_and_batches(tmp_path: Path) -> None:
    summary = run_demo(tmp_path, seed=0, chip_m=640)
    names = sorted(s["name"] for s in summary["inspect"]["sensors"])
    assert names == ["syn_optical", "syn_sar", "syn_thermal"]
    batch = summary["batch"]
    assert batch["syn_optical_10m"]["shape"][2:] == [64, 64]
    assert batch["syn_optical_20m"]["shape"][2:] == [32, 32]
    assert batch["syn_thermal"]["shape"][2:] == [11, 11]
    # the second place has no optical sensor: absent in some samples, present in all for SAR
    assert batch["syn_sar"]["present"] == batch["syn_sar"]["shape"][0]
    assert all(n > 0 for n in summary["splits"].values())
    assert Path(summary["plot"]).stat().st_size > 10_000


def test_demo_cli_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--json", "--chip-m", "1200"])
    assert result.exit_code == 0, result.output
    assert '"syn_optical_10m"' in result.stdout


def test_demo_config_file_and_bad_option(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(f"out: {tmp_path / 'o'}\nseed: 1\nchip-m: 1200\n")
    result = CliRunner().invoke(app, ["demo", "--config", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    assert '"chip_m": 1200.0' in result.stdout and (tmp_path / "o" / "chip.png").exists()
    cfg.write_text("chip_size: 3\n")
    bad = CliRunner().invoke(app, ["demo", "--config", str(cfg)])
    assert bad.exit_code == 2 and "chip_size" in bad.stderr
