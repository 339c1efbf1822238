"""Compile an exported student with the host gcc beside a small driver and run cases through it.

Driver protocol (stdin, little-endian): ``uint32 n``; per case ``uint32 mask``, ``uint32
null_mask`` (streams passed as ``NULL``), then the int8 bytes of every stream whose bit is set in
``mask`` and not in ``null_mask``. Stdout per case: ``int32 rc`` and the output bytes. Absent
streams are passed as ``NULL``, so a stem that read an absent input would crash.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion.deploy import CExport, QuantizedStudent, export_c

CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2")


def _driver(q: QuantizedStudent, name: str) -> str:
    up = name.upper()
    n = len(q.stems)
    sizes = ", ".join(f"{up}_STREAM_{i}_SIZE" for i in range(n))
    bufs = "\n".join(f"static int8_t buf{i}[{up}_STREAM_{i}_SIZE];" for i in range(n))
    ptrs = ", ".join(f"buf{i}" for i in range(n))
    return f"""#include <stdio.h>
#include <stdint.h>
#include "{name}.h"

static const uint32_t sizes[{n}] = {{{sizes}}};
{bufs}
static int8_t *const bufs[{n}] = {{{ptrs}}};

int main(void)
{{
    uint32_t n, k, i, mask, null_mask;
    const int8_t *ptrs[{n}];
    int8_t out[{up}_OUTPUT_SIZE];
    if (fread(&n, 4, 1, stdin) != 1) {{
        return 1;
    }}
    for (k = 0; k < n; ++k) {{
        int32_t rc;
        if (fread(&mask, 4, 1, stdin) != 1 || fread(&null_mask, 4, 1, stdin) != 1) {{
            return 1;
        }}
        for (i = 0; i < {n}; ++i) {{
            ptrs[i] = 0;
            if (((mask >> i) & 1u) && !((null_mask >> i) & 1u)) {{
                if (fread(bufs[i], 1, sizes[i], stdin) != sizes[i]) {{
                    return 1;
                }}
                ptrs[i] = bufs[i];
            }}
        }}
        rc = {name}_invoke(ptrs, mask, out);
        fwrite(&rc, 4, 1, stdout);
        fwrite(out, 1, {up}_OUTPUT_SIZE, stdout);
    }}
    return 0;
}}
"""


@dataclass(frozen=True)
class CompiledStudent:
    q: QuantizedStudent
    export: CExport
    binary: Path

    def run(
        self,
        cases: Sequence[tuple[int, Sequence[np.ndarray | None]]],
        null_masks: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rc (n,), outputs (n, out_dim) int8)`` for cases ``(mask, inputs in stream order)``."""
        nulls = list(null_masks) if null_masks is not None else [0] * len(cases)
        chunks = [np.uint32(len(cases)).tobytes()]
        for (mask, inputs), null in zip(cases, nulls, strict=True):
            chunks.append(np.array([mask, null], dtype="<u4").tobytes())
            for i, x in enumerate(inputs[: len(self.q.stems)]):
                if (mask >> i) & 1 and not (null >> i) & 1:
                    assert x is not None and x.dtype == np.int8
                    chunks.append(np.ascontiguousarray(x).tobytes())
        res = subprocess.run(
            [str(self.binary)], input=b"".join(chunks), capture_output=True, timeout=60, check=True
        )
        rec = np.dtype([("rc", "<i4"), ("out", "i1", (self.q.out_dim,))])
        arr = np.frombuffer(res.stdout, dtype=rec)
        assert len(arr) == len(cases)
        return arr["rc"].copy(), arr["out"].copy()


def compile_student(
    q: QuantizedStudent, out_dir: Path, *, gcc: str = "gcc", name: str = "fusion_student"
) -> CompiledStudent:
    export = export_c(q, out_dir, name=name)
    driver = out_dir / "driver.c"
    driver.write_text(_driver(q, name))
    binary = out_dir / "driver"
    subprocess.run(
        [gcc, *CFLAGS, "-o", str(binary), str(export.source), str(driver)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return CompiledStudent(q, export, binary)
