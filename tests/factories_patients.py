"""Factories for the patients area: valid resident ID numbers, enrolment input, observations."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Indicator, Observation
from services.patients import Actor, PatientInput, resident_id_check_char

_seq = itertools.count(1)
ACTOR = Actor(None, "tester")


def resident_id(birth: date = date(1980, 5, 17), sex: str = "M", region: str = "330106") -> str:
    """A valid 18-digit resident ID number: region, birth date, sequence (odd for men), check character."""
    n = next(_seq) % 500
    seq = f"{n * 2 + (1 if sex == 'M' else 0):03d}"
    body = f"{region}{birth:%Y%m%d}{seq}"
    return body + resident_id_check_char(body)


def patient_input(**overrides: Any) -> PatientInput:
    n = next(_seq)
    values: dict[str, Any] = {"name": f"李{n}", "sex": "M", "birth_date": date(1970, 1, 1), "phone": f"139{n:08d}"}
    values.update(overrides)
    return PatientInput(**values)


def indicator_id(session: Session, code: str) -> int:
    return int(session.execute(select(Indicator.id).where(Indicator.code == code)).scalar_one())


def add_observation(session: Session, *, patient_id: int, code: str, value: float, at: datetime,
                    source: str = "test") -> Observation:
    n = next(_seq)
    obs = Observation(patient_id=patient_id, indicator_id=indicator_id(session, code), value=value,
                      observed_at=at, source=source, source_ref=f"obs{n}", status="final")
    session.add(obs)
    session.flush()
    return obs
