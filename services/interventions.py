"""Health interventions (健康干预): logging one, and the before/after comparison of the indicator it targets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from db.models import INTERVENTION_KINDS, Indicator, Intervention, Observation, Patient
from services import audit
from services.auth import CurrentUser
from services.errors import UserError

MAX_CONTENT = 4000
DEFAULT_WINDOW_DAYS = 90


@dataclass(frozen=True)
class InterventionInput:
    patient_id: int
    kind: str
    content: str
    performed_on: date
    indicator_code: str | None = None
    goal: str | None = None
    next_review_on: date | None = None


def log_intervention(session: Session, *, data: InterventionInput, user: CurrentUser, now: datetime) -> Intervention:
    """Validate everything first; one row and one audit row, or a UserError and nothing."""
    d = data
    if user.role not in ("nurse", "admin"):
        raise UserError("interventions.not_allowed")
    if not d.kind:
        raise UserError("interventions.kind_required")
    if d.kind not in INTERVENTION_KINDS:
        raise UserError("interventions.bad_kind", kind=d.kind)
    if not d.content.strip():
        raise UserError("interventions.content_required")
    if len(d.content) > MAX_CONTENT:
        raise UserError("interventions.content_too_long", maximum=MAX_CONTENT)
    if d.performed_on > now.date():
        raise UserError("interventions.future_date")
    if d.next_review_on is not None and d.next_review_on < d.performed_on:
        raise UserError("interventions.review_before")
    patient = session.get(Patient, d.patient_id)
    if patient is None:
        raise UserError("interventions.no_patient")
    indicator_id = None
    if d.indicator_code:
        indicator_id = session.scalars(select(Indicator.id).where(Indicator.code == d.indicator_code)).first()
        if indicator_id is None:
            raise UserError("interventions.bad_indicator", code=d.indicator_code)
    row = Intervention(patient_id=d.patient_id, kind=d.kind, indicator_id=indicator_id,
                       goal=(d.goal or "").strip() or None, content=d.content.strip(), performer_id=user.id,
                       department_id=patient.department_id, performed_on=d.performed_on,
                       next_review_on=d.next_review_on, created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, action="intervention_create", user_id=user.id, username=user.username,
                 entity="intervention", entity_id=row.id, patient_id=d.patient_id,
                 detail={"kind": d.kind, "indicator": d.indicator_code}, at=now)
    return row


@dataclass(frozen=True)
class BeforeAfter:
    indicator_code: str | None
    window_days: int
    n_before: int
    mean_before: float | None
    n_after: int
    mean_after: float | None

    @property
    def change(self) -> float | None:
        if self.mean_before is None or self.mean_after is None:
            return None
        return self.mean_after - self.mean_before


def before_after(*, conn: Connection, intervention_id: int, window_days: int = DEFAULT_WINDOW_DAYS) -> BeforeAfter:
    """Mean of the targeted indicator in [day - window, day) and in [day, day + window] of the intervention.

    The intervention day itself counts as "after": a reading taken that day reflects the visit's advice at
    the earliest, and most are taken before it, so the comparison errs on the side of a smaller change.
    """
    row = conn.execute(select(Intervention.patient_id, Intervention.indicator_id, Intervention.performed_on,
                              Indicator.code).outerjoin(Indicator, Indicator.id == Intervention.indicator_id)
                       .where(Intervention.id == intervention_id)).one_or_none()
    if row is None:
        raise UserError("interventions.not_found")
    patient_id, indicator_id, performed_on, code = row
    if indicator_id is None:
        return BeforeAfter(None, window_days, 0, None, 0, None)
    day = datetime.combine(performed_on, time.min)

    def window(start: datetime, end: datetime) -> tuple[int, float | None]:
        n, mean = conn.execute(select(func.count(), func.avg(Observation.value)).where(
            Observation.patient_id == patient_id, Observation.indicator_id == indicator_id,
            Observation.observed_at >= start, Observation.observed_at < end)).one()
        return int(n), None if mean is None else float(mean)

    nb, mb = window(day - timedelta(days=window_days), day)
    na, ma = window(day, day + timedelta(days=window_days + 1))
    return BeforeAfter(code, window_days, nb, mb, na, ma)
