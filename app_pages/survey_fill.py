"""Kiosk-style questionnaire filling: find the patient by card number, choose a questionnaire, answer, submit."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import streamlit as st

from components import data
from components import satisfaction_data as sd
from components.navigation import require
from components.runtime import lang, tr
from queries import satisfaction as sq
from services import questionnaires as qs
from services import surveys
from services.errors import UserError

FLASH = "fill_flash"

user = require("survey_fill")
st.title(tr("nav.survey_fill"))
zh = lang() == "zh_CN"
if FLASH in st.session_state:
    score_text, case_opened = st.session_state.pop(FLASH)
    st.success(tr("satisfaction.thanks"))
    if score_text:
        st.info(score_text)
    if case_opened:
        st.warning(tr("satisfaction.case_opened"))

# settings: the patient and the questionnaire
card = st.text_input(tr("satisfaction.card_no"), key="fill_card", max_chars=24).strip()
if not card:
    st.info(tr("satisfaction.enter_card"))
    st.stop()
try:
    with data.write() as session:
        patient = surveys.find_patient(session, card_no=card, actor_id=user.id, actor=user.username)
except UserError as exc:
    st.error(tr(exc.key, **exc.params))
    st.stop()
    raise
st.markdown(f"**{patient.name}** · {patient.card_no}")

with data.read() as conn:
    templates = sq.questionnaire_list(conn=conn, lang=lang())
active = templates[templates["status"] == "active"].drop_duplicates("code")
if active.empty:
    st.info(tr("satisfaction.no_templates"))
    st.stop()
# The post-visit satisfaction survey first: it is what the kiosk is mostly for.
active = active.assign(first=active["code"] != "satisfaction").sort_values(["first", "code"])
titles = dict(zip(active["code"], active["title"], strict=True))
code = st.selectbox(tr("satisfaction.questionnaire"), options=list(titles), format_func=lambda c: titles[c],
                    key="fill_code")
with data.write() as session:
    q, spec, _ = qs.load(session, code)
    q_id, q_version, rule = q.id, q.version, q.score_rule
st.caption(tr("satisfaction.fill_caption", title=titles[code], version=q_version, n=len(spec.items)))

token_key = f"fill_token_{code}_{patient.id}"
if token_key not in st.session_state:
    # One token per filled form: pressing submit twice stores one response.
    st.session_state[token_key] = uuid.uuid4().hex


def _label(item: qs.ItemSpec) -> str:
    text = item.text_zh if zh else item.text_en
    return f"{text} *" if item.required else text


def _option_label(item: qs.ItemSpec, value: Any) -> str:
    for o in item.options or ():
        if isinstance(o, dict) and o.get("value") == value:
            return str(o.get("zh" if zh else "en", value))
    return str(value)


answers: dict[str, Any] = {}
with st.form(f"fill_{code}_{patient.id}"):
    for item in spec.items:
        key = f"fill_{code}_{item.item_code}"
        if item.qtype == "scale_0_10":
            answers[item.item_code] = st.radio(_label(item), options=list(range(11)), index=None, horizontal=True,
                                               key=key)
        elif item.qtype in ("likert_5", "single"):
            values = ([o["value"] for o in item.options or () if isinstance(o, dict)] if item.options
                      else [1, 2, 3, 4, 5])
            answers[item.item_code] = st.radio(_label(item), options=values, index=None, horizontal=True, key=key,
                                               format_func=partial(_option_label, item))
        elif item.qtype == "multi":
            values = [o["value"] for o in item.options or () if isinstance(o, dict)]
            answers[item.item_code] = st.multiselect(_label(item), options=values, key=key,
                                                     format_func=partial(_option_label, item))
        elif item.qtype == "number":
            answers[item.item_code] = st.number_input(_label(item), value=None, key=key)
        elif item.qtype == "date":
            answers[item.item_code] = st.date_input(_label(item), value=None, key=key)
        else:
            answers[item.item_code] = st.text_area(_label(item), key=key, max_chars=qs.MAX_TEXT)
    submitted = st.form_submit_button(tr("satisfaction.submit"), type="primary")

if submitted:
    try:
        with data.write() as session:
            out = surveys.submit_response(
                session, questionnaire_id=q_id, answers=answers, patient_id=patient.id, channel="kiosk",
                source="kiosk", source_ref=st.session_state[token_key], actor_id=user.id, actor=user.username)
            total, has_case = out.response.total_score, out.case is not None
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))
    else:
        sd.clear()
        # A kiosk serves the next patient: a fresh token and empty answers, the outcome shown once after the rerun.
        for k in [k for k in st.session_state if str(k).startswith(f"fill_{code}_") or k in (token_key, "fill_card")]:
            del st.session_state[k]
        band = qs.band_of(rule, total) if total is not None else None
        st.session_state[FLASH] = (
            None if total is None else tr("satisfaction.score_is", score=f"{total:g}",
                                          band=tr(f"satisfaction.severity.{band}") if band else "—"),
            has_case)
        st.rerun()
