"""Nurse worklist: overdue, due-today and upcoming follow-up tasks for the nurse and her department."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from components import data, followup_data
from components.export_buttons import data_table
from components.filters import tag_segment
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import followup as q
from services import clock

user = require("worklist")
st.title(tr("worklist.title"))

# settings
VIEWS = ("mine", "department")
today = clock.today(settings_or_stop().timezone)
c1, c2, c3, c4 = st.columns([2, 3, 2, 1])
view = c1.radio(tr("fu_wl.view"), VIEWS,
                format_func=followup_data.labelled(lambda v: tr(f"fu_wl.view_{v}"), VIEWS),
                key="wl_view", horizontal=True)
bucket = c2.radio(tr("fu_wl.bucket"), q.BUCKETS,
                  format_func=followup_data.labelled(lambda b: tr(f"fu_wl.bucket_{b}"), q.BUCKETS),
                  key="wl_bucket", horizontal=True)
sort = c3.selectbox(tr("fu_wl.sort"), q.SORTS,
                    format_func=followup_data.labelled(lambda s: tr(f"fu_wl.sort_{s}"), q.SORTS),
                    key="wl_sort")
page = int(c4.number_input(tr("worklist.page"), min_value=1, value=1, step=1, key="worklist_page"))
tag, tag_name = tag_segment(key="wl_tag", container=st.columns([2, 4])[0])
f = q.WorklistFilter(user_id=user.id, department_id=user.department_id, today=today, view=view, bucket=bucket,
                     sort=sort, lang=lang(), offset=(page - 1) * 50, tag=tag)

# data (not cached: a nurse expects her list to move as soon as she logs a call)
with data.read() as conn:
    counts = q.worklist_counts(conn=conn, f=f)
    tasks = q.worklist(conn=conn, f=f)

# show
m1, m2, m3 = st.columns(3)
m1.metric(tr("worklist.overdue"), counts.overdue, border=True)
m2.metric(tr("worklist.due_today"), counts.today, border=True)
m3.metric(tr("fu_wl.upcoming"), counts.upcoming, border=True)
caption = tr("fu_wl.caption", n=len(tasks), view=tr(f"fu_wl.view_{view}"), bucket=tr(f"fu_wl.bucket_{bucket}"),
             days=f.horizon_days, date=today.isoformat(), page=page, sort=tr(f"fu_wl.sort_{sort}"))
st.caption(tr("filter.separator").join([caption, tr("filter.segment_is", tag=tag_name)]) if tag else caption)
if tasks.empty:
    st.info(tr("worklist.empty"))
else:
    labels = {c: tr(f"worklist.col.{c}") for c in ("task_id", "due_date", "method", "kind", "attempts", "card_no",
                                                    "name", "sex", "overdue_days")}
    labels.update({"risk": tr("fu_wl.col_risk"), "plan": tr("fu_wl.col_plan"), "age": tr("fu_wl.col_age"),
                   "phone": tr("fu_wl.col_phone"), "assignee": tr("fu_wl.col_assignee")})

    def _shaped(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.drop(columns=["version", "patient_id"]).assign(
            method=rows["method"].map(lambda m: tr(f"method.{m}")),
            kind=rows["kind"].map(lambda k: tr(f"task_kind.{k}")),
            sex=rows["sex"].map(lambda s: tr(f"sex.{s}")),
            # No risk assessment or no plan yet reads as a dash, not "None".
            risk=rows["risk"].fillna("—"),
            plan=rows["plan"].fillna("—"),
        ).rename(columns=labels)

    def _all_tasks(limit: int) -> pd.DataFrame:
        with data.read() as conn:
            return _shaped(q.worklist(conn=conn, f=replace(f, limit=limit, offset=0)))

    matching = {"overdue": counts.overdue, "today": counts.today, "upcoming": counts.upcoming}
    data_table(_shaped(tasks), name="worklist", caption=False, full=_all_tasks,
               total=matching.get(bucket, counts.overdue + counts.today + counts.upcoming),
               description=tr("filter.separator").join([tr(f"fu_wl.view_{view}"), tr(f"fu_wl.bucket_{bucket}"),
                                                        tr(f"fu_wl.sort_{sort}"), today.isoformat()]))
    options = {int(i): f"#{i} · {due} · {name} ({card})" for i, due, name, card in
               zip(tasks["task_id"].tolist(), tasks["due_date"].tolist(), tasks["name"].tolist(),
                   tasks["card_no"].tolist(), strict=True)}
    col_pick, col_go = st.columns([4, 1])
    chosen = col_pick.selectbox(tr("fu_wl.pick"), list(options), format_func=options.__getitem__, key="wl_pick")
    if col_go.button(tr("fu_wl.open"), key="wl_open", type="primary"):
        st.session_state["followup_task_id"] = chosen
        st.switch_page("app_pages/task.py")
