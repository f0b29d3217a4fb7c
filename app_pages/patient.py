"""The patient 360° view: header, timeline, indicator trends, health record, consents and demographics."""

from __future__ import annotations

from datetime import date

import streamlit as st

from components import data, followup_marks, patient_header, trend_charts
from components.care_panels import patient_care_panel
from components.export_buttons import data_table
from components.followup_panels import patient_followup_panel
from components.messaging_panels import patient_contact_panel
from components.navigation import pages_for_role, require
from components.report_buttons import patient_report_button
from components.runtime import lang, settings_or_stop, tr
from db.models import CONSENT_PURPOSES, HISTORY_KINDS, SEXES
from queries import indicators as ind_q
from queries import patients as pq
from queries.filters import scope_for
from services import clock
from services import patients as svc
from services.errors import UserError

EDIT_ROLES = frozenset({"nurse", "admin"})
# Pages of other areas the 360 view hands the patient to: page key -> the card-number widget key on that page.
ACT_PAGES = {"interventions": "iv_card", "survey_fill": "fill_card"}
MESSAGE_KINDS = frozenset({"message", "education", "message_opened", "education_opened"})

user = require("patient")
settings = settings_or_stop()
st.title(tr("nav.patient"))
today = clock.today(settings.timezone)
scope = scope_for(role=user.role, department_id=user.department_id)
actor = svc.Actor(user.id, user.username)
can_edit = user.role in EDIT_ROLES

# settings: the patient comes from ?card=... or from the search page
card = st.query_params.get("card")
with data.read() as conn:
    pid: int | None = None
    if card:
        pid = pq.patient_id_by_card(conn=conn, card_no=str(card))
        if pid is not None and st.session_state.get("patient_id") != pid:
            st.session_state["patient_id"] = pid
            st.session_state.pop("patient_viewed", None)
    if pid is None:
        raw = st.session_state.get("patient_id")
        pid = int(raw) if raw is not None else None
    if pid is not None and not pq.in_scope(conn=conn, patient_id=pid, scope=scope, user_id=user.id):
        pid = None
        st.error(tr("patients.out_of_scope"))

if pid is None:
    st.info(tr("patients.view.choose"))
    with st.form("patient_card_form"):
        typed = st.text_input(tr("patients.col.card_no"))
        go = st.form_submit_button(tr("patients.search.open"))
    if go and typed.strip():
        st.query_params["card"] = typed.strip()
        st.rerun()
    st.stop()
    raise SystemExit  # unreachable: st.stop() raises

# data
with data.read() as conn:
    header = pq.patient_header(conn=conn, patient_id=pid, today=today)
    if header is None:
        st.error(tr("patients.err.not_found"))
        st.stop()
        raise SystemExit
    events = pq.timeline(conn=conn, patient_id=pid, lang=lang())
    series = ind_q.series(conn=conn, patient_id=pid)
    band_df = ind_q.cached_bands(conn=conn, sex=header.sex)
    cat = ind_q.cached_catalogue(conn=conn)
    yearly = ind_q.yearly_means(conn=conn, patient_id=pid)
    record = pq.health_record(conn=conn, patient_id=pid)
    consents = pq.consent_history(conn=conn, patient_id=pid)
    marks = followup_marks.intervention_marks(conn=conn, patient_id=pid)  # interventions on the charts
# One audit row per open of a record, not per widget rerun on it. A rerun is told from a new open by the record
# tab's toggle: Streamlit drops a widget's state when a run does not draw it, so once the user has been on another
# page the key is gone and coming back to the same patient is logged as the new open it is.
if st.session_state.get("patient_viewed") != pid or "patient_record_history" not in st.session_state:
    with data.write() as s:
        svc.record_view(s, patient_id=pid, actor=actor)
    st.session_state["patient_viewed"] = pid

# show
patient_header.show(header, role=user.role)
links = [p for p in pages_for_role(user.role) if p.key in ACT_PAGES]
if links:
    cols = st.columns(len(links))
    for col, spec in zip(cols, links, strict=True):
        if col.button(tr(spec.title_key), icon=spec.icon, key=f"act_{spec.key}"):
            # The target page finds its patient by card number; fill it in before switching.
            st.session_state[ACT_PAGES[spec.key]] = header.card_no
            st.switch_page(spec.path)

tab_names = ["timeline", "indicators", "record", "consents"] + (["edit"] if can_edit else [])
tabs = dict(zip(tab_names, st.tabs([tr(f"patients.tab.{t}") for t in tab_names]), strict=True))

with tabs["timeline"]:
    if events.empty:
        st.info(tr("patients.timeline.empty"))
    else:
        # Message and education kinds are the messaging area's words.
        shown = events.assign(kind=[tr(f"messaging.timeline_kind.{k}") if k in MESSAGE_KINDS
                                    else tr(f"patients.timeline.kind.{k}") for k in events["kind"]])
        data_table(shown.rename(columns={c: tr(f"patients.timeline.col.{c}") for c in shown.columns}),
                   name="patient_timeline", caption=False, patient_id=pid,
                   description=f"{header.card_no} · {tr('patients.tab.timeline')}")

