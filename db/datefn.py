"""Portable date and time expressions in SQL: the few that SQLite and PostgreSQL spell differently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Date, DateTime, Float, Integer, SQLColumnExpression, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class as_date(FunctionElement[Any]):
    """The calendar date of a timestamp (or date) column."""

    type = Date()
    inherit_cache = True


@compiles(as_date, "sqlite")
def _as_date_sqlite(element: as_date, compiler: Any, **kw: Any) -> str:
    return "date(" + str(compiler.process(element.clauses, **kw)) + ")"


@compiles(as_date, "postgresql")
def _as_date_pg(element: as_date, compiler: Any, **kw: Any) -> str:
    return "CAST(" + str(compiler.process(element.clauses, **kw)) + " AS DATE)"


class add_days(FunctionElement[Any]):
    """add_days(date_or_timestamp, n): the date n days later (n may be an expression or negative)."""

    type = Date()
    inherit_cache = True


@compiles(add_days, "sqlite")
def _add_days_sqlite(element: add_days, compiler: Any, **kw: Any) -> str:
    d, n = list(element.clauses)
    return f"date(julianday(date({compiler.process(d, **kw)})) + ({compiler.process(n, **kw)}))"


@compiles(add_days, "postgresql")
def _add_days_pg(element: add_days, compiler: Any, **kw: Any) -> str:
    d, n = list(element.clauses)
    return f"(CAST({compiler.process(d, **kw)} AS DATE) + CAST({compiler.process(n, **kw)} AS INTEGER))"


class days_between(FunctionElement[Any]):
    """days_between(a, b): whole days from date b to date a (a - b)."""

    type = Integer()
    inherit_cache = True


@compiles(days_between, "sqlite")
def _days_between_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return (f"CAST(julianday(date({compiler.process(a, **kw)})) - "
            f"julianday(date({compiler.process(b, **kw)})) AS INTEGER)")


@compiles(days_between, "postgresql")
def _days_between_pg(element: days_between, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"(CAST({compiler.process(a, **kw)} AS DATE) - CAST({compiler.process(b, **kw)} AS DATE))"


class date_text(FunctionElement[str]):
    """'YYYY-MM-DD' text of a date, for building idempotency keys in SQL."""

    type = String()
    inherit_cache = True


@compiles(date_text, "sqlite")
def _date_text_sqlite(element: date_text, compiler: Any, **kw: Any) -> str:
    return "date(" + str(compiler.process(element.clauses, **kw)) + ")"


@compiles(date_text, "postgresql")
def _date_text_pg(element: date_text, compiler: Any, **kw: Any) -> str:
    return "to_char(" + str(compiler.process(element.clauses, **kw)) + ", 'YYYY-MM-DD')"


class month_key(FunctionElement[str]):
    """'YYYY-MM' of a timestamp or date column."""

    type = String()
    inherit_cache = True


@compiles(month_key, "sqlite")
def _month_sqlite(element: month_key, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m', " + str(compiler.process(element.clauses, **kw)) + ")"


@compiles(month_key, "postgresql")
def _month_pg(element: month_key, compiler: Any, **kw: Any) -> str:
    return "to_char(" + str(compiler.process(element.clauses, **kw)) + ", 'YYYY-MM')"


def month_of(col: SQLColumnExpression[Any]) -> month_key:
    return month_key(col)


class seconds_between(FunctionElement[float]):
    """seconds_between(later, earlier) as a float."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _secs_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"((julianday({compiler.process(a, **kw)}) - julianday({compiler.process(b, **kw)})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _secs_pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(a, **kw)} - {compiler.process(b, **kw)}))"


class day_at(FunctionElement[datetime]):
    """day_at(day_literal_text, 'HH:MM' text): the timestamp, stored the way each engine stores DateTime."""

    type = DateTime()
    inherit_cache = True


@compiles(day_at, "postgresql")
def _day_at_pg(element: day_at, compiler: Any, **kw: Any) -> str:
    day, hhmm = list(element.clauses)
    return f"(CAST({compiler.process(day, **kw)} AS DATE) + CAST({compiler.process(hhmm, **kw)} AS TIME))"


@compiles(day_at, "sqlite")
def _day_at_sqlite(element: day_at, compiler: Any, **kw: Any) -> str:
    day, hhmm = list(element.clauses)
    return f"({compiler.process(day, **kw)} || ' ' || {compiler.process(hhmm, **kw)} || ':00.000000')"
