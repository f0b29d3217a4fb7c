"""Engagement: reach and opens of education by item and department, and the A/B tests of reminder rules."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries.filters import scope_for
from queries.messaging import engagement, experiment_results, experiments
from services import clock
from services import experiments as experiments_service
from services.errors import UserError
from services.messaging.queue import RULES

user = require("engagement")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("engagement.title"))

# settings
today = clock.today(settings_or_stop().timezone)
f = period_filter(scope, today=today, key="engagement", default_days=90)

# data
with data.read() as conn:
    reach = engagement(conn=conn, f=f, scope=scope, lang=lang())
    tests = experiments(conn=conn)

# show
st.header(tr("engagement.reach"))
st.caption(f.describe(lang()))
if reach.empty:
    st.info(tr("engagement.no_education"))
else:
    data_table(reach.rename(columns={c: tr(f"engagement.col.{c}") for c in reach.columns}), name="education_reach",
               caption=False, description=f.describe(lang()))

st.header(tr("engagement.experiments"))
if tests.empty:
    st.info(tr("engagement.no_experiments"))
else:
    labels = dict(zip(tests["id"], tests["code"], strict=True))
    chosen = st.selectbox(tr("engagement.experiment"), list(labels), format_func=lambda v: str(labels[v]),
                          key="engagement_experiment")
    exp = tests[tests["id"] == chosen].iloc[0]
    st.caption(tr("engagement.experiment_caption", rule=exp["rule"], variant=tr(f"engagement.variant.{exp['variant']}"),
                  a=exp["arm_a"], b=exp["arm_b"], start=str(exp["started_on"])))
    with data.read() as conn:
        res = experiment_results(conn=conn, experiment_id=int(chosen), as_of=today)
    if res.empty:
        st.info(tr("engagement.no_assignments"))
    else:
        def ci(rate: Any, low: Any, high: Any) -> str:
            return f"{float(rate) * 100:.1f}% ({float(low) * 100:.1f}–{float(high) * 100:.1f})"

        shown = [{tr("engagement.col.arm"): r.arm, tr("engagement.col.n"): r.n,
                  tr("engagement.col.followup"): ci(r.followup_rate, r.followup_ci_low, r.followup_ci_high),
                  tr("engagement.col.visit"): ci(r.visit_rate, r.visit_ci_low, r.visit_ci_high)}
                 for r in res.itertuples()]
        data_table(pd.DataFrame(shown), name=f"experiment_{exp['code']}", caption=False,
                   description=tr("engagement.experiment_caption", rule=exp["rule"],
                                  variant=tr(f"engagement.variant.{exp['variant']}"), a=exp["arm_a"],
                                  b=exp["arm_b"], start=str(exp["started_on"])))
        st.caption(tr("engagement.ci_note"))

if user.role == "admin":
    st.header(tr("engagement.new_experiment"))
    with st.form("new_experiment"):
        code = st.text_input(tr("engagement.code"))
        rule = st.selectbox(tr("engagement.rule"), list(RULES))
        variant = st.selectbox(tr("engagement.variant_label"), list(experiments_service.VARIANTS),
                               format_func=lambda v: tr(f"engagement.variant.{v}"))
        arm_a = st.text_input(tr("engagement.arm_a"), help=tr("engagement.arm_help"))
        arm_b = st.text_input(tr("engagement.arm_b"), help=tr("engagement.arm_help"))
        submitted = st.form_submit_button(tr("engagement.create"))
    if submitted:
        try:
            with data.write() as session:
                experiments_service.create_experiment(session, code=code.strip(), rule=rule, variant=variant,
                                                      arm_a=arm_a.strip(), arm_b=arm_b.strip(), started_on=today,
                                                      user=user, now=clock.now(settings_or_stop().timezone))
            st.success(tr("engagement.created", code=code.strip()))
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
