"""Patient search: card number, phone, ID number, name or pinyin initials; one page of results; open the 360° view."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.filters import tag_segment
from components.navigation import require
from components.runtime import lang, tr
from queries.filters import scope_for
from queries.patients import SearchFilter, search_patients
from services.masking import id_number_for, phone_for

PAGE_SIZE = 20

user = require("patients")
st.title(tr("nav.patients"))
scope = scope_for(role=user.role, department_id=user.department_id)

# settings
c1, c2, c3 = st.columns([3, 2, 1])
text = c1.text_input(tr("patients.search.box"), key="patients_q", placeholder=tr("patients.search.placeholder"))
tag, tag_name = tag_segment(key="patients_tag", container=c2)
page = int(c3.number_input(tr("patients.search.page"), min_value=1, value=1, step=1, key="patients_page"))
f = SearchFilter(text=text, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, tag=tag, tag_name=tag_name, lang=lang())

# data (not cached: a patient enrolled a minute ago must be found)
if not text.strip() and not tag:
    st.info(tr("patients.search.hint"))
    st.stop()
with data.read() as conn:
    found = search_patients(conn=conn, f=f, scope=scope, user_id=user.id)

# show
st.caption(tr("patients.search.caption", n=len(found), describe=f.describe(lang())))
if found.empty:
    st.info(tr("patients.search.none"))
    st.stop()


def _shaped(rows: pd.DataFrame) -> pd.DataFrame:
    """What the table shows, and the downloads hold: contacts masked for the roles that see masks."""
    shown = rows.assign(
        phone=[phone_for(user.role, p) for p in rows["phone"]],
        id_number=[id_number_for(user.role, v) for v in rows["id_number"]],
        sex=[tr(f"sex.{s}") for s in rows["sex"]],
        status=[tr(f"patients.status.{s}") for s in rows["status"]],
    ).drop(columns=["id"])
    return shown.rename(columns={c: tr(f"patients.col.{c}") for c in shown.columns})


def _all_found(limit: int) -> pd.DataFrame:
    with data.read() as conn:
        return _shaped(search_patients(conn=conn, f=replace(f, limit=limit, offset=0), scope=scope, user_id=user.id))


data_table(_shaped(found), name="patient_search", description=f.describe(lang()),
           caption=False, full=_all_found)
labels = {int(i): f"{c} {n}" for i, c, n in zip(found["id"], found["card_no"], found["name"], strict=True)}
chosen = st.selectbox(tr("patients.search.pick"), options=list(labels), format_func=lambda i: labels[i],
                      key="patients_pick")
if st.button(tr("patients.search.open"), key="patients_open", type="primary") and chosen is not None:
    st.session_state["patient_id"] = int(chosen)
    st.session_state.pop("patient_viewed", None)
    st.switch_page("app_pages/patient.py")
