"""The embedded registry: immutable versions, references, tags, aliases with rollback history,
checked checkouts, no half version after a failure or a killed process, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from fusion.registry import (
    BadReferenceError,
    Registry,
    RegistryCorruptError,
    RegistryNotFoundError,
    RollbackError,
    UnknownAliasError,
    UnknownModelError,
    UnknownVersionError,
    VersionExistsError,
    data_fingerprint,
    diff_versions,
    parse_ref,
    parse_tag,
)
from fusion.registry.refs import SemVer
from fusion.registry.store import DB_NAME


def make_files(folder: Path, seed: int = 0) -> Path:
    """A small version folder: two files, one in a subfolder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "student.json").write_text(f'{{"seed": {seed}}}')
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * (seed + 1))
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg", create=True)


def test_refs_and_tags_parse() -> None:
    assert str(parse_ref("imu:1.4.0")) == "imu:1.4.0"
    assert parse_ref("imu@production").alias == "production"
    assert parse_ref("imu").version is None and parse_ref("imu").alias is None
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.3")
    assert parse_tag("site:highway-3") == ("site", "highway-3")
    assert parse_tag("owner=ops:team") == ("owner", "ops:team")
    for bad in ("imu:1.4", "imu:01.0.0", "IMU:1.0.0", "imu@1x", "imu@"):
        with pytest.raises(BadReferenceError):
            parse_ref(bad)
    with pytest.raises(BadReferenceError):
        parse_tag("site")


