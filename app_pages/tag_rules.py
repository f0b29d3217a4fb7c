"""Tag rules for admins: the rule list, a structured builder over the JSON rule, preview count, save as new version."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from components import data
from components.care_data import labelled
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import tags as tags_q
from services import clock, rules, tags
from services.errors import UserError
from services.patients import LIFESTYLE_ASPECTS

user = require("tag_rules")
st.title(tr("nav.tag_rules"))
st.caption(tr("care.rules_page.intro"))
now = clock.now(settings_or_stop().timezone)
flash = st.session_state.pop("rules_flash", None)
if flash:
    st.success(flash)
ss = st.session_state
NEW = "__new__"

# data
with data.read() as conn:
    table = tags_q.rules_table(conn=conn, lang=lang())
    indicators = sorted(rules.load_catalogue(conn))

# show: the list
st.subheader(tr("care.rules_page.rules_table"))
shown = table.drop(columns=["id"])
data_table(shown.rename(columns={c: tr(f"care.rules_page.col.{c}") for c in shown.columns}), name="tag_rules",
           caption=False, description=tr("reports.table_rows", table=tr("care.rules_page.rules_table"), n=len(shown)))

# settings: which rule to edit
st.subheader(tr("care.rules_page.edit_title"))
pick_options = [NEW, *table["code"].tolist()]
pick = st.selectbox(tr("care.rules_page.pick"), pick_options, key="rules_pick",
                    format_func=labelled(lambda c: tr("care.rules_page.new_rule") if c == NEW else c, pick_options))
if ss.get("rules_loaded") != pick:
    # A different rule was picked: load its fields before the widgets are drawn.
    with data.read() as conn:
        current = tags_q.rule(conn=conn, code=pick) if pick != NEW else None
    ss["rules_code"] = current["code"] if current else ""
    ss["rules_name_zh"] = current["name_zh"] if current else ""
    ss["rules_name_en"] = current["name_en"] if current else ""
    ss["rules_source"] = (current["source"] or "") if current else ""
    ss["rules_json"] = json.dumps(current["expression"], ensure_ascii=False, indent=2) if current else ""
    ss["rules_loaded"] = pick

c1, c2, c3 = st.columns(3)
c1.text_input(tr("care.rules_page.code"), key="rules_code", disabled=pick != NEW)
c2.text_input(tr("care.rules_page.name_zh"), key="rules_name_zh")
c3.text_input(tr("care.rules_page.name_en"), key="rules_name_en")
st.text_input(tr("care.rules_page.source"), key="rules_source")


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.replace("，", ",").split(",") if p.strip()]


def _leaf() -> dict[str, Any]:
    """The condition described by the builder's widgets."""
    kind = ss["rules_kind"]
    if kind == "indicator":
        node: dict[str, Any] = {"kind": "indicator", "code": ss["rules_b_indicator"], "mode": ss["rules_b_mode"],
                                "cmp": ss["rules_b_cmp"], "value": ss["rules_b_value"]}
        if int(ss["rules_b_window"]) > 0:
            node["window_days"] = int(ss["rules_b_window"])
        if ss["rules_b_mode"] == "count":
            node["min_count"] = int(ss["rules_b_min_count"])
        return node
    if kind == "diagnosis":
        return {"kind": "diagnosis", "codes": _split(ss["rules_b_codes"]), "text": _split(ss["rules_b_texts"])}
    if kind in ("age", "days_since_visit"):
        return {"kind": kind, "cmp": ss["rules_b_cmp"], "value": int(ss["rules_b_value"])}
    if kind == "satisfaction":
        node = {"kind": "satisfaction", "cmp": ss["rules_b_cmp"], "value": ss["rules_b_value"]}
        if int(ss["rules_b_window"]) > 0:
            node["window_days"] = int(ss["rules_b_window"])
        return node
    if kind == "sex":
        return {"kind": "sex", "value": ss["rules_b_sex"]}
    if kind == "lifestyle":
        node = {"kind": "lifestyle", "aspect": ss["rules_b_aspect"]}
        if _split(ss["rules_b_status"]):
            node |= {"key": "status", "values": _split(ss["rules_b_status"])}
        return node
    return {"kind": "risk", "model": ss["rules_b_model"], "levels": list(ss["rules_b_levels"])}


def _add() -> None:
    leaf, combine = _leaf(), ss["rules_combine"]
    text = ss.get("rules_json", "").strip()
    try:
        current = json.loads(text) if text else None
    except json.JSONDecodeError:
        current = None
    if current is None:
        expr: dict[str, Any] = leaf
    elif current.get("op") == combine:
        expr = {**current, "args": [*current["args"], leaf]}
    else:
        expr = {"op": combine, "args": [current, leaf]}
    ss["rules_json"] = json.dumps(expr, ensure_ascii=False, indent=2)


def _clear() -> None:
    ss["rules_json"] = ""


