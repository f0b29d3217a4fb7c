"""db.engine.vacuum_analyze: PostgreSQL tables a bulk job wrote are vacuumed at once; other names are refused."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from db.engine import vacuum_analyze


def test_vacuum_sets_the_table_statistics_on_postgresql(engine: Engine) -> None:
    vacuum_analyze(engine, ["risk_assessments", "patient_tags"])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            stamps = conn.execute(text("SELECT last_vacuum FROM pg_stat_user_tables "
                                       "WHERE relname IN ('risk_assessments', 'patient_tags')")).scalars().all()
        assert len(stamps) == 2 and all(s is not None for s in stamps)


@pytest.mark.parametrize("name", ["patients; DROP TABLE users", "users", ""])
def test_only_the_job_tables_may_be_named(engine: Engine, name: str) -> None:
    # Refused before anything runs, on either engine.
    with pytest.raises(ValueError, match="not a table"):
        vacuum_analyze(engine, ["risk_assessments", name])
