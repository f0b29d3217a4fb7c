"""One follow-up task: the patient's key facts, the contacts so far with recordings, log a contact, reassign."""

from __future__ import annotations

import streamlit as st

from components import data, followup_data, questionnaire_form
from components import satisfaction_data as sd
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from queries import contact_flow as cfq
from queries import followup as q
from services import clock, contact_flow, followup, recordings, recovery
from services.errors import UserError
from services.followup import ContactInput

OUTCOMES = ("reached", "no_answer", "wrong_number", "refused", "deceased")

user = require("task")
st.title(tr("nav.task"))
settings = settings_or_stop()
policy = followup_data.recording_policy(settings)

# settings
task_id = int(st.number_input(tr("fu_task.pick"), min_value=0, step=1,
                              value=int(st.session_state.get("followup_task_id", 0)), key="task_pick"))
if task_id == 0:
    st.info(tr("fu_task.none"))
    st.stop()
st.session_state["followup_task_id"] = task_id
flash = st.session_state.pop("task_flash", None)
if flash:
    st.success(flash)


def _error(exc: UserError) -> None:
    st.error(tr(exc.key, **exc.params))


# data
with data.read() as conn:
    d = q.task_detail(conn=conn, task_id=task_id, lang=lang())
    records = q.task_records(conn=conn, task_id=task_id) if d else None
    nurses = q.department_nurses(conn=conn, department_id=d.department_id) if d else []
    extra = cfq.task_form(conn=conn, task_id=task_id, lang=lang()) if d else None
if d is None or (user.role == "nurse" and d.assignee_id != user.id and d.department_id != user.department_id):
    st.warning(tr("fu_task.not_found"))
    st.stop()
    raise SystemExit  # unreachable: st.stop() raises
# The version the nurse saw on the previous run is the one her save must match (optimistic locking).
if st.session_state.get("task_viewed") != task_id:
    with data.write() as s:
        followup.record_view(s, user=user, patient_id=d.patient_id, entity="followup_task", entity_id=task_id,
                             now=clock.now(settings.timezone))
    st.session_state["task_viewed"] = task_id
version_key = f"task_version_{task_id}"
seen_version = int(st.session_state.get(version_key, d.version))

# show
age = "-" if d.birth_date is None else str(q.age_on(d.birth_date, clock.today(settings.timezone)))
st.subheader(f"#{d.task_id} · {d.name}")
st.markdown(tr("fu_task.facts", name=d.name, card=d.card_no, sex=tr(f"sex.{d.sex}"), age=age, phone=d.phone or "-",
               risk=d.risk or "-"))
st.caption(tr("fu_task.info", due=d.due_date.isoformat(), kind=tr(f"task_kind.{d.kind}"), plan=d.plan or "-",
              method=tr(f"method.{d.method}"), status=tr(f"task_status.{d.status}"), attempts=d.attempts,
              assignee=d.assignee or "-"))
if d.script:
    with st.expander(tr("fu_task.script")):
        st.markdown(d.script)
assert extra is not None
case = extra.case
if case is not None:
    # The survey answer behind a service-recovery task: what the nurse is calling about.
    st.warning(tr("contact_flow.case_info", case=case.case_id, score="—" if case.nps_score is None else case.nps_score,
                  comment=case.comment or "—", due=case.sla_due_at.strftime("%Y-%m-%d %H:%M"),
                  status=tr(f"satisfaction.status.{case.status}"), attempts=case.attempts))
case_open = case is not None and case.status != "closed"
case_version_key = f"task_case_version_{task_id}"
seen_case_version = (int(st.session_state.get(case_version_key, case.version)) if case is not None and case_open
                     else None)

st.subheader(tr("fu_task.records"))
assert records is not None
if records.empty:
    st.info(tr("fu_task.no_records"))
else:
    shown = records.drop(columns=["recording_id"]).assign(
        method=records["method"].map(lambda m: tr(f"method.{m}")),
        outcome=records["outcome"].map(lambda o: tr(f"outcome.{o}")),
        next_action=records["next_action"].map(lambda n: tr(f"next_step.{n}") if n else ""),
    ).rename(columns={c: tr(f"fu_task.col.{c}") for c in records.columns if c != "recording_id"})
    data_table(shown, name="task_contacts", caption=False, patient_id=d.patient_id,
               description=tr("filter.separator").join([f"#{d.task_id}", d.card_no, tr("fu_task.records")]))
    recs = {int(i): f"{at} · {name}" for i, at, name in
            zip(records["recording_id"].tolist(), records["contacted_at"].tolist(), records["recording"].tolist(),
                strict=True) if i is not None and i == i}  # i == i drops NaN
    if recs:
        col_pick, col_play, col_del = st.columns([3, 1, 1])
        rec_id = col_pick.selectbox(tr("fu_task.play_pick"), list(recs), format_func=recs.__getitem__,
                                    key="task_rec_pick")
        if col_play.button(tr("fu_task.play"), key="task_play"):
            try:
                with data.write() as s:
                    audio, ctype = recordings.play_recording(s, recording_id=rec_id, user=user, policy=policy,
                                                             now=clock.now(settings.timezone))
                st.audio(audio, format=ctype)
            except UserError as exc:
                _error(exc)
        if user.role == "admin" and col_del.button(tr("fu_task.delete"), key="task_rec_delete"):
            try:
                with data.write() as s:
                    recordings.delete_recording(s, recording_id=rec_id, user=user, policy=policy,
                                                now=clock.now(settings.timezone))
                st.session_state["task_flash"] = tr("fu_task.deleted")
                st.rerun()
            except UserError as exc:
                _error(exc)