with tabs["indicators"]:
    if series.empty:
        st.info(tr("patients.indicators.empty"))
    else:
        flagged = ind_q.flag(series, band_df)
        names = {c.code: c.name(lang()) for c in cat}
        units = {c.code: c.unit for c in cat}
        fl = ind_q.first_latest(flagged)
        latest_abn = flagged.sort_values("observed_at").groupby("code")["abnormal"].last()
        summary = fl.assign(indicator=[names.get(c, c) for c in fl["code"]],
                            unit=[units.get(c, "") for c in fl["code"]],
                            abnormal=[tr("patients.yes") if latest_abn.get(c, False) else "" for c in fl["code"]])
        summary = summary[["indicator", "unit", "first_at", "first", "latest_at", "latest", "change", "n",
                           "abnormal"]]
        data_table(summary.rename(columns={c: tr(f"patients.indicators.col.{c}") for c in summary.columns}),
                   name="patient_indicators", caption=False, patient_id=pid,
                   description=f"{header.card_no} · {tr('patients.tab.indicators')}")
        labels = {"date": tr("patients.indicators.date"), "band": tr("patients.indicators.band"),
                  "source": tr("patients.indicators.source")}
        for c in cat:
            part = flagged[flagged["code"] == c.code]
            if part.empty:
                continue
            st.altair_chart(trend_charts.trend(part, band_df[band_df["code"] == c.code],
                                               title=f"{c.name(lang())} ({c.unit})", unit=c.unit, labels=labels,
                                               marks=marks.get(c.code)),
                            width="stretch")
        st.subheader(tr("patients.indicators.yoy"))
        yoy = ind_q.year_over_year(yearly)
        data_table(yoy.rename(index=names).round(2), name="patient_year_over_year", caption=False, patient_id=pid,
                   hide_index=False, description=f"{header.card_no} · {tr('patients.indicators.yoy')}")

with tabs["record"]:
    if record.empty:
        st.info(tr("patients.record.empty"))
    else:
        shown = record.drop(columns=["replaces_id"]).assign(kind=[tr(f"patients.kind.{k}") for k in record["kind"]])
        data_table(shown.rename(columns={c: tr(f"patients.record.col.{c}") for c in shown.columns}),
                   name="patient_record", caption=False, patient_id=pid,
                   description=f"{header.card_no} · {tr('patients.tab.record')}")
    if st.toggle(tr("patients.record.show_history"), key="patient_record_history"):
        with data.read() as conn:
            full = pq.health_record(conn=conn, patient_id=pid, current_only=False)
        data_table(full, name="patient_record_history", caption=False, patient_id=pid,
                   description=f"{header.card_no} · {tr('patients.record.show_history')}")
    if can_edit:
        with st.form("history_add", clear_on_submit=True):
            st.markdown(tr("patients.record.add"))
            kind = st.selectbox(tr("patients.record.col.kind"), options=list(HISTORY_KINDS),
                                format_func=lambda k: tr(f"patients.kind.{k}"))
            text = st.text_input(tr("patients.record.col.text"))
            c1, c2, c3 = st.columns(3)
            relation = c1.text_input(tr("patients.record.col.relation"))
            aspect = c2.selectbox(tr("patients.record.col.aspect"), options=["", *svc.LIFESTYLE_ASPECTS],
                                  format_func=lambda a: tr(f"patients.aspect.{a}") if a else "-")
            started = c3.date_input(tr("patients.record.col.started_on"), value=None, max_value=today)
            add = st.form_submit_button(tr("patients.save"))
        if add:
            try:
                with data.write() as s:
                    svc.add_history(s, patient_id=pid, actor=actor, data=svc.HistoryInput(
                        kind=kind, text=text, relation=relation or None, aspect=aspect or None, started_on=started))
                st.success(tr("patients.saved"))
                st.rerun()
            except UserError as exc:
                st.error(tr(exc.key, **exc.params))
        if not record.empty:
            opts = {int(i): f"{tr(f'patients.kind.{k}')}: {t}"
                    for i, k, t in zip(record["id"], record["kind"], record["text"], strict=True)}
            with st.form("history_change"):
                st.markdown(tr("patients.record.change"))
                hid = st.selectbox(tr("patients.record.pick"), options=list(opts), format_func=lambda i: opts[i])
                new_text = st.text_input(tr("patients.record.new_text"))
                ended = st.date_input(tr("patients.record.col.ended_on"), value=None, max_value=today)
                c1, c2 = st.columns(2)
                do_edit = c1.form_submit_button(tr("patients.record.edit"))
                do_end = c2.form_submit_button(tr("patients.record.end"))
            if hid is not None and (do_edit or do_end):
                row = record[record["id"] == hid].iloc[0]
                try:
                    with data.write() as s:
                        if do_end:
                            svc.end_history(s, history_id=hid, ended_on=ended or today, actor=actor)
                        else:
                            svc.edit_history(s, history_id=hid, actor=actor, data=svc.HistoryInput(
                                kind=str(row["kind"]), text=new_text or str(row["text"]),
                                code=row["code"] or None, relation=row["relation"] or None,
                                aspect=row["aspect"] or None,
                                started_on=row["started_on"] if isinstance(row["started_on"], date) else None))
                    st.success(tr("patients.saved"))
                    st.rerun()
                except UserError as exc:
                    st.error(tr(exc.key, **exc.params))

