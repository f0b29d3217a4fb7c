"""Whole-database backup and restore as a portable archive, so a backup taken on SQLite restores on PostgreSQL.

The archive is a zip: `manifest.json` (format, version, schema revisions, per-table row counts and SHA-256) and
one `tables/<name>.jsonl` per table, one JSON array per row in column order. A backup reads one consistent
snapshot; a restore checks the whole archive before it writes, then replaces every table in one transaction, so
a bad archive leaves the database as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, inspect, select, text
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON, Boolean, Date, DateTime, Float, LargeBinary, Numeric

from db.base import Base
from db.migrate import upgrade
from services import audit
from services.errors import UserError

FORMAT = "careloop-backup"
VERSION = 1
MANIFEST = "manifest.json"
BATCH = 5_000
# Tables whose rows decide whether a database is "in use": restoring over them needs an explicit --replace.
IN_USE = ("patients", "users")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds (or a restore wrote)."""

    path: Path
    created_at: str
    revisions: tuple[str, ...]
    rows: dict[str, int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _tables() -> list[Table]:
    # Parents before children, so inserting in this order satisfies every foreign key.
    return list(Base.metadata.sorted_tables)


def schema_revisions(conn: Connection) -> tuple[str, ...]:
    """The Alembic heads the database is at (one per feature branch), sorted; empty when never migrated."""
    if not inspect(conn).has_table("alembic_version"):
        return ()
    return tuple(sorted(str(r) for r in conn.execute(text("SELECT version_num FROM alembic_version")).scalars()))


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _decoder(column_type: Any) -> Callable[[Any], Any]:
    if isinstance(column_type, DateTime):
        return datetime.fromisoformat
    if isinstance(column_type, Date):
        return date.fromisoformat
    if isinstance(column_type, LargeBinary):
        return base64.b64decode
    if isinstance(column_type, Numeric) and not isinstance(column_type, Float):
        return Decimal
    if isinstance(column_type, Boolean):
        return bool
    return _same


def _same(value: Any) -> Any:
    return value


def _begin_snapshot(conn: Connection) -> None:
    # PostgreSQL: one snapshot for every table, and read-only so the backup cannot change anything. SQLite in WAL
    # mode gives a read transaction the same guarantee once it has started reading.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))


def backup(engine: Engine, out: Path, *, now: datetime, actor: str, progress: Progress | None = None) -> BackupSummary:
    """Write the whole database to `out`; the file appears only when complete (written aside, then renamed)."""
    if out.exists() and out.is_dir():
        raise UserError("backup.out_is_dir", path=str(out))
    if not out.parent.exists():
        raise UserError("backup.no_folder", path=str(out.parent))
    tables = _tables()
    rows: dict[str, int] = {}
    digests: dict[str, str] = {}
    partial = out.with_name(out.name + ".partial")
    try:
        with engine.connect() as conn, conn.begin():
            _begin_snapshot(conn)
            revisions = schema_revisions(conn)
            if not revisions:
                raise UserError("backup.no_schema")
            totals = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables}
            grand, done = sum(totals.values()), 0
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                for table in tables:
                    digest = hashlib.sha256()
                    count = 0
                    order = list(table.primary_key.columns) or list(table.columns)
                    result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
                        select(*table.columns).order_by(*order))
                    with zf.open(f"tables/{table.name}.jsonl", "w", force_zip64=True) as fh:
                        for part in result.partitions(BATCH):
                            chunk = "".join(
                                json.dumps([_encode(v) for v in row], ensure_ascii=False, separators=(",", ":")) + "\n"
                                for row in part).encode("utf-8")
                            digest.update(chunk)
                            fh.write(chunk)
                            count += len(part)
                            done += len(part)
                            if progress:
                                progress(done, grand)
                    rows[table.name] = count
                    digests[table.name] = digest.hexdigest()
                created = now.isoformat(timespec="seconds")
                manifest = {
                    "format": FORMAT, "version": VERSION, "created_at": created, "created_by": actor,
                    "source_engine": engine.dialect.name, "revisions": list(revisions),
                    "tables": {name: {"rows": rows[name], "sha256": digests[name],
                                      "columns": [c.name for c in Base.metadata.tables[name].columns]}
                               for name in rows},
                }
                zf.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    with engine.begin() as conn:
        # Written after the snapshot, so the backup does not contain its own audit row.
        with Session(bind=conn) as s:
            audit.record(s, action="backup", username=actor, entity="database",
                         detail={"file": out.name, "rows": sum(rows.values())}, at=now)
    return BackupSummary(out, created, revisions, rows)


