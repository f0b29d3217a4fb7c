"""Rules that protect patients: consent per purpose, do-not-contact, quiet hours, weekly cap, channel choice.

Each rule exists twice on purpose: as a Python check for one message (send time, a nurse's single send)
and as a SQL predicate for set-based queueing; tests/services/test_messaging_rules.py holds them to the same table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from db.models import CONSENT_PURPOSES, Consent, Message, Patient, PatientContact

CHANNELS = ("sms", "wechat", "email")
# When a patient states no preference (or every preferred channel is unusable) these are tried in order.
DEFAULT_CHAIN = ("sms", "wechat", "email")
# Statuses that count against the weekly cap: what was sent or is about to be.
CAP_STATUSES = ("queued", "sending", "sent", "delivered")
PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
# Deliberately plain: one @, no spaces, a dot in the domain; the SMTP server has the final word.
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
WECHAT_RE = re.compile(r"^[A-Za-z0-9_\-]{6,64}$")


@dataclass(frozen=True)
class Policy:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    weekly_cap: int = 3
    send_time: time = time(9, 0)  # reminders of a day go out at this site-local time


DEFAULT_POLICY = Policy()


# --- addresses ------------------------------------------------------------------------------------


def normalise_phone(phone: str | None) -> str | None:
    if phone is None:
        return None
    digits = re.sub(r"[\s\-()]", "", phone)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    return digits


def valid_phone(phone: str | None) -> bool:
    """A Chinese mobile number that can receive an SMS (1[3-9] and nine more digits)."""
    p = normalise_phone(phone)
    return p is not None and PHONE_RE.match(p) is not None


def valid_email(address: str | None) -> bool:
    return address is not None and len(address) <= 254 and EMAIL_RE.match(address.strip()) is not None


def valid_address(channel: str, address: str | None) -> bool:
    if channel == "sms":
        return valid_phone(address)
    if channel == "email":
        return valid_email(address)
    if channel == "wechat":
        return address is not None and WECHAT_RE.match(address) is not None
    return False


def chain(prefs: Sequence[Any] | None, first: str | None = None) -> list[str]:
    """The channels to try in order: a rule's own channel, the patient's preferences, then the default chain."""
    out: list[str] = []
    for c in [first, *(prefs or []), *DEFAULT_CHAIN]:
        if isinstance(c, str) and c in CHANNELS and c not in out:
            out.append(c)
    return out


def choose_channel(prefs: Sequence[Any] | None, addresses: Mapping[str, str | None],
                   first: str | None = None) -> tuple[str, str] | None:
    """(channel, address) of the first usable channel in the patient's chain, or None when none is usable."""
    for c in chain(prefs, first):
        address = addresses.get(c)
        if valid_address(c, address):
            assert address is not None
            return c, normalise_phone(address) or address if c == "sms" else address.strip()
    return None


def patient_addresses(session: Session, patient: Patient) -> dict[str, str | None]:
    out: dict[str, str | None] = {"sms": patient.phone}
    for channel, address in session.execute(
            select(PatientContact.channel, PatientContact.address).where(PatientContact.patient_id == patient.id)):
        out[channel] = address
    return out


# --- quiet hours ----------------------------------------------------------------------------------


def in_quiet_hours(at: datetime, policy: Policy = DEFAULT_POLICY) -> bool:
    t = at.time()
    if policy.quiet_start > policy.quiet_end:  # the window spans midnight (21:00-08:00)
        return t >= policy.quiet_start or t < policy.quiet_end
    return policy.quiet_start <= t < policy.quiet_end


def defer_out_of_quiet(at: datetime, policy: Policy = DEFAULT_POLICY) -> datetime:
    """The same moment, or the end of the quiet window it falls in (08:00 the same or next morning)."""
    if not in_quiet_hours(at, policy):
        return at
    end = datetime.combine(at.date(), policy.quiet_end)
    return end if at < end else end + timedelta(days=1)


# --- consent, do-not-contact, cap: SQL predicates --------------------------------------------------


def consent_clause(patient_id: Any, purpose: str, at: datetime | Any) -> ColumnElement[bool]:
    """A grant for the purpose that started by `at` and was not withdrawn by then."""
    if purpose not in CONSENT_PURPOSES:
        raise ValueError(f"unknown consent purpose {purpose!r}")
    return exists().where(
        Consent.patient_id == patient_id, Consent.purpose == purpose, Consent.granted_at <= at,
        or_(Consent.withdrawn_at.is_(None), Consent.withdrawn_at > at),
    )


