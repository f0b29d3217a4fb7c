"""Verbatim comments, filterable by score band, department and keyword, newest first, one page at a time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import satisfaction as sq
from queries.filters import scope_for
from services import clock

PAGE = 50

user = require("comments")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.comments"))

# settings
BAND: dict[str | None, str] = {
    None: tr("satisfaction.all_bands"), **{b: tr(f"satisfaction.band_{b}") for b in sq.BANDS}}
base = period_filter(scope, today=clock.today(settings_or_stop().timezone), key="comments")
c1, c2, c3 = st.columns([1, 2, 1])
band = c1.selectbox(tr("satisfaction.band"), options=[None, *sq.BANDS], key="comments_band",
                    format_func=BAND.__getitem__)
keyword = c2.text_input(tr("satisfaction.keyword"), key="comments_keyword", max_chars=100)
page = c3.number_input(tr("satisfaction.page"), min_value=1, value=1, step=1, key="comments_page")
f = sq.SurveyFilter(base.date_from, base.date_to, base.department_ids, base.department_names)

# data (uncached: a keyword search is cheap with the period index and rarely repeats)
with data.read() as conn:
    rows, total = sq.comments(conn=conn, f=f, scope=scope, band=band, keyword=keyword or None, lang=lang(),
                              limit=PAGE, offset=(int(page) - 1) * PAGE)

# show
parts = [f.describe(lang(), total, "satisfaction.units.comments")]
if band:
    parts.append(tr(f"satisfaction.band_{band}"))
if keyword:
    parts.append(tr("satisfaction.keyword_is", keyword=keyword))
described = tr("filter.separator").join(parts)
st.caption(described)
if rows.empty:
    st.info(tr("satisfaction.no_comments"))
else:
    cols = ["submitted_at", "department", "nps_score", "channel", "doctor", "comment"]

    def _shaped(found: pd.DataFrame) -> pd.DataFrame:
        return found[cols].assign(
            channel=found["channel"].map(lambda c: tr(f"satisfaction.channel.{c}") if c else "")).rename(
            columns={c: tr(f"satisfaction.col.{c}") for c in cols})

    def _all_comments(limit: int) -> pd.DataFrame:
        with data.read() as conn:
            found, _ = sq.comments(conn=conn, f=f, scope=scope, band=band, keyword=keyword or None, lang=lang(),
                                   limit=limit)
        return _shaped(found)

    data_table(_shaped(rows), name="comments", caption=False, full=_all_comments, total=total, description=described)
    st.caption(tr("satisfaction.page_of", shown=len(rows), total=total))
