"""Enrolment and health records: validation, card numbers, duplicates, optimistic locking, consents, history."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db.models import CONSENT_PURPOSES, HISTORY_KINDS, SEXES, Consent, HealthHistory, Patient, User
from services import audit, clock
from services.errors import UserError

ID_TYPES = ("resident", "passport", "other")
CHANNELS = ("phone", "sms", "wechat", "email")
_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK = "10X98765432"
_PHONE_RE = re.compile(r"^(\+?\d{1,3}[- ]?)?\d{3,4}[- ]?\d{3,4}[- ]?\d{3,4}$")
_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_PASSPORT_RE = re.compile(r"^[A-Z0-9]{5,17}$")
SERIAL_DIGITS = 10  # as db/seed.py: prefix + 10-digit serial + check character


# --- identifiers -------------------------------------------------------------------------------


def resident_id_check_char(first17: str) -> str:
    """GB 11643-1999 check character of an 18-digit resident identity number."""
    total = sum(int(c) * w for c, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11]


def validate_resident_id(value: str, *, today: date | None = None) -> tuple[str, date]:
    """Normalised 18-character resident ID and the birth date it encodes; UserError when it is not valid."""
    v = value.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", v):
        raise UserError("patients.err.id_format")
    if resident_id_check_char(v[:17]) != v[17]:
        raise UserError("patients.err.id_check_digit")
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError as exc:
        raise UserError("patients.err.id_birth_date") from exc
    if born > (today or clock.today()) or born.year < 1880:
        raise UserError("patients.err.id_birth_date")
    return v, born


def validate_passport(value: str) -> str:
    v = re.sub(r"\s+", "", value).upper()
    if not _PASSPORT_RE.fullmatch(v):
        raise UserError("patients.err.passport_format")
    return v


def normalise_phone(value: str) -> str:
    v = value.strip()
    if not _PHONE_RE.fullmatch(v):
        raise UserError("patients.err.phone_format", value=value)
    digits = re.sub(r"[^\d+]", "", v)
    if digits.startswith("+86"):
        digits = digits[3:]
    if len(digits) == 11 and digits.startswith("1") and not _MOBILE_RE.fullmatch(digits):
        raise UserError("patients.err.phone_format", value=value)
    return digits


def card_check_digit(serial: str) -> str:
    """ISO 7064 MOD 11-2 check character over the card's serial digits (as db/seed.py issues them): the same
    system as the resident ID number, so it catches every single wrong digit and every swap of neighbours."""
    if not serial or not serial.isascii() or not serial.isdigit():
        raise ValueError(f"card serial must be ASCII digits, got {serial!r}")
    n = len(serial)
    total = sum(int(c) * pow(2, n - i, 11) for i, c in enumerate(serial))
    return "0123456789X"[(12 - total % 11) % 11]


def valid_card_no(card_no: str, prefix: str) -> bool:
    serial = card_no[len(prefix):-1]
    return (card_no.startswith(prefix) and len(serial) == SERIAL_DIGITS and serial.isdigit()
            and card_check_digit(serial) == card_no[-1])


def next_card_numbers(session: Session, *, prefix: str, count: int = 1) -> list[str]:
    """`count` fresh card numbers: prefix + zero-padded serial + check digit, after the highest in use.

    On PostgreSQL the caller's transaction first takes a lock on card issuing, held to its commit: two nurses
    enrolling at the same moment (or an import enrolling while a nurse does) would otherwise both read the same
    highest number and the second save would fail on the unique card number.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext("careloop.card_no"))))
    width = len(prefix) + SERIAL_DIGITS + 1
    top = session.execute(
        select(func.max(Patient.card_no)).where(
            Patient.card_no.like(f"{prefix}%"), func.length(Patient.card_no) == width
        )
    ).scalar_one()
    start = 1
    if top:
        serial = top[len(prefix):-1]
        start = int(serial) + 1 if serial.isdigit() else 1
    out = []
    for n in range(start, start + count):
        serial = f"{n:0{SERIAL_DIGITS}d}"
        out.append(prefix + serial + card_check_digit(serial))
    return out


def name_initials(name: str) -> str:
    """Pinyin initials for Chinese names ("张三" -> "zs"); Latin names give their word initials."""
    from pypinyin import Style, lazy_pinyin

    out = []
    for chunk in re.findall(r"[\u4e00-\u9fff]+|[A-Za-z]+", name):
        if re.match(r"[A-Za-z]", chunk):
            out.append(chunk[0])
        else:
            out.extend(lazy_pinyin(chunk, style=Style.FIRST_LETTER, errors="ignore"))
    return "".join(out).lower()[:32]


# --- enrolment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str | None


