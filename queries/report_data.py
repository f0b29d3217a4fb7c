"""Read side of the reports: everything one patient's health report shows, and the quality summary's figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, case, func, or_, select
from sqlalchemy.orm import Session

from db.models import (
    AdviceItem,
    Department,
    FollowupPlan,
    FollowupRecord,
    FollowupTask,
    GuidelineBand,
    HealthSummary,
    Indicator,
    Intervention,
    Observation,
    Patient,
    PatientTag,
    RiskAssessment,
    TagRule,
    User,
    WellnessPlan,
)
from queries.filters import DataScope, PeriodFilter, department_clause

# Indicators with a multi-year trend chart, grouped into panels (the first code's bands shade the panel).
TREND_PANELS: tuple[tuple[str, ...], ...] = (("SBP", "DBP"), ("FPG",), ("HBA1C",), ("LDL", "TC"), ("BMI",))
TREND_CODES: tuple[str, ...] = tuple(c for panel in TREND_PANELS for c in panel)


@dataclass(frozen=True)
class PatientInfo:
    id: int
    card_no: str
    name: str
    sex: str
    birth_date: date | None
    phone: str | None
    id_number: str | None
    department: str | None
    nurse: str | None
    status: str
    enrolled_at: datetime


@dataclass(frozen=True)
class BandRow:
    band: str
    sex: str | None
    low: float | None
    high: float | None
    abnormal: bool
    source: str
    version: str


@dataclass(frozen=True)
class IndicatorInfo:
    id: int
    code: str
    name_zh: str
    name_en: str
    unit: str
    ref_low: float | None
    ref_high: float | None
    decimals: int
    bands: tuple[BandRow, ...]

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh_CN" else self.name_en

    def bands_for(self, sex: str) -> tuple[BandRow, ...]:
        return tuple(b for b in self.bands if b.sex is None or b.sex == sex)

    def band_of(self, value: float, sex: str) -> BandRow | None:
        for b in self.bands_for(sex):
            if (b.low is None or value >= b.low) and (b.high is None or value < b.high):
                return b
        return None

    def outside_reference(self, value: float) -> bool:
        return (self.ref_low is not None and value < self.ref_low) or (
            self.ref_high is not None and value > self.ref_high)


@dataclass(frozen=True)
class LatestValue:
    indicator: IndicatorInfo
    value: float
    observed_at: datetime
    band: BandRow | None
    abnormal: bool
    direction: str  # "high", "low" or "" (which side of the reference range / guideline)


@dataclass(frozen=True)
class TagInfo:
    code: str
    name_zh: str | None
    name_en: str | None
    since: datetime


@dataclass(frozen=True)
class RiskInfo:
    model: str
    model_version: str
    assessed_at: datetime
    score: float | None
    level: str | None
    factors: list[Any]
    missing: list[Any] | None


@dataclass(frozen=True)
class AdviceInfo:
    code: str
    category: str
    title: str
    body: str
    source: str | None


@dataclass(frozen=True)
class PlanInfo:
    title: str
    goals: list[Any]
    advice_codes: list[Any]
    start_on: date
    end_on: date | None
    status: str


@dataclass(frozen=True)
class FollowupInfo:
    due_date: date
    status: str
    method: str
    plan: str | None
    attempts: int
    completed_at: datetime | None


@dataclass(frozen=True)
class ContactInfo:
    contacted_at: datetime
    method: str
    outcome: str
    notes: str | None


@dataclass(frozen=True)
class InterventionInfo:
    performed_on: date
    kind: str
    indicator: str | None
    goal: str | None
    content: str


@dataclass(frozen=True)
class SummaryInfo:
    period_from: date
    period_to: date
    language: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class PatientReportData:
    patient: PatientInfo
    period_from: date
    period_to: date
    latest: list[LatestValue] = field(default_factory=list)
    series: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    indicators: dict[str, IndicatorInfo] = field(default_factory=dict)
    tags: list[TagInfo] = field(default_factory=list)
    risks: list[RiskInfo] = field(default_factory=list)
    advice: list[AdviceInfo] = field(default_factory=list)
    plan: PlanInfo | None = None
    followups: list[FollowupInfo] = field(default_factory=list)
    contacts: list[ContactInfo] = field(default_factory=list)
    interventions: list[InterventionInfo] = field(default_factory=list)
    summary: SummaryInfo | None = None

    @property
    def has_any_data(self) -> bool:
        return bool(self.latest or self.tags or self.risks or self.plan or self.followups or self.contacts
                    or self.interventions or self.summary)


Conn = Connection | Session


def _bounds(d_from: date, d_to: date) -> tuple[datetime, datetime]:
    return datetime.combine(d_from, time.min), datetime.combine(d_to + timedelta(days=1), time.min)


def indicator_catalogue(*, conn: Conn) -> dict[str, IndicatorInfo]:
    """Indicators with their guideline bands, by code (a few dozen rows; the reports read it once)."""
    bands: dict[int, list[BandRow]] = {}
    g = GuidelineBand
    for r in conn.execute(select(g.indicator_id, g.band, g.sex, g.low, g.high, g.abnormal, g.source, g.version)
                          .order_by(g.indicator_id, g.id)).all():
        bands.setdefault(int(r[0]), []).append(BandRow(r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]))
    out: dict[str, IndicatorInfo] = {}
    ind = Indicator
    for i in conn.execute(select(ind.id, ind.code, ind.name_zh, ind.name_en, ind.unit, ind.ref_low, ind.ref_high,
                                 ind.decimals).order_by(ind.position, ind.code)).all():
        out[i[1]] = IndicatorInfo(int(i[0]), i[1], i[2], i[3], i[4], i[5], i[6], int(i[7] or 0),
                                  tuple(bands.get(int(i[0]), ())))
    return out


def find_patient(*, conn: Conn, card_no: str, lang: str) -> PatientInfo | None:
    dept_name = Department.name_zh if lang == "zh_CN" else Department.name_en
    row = conn.execute(
        select(Patient.id, Patient.card_no, Patient.name, Patient.sex, Patient.birth_date, Patient.phone,
               Patient.id_number, dept_name, User.display_name, Patient.status, Patient.enrolled_at)
        .outerjoin(Department, Department.id == Patient.department_id)
        .outerjoin(User, User.id == Patient.nurse_id)
        .where(Patient.card_no == card_no.strip())
    ).one_or_none()
    if row is None:
        return None
    return PatientInfo(int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10])


def _direction(ind: IndicatorInfo, value: float, band: BandRow | None) -> str:
    if ind.ref_high is not None and value > ind.ref_high:
        return "high"
    if ind.ref_low is not None and value < ind.ref_low:
        return "low"
    if band is not None and band.abnormal:
        # Abnormal by the guideline inside the reference range: the band below "normal" is low, above is high.
        normal = [b for b in ind.bands if not b.abnormal and b.sex in (None, band.sex)]
        if normal and band.high is not None and normal[0].low is not None and band.high <= normal[0].low:
            return "low"
        return "high"
    return ""


def latest_values(*, conn: Conn, patient_id: int, sex: str, as_of: datetime,
                  catalogue: dict[str, IndicatorInfo]) -> list[LatestValue]:
    """The most recent value of every indicator the patient has, with its band and abnormal flag."""
    ranked = (
        select(Observation.indicator_id, Observation.value, Observation.observed_at,
               func.row_number().over(partition_by=Observation.indicator_id,
                                      order_by=(Observation.observed_at.desc(), Observation.id.desc())).label("rn"))
        .where(Observation.patient_id == patient_id, Observation.observed_at <= as_of,
               Observation.status != "entered-in-error")
        .subquery()
    )
    rows = conn.execute(select(ranked.c.indicator_id, ranked.c.value, ranked.c.observed_at)
                        .where(ranked.c.rn == 1)).all()
    by_id = {i.id: i for i in catalogue.values()}
    out: list[LatestValue] = []
    for ind_id, value, at in rows:
        ind = by_id.get(int(ind_id))
        if ind is None:
            continue
        v = float(value)
        band = ind.band_of(v, sex)
        abnormal = ind.outside_reference(v) or bool(band is not None and band.abnormal)
        out.append(LatestValue(ind, v, at, band, abnormal, _direction(ind, v, band) if abnormal else ""))
    order = {code: n for n, code in enumerate(catalogue)}
    out.sort(key=lambda lv: order.get(lv.indicator.code, 9999))
    return out


def trend_series(*, conn: Conn, patient_id: int, as_of: datetime, codes: tuple[str, ...],
                 catalogue: dict[str, IndicatorInfo]) -> dict[str, list[tuple[datetime, float]]]:
    ids = {catalogue[c].id: c for c in codes if c in catalogue}
    if not ids:
        return {}
    rows = conn.execute(
        select(Observation.indicator_id, Observation.observed_at, Observation.value)
        .where(Observation.patient_id == patient_id, Observation.indicator_id.in_(list(ids)),
               Observation.observed_at <= as_of, Observation.status != "entered-in-error")
        .order_by(Observation.indicator_id, Observation.observed_at)
    ).all()
    out: dict[str, list[tuple[datetime, float]]] = {}
    for ind_id, at, value in rows:
        out.setdefault(ids[int(ind_id)], []).append((at, float(value)))
    return out


def active_tags(*, conn: Conn, patient_id: int, as_of: datetime) -> list[TagInfo]:
    rows = conn.execute(
        select(PatientTag.tag_code, PatientTag.since)
        .where(PatientTag.patient_id == patient_id, PatientTag.since <= as_of,
               or_(PatientTag.until.is_(None), PatientTag.until > as_of))
        .order_by(PatientTag.since)
    ).all()
    if not rows:
        return []
    codes = sorted({r[0] for r in rows})
    names: dict[str, tuple[str | None, str | None]] = {}
    for code, zh, en in conn.execute(select(TagRule.code, TagRule.name_zh, TagRule.name_en)
                                     .where(TagRule.code.in_(codes)).order_by(TagRule.version)).all():
        names[code] = (zh, en)  # the newest version wins
    seen: dict[str, TagInfo] = {}
    for code, since in rows:
        if code not in seen:
            name_zh, name_en = names.get(code, (None, None))
            seen[code] = TagInfo(code, name_zh, name_en, since)
    return list(seen.values())


def latest_risks(*, conn: Conn, patient_id: int, as_of: datetime) -> list[RiskInfo]:
    ra = RiskAssessment
    rows = conn.execute(
        select(ra.model, ra.model_version, ra.assessed_at, ra.score, ra.level, ra.factors, ra.missing)
        .where(ra.patient_id == patient_id, ra.assessed_at <= as_of)
        .order_by(ra.model, ra.assessed_at.desc(), ra.id.desc())
    ).all()
    out: dict[str, RiskInfo] = {}
    for model, version, at, score, level, factors, missing in rows:
        if model not in out:
            out[model] = RiskInfo(model, version, at, score, level, list(factors or []),
                                  list(missing) if missing else None)
    return list(out.values())


def _applies(applies_to: dict[str, Any], tags: set[str], levels: dict[str, str]) -> bool:
    """services.advice's rule: an item applies for one of its tags, or for a listed level of a risk model's latest
    assessment ({"tags": [...], "risk": {"pce": ["high"]}})."""
    if {str(v) for v in applies_to.get("tags") or []} & tags:
        return True
    risk = applies_to.get("risk") or {}
    return isinstance(risk, dict) and any(levels.get(str(m)) in (wanted or []) for m, wanted in risk.items())


def advice_for(*, conn: Conn, tag_codes: set[str], risk_levels: dict[str, str], plan_codes: list[Any],
               lang: str) -> list[AdviceInfo]:
    a = AdviceItem
    zh = lang == "zh_CN"
    rows = conn.execute(select(a.code, a.category, a.title_zh if zh else a.title_en, a.body_zh if zh else a.body_en,
                               a.source, a.applies_to)
                        .where(a.active.is_(True)).order_by(a.category, a.code)).all()
    codes = {str(c) for c in plan_codes}
    out = []
    for code, category, title, body, source, applies_to in rows:
        if code in codes or _applies(applies_to or {}, tag_codes, risk_levels):
            out.append(AdviceInfo(code, category, title, body, source))
    return out


def current_plan(*, conn: Conn, patient_id: int, as_of: datetime) -> PlanInfo | None:
    w = WellnessPlan
    row = conn.execute(
        select(w.title, w.goals, w.advice_codes, w.start_on, w.end_on, w.status)
        .where(w.patient_id == patient_id, w.start_on <= as_of.date())
        .order_by(case((w.status == "active", 0), else_=1), w.start_on.desc(), w.id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return PlanInfo(row[0], list(row[1] or []), list(row[2] or []), row[3], row[4], row[5])


def period_followups(*, conn: Conn, patient_id: int, d_from: date, d_to: date,
                     lang: str) -> tuple[list[FollowupInfo], list[ContactInfo]]:
    plan_name = FollowupPlan.name_zh if lang == "zh_CN" else FollowupPlan.name_en
    tasks = conn.execute(
        select(FollowupTask.due_date, FollowupTask.status, FollowupTask.method, plan_name, FollowupTask.attempts,
               FollowupTask.completed_at)
        .outerjoin(FollowupPlan, FollowupPlan.id == FollowupTask.plan_id)
        .where(FollowupTask.patient_id == patient_id, FollowupTask.due_date >= d_from, FollowupTask.due_date <= d_to)
        .order_by(FollowupTask.due_date, FollowupTask.id)
    ).all()
    start, end = _bounds(d_from, d_to)
    contacts = conn.execute(
        select(FollowupRecord.contacted_at, FollowupRecord.method, FollowupRecord.outcome, FollowupRecord.notes)
        .where(FollowupRecord.patient_id == patient_id, FollowupRecord.contacted_at >= start,
               FollowupRecord.contacted_at < end)
        .order_by(FollowupRecord.contacted_at, FollowupRecord.id)
    ).all()
    return ([FollowupInfo(r[0], r[1], r[2], r[3], int(r[4] or 0), r[5]) for r in tasks],
            [ContactInfo(r[0], r[1], r[2], r[3]) for r in contacts])


def period_interventions(*, conn: Conn, patient_id: int, d_from: date, d_to: date,
                         lang: str) -> list[InterventionInfo]:
    name = Indicator.name_zh if lang == "zh_CN" else Indicator.name_en
    rows = conn.execute(
        select(Intervention.performed_on, Intervention.kind, name, Intervention.goal, Intervention.content)
        .outerjoin(Indicator, Indicator.id == Intervention.indicator_id)
        .where(Intervention.patient_id == patient_id, Intervention.performed_on >= d_from,
               Intervention.performed_on <= d_to)
        .order_by(Intervention.performed_on, Intervention.id)
    ).all()
    return [InterventionInfo(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def latest_summary(*, conn: Conn, patient_id: int, lang: str) -> SummaryInfo | None:
    wanted = "zh_CN" if lang == "zh_CN" else "en"
    h = HealthSummary
    row = conn.execute(
        select(h.period_from, h.period_to, h.language, h.text, h.created_at).where(h.patient_id == patient_id)
        .order_by(case((h.language.in_([wanted, wanted.replace("_", "-"), wanted[:2]]), 0), else_=1),
                  h.period_to.desc(), h.created_at.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return SummaryInfo(row[0], row[1], row[2], row[3], row[4])


def patient_report_data(*, conn: Conn, card_no: str, lang: str, now: datetime, period_from: date | None = None,
                        period_to: date | None = None,
                        catalogue: dict[str, IndicatorInfo] | None = None) -> PatientReportData | None:
    """Everything the patient health report prints, or None for an unknown card number."""
    patient = find_patient(conn=conn, card_no=card_no, lang=lang)
    if patient is None:
        return None
    d_to = period_to or now.date()
    d_from = period_from or (d_to - timedelta(days=365))
    cat = catalogue if catalogue is not None else indicator_catalogue(conn=conn)
    tags = active_tags(conn=conn, patient_id=patient.id, as_of=now)
    plan = current_plan(conn=conn, patient_id=patient.id, as_of=now)
    risks = latest_risks(conn=conn, patient_id=patient.id, as_of=now)
    followups, contacts = period_followups(conn=conn, patient_id=patient.id, d_from=d_from, d_to=d_to, lang=lang)
    return PatientReportData(
        patient=patient, period_from=d_from, period_to=d_to,
        latest=latest_values(conn=conn, patient_id=patient.id, sex=patient.sex, as_of=now, catalogue=cat),
        series=trend_series(conn=conn, patient_id=patient.id, as_of=now, codes=TREND_CODES, catalogue=cat),
        indicators=cat, tags=tags,
        risks=risks,
        advice=advice_for(conn=conn, tag_codes={t.code for t in tags},
                          risk_levels={r.model: r.level for r in risks if r.level},
                          plan_codes=plan.advice_codes if plan else [], lang=lang),
        plan=plan, followups=followups, contacts=contacts,
        interventions=period_interventions(conn=conn, patient_id=patient.id, d_from=d_from, d_to=d_to, lang=lang),
        summary=latest_summary(conn=conn, patient_id=patient.id, lang=lang),
    )


# --- quality summary ---------------------------------------------------------------------------------------


def department_by_code(*, conn: Conn, code: str, lang: str) -> tuple[int, str] | None:
    name = Department.name_zh if lang == "zh_CN" else Department.name_en
    row = conn.execute(select(Department.id, name).where(func.upper(Department.code) == code.strip().upper())
                       ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def followup_rates(*, conn: Conn, f: PeriodFilter, scope: DataScope, by: str, lang: str) -> pd.DataFrame:
    """Tasks due in the period (cancelled ones left out) per department or nurse: done, completion rate, and the
    contact rate (attempts that reached the patient / all contact attempts logged in the period)."""
    t = FollowupTask
    if by == "department":
        key: Any = t.department_id
        label: Any = Department.name_zh if lang == "zh_CN" else Department.name_en
        target_id: Any = Department.id
    else:
        key = t.assignee_id
        label = User.display_name
        target_id = User.id
    where = and_(t.due_date >= f.date_from, t.due_date <= f.date_to, t.status != "cancelled",
                 department_clause(t.department_id, f=f, scope=scope))
    tasks = (select(key.label("k"), func.count().label("due"),
                    func.coalesce(func.sum(case((t.status == "done", 1), else_=0)), 0).label("done"),
                    func.coalesce(func.sum(case((t.status == "unreachable", 1), else_=0)), 0).label("unreachable"))
             .where(where).group_by(key).subquery())
    start, end = _bounds(f.date_from, f.date_to)
    r = FollowupRecord
    contacts = (select(key.label("k"), func.count().label("attempts"),
                       func.coalesce(func.sum(case((r.outcome == "reached", 1), else_=0)), 0).label("reached"))
                .select_from(r).join(t, t.id == r.task_id)
                .where(r.contacted_at >= start, r.contacted_at < end,
                       department_clause(t.department_id, f=f, scope=scope))
                .group_by(key).subquery())
    rows = conn.execute(
        select(tasks.c.k, label, tasks.c.due, tasks.c.done, tasks.c.unreachable,
               func.coalesce(contacts.c.attempts, 0), func.coalesce(contacts.c.reached, 0))
        .select_from(tasks).outerjoin(contacts, contacts.c.k.is_not_distinct_from(tasks.c.k))
        .outerjoin(target_id.table, target_id == tasks.c.k)
        .order_by(tasks.c.due.desc())
    ).all()
    records = [{"key": k, "label": lab or "—", "due": int(due), "done": int(done), "unreachable": int(unr),
                "completion_pct": (int(done) / int(due) * 100) if due else None,
                "attempts": int(att), "reached": int(rea),
                "contact_pct": (int(rea) / int(att) * 100) if att else None}
               for k, lab, due, done, unr, att, rea in rows]
    return pd.DataFrame.from_records(records, columns=["key", "label", "due", "done", "unreachable",
                                                       "completion_pct", "attempts", "reached", "contact_pct"])


def interventions_by_kind(*, conn: Conn, f: PeriodFilter, scope: DataScope) -> pd.DataFrame:
    i = Intervention
    rows = conn.execute(
        select(i.kind, func.count(), func.count(func.distinct(i.patient_id)))
        .where(i.performed_on >= f.date_from, i.performed_on <= f.date_to,
               department_clause(i.department_id, f=f, scope=scope))
        .group_by(i.kind).order_by(func.count().desc())
    ).all()
    return pd.DataFrame([{"kind": k, "count": int(n), "patients": int(p)} for k, n, p in rows],
                        columns=["kind", "count", "patients"])


def risk_distribution(*, conn: Conn, f: PeriodFilter, scope: DataScope) -> pd.DataFrame:
    """Patients by model and level of their latest assessment made in the period (their department's scope)."""
    start, end = _bounds(f.date_from, f.date_to)
    ra = RiskAssessment
    ranked = (
        select(ra.model, ra.level,
               func.row_number().over(partition_by=(ra.patient_id, ra.model),
                                      order_by=(ra.assessed_at.desc(), ra.id.desc())).label("rn"))
        .join(Patient, Patient.id == ra.patient_id)
        .where(ra.assessed_at >= start, ra.assessed_at < end,
               department_clause(Patient.department_id, f=f, scope=scope))
        .subquery()
    )
    rows = conn.execute(select(ranked.c.model, ranked.c.level, func.count()).where(ranked.c.rn == 1)
                        .group_by(ranked.c.model, ranked.c.level).order_by(ranked.c.model, ranked.c.level)).all()
    return pd.DataFrame([{"model": m, "level": lv or "—", "patients": int(n)} for m, lv, n in rows],
                        columns=["model", "level", "patients"])


def segment_cards(*, conn: Conn, scope: DataScope, department_id: int | None, tag_code: str | None, as_of: datetime,
                  limit: int) -> list[str]:
    """Card numbers of active patients in a department and/or with an open tag, in card order, at most `limit`."""
    stmt = select(Patient.card_no).where(Patient.status == "active")
    if department_id is not None:
        stmt = stmt.where(Patient.department_id == department_id)
    if scope.department_ids is not None:
        stmt = stmt.where(Patient.department_id.in_(scope.department_ids))
    if tag_code:
        tagged = select(PatientTag.patient_id).where(
            PatientTag.tag_code == tag_code, PatientTag.since <= as_of,
            or_(PatientTag.until.is_(None), PatientTag.until > as_of))
        stmt = stmt.where(Patient.id.in_(tagged))
    return [str(c) for c in conn.execute(stmt.order_by(Patient.card_no).limit(limit)).scalars()]


def open_tag_codes(*, conn: Conn, lang: str) -> list[tuple[str, str]]:
    """(code, name) of the tags with a rule, for the segment picker."""
    name = TagRule.name_zh if lang == "zh_CN" else TagRule.name_en
    rows = conn.execute(select(TagRule.code, name).where(TagRule.active.is_(True)).order_by(TagRule.code)).all()
    seen: dict[str, str] = {}
    for code, n in rows:
        seen[str(code)] = str(n)
    return sorted(seen.items())