if d.status != "pending":
    st.info(tr("fu_task.closed", status=tr(f"task_status.{d.status}")))
    st.session_state[version_key] = d.version
    st.stop()

st.subheader(tr("fu_task.contact"))
with st.form("task_contact"):
    c1, c2, c3 = st.columns(3)
    methods = ["phone", "sms", "wechat", "visit", "email"]
    method = c1.selectbox(tr("fu_task.method"), methods, index=methods.index(d.method) if d.method in methods else 0,
                          format_func=followup_data.labelled(lambda m: tr(f"method.{m}"), methods))
    outcome = c2.selectbox(tr("fu_task.outcome"), OUTCOMES,
                           format_func=followup_data.labelled(lambda o: tr(f"outcome.{o}"), OUTCOMES))
    next_step = c3.selectbox(tr("fu_task.next_step"), list(followup.NEXT_STEPS),
                             format_func=followup_data.labelled(lambda n: tr(f"next_step.{n}"), followup.NEXT_STEPS))
    retry_on = st.date_input(tr("fu_task.retry_on"), value=None)
    notes = st.text_area(tr("fu_task.notes"), max_chars=followup.MAX_NOTES)
    upload = st.file_uploader(tr("fu_task.recording"), type=["wav", "mp3", "m4a", "ogg"])
    answers: dict[str, object] = {}
    if extra.questionnaire is not None:
        st.markdown(f"**{tr('contact_flow.questionnaire', title=extra.questionnaire.title)}**")
        st.caption(tr("contact_flow.questionnaire_help"))
        answers = questionnaire_form.inputs(extra.questionnaire, key_prefix=f"task_q_{task_id}")
    resolve_it, cause, resolution, asked, rerating = False, recovery.ROOT_CAUSES[0], "", False, 7
    if case_open:
        st.markdown(f"**{tr('contact_flow.resolve_title')}**")
        resolve_it = st.checkbox(tr("contact_flow.resolve"), help=tr("contact_flow.resolve_help"),
                                 key="task_resolve")
        causes = {r: tr(f"satisfaction.cause.{r}") for r in recovery.ROOT_CAUSES}
        cause = st.selectbox(tr("satisfaction.col.root_cause"), options=recovery.ROOT_CAUSES,
                             format_func=followup_data.labelled(causes.__getitem__, recovery.ROOT_CAUSES),
                             key="task_cause")
        resolution = st.text_area(tr("satisfaction.resolution"), max_chars=recovery.MAX_TEXT, key="task_resolution")
        asked = st.checkbox(tr("satisfaction.rerating_asked"), key="task_rerating_asked")
        rerating = st.slider(tr("satisfaction.col.rerating"), 0, 10, 7, key="task_rerating")
    submitted = st.form_submit_button(tr("fu_task.save"), type="primary")
if submitted:
    try:
        now = clock.now(settings.timezone)
        with data.write() as s:
            recording_id = None
            if upload is not None:
                recording_id = recordings.store_recording(s, patient_id=d.patient_id, filename=upload.name,
                                                          data=upload.getvalue(), user=user, policy=policy,
                                                          now=now).id
            flow = contact_flow.log_contact(
                s, task_id=d.task_id, expected_version=seen_version, user=user, now=now,
                max_failed_attempts=settings.followup_max_failed_attempts,
                contact=ContactInput(method=method, outcome=outcome, next_step=next_step, notes=notes,
                                     retry_on=retry_on, recording_id=recording_id),
                answers=answers, case_version=seen_case_version,
                resolve=contact_flow.Resolution(cause, resolution, int(rerating) if asked else None)
                if resolve_it else None)
        out = flow.contact
        followup_data.clear()
        if flow.response_id is not None or flow.case_id is not None:
            sd.clear()  # a stored answer or a worked case moves the satisfaction figures
        st.session_state[version_key] = out.version
        if flow.case_version is not None:
            st.session_state[case_version_key] = flow.case_version
        message = tr("fu_task.saved", status=tr(f"task_status.{out.status}"), attempts=out.attempts)
        if flow.response_id is not None:
            message += " " + tr("contact_flow.answers_saved")
        if flow.case_status is not None:
            message += " " + tr("contact_flow.case_saved", case=flow.case_id,
                                status=tr(f"satisfaction.status.{flow.case_status}"))
        if flow.new_case_id is not None:
            message += " " + tr("contact_flow.case_opened", case=flow.new_case_id)
        st.session_state["task_flash"] = message
        st.rerun()
    except UserError as exc:
        _error(exc)
# What this run showed is what the next save is checked against.
st.session_state[version_key] = d.version
if case is not None and case_open:
    st.session_state[case_version_key] = case.version

st.subheader(tr("fu_task.reassign"))
others = [(i, n) for i, n in nurses if i != d.assignee_id]
if not others:
    st.caption(tr("fu_task.no_nurses"))
else:
    names = dict(others)
    c1, c2 = st.columns([3, 1])
    target = c1.selectbox(tr("fu_task.assignee"), list(names), format_func=names.__getitem__,
                          key="task_assignee")
    if c2.button(tr("fu_task.reassign_save"), key="task_reassign"):
        try:
            with data.write() as s:
                v = followup.reassign(s, task_id=d.task_id, expected_version=seen_version, assignee_id=target,
                                      user=user, now=clock.now(settings.timezone))
            st.session_state[version_key] = v
            st.session_state["task_flash"] = tr("fu_task.reassigned")
            st.rerun()
        except UserError as exc:
            _error(exc)
