"""Set-based queueing details: a habit time listed twice is one message, a re-run queues nothing new."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Message
from services.messaging import queue
from tests.factories import create_patient
from tests.factories_messaging import consent, medication

AS_OF = date(2026, 6, 15)
QUEUE_AT = datetime(2026, 6, 15, 1, 0)


def test_duplicate_habit_times_give_one_message_and_a_rerun_adds_nothing(session: Session) -> None:
    p = create_patient(session)
    consent(session, p.id)
    medication(session, p.id, ["08:00", "08:00", "20:00"])
    other = create_patient(session)
    consent(session, other.id)
    medication(session, other.id, ["07:30"])
    counts = queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)
    assert counts["medication"] == 3
    rows = session.execute(select(Message.patient_id, Message.scheduled_at).order_by(Message.id)).all()
    assert sorted((pid, at.strftime("%H:%M")) for pid, at in rows) == sorted(
        [(p.id, "08:00"), (p.id, "20:00"), (other.id, "08:00")])  # 07:30 is in quiet hours: moved to 08:00
    assert queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)["total"] == 0
    assert len(session.scalars(select(Message.id)).all()) == 3


def test_a_later_run_the_same_day_queues_only_the_new_reminders_within_the_cap(session: Session) -> None:
    p = create_patient(session)
    consent(session, p.id)
    medication(session, p.id, ["09:00"], text="阿司匹林")
    assert queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)["medication"] == 1
    # A nurse records a second medicine before noon; the afternoon run adds its two times (3 = the weekly cap).
    medication(session, p.id, ["12:00", "18:00"], text="二甲双胍")
    assert queue.queue_reminders(session, as_of=AS_OF, now=datetime(2026, 6, 15, 11, 0))["medication"] == 2
    medication(session, p.id, ["19:00"], text="氨氯地平")
    assert queue.queue_reminders(session, as_of=AS_OF, now=datetime(2026, 6, 15, 12, 0))["medication"] == 0
    assert len(session.scalars(select(Message.id)).all()) == 3
