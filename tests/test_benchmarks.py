"""The data-throughput benchmark runs end to end (numbers themselves are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

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
    methods = json.loads(out.read_text())["methods"]
    for name in ("ours", "naive", "raw"):
        assert methods[name]["chips_per_s"] > 0
    # every method read the very same footprints
    assert len({methods[n]["footprints_sha1"] for n in ("ours", "naive", "raw")}) == 1
    assert methods["ours"]["output_shape_first_chip"]["s2_l2a_60m"] == [2, 11, 11]
    assert plot.stat().st_size > 5_000
