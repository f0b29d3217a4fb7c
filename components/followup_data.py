"""Cached follow-up aggregates for the dashboards (scope in every key) and the recordings policy from settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import streamlit as st

from components.data import TTL_SECONDS, engine
from config import Settings
from queries import followup as q
from queries.filters import DataScope
from services.recordings import RecordingPolicy


@st.cache_data(ttl=TTL_SECONDS, max_entries=256, show_spinner=False)
def completion_by(scope_key: str, f: q.CompletionFilter, by: str, _scope: DataScope) -> pd.DataFrame:
    with engine().connect() as conn:
        return q.completion_by(conn=conn, f=f, scope=_scope, by=by)


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def hearts(scope_key: str, as_of: object, department_ids: tuple[int, ...], _scope: DataScope) -> q.HeartsResult:
    from datetime import date

    assert isinstance(as_of, date)
    with engine().connect() as conn:
        return q.hearts_cohorts(conn=conn, as_of=as_of, scope=_scope, department_ids=department_ids)


def clear() -> None:
    """A contact or a run of the automation changes every figure above."""
    completion_by.clear()
    hearts.clear()


def recording_policy(settings: Settings) -> RecordingPolicy:
    return RecordingPolicy.from_settings(recordings_dir=settings.recordings_dir,
                                         recording_max_mb=settings.recording_max_mb,
                                         recordings_in_db=settings.recordings_in_db)



def labelled(fn: Callable[[Any], str], options: Iterable[Any]) -> Callable[[Any], str]:
    """A format_func whose labels are computed now, in this run's language: Streamlit (and AppTest) may call a
    format_func again outside the script run, where the session's language is not visible."""
    labels = {o: fn(o) for o in options}
    return lambda o: labels.get(o, str(o))
