"""Working a service-recovery case: contact attempts, root cause, resolution, re-rating and closing, with locking."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db.models import FollowupTask, ServiceRecoveryCase, User
from services import audit, clock
from services.errors import UserError

ROOT_CAUSES = ("waiting", "communication", "attitude", "clinical", "environment", "billing", "process", "other")
STATUSES = ("open", "in_progress", "closed")
MAX_TEXT = 2000


def _case(session: Session, case_id: int, expected_version: int) -> ServiceRecoveryCase:
    """The case, refused when someone else changed it since the screen read it (optimistic locking)."""
    case = session.get(ServiceRecoveryCase, case_id)
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
    actor_id: int | None = None, actor: str | None = None, now: datetime | None = None,
) -> ServiceRecoveryCase:
    """One contact attempt (reached or not); the case moves to in progress."""
    at = now or clock.now()
    if note is not None and len(note) > MAX_TEXT:
        raise UserError("recovery.text_too_long", limit=MAX_TEXT)
    case = _case(session, case_id, expected_version)
    case.attempts += 1
    case.status = "in_progress"
    task = _task(session, case_id)
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
    now: datetime | None = None,
) -> ServiceRecoveryCase:
    """Close with a root cause and what was done; the patient's re-rating (0-10) if asked. Closes the task too."""
    at = now or clock.now()
    if root_cause not in ROOT_CAUSES:
        raise UserError("recovery.bad_root_cause", value=root_cause)
    text = resolution.strip()
    if not text:
        raise UserError("recovery.resolution_required")
    if len(text) > MAX_TEXT:
        raise UserError("recovery.text_too_long", limit=MAX_TEXT)
    if rerating is not None and not 0 <= rerating <= 10:
        raise UserError("recovery.bad_rerating", value=rerating)
    case = _case(session, case_id, expected_version)
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
