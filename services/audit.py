"""Audit trail: one append-only row for every login, patient read, export and change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db.models import AuditLog
from services import clock


def record(
    session: Session,
    *,
    action: str,
    user_id: int | None = None,
    username: str | None = None,
    entity: str | None = None,
    entity_id: str | int | None = None,
    patient_id: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditLog:
    row = AuditLog(
        at=at or clock.now(),
        user_id=user_id,
        username=username,
        action=action,
        entity=entity,
        entity_id=None if entity_id is None else str(entity_id),
        patient_id=patient_id,
        detail=detail,
    )
    session.add(row)
    session.flush()
    return row
