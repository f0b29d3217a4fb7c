"""Bilingual message templates with a fixed set of placeholders, checked when saved and rendered in SQL or Python."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, literal, select
from sqlalchemy.orm import Session

from db.models import CONSENT_PURPOSES, Department, MessageTemplate, Patient
from services import audit
from services.auth import CurrentUser
from services.errors import UserError

PLACEHOLDERS = ("name", "date", "department", "indicator")
LANGS = ("zh_CN", "en")
MAX_BODY = 1000

# Built-in wordings, one per reminder rule (and the B wording for an A/B test on revisits).
BUILTIN: dict[str, tuple[str, str, str]] = {
    "reminder_followup": ("followup", "{name}您好，{department}将于{date}对您进行随访，请留意。",
                          "Dear {name}, {department} will follow up with you on {date}."),
    "reminder_revisit": ("followup", "{name}您好，请于{date}到{department}复诊。",
                         "Dear {name}, please come back to {department} for your review on {date}."),
    "reminder_revisit_b": ("followup", "{name}，按时复诊能帮医生及时调整方案。您的复诊日期：{date}（{department}）。",
                           "{name}, keeping your review on {date} at {department} helps your doctor adjust care."),
    "reminder_checkup": ("followup", "{name}您好，距离您上次体检已近一年，建议于{date}前预约年度体检。",
                         "Dear {name}, your annual check-up is due by {date}. Please book it."),
    "reminder_exam": ("followup", "{name}您好，您的检查报告（{indicator}）已出，可在{department}查询。",
                      "Dear {name}, your report ({indicator}) is ready at {department}."),
    "reminder_medication": ("followup", "{name}您好，现在是服用{indicator}的时间。",
                            "Dear {name}, it is time to take {indicator}."),
    "education": ("education", "{name}您好，为您推荐健康知识：{indicator}",
                  "Dear {name}, some reading for you: {indicator}"),
}


def placeholders(body: str) -> list[str]:
    """Field names in body; malformed braces or a format spec are refused (nothing but {name} is allowed)."""
    try:
        parts = list(string.Formatter().parse(body))
    except ValueError as exc:
        raise UserError("messaging.template_braces") from exc
    names: list[str] = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if spec or conversion or field not in PLACEHOLDERS:
            raise UserError("messaging.template_unknown_placeholder", placeholder="{" + field + "}",
                            allowed=", ".join("{" + p + "}" for p in PLACEHOLDERS))
        names.append(field)
    return names


def validate(*, code: str, purpose: str, body_zh: str, body_en: str) -> None:
    if not code.strip() or len(code) > 48 or not code.replace("_", "").isalnum():
        raise UserError("messaging.template_bad_code")
    if purpose not in CONSENT_PURPOSES:
        raise UserError("messaging.bad_purpose", purpose=purpose)
    for body in (body_zh, body_en):
        if not body.strip():
            raise UserError("messaging.template_empty")
        if len(body) > MAX_BODY:
            raise UserError("messaging.template_too_long", limit=MAX_BODY)
        placeholders(body)


def save_template(session: Session, *, code: str, purpose: str, body_zh: str, body_en: str,
                  user: CurrentUser | None, now: datetime) -> MessageTemplate:
    validate(code=code, purpose=purpose, body_zh=body_zh, body_en=body_en)
    row = session.scalars(select(MessageTemplate).where(MessageTemplate.code == code)).one_or_none()
    if row is None:
        row = MessageTemplate(code=code, purpose=purpose, body_zh=body_zh, body_en=body_en, active=True,
                              updated_at=now, updated_by=user.id if user else None)
        session.add(row)
    else:
        row.purpose, row.body_zh, row.body_en = purpose, body_zh, body_en
        row.updated_at, row.updated_by = now, user.id if user else None
    session.flush()
    audit.record(session, action="template_saved", user_id=user.id if user else None,
                 username=user.username if user else None, entity="message_template", entity_id=row.id,
                 detail={"code": code}, at=now)
    return row


def ensure_builtin_templates(session: Session, *, now: datetime) -> None:
    have = set(session.scalars(select(MessageTemplate.code)))
    for code, (purpose, zh, en) in BUILTIN.items():
        if code not in have:
            session.add(MessageTemplate(code=code, purpose=purpose, body_zh=zh, body_en=en, active=True,
                                        updated_at=now))
    session.flush()


def get_template(session: Session, code: str) -> MessageTemplate:
    row = session.scalars(select(MessageTemplate).where(MessageTemplate.code == code)).one_or_none()
    if row is None:
        if code in BUILTIN:
            purpose, zh, en = BUILTIN[code]
            return MessageTemplate(code=code, purpose=purpose, body_zh=zh, body_en=en, active=True)
        raise UserError("messaging.template_not_found", code=code)
    return row


def body_for(template: MessageTemplate, lang: str) -> str:
    return template.body_en if lang == "en" else template.body_zh


def render(body: str, values: dict[str, str]) -> str:
    placeholders(body)
    return body.format(**{p: values.get(p, "") for p in PLACEHOLDERS})


@dataclass(frozen=True)
class Preview:
    card_no: str
    text_zh: str
    text_en: str


def preview(session: Session, *, body_zh: str, body_en: str, card_no: str, on: str, user: CurrentUser | None,
            now: datetime, indicator: str = "") -> Preview:
    """Both wordings rendered for a real patient (found by card number), before the template is saved."""
    patient = session.scalars(select(Patient).where(Patient.card_no == card_no.strip())).one_or_none()
    if patient is None:
        raise UserError("messaging.unknown_card", card_no=card_no)
    # Reading a patient's name and department for a preview is a read of the record: audited.
    audit.record(session, action="template_preview", user_id=user.id if user else None,
                 username=user.username if user else None, entity="patient", entity_id=patient.id,
                 patient_id=patient.id, at=now)
    dept = session.get(Department, patient.department_id) if patient.department_id else None
    out = []
    for lang, body in (("zh_CN", body_zh), ("en", body_en)):
        department = "" if dept is None else (dept.name_en if lang == "en" else dept.name_zh)
        out.append(render(body, {"name": patient.name, "date": on, "department": department,
                                 "indicator": indicator}))
    return Preview(card_no=patient.card_no, text_zh=out[0], text_en=out[1])


def sql_body(body: str, columns: dict[str, Any]) -> Any:
    """The template as one SQL string expression: literal text joined with the placeholder columns."""
    parts: list[Any] = []
    for text_part, field, _, _ in string.Formatter().parse(body):
        if text_part:
            parts.append(literal(text_part, String))
        if field is not None:
            if field not in PLACEHOLDERS:
                raise UserError("messaging.template_unknown_placeholder", placeholder="{" + field + "}",
                                allowed=", ".join("{" + p + "}" for p in PLACEHOLDERS))
            col = columns.get(field)
            parts.append(literal("", String) if col is None else func.coalesce(cast(col, String), ""))
    if not parts:
        return literal("", String)
    expr = parts[0]
    for p in parts[1:]:
        expr = expr + p
    return expr
