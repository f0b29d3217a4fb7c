"""The follow-up panel of the 360° view: the patient's tasks, interventions and call recordings (audited playback)."""

from __future__ import annotations

import streamlit as st

from components import data, followup_data
from components.export_buttons import data_table
from components.runtime import lang, settings_or_stop, tr
from queries import followup as q
from services import clock, recordings
from services.auth import CurrentUser
from services.errors import UserError


def patient_followup_panel(patient_id: int, user: CurrentUser) -> None:
    settings = settings_or_stop()
    with data.read() as conn:
        tasks = q.patient_tasks(conn=conn, patient_id=patient_id, lang=lang())
        ivs = q.patient_interventions(conn=conn, patient_id=patient_id)
        recs = q.patient_recordings(conn=conn, patient_id=patient_id)
    st.subheader(tr("fu_panel.title"))
    st.caption(tr("fu_panel.tasks", n=len(tasks)))
    if not tasks.empty:
        shown = tasks.assign(kind=tasks["kind"].map(lambda k: tr(f"task_kind.{k}")),
                             status=tasks["status"].map(lambda s: tr(f"task_status.{s}")))
        data_table(shown.rename(columns={c: tr(f"fu_panel.col.{c}") for c in tasks.columns}),
                   name="patient_followup_tasks", key=f"export_fu_tasks_{patient_id}", caption=False,
                   patient_id=patient_id, description=tr("fu_panel.tasks", n=len(tasks)))
    st.caption(tr("fu_panel.interventions", n=len(ivs)))
    if not ivs.empty:
        shown = ivs.assign(kind=ivs["kind"].map(lambda k: tr(f"intervention_kind.{k}")))
        data_table(shown.rename(columns={c: tr(f"fu_iv.col.{c}") for c in ivs.columns}),
                   name="patient_interventions", key=f"export_fu_ivs_{patient_id}", caption=False,
                   patient_id=patient_id, description=tr("fu_panel.interventions", n=len(ivs)))
    if recs.empty or user.role not in ("nurse", "admin", "quality"):
        return
    labels = {int(i): f"{at} · {name}" for i, at, name in
              zip(recs["recording_id"].tolist(), recs["uploaded_at"].tolist(), recs["filename"].tolist(),
                  strict=True)}
    c1, c2 = st.columns([3, 1])
    rec_id = c1.selectbox(tr("fu_panel.recording", n=len(recs)), list(labels), format_func=labels.__getitem__,
                          key=f"fu_panel_rec_{patient_id}")
    if c2.button(tr("fu_task.play"), key=f"fu_panel_play_{patient_id}"):
        try:
            with data.write() as s:
                audio, ctype = recordings.play_recording(s, recording_id=rec_id, user=user,
                                                         policy=followup_data.recording_policy(settings),
                                                         now=clock.now(settings.timezone))
            st.audio(audio, format=ctype)
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