@dataclass(frozen=True)
class PatientInput:
    name: str
    sex: str
    birth_date: date | None
    phone: str | None = None
    id_type: str | None = None  # resident | passport | other
    id_number: str | None = None
    address: str | None = None
    department_id: int | None = None
    nurse_id: int | None = None
    channel_prefs: tuple[str, ...] = ()
    consents: tuple[str, ...] = ()  # purposes granted at enrolment
    do_not_contact: bool = False


@dataclass(frozen=True)
class Duplicate:
    patient_id: int
    card_no: str
    name: str
    birth_date: date | None
    reason: str  # id_number | phone_birth | name_birth


def clean_input(data: PatientInput, *, today: date | None = None) -> dict[str, Any]:
    """Validated, normalised column values; the first problem found raises a translated UserError."""
    today = today or clock.today()
    name = re.sub(r"\s+", " ", data.name or "").strip()
    if not name:
        raise UserError("patients.err.name_required")
    if len(name) > 100:
        raise UserError("patients.err.name_too_long")
    if data.sex not in SEXES:
        raise UserError("patients.err.sex")
    birth = data.birth_date
    if birth is not None and (birth > today or birth.year < 1880):
        raise UserError("patients.err.birth_date", date=birth.isoformat())
    id_type, id_number = data.id_type, (data.id_number or "").strip() or None
    if id_number:
        if id_type in (None, "", "resident"):
            id_type = "resident"
            id_number, id_birth = validate_resident_id(id_number, today=today)
            if birth is None:
                birth = id_birth
            elif birth != id_birth:
                raise UserError("patients.err.id_birth_mismatch", id_birth=id_birth.isoformat())
            sex_digit = int(id_number[16])
            if data.sex in ("M", "F") and ("M" if sex_digit % 2 else "F") != data.sex:
                raise UserError("patients.err.id_sex_mismatch")
        elif id_type == "passport":
            id_number = validate_passport(id_number)
        elif id_type == "other":
            if len(id_number) > 32:
                raise UserError("patients.err.id_format")
        else:
            raise UserError("patients.err.id_type")
    else:
        id_type = None
    phone = normalise_phone(data.phone) if data.phone and data.phone.strip() else None
    for purpose in data.consents:
        if purpose not in CONSENT_PURPOSES:
            raise UserError("patients.err.consent_purpose", purpose=purpose)
    for ch in data.channel_prefs:
        if ch not in CHANNELS:
            raise UserError("patients.err.channel", channel=ch)
    address = (data.address or "").strip() or None
    if address and len(address) > 255:
        raise UserError("patients.err.address_too_long")
    return {
        "name": name, "name_initials": name_initials(name), "sex": data.sex, "birth_date": birth,
        "phone": phone, "id_type": id_type, "id_number": id_number, "address": address,
        "department_id": data.department_id, "nurse_id": data.nurse_id,
        "channel_prefs": list(data.channel_prefs), "do_not_contact": data.do_not_contact,
    }


def find_duplicates(
    session: Session, *, name: str | None, birth_date: date | None, phone: str | None, id_number: str | None,
    exclude_id: int | None = None, limit: int = 10,
) -> list[Duplicate]:
    """Possible duplicates: same ID number, or same phone and birth date, or same name and birth date."""
    conds = []
    if id_number:
        conds.append(Patient.id_number == id_number)
    if birth_date is not None and phone:
        conds.append((Patient.phone == phone) & (Patient.birth_date == birth_date))
    if birth_date is not None and name:
        conds.append((Patient.name == name) & (Patient.birth_date == birth_date))
    if not conds:
        return []
    stmt = select(Patient.id, Patient.card_no, Patient.name, Patient.birth_date, Patient.id_number,
                  Patient.phone).where(or_(*conds))
    if exclude_id is not None:
        stmt = stmt.where(Patient.id != exclude_id)
    out = []
    for pid, card, pname, born, idn, ph in session.execute(stmt.order_by(Patient.id).limit(limit)):
        if id_number and idn == id_number:
            reason = "id_number"
        elif phone and ph == phone:
            reason = "phone_birth"
        else:
            reason = "name_birth"
        out.append(Duplicate(pid, card, pname, born, reason))
    return out


class DuplicateFound(UserError):
    """Raised by enrol() when possible duplicates exist and the user has not confirmed a new record."""

    def __init__(self, duplicates: list[Duplicate]) -> None:
        super().__init__("patients.err.duplicates", n=len(duplicates))
        self.duplicates = duplicates


def _check_refs(session: Session, values: dict[str, Any]) -> None:
    from db.models import Department

    if values.get("department_id") is not None and session.get(Department, values["department_id"]) is None:
        raise UserError("patients.err.department")
    if values.get("nurse_id") is not None:
        nurse = session.get(User, values["nurse_id"])
        if nurse is None or nurse.role != "nurse":
            raise UserError("patients.err.nurse")


