"""Read side of the reports: everything one patient's health report shows, and the quality summary's figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import BigInteger, Connection, Integer, case, func, literal, or_, select, union_all
from sqlalchemy.dialects.postgresql import distinct_on
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
    Questionnaire,
    QuestionnaireItem,
    RiskAssessment,
    SurveyAnswer,
    SurveyResponse,
    TagRule,
    TopboxDaily,
    TopboxRollupState,
    User,
    WellnessPlan,
)
from queries.filters import DataScope, PeriodFilter, department_clause
from queries.followup import CompletionFilter, completion_by

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


def _dialect(conn: Conn) -> str:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    return str(bind.dialect.name)


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


def followup_rates(*, conn: Conn, f: PeriodFilter, scope: DataScope, by: str, lang: str,
                   today: date) -> pd.DataFrame:
    """Follow-up tasks due in the period (cancelled ones left out) per department or nurse, with the Follow-up
    dashboard's measures and definitions (grace 0: on time = done by the due date; contact rate = tasks reached
    at least once / tasks attempted; overdue = still pending past `today`). queries.followup reads them from the
    followup_daily rollup plus the tasks newer than its watermark: exact, and a few thousand rows a year."""
    connection = conn.connection() if isinstance(conn, Session) else conn
    return completion_by(conn=connection, f=CompletionFilter(period=f, today=today, grace_days=0, lang=lang),
                         scope=scope, by=by)


def topbox_by_item(*, conn: Conn, f: PeriodFilter, scope: DataScope, lang: str,
                   questionnaire: str = "satisfaction") -> pd.DataFrame:
    """Top-box answers per item of a questionnaire (versions pooled by item code) over the filter's period and
    departments: answers, top_box and pct, in item order. The same figures as queries.satisfaction.topbox summed
    over departments, read from the topbox_daily rollup plus, live, the responses newer than its watermark (the
    watermark is read inside the statement, so a concurrent refresh is never counted twice)."""
    qi = QuestionnaireItem
    items = conn.execute(
        select(qi.id, qi.item_code, qi.top_box, qi.text_zh, qi.text_en, qi.position)
        .join(Questionnaire, Questionnaire.id == qi.questionnaire_id)
        .where(Questionnaire.code == questionnaire, qi.top_box.is_not(None))
    ).all()
    meta: dict[int, tuple[str, set[float]]] = {}
    texts: dict[str, tuple[str, int]] = {}
    for iid, icode, box, zh, en, pos in items:
        if box:
            meta[int(iid)] = (str(icode), {float(v) for v in box})
            texts.setdefault(str(icode), (zh if lang == "zh_CN" else en, int(pos)))
    columns = ["item_code", "item", "position", "answers", "top_box", "pct"]
    if not meta:
        return pd.DataFrame(columns=columns)
    t = TopboxDaily
    mark_now = func.coalesce(select(TopboxRollupState.max_response_id).where(TopboxRollupState.id == 1)
                             .scalar_subquery(), 0)
    # A literal lower bound of the watermark (it only grows) lets PostgreSQL plan a short id range scan.
    floor = int(conn.execute(select(mark_now)).scalar_one())
    rolled = (select(t.item_id.label("item_id"), t.value.label("value"), t.answers.label("n"))
              .where(t.day >= f.date_from, t.day <= f.date_to, t.item_id.in_(list(meta)),
                     department_clause(t.department_id, f=f, scope=scope)))
    r, a = SurveyResponse, SurveyAnswer
    start, end = _bounds(f.date_from, f.date_to)
    live = (select(a.item_id, a.value_num, literal(1, Integer)).select_from(a).join(r, r.id == a.response_id)
            .where(r.id > literal(floor, BigInteger), r.id > mark_now, r.submitted_at >= start, r.submitted_at < end,
                   department_clause(r.department_id, f=f, scope=scope), a.item_id.in_(list(meta)),
                   a.value_num.is_not(None)))
    cells = union_all(rolled, live).subquery("cells")
    rows = conn.execute(select(cells.c.item_id, cells.c.value, func.sum(cells.c.n))
                        .group_by(cells.c.item_id, cells.c.value)).all()
    acc: dict[str, list[int]] = {}
    for iid, value, n in rows:
        icode, box = meta[int(iid)]
        counts = acc.setdefault(icode, [0, 0])
        counts[0] += int(n)
        if value is not None and float(value) in box:
            counts[1] += int(n)
    out = [{"item_code": code, "item": texts[code][0], "position": texts[code][1], "answers": n, "top_box": top,
            "pct": top / n * 100 if n else None} for code, (n, top) in acc.items()]
    return (pd.DataFrame.from_records(out, columns=columns).sort_values(["position", "item_code"])
            .reset_index(drop=True))


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
    newest_first = (ra.assessed_at.desc(), ra.id.desc())
    postgres = _dialect(conn) == "postgresql"
    if postgres:
        # DISTINCT ON keeps the first row of each (patient, model) in one sort, without a window over every row:
        # a third faster at 1,000,000 assessments in the period.
        stmt = (select(ra.model, ra.level).ext(distinct_on(ra.patient_id, ra.model))
                .order_by(ra.patient_id, ra.model, *newest_first))
    else:
        stmt = select(ra.model, ra.level, func.row_number().over(partition_by=(ra.patient_id, ra.model),
                                                                 order_by=newest_first).label("rn"))
    if f.department_ids or scope.department_ids is not None:
        # Departments live on the patient: join only when they narrow the count (at 1,000,000 patients the
        # join is a third of the query).
        stmt = stmt.join(Patient, Patient.id == ra.patient_id).where(
            department_clause(Patient.department_id, f=f, scope=scope))
    latest = stmt.where(ra.assessed_at >= start, ra.assessed_at < end).subquery()
    query = select(latest.c.model, latest.c.level, func.count())
    if not postgres:
        query = query.where(latest.c.rn == 1)
    rows = conn.execute(query.group_by(latest.c.model, latest.c.level)
                        .order_by(latest.c.model, latest.c.level)).all()
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


def patient_ids(*, conn: Conn, card_nos: list[str]) -> dict[str, int]:
    """Patient id by card number, for auditing a batch of reports (in chunks: parameter limits)."""
    out: dict[str, int] = {}
    for i in range(0, len(card_nos), 500):
        chunk = card_nos[i:i + 500]
        out.update({str(c): int(pid) for c, pid in conn.execute(
            select(Patient.card_no, Patient.id).where(Patient.card_no.in_(chunk))).all()})
    return out


def open_tag_codes(*, conn: Conn, lang: str) -> list[tuple[str, str]]:
    """(code, name) of the tags with a rule, for the segment picker."""
    name = TagRule.name_zh if lang == "zh_CN" else TagRule.name_en
    rows = conn.execute(select(TagRule.code, name).where(TagRule.active.is_(True)).order_by(TagRule.code)).all()
    seen: dict[str, str] = {}
    for code, n in rows:
        seen[str(code)] = str(n)
    return sorted(seen.items())
