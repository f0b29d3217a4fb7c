"""Portable SQL helpers: the few expressions SQLite and PostgreSQL spell differently."""

from __future__ import annotations

from typing import Any

from sqlalchemy import SQLColumnExpression, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


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
