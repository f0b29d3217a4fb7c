"""Cached satisfaction aggregates for the dashboards: every key carries the user's scope; writes clear them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import data
from queries import satisfaction as sq
from queries.filters import DataScope
from queries.metrics import NpsResult

TTL_SECONDS = 300


@st.cache_data(ttl=TTL_SECONDS, max_entries=256, show_spinner=False)
def nps_summary(scope_key: str, f: sq.SurveyFilter, _scope: DataScope) -> NpsResult:
    # scope_key is in the cache key; _scope (unhashed) is the same scope as an object.
    with data.read() as conn:
        return sq.nps_summary(conn=conn, f=f, scope=_scope)


@st.cache_data(ttl=TTL_SECONDS, max_entries=256, show_spinner=False)
def nps_by(scope_key: str, f: sq.SurveyFilter, by: sq.GroupBy, lang: str, _scope: DataScope) -> pd.DataFrame:
    with data.read() as conn:
        return sq.nps_by(conn=conn, f=f, scope=_scope, by=by, lang=lang)


@st.cache_data(ttl=TTL_SECONDS, max_entries=128, show_spinner=False)
def topbox(scope_key: str, f: sq.SurveyFilter, lang: str, _scope: DataScope) -> pd.DataFrame:
    with data.read() as conn:
        return sq.topbox(conn=conn, f=f, scope=_scope, lang=lang)


@st.cache_data(ttl=TTL_SECONDS, max_entries=128, show_spinner=False)
def response_rate(scope_key: str, f: sq.SurveyFilter, lang: str, _scope: DataScope) -> pd.DataFrame:
    with data.read() as conn:
        return sq.response_rate(conn=conn, f=f, scope=_scope, lang=lang)


def clear() -> None:
    """After a response or a case changes: the dashboards must not show the old numbers for five minutes."""
    for fn in (nps_summary, nps_by, topbox, response_rate):
        fn.clear()
    data.nps_by_month.clear()
    data.overview_kpis.clear()
