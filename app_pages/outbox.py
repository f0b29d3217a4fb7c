"""Outbox: queued and sent messages (nurses see their department); admins edit templates with a live preview."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pandas as pd
import streamlit as st

from components import data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from db.models import CONSENT_PURPOSES
from queries.filters import scope_for
from queries.messaging import PAGE_SIZE, OutboxFilter, message_templates, outbox, outbox_counts
from services import clock
from services.errors import UserError
from services.messaging import templates
from services.messaging.rules import CHANNELS

STATUSES = ("queued", "sending", "sent", "delivered", "failed", "cancelled")

user = require("outbox")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("outbox.title"))

# settings
tz = settings_or_stop().timezone
today = clock.today(tz)
c1, c2, c3, c4, c5 = st.columns(5)
d_from = c1.date_input(tr("filter.from"), value=today - timedelta(days=7), key="outbox_from")
d_to = c2.date_input(tr("filter.to"), value=today + timedelta(days=7), key="outbox_to")
status = c3.selectbox(tr("outbox.status"), [None, *STATUSES], key="outbox_status",
                      format_func=lambda v: tr("outbox.all") if v is None else tr(f"messaging.status.{v}"))
channel = c4.selectbox(tr("outbox.channel"), [None, *CHANNELS], key="outbox_channel",
                       format_func=lambda v: tr("outbox.all") if v is None else tr(f"messaging.channel.{v}"))
purpose = c5.selectbox(tr("outbox.purpose"), [None, *CONSENT_PURPOSES], key="outbox_purpose",
                       format_func=lambda v: tr("outbox.all") if v is None else tr(f"messaging.purpose.{v}"))
page = st.number_input(tr("outbox.page"), min_value=1, value=1, step=1, key="outbox_page")
if d_from > d_to:
    d_from, d_to = d_to, d_from
f = OutboxFilter(d_from, d_to, status, channel, purpose, offset=(int(page) - 1) * PAGE_SIZE)

# data (not cached: the send job moves rows every few minutes)
with data.read() as conn:
    counts = outbox_counts(conn=conn, f=f, scope=scope)
    rows = outbox(conn=conn, f=f, scope=scope)

# show
cols = st.columns(len(STATUSES))
for col, s in zip(cols, STATUSES, strict=True):
    col.metric(tr(f"messaging.status.{s}"), f"{counts.get(s, 0):,}", border=True)
st.caption(f.describe(lang(), count=sum(counts.values()) if status is None else counts.get(status, 0)))
if rows.empty:
    st.info(tr("outbox.empty"))
else:

    def _shaped(found: pd.DataFrame) -> pd.DataFrame:
        return found.assign(
            status=found["status"].map(lambda v: tr(f"messaging.status.{v}")),
            channel=found["channel"].map(lambda v: tr(f"messaging.channel.{v}")),
            purpose=found["purpose"].map(lambda v: tr(f"messaging.purpose.{v}")),
        ).rename(columns={c: tr(f"outbox.col.{c}") for c in found.columns})

    def _all_messages(limit: int) -> pd.DataFrame:
        with data.read() as conn:
            return _shaped(outbox(conn=conn, f=replace(f, offset=0, limit=limit), scope=scope))

    data_table(_shaped(rows), name="outbox", caption=False, full=_all_messages,
               total=sum(counts.values()) if status is None else counts.get(status, 0),
               description=f.describe(lang(), count=sum(counts.values()) if status is None else counts.get(status, 0)))

if user.role == "admin":
    st.header(tr("outbox.templates"))
    with data.read() as conn:
        tpls = message_templates(conn=conn)
    codes = list(tpls["code"]) if not tpls.empty else []
    chosen = st.selectbox(tr("outbox.template"), [None, *codes], key="tpl_code",
                          format_func=lambda v: tr("outbox.new_template") if v is None else str(v))
    current = tpls[tpls["code"] == chosen].iloc[0] if chosen is not None else None
    st.caption(tr("outbox.placeholders_help", placeholders=", ".join("{" + p + "}" for p in templates.PLACEHOLDERS)))
    code = st.text_input(tr("outbox.code"), value="" if current is None else str(current["code"]),
                         key=f"tpl_code_{chosen}", disabled=current is not None)
    tpl_purpose = st.selectbox(tr("outbox.purpose"), list(CONSENT_PURPOSES), key=f"tpl_purpose_{chosen}",
                               index=0 if current is None else list(CONSENT_PURPOSES).index(str(current["purpose"])),
                               format_func=lambda v: tr(f"messaging.purpose.{v}"))
    body_zh = st.text_area(tr("outbox.body_zh"), value="" if current is None else str(current["body_zh"]),
                           key=f"tpl_zh_{chosen}")
    body_en = st.text_area(tr("outbox.body_en"), value="" if current is None else str(current["body_en"]),
                           key=f"tpl_en_{chosen}")
    card_no = st.text_input(tr("outbox.preview_card"), key="tpl_preview_card")
    if card_no.strip() and body_zh.strip() and body_en.strip():
        try:
            with data.write() as session:
                pv = templates.preview(session, body_zh=body_zh, body_en=body_en, card_no=card_no,
                                       on=today.isoformat(), user=user, now=clock.now(tz), indicator="HbA1c")
            st.markdown(f"**{tr('outbox.preview')}**")
            st.info(pv.text_zh)
            st.info(pv.text_en)
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
    if st.button(tr("outbox.save_template"), key="tpl_save"):
        try:
            with data.write() as session:
                templates.save_template(session, code=code.strip(), purpose=tpl_purpose, body_zh=body_zh,
                                        body_en=body_en, user=user, now=clock.now(tz))
            st.success(tr("outbox.saved", code=code.strip()))
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
