"""The Alembic migrations reach exactly the models (no drift), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from db.base import Base
from db.migrate import alembic_config

# Expression indexes: Alembic cannot compare their reflected text (PostgreSQL rewrites the expression, SQLite does
# not reflect it), so they are checked by name below instead.
EXPRESSION_INDEXES = {"ix_health_history_lifestyle"}


def _comparable(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


# SQLite says so on every comparison; the index is checked by name below.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_match_models(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _comparable})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_expression_indexes_exist(engine: Engine) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            names = set(conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'health_history'")
                        .scalars())
        else:
            names = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' "
                                             "AND tbl_name = 'health_history'").scalars())
    assert EXPRESSION_INDEXES | {"ix_health_history_condition"} <= names


def test_database_is_at_every_head(engine: Engine) -> None:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as conn:
        assert set(MigrationContext.configure(conn).get_current_heads()) == heads
