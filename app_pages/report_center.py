"""Reports: the quality summary PDF for a period and department, and health reports of a segment as a zip."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

import i18n
from components import data, report_buttons
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries.filters import PeriodFilter, scope_for
from services import clock

user = require("reports")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("reports.title"))

# settings
today = clock.today(settings_or_stop().timezone)
departments = data.departments(scope.key, lang(), scope)
names = dict(departments)
languages = list(i18n.LANGUAGES)

st.subheader(tr("reports.page.quality"))
c_from, c_to, c_dept, c_lang = st.columns([1, 1, 2, 1])
start = c_from.date_input(tr("filter.from"), value=today - timedelta(days=365), max_value=today, key="rq_from")
end = c_to.date_input(tr("filter.to"), value=today, max_value=today, key="rq_to")
dept = c_dept.selectbox(tr("reports.col.department"), options=[None, *names], key="rq_dept",
                        format_func=lambda i: tr("filter.all_departments") if i is None else names.get(i, str(i)))
q_lang = c_lang.selectbox(tr("reports.lang_label"), options=languages, index=languages.index(lang()),
                          format_func=i18n.language_label, key="rq_lang")
if start > end:
    st.warning(tr("filter.swapped"))
    start, end = end, start
f = PeriodFilter(start, end, (dept,) if dept is not None else (), (names[dept],) if dept is not None else ())

# show
st.caption(f.describe(lang()))
report_buttons.quality_report_button(date_from=start, date_to=end, department_id=dept, user=user, language=q_lang,
                                     scope=scope, description=f.describe(q_lang))

st.divider()
st.subheader(tr("reports.page.batch"))
st.caption(tr("reports.page.batch_help"))
tags = report_buttons.tag_options()
tag_names = dict(tags)
b_dept, b_tag, b_limit, b_lang = st.columns([2, 2, 1, 1])
seg_dept = b_dept.selectbox(tr("reports.col.department"), options=[None, *names], key="rb_dept",
                            format_func=lambda i: tr("filter.all_departments") if i is None else names.get(i, str(i)))
seg_tag = b_tag.selectbox(tr("reports.page.tag"), options=[None, *tag_names], key="rb_tag",
                          format_func=lambda c: tr("reports.page.any_tag") if c is None else tag_names.get(c, c))
limit = int(b_limit.number_input(tr("reports.page.limit"), min_value=1, max_value=1000, value=50, step=10,
                                 key="rb_limit"))
b_language = b_lang.selectbox(tr("reports.lang_label"), options=languages, index=languages.index(lang()),
                              format_func=i18n.language_label, key="rb_lang")
cards = report_buttons.segment_cards(scope=scope, department_id=seg_dept, tag_code=seg_tag, limit=limit)
segment = tr("reports.page.segment", n=len(cards),
             department=names.get(seg_dept, "") if seg_dept is not None else tr("filter.all_departments"),
             tag=tag_names.get(seg_tag, seg_tag) if seg_tag else tr("reports.page.any_tag"))
st.caption(segment)
zip_key = (tuple(cards), b_language)
if st.button(tr("reports.page.build_zip"), disabled=not cards, key="rb_build"):
    payload = report_buttons.build_segment_zip(card_nos=cards, user=user, language=b_language, description=segment)
    st.session_state["reports_zip"] = (zip_key, payload)
built = st.session_state.get("reports_zip")
if built is not None and built[0] == zip_key:
    st.download_button(tr("reports.page.download_zip", n=len(cards)), data=built[1], mime="application/zip",
                       file_name=f"careloop-health-reports-{today.isoformat()}.zip", key="rb_download",
                       icon=":material/folder_zip:", on_click="ignore")
