"""Every risk level a model can produce fits the stored column on both engines (PostgreSQL enforces lengths)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import RiskAssessment
from services.risk import findrisc
from tests.factories import NOW, create_patient


def test_longest_findrisc_level_is_stored(session: Session) -> None:
    patient = create_patient(session)
    levels = [band.level for band in findrisc.BANDS]
    for level in levels:
        session.add(RiskAssessment(patient_id=patient.id, model="findrisc", model_version="2003", assessed_at=NOW,
                                   score=1.0, level=level, inputs={}, factors=[]))
    session.commit()
    assert sorted(session.scalars(select(RiskAssessment.level))) == sorted(levels)
