"""Generated IMU data for the registry tests: a "general" population and "sites" whose watch is
mounted differently (accelerometer gain and tilt, gyroscope gain and bias), written as UEA
``*_TRAIN.ts`` / ``*_TEST.ts`` pairs that :func:`fusion.data.labelled.load_labelled` reads.

Three classes differ in the frequency and amplitude of the motion (fixed seed, 10 Hz, 10 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES = ("still", "walk", "run")
RATE_HZ = 10.0
STEPS = 100


@dataclass(frozen=True)
class Mounting:
    """How a site's watch distorts the motion: ``value = gain · motion + offset`` per axis."""

    acc_gain: float = 1.0
    acc_offset: tuple[float, float, float] = (0.0, 0.0, 9.81)
    gyro_gain: float = 1.0
    gyro_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


GENERAL = Mounting()
#: A tilted, more sensitive accelerometer and a damped, biased gyroscope.
HIGHWAY = Mounting(2.5, (5.0, -4.0, 3.0), 0.4, (1.5, 1.0, -1.0))


def imu_cases(
    n_per_class: int, seed: int, mounting: Mounting = GENERAL
) -> tuple[list[np.ndarray], list[int]]:
    """``3 · n_per_class`` cases of shape ``(6, 100)`` (accel xyz, gyro xyz) and their classes."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS) / RATE_HZ
    cases, labels = [], []
    for k in range(len(CLASS_NAMES)):
        for _ in range(n_per_class):
            freq = (0.3, 0.9, 1.8)[k] * rng.uniform(0.85, 1.15)
            amp = (0.4, 1.0, 1.8)[k] * rng.uniform(0.8, 1.2)
            phase = rng.uniform(0, 2 * np.pi, size=(6, 1))
            motion = amp * np.sin(2 * np.pi * freq * t[None, :] + phase)
            motion += rng.normal(scale=0.25, size=motion.shape)
            acc = mounting.acc_gain * motion[:3] + np.asarray(mounting.acc_offset)[:, None]
            gyro = mounting.gyro_gain * motion[3:] + np.asarray(mounting.gyro_offset)[:, None]
            cases.append(np.concatenate([acc, gyro]))
            labels.append(k)
    return cases, labels


def write_ts(
    path: Path,
    cases: Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str] = CLASS_NAMES,
) -> Path:
    """A UEA ``.ts`` file of equal-length 6-dimensional cases with class labels."""
    lines = [
        "@problemName SiteIMU",
        "@timeStamps false",
        "@missing false",
        "@univariate false",
        "@dimensions 6",
        "@equalLength true",
        f"@seriesLength {STEPS}",
        f"@classLabel true {' '.join(class_names)}",
        "@data",
    ]
    for case, label in zip(cases, labels, strict=True):
        dims = ":".join(",".join(f"{v:.5f}" for v in row) for row in case)
        lines.append(f"{dims}:{class_names[label]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_site(
    folder: Path, name: str, mounting: Mounting, *, seed: int, n_train: int = 8, n_test: int = 12
) -> Path:
    """``folder/<name>_TRAIN.ts`` and ``_TEST.ts`` (per class: ``n_train`` and ``n_test``
    cases); returns the TRAIN path."""
    train = imu_cases(n_train, seed, mounting)
    test = imu_cases(n_test, seed + 1000, mounting)
    write_ts(folder / f"{name}_TEST.ts", *test)
    return write_ts(folder / f"{name}_TRAIN.ts", *train)
