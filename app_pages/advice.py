"""Advice library for admins: bilingual items linked to tags and risk levels; built-ins can be loaded."""

from __future__ import annotations

import streamlit as st

from components import data
from components.care_data import labelled
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, tr
from queries import advice as advice_q
from services import advice
from services.errors import UserError

user = require("advice")
st.title(tr("nav.advice"))
st.caption(tr("care.advice_page.intro"))
ss = st.session_state
NEW = "__new__"
flash = ss.pop("advice_flash", None)
if flash:
    st.success(flash)

# data
with data.read() as conn:
    table = advice_q.items(conn=conn, lang=lang())

# show
st.subheader(tr("care.advice_page.table"))
shown = table.assign(category=table["category"].map(lambda c: tr(f"care.advice.category.{c}")))
data_table(shown.rename(columns={c: tr(f"care.advice_page.col.{c}") for c in shown.columns}), name="advice",
           caption=False, description=tr("reports.table_rows", table=tr("care.advice_page.table"), n=len(shown)))

st.subheader(tr("care.advice_page.edit_title"))
pick_options = [NEW, *table["code"].tolist()]
pick = st.selectbox(tr("care.advice_page.pick"), pick_options, key="advice_pick",
                    format_func=labelled(lambda c: tr("care.advice_page.new_item") if c == NEW else c, pick_options))
if ss.get("advice_loaded") != pick:
    with data.read() as conn:
        current = advice_q.item(conn=conn, code=pick) if pick != NEW else None
    for field in ("code", "title_zh", "title_en", "body_zh", "body_en", "source"):
        ss[f"advice_{field}"] = current[field] if current else ""
    ss["advice_category"] = current["category"] if current else advice.CATEGORIES[0]
    ss["advice_tags"] = ", ".join(current["tags"]) if current else ""
    ss["advice_risk"] = ", ".join(current["risk"]) if current else ""
    ss["advice_active"] = current["active"] if current else True
    ss["advice_loaded"] = pick

c1, c2 = st.columns(2)
c1.text_input(tr("care.advice_page.code"), key="advice_code", disabled=pick != NEW)
c2.selectbox(tr("care.advice_page.category"), list(advice.CATEGORIES), key="advice_category",
             format_func=labelled(lambda c: tr(f"care.advice.category.{c}"), advice.CATEGORIES))
c1.text_input(tr("care.advice_page.title_zh"), key="advice_title_zh")
c2.text_input(tr("care.advice_page.title_en"), key="advice_title_en")
c1.text_area(tr("care.advice_page.body_zh"), key="advice_body_zh")
c2.text_area(tr("care.advice_page.body_en"), key="advice_body_en")
c1.text_input(tr("care.advice_page.tags"), key="advice_tags")
c2.text_input(tr("care.advice_page.risk"), key="advice_risk")
st.text_input(tr("care.advice_page.source"), key="advice_source")
st.checkbox(tr("care.advice_page.active"), key="advice_active")


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.replace("，", ",").split(",") if p.strip()]


if st.button(tr("care.advice_page.save"), key="advice_save", type="primary"):
    try:
        risk: list[tuple[str, str]] = []
        for pair in _split(ss["advice_risk"]):
            model, _, level = pair.partition(":")
            risk.append((model.strip(), level.strip()))
        item = advice.AdviceInput(
            code=ss["advice_code"], category=ss["advice_category"], title_zh=ss["advice_title_zh"],
            title_en=ss["advice_title_en"], body_zh=ss["advice_body_zh"], body_en=ss["advice_body_en"],
            tags=tuple(_split(ss["advice_tags"])), risk=tuple(risk), source=ss["advice_source"],
            active=bool(ss["advice_active"]))
        with data.write() as s:
            advice.save_item(s, data=item, user_id=user.id, username=user.username)
        ss["advice_flash"] = tr("care.advice_page.saved", code=item.code.strip())
        ss["advice_loaded"] = None
        st.rerun()
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))