def enrol(
    session: Session, data: PatientInput, *, actor: Actor, card_prefix: str, confirm_new: bool = False,
    now: datetime | None = None,
) -> Patient:
    """Create a patient with a new card number and consent records; duplicates stop it unless confirmed."""
    now = now or clock.now()
    values = clean_input(data, today=now.date())
    _check_refs(session, values)
    dups = find_duplicates(session, name=values["name"], birth_date=values["birth_date"], phone=values["phone"],
                           id_number=values["id_number"])
    if dups and not confirm_new:
        raise DuplicateFound(dups)
    if any(d.reason == "id_number" for d in dups):
        # Two records for one identity document are never right, confirmed or not.
        raise UserError("patients.err.id_number_taken", card_no=dups[0].card_no)
    card_no = next_card_numbers(session, prefix=card_prefix)[0]
    patient = Patient(card_no=card_no, status="active", enrolled_at=now, updated_at=now, **values)
    session.add(patient)
    session.flush()
    for purpose in data.consents:
        session.add(Consent(patient_id=patient.id, purpose=purpose, granted_at=now, recorded_by=actor.user_id))
    audit.record(session, action="patient_enrolled", user_id=actor.user_id, username=actor.username,
                 entity="patient", entity_id=patient.id, patient_id=patient.id,
                 detail={"card_no": card_no, "consents": list(data.consents), "confirmed_duplicate": bool(dups)})
    return patient


def update_patient(
    session: Session, *, patient_id: int, expected_version: int, data: PatientInput, actor: Actor,
    now: datetime | None = None,
) -> Patient:
    """Edit demographics under optimistic locking: a stale version is refused, nothing is overwritten."""
    now = now or clock.now()
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise UserError("patients.err.not_found")
    if patient.version != expected_version:
        raise UserError("patients.err.stale")
    values = clean_input(data, today=now.date())
    _check_refs(session, values)
    if values["id_number"] and values["id_number"] != patient.id_number:
        others = find_duplicates(session, name=None, birth_date=None, phone=None, id_number=values["id_number"],
                                 exclude_id=patient_id)
        if others:
            raise UserError("patients.err.id_number_taken", card_no=others[0].card_no)
    changed = {k: v for k, v in values.items() if getattr(patient, k) != v}
    for k, v in changed.items():
        setattr(patient, k, v)
    if changed:
        patient.updated_at = now
        try:
            session.flush()
        except StaleDataError as exc:
            raise UserError("patients.err.stale") from exc
        audit.record(session, action="patient_updated", user_id=actor.user_id, username=actor.username,
                     entity="patient", entity_id=patient_id, patient_id=patient_id,
                     detail={"fields": sorted(changed)})
    return patient


# --- consents ----------------------------------------------------------------------------------


def set_consent(
    session: Session, *, patient_id: int, purpose: str, granted: bool, actor: Actor, now: datetime | None = None,
) -> None:
    """Grant opens a new consent record; withdraw stamps the open one. History is never rewritten."""
    now = now or clock.now()
    if purpose not in CONSENT_PURPOSES:
        raise UserError("patients.err.consent_purpose", purpose=purpose)
    if session.get(Patient, patient_id) is None:
        raise UserError("patients.err.not_found")
    open_row = session.scalars(
        select(Consent).where(Consent.patient_id == patient_id, Consent.purpose == purpose,
                              Consent.withdrawn_at.is_(None)).order_by(Consent.id.desc())
    ).first()
    if granted and open_row is None:
        session.add(Consent(patient_id=patient_id, purpose=purpose, granted_at=now, recorded_by=actor.user_id))
    elif not granted and open_row is not None:
        open_row.withdrawn_at = now
    else:
        return
    session.flush()
    audit.record(session, action="consent_granted" if granted else "consent_withdrawn", user_id=actor.user_id,
                 username=actor.username, entity="consent", entity_id=purpose, patient_id=patient_id)


def consent_state(session: Session, *, patient_id: int) -> dict[str, bool]:
    rows = session.execute(
        select(Consent.purpose).where(Consent.patient_id == patient_id, Consent.withdrawn_at.is_(None))
    ).scalars().all()
    return {p: p in rows for p in CONSENT_PURPOSES}


# --- health record -----------------------------------------------------------------------------

# One vocabulary with the demo data and the tag rule builder (a rule on "exercise" must find what the form saved).
LIFESTYLE_ASPECTS = ("smoking", "alcohol", "exercise", "diet", "sleep")


@dataclass(frozen=True)
class HistoryInput:
    kind: str
    text: str
    code: str | None = None
    code_system: str | None = None
    relation: str | None = None  # family history: father, mother, sibling, ...
    aspect: str | None = None  # lifestyle: smoking, alcohol, ...
    started_on: date | None = None
    ended_on: date | None = None


