"""Education library: reviewed items matched to patients by tags and risk, sent by a nurse as a consented message."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from db.models import Department, EducationItem, Message, Patient, PatientTag, RiskAssessment
from services import audit
from services.auth import CurrentUser
from services.errors import UserError
from services.messaging import rules, templates
from services.rules import RISK_LEVELS

LANGUAGES = ("zh_CN", "en")


@dataclass(frozen=True)
class EducationInput:
    title: str
    language: str
    reviewed_by: str
    reviewed_on: date
    body: str | None = None
    link: str | None = None
    tags: list[str] = field(default_factory=list)
    risk_levels: list[str] = field(default_factory=list)
    active: bool = True


def validate(d: EducationInput, *, today: date) -> None:
    if not d.title.strip() or len(d.title) > 200:
        raise UserError("education.bad_title")
    if not (d.body or "").strip() and not (d.link or "").strip():
        raise UserError("education.body_or_link")
    if d.link and (not d.link.startswith(("https://", "http://")) or len(d.link) > 500 or " " in d.link):
        raise UserError("education.bad_link")
    if d.language not in LANGUAGES:
        raise UserError("education.bad_language")
    if not d.reviewed_by.strip():
        raise UserError("education.reviewer_required")
    if d.reviewed_on > today:
        raise UserError("education.review_in_future")
    bad = [lv for lv in d.risk_levels if lv not in RISK_LEVELS]
    if bad:
        raise UserError("education.bad_risk_level", level=bad[0], levels=", ".join(RISK_LEVELS))
    if any(not tag.strip() or len(tag) > 48 for tag in d.tags):
        raise UserError("education.bad_tag")


def save_item(session: Session, *, data: EducationInput, user: CurrentUser, now: datetime,
              item_id: int | None = None) -> EducationItem:
    validate(data, today=now.date())
    values: dict[str, Any] = {
        "title": data.title.strip(), "body": (data.body or "").strip() or None, "link": (data.link or "").strip()
        or None, "language": data.language, "tags": sorted({t.strip() for t in data.tags}),
        "risk_levels": sorted(set(data.risk_levels)), "reviewed_by": data.reviewed_by.strip(),
        "reviewed_on": data.reviewed_on, "active": data.active,
    }
    if item_id is None:
        item = EducationItem(created_at=now, **values)
        session.add(item)
    else:
        found = session.get(EducationItem, item_id)
        if found is None:
            raise UserError("education.not_found")
        item = found
        for k, v in values.items():
            setattr(item, k, v)
    session.flush()
    audit.record(session, action="education_saved", user_id=user.id, username=user.username,
                 entity="education_item", entity_id=item.id, detail={"title": item.title}, at=now)
    return item


def patient_profile(session: Session, patient_id: int, at: datetime) -> tuple[set[str], set[str]]:
    """(active tag codes, newest risk level per model) of a patient."""
    tags = set(session.scalars(select(PatientTag.tag_code).where(
        PatientTag.patient_id == patient_id, PatientTag.since <= at,
        or_(PatientTag.until.is_(None), PatientTag.until > at))))
    newest: dict[str, tuple[datetime, str | None]] = {}
    for model, when, level in session.execute(
            select(RiskAssessment.model, RiskAssessment.assessed_at, RiskAssessment.level)
            .where(RiskAssessment.patient_id == patient_id, RiskAssessment.assessed_at <= at)):
        if model not in newest or when > newest[model][0]:
            newest[model] = (when, level)
    return tags, {lv for _, lv in newest.values() if lv}


def offered_items(session: Session, *, patient_id: int, at: datetime) -> list[EducationItem]:
    """Active items whose tags or risk levels match the patient (the library is small: filtered here)."""
    tags, levels = patient_profile(session, patient_id, at)
    items = session.scalars(select(EducationItem).where(EducationItem.active.is_(True))
                            .order_by(EducationItem.title)).all()
    return [i for i in items if tags & set(i.tags or []) or levels & set(i.risk_levels or [])]


def find_patient(session: Session, *, card_no: str, user: CurrentUser) -> Patient:
    patient = session.scalars(select(Patient).where(Patient.card_no == card_no.strip())).one_or_none()
    if patient is None:
        raise UserError("messaging.unknown_card", card_no=card_no)
    if user.role == "nurse" and patient.department_id != user.department_id:
        raise UserError("messaging.other_department")
    return patient


def offer_for_patient(session: Session, *, card_no: str, user: CurrentUser,
                      now: datetime) -> tuple[Patient, list[EducationItem]]:
    """The patient behind a card number and the items that suit them; looking a patient up is audited."""
    patient = find_patient(session, card_no=card_no, user=user)
    audit.record(session, action="education_offer_viewed", user_id=user.id, username=user.username,
                 entity="patient", entity_id=patient.id, patient_id=patient.id, at=now)
    return patient, offered_items(session, patient_id=patient.id, at=now)


def send_item(session: Session, *, item_id: int, card_no: str, user: CurrentUser, now: datetime,
              policy: rules.Policy = rules.DEFAULT_POLICY) -> Message:
    """Queue one education item for one patient, after every protective rule; the send job delivers it.

    The wording follows the patient's language (patients.language), not the nurse's screen.
    """
    item = session.get(EducationItem, item_id)
    if item is None or not item.active:
        raise UserError("education.not_found")
    patient = find_patient(session, card_no=card_no, user=user)
    if patient.do_not_contact:
        raise UserError("messaging.do_not_contact")
    if not rules.has_consent(session, patient.id, "education", now):
        raise UserError("messaging.no_consent", purpose="education")
    chosen = rules.choose_channel(patient.channel_prefs, rules.patient_addresses(session, patient))
    if chosen is None:
        raise UserError("messaging.no_channel")
    channel, recipient = chosen
    at = rules.defer_out_of_quiet(now, policy)
    if int(session.scalar(select(rules.weekly_count(patient.id, at))) or 0) >= policy.weekly_cap:
        raise UserError("messaging.weekly_cap", cap=policy.weekly_cap)
    key = f"ed:{item.id}:{patient.id}:{at:%Y%m%d}"
    if session.scalar(select(Message.id).where(Message.idempotency_key == key)) is not None:
        raise UserError("education.already_sent")
    tpl = templates.get_template(session, "education")
    lang = patient.language
    dept = session.get(Department, patient.department_id) if patient.department_id else None
    reading = item.title + (f" {item.link}" if item.link else f"：{(item.body or '')[:200]}")
    body = templates.render(templates.body_for(tpl, lang), {
        "name": patient.name, "date": at.date().isoformat(), "indicator": reading,
        "department": "" if dept is None else (dept.name_en if lang == "en" else dept.name_zh)})
    message = Message(patient_id=patient.id, channel=channel, purpose="education", template_code="education",
                      body=body, scheduled_at=at, status="queued", attempts=0, idempotency_key=key,
                      recipient=recipient, education_item_id=item.id)
    session.add(message)
    session.flush()
    audit.record(session, action="education_sent", user_id=user.id, username=user.username, entity="message",
                 entity_id=message.id, patient_id=patient.id,
                 detail={"item_id": item.id, "channel": channel, "scheduled_at": at.isoformat()}, at=now)
    return message


def record_open(session: Session, *, message_id: int, at: datetime) -> bool:
    """A channel reported that the patient opened the message; the first report counts."""
    message = session.get(Message, message_id)
    if message is None:
        raise UserError("messaging.message_not_found")
    if message.opened_at is not None:
        return False
    message.opened_at = at
    audit.record(session, action="message_opened", entity="message", entity_id=message.id,
                 patient_id=message.patient_id, at=at)
    return True
