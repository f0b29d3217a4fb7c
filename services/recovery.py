"""Working a service-recovery case: contact attempts, root cause, resolution, re-rating and closing, with locking.

The patient's re-rating is kept twice, on purpose: as case.rerating (what the quality lists sort and count) and as a
survey response of its own (questionnaire "recovery_rerating", source "recovery", source_ref "case:<id>", linked by
case.rerating_response_id), so the answer is auditable like any other. That questionnaire has no NPS item, so a
re-rating never enters nps_score, the NPS rollup, the drill-down, top-box or the response rate: a re-rating is asked
only of detractors after a call, and counting it would flatter NPS with a biased, solicited second answer. The
recovery dashboard shows it instead, as the recovery outcome (queries/satisfaction.recovery_outcome).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db.models import FollowupTask, Questionnaire, ServiceRecoveryCase, User
from services import audit, clock, surveys
from services import questionnaires as qs
from services.errors import UserError

ROOT_CAUSES = ("waiting", "communication", "attitude", "clinical", "environment", "billing", "process", "other")
STATUSES = ("open", "in_progress", "closed")
MAX_TEXT = 2000
RERATING_CODE = "recovery_rerating"
RERATING_ITEM = "rerating"
RERATING_SOURCE = "recovery"
# "system": the template is filled only by close_case, never offered on the survey pages (not "active").
RERATING_STATUS = "system"
RERATING = qs.TemplateSpec(
    RERATING_CODE, "custom", "服务补救后复评", "Re-rating after service recovery",
    (qs.ItemSpec(RERATING_ITEM, "scale_0_10", "经过我们的处理，您现在向亲友推荐我院的可能性有多大？（0-10）",
                 "After what we did, how likely are you now to recommend us to friends or family? (0-10)",
                 required=True),),
)


def rerating_questionnaire(session: Session, *, now: datetime | None = None) -> Questionnaire:
    """The re-rating template, created on first use (idempotent)."""
    q = qs.latest(session, RERATING_CODE)
    if q is None:
        q = qs.save_template(session, RERATING, actor="system", now=now).questionnaire
        q.status = RERATING_STATUS
        session.flush()
    return q


def validate_close(*, root_cause: str, resolution: str, rerating: int | None) -> str:
    """The closing input checked before anything is written; returns the trimmed resolution."""
    if root_cause not in ROOT_CAUSES:
        raise UserError("recovery.bad_root_cause", value=root_cause)
    text = resolution.strip()
    if not text:
        raise UserError("recovery.resolution_required")
    if len(text) > MAX_TEXT:
        raise UserError("recovery.text_too_long", limit=MAX_TEXT)
    if rerating is not None and (isinstance(rerating, bool) or not isinstance(rerating, int)
                                 or not 0 <= rerating <= 10):
        raise UserError("recovery.bad_rerating", value=rerating)
    return text


def _case(session: Session, case_id: int, expected_version: int) -> ServiceRecoveryCase:
    """The case, refused when someone else changed it since the screen read it (optimistic locking)."""
    case = session.get(ServiceRecoveryCase, case_id, populate_existing=True)
    if case is None:
        raise UserError("recovery.not_found", case=case_id)
    if case.version != expected_version:
        raise UserError("recovery.stale", case=case_id)
    if case.status == "closed":
        raise UserError("recovery.already_closed", case=case_id)
    return case


def _task(session: Session, case_id: int) -> FollowupTask | None:
    return session.scalars(select(FollowupTask).where(FollowupTask.dedup_key == f"recovery:{case_id}")).first()


def _flush(session: Session, case_id: int) -> None:
    try:
        session.flush()
    except StaleDataError:
        # Two writers read the same version: the second one loses and is told to reload.
        raise UserError("recovery.stale", case=case_id) from None


def log_attempt(
    session: Session, *, case_id: int, expected_version: int, reached: bool, note: str | None = None,
    actor_id: int | None = None, actor: str | None = None, now: datetime | None = None, count_on_task: bool = True,
) -> ServiceRecoveryCase:
    """One contact attempt (reached or not); the case moves to in progress.

    count_on_task=False when the caller logged the same call on the worklist task (services/contact_flow.py):
    the task's attempt counter is then already moved by followup.log_contact.
    """
    at = now or clock.now()
    if note is not None and len(note) > MAX_TEXT:
        raise UserError("recovery.text_too_long", limit=MAX_TEXT)
    case = _case(session, case_id, expected_version)
    case.attempts += 1
    case.status = "in_progress"
    task = _task(session, case_id) if count_on_task else None
    if task is not None:
        task.attempts += 1
    _flush(session, case_id)
    audit.record(session, action="recovery.attempt", user_id=actor_id, username=actor,
                 entity="service_recovery_case", entity_id=case.id, patient_id=case.patient_id,
                 detail={"reached": reached, "note": note, "attempt": case.attempts}, at=at)
    return case


def assign(
    session: Session, *, case_id: int, expected_version: int, owner_id: int,
    actor_id: int | None = None, actor: str | None = None, now: datetime | None = None,
) -> ServiceRecoveryCase:
    owner = session.get(User, owner_id)
    if owner is None or not owner.active or owner.role not in ("nurse", "quality", "manager"):
        raise UserError("recovery.bad_owner")
    case = _case(session, case_id, expected_version)
    case.owner_id = owner_id
    task = _task(session, case_id)
    if task is not None:
        task.assignee_id = owner_id
    _flush(session, case_id)
    audit.record(session, action="recovery.assigned", user_id=actor_id, username=actor,
                 entity="service_recovery_case", entity_id=case.id, patient_id=case.patient_id,
                 detail={"owner_id": owner_id}, at=now or clock.now())
    return case


def close_case(
    session: Session, *, case_id: int, expected_version: int, root_cause: str, resolution: str,
    rerating: int | None = None, actor_id: int | None = None, actor: str | None = None,
    now: datetime | None = None, channel: str = "phone",
) -> ServiceRecoveryCase:
    """Close with a root cause and what was done; the patient's re-rating (0-10) if asked. Closes the task too.

    A re-rating is also stored as its own survey response (see the module docstring), in this transaction.
    """
    at = now or clock.now()
    text = validate_close(root_cause=root_cause, resolution=resolution, rerating=rerating)
    case = _case(session, case_id, expected_version)
    if rerating is not None:
        q = rerating_questionnaire(session, now=at)
        out = surveys.submit_response(
            session, questionnaire_id=q.id, answers={RERATING_ITEM: rerating}, submitted_at=at,
            patient_id=case.patient_id, department_id=case.department_id, channel=channel,
            source=RERATING_SOURCE, source_ref=f"case:{case.id}", open_recovery=False, link_invitation=False,
            actor_id=actor_id, actor=actor, now=at)
        case.rerating_response_id = out.response.id
    case.root_cause, case.resolution, case.rerating = root_cause, text, rerating
    case.status, case.closed_at = "closed", at
    task = _task(session, case_id)
    if task is not None and task.status == "pending":
        task.status, task.completed_at = "done", at
    _flush(session, case_id)
    audit.record(session, action="recovery.closed", user_id=actor_id, username=actor,
                 entity="service_recovery_case", entity_id=case.id, patient_id=case.patient_id,
                 detail={"root_cause": root_cause, "rerating": rerating}, at=at)
    return case
