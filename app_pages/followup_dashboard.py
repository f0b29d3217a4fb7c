"""Follow-up completion for managers and the quality team: on-time and contact rates, overdue, HEARTS cohorts."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from components import data, followup_charts, followup_data, kpi
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import followup as q
from queries.filters import scope_for
from services import clock

user = require("followup_dashboard")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.followup_dashboard"))
today = clock.today(settings_or_stop().timezone)

# settings
period = period_filter(scope, today=today, key="fu_dash")
c1, c2 = st.columns(2)
grace = int(c1.number_input(tr("fu_dash.grace"), min_value=0, max_value=30, value=0, step=1, key="fu_dash_grace"))
by = c2.selectbox(tr("fu_dash.by"), q.GROUPS,
                  format_func=followup_data.labelled(lambda g: tr(f"fu_dash.by_{g}"), q.GROUPS),
                  key="fu_dash_by")
f = q.CompletionFilter(period=period, today=today, grace_days=grace, lang=lang())
scope_text = period.describe(lang())
by_text = tr(f"fu_dash.by_{by}")

# data
groups = followup_data.completion_by(scope.key, f, by, scope)
total = q.total_of(groups).iloc[0]

# show
st.caption(scope_text)
with st.expander(tr("fu_dash.definitions")):
    st.markdown(tr("fu_dash.definitions_text", grace=grace, today=today.isoformat()))


def _num(v: Any) -> float | None:
    return None if v is None or v != v else float(v)  # v != v: NaN, a rate with an empty denominator


def _rate(v: Any) -> str:
    return kpi.fmt_pct(_num(v))


kpi.cards([
    (tr("fu_dash.due"), f"{int(total['due']):,}", tr("overview.followups_due_help")),
    (tr("fu_dash.on_time"), _rate(total["on_time_rate"]), tr("fu_dash.on_time_help", grace=grace)),
    (tr("fu_dash.contact_rate"), _rate(total["contact_rate"]), tr("fu_dash.contact_rate_help")),
    (tr("fu_dash.overdue"), f"{int(total['overdue']):,}", tr("fu_dash.overdue_help")),
    (tr("fu_dash.mean_overdue"), kpi.fmt_num(_num(total["mean_days_overdue"])), tr("fu_dash.mean_overdue_help")),
])
if groups.empty:
    st.info(tr("fu_dash.empty"))
else:
    groups = groups.assign(label=groups["label"].fillna("—").astype(str))
    st.altair_chart(followup_charts.rate_by_group(groups, title=tr("fu_dash.chart_title", by=by_text, scope=scope_text),
                                                  group=by_text, rate=tr("fu_dash.col.on_time_rate"),
                                                  due=tr("fu_dash.col.due")), width="stretch")
    st.markdown(f"**{tr('fu_dash.table_title', by=by_text, scope=scope_text)}**")
    data_table(groups.drop(columns=["key"]).rename(columns={c: tr(f"fu_dash.col.{c}") for c in groups.columns}),
               name=f"followup_completion_by_{by}", caption=False,
               description=tr("fu_dash.table_title", by=by_text, scope=scope_text),
               column_config={tr("fu_dash.col.on_time_rate"): st.column_config.NumberColumn(format="percent"),
                              tr("fu_dash.col.contact_rate"): st.column_config.NumberColumn(format="percent")})
    keys = {i: (None if pd.isna(k) else k, str(lbl)) for i, (k, lbl) in enumerate(zip(groups["key"], groups["label"],
                                                                                        strict=True))}
    pick = st.selectbox(tr("fu_dash.drill"), list(keys), format_func=lambda i: keys[i][1],
                        key="fu_dash_drill")
    key = keys[pick][0]
    with data.read() as conn:
        drill = q.completion_drilldown(conn=conn, f=f, scope=scope, by=by,
                                       key=int(key) if by != "month" and key is not None else key)
    st.caption(tr("fu_dash.drill_caption", n=len(drill), group=keys[pick][1]))

    def _drill_shaped(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.assign(status=rows["status"].map(lambda s: tr(f"task_status.{s}")))
        return rows.rename(columns={c: tr(f"fu_dash.col.{c}") for c in rows.columns
                                    if c not in ("on_time", "reached")}
                           | {"on_time": tr("fu_dash.col.on_time"), "reached": tr("fu_dash.col.reached")})

    def _drill_all(limit: int) -> pd.DataFrame:
        with data.read() as conn:
            return _drill_shaped(q.completion_drilldown(conn=conn, f=f, scope=scope, by=by, limit=limit,
                                                        key=int(key) if by != "month" and key is not None else key))

    data_table(_drill_shaped(drill), name="followup_tasks", caption=False, full=_drill_all,
               description=tr("filter.separator").join([by_text, keys[pick][1], scope_text]))

st.subheader(tr("fu_dash.hearts"))
as_of = st.date_input(tr("fu_dash.hearts_as_of"), value=today, max_value=today, key="fu_dash_hearts_as_of")
h = followup_data.hearts(scope.key, as_of, period.department_ids, scope)
st.caption(tr("fu_dash.hearts_caption", n=f"{h.total:,}", source=tr(f"fu_dash.hearts_source_{h.source}"),
              date=h.as_of.isoformat(), c3=h.cutoff_3m.isoformat(), c12=h.cutoff_12m.isoformat()))
if h.source != "tag":
    st.warning(tr(f"fu_dash.hearts_source_{h.source}"))
cohorts = pd.DataFrame({
    "cohort": [tr(f"fu_dash.{c}") for c in ("controlled", "uncontrolled", "missed_visit", "lost_to_followup")],
    "patients": [h.controlled, h.uncontrolled, h.missed_visit, h.lost_to_followup],
})
cohorts["share"] = cohorts["patients"] / h.total if h.total else 0.0
if h.total:
    st.altair_chart(followup_charts.cohorts(cohorts, title=tr("fu_dash.hearts_chart_title", date=h.as_of.isoformat(),
                                                              scope=scope_text),
                                            cohort=tr("fu_dash.cohort"), patients=tr("fu_dash.patients")),
                    width="stretch")
data_table(cohorts.rename(columns={"cohort": tr("fu_dash.cohort"), "patients": tr("fu_dash.patients"),
                                   "share": tr("fu_dash.share")}), name="hearts_cohorts", caption=False,
           description=tr("filter.separator").join([tr("fu_dash.hearts"), h.as_of.isoformat(), scope_text]),
           column_config={tr("fu_dash.share"): st.column_config.NumberColumn(format="percent")})
