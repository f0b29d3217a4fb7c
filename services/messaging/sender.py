"""The send job: claim due messages, re-check the patient's rules, deliver through the channel adapter, record.

Never a duplicate send: a message is claimed by one UPDATE (queued -> sending, with a lease) in its own
transaction before any gateway is called, so two runs at once never hold the same row; the outcome is
recorded only by the claim's holder. A crash after the gateway accepted but before the outcome was recorded
leaves the lease to expire; the resend carries the same idempotency key, which the gateway deduplicates.
"""

from __future__ import annotations

import contextlib
import time as _time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Table, select, tuple_, update
from sqlalchemy.orm import Session

from db.models import Message, Patient
from services import audit
from services.messaging import rules
from services.messaging.adapters import BatchingAdapter, ChannelAdapter, DeliveryResult, OutgoingMessage

LEASE = timedelta(minutes=10)
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
MAX_ATTEMPTS = 5
# E-mail subjects in the patient's language (the body was rendered in it at queue time).
SUBJECTS = {("reminder", "zh_CN"): "Careloop 健康提醒", ("education", "zh_CN"): "Careloop 健康知识",
            ("reminder", "en"): "Careloop health reminder", ("education", "en"): "Careloop health reading"}
_table = typing.cast(Table, Message.__table__)


