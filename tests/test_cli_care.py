"""manage.py run-automation also assesses risk and re-evaluates tag rules, idempotently."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import manage
from db.models import Patient, PatientTag, RiskAssessment
from queries.filters import has_open_tag
from tests.factories import create_patient
from tests.factories_care import create_observation


def test_run_automation_assesses_and_tags(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    with Session(sqlite_engine) as s, s.begin():
        p = create_patient(s, sex="M", birth_date=date(1960, 5, 1))
        create_observation(s, patient_id=p.id, code="BMI", value=29.5, at=datetime(2026, 6, 1))
        pid = p.id
    assert manage.main(["run-automation", "--as-of", "2026-06-15"]) == 0
    out = capsys.readouterr().out
    assert "risk assessments stored" in out and "tags opened / ended" in out
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(RiskAssessment)) == 4
        open_tags = set(s.scalars(select(PatientTag.tag_code).where(PatientTag.patient_id == pid)))
        assert {"obesity", "lost_to_followup"} <= open_tags
        assert s.scalars(select(Patient.id).where(has_open_tag(Patient.id, "obesity"))).all() == [pid]
    assert manage.main(["run-automation", "--as-of", "2026-06-15"]) == 0
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(RiskAssessment)) == 4
        assert s.scalar(select(func.count()).select_from(PatientTag)) == len(open_tags)
