"""Per-site calibration of a BasicMotions student whose watch is mounted differently.

The "site" is BasicMotions (train and test splits) recorded through another mounting: the
accelerometer more sensitive and tilted (gain 2.5, offset 5, −4, 3 m/s²), the gyroscope damped
and biased (gain 0.4, offset 1.5, 1, −1 rad/s). The student — distilled on the original
recordings by ``benchmarks/deploy_report.py`` — is scored on the site's *test* split as it is
(general), with only the site's normalisation statistics, and calibrated on the site's *train*
split (:func:`fusion.registry.calibrate.calibrate`) with each choice of adapted parts.

    python -m benchmarks.deploy_report --only imu        # writes runs/deploy_report/student_imu
    python -m benchmarks.site_calibration --json benchmarks/results/site_calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion.data.readers.ts_file import read_ts_file
from fusion.data.shared import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
ACC_GAIN, ACC_OFFSET = 2.5, (5.0, -4.0, 3.0)
GYRO_GAIN, GYRO_OFFSET = 0.4, (1.5, 1.0, -1.0)
ADAPTS = (("stats", "head"), ("stats", "bn", "head"), ("stats", "last-block", "head"))


def remount(src: Path, dst: Path) -> Path:
    """``src`` (a 6-dimensional BasicMotions ``.ts``: accelerometer xyz, gyroscope xyz) seen
    through the site's mounting, written to ``dst`` with the same header."""
    ts = read_ts_file(src)
    header = [line for line in src.read_text().splitlines() if line.startswith("@")]
    body = []
    for values, label in zip(ts.values, ts.labels, strict=True):
        v = np.asarray(values, dtype=np.float64)
        acc = ACC_GAIN * v[:3] + np.asarray(ACC_OFFSET)[:, None]
        gyro = GYRO_GAIN * v[3:] + np.asarray(GYRO_OFFSET)[:, None]
        rows = np.concatenate([acc, gyro])
        body.append(":".join(",".join(f"{x:.6f}" for x in row) for row in rows) + f":{label}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(header + body) + "\n")
    return dst


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from fusion.deploy.student_io import load_student
    from fusion.registry.calibrate import CalibrationConfig, calibrate, load_site_data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", default="runs/deploy_report/student_imu")
    p.add_argument("--data", default=str(shared_data_dir() / "imu"))
    p.add_argument("--work", default="runs/site_calibration", help="site .ts files")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    student = Path(args.student)
    if not (student / "student.json").is_file():
        sys.exit(f"{student} is not a student directory: run `python -m benchmarks.deploy_report "
                 "--only imu` first (or pass --student)")  # fmt: skip
    base = load_student(student)
    work, data = Path(args.work), Path(args.data)
    for split in ("TRAIN", "TEST"):
        remount(data / f"BasicMotions_{split}.ts", work / f"Remounted_{split}.ts")
    site = load_site_data(work / "Remounted_TRAIN.ts", "remounted-wrist")
    runs = []
    for adapt in ADAPTS:
        t0 = time.perf_counter()
        result = calibrate(base, site, CalibrationConfig(adapt=adapt))
        print("\n".join(result.lines()), flush=True)
        runs.append({**result.report, "seconds": round(time.perf_counter() - t0, 1)})
    report = {
        "benchmark": "site_calibration",
        "command": " ".join(["python -m benchmarks.site_calibration", *sys.argv[1:]]),
        "student": str(student),
        "mounting": {
            "accelerometer": {"gain": ACC_GAIN, "offset": ACC_OFFSET},
            "gyroscope": {"gain": GYRO_GAIN, "offset": GYRO_OFFSET},
        },
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
