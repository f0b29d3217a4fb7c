"""A questionnaire drawn inline inside a form (the task's contact form): one widget per item, answers by item code."""

from __future__ import annotations

from typing import Any

import streamlit as st

from queries.contact_flow import FormItem, StepQuestionnaire
from services import questionnaires as qs


def _label(item: FormItem) -> str:
    return f"{item.text} *" if item.required else item.text


def _formatter(item: FormItem) -> Any:
    labels = dict(item.options)
    return lambda v: labels.get(v, str(v))


def inputs(q: StepQuestionnaire, *, key_prefix: str) -> dict[str, Any]:
    """Draw the items (call inside st.form); returns {item_code: raw answer} for services.surveys to validate."""
    answers: dict[str, Any] = {}
    for item in q.items:
        key = f"{key_prefix}_{q.questionnaire_id}_{item.item_code}"
        values = [v for v, _ in item.options]
        if item.qtype == "scale_0_10":
            answers[item.item_code] = st.radio(_label(item), options=list(range(11)), index=None, horizontal=True,
                                               key=key)
        elif item.qtype in ("likert_5", "single"):
            answers[item.item_code] = st.radio(_label(item), options=values, index=None, horizontal=True, key=key,
                                               format_func=_formatter(item))
        elif item.qtype == "multi":
            answers[item.item_code] = st.multiselect(_label(item), options=values, key=key,
                                                     format_func=_formatter(item))
        elif item.qtype == "number":
            answers[item.item_code] = st.number_input(_label(item), value=None, key=key)
        elif item.qtype == "date":
            answers[item.item_code] = st.date_input(_label(item), value=None, key=key)
        else:
            answers[item.item_code] = st.text_area(_label(item), key=key, max_chars=qs.MAX_TEXT)
    return answers
