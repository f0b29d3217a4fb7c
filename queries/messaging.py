"""Read side of messaging: the outbox, templates, education reach and engagement, experiment results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd
from sqlalchemy import Connection, and_, case, func, select

from db.models import (
    Department,
    EducationItem,
    Encounter,
    Experiment,
    ExperimentAssignment,
    FollowupTask,
    Message,
    MessageTemplate,
    Patient,
    PatientContact,
)
from i18n import t
from queries.filters import DataScope, PeriodFilter, department_clause

PAGE_SIZE = 50


@dataclass(frozen=True)
class OutboxFilter:
    date_from: date
    date_to: date
    status: str | None = None
    channel: str | None = None
    purpose: str | None = None
    offset: int = 0
    limit: int = PAGE_SIZE  # a download of the whole filtered result asks for more than a page

    def describe(self, lang: str, count: int | None = None) -> str:
        parts = []
        if count is not None:
            parts.append(t("messaging.n_messages", lang, n=f"{count:,}"))
        for key, value in (("status", self.status), ("channel", self.channel), ("purpose", self.purpose)):
            if value:
                parts.append(t(f"messaging.{key}.{value}", lang))
        parts.append(t("filter.period", lang, start=self.date_from.isoformat(), end=self.date_to.isoformat()))
        return t("filter.separator", lang).join(parts)


def _window(d_from: date, d_to: date) -> tuple[datetime, datetime]:
    return datetime.combine(d_from, time.min), datetime.combine(d_to + timedelta(days=1), time.min)


def _outbox_where(f: OutboxFilter, scope: DataScope) -> list[object]:
    start, end = _window(f.date_from, f.date_to)
    conds: list[object] = [Message.scheduled_at >= start, Message.scheduled_at < end]
    if f.status:
        conds.append(Message.status == f.status)
    if f.channel:
        conds.append(Message.channel == f.channel)
    if f.purpose:
        conds.append(Message.purpose == f.purpose)
    if scope.department_ids is not None:
        conds.append(Patient.department_id.in_(scope.department_ids))
    return conds


def outbox(*, conn: Connection, f: OutboxFilter, scope: DataScope) -> pd.DataFrame:
    """One page of messages, newest schedule first."""
    stmt = (select(Message.id, Message.scheduled_at, Patient.card_no, Patient.name, Message.channel,
                   Message.purpose, Message.template_code, Message.status, Message.attempts, Message.sent_at,
                   Message.last_error, Message.body)
            .join(Patient, Patient.id == Message.patient_id)
            .where(*_outbox_where(f, scope))  # type: ignore[arg-type]
            .order_by(Message.scheduled_at.desc(), Message.id.desc())
            .limit(f.limit).offset(f.offset))
    rows = conn.execute(stmt).all()
    return pd.DataFrame([r._asdict() for r in rows],
                        columns=["id", "scheduled_at", "card_no", "name", "channel", "purpose", "template_code",
                                 "status", "attempts", "sent_at", "last_error", "body"])


def outbox_counts(*, conn: Connection, f: OutboxFilter, scope: DataScope) -> dict[str, int]:
    """Messages per status under the filter (the status filter itself is ignored, so every status shows)."""
    unfiltered = OutboxFilter(f.date_from, f.date_to, None, f.channel, f.purpose)
    stmt = (select(Message.status, func.count())
            .join(Patient, Patient.id == Message.patient_id)
            .where(*_outbox_where(unfiltered, scope))  # type: ignore[arg-type]
            .group_by(Message.status))
    return {str(s): int(n) for s, n in conn.execute(stmt).all()}


def message_templates(*, conn: Connection) -> pd.DataFrame:
    rows = conn.execute(select(MessageTemplate.code, MessageTemplate.purpose, MessageTemplate.body_zh,
                               MessageTemplate.body_en, MessageTemplate.updated_at)
                        .order_by(MessageTemplate.code)).all()
    return pd.DataFrame([r._asdict() for r in rows], columns=["code", "purpose", "body_zh", "body_en", "updated_at"])


def education_items(*, conn: Connection) -> pd.DataFrame:
    rows = conn.execute(select(EducationItem.id, EducationItem.title, EducationItem.language,
                               EducationItem.tags, EducationItem.risk_levels, EducationItem.link,
                               EducationItem.reviewed_by, EducationItem.reviewed_on, EducationItem.active)
                        .order_by(EducationItem.title)).all()
    return pd.DataFrame([r._asdict() for r in rows],
                        columns=["id", "title", "language", "tags", "risk_levels", "link", "reviewed_by",
                                 "reviewed_on", "active"])


def engagement(*, conn: Connection, f: PeriodFilter, scope: DataScope, lang: str) -> pd.DataFrame:
    """Education reach and engagement per item and department: patients reached, messages sent, opened."""
    start, end = _window(f.date_from, f.date_to)
    dept_name = Department.name_en if lang == "en" else Department.name_zh
    delivered = Message.status.in_(("sent", "delivered"))
    stmt = (select(EducationItem.title.label("item"), func.coalesce(dept_name, "-").label("segment"),
                   func.count(func.distinct(case((delivered, Message.patient_id)))).label("patients_reached"),
                   func.sum(case((delivered, 1), else_=0)).label("sent"),
                   func.sum(case((Message.opened_at.is_not(None), 1), else_=0)).label("opened"),
                   func.sum(case((Message.status == "failed", 1), else_=0)).label("failed"))
            .select_from(Message)
            .join(EducationItem, EducationItem.id == Message.education_item_id)
            .join(Patient, Patient.id == Message.patient_id)
            .outerjoin(Department, Department.id == Patient.department_id)
            .where(Message.scheduled_at >= start, Message.scheduled_at < end,
                   department_clause(Patient.department_id, f=f, scope=scope))
            .group_by(EducationItem.title, dept_name)
            .order_by(EducationItem.title, dept_name))
    df = pd.DataFrame([r._asdict() for r in conn.execute(stmt).all()],
                      columns=["item", "segment", "patients_reached", "sent", "opened", "failed"])
    df["open_rate"] = [round(100.0 * o / s, 1) if s else None for o, s in zip(df["opened"], df["sent"], strict=True)]
    return df


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n: sound for small n and rates near 0 or 1."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def experiments(*, conn: Connection) -> pd.DataFrame:
    rows = conn.execute(select(Experiment.id, Experiment.code, Experiment.rule, Experiment.variant,
                               Experiment.arm_a, Experiment.arm_b, Experiment.started_on, Experiment.ended_on,
                               Experiment.active).order_by(Experiment.started_on.desc(), Experiment.id)).all()
    return pd.DataFrame([r._asdict() for r in rows], columns=["id", "code", "rule", "variant", "arm_a", "arm_b",
                                                              "started_on", "ended_on", "active"])


def experiment_results(*, conn: Connection, experiment_id: int, as_of: date) -> pd.DataFrame:
    """Per arm: patients, follow-up completed and visit kept after assignment (up to as_of), rates and 95% CIs."""
    a = ExperimentAssignment
    end = datetime.combine(as_of + timedelta(days=1), time.min)
    done = (select(FollowupTask.id).where(FollowupTask.patient_id == a.patient_id, FollowupTask.status == "done",
                                          FollowupTask.completed_at >= a.assigned_at,
                                          FollowupTask.completed_at < end).exists())
    visit = (select(Encounter.id).where(Encounter.patient_id == a.patient_id, Encounter.started_at >= a.assigned_at,
                                        Encounter.started_at < end).exists())
    stmt = (select(a.arm, func.count().label("n"),
                   func.sum(case((done, 1), else_=0)).label("followup_completed"),
                   func.sum(case((visit, 1), else_=0)).label("visit_kept"))
            .where(and_(a.experiment_id == experiment_id, a.assigned_at < end))
            .group_by(a.arm).order_by(a.arm))
    out = []
    for arm, n, fu, vk in conn.execute(stmt).all():
        n, fu, vk = int(n), int(fu or 0), int(vk or 0)
        fu_lo, fu_hi = wilson(fu, n)
        vk_lo, vk_hi = wilson(vk, n)
        out.append({"arm": arm, "n": n, "followup_completed": fu, "followup_rate": fu / n if n else 0.0,
                    "followup_ci_low": fu_lo, "followup_ci_high": fu_hi, "visit_kept": vk,
                    "visit_rate": vk / n if n else 0.0, "visit_ci_low": vk_lo, "visit_ci_high": vk_hi})
    return pd.DataFrame(out, columns=["arm", "n", "followup_completed", "followup_rate", "followup_ci_low",
                                      "followup_ci_high", "visit_kept", "visit_rate", "visit_ci_low",
                                      "visit_ci_high"])


# --- one patient: contact settings and the 360° timeline's messages --------------------------------


@dataclass(frozen=True)
class ContactView:
    patient_id: int
    version: int
    phone: str
    email: str
    wechat: str
    app: str
    channel_prefs: tuple[str, ...]
    language: str


def patient_contact_settings(*, conn: Connection, patient_id: int) -> ContactView | None:
    row = conn.execute(select(Patient.version, Patient.phone, Patient.channel_prefs, Patient.language)
                       .where(Patient.id == patient_id)).first()
    if row is None:
        return None
    contacts = {str(c): str(a) for c, a in conn.execute(select(PatientContact.channel, PatientContact.address)
                                                        .where(PatientContact.patient_id == patient_id))}
    return ContactView(patient_id=patient_id, version=int(row.version), phone=row.phone or "",
                       email=contacts.get("email", ""), wechat=contacts.get("wechat", ""),
                       app=contacts.get("app", ""), channel_prefs=tuple(row.channel_prefs or ()),
                       language=str(row.language or "zh_CN"))


def patient_message_events(*, conn: Connection, patient_id: int, lang: str, limit: int = 100,
                           ) -> list[tuple[datetime, str, str, str]]:
    """The 360° timeline's rows for messages: (at, kind, title, detail), newest first.

    kind "message" for reminders, "education" for an education item sent, "message_opened"/"education_opened"
    when the channel reported an open. title: channel · template code (or the item's title); detail: the
    status (with the last error of a failure) and the text, in `lang`.
    """
    m = Message
    # When it happened: sent (or delivered) at, otherwise when it is or was scheduled.
    at = func.coalesce(m.sent_at, m.scheduled_at)
    rows = conn.execute(
        select(at.label("at"), m.channel, m.status, m.template_code, m.body, m.last_error, m.opened_at,
               EducationItem.title)
        .outerjoin(EducationItem, EducationItem.id == m.education_item_id)
        .where(m.patient_id == patient_id).order_by(at.desc(), m.id.desc()).limit(limit)).all()
    out: list[tuple[datetime, str, str, str]] = []
    for r in rows:
        education = r.title is not None
        title = f"{t(f'messaging.channel.{r.channel}', lang)} · {r.title if education else r.template_code or ''}"
        status = t(f"messaging.status.{r.status}", lang)
        if r.status == "failed" and r.last_error:
            status += f" ({r.last_error})"
        out.append((r.at, "education" if education else "message", title, f"{status}: {r.body}"[:200]))
        if r.opened_at is not None:
            out.append((r.opened_at, "education_opened" if education else "message_opened", title,
                        t("messaging.timeline.opened", lang)))
    out.sort(key=lambda e: e[0], reverse=True)
    return out[:limit]