def _open_archive(path: Path) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    if not path.is_file():
        raise UserError("backup.no_file", path=str(path))
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError("backup.not_a_backup", path=str(path)) from exc
    try:
        manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        zf.close()
        raise UserError("backup.not_a_backup", path=str(path)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        zf.close()
        raise UserError("backup.not_a_backup", path=str(path))
    if manifest.get("version") != VERSION:
        zf.close()
        raise UserError("backup.unknown_version", version=str(manifest.get("version")))
    return zf, manifest


def _lines(zf: zipfile.ZipFile, name: str) -> Iterator[bytes]:
    with zf.open(f"tables/{name}.jsonl") as fh:
        yield from fh


def _verify(zf: zipfile.ZipFile, manifest: dict[str, Any]) -> dict[str, int]:
    """Every table present, with the columns of this schema, its row count and checksum: before any write."""
    listed: dict[str, Any] = manifest.get("tables") or {}
    expected = {t.name for t in _tables()}
    unknown = sorted(set(listed) - expected)
    missing = sorted(expected - set(listed))
    if unknown or missing:
        raise UserError("backup.tables_differ", tables=", ".join(unknown + missing))
    counts: dict[str, int] = {}
    for table in _tables():
        info = listed[table.name]
        if info.get("columns") != [c.name for c in table.columns]:
            raise UserError("backup.tables_differ", tables=table.name)
        digest = hashlib.sha256()
        count = 0
        try:
            for line in _lines(zf, table.name):
                digest.update(line)
                count += 1
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UserError("backup.corrupt", table=table.name) from exc
        if count != info.get("rows") or digest.hexdigest() != info.get("sha256"):
            raise UserError("backup.corrupt", table=table.name)
        counts[table.name] = count
    return counts


def _reset_sequences(conn: Connection) -> None:
    # Rows came with their ids: move each identity sequence past them, or the next insert collides.
    for table in _tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not pk[0].autoincrement or pk[0].type.python_type is not int:
            continue
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": pk[0].name}).scalar()
        if seq:
            # Names come from our own metadata, never from input.
            top = f"(SELECT max({pk[0].name}) FROM {table.name})"
            conn.execute(text(f"SELECT setval(:s, COALESCE({top}, 0) + 1, false)"), {"s": seq})


def _insert_all(conn: Connection, zf: zipfile.ZipFile, grand: int, progress: Progress | None) -> int:
    done = 0
    for table in _tables():
        decoders = [_same if isinstance(c.type, JSON) else _decoder(c.type) for c in table.columns]
        names = [c.name for c in table.columns]
        batch: list[dict[str, Any]] = []
        try:
            for line in _lines(zf, table.name):
                values = json.loads(line)
                batch.append({n: (None if v is None else d(v)) for n, d, v in zip(names, decoders, values,
                                                                                  strict=True)})
                if len(batch) >= BATCH:
                    conn.execute(table.insert(), batch)
                    done += len(batch)
                    batch = []
                    if progress:
                        progress(done, grand)
            if batch:
                conn.execute(table.insert(), batch)
                done += len(batch)
                if progress:
                    progress(done, grand)
        except (IntegrityError, DataError, ValueError, TypeError) as exc:
            # The checksums matched, yet a row does not fit this database (an edited archive): the caller's
            # transaction rolls back, so nothing of the restore remains.
            raise UserError("backup.invalid_rows", table=table.name) from exc
    return done


def restore(engine: Engine, path: Path, *, replace: bool, now: datetime, actor: str,
            progress: Progress | None = None) -> BackupSummary:
    """Replace the whole database with the archive at `path`, all or nothing."""
    zf, manifest = _open_archive(path)
    with zf:
        revisions = tuple(sorted(str(r) for r in manifest.get("revisions") or ()))
        with engine.connect() as conn:
            current = schema_revisions(conn)
        if not current:
            upgrade(engine)  # an empty database: create the schema first, then check it matches the archive
            with engine.connect() as conn:
                current = schema_revisions(conn)
        if current != revisions:
            raise UserError("backup.revision_mismatch", backup=", ".join(revisions) or "-",
                            database=", ".join(current))
        counts = _verify(zf, manifest)
        grand = sum(counts.values())
        with engine.begin() as conn:
            if not replace:
                in_use = [name for name in IN_USE
                          if conn.execute(select(func.count()).select_from(Base.metadata.tables[name])).scalar_one()]
                if in_use:
                    raise UserError("backup.target_not_empty", tables=", ".join(in_use))
            for table in reversed(_tables()):
                conn.execute(table.delete())
            _insert_all(conn, zf, grand, progress)
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn)
            with Session(bind=conn) as s:
                audit.record(s, action="restore", username=actor, entity="database",
                             detail={"file": path.name, "backup_created_at": manifest.get("created_at"),
                                     "rows": grand}, at=now)
    return BackupSummary(path, str(manifest.get("created_at")), revisions, counts)
