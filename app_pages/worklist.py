"""Nurse worklist (first slice): the follow-up tasks due for the signed-in nurse."""

from __future__ import annotations

import streamlit as st

from components import data
from components.navigation import require
from components.runtime import settings_or_stop, tr
from queries.worklist import WorklistFilter, count_due, due_tasks
from services import clock

user = require("worklist")
st.title(tr("worklist.title"))

# settings
today = clock.today(settings_or_stop().timezone)
page = st.number_input(tr("worklist.page"), min_value=1, value=1, step=1, key="worklist_page")
f = WorklistFilter(assignee_id=user.id, today=today, offset=(int(page) - 1) * 50)

# data (not cached: a nurse expects her list to move as soon as she logs a call)
with data.read() as conn:
    overdue, due_today = count_due(conn=conn, f=f)
    tasks = due_tasks(conn=conn, f=f)

# show
c1, c2 = st.columns(2)
c1.metric(tr("worklist.overdue"), overdue, border=True)
c2.metric(tr("worklist.due_today"), due_today, border=True)
st.caption(tr("worklist.caption", n=len(tasks), name=user.display_name, date=today.isoformat(),
              days=f.horizon_days))
if tasks.empty:
    st.info(tr("worklist.empty"))
else:
    shown = tasks.assign(
        method=tasks["method"].map(lambda m: tr(f"method.{m}")),
        kind=tasks["kind"].map(lambda k: tr(f"task_kind.{k}")),
        sex=tasks["sex"].map(lambda s: tr(f"sex.{s}")),
    ).rename(columns={c: tr(f"worklist.col.{c}") for c in tasks.columns})
    st.dataframe(shown, hide_index=True, width="stretch")
