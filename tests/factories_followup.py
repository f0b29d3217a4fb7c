"""Factories for follow-up tests: encounters, readings, tags, risk, plans and contact records."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    Encounter,
    FollowupRecord,
    HealthHistory,
    Indicator,
    Observation,
    PatientTag,
    RiskAssessment,
)
from services.auth import CurrentUser

_seq = itertools.count(1)


def as_current(user: Any) -> CurrentUser:
    return CurrentUser(user.id, user.username, user.display_name, user.role, user.department_id)


def create_encounter(session: Session, *, patient_id: int, kind: str = "outpatient", started_at: datetime,
                     ended_at: datetime | None = None, **overrides: Any) -> Encounter:
    e = Encounter(patient_id=patient_id, kind=kind, started_at=started_at, ended_at=ended_at, source="test",
                  source_ref=f"e{next(_seq)}", **overrides)
    session.add(e)
    session.flush()
    return e


def indicator_id(session: Session, code: str) -> int:
    return int(session.scalars(select(Indicator.id).where(Indicator.code == code)).one())


def create_observation(session: Session, *, patient_id: int, code: str, value: float,
                       observed_at: datetime) -> Observation:
    o = Observation(patient_id=patient_id, indicator_id=indicator_id(session, code), value=value,
                    observed_at=observed_at, source="test", source_ref=f"o{next(_seq)}")
    session.add(o)
    session.flush()
    return o


def create_bp(session: Session, *, patient_id: int, sbp: float, dbp: float, observed_at: datetime) -> None:
    create_observation(session, patient_id=patient_id, code="SBP", value=sbp, observed_at=observed_at)
    create_observation(session, patient_id=patient_id, code="DBP", value=dbp, observed_at=observed_at)


def create_tag(session: Session, *, patient_id: int, tag_code: str = "hypertension", since: datetime,
               until: datetime | None = None) -> PatientTag:
    t = PatientTag(patient_id=patient_id, tag_code=tag_code, since=since, until=until)
    session.add(t)
    session.flush()
    return t


def create_risk(session: Session, *, patient_id: int, level: str, assessed_at: datetime) -> RiskAssessment:
    r = RiskAssessment(patient_id=patient_id, model="test", model_version="1", assessed_at=assessed_at,
                       level=level, score=0.1, inputs={}, factors=[])
    session.add(r)
    session.flush()
    return r


def create_record(session: Session, *, task_id: int, patient_id: int, outcome: str, contacted_at: datetime,
                  method: str = "phone") -> FollowupRecord:
    r = FollowupRecord(task_id=task_id, patient_id=patient_id, outcome=outcome, contacted_at=contacted_at,
                       method=method)
    session.add(r)
    session.flush()
    return r


def create_condition(session: Session, *, patient_id: int, text: str = "高血压", code: str | None = None,
                     recorded_at: datetime = datetime(2025, 1, 1)) -> HealthHistory:
    h = HealthHistory(patient_id=patient_id, kind="condition", text=text, code=code, recorded_at=recorded_at)
    session.add(h)
    session.flush()
    return h


def day(d: date, hour: int = 10) -> datetime:
    return datetime(d.year, d.month, d.day, hour)
