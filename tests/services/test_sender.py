"""The send job: retry with exponential backoff then failed, never a crash, never a duplicate send."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from db.engine import session_factory
from db.models import AuditLog, Message
from services.messaging import sender
from services.messaging.adapters import DeliveryResult, HttpSmsAdapter, OutgoingMessage, SMTPAdapter
from tests.factories import create_patient
from tests.factories_messaging import consent, message
from tests.support.gateways import http_gateway, smtp_server

T0 = datetime(2026, 6, 15, 9, 0)


class Counting:
    def __init__(self, delay: float = 0.0) -> None:
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.delay = delay

    def send(self, m: OutgoingMessage) -> DeliveryResult:
        time.sleep(self.delay)
        with self.lock:
            self.keys[m.idempotency_key] += 1
        return DeliveryResult(True)


class Broken:
    def send(self, m: OutgoingMessage) -> DeliveryResult:
        raise RuntimeError("adapter bug")


def _setup(engine: Engine, n: int = 1, **kw: object) -> list[int]:
    """n messages, each to its own consenting patient (one patient would hit the weekly cap)."""
    ids = []
    with session_factory(engine)() as s, s.begin():
        for _ in range(n):
            p = create_patient(s)
            consent(s, p.id)
            values: dict[str, object] = {"scheduled_at": T0 - timedelta(minutes=1), **kw}
            ids.append(message(s, p.id, **values).id)
    return ids


def _get(engine: Engine, mid: int) -> Message:
    with session_factory(engine)() as s:
        return s.get_one(Message, mid)


def test_backoff_doubles_and_caps() -> None:
    assert [sender.backoff(a) for a in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert sender.backoff(30) == sender.BACKOFF_MAX


def test_gateway_500_retried_with_backoff_then_failed(engine: Engine) -> None:
    (mid,) = _setup(engine)
    sf = session_factory(engine)
    with http_gateway() as (url, log):
        ad = {"sms": HttpSmsAdapter(url=f"{url}/fail", timeout=2)}
        now = T0
        for attempt, wait in ((1, 1), (2, 2)):
            counts = sender.send_due(sf, now=now, adapters=ad, max_attempts=3)
            m = _get(engine, mid)
            assert (counts.retried, m.status, m.attempts) == (1, "queued", attempt)
            assert m.scheduled_at == now + timedelta(minutes=wait) and m.last_error == "HTTP 500 from gateway"
            assert sender.send_due(sf, now=now + timedelta(seconds=59), adapters=ad).claimed == 0  # not yet due
            now = m.scheduled_at
        counts = sender.send_due(sf, now=now, adapters=ad, max_attempts=3)
        m = _get(engine, mid)
        assert (counts.failed, m.status, m.attempts, m.last_error) == (1, "failed", 3, "HTTP 500 from gateway")
        assert sender.send_due(sf, now=now + timedelta(days=1), adapters=ad).claimed == 0
        assert len(log.requests) == 3 and {r["key"] for r in log.requests} == {m.idempotency_key}


def test_hanging_gateway_is_a_recorded_failure(engine: Engine) -> None:
    (mid,) = _setup(engine)
    with http_gateway(hang_seconds=2) as (url, _):
        counts = sender.send_due(session_factory(engine), now=T0,
                                 adapters={"sms": HttpSmsAdapter(url=f"{url}/hang", timeout=0.3)})
    m = _get(engine, mid)
    assert counts.retried == 1 and m.status == "queued" and "timed out" in (m.last_error or "")


def test_rejected_number_fails_at_once(engine: Engine) -> None:
    (mid,) = _setup(engine)
    with http_gateway() as (url, _):
        counts = sender.send_due(session_factory(engine), now=T0,
                                 adapters={"sms": HttpSmsAdapter(url=f"{url}/reject", timeout=2)})
    m = _get(engine, mid)
    assert (counts.failed, m.status, m.attempts, m.last_error) == (1, "failed", 1, "HTTP 400 from gateway")


def test_adapter_exception_and_missing_adapter_never_crash(engine: Engine) -> None:
    ids = _setup(engine, 1)
    ids += _setup(engine, 1, channel="email", recipient="a@b.cn")
    counts = sender.send_due(session_factory(engine), now=T0, adapters={"sms": Broken()})
    sms, email = _get(engine, ids[0]), _get(engine, ids[1])
    assert sms.status == "queued" and sms.last_error == "RuntimeError: adapter bug"
    assert email.status == "failed" and email.last_error == "no adapter for channel email"
    assert (counts.retried, counts.failed) == (1, 1)


def test_no_duplicate_on_rerun(engine: Engine) -> None:
    ids = _setup(engine, 20)
    sf = session_factory(engine)
    with http_gateway() as (url, log):
        ad = {"sms": HttpSmsAdapter(url=f"{url}/ok", timeout=2)}
        first = sender.send_due(sf, now=T0, adapters=ad, batch=7)
        second = sender.send_due(sf, now=T0 + timedelta(hours=1), adapters=ad)
    assert (first.claimed, first.sent, second.claimed) == (20, 20, 0)
    assert len(log.requests) == 20 and len(log.delivered) == 20
    assert all(_get(engine, i).status == "sent" and _get(engine, i).sent_at == T0 for i in ids)
    with session_factory(engine)() as s:
        assert s.scalars(select(AuditLog.action).where(AuditLog.action == "messages_sent")).all() == ["messages_sent"]


def test_concurrent_runs_send_each_message_once(engine: Engine) -> None:
    _setup(engine, 40)
    sf = session_factory(engine)
    adapter = Counting(delay=0.002)
    results: list[sender.SendCounts] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(sender.send_due(sf, now=T0, adapters={"sms": adapter}, batch=5))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(adapter.keys) == 40 and set(adapter.keys.values()) == {1}
    assert sum(r.sent for r in results) == 40 and sum(r.claimed for r in results) == 40


def test_expired_lease_is_resent_with_the_same_key(engine: Engine) -> None:
    """A crash after the gateway accepted: the lease runs out, the resend carries the key, the gateway dedups."""
    (mid,) = _setup(engine, 1, status="sending", attempts=1, scheduled_at=T0 - timedelta(minutes=1))
    with http_gateway() as (url, log):
        ad = {"sms": HttpSmsAdapter(url=f"{url}/ok", timeout=2)}
        m = _get(engine, mid)
        ad["sms"].send(OutgoingMessage(mid, m.idempotency_key, "sms", "13800000000", m.body))  # the lost send
        counts = sender.send_due(session_factory(engine), now=T0, adapters=ad)
    assert counts.sent == 1 and _get(engine, mid).attempts == 2
    assert len(log.requests) == 2 and len(log.delivered) == 1


def test_live_lease_is_not_taken(engine: Engine) -> None:
    _setup(engine, 1, status="sending", attempts=1, scheduled_at=T0 + timedelta(minutes=5))
    adapter = Counting()
    assert sender.send_due(session_factory(engine), now=T0, adapters={"sms": adapter}).claimed == 0
    assert not adapter.keys


def test_email_batch_goes_over_one_smtp_connection(engine: Engine) -> None:
    ids = _setup(engine, 7, channel="email", recipient="zhang.san@example.cn")
    with smtp_server() as (port, sink):
        smtp = SMTPAdapter(host="127.0.0.1", port=port, sender="careloop@hospital.cn", timeout=5)
        counts = sender.send_due(session_factory(engine), now=T0, adapters={"email": smtp}, batch=5)
    assert counts.sent == 7 and len(sink.messages) == 7
    # Two claimed batches (5 + 2): two connections, each closed when its batch was done.
    assert smtp.connections == 2 and len(set(sink.peers)) == 2 and smtp._conn is None
    assert {_get(engine, i).status for i in ids} == {"sent"}


def test_email_subject_follows_the_patients_language(engine: Engine) -> None:
    with session_factory(engine)() as s, s.begin():
        en = create_patient(s, language="en")
        zh = create_patient(s)
        for p in (en, zh):
            consent(s, p.id)
            message(s, p.id, channel="email", recipient="a@example.cn", scheduled_at=T0 - timedelta(minutes=1))
    seen: dict[str, str] = {}

    class Subjects:
        def send(self, m: OutgoingMessage) -> DeliveryResult:
            seen[m.recipient + str(m.id)] = m.subject
            return DeliveryResult(True)

    assert sender.send_due(session_factory(engine), now=T0, adapters={"email": Subjects()}).sent == 2
    assert sorted(seen.values()) == ["Careloop health reminder", "Careloop 健康提醒"]
