"""Service recovery for quality: open, overdue and closed cases, closed-loop rate, time to close; work a case."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import data, kpi
from components import satisfaction_data as sd
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import satisfaction as sq
from queries.filters import scope_for
from services import clock, recovery
from services.errors import UserError

PAGE = 50

user = require("recovery")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.recovery"))
tz = settings_or_stop().timezone

# settings (labels resolved here, so widget formatting never depends on when it is called)
STATUS: dict[str | None, str] = {None: tr("satisfaction.all_cases"),
          **{s: tr(f"satisfaction.status.{s}") for s in ("active", "open", "in_progress", "closed")}}
CAUSE = {r: tr(f"satisfaction.cause.{r}") for r in recovery.ROOT_CAUSES}
base = period_filter(scope, today=clock.today(tz), key="recovery", default_days=90)
c1, c2 = st.columns(2)
status = c1.selectbox(
    tr("satisfaction.case_status"), options=["active", "open", "in_progress", "closed", None], key="recovery_status",
    format_func=STATUS.__getitem__)
overdue_only = c2.toggle(tr("satisfaction.overdue_only"), key="recovery_overdue")
f = sq.SurveyFilter(base.date_from, base.date_to, base.department_ids, base.department_names)
now = clock.now(tz)

# data (uncached: the numbers move as the team works the cases)
with data.read() as conn:
    stats = sq.recovery_stats(conn=conn, f=f, scope=scope, now=now)
    cases, total = sq.recovery_cases(conn=conn, f=f, scope=scope, now=now, status=status, overdue_only=overdue_only,
                                     lang=lang(), limit=PAGE)
    causes = sq.recovery_by_root_cause(conn=conn, f=f, scope=scope)
    outcome = sq.recovery_outcome(conn=conn, f=f, scope=scope)

# show
described = f.describe(lang(), stats.opened, "satisfaction.units.cases")
st.caption(described)
kpi.cards([
    (tr("satisfaction.cases_open"), f"{stats.open:,}", tr("satisfaction.cases_open_help")),
    (tr("satisfaction.cases_overdue"), f"{stats.overdue:,}", tr("satisfaction.cases_overdue_help")),
    (tr("satisfaction.cases_closed"), f"{stats.closed:,}", tr("satisfaction.cases_closed_help")),
    (tr("satisfaction.closed_loop"), kpi.fmt_pct(stats.closed_loop_rate), tr("satisfaction.closed_loop_help")),
    (tr("satisfaction.time_to_close"), kpi.fmt_num(stats.mean_hours_to_close),
     tr("satisfaction.time_to_close_help", within=kpi.fmt_pct(stats.within_sla_rate))),
])

st.subheader(tr("satisfaction.outcome.title"))
st.caption(tr("satisfaction.outcome.caption"))
kpi.cards([
    (tr("satisfaction.outcome.rerated"), f"{outcome.rerated:,}",
     tr("satisfaction.outcome.rerated_help", share=kpi.fmt_pct(outcome.rerated_rate), closed=outcome.closed)),
    (tr("satisfaction.outcome.before_after"),
     f"{kpi.fmt_num(outcome.mean_before)} → {kpi.fmt_num(outcome.mean_after)}",
     tr("satisfaction.outcome.before_after_help")),
    (tr("satisfaction.outcome.recovered"), kpi.fmt_pct(outcome.recovered_rate),
     tr("satisfaction.outcome.recovered_help", n=outcome.recovered, promoters=outcome.promoters)),
])

st.subheader(tr("satisfaction.cases_title"))
st.caption(tr("satisfaction.cases_caption", shown=len(cases), total=total, scope=described))
if cases.empty:
    st.info(tr("satisfaction.no_cases"))
else:
    cols = ["case_id", "status", "overdue", "opened_at", "sla_due_at", "department", "card_no", "patient",
            "nps_score", "comment", "attempts", "root_cause", "rerating", "closed_at"]

    def _shaped(rows: pd.DataFrame) -> pd.DataFrame:
        return rows[cols].assign(
            status=rows["status"].map(lambda s: tr(f"satisfaction.status.{s}")),
            root_cause=rows["root_cause"].map(lambda r: tr(f"satisfaction.cause.{r}") if r else ""),
        ).rename(columns={c: tr(f"satisfaction.col.{c}") for c in cols})

    def _all_cases(limit: int) -> pd.DataFrame:
        with data.read() as conn:
            found, _ = sq.recovery_cases(conn=conn, f=f, scope=scope, now=now, status=status,
                                         overdue_only=overdue_only, lang=lang(), limit=limit)
        return _shaped(found)

    parts = [STATUS[status], described] + ([tr("satisfaction.overdue_only")] if overdue_only else [])
    data_table(_shaped(cases), name="recovery_cases", caption=False, full=_all_cases, total=total,
               description=tr("filter.separator").join(parts))
if not causes.empty:
    st.subheader(tr("satisfaction.causes_title"))
    data_table(causes.assign(root_cause=causes["root_cause"].map(
        lambda r: tr(f"satisfaction.cause.{r}") if r else tr("satisfaction.unknown"))).rename(
        columns={"root_cause": tr("satisfaction.col.root_cause"), "cases": tr("satisfaction.col.cases")}),
        name="recovery_root_causes", description=described)

# work one case
active = cases[cases["status"] != "closed"] if not cases.empty else cases
if not active.empty:
    st.subheader(tr("satisfaction.work_title"))
    ids = [int(i) for i in active["case_id"]]
    chosen = st.selectbox(tr("satisfaction.case"), options=ids, key="recovery_case",
                          format_func=lambda i: f"#{i}")
    row = active[active["case_id"] == chosen].iloc[0]
    st.caption(tr("satisfaction.case_detail", score=row["nps_score"], comment=row["comment"] or "—",
                  due=str(row["sla_due_at"])))
    left, right = st.columns(2)
    with left.form("recovery_attempt"):
        reached = st.checkbox(tr("satisfaction.reached"))
        note = st.text_area(tr("satisfaction.note"), max_chars=2000)
        log = st.form_submit_button(tr("satisfaction.log_attempt"))
    with right.form("recovery_close"):
        cause = st.selectbox(tr("satisfaction.col.root_cause"), options=recovery.ROOT_CAUSES,
                             format_func=CAUSE.__getitem__)
        resolution = st.text_area(tr("satisfaction.resolution"), max_chars=2000)
        asked = st.checkbox(tr("satisfaction.rerating_asked"))
        rerating = st.slider(tr("satisfaction.col.rerating"), 0, 10, 7)
        close = st.form_submit_button(tr("satisfaction.close_case"))
    if log or close:
        try:
            with data.write() as session:
                if log:
                    recovery.log_attempt(session, case_id=chosen, expected_version=int(row["version"]),
                                         reached=reached, note=note or None, actor_id=user.id, actor=user.username)
                else:
                    recovery.close_case(session, case_id=chosen, expected_version=int(row["version"]),
                                        root_cause=cause, resolution=resolution,
                                        rerating=int(rerating) if asked else None, actor_id=user.id,
                                        actor=user.username)
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
        else:
            sd.clear()
            st.success(tr("satisfaction.saved"))
            st.rerun()
