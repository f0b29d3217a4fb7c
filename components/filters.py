"""The filter bar: date range and departments, read into a frozen PeriodFilter; the tag segment picker."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import streamlit as st

from components import data
from components.runtime import lang, tr
from queries.filters import DataScope, PeriodFilter


def period_filter(scope: DataScope, *, today: date, key: str, default_days: int = 365) -> PeriodFilter:
    options = data.departments(scope.key, lang(), scope)
    names = dict(options)
    col_from, col_to, col_dept = st.columns([1, 1, 2])
    start = col_from.date_input(tr("filter.from"), value=today - timedelta(days=default_days),
                                key=f"{key}_from", max_value=today)
    end = col_to.date_input(tr("filter.to"), value=today, key=f"{key}_to", max_value=today)
    chosen = col_dept.multiselect(tr("filter.departments"), options=[i for i, _ in options],
                                  format_func=lambda i: names.get(i, str(i)), key=f"{key}_departments",
                                  placeholder=tr("filter.all_departments"))
    if start > end:
        st.warning(tr("filter.swapped"))
        start, end = end, start
    return PeriodFilter(start, end, tuple(sorted(chosen)), tuple(names[i] for i in sorted(chosen)))


def tag_segment(*, key: str, container: Any = st) -> tuple[str | None, str | None]:
    """A tag segment picker (the tags the active rules set): (code, name) of the chosen tag, (None, None) for all."""
    names = dict(data.tag_segments(lang()))
    options: list[str | None] = [None, *names]
    code = container.selectbox(tr("filter.segment"), options=options, key=key,
                               format_func=lambda c: tr("filter.all_patients") if c is None else names.get(c, c))
    return (code, names.get(code, code)) if code else (None, None)
