"""The command line: exit codes, create-user through the environment, clear errors, init-db."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models import AuditLog, User

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, url: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELOOP_")}
    env["CARELOOP_DATABASE_URL"] = url
    env["LANG"] = "en_US.UTF-8"
    if password is not None:
        env["CARELOOP_PASSWORD"] = password
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)


def test_create_user_from_environment(sqlite_engine: Engine) -> None:
    out = _manage("create-user", "zhangli", "--role", "nurse", "--department", "CARD", "--name", "张丽",
                  url=str(sqlite_engine.url), password="a long enough password")
    assert out.returncode == 0, out.stderr
    with Session(sqlite_engine) as s:
        user = s.scalars(select(User).where(User.username == "zhangli")).one()
        assert (user.role, user.display_name) == ("nurse", "张丽")
        assert user.password_hash.startswith("$2")
        assert s.scalars(select(AuditLog.action)).all() == ["user_created"]


@pytest.mark.parametrize(
    ("args", "password", "code", "message"),
    [
        (("create-user", "x1", "--role", "doctor"), "long enough pw", 2, "invalid choice"),
        (("create-user", "x1", "--role", "nurse"), None, 2, "set CARELOOP_PASSWORD"),
        (("create-user", "x1", "--role", "nurse"), "x" * 80, 1, "longer than 72 bytes"),
        (("create-user", "x1", "--role", "nurse", "--department", "NOPE"), "long enough pw", 1,
         "Unknown department NOPE"),
        (("seed-demo", "--patients", "0"), None, 2, "at least 1"),
        (("seed-demo", "--today", "2026-13-01"), None, 2, "not a date"),
        (("no-such-command",), None, 2, "invalid choice"),
    ],
)
def test_bad_usage_and_rejections(
    sqlite_engine: Engine, args: tuple[str, ...], password: str | None, code: int, message: str
) -> None:
    out = _manage(*args, url=str(sqlite_engine.url), password=password)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    with Session(sqlite_engine) as s:
        assert s.scalars(select(User)).all() == []


def test_init_db_creates_and_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):  # the second run finds the schema at head and changes nothing
        out = _manage("init-db", url=url)
        assert out.returncode == 0, out.stderr
        assert "schema is at head" in out.stdout


def test_unreachable_database_is_reported(tmp_path: Path) -> None:
    out = _manage("init-db", url="postgresql+psycopg2://careloop:secret@127.0.0.1:9/careloop")
    assert out.returncode == 1
    assert "cannot reach the database" in out.stderr and "secret" not in out.stderr


def test_prepare_demo_seeds_once_runs_the_daily_job_and_prints_logins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = _manage("prepare-demo", "--patients", "60", url=url)
    assert first.returncode == 0, first.stderr
    assert "loading demo data" in first.stdout and "run-automation" in first.stdout
    for role in ("admin", "manager", "nurse", "quality"):
        assert f"username: {role}" in first.stdout
    from sqlalchemy import create_engine, func

    from db.models import PatientTag, RiskAssessment

    engine = create_engine(url)
    with engine.connect() as conn:
        tags = conn.execute(select(func.count()).select_from(PatientTag)).scalar_one()
        risks = conn.execute(select(func.count()).select_from(RiskAssessment)).scalar_one()
    engine.dispose()
    assert tags > 0 and risks > 0  # the demo opens with risk levels and the segments tags drive

    again = _manage("prepare-demo", "--patients", "60", url=url)
    assert again.returncode == 0, again.stderr
    assert "loading demo data" not in again.stdout  # seeded once; passwords renewed every time
    assert again.stdout.split("Demo logins")[1] != first.stdout.split("Demo logins")[1]