def _week(at: datetime) -> tuple[datetime, datetime]:
    day_end = datetime.combine(at.date() + timedelta(days=1), time.min)
    return day_end - timedelta(days=7), day_end


def weekly_count(patient_id: Any, at: datetime) -> Any:
    """Queue time: the patient's messages scheduled in the 7 days ending with `at`'s day, sent or still to go."""
    start, end = _week(at)
    return (select(func.count()).select_from(Message)
            .where(Message.patient_id == patient_id, Message.status.in_(CAP_STATUSES),
                   Message.scheduled_at >= start, Message.scheduled_at < end)
            .scalar_subquery())


def week_counts(at: datetime) -> Any:
    """weekly_count for every patient at once (patient_id, n), for set-based queueing: one aggregate, one join."""
    start, end = _week(at)
    return (select(Message.patient_id.label("patient_id"), func.count().label("n"))
            .where(Message.status.in_(CAP_STATUSES), Message.scheduled_at >= start, Message.scheduled_at < end)
            .group_by(Message.patient_id)
            .subquery("week"))


def sent_in_week(patient_id: Any, at: datetime, *, exclude_id: Any = None) -> Any:
    """Send time: messages actually sent to the patient in the 7 days before `at`."""
    conds = [Message.patient_id == patient_id, Message.status.in_(("sent", "delivered")),
             Message.sent_at > at - timedelta(days=7), Message.sent_at <= at]
    if exclude_id is not None:
        conds.append(Message.id != exclude_id)
    return select(func.count()).select_from(Message).where(and_(*conds)).scalar_subquery()


# --- one message ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """send: go ahead; cancel: never (reason); defer: not before `until`."""

    action: str
    reason: str | None = None
    until: datetime | None = None


SEND = Decision("send")


def has_consent(session: Session, patient_id: int, purpose: str, at: datetime) -> bool:
    return bool(session.scalar(select(consent_clause(patient_id, purpose, at))))


def decide(*, patient: Patient, consented: bool, channel: str, recipient: str | None, at: datetime,
           week_count: int, policy: Policy = DEFAULT_POLICY) -> Decision:
    """Every protective rule for one message at one moment, in the order a patient would care about (pure)."""
    if patient.do_not_contact:
        return Decision("cancel", "do_not_contact")
    if patient.status != "active":
        return Decision("cancel", "inactive_patient")
    if not consented:
        return Decision("cancel", "no_consent")
    if not valid_address(channel, recipient):
        return Decision("cancel", f"invalid_{channel}_address")
    if in_quiet_hours(at, policy):
        return Decision("defer", "quiet_hours", defer_out_of_quiet(at, policy))
    if week_count >= policy.weekly_cap:
        return Decision("cancel", "weekly_cap")
    return SEND


def check(session: Session, *, patient: Patient, purpose: str, channel: str, recipient: str | None,
          at: datetime, policy: Policy = DEFAULT_POLICY, message_id: int | None = None,
          stage: str = "send") -> Decision:
    """decide() for one message, reading consent and the week's count from the database."""
    counter = sent_in_week(patient.id, at, exclude_id=message_id) if stage == "send" else weekly_count(patient.id, at)
    return decide(patient=patient, consented=has_consent(session, patient.id, purpose, at), channel=channel,
                  recipient=recipient, at=at, week_count=int(session.scalar(select(counter)) or 0), policy=policy)


def consented_purposes(session: Session, patient_ids: Iterable[int], at: datetime) -> set[tuple[int, str]]:
    """(patient_id, purpose) pairs with a live grant at `at`, for a batch of patients in one query."""
    ids = list(patient_ids)
    rows = session.execute(select(Consent.patient_id, Consent.purpose).where(
        Consent.patient_id.in_(ids), Consent.granted_at <= at,
        or_(Consent.withdrawn_at.is_(None), Consent.withdrawn_at > at)))
    return {(int(p), str(purpose)) for p, purpose in rows}


def sent_in_week_batch(session: Session, patient_ids: Iterable[int], at: datetime) -> dict[int, int]:
    ids = list(patient_ids)
    rows = session.execute(select(Message.patient_id, func.count()).where(
        Message.patient_id.in_(ids), Message.status.in_(("sent", "delivered")),
        Message.sent_at > at - timedelta(days=7), Message.sent_at <= at).group_by(Message.patient_id))
    return {int(p): int(n) for p, n in rows}


def reasons(decisions: Iterable[Decision]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in decisions:
        key = d.reason or d.action
        out[key] = out.get(key, 0) + 1
    return out
