"""NPS dashboard: by month, quarter, department, doctor or channel, with n, 95% interval, the P/P/D split and
a drill-down to the responses behind any point."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import data, kpi
from components import satisfaction_charts as charts
from components import satisfaction_data as sd
from components.export_buttons import data_table
from components.filters import period_filter
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import satisfaction as sq
from queries.filters import scope_for
from services import clock
from services.surveys import CHANNELS

user = require("nps")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.nps"))

# settings (labels resolved here, so widget formatting never depends on when it is called)
BY = {g: tr(f"satisfaction.by_{g}") for g in sq.GROUPS}
CHANNEL: dict[str | None, str] = {
    None: tr("satisfaction.all_channels"), **{c: tr(f"satisfaction.channel.{c}") for c in CHANNELS}}
BAND: dict[str | None, str] = {
    None: tr("satisfaction.all_bands"), **{b: tr(f"satisfaction.band_{b}") for b in sq.BANDS}}
ALL_DOCTORS = tr("satisfaction.all_doctors")
base = period_filter(scope, today=clock.today(settings_or_stop().timezone), key="nps")
c1, c2, c3 = st.columns(3)
by: sq.GroupBy = c1.selectbox(tr("satisfaction.by"), options=sq.GROUPS, key="nps_by",
                              format_func=BY.__getitem__)
channel = c2.selectbox(
    tr("satisfaction.channel_label"), options=[None, *CHANNELS], key="nps_channel",
    format_func=CHANNEL.__getitem__)
# Free text, not a list: listing every doctor would scan a year of responses before the first chart.
doctor = c3.text_input(tr("satisfaction.doctor_label"), key="nps_doctor", max_chars=64,
                       placeholder=ALL_DOCTORS).strip() or None
f = sq.SurveyFilter(base.date_from, base.date_to, base.department_ids, base.department_names, channel=channel,
                    doctor=doctor)

# data
summary = sd.nps_summary(scope.key, f, scope)
points = sd.nps_by(scope.key, f, by, lang(), scope)

# show
described = f.describe(lang(), summary.responses, "units.responses")
st.caption(described)
n = summary.responses


def share(k: int) -> float | None:
    return None if not n else k / n


kpi.cards([
    (tr("satisfaction.nps"), kpi.fmt_num(summary.nps),
     tr("satisfaction.nps_help", low=kpi.fmt_num(summary.ci_low), high=kpi.fmt_num(summary.ci_high))),
    (tr("satisfaction.responses"), f"{n:,}", tr("satisfaction.responses_help")),
    (tr("satisfaction.promoters"), kpi.fmt_pct(share(summary.promoters)), tr("satisfaction.promoters_help")),
    (tr("satisfaction.passives"), kpi.fmt_pct(share(summary.passives)), tr("satisfaction.passives_help")),
    (tr("satisfaction.detractors"), kpi.fmt_pct(share(summary.detractors)),
     tr("satisfaction.detractors_help")),
])
if n and summary.small_sample:
    st.warning(tr("satisfaction.small_sample", n=n))

if points.empty:
    st.info(tr("satisfaction.no_responses"))
    st.stop()

labels = {"label": tr(f"satisfaction.by_{by}"), "nps": tr("satisfaction.nps"), "responses": tr("satisfaction.n"),
          "ci_low": tr("satisfaction.ci_low"), "ci_high": tr("satisfaction.ci_high"), "pct": tr("satisfaction.pct"),
          "band": tr("satisfaction.band")}
title = tr("satisfaction.nps_chart_title", by=tr(f"satisfaction.by_{by}"), scope=described)
chart = (charts.nps_trend(points, title=title, labels=labels) if by in ("month", "quarter")
         else charts.nps_bars(points, title=title, labels=labels))
st.altair_chart(chart, width="stretch")
if points["small_sample"].any():
    st.caption(tr("satisfaction.small_points", n=int(points["small_sample"].sum())))
band_labels = {b: tr(f"satisfaction.band_{b}") for b in sq.BANDS}
st.altair_chart(charts.ppd_split(points, title=tr("satisfaction.split_title", scope=described), labels=labels,
                                 band_labels=band_labels), width="stretch")

st.subheader(tr("satisfaction.table_title"))
st.caption(described)
cols = ["label", "responses", "promoters", "passives", "detractors", "nps", "ci_low", "ci_high"]
table = points[cols].rename(columns={c: tr(f"satisfaction.col.{c}") for c in cols})
data_table(table, name=f"nps_by_{by}", description=described, caption=False)

# drill-down: the responses behind one point
st.subheader(tr("satisfaction.drill_title"))
keys = list(points["key"])
names = dict(zip(keys, points["label"], strict=True))
d1, d2 = st.columns(2)
point = d1.selectbox(tr("satisfaction.drill_point"), options=range(len(keys)), key="nps_drill_point",
                     format_func=lambda i: str(names[keys[i]]))
band = d2.selectbox(tr("satisfaction.band"), options=[None, *sq.BANDS], key="nps_drill_band",
                    format_func=BAND.__getitem__)
with data.read() as conn:
    rows, total = sq.drill_down(conn=conn, f=f, scope=scope, by=by, key=keys[int(point)], band=band, lang=lang())
st.caption(tr("satisfaction.drill_caption", point=names[keys[int(point)]], shown=len(rows), total=total,
              scope=described))


def _drill_rows(limit: int) -> pd.DataFrame:
    with data.read() as conn:
        found, _ = sq.drill_down(conn=conn, f=f, scope=scope, by=by, key=keys[int(point)], band=band, lang=lang(),
                                 limit=limit)
    return found.rename(columns={c: tr(f"satisfaction.col.{c}") for c in found.columns})


if not rows.empty:
    data_table(rows.rename(columns={c: tr(f"satisfaction.col.{c}") for c in rows.columns}), name="nps_responses",
               caption=False, full=_drill_rows, total=total,
               description=tr("filter.separator").join([str(names[keys[int(point)]]), BAND[band], described]))