with st.container(border=True):
    st.markdown(f"**{tr('care.rules_page.builder')}**")
    b1, b2 = st.columns(2)
    b1.radio(tr("care.rules_page.combine"), ["and", "or"], key="rules_combine", horizontal=True,
             format_func=labelled(lambda o: tr(f"care.rules_page.combine_{o}"), ["and", "or"]))
    kind = b2.selectbox(tr("care.rules_page.kind"), list(rules.KINDS), key="rules_kind",
                        format_func=labelled(lambda k: tr(f"care.rules_page.kinds.{k}"), rules.KINDS))
    f1, f2, f3, f4 = st.columns(4)
    if kind == "indicator":
        f1.selectbox(tr("care.rules_page.indicator"), indicators, key="rules_b_indicator")
        mode = f2.selectbox(tr("care.rules_page.value_mode"), list(rules.MODES), key="rules_b_mode",
                            format_func=labelled(lambda m: tr(f"care.rules_page.modes.{m}"), rules.MODES))
        f3.selectbox(tr("care.rules_page.cmp"), list(rules.CMPS), key="rules_b_cmp")
        f4.number_input(tr("care.rules_page.value"), value=140.0, key="rules_b_value")
        g1, g2 = st.columns(2)
        g1.number_input(tr("care.rules_page.window_days"), min_value=0, value=365, step=1, key="rules_b_window")
        if mode == "count":
            g2.number_input(tr("care.rules_page.min_count"), min_value=1, value=2, step=1, key="rules_b_min_count")
    elif kind == "diagnosis":
        f1.text_input(tr("care.rules_page.codes"), key="rules_b_codes")
        f2.text_input(tr("care.rules_page.texts"), key="rules_b_texts")
    elif kind in ("age", "days_since_visit", "satisfaction"):
        f1.selectbox(tr("care.rules_page.cmp"), list(rules.CMPS), key="rules_b_cmp")
        f2.number_input(tr("care.rules_page.value"), min_value=0, value=40 if kind == "age" else 6, step=1,
                        key="rules_b_value")
        if kind == "satisfaction":
            f3.number_input(tr("care.rules_page.window_days"), min_value=0, value=365, step=1, key="rules_b_window")
    elif kind == "sex":
        f1.selectbox(tr("care.rules_page.sex"), ["M", "F"], key="rules_b_sex",
                     format_func=labelled(lambda s: tr(f"sex.{s}"), ["M", "F"]))
    elif kind == "lifestyle":
        f1.selectbox(tr("care.rules_page.aspect"), list(LIFESTYLE_ASPECTS), key="rules_b_aspect",
                     format_func=labelled(lambda a: tr(f"patients.aspect.{a}"), LIFESTYLE_ASPECTS))
        f2.text_input(tr("care.rules_page.status"), key="rules_b_status")
    else:
        model = f1.selectbox(tr("care.rules_page.model"), list(rules.RISK_MODELS), key="rules_b_model",
                             format_func=labelled(lambda m: tr(f"care.risk.model.{m}"), rules.RISK_MODELS))
        from services.risk import LEVELS

        f2.multiselect(tr("care.rules_page.levels"), LEVELS[model], default=[LEVELS[model][-1]], key="rules_b_levels",
                       format_func=labelled(lambda lv: tr(f"care.risk.level.{lv}"), rules.RISK_LEVELS))
    a1, a2 = st.columns(2)
    a1.button(tr("care.rules_page.add"), key="rules_add", on_click=_add)
    a2.button(tr("care.rules_page.clear"), key="rules_clear", on_click=_clear)

st.text_area(tr("care.rules_page.json"), key="rules_json", height=220)
if not ss.get("rules_json", "").strip():
    st.info(tr("care.rules_page.no_conditions"))

p1, p2 = st.columns(2)
if p1.button(tr("care.rules_page.preview"), key="rules_preview", type="secondary"):
    try:
        expr = rules.parse(ss["rules_json"])
        with data.read() as conn:
            n = rules.preview_count(conn, expr, as_of=now)
        st.success(tr("care.rules_page.preview_result", n=f"{n:,}", date=now.date().isoformat()))
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))
if p2.button(tr("care.rules_page.save"), key="rules_save", type="primary"):
    try:
        expr = rules.parse(ss["rules_json"])
        with data.write() as s:
            saved = tags.save_rule(s, data=tags.RuleInput(ss["rules_code"], ss["rules_name_zh"], ss["rules_name_en"],
                                                          expr, ss["rules_source"]),
                                   user_id=user.id, username=user.username, now=now)
            code, version = saved.code, saved.version
        data.tag_segments.clear()  # the segment pickers list the active rules' tags
        ss["rules_flash"] = tr("care.rules_page.saved", code=code, version=version)
        ss["rules_loaded"] = None
        st.rerun()
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))

if pick != NEW:
    row = table.loc[table["code"] == pick].iloc[0]
    active = bool(row["active"])
    new_state = st.toggle(tr("care.rules_page.activate"), value=active, key=f"rules_active_{pick}")
    if new_state != active:
        with data.write() as s:
            tags.set_rule_active(s, rule_id=int(row["id"]), active=new_state, user_id=user.id,
                                 username=user.username)
        data.tag_segments.clear()
        ss["rules_flash"] = tr("care.rules_page.toggled", code=pick,
                               state=tr("care.rules_page.state_on" if new_state else "care.rules_page.state_off"))
        st.rerun()
