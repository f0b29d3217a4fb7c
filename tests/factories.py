"""Small factories: one row with sensible defaults, overridden per test (`create_patient(s, name=...)`)."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

import bcrypt
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Department, FollowupTask, Patient, Questionnaire, SurveyResponse, User

NOW = datetime(2026, 6, 15, 10, 0, 0)
_seq = itertools.count(1)
# Cheap bcrypt rounds keep factories fast; the hashes are real bcrypt all the same.
_HASHES: dict[str, str] = {}


def password_hash(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return _HASHES[password]


def department(session: Session, code: str = "CARD") -> Department:
    dept = session.scalars(select(Department).where(Department.code == code)).first()
    if dept is None:
        dept = Department(code=code, name_zh=f"科室{code}", name_en=f"Department {code}", kind="hospital")
        session.add(dept)
        session.flush()
    return dept


def create_user(session: Session, **overrides: Any) -> User:
    n = next(_seq)
    password = overrides.pop("password", "correct horse battery")
    values: dict[str, Any] = {
        "username": f"user{n}", "display_name": f"用户{n}", "role": "nurse",
        "password_hash": password_hash(password), "created_at": NOW,
    }
    values.update(overrides)
    user = User(**values)
    session.add(user)
    session.flush()
    return user


def create_patient(session: Session, **overrides: Any) -> Patient:
    n = next(_seq)
    values: dict[str, Any] = {
        "card_no": f"T{n:09d}", "name": f"张{n}", "sex": "F", "birth_date": date(1960, 1, 1),
        "phone": f"138{n:08d}", "status": "active", "enrolled_at": NOW, "updated_at": NOW,
    }
    values.update(overrides)
    patient = Patient(**values)
    session.add(patient)
    session.flush()
    return patient


def create_task(session: Session, **overrides: Any) -> FollowupTask:
    if "patient_id" not in overrides:
        overrides["patient_id"] = create_patient(session).id
    values: dict[str, Any] = {"due_date": NOW.date(), "status": "pending", "created_at": NOW, "method": "phone"}
    values.update(overrides)
    task = FollowupTask(**values)
    session.add(task)
    session.flush()
    return task


def satisfaction_questionnaire(session: Session) -> Questionnaire:
    q = session.scalars(select(Questionnaire).where(Questionnaire.code == "satisfaction")).first()
    if q is None:
        q = Questionnaire(code="satisfaction", version=1, kind="satisfaction", title_zh="满意度",
                          title_en="Satisfaction", created_at=NOW)
        session.add(q)
        session.flush()
    return q


def create_response(session: Session, **overrides: Any) -> SurveyResponse:
    n = next(_seq)
    values: dict[str, Any] = {
        "questionnaire_id": satisfaction_questionnaire(session).id, "submitted_at": NOW,
        "nps_score": 9, "source": "test", "source_ref": f"r{n}",
    }
    values.update(overrides)
    response = SurveyResponse(**values)
    session.add(response)
    session.flush()
    return response
