"""Questionnaire builder for admins: templates and their versions; editing a template that has answers makes
the next version, so old answers keep the questions they answered."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, tr
from queries import satisfaction as sq
from services import questionnaires as qs
from services.errors import UserError

NEW = "__new__"
ITEM_COLUMNS = ["item_code", "qtype", "text_zh", "text_en", "required", "options", "top_box", "is_nps"]

user = require("questionnaires")
st.title(tr("nav.questionnaires"))

# data: every template version
with data.read() as conn:
    templates = sq.questionnaire_list(conn=conn, lang=lang())
shown = templates.drop(columns=["id"]).assign(
    kind=templates["kind"].map(lambda k: tr(f"satisfaction.kind.{k}")),
    status=templates["status"].map(lambda s: tr(f"satisfaction.qstatus.{s}")))
data_table(shown.rename(columns={c: tr(f"satisfaction.col.{c}") for c in shown.columns}), name="questionnaires",
           description=tr("satisfaction.templates_caption", n=len(templates)))

# settings: which template to edit (labels resolved here, not inside widget callbacks)
NEW_LABEL = tr("satisfaction.new_template")
KIND = {k: tr(f"satisfaction.kind.{k}") for k in qs.KINDS}
codes = list(dict.fromkeys(templates["code"]))
code = st.selectbox(tr("satisfaction.template"), options=[NEW, *codes], key="builder_code",
                    format_func=lambda c: NEW_LABEL if c == NEW else c)
if code == NEW:
    spec = qs.TemplateSpec("", "custom", "", "", (qs.ItemSpec("q1", "likert_5", "", "", top_box=(5.0,)),))
    version = 0
else:
    with data.write() as session:
        q, spec, _ = qs.load(session, code)
        version = q.version
    st.caption(tr("satisfaction.editing", code=code, version=version))

rule: dict[str, Any] = dict(spec.score_rule or {})
recovery_rule: dict[str, Any] = dict(rule.get("recovery") or {})
with st.form(f"builder_{code}"):
    c1, c2, c3, c4 = st.columns(4)
    new_code = c1.text_input(tr("satisfaction.code"), value=spec.code, disabled=code != NEW, max_chars=48)
    kind = c2.selectbox(tr("satisfaction.kind_label"), options=qs.KINDS, index=qs.KINDS.index(spec.kind),
                        format_func=KIND.__getitem__)
    title_zh = c3.text_input(tr("satisfaction.title_zh"), value=spec.title_zh, max_chars=200)
    title_en = c4.text_input(tr("satisfaction.title_en"), value=spec.title_en, max_chars=200)
    st.caption(tr("satisfaction.items_help"))
    frame = pd.DataFrame([{
        "item_code": i.item_code, "qtype": i.qtype, "text_zh": i.text_zh, "text_en": i.text_en,
        "required": i.required, "options": qs.options_to_text(i.options),
        "top_box": ", ".join(f"{v:g}" for v in i.top_box or ()), "is_nps": i.is_nps,
    } for i in spec.items], columns=ITEM_COLUMNS)
    edited = st.data_editor(
        frame, num_rows="dynamic", hide_index=True, width="stretch", key=f"builder_items_{code}",
        column_config={
            "item_code": st.column_config.TextColumn(tr("satisfaction.col.item_code"), max_chars=48),
            "qtype": st.column_config.SelectboxColumn(tr("satisfaction.col.qtype"), options=list(qs.QTYPES)),
            "text_zh": st.column_config.TextColumn(tr("satisfaction.title_zh")),
            "text_en": st.column_config.TextColumn(tr("satisfaction.title_en")),
            "required": st.column_config.CheckboxColumn(tr("satisfaction.col.required")),
            "options": st.column_config.TextColumn(tr("satisfaction.col.options")),
            "top_box": st.column_config.TextColumn(tr("satisfaction.col.top_box_def")),
            "is_nps": st.column_config.CheckboxColumn(tr("satisfaction.col.is_nps")),
        },
    )
    r1, r2, r3 = st.columns(3)
    rec_item = r1.text_input(tr("satisfaction.recovery_item"), value=str(recovery_rule.get("item", "")))
    rec_below = r2.number_input(tr("satisfaction.recovery_below"), value=float(recovery_rule.get("below", 5)),
                                min_value=0.0, max_value=10.0, step=1.0)
    rec_sla = r3.number_input(tr("satisfaction.recovery_sla"), value=int(recovery_rule.get("sla_hours", 48)),
                              min_value=1, max_value=720, step=1)
    save = st.form_submit_button(tr("satisfaction.save_template"), type="primary")

if save:
    try:
        items = []
        for r in edited.to_dict("records"):
            item_code = str(r.get("item_code") or "").strip()
            if not item_code:
                continue
            items.append(qs.ItemSpec(
                item_code, str(r.get("qtype") or ""), str(r.get("text_zh") or ""), str(r.get("text_en") or ""),
                bool(r.get("required")), qs.options_from_text(r.get("options"), item=item_code),
                qs.top_box_from_text(r.get("top_box"), item=item_code), bool(r.get("is_nps"))))
        new_rule = {k: v for k, v in rule.items() if k != "recovery"}
        if rec_item.strip():
            new_rule["recovery"] = {"item": rec_item.strip(), "below": rec_below, "sla_hours": int(rec_sla)}
        new_spec = qs.TemplateSpec(new_code.strip() if code == NEW else code, kind, title_zh, title_en, tuple(items),
                                   new_rule or None)
        with data.write() as session:
            out = qs.save_template(session, new_spec, actor_id=user.id, actor=user.username)
            saved_code, saved_version = out.questionnaire.code, out.questionnaire.version
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))
    else:
        st.success(tr(f"satisfaction.saved_{out.action}", code=saved_code, version=saved_version))
