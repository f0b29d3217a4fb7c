"""Migration 0612: lifestyle records saved as "activity" become "exercise", and PostgreSQL reads a lifestyle
condition through the expression index (which it only does when the query's expression matches the index's)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from db.engine import make_engine
from db.migrate import upgrade
from db.models import HealthHistory, lifestyle_aspect
from tests.support.pgserver import PgServer

ROW = ("INSERT INTO health_history (patient_id, kind, text, detail, source, recorded_at) "
       "VALUES (1, 'lifestyle', :text, :detail, 'manual', :at)")


def _fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        return make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    server: PgServer = request.getfixturevalue("pg_server")
    return make_engine(server.create_database(f"m0612_{secrets.token_hex(4)}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def before_0612(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    engine = _fresh(request, tmp_path)
    upgrade(engine, "0611_care_obs_index")
    at = datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO patients (id, card_no, name, sex, status, do_not_contact, enrolled_at, "
                          "updated_at, version) VALUES (1, 'CL1', '张三', 'M', 'active', false, :at, :at, 1)"),
                     {"at": at})
        for t, detail in (("每天快走30分钟", '{"aspect": "activity"}'), ("不吸烟", '{"aspect": "smoking"}'),
                          ("偶尔运动", None)):
            conn.execute(text(ROW), {"text": t, "detail": detail, "at": at})
    return engine


def test_activity_becomes_exercise_and_nothing_else_changes(before_0612: Engine) -> None:
    upgrade(before_0612)
    with before_0612.connect() as conn:
        rows = conn.execute(text("SELECT text, detail FROM health_history ORDER BY id")).all()
    details = [r[1] if isinstance(r[1], dict | None) else json.loads(r[1]) for r in rows]
    assert details == [{"aspect": "exercise"}, {"aspect": "smoking"}, None]
    before_0612.dispose()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_postgresql_reads_a_lifestyle_condition_through_its_index(engine: Engine) -> None:
    stmt = select(HealthHistory.patient_id).where(HealthHistory.kind == "lifestyle", lifestyle_aspect() == "smoking")
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
    assert "ix_health_history_lifestyle" in plan, plan
