"""Health interventions (健康干预): a patient's interventions, before/after of the targeted indicator, log one."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import data, followup_data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import followup as q
from queries.filters import scope_for
from services import clock, followup, interventions
from services.errors import UserError
from services.interventions import InterventionInput

KINDS = ("", "education", "diet", "exercise", "psychological", "adherence", "referral")

user = require("interventions")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.interventions"))
settings = settings_or_stop()
today = clock.today(settings.timezone)

# settings
card = st.text_input(tr("fu_iv.card"), help=tr("fu_iv.card_help"), key="iv_card").strip()
if not card:
    st.stop()
with data.read() as conn:
    patient = q.find_patient(conn=conn, card_no=card, scope=scope)
if patient is None:
    st.warning(tr("fu_iv.not_found"))
    st.stop()
    raise SystemExit  # unreachable: st.stop() raises
patient_id, card_no, name = patient
if st.session_state.get("iv_viewed") != patient_id:
    with data.write() as s:
        followup.record_view(s, user=user, patient_id=patient_id, entity="interventions", entity_id=patient_id,
                             now=clock.now(settings.timezone))
    st.session_state["iv_viewed"] = patient_id
flash = st.session_state.pop("iv_flash", None)
if flash:
    st.success(flash)

# data
with data.read() as conn:
    rows = q.patient_interventions(conn=conn, patient_id=patient_id)
    indicators = q.indicator_options(conn=conn, lang=lang())

# show
st.subheader(tr("fu_iv.list", name=f"{name} ({card_no})", n=len(rows)))
if rows.empty:
    st.info(tr("fu_iv.none"))
else:
    shown = rows.assign(kind=rows["kind"].map(lambda k: tr(f"intervention_kind.{k}")))
    data_table(shown.rename(columns={c: tr(f"fu_iv.col.{c}") for c in rows.columns}), name="interventions",
               caption=False, patient_id=patient_id,
               description=tr("fu_iv.list", name=f"{name} ({card_no})", n=len(rows)))
    c1, c2 = st.columns([3, 1])
    labels = {int(i): f"#{i} · {on} · {tr(f'intervention_kind.{k}')}" for i, on, k in
              zip(rows["intervention_id"].tolist(), rows["performed_on"].tolist(), rows["kind"].tolist(),
                  strict=True)}
    chosen = c1.selectbox(tr("fu_iv.compare"), list(labels), format_func=labels.__getitem__, key="iv_compare")
    window = int(c2.number_input(tr("fu_iv.window"), min_value=7, max_value=730, value=90, step=7, key="iv_window"))
    with data.read() as conn:
        ba = interventions.before_after(conn=conn, intervention_id=chosen, window_days=window)
    if ba.indicator_code is None:
        st.caption(tr("fu_iv.no_indicator"))
    else:
        st.caption(tr("fu_iv.compare_caption", indicator=ba.indicator_code, days=window))
        m1, m2, m3 = st.columns(3)
        m1.metric(tr("fu_iv.before"), "—" if ba.mean_before is None else f"{ba.mean_before:.1f}",
                  help=tr("fu_iv.readings", n=ba.n_before), border=True)
        m2.metric(tr("fu_iv.after"), "—" if ba.mean_after is None else f"{ba.mean_after:.1f}",
                  help=tr("fu_iv.readings", n=ba.n_after), border=True)
        m3.metric(tr("fu_iv.change"), "—" if ba.change is None else f"{ba.change:+.1f}", border=True)

if user.role in ("nurse", "admin"):
    st.subheader(tr("fu_iv.form"))
    names = dict(indicators)
    with st.form("iv_form"):
        c1, c2 = st.columns(2)
        kind = c1.selectbox(tr("fu_iv.kind"), KINDS, format_func=followup_data.labelled(
            lambda k: tr(f"intervention_kind.{k}") if k else "—", KINDS))
        indicator = c2.selectbox(tr("fu_iv.indicator"), ["", *names], format_func=followup_data.labelled(
            lambda c: f"{c} · {names[c]}" if c else tr("fu_iv.no_target"), ["", *names]))
        goal = st.text_input(tr("fu_iv.goal"))
        content = st.text_area(tr("fu_iv.content"), max_chars=interventions.MAX_CONTENT)
        c3, c4 = st.columns(2)
        performed_on = c3.date_input(tr("fu_iv.performed_on"), value=today, max_value=today)
        next_review_on = c4.date_input(tr("fu_iv.next_review_on"), value=None)
        submitted = st.form_submit_button(tr("fu_iv.save"), type="primary")
    if submitted:
        try:
            with data.write() as s:
                interventions.log_intervention(s, user=user, now=clock.now(settings.timezone), data=InterventionInput(
                    patient_id=patient_id, kind=kind, content=content, performed_on=pd.Timestamp(performed_on).date(),
                    indicator_code=indicator or None, goal=goal, next_review_on=next_review_on))
            st.session_state["iv_flash"] = tr("fu_iv.saved")
            st.rerun()
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
