"""Wellness plans (健康调养): goals with a target value and date, items from the advice library, progress from data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AdviceItem, Indicator, Observation, Patient, WellnessPlan
from services import audit, clock
from services.auth import CurrentUser
from services.errors import UserError

GOAL_CMPS = ("<", "<=", ">", ">=")


@dataclass(frozen=True)
class Goal:
    indicator: str
    cmp: str
    target: float
    by: date

    def as_json(self) -> dict[str, Any]:
        return {"indicator": self.indicator, "cmp": self.cmp, "target": self.target, "by": self.by.isoformat()}


def _met(value: float, cmp: str, target: float) -> bool:
    return {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[cmp]


def create_plan(session: Session, *, patient_id: int, title: str, goals: list[Goal], advice_codes: list[str],
                start_on: date, end_on: date | None, user_id: int | None, username: str | None,
                now: datetime | None = None) -> WellnessPlan:
    now = now or clock.now()
    if session.get(Patient, patient_id) is None:
        raise UserError("care.wellness.no_patient")
    if not title.strip():
        raise UserError("care.wellness.title_required")
    if not goals:
        raise UserError("care.wellness.goal_required")
    if end_on is not None and end_on < start_on:
        raise UserError("care.wellness.bad_period")
    known = set(session.scalars(select(Indicator.code)))
    for g in goals:
        if g.indicator not in known:
            raise UserError("care.rules.unknown_indicator", code=g.indicator)
        if g.cmp not in GOAL_CMPS:
            raise UserError("care.rules.bad_operator", op=g.cmp)
        if g.by < start_on:
            raise UserError("care.wellness.goal_date", date=g.by.isoformat())
    have = set(session.scalars(select(AdviceItem.code).where(AdviceItem.code.in_(advice_codes))))
    unknown = [c for c in advice_codes if c not in have]
    if unknown:
        raise UserError("care.wellness.unknown_advice", code=unknown[0])
    plan = WellnessPlan(patient_id=patient_id, title=title.strip(), goals=[g.as_json() for g in goals],
                        advice_codes=list(advice_codes), start_on=start_on, end_on=end_on, status="active",
                        created_by=user_id, created_at=now)
    session.add(plan)
    session.flush()
    audit.record(session, action="wellness_plan.create", user_id=user_id, username=username,
                 entity="wellness_plan", entity_id=plan.id, patient_id=patient_id, at=now)
    return plan


@dataclass(frozen=True)
class GoalProgress:
    indicator: str
    cmp: str
    target: float
    by: date
    baseline: float | None
    baseline_at: datetime | None
    latest: float | None
    latest_at: datetime | None
    met: bool | None  # None: no reading yet
    overdue: bool  # past the date and not met


def progress(session: Session, *, plan: WellnessPlan, as_of: datetime) -> list[GoalProgress]:
    """Per goal: the reading at the plan's start (the last before it), the latest reading, and whether it is met."""
    out: list[GoalProgress] = []
    start = datetime.combine(plan.start_on, datetime.min.time())
    for raw in plan.goals:
        g = Goal(raw["indicator"], raw["cmp"], float(raw["target"]), date.fromisoformat(raw["by"]))
        ind_id = session.scalar(select(Indicator.id).where(Indicator.code == g.indicator))
        base_row = session.execute(
            select(Observation.value, Observation.observed_at)
            .where(Observation.patient_id == plan.patient_id, Observation.indicator_id == ind_id,
                   Observation.observed_at <= start)
            .order_by(Observation.observed_at.desc()).limit(1)).first()
        if base_row is None:
            base_row = session.execute(
                select(Observation.value, Observation.observed_at)
                .where(Observation.patient_id == plan.patient_id, Observation.indicator_id == ind_id,
                       Observation.observed_at <= as_of)
                .order_by(Observation.observed_at).limit(1)).first()
        last_row = session.execute(
            select(Observation.value, Observation.observed_at)
            .where(Observation.patient_id == plan.patient_id, Observation.indicator_id == ind_id,
                   Observation.observed_at <= as_of)
            .order_by(Observation.observed_at.desc()).limit(1)).first()
        met = None if last_row is None else _met(last_row[0], g.cmp, g.target)
        out.append(GoalProgress(
            g.indicator, g.cmp, g.target, g.by,
            None if base_row is None else base_row[0], None if base_row is None else base_row[1],
            None if last_row is None else last_row[0], None if last_row is None else last_row[1],
            met, as_of.date() > g.by and met is not True))
    return out


def plans_of(session: Session, *, patient_id: int) -> list[WellnessPlan]:
    return list(session.scalars(select(WellnessPlan).where(WellnessPlan.patient_id == patient_id)
                                .order_by(WellnessPlan.start_on.desc(), WellnessPlan.id.desc())))


PLAN_ROLES = frozenset({"nurse", "admin"})
OUTCOMES = ("completed", "closed")  # goals reached / stopped early


def close_plan(session: Session, *, plan_id: int, user: CurrentUser, outcome: str = "closed",
               today: date | None = None) -> WellnessPlan:
    """End an active plan as completed or stopped: status, end date (today unless it ended earlier) and an audit
    row. Only nurses and administrators may (checked here, not just by hiding the button)."""
    if user.role not in PLAN_ROLES:
        raise UserError("care.wellness.not_allowed")
    if outcome not in OUTCOMES:
        raise UserError("care.wellness.bad_outcome")
    plan = session.get(WellnessPlan, plan_id)
    if plan is None or plan.status != "active":
        raise UserError("care.wellness.not_active")
    day = today or clock.today()
    plan.status = outcome
    if plan.end_on is None or plan.end_on > day:
        plan.end_on = max(day, plan.start_on)
    audit.record(session, action=f"wellness_plan.{'complete' if outcome == 'completed' else 'close'}",
                 user_id=user.id, username=user.username, entity="wellness_plan", entity_id=plan_id,
                 patient_id=plan.patient_id, detail={"outcome": outcome, "end_on": plan.end_on.isoformat()})
    session.flush()
    return plan