with tabs["consents"]:
    if not consents.empty:
        shown = consents.assign(purpose=[tr(f"patients.consent.{p}") for p in consents["purpose"]])
        data_table(shown.rename(columns={c: tr(f"patients.consents.col.{c}") for c in shown.columns}),
                   name="patient_consents", caption=False, patient_id=pid,
                   description=f"{header.card_no} · {tr('patients.tab.consents')}")
    if can_edit:
        with st.form("consents_form"):
            wanted = {p: st.checkbox(tr(f"patients.consent.{p}"), value=header.consents.get(p, False))
                      for p in CONSENT_PURPOSES}
            save = st.form_submit_button(tr("patients.save"))
        if save:
            try:
                with data.write() as s:
                    for purpose, on in wanted.items():
                        if on != header.consents.get(purpose, False):
                            svc.set_consent(s, patient_id=pid, purpose=purpose, granted=on, actor=actor)
                st.success(tr("patients.saved"))
                st.rerun()
            except UserError as exc:
                st.error(tr(exc.key, **exc.params))

if can_edit:
    with tabs["edit"]:
        # The version seen when the form was first shown: a save after someone else's is refused, not merged.
        vkey = f"patient_edit_version_{pid}"
        st.session_state.setdefault(vkey, header.version)
        with data.read() as conn:
            depts = pq.departments(conn=conn, lang=lang())
            nurse_opts = pq.nurses(conn=conn, department_id=header.department_id)
        dept_names = dict(depts)
        nurse_names = dict(nurse_opts)
        with st.form("patient_edit"):
            name = st.text_input(tr("patients.col.name"), value=header.name)
            c1, c2 = st.columns(2)
            sex = c1.selectbox(tr("patients.col.sex"), options=list(SEXES), index=list(SEXES).index(header.sex),
                               format_func=lambda x: tr(f"sex.{x}"))
            birth = c2.date_input(tr("patients.col.birth_date"), value=header.birth_date, max_value=today,
                                  min_value=date(1900, 1, 1))
            phone = c1.text_input(tr("patients.col.phone"), value=header.phone or "")
            id_type = c2.selectbox(tr("patients.col.id_type"), options=["", *svc.ID_TYPES],
                                   index=(["", *svc.ID_TYPES].index(header.id_type) if header.id_type else 0),
                                   format_func=lambda x: tr(f"patients.id_type.{x}") if x else "-")
            id_number = st.text_input(tr("patients.col.id_number"), value=header.id_number or "")
            address = st.text_input(tr("patients.col.address"), value=header.address or "")
            dept = c1.selectbox(tr("patients.col.department"), options=[None, *dept_names],
                                index=([None, *dept_names].index(header.department_id)
                                       if header.department_id in dept_names else 0),
                                format_func=lambda i: dept_names.get(i, "-") if i is not None else "-")
            nurse = c2.selectbox(tr("patients.col.nurse"), options=[None, *nurse_names],
                                 index=([None, *nurse_names].index(header.nurse_id)
                                        if header.nurse_id in nurse_names else 0),
                                 format_func=lambda i: nurse_names.get(i, "-") if i is not None else "-")
            dnc = st.checkbox(tr("patients.col.do_not_contact"), value=header.do_not_contact)
            save = st.form_submit_button(tr("patients.save"))
        if save:
            try:
                with data.write() as s:
                    edited = svc.PatientInput(
                        name=name, sex=sex, birth_date=birth, phone=phone, id_type=id_type or None,
                        id_number=id_number, address=address, department_id=dept, nurse_id=nurse,
                        channel_prefs=header.channel_prefs, do_not_contact=dnc)
                    saved = svc.update_patient(s, patient_id=pid, expected_version=int(st.session_state[vkey]),
                                               actor=actor, data=edited)
                    new_version = saved.version
                st.session_state[vkey] = new_version
                st.success(tr("patients.saved"))
            except UserError as exc:
                st.error(tr(exc.key, **exc.params))
                if exc.key == "patients.err.stale":
                    st.session_state.pop(vkey, None)

# Follow-up tasks, interventions and call recordings; the report PDF; tags, risk, advice and plans.
patient_followup_panel(pid, user)
patient_report_button(header.card_no, user)
patient_care_panel(pid, user)
# Contact points, channel preferences and message language (nurse/admin).
patient_contact_panel(pid, user)
