"""`fusion data inspect` on real and generated data, through the typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.data.generated import write_s1_folder, write_s2_folder

runner = CliRunner()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, ["data", "inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_inspect_bigearthnet_v2_json_schema(shared_data: Path) -> None:
    report = _json([str(shared_data / "bigearthnet-v2")])
    names = sorted(s["name"] for s in report["sensors"])
    assert names == ["s1_grd", "s2_l2a"]
    s2 = next(s for s in report["sensors"] if s["name"] == "s2_l2a")
    assert s2["crs"] == "EPSG:32633"
    res = {b["name"]: b["resolution_m"] for b in s2["bands"]}
    assert res["B02"] == 10 and res["B05"] == 20 and res["B01"] == 60
    assert {tuple(b["shape"]) for b in s2["bands"]} == {(120, 120), (60, 60), (20, 20)}


def test_inspect_time_series_reports_rates(shared_data: Path) -> None:
    report = _json([str(shared_data / "imu" / "BasicMotions_TRAIN.ts")])
    assert [s["name"] for s in report["sensors"]] == ["accelerometer", "gyroscope"]
    assert all(b["rate_hz"] == 10.0 for s in report["sensors"] for b in s["bands"])
    csv = _json([str(shared_data / "imu" / "S06R02E0.csv")])
    assert [s["name"] for s in csv["sensors"]] == ["ankle", "leg", "trunk"]
    assert csv["sensors"][0]["bands"][0]["rate_hz"] == pytest.approx(64.0)


def test_inspect_reports_overlap_and_aligned_streams(tmp_path: Path) -> None:
    write_s2_folder(tmp_path / "s2", size_m=1200)
    write_s1_folder(tmp_path / "s1", size_m=1200, left=500_600.0)
    report = _json([str(tmp_path)])
    (scene,) = report["scenes"]
    assert scene["overlap"][0]["fraction"] == pytest.approx(0.5, abs=0.01)
    assert scene["streams"]["s2_l2a_20m"]["shape"] == [60, 30]
    assert scene["size_m"] == [600.0, 1200.0]


def test_corrupt_file_is_counted_and_skipped_unless_strict(tmp_path: Path) -> None:
    folder = write_s2_folder(tmp_path / "s2", bands={"B02": 10, "B03": 10, "B04": 10})
    (folder / "patch_B04.tif").write_bytes(b"II*\x00garbage")
    report = _json([str(tmp_path)])
    assert report["n_skipped"] == 1 and "patch_B04.tif" in report["skipped"][0]["path"]
    result = runner.invoke(app, ["data", "inspect", str(tmp_path), "--strict"])
    assert result.exit_code == 2
    assert "CorruptFileError" in result.stderr and "patch_B04.tif" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_missing_path_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_human_table_lists_sensors(shared_data: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "major-tom")])
    assert result.exit_code == 0
    assert "s2_l2a" in result.stdout and "EPSG:32648" in result.stdout
    assert "1068×1068@10m" in result.stdout.replace("\n", "") or "1068×1068" in result.stdout


def test_inspect_folder_of_multiband_geotiffs(shared_data: Path) -> None:
    report = _json([str(shared_data / "eurosat-ms")])
    assert len(report["sensors"]) == 271 and report["n_skipped"] == 0
    assert all(len(s["bands"]) == 13 for s in report["sensors"])
    assert len({s["crs"] for s in report["sensors"]}) == 8  # eight UTM zones, none merged
