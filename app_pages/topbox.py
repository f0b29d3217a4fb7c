"""Top-box % by item and department (HCAHPS method: skipped items leave the denominator) and response rate."""

from __future__ import annotations

import streamlit as st

from components import satisfaction_charts as charts
from components import satisfaction_data as sd
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import satisfaction as sq
from queries.filters import scope_for
from services import clock

user = require("topbox")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.topbox"))

# settings
base = period_filter(scope, today=clock.today(settings_or_stop().timezone), key="topbox")
f = sq.SurveyFilter(base.date_from, base.date_to, base.department_ids, base.department_names)

# data
cells = sd.topbox(scope.key, f, lang(), scope)
rates = sd.response_rate(scope.key, f, lang(), scope)

# show
described = f.describe(lang())
st.caption(tr("satisfaction.topbox_method"))
if cells.empty:
    st.info(tr("satisfaction.no_responses"))
else:
    labels = {k: tr(f"satisfaction.col.{k}") for k in ("item", "department", "pct", "top_box", "answers")}
    st.altair_chart(charts.topbox_heatmap(cells, title=tr("satisfaction.topbox_title", scope=described),
                                          labels=labels), width="stretch")
    st.subheader(tr("satisfaction.table_title"))
    st.caption(tr("satisfaction.topbox_title", scope=described))
    cols = ["item", "department", "answers", "top_box", "pct"]
    data_table(cells[cols].rename(columns=labels), name="topbox", caption=False,
               description=tr("satisfaction.topbox_title", scope=described))

st.subheader(tr("satisfaction.rate_title"))
st.caption(tr("satisfaction.rate_caption", scope=described))
if rates.empty:
    st.info(tr("satisfaction.no_invitations"))
else:
    cols = ["department", "invited", "responded", "rate"]
    data_table(rates[cols].rename(columns={c: tr(f"satisfaction.col.{c}") for c in cols}), name="response_rate",
               caption=False, description=tr("satisfaction.rate_caption", scope=described))
