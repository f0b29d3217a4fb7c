"""How a patient is reached: mobile for SMS, e-mail, WeChat and app ids, channel preferences and message language.

Only nurses (of the patient's department, or the assigned nurse) and admins change them; the check is here,
on the server, not only in the page. Everything is validated before anything is written: one bad address
and nothing is saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db.models import Patient, PatientContact
from services import audit
from services.auth import CurrentUser
from services.errors import UserError
from services.messaging import rules

EDIT_ROLES = frozenset({"nurse", "admin"})
LANGUAGES = ("zh_CN", "en")
# Preferences a patient can state (the phone is for calls; sms/wechat/email are the message channels).
PREF_CHANNELS = ("phone", "sms", "wechat", "email")
# Contact points kept in patient_contacts; the mobile number lives on the patient (patients.phone).
CONTACT_CHANNELS = ("email", "wechat", "app")
APP_RE = re.compile(r"^[A-Za-z0-9_\-.:]{4,128}$")
# A phone the patient can be called on: digits with an optional +, spaces, dashes and an extension.
CALL_RE = re.compile(r"^\+?[0-9][0-9 \-()]{5,30}$")


@dataclass(frozen=True)
class ContactInput:
    phone: str = ""
    email: str = ""
    wechat: str = ""
    app: str = ""
    channel_prefs: tuple[str, ...] = ()
    language: str = "zh_CN"


def can_edit(user: CurrentUser, patient: Patient) -> bool:
    if user.role == "admin":
        return True
    if user.role != "nurse":
        return False
    # The same reach as the nurse's patient list: their department, unassigned patients, or their own.
    return (patient.department_id is None or patient.department_id == user.department_id
            or patient.nurse_id == user.id)


def clean(data: ContactInput) -> dict[str, object]:
    """Normalised values; the first problem raises a translated UserError (nothing is written yet)."""
    if data.language not in LANGUAGES:
        raise UserError("messaging.contacts.bad_language")
    prefs: list[str] = []
    for ch in data.channel_prefs:
        if ch not in PREF_CHANNELS:
            raise UserError("messaging.contacts.bad_channel", channel=ch, channels=", ".join(PREF_CHANNELS))
        if ch not in prefs:
            prefs.append(ch)
    phone_raw = data.phone.strip()
    phone: str | None = None
    if phone_raw:
        if rules.valid_phone(phone_raw):
            phone = rules.normalise_phone(phone_raw)
        elif "sms" in prefs:
            raise UserError("messaging.contacts.phone_not_sms", phone=phone_raw)
        elif CALL_RE.match(phone_raw):
            phone = re.sub(r"[\s\-()]", "", phone_raw)  # a landline: fine for calls, never an SMS target
        else:
            raise UserError("messaging.contacts.bad_phone", phone=phone_raw)
    email = data.email.strip()
    if email and not rules.valid_email(email):
        raise UserError("messaging.contacts.bad_email", email=email)
    wechat = data.wechat.strip()
    if wechat and not rules.valid_address("wechat", wechat):
        raise UserError("messaging.contacts.bad_wechat")
    app = data.app.strip()
    if app and not APP_RE.match(app):
        raise UserError("messaging.contacts.bad_app")
    have = {"phone": phone, "sms": phone if phone and rules.valid_phone(phone) else None, "email": email or None,
            "wechat": wechat or None}
    for ch in prefs:
        if not have[ch]:
            raise UserError("messaging.contacts.pref_without_address", channel=ch)
    return {"phone": phone, "email": email or None, "wechat": wechat or None, "app": app or None,
            "channel_prefs": prefs, "language": data.language}


def save_contacts(session: Session, *, patient_id: int, expected_version: int, data: ContactInput,
                  user: CurrentUser, now: datetime) -> Patient:
    """Save the contact settings in the caller's transaction; refused when someone saved the patient meanwhile."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise UserError("messaging.contacts.not_found")
    if user.role not in EDIT_ROLES or not can_edit(user, patient):
        raise UserError("messaging.contacts.forbidden")
    if patient.version != expected_version:
        raise UserError("messaging.contacts.stale")
    values = clean(data)
    changed: list[str] = []
    for field in ("phone", "channel_prefs", "language"):
        if getattr(patient, field) != values[field]:
            setattr(patient, field, values[field])
            changed.append(field)
    if changed:
        patient.updated_at = now
    existing = {c.channel: c for c in session.scalars(
        select(PatientContact).where(PatientContact.patient_id == patient_id))}
    for channel in CONTACT_CHANNELS:
        address = values[channel]
        row = existing.get(channel)
        if address is None and row is not None:
            session.delete(row)
        elif address is not None and row is None:
            session.add(PatientContact(patient_id=patient_id, channel=channel, address=str(address)))
        elif address is not None and row is not None and row.address != address:
            row.address = str(address)
        else:
            continue
        changed.append(channel)
    if not changed:
        return patient
    try:
        session.flush()
    except StaleDataError as exc:
        raise UserError("messaging.contacts.stale") from exc
    # Which fields changed, never the addresses themselves: the audit log is read more widely than the record.
    audit.record(session, action="patient_contacts_updated", user_id=user.id, username=user.username,
                 entity="patient", entity_id=patient_id, patient_id=patient_id, detail={"fields": changed}, at=now)
    return patient
