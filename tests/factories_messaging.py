"""Factories for messaging tests: consents, contact points, queued messages, exam reports, medications."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from db.models import Consent, ExamReport, HealthHistory, Message, PatientContact

_seq = itertools.count(1)
GRANTED = datetime(2026, 1, 1, 9, 0)


def consent(session: Session, patient_id: int, purpose: str = "followup", *, granted_at: datetime = GRANTED,
            withdrawn_at: datetime | None = None) -> Consent:
    row = Consent(patient_id=patient_id, purpose=purpose, granted_at=granted_at, withdrawn_at=withdrawn_at)
    session.add(row)
    session.flush()
    return row


def contact(session: Session, patient_id: int, channel: str, address: str) -> PatientContact:
    row = PatientContact(patient_id=patient_id, channel=channel, address=address)
    session.add(row)
    session.flush()
    return row


def message(session: Session, patient_id: int, **overrides: Any) -> Message:
    n = next(_seq)
    values: dict[str, Any] = {
        "patient_id": patient_id, "channel": "sms", "purpose": "followup", "template_code": "t",
        "body": f"hello {n}", "scheduled_at": datetime(2026, 6, 15, 9, 0), "status": "queued", "attempts": 0,
        "idempotency_key": f"test:{n}", "recipient": "13800000000",
    }
    values.update(overrides)
    row = Message(**values)
    session.add(row)
    session.flush()
    return row


def exam_report(session: Session, patient_id: int, reported_at: datetime, title: str = "血常规") -> ExamReport:
    n = next(_seq)
    row = ExamReport(patient_id=patient_id, title=title, status="final", reported_at=reported_at,
                     source="test", source_ref=f"exam{n}")
    session.add(row)
    session.flush()
    return row


def medication(session: Session, patient_id: int, times: list[str], text: str = "二甲双胍",
               started_on: date | None = None) -> HealthHistory:
    row = HealthHistory(patient_id=patient_id, kind="medication", text=text, detail={"times": times},
                        started_on=started_on, recorded_at=datetime(2026, 1, 1))
    session.add(row)
    session.flush()
    return row
