"""The 360° header: who the patient is, in one glance, with contacts masked for roles that do not need them."""

from __future__ import annotations

import streamlit as st

from components.runtime import lang, tr
from queries.patients import PatientHeader
from services.masking import id_number_for, phone_for


def show(h: PatientHeader, *, role: str) -> None:
    st.subheader(f"{h.name} · {h.card_no}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(tr("patients.header.age"), "-" if h.age is None else h.age, border=True)
    c2.metric(tr("patients.header.sex"), tr(f"sex.{h.sex}"), border=True)
    dept = (h.department_zh if lang().startswith("zh") else h.department_en) or tr("patients.none")
    c3.metric(tr("patients.header.department"), dept, border=True)
    c4.metric(tr("patients.header.risk"), tr(f"patients.risk.{h.risk_level}") if h.risk_level
              else tr("patients.none"), border=True)
    consents = ", ".join(tr(f"patients.consent.{p}") for p, on in h.consents.items() if on) or tr("patients.none")
    lines = [
        tr("patients.header.nurse", name=h.nurse_name or tr("patients.none")),
        tr("patients.header.phone", phone=phone_for(role, h.phone) or tr("patients.none")),
        tr("patients.header.id_number", id=id_number_for(role, h.id_number) or tr("patients.none")),
        tr("patients.header.consents", consents=consents),
        tr("patients.header.tags", tags=", ".join(h.tags) or tr("patients.none")),
        tr("patients.header.status", status=tr(f"patients.status.{h.status}")),
    ]
    if h.do_not_contact:
        lines.append(tr("patients.header.do_not_contact"))
    st.caption(" · ".join(lines))
