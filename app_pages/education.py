"""Education library: admins keep reviewed items; nurses send one to a patient by membership card number."""

from __future__ import annotations

from datetime import date

import streamlit as st

from components import data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import settings_or_stop, tr
from queries.messaging import education_items
from services import clock, education
from services.errors import UserError
from services.rules import RISK_LEVELS

user = require("education")
st.title(tr("education.title"))
tz = settings_or_stop().timezone

# data
with data.read() as conn:
    items = education_items(conn=conn)

# show the library
if items.empty:
    st.info(tr("education.empty"))
else:
    shown = items.assign(active=items["active"].map(lambda v: tr("education.yes") if v else tr("education.no")))
    data_table(shown.rename(columns={c: tr(f"education.col.{c}") for c in items.columns}), name="education_items",
               caption=False, description=tr("reports.table_rows", table=tr("education.title"), n=len(items)))

if user.role == "admin":
    st.header(tr("education.edit"))
    ids = [None, *[int(i) for i in items["id"]]] if not items.empty else [None]
    titles = dict(zip(items["id"], items["title"], strict=True)) if not items.empty else {}
    chosen = st.selectbox(tr("education.item"), ids, key="edu_item",
                          format_func=lambda v: tr("education.new_item") if v is None else str(titles[v]))
    row = items[items["id"] == chosen].iloc[0] if chosen is not None else None
    with st.form(f"edu_form_{chosen}"):
        title = st.text_input(tr("education.col.title"), value="" if row is None else str(row["title"]))
        body = st.text_area(tr("education.body"))
        link = st.text_input(tr("education.col.link"), value="" if row is None or row["link"] is None
                             else str(row["link"]))
        language = st.selectbox(tr("education.col.language"), list(education.LANGUAGES),
                                format_func=lambda v: tr(f"education.lang.{v}"))
        tags = st.text_input(tr("education.tags_help"), value="" if row is None else ", ".join(row["tags"]))
        levels = st.multiselect(tr("education.col.risk_levels"), list(RISK_LEVELS),
                                default=[] if row is None else list(row["risk_levels"]))
        reviewed_by = st.text_input(tr("education.col.reviewed_by"),
                                    value="" if row is None else str(row["reviewed_by"]))
        reviewed_on = st.date_input(tr("education.col.reviewed_on"),
                                    value=clock.today(tz) if row is None else row["reviewed_on"])
        active = st.checkbox(tr("education.col.active"), value=True if row is None else bool(row["active"]))
        submitted = st.form_submit_button(tr("education.save"))
    if submitted:
        try:
            assert isinstance(reviewed_on, date)
            with data.write() as session:
                education.save_item(session, data=education.EducationInput(
                    title=title, body=body or None, link=link or None, language=language,
                    tags=[t.strip() for t in tags.split(",") if t.strip()], risk_levels=list(levels),
                    reviewed_by=reviewed_by, reviewed_on=reviewed_on, active=active),
                    user=user, now=clock.now(tz), item_id=chosen)
            st.success(tr("education.saved"))
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))

if user.role == "nurse":
    st.header(tr("education.send"))
    card_no = st.text_input(tr("education.card_no"), key="edu_card")
    if card_no.strip():
        try:
            with data.write() as session:
                patient, offered = education.offer_for_patient(session, card_no=card_no, user=user,
                                                               now=clock.now(tz))
                choices = {i.id: i.title for i in offered}
                name = patient.name
            st.caption(tr("education.offered", name=name, n=len(choices)))
            all_active = items[items["active"]] if not items.empty else items
            for i, t in zip(all_active.get("id", []), all_active.get("title", []), strict=True):
                choices.setdefault(int(i), str(t))
            if not choices:
                st.info(tr("education.empty"))
            else:
                item_id = st.selectbox(tr("education.item"), list(choices), format_func=lambda v: choices[v],
                                       key="edu_send_item")
                if st.button(tr("education.send_button"), key="edu_send"):
                    with data.write() as session:
                        msg = education.send_item(session, item_id=int(item_id), card_no=card_no, user=user,
                                                  now=clock.now(tz))
                    st.success(tr("education.queued", channel=tr(f"messaging.channel.{msg.channel}"),
                                  at=msg.scheduled_at.strftime("%Y-%m-%d %H:%M")))
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
