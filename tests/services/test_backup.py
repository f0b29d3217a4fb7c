"""Backup and restore: a round trip between engines keeps every row; a bad archive or target changes nothing."""

from __future__ import annotations

import json
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.base import Base
from db.engine import make_engine, transaction
from db.models import AuditLog, Patient, Recording
from db.seed import seed_demo
from services import backup as bk
from services.errors import UserError
from tests.factories import create_patient
from tests.test_manage import _manage

NOW = datetime(2026, 11, 22, 9, 30)


def _content(engine: Engine, skip: tuple[str, ...] = ("audit_log",)) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in primary-key order, with values normalised across engines."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(select(*table.columns).order_by(*order)).all()
            out[table.name] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
    return out


def _populated(engine: Engine) -> None:
    seed_demo(engine, patients=25, seed=3, today=date(2026, 1, 1))
    with transaction(engine) as s:
        p = s.scalars(select(Patient).order_by(Patient.id)).first()
        assert p is not None
        s.add(Recording(patient_id=p.id, filename="随访.wav", content_type="audio/wav", size_bytes=4,
                        sha256="0" * 64, storage="db", data=b"RIFF\x00\xff", uploaded_at=NOW))


@pytest.fixture
def other_engine(engine: Engine, tmp_path: Path, request: pytest.FixtureRequest) -> Engine:
    """An empty, never-migrated database of the OTHER kind: a backup must move between engines."""
    if engine.dialect.name == "postgresql":
        return make_engine(f"sqlite:///{tmp_path / 'target.db'}")
    server = request.getfixturevalue("pg_server")
    name = f"restore_{abs(hash(str(tmp_path))) % 10**9}"
    return make_engine(server.create_database(name))


def test_round_trip_to_the_other_engine_keeps_every_row(engine: Engine, other_engine: Engine, tmp_path: Path) -> None:
    _populated(engine)
    archive = tmp_path / "careloop-backup.zip"
    summary = bk.backup(engine, archive, now=NOW, actor="test")
    assert archive.is_file() and not (tmp_path / "careloop-backup.zip.partial").exists()
    assert summary.rows["patients"] == 25 and summary.rows["observations"] > 0

    restored = bk.restore(other_engine, archive, replace=False, now=NOW, actor="test")

    assert restored.rows == summary.rows
    assert _content(other_engine) == _content(engine)
    with transaction(other_engine) as s:  # ids continue after the restored ones (sequences reset on PostgreSQL)
        new = create_patient(s)
        assert new.id > max(r[0] for r in _content(engine)["patients"])
        actions = s.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions[-1] == "restore"
    other_engine.dispose()


def test_backup_holds_one_consistent_snapshot_and_audits_itself(engine: Engine, tmp_path: Path) -> None:
    _populated(engine)
    archive = tmp_path / "b.zip"
    bk.backup(engine, archive, now=NOW, actor="nightly")
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert set(manifest["tables"]) == {t.name for t in Base.metadata.sorted_tables}
        lines = zf.read("tables/patients.jsonl").decode("utf-8").splitlines()
    assert len(lines) == manifest["tables"]["patients"]["rows"] == 25
    assert manifest["source_engine"] == engine.dialect.name
    with Session(engine) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "backup")).one()
    assert row.username == "nightly" and row.detail is not None and row.detail["file"] == "b.zip"


def _rewrite(archive: Path, out: Path, edit: Any) -> None:
    """Copy an archive, letting `edit(name, data) -> data` change entries."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item.filename, edit(item.filename, src.read(item.filename)))


def _fix_manifest(out: Path, table: str) -> None:
    """Recompute one table's checksum and count, as someone editing an archive by hand would."""
    import hashlib

    with zipfile.ZipFile(out) as zf:
        entries = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    data = entries[f"tables/{table}.jsonl"]
    manifest = json.loads(entries["manifest.json"])
    manifest["tables"][table]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["tables"][table]["rows"] = data.count(b"\n")
    entries["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w") as zf:
        for name, payload in entries.items():
            zf.writestr(name, payload)


