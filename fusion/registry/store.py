"""The embedded model registry: SQLite for versions, aliases and tags, a content-addressed file
store for their files. No server: a folder is the registry.

Layout::

    REGISTRY/
      registry.db     SQLite in WAL mode: versions, files, tags, aliases, alias_events
      blobs/          files by sha256 (:class:`~fusion.registry.blobs.BlobStore`)

Guarantees:

* **Immutable versions.** ``NAME:MAJOR.MINOR.PATCH`` is registered once; registering it again
  raises :class:`VersionExistsError`. Triggers in the database refuse any UPDATE of a version or
  its file list; only tags and aliases (pointers *to* versions) change.
* **No half version.** :meth:`Registry.register` first stores every file in the blob store (each
  written to a temporary file, flushed and renamed to its digest), then inserts the version, its
  file list and tags in **one** ``BEGIN IMMEDIATE`` transaction. A crash before the commit leaves
  no row (SQLite discards the uncommitted transaction), at most unreferenced blobs.
* **Concurrent writers.** Every write is one immediate transaction; WAL lets readers proceed while
  one writer holds the lock, and other writers wait (``busy_timeout``) instead of failing. The
  database must live on a local file system (SQLite's locking is unreliable over NFS).
* **Lineage.** A version records its parent version, a fingerprint of the data it was made from
  (sha256 of the data files), metrics (JSON), its budget fit and its sensors.
* **Aliases with history.** :meth:`Registry.promote` moves an alias (``production``) to a version;
  :meth:`Registry.rollback` moves it back to the target before the last promotion that is not yet
  undone; every move is kept in ``alias_events``.

An MLflow backend (aliases and tags map one to one onto MLflow's registered-model aliases and
model-version tags) is **not implemented**: this embedded registry is the only backend.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fusion.registry.blobs import BlobStore
from fusion.registry.errors import (
    RegistryError,
    RegistryNotFoundError,
    RollbackError,
    UnknownAliasError,
    UnknownModelError,
    UnknownVersionError,
    VersionExistsError,
)
from fusion.registry.records import AliasEvent, ModelVersion
from fusion.registry.refs import ModelRef, SemVer, check_alias, check_name, parse_ref, parse_tag
from fusion.registry.schema import SCHEMA, SCHEMA_VERSION

__all__ = ["DB_NAME", "AliasEvent", "ModelVersion", "Registry"]

DB_NAME = "registry.db"
#: Seconds a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 60.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Registry:
    """A registry in a folder (see the module docstring).

    Args:
        root: the registry folder.
        create: create the folder and database when missing (otherwise
            :class:`RegistryNotFoundError`).
    """

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        if not self.db_path.is_file():
            if not create:
                raise RegistryNotFoundError(
                    f"no registry at {self.root} (no {DB_NAME}); register a model there first"
                )
            self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.root / "blobs")
        self._init_schema()

    # --- connections ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: connections must not cross threads (the HTTP service)
        # or processes, and opening one is cheap next to reading a model.
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")  # a commit survives a power cut
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate (write-locked from the start) transaction, rolled back on any error."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _init_schema(self) -> None:
        with self._connect() as conn:
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.OperationalError:  # no table yet: a new registry
                row = None
            if row is None:
                # Persistent: the database stays in WAL mode for every later connection.
                conn.execute("PRAGMA journal_mode = WAL")
                # One script, one transaction, every statement IF NOT EXISTS (or OR IGNORE): so
                # processes that open a new registry at the same moment all succeed.
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{SCHEMA}\nINSERT OR IGNORE INTO meta (key, value) "
                    f"VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
                )
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if int(row["value"]) != SCHEMA_VERSION:
            raise RegistryError(
                f"{self.db_path} has schema version {row['value']}; this toolkit reads "
                f"version {SCHEMA_VERSION}"
            )

    # --- registering ------------------------------------------------------------------------
    def register(
        self,
        name: str,
        version: str | SemVer,
        source: str | Path,
        *,
        parent: str | None = None,
        data: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        sensors: Mapping[str, Any] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Register the files under the folder ``source`` as ``name:version``.

        Args:
            name: model name (see :func:`~fusion.registry.refs.check_name`).
            version: ``MAJOR.MINOR.PATCH``.
            source: a folder; every regular file under it is stored (relative paths kept).
            parent: ``NAME:VERSION`` (or any reference) this version derives from; it must exist
                and is stored resolved to ``NAME:VERSION``.
            data: data fingerprint (:func:`~fusion.registry.lineage.data_fingerprint`).
            metrics: JSON-serialisable metrics.
            budget: the budget report as a dict.
            sensors: sensor → stream keys.
            description: free text.
            tags: initial tags.

        Raises:
            VersionExistsError: the version is already registered (nothing is changed).
            UnknownModelError, UnknownVersionError: the parent does not exist.
            RegistryError: ``source`` is not a folder with at least one file.
        """
        check_name(name)
        semver = version if isinstance(version, SemVer) else SemVer.parse(version)
        folder = Path(source)
        if not folder.is_dir():
            raise RegistryError(f"{folder} is not a folder; a version is a folder of files")
        paths = sorted(p for p in folder.rglob("*") if p.is_file())
        if not paths:
            raise RegistryError(f"{folder} holds no file to register")
        clean_tags = {k: v for k, v in (parse_tag(f"{k}={v}") for k, v in (tags or {}).items())}
        if self._exists(name, str(semver)):  # fail before copying anything
            raise self._exists_error(name, semver)
        # Blobs first (idempotent, invisible until referenced), the rows last, in one transaction.
        stored = {p.relative_to(folder).as_posix(): self.blobs.put(p) for p in paths}
        with self._write() as conn:
            if self._exists(name, str(semver), conn):
                raise self._exists_error(name, semver)
            parent_ref = self._resolve(conn, parse_ref(parent)).ref if parent else None
            self._insert_version(
                conn,
                name,
                semver,
                parent=parent_ref,
                data=dict(data) if data is not None else None,
                metrics=dict(metrics or {}),
                budget=dict(budget) if budget is not None else None,
                sensors=dict(sensors or {}),
                description=description,
            )
            self._insert_files(conn, name, str(semver), stored)
            for key, value in clean_tags.items():
                conn.execute(
                    "INSERT INTO tags (name, version, key, value) VALUES (?, ?, ?, ?)",
                    (name, str(semver), key, value),
                )
        return self.get(name, semver)

    def _exists_error(self, name: str, version: SemVer) -> VersionExistsError:
        return VersionExistsError(
            f"{name}:{version} is already registered and versions are immutable; register "
            f"{name}:{self.next_version(name)} instead"
        )

    def _insert_version(
        self, conn: sqlite3.Connection, name: str, version: SemVer, **fields: Any
    ) -> None:
        conn.execute(
            "INSERT INTO versions (name, version, major, minor, patch, created_at, parent, data, "
            "metrics, budget, sensors, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                str(version),
                version.major,
                version.minor,
                version.patch,
                _now(),
                fields["parent"],
                None if fields["data"] is None else _dumps(fields["data"]),
                _dumps(fields["metrics"]),
                None if fields["budget"] is None else _dumps(fields["budget"]),
                _dumps(fields["sensors"]),
                fields["description"],
            ),
        )

    def _insert_files(
        self, conn: sqlite3.Connection, name: str, version: str, stored: Mapping[str, Any]
    ) -> None:
        conn.executemany(
            "INSERT INTO files (name, version, path, sha256, size) VALUES (?, ?, ?, ?, ?)",
            [(name, version, path, digest, size) for path, (digest, size) in stored.items()],
        )

    # --- reading ----------------------------------------------------------------------------
    def _exists(self, name: str, version: str, conn: sqlite3.Connection | None = None) -> bool:
        sql = "SELECT 1 FROM versions WHERE name = ? AND version = ?"
        if conn is not None:
            return conn.execute(sql, (name, version)).fetchone() is not None
        with self._connect() as c:
            return c.execute(sql, (name, version)).fetchone() is not None

    def models(self) -> list[str]:
        """Every model name, sorted."""
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT name FROM versions ORDER BY name").fetchall()
        return [str(r["name"]) for r in rows]

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``, or of every model), by name then semantic version."""
        with self._connect() as conn:
            if name is None:
                rows = conn.execute(
                    "SELECT * FROM versions ORDER BY name, major, minor, patch"
                ).fetchall()
            else:
                self._require_model(conn, name)
                rows = conn.execute(
                    "SELECT * FROM versions WHERE name = ? ORDER BY major, minor, patch", (name,)
                ).fetchall()
            return [self._version(conn, r) for r in rows]

    def get(self, name: str, version: str | SemVer) -> ModelVersion:
        """One version.

        Raises:
            UnknownModelError, UnknownVersionError: listing what exists.
        """
        semver = version if isinstance(version, SemVer) else SemVer.parse(version)
        with self._connect() as conn:
            return self._resolve(conn, ModelRef(name, version=semver))

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference (``NAME:VERSION``, ``NAME@ALIAS``, ``NAME``) names now.

        Raises:
            BadReferenceError: the reference is malformed.
            UnknownModelError, UnknownVersionError, UnknownAliasError: listing what exists.
        """
        parsed = ref if isinstance(ref, ModelRef) else parse_ref(ref)
        with self._connect() as conn:
            return self._resolve(conn, parsed)

    def _require_model(self, conn: sqlite3.Connection, name: str) -> None:
        if conn.execute("SELECT 1 FROM versions WHERE name = ?", (name,)).fetchone() is None:
            known = [r[0] for r in conn.execute("SELECT DISTINCT name FROM versions ORDER BY 1")]
            raise UnknownModelError(
                f"no model {name!r} in the registry at {self.root}; models: "
                f"{', '.join(known) or 'none'}"
            )

    def _resolve(self, conn: sqlite3.Connection, ref: ModelRef) -> ModelVersion:
        self._require_model(conn, ref.name)
        if ref.alias is not None:
            row = conn.execute(
                "SELECT version FROM aliases WHERE name = ? AND alias = ?", (ref.name, ref.alias)
            ).fetchone()
            if row is None:
                known = [
                    r[0]
                    for r in conn.execute(
                        "SELECT alias FROM aliases WHERE name = ? ORDER BY alias", (ref.name,)
                    )
                ]
                raise UnknownAliasError(
                    f"model {ref.name!r} has no alias {ref.alias!r}; aliases: "
                    f"{', '.join(known) or 'none'}"
                )
            version = str(row["version"])
        elif ref.version is not None:
            version = str(ref.version)
        else:
            row = conn.execute(
                "SELECT version FROM versions WHERE name = ? "
                "ORDER BY major DESC, minor DESC, patch DESC LIMIT 1",
                (ref.name,),
            ).fetchone()
            version = str(row["version"])
        found = conn.execute(
            "SELECT * FROM versions WHERE name = ? AND version = ?", (ref.name, version)
        ).fetchone()
        if found is None:
            known = [
                r[0]
                for r in conn.execute(
                    "SELECT version FROM versions WHERE name = ? ORDER BY major, minor, patch",
                    (ref.name,),
                )
            ]
            raise UnknownVersionError(
                f"model {ref.name!r} has no version {version}; versions: {', '.join(known)}"
            )
        return self._version(conn, found)

    def _version(self, conn: sqlite3.Connection, row: sqlite3.Row) -> ModelVersion:
        key = (row["name"], row["version"])
        files = {
            str(r["path"]): (str(r["sha256"]), int(r["size"]))
            for r in conn.execute(
                "SELECT path, sha256, size FROM files WHERE name = ? AND version = ? ORDER BY path",
                key,
            )
        }
        tags = {
            str(r["key"]): str(r["value"])
            for r in conn.execute(
                "SELECT key, value FROM tags WHERE name = ? AND version = ? ORDER BY key", key
            )
        }
        aliases = tuple(
            str(r["alias"])
            for r in conn.execute(
                "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias", key
            )
        )
        return ModelVersion(
            name=str(row["name"]),
            version=SemVer.parse(str(row["version"])),
            created_at=str(row["created_at"]),
            parent=row["parent"],
            data=None if row["data"] is None else json.loads(row["data"]),
            metrics=json.loads(row["metrics"]),
            budget=None if row["budget"] is None else json.loads(row["budget"]),
            sensors=json.loads(row["sensors"]),
            description=str(row["description"]),
            files=files,
            tags=tags,
            aliases=aliases,
        )

    def next_version(self, name: str, part: Literal["major", "minor", "patch"] = "minor") -> str:
        """The version after the highest one of ``name`` (``1.0.0`` for a new model)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT major, minor, patch FROM versions WHERE name = ? "
                "ORDER BY major DESC, minor DESC, patch DESC LIMIT 1",
                (name,),
            ).fetchone()
        if row is None:
            return "1.0.0"
        return str(SemVer(int(row[0]), int(row[1]), int(row[2])).bump(part))

    # --- tags ---------------------------------------------------------------------------------
    def set_tag(self, ref: str, tag: str) -> ModelVersion:
        """Set ``KEY:VALUE`` (or ``KEY=VALUE``) on the version ``ref`` names (replacing the
        key's old value there)."""
        key, value = parse_tag(tag)
        with self._write() as conn:
            mv = self._resolve(conn, parse_ref(ref))
            conn.execute(
                "INSERT INTO tags (name, version, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                (mv.name, str(mv.version), key, value),
            )
        return self.get(mv.name, mv.version)

    def delete_tag(self, ref: str, key: str) -> ModelVersion:
        """Remove a tag key from a version (no error when it is not set)."""
        with self._write() as conn:
            mv = self._resolve(conn, parse_ref(ref))
            conn.execute(
                "DELETE FROM tags WHERE name = ? AND version = ? AND key = ?",
                (mv.name, str(mv.version), key),
            )
        return self.get(mv.name, mv.version)

    def find(self, tag: str, name: str | None = None) -> list[ModelVersion]:
        """Versions carrying tag ``KEY:VALUE`` (of ``name`` or any model), lowest first."""
        key, value = parse_tag(tag)
        sql = (
            "SELECT v.* FROM versions v JOIN tags t ON t.name = v.name AND t.version = v.version "
            "WHERE t.key = ? AND t.value = ?"
        )
        args: tuple[str, ...] = (key, value)
        if name is not None:
            sql += " AND v.name = ?"
            args = (*args, name)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY v.name, v.major, v.minor, v.patch", args)
            return [self._version(conn, r) for r in rows.fetchall()]

    def tagged(self, key: str) -> dict[str, list[ModelVersion]]:
        """Tag value → the versions carrying ``key`` with that value, oldest registration first
        (e.g. ``tagged("site")``: every site and its versions)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT v.*, t.value AS tag_value FROM versions v JOIN tags t "
                "ON t.name = v.name AND t.version = v.version WHERE t.key = ? "
                "ORDER BY v.created_at, v.name, v.major, v.minor, v.patch",
                (key,),
            ).fetchall()
            out: dict[str, list[ModelVersion]] = {}
            for r in rows:
                out.setdefault(str(r["tag_value"]), []).append(self._version(conn, r))
        return out

    # --- aliases --------------------------------------------------------------------------
    def promote(self, ref: str, alias: str) -> AliasEvent:
        """Point ``alias`` of the model at the version ``ref`` names (creating the alias)."""
        check_alias(alias)
        with self._write() as conn:
            mv = self._resolve(conn, parse_ref(ref))
            row = conn.execute(
                "SELECT version FROM aliases WHERE name = ? AND alias = ?", (mv.name, alias)
            ).fetchone()
            previous = None if row is None else str(row["version"])
            event = AliasEvent(mv.name, alias, "promote", str(mv.version), previous, _now())
            self._move_alias(conn, event)
        return event

    def rollback(self, name: str, alias: str) -> AliasEvent:
        """Move ``alias`` back to its target before the latest promotion not yet rolled back.

        Raises:
            UnknownAliasError: the model has no such alias.
            RollbackError: that promotion created the alias (there is no earlier target).
        """
        with self._write() as conn:
            self._resolve(conn, ModelRef(name, alias=check_alias(alias)))  # raises if unknown
            row = conn.execute(
                "SELECT id, version, previous FROM alias_events WHERE name = ? AND alias = ? "
                "AND action = 'promote' AND undone = 0 ORDER BY id DESC LIMIT 1",
                (name, alias),
            ).fetchone()
            if row is None or row["previous"] is None:
                raise RollbackError(
                    f"{name}@{alias} has no earlier target to roll back to (see `fusion registry "
                    f"show {name}` for its history)"
                )
            conn.execute("UPDATE alias_events SET undone = 1 WHERE id = ?", (row["id"],))
            event = AliasEvent(
                name, alias, "rollback", str(row["previous"]), row["version"], _now()
            )
            self._move_alias(conn, event)
        return event

    @staticmethod
    def _move_alias(conn: sqlite3.Connection, event: AliasEvent) -> None:
        conn.execute(
            "INSERT INTO aliases (name, alias, version, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, "
            "updated_at = excluded.updated_at",
            (event.name, event.alias, event.version, event.at),
        )
        conn.execute(
            "INSERT INTO alias_events (name, alias, action, version, previous, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event.name, event.alias, event.action, event.version, event.previous, event.at),
        )

    def aliases(self, name: str) -> dict[str, str]:
        """Alias → version of a model."""
        with self._connect() as conn:
            self._require_model(conn, name)
            rows = conn.execute(
                "SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,)
            ).fetchall()
        return {str(r["alias"]): str(r["version"]) for r in rows}

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias move of a model (of one alias), oldest first."""
        sql = "SELECT * FROM alias_events WHERE name = ?"
        args: tuple[str, ...] = (name,)
        if alias is not None:
            sql += " AND alias = ?"
            args = (name, alias)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [
            AliasEvent(
                str(r["name"]),
                str(r["alias"]),
                str(r["action"]),
                str(r["version"]),
                r["previous"],
                str(r["at"]),
                bool(r["undone"]),
            )
            for r in rows
        ]

    # --- files ------------------------------------------------------------------------------
    def checkout(self, ref: str | ModelVersion, dest: str | Path) -> Path:
        """Write the files of a version into the folder ``dest``, each checked against its
        sha256, atomically (a temporary folder renamed into place; an existing ``dest`` is
        replaced only once complete).

        Raises:
            RegistryCorruptError: a stored file is missing or altered.
        """
        from fusion.deploy.student_io import atomic_dir

        mv = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        with atomic_dir(dest) as tmp:
            for rel, (digest, _) in mv.files.items():
                self.blobs.copy_to(digest, Path(tmp) / rel)
        return Path(dest)
