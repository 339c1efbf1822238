"""Benchmarks run end to end (numbers themselves are not asserted) and their data helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.data_throughput import main


def test_data_throughput_quick(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    main(
        [
            "--data",
            str(shared_data / "major-tom"),
            "--quick",
            "--no-torchgeo",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    report = json.loads(out.read_text())
    methods = report["methods"]
    assert set(methods) == {"ours", "naive", "raw"}
    for name in ("ours", "naive", "raw"):
        assert methods[name]["chips_per_s"] > 0
        assert methods[name]["chips"] == report["chips"] > 0
    # every method read the very same footprints
    assert len({methods[n]["footprints_sha1"] for n in ("ours", "naive", "raw")}) == 1
    assert report["same_footprints"]
    assert methods["ours"]["output_shape_first_chip"]["s2_l2a_60m"] == [2, 11, 11]
    assert methods["naive"]["output_shape_first_chip"] == [12, 64, 64]
    assert report["targets"]["raw_over_ours"]["value"] > 0
    assert report["machine"]["cpu_count"] >= 1
    assert plot.stat().st_size > 5_000


def test_data_throughput_torchgeo(shared_data: Path, tmp_path: Path) -> None:
    """The optional torchgeo baseline (skipped where torchgeo or `requests` is missing)."""
    pytest.importorskip("requests")
    pytest.importorskip("torchgeo.datasets")
    out = tmp_path / "bench.json"
    main(["--data", str(shared_data / "major-tom"), "--quick", "--chips", "4", "--json", str(out)])
    report = json.loads(out.read_text())
    methods = report["methods"]
    assert methods["torchgeo"]["chips_per_s"] > 0
    assert methods["torchgeo"]["output_shape_first_chip"] == [12, 64, 64]
    assert methods["torchgeo"]["footprints_sha1"] == methods["ours"]["footprints_sha1"]
    assert report["targets"]["ours_over_torchgeo"]["value"] > 0
    assert report["machine"]["torchgeo"]


def test_pretrain_cost_quick(tmp_path: Path) -> None:
    from benchmarks.pretrain_cost import main as cost_main

    out = tmp_path / "cost.json"
    result = cost_main(["--batch", "4", "--steps", "1", "--repeats", "1", "--width", "16",
                        "--json", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"fusion", "early_conv", "early_bandset"}
    assert all(r["macs_per_sample"] > 0 and r["train_samples_per_s"] > 0 for r in rows.values())
    # the CSF-style stem pays for every upsampled band at 10 m: more MACs than ours
    assert result["macs_ratio_csf_over_ours"] > 1.0


def test_pretrain_cost_probe_scores_unseen_places_too(tmp_path: Path) -> None:
    from benchmarks.pretrain_cost import main as cost_main

    result = cost_main(["--batch", "4", "--steps", "1", "--repeats", "1", "--width", "16",
                        "--probe-steps", "1", "--extra-places", "1",
                        "--init-seeds", "2"])  # fmt: skip
    for row in result["rows"].values():
        assert row["probe_test_chips"] > 63  # the 63 chips of the spatial split + one new place
        assert 0 <= row["probe_accuracy"] <= 1 and 0 <= row["probe_accuracy_split_only"] <= 1
        per_seed = row["random_init_accuracy_per_seed"]
        assert len(per_seed) == 2 and row["random_init_accuracy"] == sum(per_seed) / 2


def test_site_calibration_remounts_every_axis(shared_data: Path, tmp_path: Path) -> None:
    import numpy as np

    from benchmarks.site_calibration import ACC_GAIN, GYRO_OFFSET, remount
    from fusion.data.readers.ts_file import read_ts_file

    src = shared_data / "imu" / "BasicMotions_TEST.ts"
    out = remount(src, tmp_path / "Remounted_TEST.ts")
    before, after = read_ts_file(src), read_ts_file(out)
    assert after.labels == before.labels and len(after.values) == len(before.values)
    v0, v1 = np.asarray(before.values[0]), np.asarray(after.values[0])
    np.testing.assert_allclose(v1[0], ACC_GAIN * v0[0] + 5.0, atol=1e-5)
    np.testing.assert_allclose(v1[5], 0.4 * v0[5] + GYRO_OFFSET[2], atol=1e-5)
