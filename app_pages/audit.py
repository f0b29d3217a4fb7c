"""Audit log viewer for admins and the quality team: who did what, when, to which record."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries.admin import AuditFilter, audit_actions, audit_entries
from services import clock

require("audit")
st.title(tr("audit.title"))
today = clock.today(settings_or_stop().timezone)

# settings
with data.read() as conn:
    actions = audit_actions(conn=conn)
c1, c2, c3, c4 = st.columns(4)
start = c1.date_input(tr("filter.from"), value=today - timedelta(days=30), key="audit_from")
end = c2.date_input(tr("filter.to"), value=today, key="audit_to")
action = c3.selectbox(tr("audit.action"), options=[None, *actions],
                      format_func=lambda a: tr("audit.any") if a is None else a, key="audit_action")
username = c4.text_input(tr("audit.username"), key="audit_username").strip() or None
f = AuditFilter(min(start, end), max(start, end), action, username)

# data
with data.read() as conn:
    total, rows = audit_entries(conn=conn, f=f)

# show
st.caption(tr("audit.caption", shown=len(rows), total=total, what=f.describe(lang())))


def _shaped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={c: tr(f"audit.col.{c}") for c in frame.columns})


def _all_rows(limit: int) -> pd.DataFrame:
    with data.read() as conn:
        return _shaped(audit_entries(conn=conn, f=replace(f, limit=limit))[1])


data_table(_shaped(rows), name="audit_log", description=f.describe(lang()), caption=False, full=_all_rows,
           total=total)