def _clean_history(data: HistoryInput, today: date) -> dict[str, Any]:
    if data.kind not in HISTORY_KINDS:
        raise UserError("patients.err.history_kind", kind=data.kind)
    text = (data.text or "").strip()
    if not text:
        raise UserError("patients.err.history_text")
    if len(text) > 500:
        raise UserError("patients.err.history_text_too_long")
    if data.kind == "family" and not (data.relation or "").strip():
        raise UserError("patients.err.history_relation")
    if data.kind == "lifestyle" and data.aspect not in LIFESTYLE_ASPECTS:
        raise UserError("patients.err.history_aspect")
    for d in (data.started_on, data.ended_on):
        if d is not None and d > today:
            raise UserError("patients.err.future_date", date=d.isoformat())
    if data.started_on and data.ended_on and data.ended_on < data.started_on:
        raise UserError("patients.err.end_before_start")
    return {
        "kind": data.kind, "text": text, "code": data.code or None, "code_system": data.code_system or None,
        "relation": (data.relation or "").strip() or None,
        "detail": {"aspect": data.aspect} if data.kind == "lifestyle" else None,
        "started_on": data.started_on, "ended_on": data.ended_on,
    }


def add_history(
    session: Session, *, patient_id: int, data: HistoryInput, actor: Actor, now: datetime | None = None,
) -> HealthHistory:
    now = now or clock.now()
    if session.get(Patient, patient_id) is None:
        raise UserError("patients.err.not_found")
    row = HealthHistory(patient_id=patient_id, source="manual", recorded_at=now, recorded_by=actor.user_id,
                        **_clean_history(data, now.date()))
    session.add(row)
    session.flush()
    audit.record(session, action="history_added", user_id=actor.user_id, username=actor.username,
                 entity="health_history", entity_id=row.id, patient_id=patient_id, detail={"kind": data.kind})
    return row


def _current_history(session: Session, history_id: int) -> HealthHistory:
    row = session.get(HealthHistory, history_id)
    if row is None:
        raise UserError("patients.err.history_not_found")
    superseded = session.execute(
        select(HealthHistory.id).where(HealthHistory.replaces_id == history_id)
    ).first()
    if superseded is not None:
        raise UserError("patients.err.history_superseded")
    return row


def edit_history(
    session: Session, *, history_id: int, data: HistoryInput, actor: Actor, now: datetime | None = None,
) -> HealthHistory:
    """An edit never overwrites: it adds a new row that replaces the old one, which stays for the history."""
    now = now or clock.now()
    old = _current_history(session, history_id)
    values = _clean_history(data, now.date())
    if values["kind"] != old.kind:
        raise UserError("patients.err.history_kind", kind=data.kind)
    row = HealthHistory(patient_id=old.patient_id, source="manual", recorded_at=now, recorded_by=actor.user_id,
                        replaces_id=old.id, **values)
    session.add(row)
    session.flush()
    audit.record(session, action="history_edited", user_id=actor.user_id, username=actor.username,
                 entity="health_history", entity_id=row.id, patient_id=old.patient_id,
                 detail={"replaces": old.id})
    return row


def end_history(
    session: Session, *, history_id: int, ended_on: date, actor: Actor, now: datetime | None = None,
) -> HealthHistory:
    """End-date a fact (a medication stopped, a habit quit): a replacing row with ended_on set."""
    now = now or clock.now()
    old = _current_history(session, history_id)
    if ended_on > now.date():
        raise UserError("patients.err.future_date", date=ended_on.isoformat())
    if old.started_on and ended_on < old.started_on:
        raise UserError("patients.err.end_before_start")
    if old.ended_on is not None:
        raise UserError("patients.err.history_already_ended")
    row = HealthHistory(patient_id=old.patient_id, kind=old.kind, code=old.code, code_system=old.code_system,
                        text=old.text, relation=old.relation, detail=old.detail, started_on=old.started_on,
                        ended_on=ended_on, replaces_id=old.id, source="manual", recorded_at=now,
                        recorded_by=actor.user_id)
    session.add(row)
    session.flush()
    audit.record(session, action="history_ended", user_id=actor.user_id, username=actor.username,
                 entity="health_history", entity_id=row.id, patient_id=old.patient_id,
                 detail={"replaces": old.id, "ended_on": ended_on.isoformat()})
    return row


def record_view(session: Session, *, patient_id: int, actor: Actor) -> None:
    """Every open of a patient record leaves an audit row: who, when, which patient."""
    audit.record(session, action="patient_viewed", user_id=actor.user_id, username=actor.username,
                 entity="patient", entity_id=patient_id, patient_id=patient_id)
