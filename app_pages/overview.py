"""Overview for managers: KPI cards and NPS by month for a period and departments."""

from __future__ import annotations

import streamlit as st

from components import charts, data, kpi
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries.filters import scope_for
from services import clock

user = require("overview")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("overview.title"))

# settings
f = period_filter(scope, today=clock.today(settings_or_stop().timezone), key="overview")

# data
k = data.overview_kpis(scope.key, f, scope)
months = data.nps_by_month(scope.key, f, scope)

# show
st.caption(f.describe(lang()))
kpi.cards([
    (tr("overview.active_patients"), f"{k.active_patients:,}", tr("overview.active_patients_help")),
    (tr("overview.followups_due"), f"{k.followups_due:,}", tr("overview.followups_due_help")),
    (tr("overview.on_time"), kpi.fmt_pct(k.on_time_rate), tr("overview.on_time_help"),
     f"{k.followups_on_time:,} / {k.followups_due:,}"),
    (tr("overview.nps"), kpi.fmt_num(k.nps.nps), tr("overview.nps_help", low=kpi.fmt_num(k.nps.ci_low),
                                                     high=kpi.fmt_num(k.nps.ci_high))),
    (tr("overview.responses"), f"{k.nps.responses:,}", tr("overview.responses_help")),
])
if k.nps.responses and k.nps.small_sample:
    st.warning(tr("overview.small_sample", n=k.nps.responses))

chart_title = tr("overview.nps_chart_title", scope=f.describe(lang()))
if months.empty:
    st.info(tr("overview.no_responses"))
else:
    labels = {name: tr(f"overview.col.{name}") for name in ("month", "nps", "responses", "ci_low", "ci_high")}
    st.altair_chart(charts.nps_by_month(months, title=chart_title, labels=labels), width="stretch")
    with st.expander(tr("overview.table_title")):
        table = months.rename(columns={c: tr(f"overview.col.{c}") for c in months.columns})
        data_table(table, name="nps_by_month", description=f.describe(lang()))