@dataclass
class SendCounts:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    deferred: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"claimed": self.claimed, "sent": self.sent, "retried": self.retried, "failed": self.failed,
                "cancelled": self.cancelled, "deferred": self.deferred, "reasons": self.reasons}

    def _reason(self, reason: str | None) -> None:
        if reason:
            key = reason.split(":", 1)[0][:60]
            self.reasons[key] = self.reasons.get(key, 0) + 1


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes after the n-th failed attempt, at most six hours."""
    return min(BACKOFF_BASE * (1 << max(attempts - 1, 0)), BACKOFF_MAX)


def claim(session_factory: Callable[[], Session], *, now: datetime, batch: int) -> list[int]:
    """One statement: due rows (queued, or a 'sending' whose lease ran out) become ours. Own transaction."""
    with session_factory() as s, s.begin():
        due = (select(Message.id)
               .where(Message.status.in_(("queued", "sending")), Message.scheduled_at <= now)
               .order_by(Message.scheduled_at, Message.id).limit(batch))
        if s.get_bind().dialect.name == "postgresql":
            # A CTE runs once. As "id IN (subquery)" the planner may rescan the subquery per outer row, and
            # SKIP LOCKED then skips the rows this very UPDATE has just changed: the batch overran its LIMIT.
            due = due.with_for_update(skip_locked=True)
        ids = due.cte("due")
        stmt = (update(_table)
                .where(_table.c.id.in_(select(ids.c.id)), _table.c.status.in_(("queued", "sending")),
                       _table.c.scheduled_at <= now)
                .values(status="sending", attempts=_table.c.attempts + 1, scheduled_at=now + LEASE)
                .returning(_table.c.id))
        return sorted(int(i) for i in s.execute(stmt).scalars())


def _finish(s: Session, message_id: int, claimed: int, **values: object) -> bool:
    """Record an outcome only while the claim is still ours (same attempt number, still 'sending')."""
    res = s.execute(update(_table).where(_table.c.id == message_id, _table.c.status == "sending",
                                         _table.c.attempts == claimed).values(**values))
    return bool(res.rowcount)  # type: ignore[attr-defined]


def _prepare(s: Session, ids: list[int], *, now: datetime, policy: rules.Policy, max_attempts: int,
             counts: SendCounts) -> list[tuple[OutgoingMessage, int]]:
    """Send-time rules for a claimed batch (a few queries for the whole batch); settles what must not go out."""
    rows = s.execute(select(Message, Patient).join(Patient, Patient.id == Message.patient_id)
                     .where(Message.id.in_(ids), Message.status == "sending").order_by(Message.id)).all()
    pids = {p.id for _, p in rows}
    consented = rules.consented_purposes(s, pids, now)
    week = rules.sent_in_week_batch(s, pids, now)
    out: list[tuple[OutgoingMessage, int]] = []
    for m, patient in rows:
        if m.attempts > max_attempts:
            _finish(s, m.id, m.attempts, status="failed", last_error="interrupted: too many attempts")
            counts.failed += 1
            counts._reason("interrupted")
            continue
        d = rules.decide(patient=patient, consented=(patient.id, m.purpose) in consented, channel=m.channel,
                         recipient=m.recipient, at=now, week_count=week.get(patient.id, 0), policy=policy)
        if d.action == "cancel":
            bad_address = (d.reason or "").startswith("invalid_")
            _finish(s, m.id, m.attempts, status="failed" if bad_address else "cancelled", last_error=d.reason)
            if bad_address:
                counts.failed += 1
            else:
                counts.cancelled += 1
            counts._reason(d.reason)
            continue
        if d.action == "defer":
            _finish(s, m.id, m.attempts, status="queued", scheduled_at=d.until, attempts=m.attempts - 1)
            counts.deferred += 1
            counts._reason(d.reason)
            continue
        week[patient.id] = week.get(patient.id, 0) + 1  # the batch's own sends count towards the cap
        assert m.recipient is not None
        kind = "education" if m.purpose == "education" else "reminder"
        subject = SUBJECTS[(kind, "en" if patient.language == "en" else "zh_CN")]  # the patient's language
        recipient = (rules.normalise_phone(m.recipient) or m.recipient) if m.channel == "sms" else m.recipient
        out.append((OutgoingMessage(id=m.id, idempotency_key=m.idempotency_key, channel=m.channel,
                                    recipient=recipient, body=m.body, subject=subject), m.attempts))
    return out


def _deliver(adapter: ChannelAdapter | None, out: OutgoingMessage) -> DeliveryResult:
    if adapter is None:
        return DeliveryResult(False, f"no adapter for channel {out.channel}", permanent=True)
    try:
        return adapter.send(out)
    except Exception as exc:  # noqa: BLE001 - an adapter bug is a recorded failure, never a crashed job
        return DeliveryResult(False, f"{type(exc).__name__}: {exc}"[:400])


def _batches(adapters: Mapping[str, ChannelAdapter], channels: set[str]) -> contextlib.ExitStack:
    """One gateway connection per adapter for the batch, where the adapter can keep one (SMTP)."""
    stack = contextlib.ExitStack()
    seen: set[int] = set()
    for channel in sorted(channels):
        adapter = adapters.get(channel)
        if adapter is None or id(adapter) in seen or not hasattr(adapter, "batch"):
            continue
        seen.add(id(adapter))
        stack.enter_context(typing.cast(BatchingAdapter, adapter).batch())
    return stack


def send_due(session_factory: Callable[[], Session], *, now: datetime, adapters: Mapping[str, ChannelAdapter],
             policy: rules.Policy = rules.DEFAULT_POLICY, batch: int = 50, max_attempts: int = MAX_ATTEMPTS,
             limit: int | None = None) -> SendCounts:
    """Deliver every message due at `now`; failures are retried later with backoff, then marked failed."""
    started = _time.perf_counter()
    counts = SendCounts()
    while limit is None or counts.claimed < limit:
        ids = claim(session_factory, now=now, batch=batch if limit is None else min(batch, limit - counts.claimed))
        if not ids:
            break
        counts.claimed += len(ids)
        # One transaction for the batch's send-time rules, the gateway calls outside any transaction, one
        # transaction for the outcomes: three commits per batch, not per message.
        with session_factory() as s, s.begin():
            prepared = _prepare(s, ids, now=now, policy=policy, max_attempts=max_attempts, counts=counts)
        with _batches(adapters, {out.channel for out, _ in prepared}):
            results = [(out, attempts, _deliver(adapters.get(out.channel), out)) for out, attempts in prepared]
        with session_factory() as s, s.begin():
            for status in ("sent", "delivered"):
                # All successes of the batch in one statement, still only where the claim is ours.
                mine = [(out.id, attempts) for out, attempts, r in results
                        if r.ok and ("delivered" if r.delivered else "sent") == status]
                if mine:
                    res = s.execute(update(_table).where(tuple_(_table.c.id, _table.c.attempts).in_(mine),
                                                         _table.c.status == "sending")
                                    .values(status=status, sent_at=now, last_error=None))
                    counts.sent += int(res.rowcount or 0)  # type: ignore[attr-defined]
            for out, attempts, result in results:
                if result.ok:
                    continue
                elif result.permanent or attempts >= max_attempts:
                    _finish(s, out.id, attempts, status="failed", last_error=result.error)
                    counts.failed += 1
                    counts._reason(result.error)
                else:
                    _finish(s, out.id, attempts, status="queued", scheduled_at=now + backoff(attempts),
                            last_error=result.error)
                    counts.retried += 1
                    counts._reason(result.error)
    counts.seconds = _time.perf_counter() - started
    if counts.claimed:
        with session_factory() as s, s.begin():
            audit.record(s, action="messages_sent", entity="message", detail=counts.as_dict(), at=now)
    return counts
