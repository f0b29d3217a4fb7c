"""Protective rules, table-driven: addresses, channel chain, quiet hours, consent and DNC at queue and send, cap."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import session_factory
from db.models import Consent, Message, Patient
from services.messaging import queue, rules, sender
from services.messaging.adapters import DeliveryResult, OutgoingMessage
from tests.factories import create_patient, create_task
from tests.factories_messaging import consent, contact, exam_report, medication, message

AS_OF = date(2026, 6, 15)
QUEUE_AT = datetime(2026, 6, 15, 1, 0)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        self.sent.append(message)
        return DeliveryResult(True)


def adapters(rec: Recorder) -> dict[str, Recorder]:
    return {"sms": rec, "email": rec, "wechat": rec}


@pytest.mark.parametrize(("phone", "ok"), [
    ("13812345678", True), ("19912345678", True), ("+86 138-1234-5678", True), ("008613812345678", True),
    ("12812345678", False), ("1381234567", False), ("138123456789", False), ("010-12345678", False),
    ("", False), (None, False), ("abcdefghijk", False),
])
def test_phone_validity(phone: str | None, ok: bool) -> None:
    assert rules.valid_phone(phone) is ok


@pytest.mark.parametrize(("address", "ok"), [
    ("zhang.san@example.cn", True), ("a+b@mail.hospital.org", True), ("no-at-sign.example.com", False),
    ("two@@example.com", False), ("space in@example.com", False), ("x@localhost", False), ("", False), (None, False),
])
def test_email_validity(address: str | None, ok: bool) -> None:
    assert rules.valid_email(address) is ok


@pytest.mark.parametrize(("at", "expected"), [
    (datetime(2026, 6, 15, 20, 59), datetime(2026, 6, 15, 20, 59)),
    (datetime(2026, 6, 15, 21, 0), datetime(2026, 6, 16, 8, 0)),
    (datetime(2026, 6, 15, 23, 59), datetime(2026, 6, 16, 8, 0)),
    (datetime(2026, 6, 15, 0, 0), datetime(2026, 6, 15, 8, 0)),
    (datetime(2026, 6, 15, 7, 59), datetime(2026, 6, 15, 8, 0)),
    (datetime(2026, 6, 15, 8, 0), datetime(2026, 6, 15, 8, 0)),
])
def test_quiet_hours_boundaries(at: datetime, expected: datetime) -> None:
    assert rules.in_quiet_hours(at) is (at != expected)
    assert rules.defer_out_of_quiet(at) == expected


@pytest.mark.parametrize(("prefs", "addresses", "first", "expected"), [
    (None, {"sms": "13812345678"}, None, ("sms", "13812345678")),
    (["wechat", "sms"], {"sms": "13812345678"}, None, ("sms", "13812345678")),  # no openid: fall back
    (["wechat", "sms"], {"sms": "13812345678", "wechat": "oAbc_123456"}, None, ("wechat", "oAbc_123456")),
    (["email"], {"sms": "bad", "email": "a@b.cn"}, None, ("email", "a@b.cn")),
    (["email"], {"sms": "13812345678", "email": "not-an-address"}, None, ("sms", "13812345678")),
    (["sms"], {"sms": "13812345678", "wechat": "oAbc_123456"}, "wechat", ("wechat", "oAbc_123456")),
    ([], {"sms": "12345"}, None, None),
    (["fax", 3], {"sms": "+8613812345678"}, None, ("sms", "13812345678")),
])
def test_channel_choice_with_fallback(prefs: list[object] | None, addresses: dict[str, str | None],
                                      first: str | None, expected: tuple[str, str] | None) -> None:
    assert rules.choose_channel(prefs, addresses, first) == expected


def _reminder_patient(s: Session, **kw: object) -> Patient:
    p = create_patient(s, **kw)
    consent(s, p.id)
    create_task(s, patient_id=p.id, method="sms", due_date=AS_OF)
    return p


def _queued(s: Session) -> list[Message]:
    return list(s.scalars(select(Message).order_by(Message.id)))


def test_queue_time_consent_dnc_and_channel(session: Session) -> None:
    ok = _reminder_patient(session)
    dnc = _reminder_patient(session, do_not_contact=True)
    no_consent = create_patient(session)
    create_task(session, patient_id=no_consent.id, method="sms", due_date=AS_OF)
    withdrawn = create_patient(session)
    consent(session, withdrawn.id, withdrawn_at=datetime(2026, 3, 1))
    create_task(session, patient_id=withdrawn.id, method="sms", due_date=AS_OF)
    other_purpose = create_patient(session)
    consent(session, other_purpose.id, "marketing")
    create_task(session, patient_id=other_purpose.id, method="sms", due_date=AS_OF)
    wechat_fallback = _reminder_patient(session, channel_prefs=["wechat"])
    email_pref = _reminder_patient(session, channel_prefs=["email", "sms"], phone="123")
    contact(session, email_pref.id, "email", "li.si@example.cn")
    unreachable = _reminder_patient(session, phone="0101234")
    phone_task = create_task(session, patient_id=ok.id, method="phone", due_date=AS_OF)
    counts = queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)
    rows = {m.patient_id: m for m in _queued(session)}
    assert set(rows) == {ok.id, wechat_fallback.id, email_pref.id}
    assert counts["followup"] == 3 and counts["total"] == 3
    assert (rows[ok.id].channel, rows[ok.id].recipient) == ("sms", ok.phone)
    assert rows[wechat_fallback.id].channel == "sms"
    assert (rows[email_pref.id].channel, rows[email_pref.id].recipient) == ("email", "li.si@example.cn")
    assert rows[ok.id].scheduled_at == datetime(2026, 6, 15, 9, 0)
    assert ok.name in rows[ok.id].body and "{" not in rows[ok.id].body
    assert dnc.id not in rows and unreachable.id not in rows and phone_task.id
    # Idempotent: a second run queues nothing.
    assert queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)["total"] == 0
    assert len(_queued(session)) == 3


@pytest.mark.parametrize(("change", "expected_status", "reason"), [
    ("none", "sent", None),
    ("withdraw", "cancelled", "no_consent"),
    ("dnc", "cancelled", "do_not_contact"),
    ("bad_phone", "failed", "invalid_sms_address"),
])
def test_rules_rechecked_at_send_time(engine: Engine, change: str, expected_status: str,
                                      reason: str | None) -> None:
    sf = session_factory(engine)
    with sf() as s, s.begin():
        p = _reminder_patient(s)
        queue.queue_reminders(s, as_of=AS_OF, now=QUEUE_AT)
        pid = p.id
    with sf() as s, s.begin():  # between queue and send
        if change == "withdraw":
            for c in s.scalars(select(Consent).where(Consent.patient_id == pid)):
                c.withdrawn_at = datetime(2026, 6, 15, 8, 30)
        elif change == "dnc":
            s.get_one(Patient, pid).do_not_contact = True
        elif change == "bad_phone":
            for m in s.scalars(select(Message)):
                m.recipient = "12345"
    rec = Recorder()
    counts = sender.send_due(sf, now=datetime(2026, 6, 15, 9, 0), adapters=adapters(rec))
    with sf() as s:
        m = s.scalars(select(Message)).one()
    assert m.status == expected_status
    assert m.last_error == reason
    assert len(rec.sent) == (1 if expected_status == "sent" else 0)
    assert counts.claimed == 1


@pytest.mark.parametrize(("now", "status", "scheduled"), [
    (datetime(2026, 6, 15, 20, 59), "sent", None),
    (datetime(2026, 6, 15, 21, 0), "queued", datetime(2026, 6, 16, 8, 0)),
    (datetime(2026, 6, 16, 7, 59), "queued", datetime(2026, 6, 16, 8, 0)),
    (datetime(2026, 6, 16, 8, 0), "sent", None),
])
def test_quiet_hours_at_send_time(engine: Engine, now: datetime, status: str, scheduled: datetime | None) -> None:
    sf = session_factory(engine)
    with sf() as s, s.begin():
        p = create_patient(s)
        consent(s, p.id)
        message(s, p.id, scheduled_at=datetime(2026, 6, 15, 20, 0))
    rec = Recorder()
    counts = sender.send_due(sf, now=now, adapters=adapters(rec))
    with sf() as s:
        m = s.scalars(select(Message)).one()
    assert m.status == status
    if scheduled is not None:
        assert (m.scheduled_at, m.attempts, counts.deferred, rec.sent) == (scheduled, 0, 1, [])


@pytest.mark.parametrize(("already", "reports", "queued"), [(0, 1, 1), (0, 5, 3), (2, 2, 1), (3, 1, 0)])
def test_weekly_cap_at_queue_time(session: Session, already: int, reports: int, queued: int) -> None:
    p = create_patient(session)
    consent(session, p.id)
    for i in range(already):
        at = datetime(2026, 6, 10 + i, 10, 0)
        message(session, p.id, status="sent", sent_at=at, scheduled_at=at)
    old = datetime(2026, 6, 8, 10, 0)  # 8 days back: outside the week
    message(session, p.id, status="sent", sent_at=old, scheduled_at=old)
    message(session, p.id, status="cancelled", scheduled_at=datetime(2026, 6, 14, 10, 0))  # never counts
    for i in range(reports):
        exam_report(session, p.id, datetime(2026, 6, 14, 10, i))
    counts = queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)
    assert counts["exam"] == queued


def test_weekly_cap_at_send_time(engine: Engine) -> None:
    sf = session_factory(engine)
    policy = rules.Policy(weekly_cap=2)
    with sf() as s, s.begin():
        p = create_patient(s)
        consent(s, p.id)
        for d in (11, 13):
            message(s, p.id, status="sent", sent_at=datetime(2026, 6, d, 10, 0))
        message(s, p.id, scheduled_at=datetime(2026, 6, 15, 9, 0))
    counts = sender.send_due(sf, now=datetime(2026, 6, 15, 10, 0), adapters=adapters(Recorder()), policy=policy)
    assert (counts.cancelled, counts.reasons) == (1, {"weekly_cap": 1})


def test_medication_times_respect_quiet_hours(session: Session) -> None:
    p = create_patient(session)
    consent(session, p.id)
    medication(session, p.id, ["07:30", "12:00", "22:00", "bad"])
    ended = medication(session, p.id, ["12:00"], text="已停药")
    ended.ended_on = date(2026, 6, 1)
    counts = queue.queue_reminders(session, as_of=AS_OF, now=QUEUE_AT)
    assert counts["medication"] == 3
    times = sorted(m.scheduled_at for m in _queued(session))
    assert times == [datetime(2026, 6, 15, 8, 0), datetime(2026, 6, 15, 12, 0), datetime(2026, 6, 16, 8, 0)]
    assert all("二甲双胍" in m.body for m in _queued(session))


def test_time_of_day_is_a_plain_time() -> None:
    assert rules.DEFAULT_POLICY.quiet_start == time(21, 0) and rules.DEFAULT_POLICY.quiet_end == time(8, 0)
