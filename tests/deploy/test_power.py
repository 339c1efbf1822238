"""Power policy on a hand-made table: Pareto front, switch-off order, budget lookup; the C
export carries the table, still compiles warning-free and stays bit-exact with the golden model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from fusion.data.collate import Batch
from fusion.deploy import QuantizedStudent, export_c, golden_invoke
from fusion.deploy.errors import PowerConfigError
from fusion.deploy.power import PowerModel, load_power, power_policy
from tests.deploy.c_harness import CFLAGS, CompiledStudent, _driver

POWER = PowerModel({"cam": 100.0, "radar": 500.0, "imu": 1.0}, mcu_mw=5.0, source="test")
TABLE = {
    ("cam", "imu", "radar"): 0.95,
    ("cam", "radar"): 0.93,
    ("imu", "radar"): 0.80,
    ("cam", "imu"): 0.90,
    ("cam",): 0.85,
    ("radar",): 0.75,
    ("imu",): 0.40,
}


def test_pareto_front_and_switch_off_order() -> None:
    policy = power_policy(POWER, TABLE)
    front = [(e.sensors, e.power_mw, e.accuracy) for e in policy.front]
    assert front == [
        (("cam", "imu", "radar"), 606.0, 0.95),
        (("cam", "radar"), 605.0, 0.93),
        (("cam", "imu"), 106.0, 0.90),
        (("cam",), 105.0, 0.85),
        (("imu",), 6.0, 0.40),
    ]  # radar alone (505 mW, 0.75) and imu+radar (506, 0.80) are dominated by cam+imu
    order = policy.order
    assert [s["switch_off"] for s in order] == [[], ["imu"], ["radar"], ["imu"], ["cam"]]
    assert [s["switch_on"] for s in order] == [[], [], ["imu"], [], ["imu"]]
    assert policy.choose(1000).sensors == ("cam", "imu", "radar")  # type: ignore[union-attr]
    assert policy.choose(300).sensors == ("cam", "imu")  # type: ignore[union-attr]
    assert policy.choose(5.5) is None
    assert len(policy.entries) == 7


def test_ties_keep_the_cheaper_and_smaller_subset() -> None:
    table = {("a", "b"): 0.9, ("a",): 0.9, ("b",): 0.5}
    policy = power_policy(PowerModel({"a": 1.0, "b": 1.0}), table)
    assert [e.sensors for e in policy.front] == [("a",)]


def test_power_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("mcu_mw: 2\nsensors:\n  cam: 100\n  imu: {mw: 0.6, note: datasheet}\n")
    model = load_power(f)
    assert model.sensors == {"cam": 100.0, "imu": 0.6} and model.notes["imu"] == "datasheet"
    with pytest.raises(PowerConfigError, match=r"sensors \['radar'\]"):
        power_policy(model, {("cam", "radar"): 0.9, ("cam",): 0.8, ("radar",): 0.5})
    f.write_text("sensors:\n  cam: -1\n")
    with pytest.raises(PowerConfigError, match="≥ 0"):
        load_power(f)
    f.write_text("cam: 1\n")
    with pytest.raises(PowerConfigError, match="sensors:"):
        load_power(f)
    big = power_policy(PowerModel({"a": 7000.0}), {("a",): 0.5})
    with pytest.raises(PowerConfigError, match=r"6553\.5"):
        big.c_code("x")


def test_shipped_power_files_parse() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    assert set(load_power(root / "power_synthetic.yaml").sensors) == {
        "syn_optical", "syn_sar", "syn_thermal",
    }  # fmt: skip
    assert set(load_power(root / "power_imu.yaml").sensors) == {"accelerometer", "gyroscope"}


_POLICY_MAIN = """#include <stdio.h>
#include <stdint.h>
#include "{name}.h"

int main(void)
{{
    uint32_t b;
    uint32_t i;
    printf("%u\\n", (unsigned){up}_POWER_POLICY_SIZE);
    for (i = 0u; i < (uint32_t){up}_POWER_POLICY_SIZE; ++i) {{
        printf("%u %u %u\\n", (unsigned){name}_power_policy[i].power_mw_x10,
               (unsigned){name}_power_policy[i].present_mask,
               (unsigned){name}_power_policy[i].accuracy_permille);
    }}
    while (scanf("%u", &b) == 1) {{
        printf("%u\\n", (unsigned){name}_policy_mask(b));
    }}
    return 0;
}}
"""


def test_c_export_carries_the_policy_and_stays_bit_exact(
    gcc: str, series_q: QuantizedStudent, series_batch: Batch, tmp_path: Path
) -> None:
    keys = series_q.keys  # two streams: treat each as a sensor
    model = PowerModel({keys[0]: 0.6, keys[1]: 2.8})
    table = {(keys[0], keys[1]): 0.97, (keys[0],): 0.9, (keys[1],): 0.8}
    policy = power_policy(model, table, lambda s: series_q.present_mask(s))
    header, source = policy.c_code("imu")
    exp = export_c(series_q, tmp_path, name="imu", extra_header=header, extra_source=source)
    assert "imu_power_policy" in exp.header.read_text()
    assert "imu_policy_mask" in exp.source.read_text()
    # the policy table and lookup, compiled warning-free
    main = tmp_path / "policy_main.c"
    main.write_text(_POLICY_MAIN.format(name="imu", up="IMU"))
    binary = tmp_path / "policy"
    subprocess.run(
        [gcc, *CFLAGS, "-o", str(binary), str(exp.source), str(main)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    out = subprocess.run(
        [str(binary)], input="40 34 6 5 0\n", capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "2"  # the gyroscope alone (28 mW×10, 0.8) is dominated by the accelerometer
    both, acc = series_q.present_mask(keys), series_q.present_mask([keys[0]])
    assert out[1:3] == [f"34 {both} 970", f"6 {acc} 900"]
    assert out[3:8] == [str(both), str(both), str(acc), "0", "0"]
    # inference is still bit-exact with the golden model, every mask
    driver = tmp_path / "driver.c"
    driver.write_text(_driver(series_q, "imu"))
    inf = tmp_path / "driver"
    subprocess.run(
        [gcc, *CFLAGS, "-o", str(inf), str(exp.source), str(driver)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    compiled = CompiledStudent(series_q, exp, inf)
    qin = series_q.quantize_inputs(series_batch.data)
    cases: list[tuple[int, list[np.ndarray | None]]] = []
    for mask in range(1, 1 << len(keys)):
        for i in range(len(series_batch)):
            cases.append((mask, [qin[k][i] if mask >> j & 1 else None for j, k in enumerate(keys)]))
    rc, got = compiled.run(cases)
    assert (rc == 0).all()
    expected = np.stack([golden_invoke(series_q, x, m) for m, x in cases])
    np.testing.assert_array_equal(got, expected)
