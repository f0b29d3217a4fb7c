"""Enrolment (开卡): a new patient with a card number and consents; possible duplicates are shown first."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from db.models import CONSENT_PURPOSES, SEXES
from queries import patients as pq
from services import clock
from services import patients as svc
from services.errors import UserError

user = require("enrol")
settings = settings_or_stop()
st.title(tr("nav.enrol"))
today = clock.today(settings.timezone)
actor = svc.Actor(user.id, user.username)

with data.read() as conn:
    depts = dict(pq.departments(conn=conn, lang=lang()))
    nurse_names = dict(pq.nurses(conn=conn, department_id=user.department_id))

# settings: the form
with st.form("enrol_form"):
    name = st.text_input(tr("patients.col.name"))
    c1, c2 = st.columns(2)
    sex = c1.selectbox(tr("patients.col.sex"), options=list(SEXES), format_func=lambda x: tr(f"sex.{x}"))
    birth = c2.date_input(tr("patients.col.birth_date"), value=None, min_value=date(1900, 1, 1), max_value=today)
    phone = c1.text_input(tr("patients.col.phone"))
    id_type = c2.selectbox(tr("patients.col.id_type"), options=list(svc.ID_TYPES),
                           format_func=lambda x: tr(f"patients.id_type.{x}"))
    id_number = st.text_input(tr("patients.col.id_number"), help=tr("patients.enrol.id_help"))
    address = st.text_input(tr("patients.col.address"))
    dept_ids = list(depts)
    dept = c1.selectbox(tr("patients.col.department"), options=[None, *dept_ids],
                        index=(dept_ids.index(user.department_id) + 1 if user.department_id in depts else 0),
                        format_func=lambda i: depts.get(i, "-") if i is not None else "-")
    nurse = c2.selectbox(tr("patients.col.nurse"), options=[None, *nurse_names],
                         index=([None, *nurse_names].index(user.id) if user.id in nurse_names else 0),
                         format_func=lambda i: nurse_names.get(i, "-") if i is not None else "-")
    channels = st.multiselect(tr("patients.col.channel_prefs"), options=list(svc.CHANNELS),
                              format_func=lambda c: tr(f"patients.channel.{c}"))
    st.markdown(tr("patients.enrol.consents"))
    cols = st.columns(len(CONSENT_PURPOSES))
    consents = [p for p, col in zip(CONSENT_PURPOSES, cols, strict=True)
                if col.checkbox(tr(f"patients.consent.{p}"), key=f"enrol_consent_{p}")]
    submitted = st.form_submit_button(tr("patients.enrol.submit"), type="primary")

if submitted:
    st.session_state["enrol_pending"] = svc.PatientInput(
        name=name, sex=sex, birth_date=birth, phone=phone, id_type=id_type, id_number=id_number, address=address,
        department_id=dept, nurse_id=nurse, channel_prefs=tuple(channels), consents=tuple(consents))
    st.session_state.pop("enrol_duplicates", None)


def _enrol(pending: svc.PatientInput, confirm: bool) -> None:
    try:
        with data.write() as s:
            p = svc.enrol(s, pending, actor=actor, card_prefix=settings.card_prefix, confirm_new=confirm)
            card, pid = p.card_no, p.id
        st.session_state.pop("enrol_pending", None)
        st.session_state.pop("enrol_duplicates", None)
        st.session_state["patient_id"] = pid
        st.session_state.pop("patient_viewed", None)
        st.success(tr("patients.enrol.done", card=card))
        st.page_link("app_pages/patient.py", label=tr("patients.enrol.open_new"), icon=":material/person:")
    except svc.DuplicateFound as dup:
        st.session_state["enrol_duplicates"] = dup.duplicates
    except UserError as exc:
        st.session_state.pop("enrol_pending", None)
        st.error(tr(exc.key, **exc.params))


pending = st.session_state.get("enrol_pending")
if submitted and isinstance(pending, svc.PatientInput):
    _enrol(pending, confirm=False)

dups = st.session_state.get("enrol_duplicates")
if dups and isinstance(pending, svc.PatientInput):
    st.warning(tr("patients.err.duplicates", n=len(dups)))
    data_table(pd.DataFrame(
        [(d.card_no, d.name, d.birth_date, tr(f"patients.dup.{d.reason}")) for d in dups],
        columns=[tr("patients.col.card_no"), tr("patients.col.name"), tr("patients.col.birth_date"),
                 tr("patients.dup.reason")]), name="enrol_duplicates", caption=False,
        description=tr("patients.err.duplicates", n=len(dups)))
    labels = {d.patient_id: f"{d.card_no} {d.name}" for d in dups}
    existing = st.selectbox(tr("patients.dup.pick"), options=list(labels), format_func=lambda i: labels[i])
    c1, c2 = st.columns(2)
    if c1.button(tr("patients.dup.open_existing"), key="enrol_open_existing") and existing is not None:
        st.session_state.pop("enrol_pending", None)
        st.session_state.pop("enrol_duplicates", None)
        st.session_state["patient_id"] = existing
        st.session_state.pop("patient_viewed", None)
        st.switch_page("app_pages/patient.py")
    if c2.button(tr("patients.dup.confirm_new"), key="enrol_confirm_new", type="primary"):
        _enrol(pending, confirm=True)
