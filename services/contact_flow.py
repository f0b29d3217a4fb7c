"""Logging a contact from the nurse's side: the follow-up contact, the step's questionnaire and the recovery case.

One call of log_contact here is one unit: the follow-up contact (services.followup.log_contact), the answers to the
plan step's questionnaire stored as a survey response linked to the contact record, and - on a service-recovery
task - the attempt on the recovery case and, when the nurse resolves it, the closing (root cause, resolution, the
patient's re-rating). Everything is validated before the first write, both optimistic locks are checked (the task's
version and the case's), and the whole unit runs in a savepoint, so a refusal at any step leaves nothing behind even
when the caller goes on using its transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db.models import FollowupPlanStep, FollowupRecord, FollowupTask, ServiceRecoveryCase
from services import followup, recovery, surveys
from services import questionnaires as qs
from services.auth import CurrentUser
from services.errors import UserError
from services.followup import ContactInput, ContactResult

RECOVERY_KIND = "service_recovery"
RECOVERY_PREFIX = "recovery:"
# A case is resolved in a conversation: the patient was reached (or reached and declined to go on).
RESOLVE_OUTCOMES = ("reached", "refused")
# The survey channel an answer came through, from the contact method the nurse used.
CHANNEL_OF_METHOD = {"phone": "phone", "sms": "sms", "wechat": "wechat", "visit": "paper", "email": "web"}
RESPONSE_SOURCE = "followup"


@dataclass(frozen=True)
class Resolution:
    """Closing a service-recovery case from the task: root cause, what was done, the re-rating if asked (0-10)."""

    root_cause: str
    resolution: str
    rerating: int | None = None


@dataclass(frozen=True)
class FlowResult:
    contact: ContactResult
    response_id: int | None = None
    case_id: int | None = None
    case_status: str | None = None
    case_version: int | None = None
    new_case_id: int | None = None  # the questionnaire's answers opened a recovery case (a detractor)


def recovery_case_id(task: FollowupTask) -> int | None:
    """The case a service-recovery task works (its dedup key is "recovery:<case id>")."""
    key = task.dedup_key or ""
    if task.kind != RECOVERY_KIND or not key.startswith(RECOVERY_PREFIX):
        return None
    tail = key[len(RECOVERY_PREFIX):]
    return int(tail) if tail.isdigit() else None


def _has_answers(answers: Mapping[str, Any] | None) -> bool:
    def given(v: Any) -> bool:
        return not (v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, list | tuple) and not v))

    return bool(answers) and any(given(v) for v in (answers or {}).values())


def log_contact(
    session: Session, *, task_id: int, expected_version: int, contact: ContactInput, user: CurrentUser,
    now: datetime, max_failed_attempts: int = 3, answers: Mapping[str, Any] | None = None,
    case_version: int | None = None, resolve: Resolution | None = None,
) -> FlowResult:
    """Record one contact with everything that belongs to it; UserError (nothing written) on any bad input."""
    task = session.get(FollowupTask, task_id, populate_existing=True)
    if task is None:
        raise UserError("followup.task_not_found")

    # --- validate everything first -----------------------------------------------------------------------
    step = session.get(FollowupPlanStep, task.step_id) if task.step_id is not None else None
    questionnaire_id = step.questionnaire_id if step is not None else None
    take_answers = questionnaire_id is not None and contact.outcome == "reached"
    if questionnaire_id is None and _has_answers(answers):
        raise UserError("contact_flow.no_questionnaire")
    if take_answers:
        assert questionnaire_id is not None
        surveys.validate_answers(qs.items_of(session, questionnaire_id), answers or {})

    case_id = recovery_case_id(task)
    case = session.get(ServiceRecoveryCase, case_id, populate_existing=True) if case_id is not None else None
    if case is not None and case.status == "closed":
        if resolve is not None:  # someone closed it since the nurse's screen showed it open
            raise UserError("recovery.already_closed", case=case.id)
        case = None  # closed from the recovery page meanwhile: the call is still a contact on the task
    if resolve is not None:
        if case is None:
            raise UserError("contact_flow.nothing_to_resolve")
        recovery.validate_close(root_cause=resolve.root_cause, resolution=resolve.resolution,
                                rerating=resolve.rerating)
        if contact.outcome not in RESOLVE_OUTCOMES:
            raise UserError("contact_flow.resolve_needs_contact")
        if contact.next_step != "done":
            raise UserError("contact_flow.resolve_needs_done")
    elif case is not None and contact.next_step == "done" and contact.outcome != "deceased":
        # A recovery task done while its case stays open would drop the case from every worklist.
        raise UserError("contact_flow.done_needs_resolution")
    if case is not None:
        if case_version is None or case.version != case_version:
            raise UserError("recovery.stale", case=case.id)

    # --- write, all or nothing -----------------------------------------------------------------------------
    savepoint = session.begin_nested()
    try:
        out = followup.log_contact(session, task_id=task_id, expected_version=expected_version, contact=contact,
                                   user=user, now=now, max_failed_attempts=max_failed_attempts)
        response_id = new_case_id = None
        if take_answers:
            assert questionnaire_id is not None
            submitted = surveys.submit_response(
                session, questionnaire_id=questionnaire_id, answers=answers or {}, submitted_at=now,
                patient_id=task.patient_id, department_id=task.department_id,
                channel=CHANNEL_OF_METHOD.get(contact.method, "phone"), source=RESPONSE_SOURCE,
                source_ref=f"record:{out.record_id}", actor_id=user.id, actor=user.username, now=now)
            response_id = submitted.response.id
            new_case_id = submitted.case.id if submitted.case is not None else None
            record = session.get(FollowupRecord, out.record_id)
            assert record is not None
            record.response_id = response_id
            session.flush()
        status = version = None
        if case is not None:
            assert case_version is not None
            worked = recovery.log_attempt(
                session, case_id=case.id, expected_version=case_version, reached=contact.outcome == "reached",
                note=contact.notes.strip() or None, actor_id=user.id, actor=user.username, now=now,
                count_on_task=False)
            if resolve is not None:
                worked = recovery.close_case(
                    session, case_id=case.id, expected_version=worked.version, root_cause=resolve.root_cause,
                    resolution=resolve.resolution, rerating=resolve.rerating, actor_id=user.id,
                    actor=user.username, now=now, channel=CHANNEL_OF_METHOD.get(contact.method, "phone"))
            status, version = worked.status, worked.version
    except BaseException:
        savepoint.rollback()
        raise
    savepoint.commit()
    return FlowResult(out, response_id, case.id if case is not None else None, status, version, new_case_id)