def test_register_show_and_immutability(registry: Registry, tmp_path: Path) -> None:
    src = make_files(tmp_path / "v1")
    mv = registry.register(
        "imu", "1.0.0", src, metrics={"acc": 0.8}, sensors={"acc": ["acc"]}, tags={"site": "lab"}
    )
    assert mv.ref == "imu:1.0.0" and mv.tags == {"site": "lab"}
    assert set(mv.files) == {"student.json", "sub/weights.bin"}
    assert mv.metrics == {"acc": 0.8} and mv.sensors == {"acc": ["acc"]}
    with pytest.raises(VersionExistsError, match=r"imu:1\.1\.0 instead"):
        registry.register("imu", "1.0.0", make_files(tmp_path / "other", seed=5))
    assert registry.get("imu", "1.0.0").files == mv.files  # untouched
    # The database itself refuses to rewrite or delete a version.
    with sqlite3.connect(registry.db_path) as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("UPDATE versions SET metrics = '{}' WHERE name = 'imu'")
    with sqlite3.connect(registry.db_path) as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("DELETE FROM versions")
    with sqlite3.connect(registry.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resolve_and_named_errors(registry: Registry, tmp_path: Path) -> None:
    for i, v in enumerate(("1.0.0", "1.10.0", "1.9.0")):
        registry.register("imu", v, make_files(tmp_path / v, seed=i))
    assert registry.resolve("imu").ref == "imu:1.10.0"  # numeric, not text, order
    assert [str(m.version) for m in registry.versions("imu")] == ["1.0.0", "1.9.0", "1.10.0"]
    assert registry.next_version("imu") == "1.11.0" and registry.next_version("new") == "1.0.0"
    with pytest.raises(UnknownModelError, match="models: imu"):
        registry.resolve("cam:1.0.0")
    with pytest.raises(UnknownVersionError, match=r"versions: 1\.0\.0, 1\.9\.0, 1\.10\.0"):
        registry.resolve("imu:2.0.0")
    with pytest.raises(UnknownAliasError, match="aliases: none"):
        registry.resolve("imu@production")
    with pytest.raises(RegistryNotFoundError):
        Registry(tmp_path / "nowhere")
    with pytest.raises(UnknownVersionError):
        registry.register("imu", "2.0.0", make_files(tmp_path / "x"), parent="imu:3.0.0")
    assert registry.versions("imu")[-1].ref == "imu:1.10.0"  # the failed one left nothing


def test_tags_find(registry: Registry, tmp_path: Path) -> None:
    registry.register("imu", "1.0.0", make_files(tmp_path / "a"))
    registry.register("imu", "1.1.0", make_files(tmp_path / "b", seed=1))
    registry.set_tag("imu:1.1.0", "site:highway-3")
    registry.set_tag("imu:1.0.0", "site=lab")
    assert [m.ref for m in registry.find("site:highway-3")] == ["imu:1.1.0"]
    registry.set_tag("imu:1.1.0", "site:depot")  # a key holds one value per version
    assert registry.find("site:highway-3") == []
    assert registry.delete_tag("imu:1.1.0", "site").tags == {}


def test_promote_rollback_history(registry: Registry, tmp_path: Path) -> None:
    for i, v in enumerate(("1.0.0", "1.1.0", "1.2.0", "1.3.0")):
        registry.register("imu", v, make_files(tmp_path / v, seed=i))
    registry.promote("imu:1.0.0", "production")
    registry.promote("imu:1.1.0", "production")
    registry.promote("imu:1.2.0", "production")
    assert registry.resolve("imu@production").ref == "imu:1.2.0"
    assert registry.get("imu", "1.2.0").aliases == ("production",)
    assert registry.rollback("imu", "production").version == "1.1.0"
    assert registry.rollback("imu", "production").version == "1.0.0"
    with pytest.raises(RollbackError):
        registry.rollback("imu", "production")
    registry.promote("imu:1.3.0", "production")
    assert registry.rollback("imu", "production").version == "1.0.0"
    history = registry.history("imu", "production")
    assert [(e.action, e.version) for e in history] == [
        ("promote", "1.0.0"),
        ("promote", "1.1.0"),
        ("promote", "1.2.0"),
        ("rollback", "1.1.0"),
        ("rollback", "1.0.0"),
        ("promote", "1.3.0"),
        ("rollback", "1.0.0"),
    ]
    with pytest.raises(UnknownAliasError):
        registry.rollback("imu", "staging")


def test_checkout_checks_every_file(registry: Registry, tmp_path: Path) -> None:
    mv = registry.register("imu", "1.0.0", make_files(tmp_path / "a"))
    out = registry.checkout("imu:1.0.0", tmp_path / "out")
    assert (out / "sub" / "weights.bin").read_bytes() == bytes(range(256))
    blob = registry.blobs.path(mv.files["sub/weights.bin"][0])
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered")
    with pytest.raises(RegistryCorruptError, match="altered"):
        registry.checkout("imu:1.0.0", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_failure_mid_register_leaves_no_version(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Registry._insert_files

    def fail_after_insert(self: Registry, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(Registry, "_insert_files", fail_after_insert)
    with pytest.raises(OSError, match="disk full"):
        registry.register("imu", "1.0.0", make_files(tmp_path / "a"), tags={"site": "lab"})
    monkeypatch.undo()
    assert registry.models() == [] and registry.find("site:lab") == []
    assert registry.register("imu", "1.0.0", make_files(tmp_path / "a")).ref == "imu:1.0.0"


def _die_mid_register(root: str, src: str) -> None:
    """Child process: register, but die (no cleanup at all) after the rows are inserted and
    before the commit."""
    original = Registry._insert_files

    def die(self: Registry, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        os._exit(3)

    Registry._insert_files = die  # type: ignore[method-assign,assignment]
    Registry(root).register("imu", "1.0.0", src)


def test_killed_process_mid_register_leaves_no_version(registry: Registry, tmp_path: Path) -> None:
    src = make_files(tmp_path / "a")
    proc = mp.get_context("spawn").Process(
        target=_die_mid_register, args=(str(registry.root), str(src))
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    again = Registry(registry.root)  # the dead writer's lock and rows are gone
    assert again.models() == []
    assert again.register("imu", "1.0.0", src).ref == "imu:1.0.0"
    with sqlite3.connect(again.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _register_many(root: str, src: str, prefix: str, n: int, barrier: Any, times: Any) -> None:
    reg = Registry(root, create=True)
    barrier.wait(60)  # both writers start together
    start = time.monotonic()
    for i in range(n):
        reg.register("imu", f"{prefix}.{i}.0", src, metrics={"i": i})
        reg.promote(f"imu:{prefix}.{i}.0", "production")
        reg.set_tag(f"imu:{prefix}.{i}.0", f"writer:{prefix}")
    times.put((start, time.monotonic()))


def test_two_processes_register_at_once(tmp_path: Path) -> None:
    root = tmp_path / "shared-reg"  # both create it: the schema set-up must race safely too
    ctx = mp.get_context("spawn")
    barrier, times = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_register_many,
            args=(str(root), str(make_files(tmp_path / p, int(p))), p, 20, barrier, times),
        )
        for p in ("1", "2")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    (s1, e1), (s2, e2) = times.get(timeout=5), times.get(timeout=5)
    assert max(s1, s2) < min(e1, e2)  # the two writers really overlapped
    reg = Registry(root)
    assert len(reg.versions("imu")) == 40
    assert len(reg.find("writer:1")) == 20 and len(reg.find("writer:2")) == 20
    assert len(reg.history("imu", "production")) == 40
    for mv in reg.versions("imu"):
        reg.checkout(mv, tmp_path / "co" / str(mv.version))  # every file intact
    with sqlite3.connect(root / DB_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_fingerprint_and_diff(registry: Registry, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "X_TRAIN.ts").write_text("train")
    (data / "X_TEST.ts").write_text("test")
    fp = data_fingerprint(data / "X_TRAIN.ts")
    assert fp["files"] == 2
    (data / "X_TEST.ts").write_text("test, changed")
    assert data_fingerprint(data / "X_TRAIN.ts")["sha256"] != fp["sha256"]
    assert data_fingerprint("synthetic")["generated"] is True
    a = registry.register(
        "imu",
        "1.0.0",
        make_files(tmp_path / "a"),
        metrics={"site": {"acc": 0.5}, "n": 10},
        budget={"fits": True, "flash_bytes": 1000, "ram_bytes": 50},
        sensors={"acc": ["acc"], "gyro": ["gyro"]},
        data=fp,
    )
    b = registry.register(
        "imu",
        "1.1.0",
        make_files(tmp_path / "b", seed=1),
        parent="imu:1.0.0",
        metrics={"site": {"acc": 0.75}, "n": 10},
        budget={"fits": True, "flash_bytes": 1200, "ram_bytes": 50},
        sensors={"acc": ["acc"]},
        data=fp,
    )
    d = diff_versions(a, b)
    assert d["metrics"] == {"site.acc": {"a": 0.5, "b": 0.75, "delta": 0.25}}
    assert d["sensors"]["removed"] == ["gyro"] and d["sensors"]["added"] == []
    assert d["budget"] == {"flash_bytes": {"a": 1000, "b": 1200, "delta": 200}}
    assert d["lineage"]["parent"] == {"a": None, "b": "imu:1.0.0"} and d["lineage"]["same_data"]
    assert d["files_changed"] == ["student.json", "sub/weights.bin"]
