"""Patient search and the 360° view's reads: header, timeline, health record, consents (one patient at a time)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, true
from sqlalchemy.orm import aliased

from db.models import (
    CONSENT_PURPOSES,
    Consent,
    Department,
    Encounter,
    ExamReport,
    FollowupRecord,
    HealthHistory,
    Intervention,
    Patient,
    PatientTag,
    RiskAssessment,
    SurveyResponse,
    User,
)
from queries import messaging as messaging_q
from queries.filters import DataScope, has_open_tag

# A search matching more patients than this pages through the first MAX_MATCHES found: refine the search.
MAX_MATCHES = 500
SEARCH_COLUMNS = ["id", "card_no", "name", "sex", "birth_date", "phone", "id_number", "department", "status"]


@dataclass(frozen=True)
class SearchFilter:
    text: str
    limit: int = 20
    offset: int = 0
    # A tag segment (an open tag of this code), alone or narrowing the search; its name for describe().
    tag: str | None = None
    tag_name: str | None = None
    lang: str = "zh_CN"  # the language of the department column

    def describe(self, lang: str) -> str:
        from i18n import t

        page = self.offset // max(self.limit, 1) + 1
        parts = []
        if self.tag:
            parts.append(t("filter.segment_is", lang, tag=self.tag_name or self.tag))
        if self.text.strip():
            parts.append(t("patients.search.describe", lang, text=self.text.strip(), page=page))
        else:
            parts.append(t("patients.search.describe_page", lang, page=page))
        return t("filter.separator", lang).join(parts)


def _kind(text: str) -> str:
    if re.fullmatch(r"\d{17}[\dXx]", text):
        return "id_number"
    if re.fullmatch(r"[+\d][\d\- ]{2,}", text):
        return "digits"
    if re.fullmatch(r"[A-Za-z]+\d+[Xx]?", text):
        return "card"
    if re.fullmatch(r"[A-Za-z]+", text):
        return "latin"
    return "name"


def _scope_clause(scope: DataScope | None, user_id: int | None) -> ColumnElement[bool] | None:
    if scope is None or scope.department_ids is None:
        return None
    conds: list[ColumnElement[bool]] = [Patient.department_id.is_(None)]
    if scope.department_ids:
        conds.append(Patient.department_id.in_(scope.department_ids))
    if user_id is not None:
        conds.append(Patient.nurse_id == user_id)
    return or_(*conds)


def search_patients(
    *, conn: Connection, f: SearchFilter, scope: DataScope | None = None, user_id: int | None = None,
) -> pd.DataFrame:
    """One page of patients matching a card number, phone, ID number, name or pinyin initials.

    Every branch is an index range scan (prefix LIKE on a C-collated or pattern-ops index); name "contains"
    is tried only when the prefix search did not fill the page.
    """
    text = re.sub(r"\s+", " ", f.text).strip()
    if not text and f.tag:
        return pd.DataFrame([tuple(r) for r in _segment(conn, f, scope, user_id)], columns=SEARCH_COLUMNS)
    if not text:
        return pd.DataFrame(columns=SEARCH_COLUMNS)
    kind = _kind(text)
    esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = esc + "%"
    conds: list[ColumnElement[bool]]
    if kind == "id_number":
        conds = [Patient.id_number == text.upper()]
    elif kind == "digits":
        digits = re.sub(r"[^\d]", "", text)
        d_like = digits + "%"
        conds = [Patient.phone.like(d_like), Patient.id_number.like(d_like), Patient.card_no.like(d_like)]
    elif kind == "card":
        conds = [Patient.card_no.like(text.upper() + "%"), Patient.id_number.like(text.upper() + "%")]
    elif kind == "latin":
        conds = [Patient.name_initials.like(text.lower() + "%"), Patient.name.like(like, escape="\\"),
                 Patient.name.like(esc.capitalize() + "%", escape="\\"), Patient.card_no.like(text.upper() + "%")]
    else:
        conds = [Patient.name.like(like, escape="\\")]
    rows = _run(conn, conds, f, scope, user_id)
    if kind in ("name", "latin") and len(rows) < f.limit and f.offset == 0 and len(text) >= 2:
        contains = Patient.name.like("%" + like, escape="\\")
        seen = {r[0] for r in rows}
        extra = [r for r in _run(conn, [contains], replace(f, offset=0), scope, user_id)
                 if r[0] not in seen]
        rows = rows + extra[: f.limit - len(rows)]
    return pd.DataFrame([tuple(r) for r in rows], columns=SEARCH_COLUMNS)


def _where(where: ColumnElement[bool], f: SearchFilter, scope: DataScope | None,
           user_id: int | None) -> ColumnElement[bool]:
    """The search's own condition narrowed to the chosen segment and the user's scope."""
    where = and_(where, has_open_tag(Patient.id, f.tag))
    sc = _scope_clause(scope, user_id)
    return where if sc is None else and_(where, sc)


def _page(conn: Connection, where: ColumnElement[bool], f: SearchFilter) -> list[Any]:
    """One page of the rows a search shows, in card-number order."""
    stmt = (
        select(Patient.id, Patient.card_no, Patient.name, Patient.sex, Patient.birth_date, Patient.phone,
               Patient.id_number, _department_name(f.lang), Patient.status)
        .outerjoin(Department, Department.id == Patient.department_id)
        .where(where)
        .order_by(Patient.card_no)
        .limit(f.limit)
        .offset(f.offset)
    )
    return list(conn.execute(stmt).all())


def _run(conn: Connection, conds: list[ColumnElement[bool]], f: SearchFilter, scope: DataScope | None,
         user_id: int | None) -> list[Any]:
    # Candidates first without ORDER BY: the planner ORs the prefix indexes instead of walking the card-number
    # index in order and filtering; then only those rows are fetched by primary key and sorted.
    where = _where(or_(*conds), f, scope, user_id)
    ids = list(conn.execute(select(Patient.id).where(where).limit(MAX_MATCHES)).scalars())
    return _page(conn, Patient.id.in_(ids), f) if ids else []


def _department_name(lang: str) -> Any:
    return Department.name_zh if lang.startswith("zh") else Department.name_en


def _segment(conn: Connection, f: SearchFilter, scope: DataScope | None, user_id: int | None) -> list[Any]:
    """One page of a tag segment in card-number order: the card-number index walked in order, each row's tag probed
    by index, so a page of a 400,000-patient segment reads a few dozen rows."""
    return _page(conn, _where(true(), f, scope, user_id), f)


def patient_id_by_card(*, conn: Connection, card_no: str) -> int | None:
    return conn.execute(select(Patient.id).where(Patient.card_no == card_no.strip())).scalar_one_or_none()


def in_scope(*, conn: Connection, patient_id: int, scope: DataScope | None, user_id: int | None) -> bool:
    sc = _scope_clause(scope, user_id)
    stmt = select(Patient.id).where(Patient.id == patient_id)
    if sc is not None:
        stmt = stmt.where(sc)
    return conn.execute(stmt).first() is not None


@dataclass(frozen=True)
class PatientHeader:
    id: int
    card_no: str
    name: str
    sex: str
    birth_date: date | None
    age: int | None
    phone: str | None
    id_type: str | None
    id_number: str | None
    address: str | None
    department_id: int | None
    department_zh: str | None
    department_en: str | None
    nurse_id: int | None
    nurse_name: str | None
    status: str
    version: int
    do_not_contact: bool
    channel_prefs: tuple[str, ...]
    enrolled_at: datetime
    tags: tuple[str, ...] = ()
    risk_level: str | None = None
    risk_model: str | None = None
    consents: dict[str, bool] = field(default_factory=dict)
    identifiers: tuple[tuple[str, str], ...] = ()


def age_on(birth: date | None, today: date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def patient_header(*, conn: Connection, patient_id: int, today: date) -> PatientHeader | None:
    from db.models import PatientIdentifier

    nurse = aliased(User)
    cols = [Patient.id, Patient.card_no, Patient.name, Patient.sex, Patient.birth_date, Patient.phone,
            Patient.id_type, Patient.id_number, Patient.address, Patient.department_id, Department.name_zh,
            Department.name_en, Patient.nurse_id, nurse.display_name, Patient.status, Patient.version,
            Patient.do_not_contact, Patient.channel_prefs, Patient.enrolled_at]
    row = conn.execute(
        select(*cols)
        .outerjoin(Department, Department.id == Patient.department_id)
        .outerjoin(nurse, nurse.id == Patient.nurse_id)
        .where(Patient.id == patient_id)
    ).first()
    if row is None:
        return None
    m = dict(zip(("id", "card_no", "name", "sex", "birth_date", "phone", "id_type", "id_number", "address",
                  "department_id", "department_zh", "department_en", "nurse_id", "nurse_name", "status", "version",
                  "do_not_contact", "channel_prefs", "enrolled_at"), tuple(row), strict=True))
    tags = tuple(conn.execute(
        select(PatientTag.tag_code).where(PatientTag.patient_id == patient_id, PatientTag.until.is_(None))
        .order_by(PatientTag.tag_code)
    ).scalars().unique())
    risk = conn.execute(
        select(RiskAssessment.level, RiskAssessment.model).where(RiskAssessment.patient_id == patient_id)
        .order_by(RiskAssessment.assessed_at.desc()).limit(1)
    ).first()
    granted = set(conn.execute(
        select(Consent.purpose).where(Consent.patient_id == patient_id, Consent.withdrawn_at.is_(None))
    ).scalars())
    idents = tuple((s, v) for s, v in conn.execute(
        select(PatientIdentifier.system, PatientIdentifier.value).where(PatientIdentifier.patient_id == patient_id)
        .order_by(PatientIdentifier.id).limit(10)
    ).all())
    birth = m["birth_date"]
    return PatientHeader(
        id=m["id"], card_no=m["card_no"], name=m["name"], sex=m["sex"], birth_date=birth, age=age_on(birth, today),
        phone=m["phone"], id_type=m["id_type"], id_number=m["id_number"], address=m["address"],
        department_id=m["department_id"], department_zh=m["department_zh"], department_en=m["department_en"],
        nurse_id=m["nurse_id"], nurse_name=m["nurse_name"], status=m["status"], version=m["version"],
        do_not_contact=bool(m["do_not_contact"]), channel_prefs=tuple(m["channel_prefs"] or ()),
        enrolled_at=m["enrolled_at"], tags=tags, risk_level=risk[0] if risk else None,
        risk_model=risk[1] if risk else None, consents={p: p in granted for p in CONSENT_PURPOSES},
        identifiers=idents,
    )


TIMELINE_COLUMNS = ["at", "kind", "title", "detail"]


def timeline(*, conn: Connection, patient_id: int, limit: int = 100, lang: str = "zh_CN") -> pd.DataFrame:
    """Visits, exams, follow-ups, interventions, survey answers, messages and education, newest first."""
    parts: list[tuple[Any, ...]] = []
    q = [
        ("visit", select(Encounter.started_at, Encounter.kind, Encounter.reason)
         .where(Encounter.patient_id == patient_id).order_by(Encounter.started_at.desc()).limit(limit)),
        ("exam", select(ExamReport.reported_at, ExamReport.title, ExamReport.status)
         .where(ExamReport.patient_id == patient_id).order_by(ExamReport.reported_at.desc()).limit(limit)),
        ("followup", select(FollowupRecord.contacted_at, FollowupRecord.method, FollowupRecord.outcome)
         .where(FollowupRecord.patient_id == patient_id).order_by(FollowupRecord.contacted_at.desc()).limit(limit)),
        ("intervention", select(Intervention.performed_on, Intervention.kind, Intervention.content)
         .where(Intervention.patient_id == patient_id).order_by(Intervention.performed_on.desc()).limit(limit)),
        ("survey", select(SurveyResponse.submitted_at, SurveyResponse.nps_score, SurveyResponse.comment)
         .where(SurveyResponse.patient_id == patient_id).order_by(SurveyResponse.submitted_at.desc()).limit(limit)),
    ]
    for kind, stmt in q:
        for at, title, detail in conn.execute(stmt).all():
            when = at if isinstance(at, datetime) else datetime(at.year, at.month, at.day)
            parts.append((when, kind, "" if title is None else str(title),
                          "" if detail is None else str(detail)[:200]))
    # Messages and education (status, channel, template, opens) come from the messaging area's query.
    parts.extend(messaging_q.patient_message_events(conn=conn, patient_id=patient_id, lang=lang, limit=limit))
    parts.sort(key=lambda p: p[0], reverse=True)
    return pd.DataFrame(parts[:limit], columns=TIMELINE_COLUMNS)


HISTORY_COLUMNS = ["id", "kind", "text", "code", "relation", "aspect", "started_on", "ended_on", "source",
                   "recorded_at", "replaces_id"]


def health_record(*, conn: Connection, patient_id: int, current_only: bool = True) -> pd.DataFrame:
    """The health record; current_only hides rows an edit has replaced (they stay for the history view).

    Every version of an entry belongs to the same patient, so the replaced ones are found among the patient's
    own rows (read through the patient index) rather than by an anti-join over the whole table.
    """
    stmt = select(HealthHistory.id, HealthHistory.kind, HealthHistory.text, HealthHistory.code,
                  HealthHistory.relation, HealthHistory.detail, HealthHistory.started_on, HealthHistory.ended_on,
                  HealthHistory.source, HealthHistory.recorded_at, HealthHistory.replaces_id).where(
        HealthHistory.patient_id == patient_id)
    rows = conn.execute(stmt.order_by(HealthHistory.kind, HealthHistory.started_on.desc(),
                                      HealthHistory.id.desc()).limit(2000)).all()
    if current_only:
        replaced = {r[10] for r in rows if r[10] is not None}
        rows = [r for r in rows if r[0] not in replaced]
    out = [(r[0], r[1], r[2], r[3], r[4], (r[5] or {}).get("aspect") if isinstance(r[5], dict) else None,
            *r[6:]) for r in rows[:500]]
    return pd.DataFrame(out, columns=HISTORY_COLUMNS)


def consent_history(*, conn: Connection, patient_id: int) -> pd.DataFrame:
    rows = conn.execute(
        select(Consent.purpose, Consent.granted_at, Consent.withdrawn_at).where(Consent.patient_id == patient_id)
        .order_by(Consent.purpose, Consent.granted_at)
    ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["purpose", "granted_at", "withdrawn_at"])


def patient_count(*, conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(Patient)).scalar_one())


EXPORT_COLUMNS = ["card_no", "name", "sex", "birth_date", "phone", "id_type", "id_number", "department", "status",
                  "enrolled_at"]


def export_patients(*, conn: Connection, batch: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
    """Every patient in card order, in batches; the caller masks what the reader may not see."""
    stmt = (
        select(Patient.card_no, Patient.name, Patient.sex, Patient.birth_date, Patient.phone, Patient.id_type,
               Patient.id_number, Department.code, Patient.status, Patient.enrolled_at)
        .outerjoin(Department, Department.id == Patient.department_id)
        .order_by(Patient.card_no)
    )
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
    for part in result.partitions(batch):
        yield [tuple(r) for r in part]


def nurses(*, conn: Connection, department_id: int | None = None) -> list[tuple[int, str]]:
    """Active nurses (id, display name) for the assigned-nurse picker, the department's own first."""
    stmt = select(User.id, User.display_name).where(User.role == "nurse", User.active.is_(True))
    if department_id is not None:
        stmt = stmt.order_by((User.department_id == department_id).desc(), User.display_name)
    else:
        stmt = stmt.order_by(User.display_name)
    return [(int(i), str(n)) for i, n in conn.execute(stmt.limit(500)).all()]


def departments(*, conn: Connection, lang: str) -> list[tuple[int, str]]:
    name = Department.name_zh if lang.startswith("zh") else Department.name_en
    rows = conn.execute(select(Department.id, name).where(Department.active.is_(True)).order_by(Department.id))
    return [(int(i), str(n)) for i, n in rows.all()]
