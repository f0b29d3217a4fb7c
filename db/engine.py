"""Engine and session factory; callers own their sessions (SQLAlchemy's rule)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_WRITE_OPTION = "careloop_write"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the dashboards read while a nurse writes; foreign keys are off by default.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            # pysqlite opens transactions itself, late and not before a SAVEPOINT: a savepoint that starts the
            # work would then commit on release, and a later failure could not roll it back. SQLAlchemy's
            # documented remedy: let pysqlite stay out of it and emit BEGIN ourselves (event below).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A unit of work that will write takes the write lock up front (waiting up to the busy timeout):
            # a deferred transaction that read first could not upgrade once another writer had committed.
            immediate = conn.get_execution_options().get(_WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    bind = engine.execution_options(**{_WRITE_OPTION: True}) if engine.dialect.name == "sqlite" else engine
    with session_factory(bind)() as session, session.begin():
        yield session


# Tables a bulk job may tidy after it commits (a fixed list: the names go into SQL as they are).
VACUUMABLE = frozenset({"risk_assessments", "patient_tags", "observation_latest"})


def vacuum_analyze(engine: Engine, tables: list[str]) -> None:
    """VACUUM ANALYZE the given tables on PostgreSQL (a no-op elsewhere), outside any transaction.

    After a job writes millions of rows, readers that depend on index-only scans (the tag rule preview reads the
    newest risk per patient from an index) visit the heap for every row until the visibility map is set: a preview
    took 5 s instead of 1.2 s until autovacuum came round. The job does it at once instead.
    """
    _check_vacuumable(tables)
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in tables:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {name}")


def _check_vacuumable(tables: list[str]) -> None:
    unknown = set(tables) - VACUUMABLE
    if unknown:
        raise ValueError(f"not a table a job may vacuum: {sorted(unknown)}")
