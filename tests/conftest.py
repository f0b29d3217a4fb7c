"""Shared fixtures: a migrated database per test on SQLite and on a real throwaway PostgreSQL server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db.base import Base
from db.engine import make_engine, transaction
from db.migrate import upgrade
from tests.support.pgserver import PgServer, PostgresUnavailable, start_postgres

REQUIRE_PG = os.environ.get("CARELOOP_REQUIRE_PG") == "1"


def pytest_configure(config: pytest.Config) -> None:
    # Tests never depend on the developer's environment for settings that change behaviour.
    os.environ.pop("CARELOOP_DATABASE_URL", None)


def _reference_data(engine: Engine) -> None:
    from db.catalogue import ensure_reference_data

    with transaction(engine) as s:
        ensure_reference_data(s)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (CARELOOP_REQUIRE_PG=1) but: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}; install postgresql to run them")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "careloop.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    _reference_data(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    url = pg_server.create_database("careloop_test")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _fresh_sqlite(template: Path, tmp_path: Path) -> Engine:
    path = tmp_path / "careloop.db"
    shutil.copy(template, path)
    return make_engine(f"sqlite:///{path}")


def _fresh_pg(url: str) -> Engine:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    _reference_data(engine)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database with reference data, empty otherwise; one per test, on both engines."""
    if request.param == "sqlite":
        eng = _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        eng = _fresh_pg(request.getfixturevalue("pg_url"))
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """SQLite only, for tests of the screens and the command line that need one file."""
    eng = _fresh_sqlite(sqlite_template, tmp_path)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s
