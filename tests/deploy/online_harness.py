"""Compile an exported online head (optionally with its headless student) with the host gcc
beside a small driver, run a sequence of operations through it and read its state back.

Driver protocol (stdin, little-endian): ``int32 n``; per operation ``int32 op``, ``int32 label``
then either the ``D`` int8 embedding bytes or, in chain mode, the int8 bytes of every student
stream (all present; the driver computes the embedding with ``<name>_invoke``). Ops: 0 update,
1 update with a NULL embedding (an invalid sample), 2 predict (classifier) or score
(autoencoder). Stdout: per op ``int32 rc`` and ``float value`` (the predicted class or the
score), then ``uint32 sizeof(state)`` and the raw state struct.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion.deploy.int8 import QParams, QuantizedStudent
from fusion.deploy.online import OnlineClassifier, OnlineHead
from fusion.deploy.online_c import _FLOAT_SCALARS, export_online_c
from tests.deploy.c_harness import CFLAGS

UPDATE, SKIP, PREDICT = 0, 1, 2


def _driver(head: OnlineHead, name: str, q: QuantizedStudent | None) -> str:
    up = name.upper()
    d = head.n_features
    clf = isinstance(head, OnlineClassifier)
    update = f"{name}_online_update(e, label)" if clf else f"{name}_online_update(e)"
    update_null = f"{name}_online_update(0, label)" if clf else f"{name}_online_update(0)"
    predict = f"(float){name}_online_predict(e, 0)" if clf else f"{name}_online_score(e)"
    if q is None:
        includes = ""
        read = f"if (fread(emb, 1, {d}, stdin) != {d}) {{ return 1; }}"
        decls = ""
    else:
        n = len(q.stems)
        includes = f'#include "{name}.h"\n'
        decls = "\n".join(f"static int8_t buf{i}[{up}_STREAM_{i}_SIZE];" for i in range(n))
        ptrs = ", ".join(f"buf{i}" for i in range(n))
        decls += f"\nstatic const int8_t *ptrs[{n}] = {{{ptrs}}};"
        reads = " ".join(
            f"if (fread(buf{i}, 1, {up}_STREAM_{i}_SIZE, stdin) != {up}_STREAM_{i}_SIZE) "
            "{ return 1; }"
            for i in range(n)
        )
        read = f"{reads} if ({name}_invoke(ptrs, {(1 << n) - 1}u, emb) != 0) {{ return 2; }}"
    return f"""#include <stdio.h>
#include <stdint.h>
{includes}#include "{name}_online.h"

static int8_t emb[{d}];
{decls}

int main(void)
{{
    int32_t n, k, op, label;
    const int8_t *e = emb;
    uint32_t size = (uint32_t)sizeof({name}_online);
    {name}_online_init();
    if (fread(&n, 4, 1, stdin) != 1) {{
        return 1;
    }}
    for (k = 0; k < n; ++k) {{
        int32_t rc = 0;
        float value = 0.0f;
        if (fread(&op, 4, 1, stdin) != 1 || fread(&label, 4, 1, stdin) != 1) {{
            return 1;
        }}
        {read}
        (void)label;
        if (op == {UPDATE}) {{
            rc = {update};
        }} else if (op == {SKIP}) {{
            rc = {update_null};
        }} else {{
            value = {predict};
        }}
        fwrite(&rc, 4, 1, stdout);
        fwrite(&value, 4, 1, stdout);
    }}
    fwrite(&size, 4, 1, stdout);
    fwrite(&{name}_online, 1, size, stdout);
    return 0;
}}
"""


@dataclass(frozen=True)
class CompiledOnline:
    head: OnlineHead
    binary: Path
    chain: QuantizedStudent | None

    def run(
        self, ops: Sequence[tuple[int, int, Sequence[np.ndarray]]]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Run ``(op, label, arrays)`` operations (arrays: the embedding, or the student's
        streams in order); returns ``rc (n,)``, ``values (n,)`` and the final state by field."""
        chunks = [np.int32(len(ops)).tobytes()]
        for op, label, arrays in ops:
            chunks.append(np.array([op, label], dtype="<i4").tobytes())
            for a in arrays:
                assert a.dtype == np.int8
                chunks.append(np.ascontiguousarray(a).tobytes())
        res = subprocess.run(
            [str(self.binary)], input=b"".join(chunks), capture_output=True, timeout=60, check=True
        )
        rec = np.dtype([("rc", "<i4"), ("value", "<f4")])
        body = np.frombuffer(res.stdout[: rec.itemsize * len(ops)], dtype=rec)
        tail = res.stdout[rec.itemsize * len(ops) :]
        size = int(np.frombuffer(tail[:4], dtype="<u4")[0])
        raw = tail[4 : 4 + size]
        assert len(raw) == size
        state: dict[str, np.ndarray] = {}
        offset = 0
        for field, (part, n) in self.head.ram_layout().items():
            is_int = part == "scalars" and field not in _FLOAT_SCALARS
            state[field] = np.frombuffer(
                raw, dtype="<i4" if is_int else "<f4", count=n, offset=offset
            )
            offset += 4 * n
        state["sizeof"] = np.asarray(size)
        return body["rc"].copy(), body["value"].copy(), state


def compile_online(
    head: OnlineHead,
    embedding: QuantizedStudent | QParams,
    out_dir: Path,
    *,
    gcc: str = "gcc",
    name: str = "ol",
) -> CompiledOnline:
    """Export ``head`` (its current state becomes the C initial state) and build the driver.
    Given a student, its headless C export is compiled in and feeds the head (chain mode: the
    operations carry the student's int8 inputs); given quantisation parameters, the operations
    carry int8 embeddings."""
    export = export_online_c(head, embedding, out_dir, name)
    chain = embedding if isinstance(embedding, QuantizedStudent) else None
    driver = out_dir / "online_driver.c"
    driver.write_text(_driver(head, name, chain))
    sources = [str(export.source), str(driver)]
    if export.student is not None:
        sources.append(str(export.student.source))
    binary = out_dir / "online_driver"
    subprocess.run(
        [gcc, *CFLAGS, "-o", str(binary), *sources, "-lm"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return CompiledOnline(head, binary, chain)