def _duplicate_first_patient(name: str, data: bytes) -> bytes:
    if name != "tables/patients.jsonl":
        return data
    first = data.splitlines(keepends=True)[0]
    row = json.loads(first)
    row[0] = 999_999  # a new id, but the same card number: the unique constraint refuses it
    return data + (json.dumps(row, ensure_ascii=False) + "\n").encode()


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("missing", "backup.no_file"),
        ("not_zip", "backup.not_a_backup"),
        ("no_manifest", "backup.not_a_backup"),
        ("tampered", "backup.corrupt"),
        ("other_schema", "backup.revision_mismatch"),
        ("table_missing", "backup.tables_differ"),
        ("bad_row", "backup.invalid_rows"),
        ("not_empty", "backup.target_not_empty"),
    ],
)
def test_bad_archive_or_target_is_refused_and_changes_nothing(engine: Engine, tmp_path: Path, case: str,
                                                              key: str) -> None:
    _populated(engine)
    good = tmp_path / "good.zip"
    bk.backup(engine, good, now=NOW, actor="test")
    with transaction(engine) as s:  # the target differs from the archive, so a partial restore would show
        create_patient(s, name="恢复前")
    before = _content(engine)
    bad = tmp_path / "bad.zip"
    if case == "missing":
        bad = tmp_path / "nowhere.zip"
    elif case == "not_zip":
        bad.write_text("card_no,name\n", encoding="utf-8")
    elif case == "no_manifest":
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
            for item in src.infolist():
                if item.filename != "manifest.json":
                    dst.writestr(item.filename, src.read(item.filename))
    elif case == "tampered":
        _rewrite(good, bad, lambda n, d: d.replace("张".encode(), "王".encode()) if n.endswith("patients.jsonl") else d)
    elif case == "other_schema":
        def older(n: str, d: bytes) -> bytes:
            if n != "manifest.json":
                return d
            m = json.loads(d)
            m["revisions"] = ["0001"]
            return json.dumps(m).encode()
        _rewrite(good, bad, older)
    elif case == "table_missing":
        def drop(n: str, d: bytes) -> bytes:
            if n != "manifest.json":
                return d
            m = json.loads(d)
            del m["tables"]["recordings"]
            return json.dumps(m).encode()
        _rewrite(good, bad, drop)
    elif case == "bad_row":
        _rewrite(good, bad, _duplicate_first_patient)
        _fix_manifest(bad, "patients")
    elif case == "not_empty":
        bad = good

    with pytest.raises(UserError) as err:
        bk.restore(engine, bad, replace=case == "bad_row", now=NOW, actor="test")

    assert err.value.key == key
    assert _content(engine) == before


def test_replace_overwrites_a_database_in_use(engine: Engine, tmp_path: Path) -> None:
    _populated(engine)
    archive = tmp_path / "b.zip"
    bk.backup(engine, archive, now=NOW, actor="test")
    expected = _content(engine)
    with transaction(engine) as s:
        create_patient(s, name="备份之后")
    bk.restore(engine, archive, replace=True, now=NOW, actor="test")
    assert _content(engine) == expected


def test_backup_of_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(UserError) as err:
        bk.backup(empty, tmp_path / "x.zip", now=NOW, actor="test")
    assert err.value.key == "backup.no_schema"
    assert not (tmp_path / "x.zip").exists()


def test_cli_backup_then_restore_into_a_new_file(sqlite_engine: Engine, tmp_path: Path) -> None:
    with transaction(sqlite_engine) as s:
        create_patient(s, name="李四")
    url = str(sqlite_engine.url)
    archive = tmp_path / "nightly.zip"
    out = _manage("backup", str(archive), url=url)
    assert out.returncode == 0, out.stderr
    assert "backup written to" in out.stdout

    refused = _manage("restore", str(archive), url=url)
    assert refused.returncode == 2
    assert "--replace" in refused.stderr

    target = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = _manage("restore", str(archive), url=target)
    assert done.returncode == 0, done.stderr
    fresh = make_engine(target)
    with fresh.connect() as conn:
        assert conn.execute(select(Patient.name)).scalars().all() == ["李四"]
    fresh.dispose()

    assert _manage("restore", str(tmp_path / "none.zip"), url=target).returncode == 2
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    junk = _manage("restore", str(tmp_path / "junk.zip"), url=target)
    assert junk.returncode == 1 and "not a Careloop backup" in junk.stderr
    assert _manage("backup", str(tmp_path / "no" / "dir.zip"), url=url).returncode == 2
