"""Per-site calibration on a generated site whose watch is mounted differently: the held-out
accuracy rises, only the cheap parts change, and bad site data gets named errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fusion.deploy.student_io import StudentBundle
from fusion.registry import CalibrationError, SiteDataError
from fusion.registry.calibrate import CalibrationConfig, calibrate, load_site_data
from tests.registry.site_data import HIGHWAY, imu_cases, write_ts


def test_calibration_recovers_the_site(general_student: StudentBundle, highway_data: Path) -> None:
    before = {k: v.clone() for k, v in general_student.student.state_dict().items()}
    result = calibrate(general_student, load_site_data(highway_data, "highway-3"))
    scores = result.report["scores"]
    general, calibrated = scores["general"]["all_sensors"], scores["calibrated"]["all_sensors"]
    assert general["int8"] < 0.6  # the general model is lost on this mounting
    assert calibrated["int8"] >= 0.9 and calibrated["float"] >= 0.9
    assert scores["calibrated"]["mean_over_subsets"]["int8"] >= 0.85  # sensors off too
    assert result.report["gain_int8_points"] > 30
    assert result.report["data"] == {
        "source": str(highway_data),
        "description": result.report["data"]["description"],
        "train": 24,
        "test": 36,
    }
    # Only statistics and the head changed; the general student is untouched.
    after = result.bundle.student.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"head.weight", "head.bias"}
    assert all(torch.equal(general_student.student.state_dict()[k], v) for k, v in before.items())
    base_stats = general_student.specs["accelerometer"].stats
    site_stats = result.bundle.specs["accelerometer"].stats
    assert base_stats is not None and site_stats is not None
    assert site_stats.mean[0] == pytest.approx(HIGHWAY.acc_offset[0], abs=0.5)
    assert base_stats.mean[0] == pytest.approx(0.0, abs=0.5)
    assert result.bundle.quantized.weight_bytes() == general_student.quantized.weight_bytes()
    assert result.bundle.meta["site"] == "highway-3" and result.bundle.baseline is None
    assert any("calibrated" in line for line in result.lines())


def test_bad_site_data_is_named(
    general_student: StudentBundle, highway_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(SiteDataError, match="site 'depot' has no data"):
        load_site_data(tmp_path / "missing_TRAIN.ts", "depot")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiteDataError, match="cannot read labelled data"):
        load_site_data(tmp_path / "empty", "depot")
    other = ("idle", "cycle", "swim")
    write_ts(tmp_path / "o" / "O_TEST.ts", *imu_cases(2, 1), class_names=other)
    path = write_ts(tmp_path / "o" / "O_TRAIN.ts", *imu_cases(3, 2), class_names=other)
    with pytest.raises(SiteDataError, match="not the base model's"):
        calibrate(general_student, load_site_data(path, "depot"))
    site = load_site_data(highway_data, "highway-3")
    only_acc = replace(site, specs={"accelerometer": site.specs["accelerometer"]})
    with pytest.raises(SiteDataError, match="built for sensors"):
        calibrate(general_student, only_acc)
    with pytest.raises(SiteDataError, match="needs at least"):
        calibrate(general_student, replace(site, train=site.train[:3]))
    with pytest.raises(CalibrationError, match="cannot adapt"):
        CalibrationConfig(adapt=("everything",))


def test_deeper_adaptation_touches_only_the_last_blocks(
    general_student: StudentBundle, highway_data: Path
) -> None:
    config = CalibrationConfig(
        adapt=("stats", "bn", "last-block", "head"), block_steps=5, head_steps=20
    )
    result = calibrate(general_student, load_site_data(highway_data, "highway-3"), config)
    before, after = general_student.student.state_dict(), result.bundle.student.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    # Both stems have two blocks: 0 (first) keeps its weights, 1 (last) is tuned.
    assert {"stems.0.blocks.1.pw.weight", "stems.1.blocks.1.dw.weight", "head.weight"} <= changed
    assert not {k for k in changed if ".blocks.0." in k and "_bn" not in k}
    assert "stems.0.blocks.0.dw_bn.running_mean" in changed  # AdaBN re-estimated the statistics
    assert result.report["config"]["adapt"] == ["stats", "bn", "last-block", "head"]
    assert result.report["training"]["bn_layers"] == 8
