"""Cached read-only aggregates: every key carries the user's scope, and entries expire."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from components.runtime import engine_or_stop, settings_or_stop
from db.engine import transaction
from queries import overview, report_data
from queries.filters import DataScope, PeriodFilter

TTL_SECONDS = 300


def engine() -> Engine:
    return engine_or_stop(settings_or_stop())


@st.cache_data(ttl=TTL_SECONDS, max_entries=256, show_spinner=False)
def overview_kpis(scope_key: str, f: PeriodFilter, _scope: DataScope) -> overview.OverviewKpis:
    # scope_key is in the cache key; _scope (unhashed) is the same scope as an object.
    with engine().connect() as conn:
        return overview.overview_kpis(conn=conn, f=f, scope=_scope)


@st.cache_data(ttl=TTL_SECONDS, max_entries=256, show_spinner=False)
def nps_by_month(scope_key: str, f: PeriodFilter, _scope: DataScope) -> pd.DataFrame:
    with engine().connect() as conn:
        return overview.nps_by_month(conn=conn, f=f, scope=_scope)


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def departments(scope_key: str, lang: str, _scope: DataScope) -> list[tuple[int, str]]:
    with engine().connect() as conn:
        return overview.departments(conn=conn, scope=_scope, lang=lang)


@st.cache_data(ttl=TTL_SECONDS, max_entries=8, show_spinner=False)
def tag_segments(lang: str) -> list[tuple[str, str]]:
    # The active rules' codes and names: the same for every user, so the language is the whole key.
    with engine().connect() as conn:
        return report_data.open_tag_codes(conn=conn, lang=lang)


@contextmanager
def read() -> Iterator[Connection]:
    """A read connection for a page's uncached queries."""
    with engine().connect() as conn:
        yield conn


@contextmanager
def write() -> Iterator[Session]:
    """One transaction for a page's call into a service: committed on success, rolled back on error."""
    with transaction(engine()) as session:
        yield session
