"""Factories for the care area: observations by indicator code, history facts, encounters, risk rows."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Encounter, HealthHistory, Indicator, Observation, RiskAssessment
from tests.factories import NOW

_seq = itertools.count(1)


def indicator_id(session: Session, code: str) -> int:
    return session.scalars(select(Indicator.id).where(Indicator.code == code)).one()


def create_observation(session: Session, *, patient_id: int, code: str, value: float,
                       at: datetime = NOW, **overrides: Any) -> Observation:
    values: dict[str, Any] = {
        "patient_id": patient_id, "indicator_id": indicator_id(session, code), "value": value,
        "observed_at": at, "source": "test", "source_ref": f"obs{next(_seq)}",
    }
    values.update(overrides)
    row = Observation(**values)
    session.add(row)
    session.flush()
    return row


def create_history(session: Session, *, patient_id: int, kind: str, text: str, **overrides: Any) -> HealthHistory:
    values: dict[str, Any] = {"patient_id": patient_id, "kind": kind, "text": text, "recorded_at": NOW,
                              "source": "test"}
    values.update(overrides)
    row = HealthHistory(**values)
    session.add(row)
    session.flush()
    return row


def create_encounter(session: Session, *, patient_id: int, at: datetime = NOW, **overrides: Any) -> Encounter:
    values: dict[str, Any] = {"patient_id": patient_id, "kind": "outpatient", "started_at": at, "source": "test",
                              "source_ref": f"enc{next(_seq)}"}
    values.update(overrides)
    row = Encounter(**values)
    session.add(row)
    session.flush()
    return row


def create_risk(session: Session, *, patient_id: int, model: str = "pce", level: str = "high",
                score: float = 25.0, at: datetime = NOW, **overrides: Any) -> RiskAssessment:
    values: dict[str, Any] = {"patient_id": patient_id, "model": model, "model_version": "test",
                              "assessed_at": at, "score": score, "level": level, "inputs": {}, "factors": []}
    values.update(overrides)
    row = RiskAssessment(**values)
    session.add(row)
    session.flush()
    return row
