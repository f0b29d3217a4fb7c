"""Satisfaction read side: NPS by period/department/doctor/channel, top-box by item, response rate, comments,
drill-down and service-recovery statistics. Aggregation is in SQL; frames hold at most one row per group."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    Label,
    Select,
    and_,
    case,
    func,
    literal,
    select,
    true,
)

from db.datefn import month_of, seconds_between
from db.models import (
    Department,
    ImportMapping,
    NpsDaily,
    NpsRollupState,
    Patient,
    Questionnaire,
    QuestionnaireItem,
    ServiceRecoveryCase,
    SurveyAnswer,
    SurveyInvitation,
    SurveyResponse,
)
from i18n import t
from queries.filters import DataScope, PeriodFilter, department_clause
from queries.metrics import PASSIVE_MIN, PROMOTER_MIN, NpsResult, nps

GroupBy = Literal["month", "quarter", "department", "doctor", "channel"]
GROUPS: tuple[GroupBy, ...] = ("month", "quarter", "department", "doctor", "channel")
BANDS = ("promoter", "passive", "detractor")
NPS_COLUMNS = ["key", "label", "responses", "promoters", "passives", "detractors", "nps", "ci_low", "ci_high",
               "promoter_pct", "passive_pct", "detractor_pct", "small_sample"]


@dataclass(frozen=True)
class SurveyFilter(PeriodFilter):
    """A period and departments, optionally one channel, one doctor and one questionnaire code."""

    channel: str | None = None
    doctor: str | None = None
    questionnaire: str = "satisfaction"

    def describe(self, lang: str, count: int | None = None, unit_key: str | None = None) -> str:
        text = super().describe(lang, count, unit_key)
        sep = t("filter.separator", lang)
        if self.channel:
            text += sep + t("satisfaction.filter.channel_is", lang, channel=t(f"satisfaction.channel.{self.channel}",
                                                                                 lang))
        if self.doctor:
            text += sep + t("satisfaction.filter.doctor_is", lang, doctor=self.doctor)
        return text


def _bounds(f: PeriodFilter) -> tuple[datetime, datetime]:
    # Half-open [from 00:00, to + 1 day 00:00): the whole last day counts and the (submitted_at, ...) index serves.
    return datetime.combine(f.date_from, time.min), datetime.combine(f.date_to + timedelta(days=1), time.min)


def _where(f: PeriodFilter, scope: DataScope) -> ColumnElement[bool]:
    start, end = _bounds(f)
    clause = and_(
        SurveyResponse.submitted_at >= start,
        SurveyResponse.submitted_at < end,
        department_clause(SurveyResponse.department_id, f=f, scope=scope),
    )
    if isinstance(f, SurveyFilter):
        if f.channel:
            clause = clause & (SurveyResponse.channel == f.channel)
        if f.doctor:
            clause = clause & (SurveyResponse.doctor_name == f.doctor)
    return clause


def _nps_sums() -> tuple[Label[Any], Label[Any], Label[Any]]:
    s = SurveyResponse.nps_score
    return (
        func.coalesce(func.sum(case((s >= PROMOTER_MIN, 1), else_=0)), 0).label("promoters"),
        func.coalesce(func.sum(case((and_(s >= PASSIVE_MIN, s < PROMOTER_MIN), 1), else_=0)), 0).label("passives"),
        func.coalesce(func.sum(case((s < PASSIVE_MIN, 1), else_=0)), 0).label("detractors"),
    )


def _row(key: Any, label: str, r: NpsResult) -> dict[str, Any]:
    n = r.responses
    return {
        "key": key, "label": label, "responses": n, "promoters": r.promoters, "passives": r.passives,
        "detractors": r.detractors, "nps": r.nps, "ci_low": r.ci_low, "ci_high": r.ci_high,
        "promoter_pct": r.promoters / n * 100 if n else None, "passive_pct": r.passives / n * 100 if n else None,
        "detractor_pct": r.detractors / n * 100 if n else None, "small_sample": r.small_sample,
    }


CountKey = Any
GroupKind = Literal["none", "month", "department", "channel", "doctor", "month_department"]


def _watermark(conn: Connection) -> int:
    w = conn.execute(select(NpsRollupState.max_response_id).where(NpsRollupState.id == 1)).scalar()
    return int(w or 0)


def _counts(*, conn: Connection, f: PeriodFilter, scope: DataScope, group: GroupKind) -> dict[CountKey, list[int]]:
    """promoters, passives, detractors per group key.

    Whole days come from the nps_daily rollup; responses newer than its watermark (a bulk load not yet folded
    in) are added from survey_responses, so the result is exact either way. A doctor filter or grouping reads
    survey_responses only (the rollup has no doctor).
    """
    acc: dict[CountKey, list[int]] = {}

    def put(key: CountKey, p: Any, pa: Any, d: Any) -> None:
        a = acc.setdefault(key, [0, 0, 0])
        a[0] += int(p or 0)
        a[1] += int(pa or 0)
        a[2] += int(d or 0)

    use_rollup = group != "doctor" and not (isinstance(f, SurveyFilter) and f.doctor)
    raw_where = and_(_where(f, scope), SurveyResponse.nps_score.is_not(None))
    if use_rollup:
        w = _watermark(conn)
        raw_where = raw_where & (SurveyResponse.id > w)
        r = NpsDaily
        where = and_(r.day >= f.date_from, r.day <= f.date_to, department_clause(r.department_id, f=f, scope=scope))
        if isinstance(f, SurveyFilter) and f.channel:
            where = where & (r.channel == f.channel)
        rmap: dict[str, list[Any]] = {
            "none": [], "month": [month_of(r.day)], "department": [r.department_id], "channel": [r.channel],
            "month_department": [month_of(r.day), r.department_id],
        }
        rkeys = rmap[group]
        sums = [func.sum(r.promoters), func.sum(r.passives), func.sum(r.detractors)]
        stmt = select(*rkeys, *sums).where(where)
        if rkeys:
            stmt = stmt.group_by(*rkeys)
        for row in conn.execute(stmt).all():
            key = tuple(row[:len(rkeys)])
            if group == "department":
                key = (key[0] or None,)
            elif group == "channel":
                key = (key[0] or None,)
            elif group == "month_department":
                key = (key[0], key[1] or None)
            put(key, *row[len(rkeys):])
    s = SurveyResponse
    smap: dict[str, list[Any]] = {
        "none": [], "month": [month_of(s.submitted_at)], "department": [s.department_id], "channel": [s.channel],
        "doctor": [s.doctor_name], "month_department": [month_of(s.submitted_at), s.department_id],
    }
    skeys = smap[group]
    stmt = select(*skeys, *_nps_sums()).where(raw_where)
    if skeys:
        stmt = stmt.group_by(*skeys)
    for row in conn.execute(stmt).all():
        put(tuple(row[:len(skeys)]), *row[len(skeys):])
    return acc


def nps_summary(*, conn: Connection, f: PeriodFilter, scope: DataScope) -> NpsResult:
    counts = _counts(conn=conn, f=f, scope=scope, group="none").get((), [0, 0, 0])
    return nps(*counts)


def quarter_of(month: str) -> str:
    """'2026-05' -> '2026-Q2'."""
    year, m = month.split("-")
    return f"{year}-Q{(int(m) - 1) // 3 + 1}"


def nps_by(*, conn: Connection, f: PeriodFilter, scope: DataScope, by: GroupBy, lang: str = "en") -> pd.DataFrame:
    """One row per group with n, the P/P/D split, NPS and its 95% interval (columns NPS_COLUMNS)."""
    if by not in GROUPS:
        raise ValueError(by)
    records: list[dict[str, Any]] = []
    if by in ("month", "quarter"):
        months = _counts(conn=conn, f=f, scope=scope, group="month")
        if by == "month":
            records = [_row(k, k, nps(*v)) for (k,), v in sorted(months.items())]
        else:
            # Months are summed into quarters here: at most 4 rows a year, the counts come from SQL.
            acc: dict[str, list[int]] = {}
            for (k,), v in months.items():
                a = acc.setdefault(quarter_of(k), [0, 0, 0])
                for i in range(3):
                    a[i] += v[i]
            records = [_row(k, k, nps(*v)) for k, v in sorted(acc.items())]
    elif by == "department":
        counts = _counts(conn=conn, f=f, scope=scope, group="department")
        name = Department.name_zh if lang == "zh_CN" else Department.name_en
        ids = [k for (k,) in counts if k is not None]
        names = {int(i): str(n) for i, n in conn.execute(select(Department.id, name).where(Department.id.in_(ids)))}
        unknown = t("satisfaction.unknown_department", lang)
        records = [_row(k, names.get(k, unknown) if k is not None else unknown, nps(*v))
                   for (k,), v in counts.items()]
        records.sort(key=lambda r: str(r["label"]))
    else:
        counts = _counts(conn=conn, f=f, scope=scope, group="doctor" if by == "doctor" else "channel")
        unknown = t("satisfaction.unknown", lang)
        for (k,), v in counts.items():
            label = (t(f"satisfaction.channel.{k}", lang) if by == "channel" and k else (k or unknown))
            records.append(_row(k, label, nps(*v)))
        records.sort(key=lambda r: (-r["responses"], str(r["label"])))
    return pd.DataFrame.from_records(records, columns=NPS_COLUMNS)


def month_by_department(*, conn: Connection, f: PeriodFilter, scope: DataScope) -> pd.DataFrame:
    """NPS per month x department (the dashboard's 12-month view): month, department_id, counts, nps."""
    counts = _counts(conn=conn, f=f, scope=scope, group="month_department")
    out = []
    for (m, dep), v in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        r = nps(*v)
        out.append({"month": m, "department_id": dep, "responses": r.responses, "promoters": r.promoters,
                    "passives": r.passives, "detractors": r.detractors, "nps": r.nps})
    return pd.DataFrame.from_records(out, columns=["month", "department_id", "responses", "promoters", "passives",
                                                   "detractors", "nps"])


# --- top box -----------------------------------------------------------------------------------------------


def topbox(*, conn: Connection, f: SurveyFilter | PeriodFilter, scope: DataScope, lang: str = "en") -> pd.DataFrame:
    """Top-box % per item x department: top-box answers / answers to that item (skipped items are not in the
    denominator: no answer row, or an empty one). Versions of a template are pooled by item code."""
    code = f.questionnaire if isinstance(f, SurveyFilter) else "satisfaction"
    items = conn.execute(
        select(QuestionnaireItem.id, QuestionnaireItem.item_code, QuestionnaireItem.top_box,
               QuestionnaireItem.text_zh, QuestionnaireItem.text_en, QuestionnaireItem.position)
        .join(Questionnaire, Questionnaire.id == QuestionnaireItem.questionnaire_id)
        .where(Questionnaire.code == code, QuestionnaireItem.top_box.is_not(None))
    ).all()
    meta: dict[int, tuple[str, set[float]]] = {}
    texts: dict[str, tuple[str, int]] = {}
    for iid, icode, tb, zh, en, pos in items:
        if not tb:
            continue
        meta[int(iid)] = (icode, {float(v) for v in tb})
        texts[icode] = (zh if lang == "zh_CN" else en, int(pos))
    columns = ["item_code", "item", "position", "department_id", "department", "answers", "top_box", "pct"]
    if not meta:
        return pd.DataFrame(columns=columns)
    # Counts per item x department x value in SQL (a few hundred rows at most); the top-box sets are per item.
    rows = conn.execute(
        select(SurveyAnswer.item_id, SurveyResponse.department_id, SurveyAnswer.value_num, func.count())
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(_where(f, scope), SurveyAnswer.item_id.in_(list(meta)), SurveyAnswer.value_num.is_not(None))
        .group_by(SurveyAnswer.item_id, SurveyResponse.department_id, SurveyAnswer.value_num)
    ).all()
    acc: dict[tuple[str, int | None], list[int]] = {}
    for iid, dep, value, n in rows:
        icode, box = meta[int(iid)]
        a = acc.setdefault((icode, dep), [0, 0])
        a[0] += int(n)
        if value is not None and float(value) in box:
            a[1] += int(n)
    names = dict(conn.execute(select(Department.id, Department.name_zh if lang == "zh_CN" else Department.name_en))
                 .all())
    unknown = t("satisfaction.unknown_department", lang)
    out = [{"item_code": icode, "item": texts[icode][0], "position": texts[icode][1], "department_id": dep,
            "department": names.get(dep, unknown) if dep is not None else unknown, "answers": n, "top_box": tb,
            "pct": tb / n * 100 if n else None}
           for (icode, dep), (n, tb) in acc.items()]
    df = pd.DataFrame.from_records(out, columns=columns)
    return df.sort_values(["position", "department"]).reset_index(drop=True)


# --- response rate -----------------------------------------------------------------------------------------


def response_rate(*, conn: Connection, f: PeriodFilter, scope: DataScope, lang: str = "en") -> pd.DataFrame:
    """Per department: invitations sent in the period, those answered, and the rate; empty without invitations."""
    start, end = _bounds(f)
    answered = (select(SurveyResponse.invitation_id).where(SurveyResponse.invitation_id.is_not(None))
                .distinct().subquery())
    name = Department.name_zh if lang == "zh_CN" else Department.name_en
    rows = conn.execute(
        select(SurveyInvitation.department_id, name, func.count(SurveyInvitation.id),
               func.count(answered.c.invitation_id))
        .outerjoin(answered, answered.c.invitation_id == SurveyInvitation.id)
        .outerjoin(Department, Department.id == SurveyInvitation.department_id)
        .where(SurveyInvitation.sent_at >= start, SurveyInvitation.sent_at < end,
               department_clause(SurveyInvitation.department_id, f=f, scope=scope))
        .group_by(SurveyInvitation.department_id, name)
        .order_by(name)
    ).all()
    unknown = t("satisfaction.unknown_department", lang)
    out = [{"department_id": d, "department": n or unknown, "invited": int(i), "responded": int(r),
            "rate": int(r) / int(i) * 100 if i else None} for d, n, i, r in rows]
    return pd.DataFrame.from_records(out, columns=["department_id", "department", "invited", "responded", "rate"])


# --- comments and drill-down -------------------------------------------------------------------------------


def _band_clause(band: str | None) -> ColumnElement[bool]:
    s = SurveyResponse.nps_score
    if band is None:
        return true()
    if band == "promoter":
        return s >= PROMOTER_MIN
    if band == "passive":
        return and_(s >= PASSIVE_MIN, s < PROMOTER_MIN)
    if band == "detractor":
        return s < PASSIVE_MIN
    raise ValueError(band)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


RESPONSE_COLUMNS = ["response_id", "submitted_at", "department", "doctor", "channel", "nps_score", "total_score",
                    "comment", "card_no"]


def _responses_stmt(lang: str) -> Select[*tuple[Any, ...]]:
    name = Department.name_zh if lang == "zh_CN" else Department.name_en
    return (
        select(SurveyResponse.id, SurveyResponse.submitted_at, name, SurveyResponse.doctor_name,
               SurveyResponse.channel, SurveyResponse.nps_score, SurveyResponse.total_score,
               SurveyResponse.comment, Patient.card_no)
        .outerjoin(Department, Department.id == SurveyResponse.department_id)
        .outerjoin(Patient, Patient.id == SurveyResponse.patient_id)
    )


def comments(
    *, conn: Connection, f: PeriodFilter, scope: DataScope, band: str | None = None, keyword: str | None = None,
    lang: str = "en", limit: int = 50, offset: int = 0,
) -> tuple[pd.DataFrame, int]:
    """Verbatim comments, newest first, one page; and how many match in all."""
    cond = and_(_where(f, scope), SurveyResponse.comment.is_not(None), SurveyResponse.comment != "",
                _band_clause(band))
    if keyword and keyword.strip():
        cond = cond & SurveyResponse.comment.ilike(f"%{_escape_like(keyword.strip())}%", escape="\\")
    total = int(conn.execute(select(func.count()).select_from(SurveyResponse).where(cond)).scalar_one())
    rows = conn.execute(_responses_stmt(lang).where(cond)
                        .order_by(SurveyResponse.submitted_at.desc(), SurveyResponse.id.desc())
                        .limit(limit).offset(offset)).all()
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS), total


def drill_down(
    *, conn: Connection, f: PeriodFilter, scope: DataScope, by: GroupBy, key: Any, band: str | None = None,
    lang: str = "en", limit: int = 100, offset: int = 0,
) -> tuple[pd.DataFrame, int]:
    """The responses behind one point of an NPS chart (a month, quarter, department, doctor or channel)."""
    cond = and_(_where(f, scope), SurveyResponse.nps_score.is_not(None), _band_clause(band))
    if by == "month":
        y, m = (int(x) for x in str(key).split("-"))
        first = date(y, m, 1)
        nxt = date(y + (m == 12), m % 12 + 1, 1)
        cond = cond & (SurveyResponse.submitted_at >= datetime.combine(first, time.min)) & (
            SurveyResponse.submitted_at < datetime.combine(nxt, time.min))
    elif by == "quarter":
        year_text, quarter_text = str(key).split("-Q")
        first = date(int(year_text), (int(quarter_text) - 1) * 3 + 1, 1)
        last_month = first.month + 3
        nxt = date(first.year + (last_month > 12), (last_month - 1) % 12 + 1, 1)
        cond = cond & (SurveyResponse.submitted_at >= datetime.combine(first, time.min)) & (
            SurveyResponse.submitted_at < datetime.combine(nxt, time.min))
    elif by == "department":
        cond = cond & (SurveyResponse.department_id.is_(None) if key is None or pd.isna(key)
                       else SurveyResponse.department_id == int(key))
    else:
        col = SurveyResponse.doctor_name if by == "doctor" else SurveyResponse.channel
        cond = cond & (col.is_(None) if key is None or (isinstance(key, float) and pd.isna(key)) else col == key)
    total = int(conn.execute(select(func.count()).select_from(SurveyResponse).where(cond)).scalar_one())
    rows = conn.execute(_responses_stmt(lang).where(cond)
                        .order_by(SurveyResponse.submitted_at.desc(), SurveyResponse.id.desc())
                        .limit(limit).offset(offset)).all()
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS), total


# --- service recovery --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryStats:
    opened: int
    open: int
    overdue: int
    closed: int
    closed_within_sla: int
    mean_hours_to_close: float | None

    @property
    def closed_loop_rate(self) -> float | None:
        """Closed cases / cases opened in the period."""
        return None if self.opened == 0 else self.closed / self.opened

    @property
    def within_sla_rate(self) -> float | None:
        return None if self.closed == 0 else self.closed_within_sla / self.closed


def _case_where(f: PeriodFilter, scope: DataScope) -> ColumnElement[bool]:
    start, end = _bounds(f)
    return and_(ServiceRecoveryCase.opened_at >= start, ServiceRecoveryCase.opened_at < end,
                department_clause(ServiceRecoveryCase.department_id, f=f, scope=scope))


def recovery_stats(*, conn: Connection, f: PeriodFilter, scope: DataScope, now: datetime) -> RecoveryStats:
    """Cases opened in the period: how many are open, overdue (open past their SLA), closed, and time to close."""
    c = ServiceRecoveryCase
    is_closed = c.status == "closed"
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((~is_closed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(~is_closed, c.sla_due_at < now), 1), else_=0)), 0),
            func.coalesce(func.sum(case((is_closed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(is_closed, c.closed_at <= c.sla_due_at), 1), else_=0)), 0),
            func.avg(case((is_closed, seconds_between(c.closed_at, c.opened_at)), else_=literal(None))),
        ).where(_case_where(f, scope))
    ).one()
    mean = None if row[5] is None else float(row[5]) / 3600
    return RecoveryStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), mean)


CASE_COLUMNS = ["case_id", "version", "opened_at", "sla_due_at", "status", "attempts", "root_cause", "rerating",
                "closed_at", "department", "card_no", "patient", "nps_score", "comment", "owner_id", "overdue"]


def recovery_cases(
    *, conn: Connection, f: PeriodFilter, scope: DataScope, now: datetime, status: str | None = None,
    overdue_only: bool = False, owner_id: int | None = None, lang: str = "en", limit: int = 50, offset: int = 0,
) -> tuple[pd.DataFrame, int]:
    """One page of cases, the most urgent (earliest SLA) first; and how many match."""
    c = ServiceRecoveryCase
    cond = _case_where(f, scope)
    if status == "active":
        cond = cond & (c.status != "closed")
    elif status:
        cond = cond & (c.status == status)
    if overdue_only:
        cond = cond & (c.status != "closed") & (c.sla_due_at < now)
    if owner_id is not None:
        cond = cond & (c.owner_id == owner_id)
    total = int(conn.execute(select(func.count()).select_from(c).where(cond)).scalar_one())
    name = Department.name_zh if lang == "zh_CN" else Department.name_en
    rows = conn.execute(
        select(c.id, c.version, c.opened_at, c.sla_due_at, c.status, c.attempts, c.root_cause, c.rerating,
               c.closed_at, name, Patient.card_no, Patient.name, SurveyResponse.nps_score, SurveyResponse.comment,
               c.owner_id, and_(c.status != "closed", c.sla_due_at < now))
        .join(SurveyResponse, SurveyResponse.id == c.response_id)
        .outerjoin(Department, Department.id == c.department_id)
        .outerjoin(Patient, Patient.id == c.patient_id)
        .where(cond)
        .order_by((c.status == "closed"), c.sla_due_at, c.id)
        .limit(limit).offset(offset)
    ).all()
    df = pd.DataFrame(rows, columns=CASE_COLUMNS)
    df["overdue"] = df["overdue"].astype(bool)
    return df, total


@dataclass(frozen=True)
class RecoveryOutcome:
    """Re-ratings of closed cases: they are not NPS responses (see services/recovery.py) but the recovery outcome."""

    closed: int
    rerated: int
    mean_before: float | None  # the detractor score that opened the case
    mean_after: float | None  # the re-rating
    recovered: int  # re-rated 7 or more: no longer a detractor
    promoters: int  # re-rated 9 or 10

    @property
    def rerated_rate(self) -> float | None:
        return None if self.closed == 0 else self.rerated / self.closed

    @property
    def recovered_rate(self) -> float | None:
        return None if self.rerated == 0 else self.recovered / self.rerated


def recovery_outcome(*, conn: Connection, f: PeriodFilter, scope: DataScope) -> RecoveryOutcome:
    """Cases opened in the period and closed: how many were re-rated, the score before and after, recovered."""
    c = ServiceRecoveryCase
    rated = c.rerating.is_not(None)
    row = conn.execute(
        select(
            func.count(),
            func.count(c.rerating),
            func.avg(case((rated, SurveyResponse.nps_score), else_=literal(None))),
            func.avg(c.rerating),
            func.coalesce(func.sum(case((c.rerating >= PASSIVE_MIN, 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.rerating >= PROMOTER_MIN, 1), else_=0)), 0),
        )
        .select_from(c).join(SurveyResponse, SurveyResponse.id == c.response_id)
        .where(_case_where(f, scope), c.status == "closed")
    ).one()
    return RecoveryOutcome(int(row[0]), int(row[1]), None if row[2] is None else float(row[2]),
                           None if row[3] is None else float(row[3]), int(row[4]), int(row[5]))


def recovery_by_root_cause(*, conn: Connection, f: PeriodFilter, scope: DataScope) -> pd.DataFrame:
    c = ServiceRecoveryCase
    rows = conn.execute(select(c.root_cause, func.count()).where(_case_where(f, scope), c.status == "closed")
                        .group_by(c.root_cause).order_by(func.count().desc())).all()
    return pd.DataFrame(rows, columns=["root_cause", "cases"])


# --- export ------------------------------------------------------------------------------------------------


def export_rows(*, conn: Connection, f: PeriodFilter, scope: DataScope, by: GroupBy,
                lang: str = "en") -> list[dict[str, Any]]:
    """The CSV export: period (or department), responses, promoters, passives, detractors, nps (one decimal)."""
    df = nps_by(conn=conn, f=f, scope=scope, by=by, lang=lang)
    first = "department" if by == "department" else "period" if by in ("month", "quarter") else by
    return [{first: r["label"], "responses": int(r["responses"]), "promoters": int(r["promoters"]),
             "passives": int(r["passives"]), "detractors": int(r["detractors"]),
             "nps": "" if r["nps"] is None or pd.isna(r["nps"]) else f"{float(r['nps']):.1f}"}
            for r in df.to_dict("records")]



# --- templates ---------------------------------------------------------------------------------------------


def questionnaire_list(*, conn: Connection, lang: str = "en") -> pd.DataFrame:
    """Every template version: code, version, kind, title, status, items and responses."""
    items = (select(QuestionnaireItem.questionnaire_id.label("qid"), func.count().label("n"))
             .group_by(QuestionnaireItem.questionnaire_id).subquery())
    answered = (select(SurveyResponse.questionnaire_id.label("qid"), func.count().label("n"))
                .group_by(SurveyResponse.questionnaire_id).subquery())
    title = Questionnaire.title_zh if lang == "zh_CN" else Questionnaire.title_en
    rows = conn.execute(
        select(Questionnaire.id, Questionnaire.code, Questionnaire.version, Questionnaire.kind, title,
               Questionnaire.status, func.coalesce(items.c.n, 0), func.coalesce(answered.c.n, 0))
        .outerjoin(items, items.c.qid == Questionnaire.id)
        .outerjoin(answered, answered.c.qid == Questionnaire.id)
        .order_by(Questionnaire.code, Questionnaire.version.desc())
    ).all()
    return pd.DataFrame(rows, columns=["id", "code", "version", "kind", "title", "status", "items", "responses"])


# --- saved import mappings ---------------------------------------------------------------------------------


def saved_mappings(*, conn: Connection, fmt: str = "survey-csv") -> dict[str, dict[str, Any]]:
    """The column mappings saved from the Import page for one format, by name."""
    rows = conn.execute(select(ImportMapping.name, ImportMapping.body).where(ImportMapping.format == fmt)
                        .order_by(ImportMapping.name)).all()
    return {str(n): dict(b) for n, b in rows}


def latest_items(*, conn: Connection, code: str, lang: str = "en") -> list[tuple[str, str, bool]]:
    """(item code, text, required) of the newest version of a questionnaire, in order; empty when there is none."""
    newest = select(func.max(Questionnaire.id)).where(
        Questionnaire.code == code,
        Questionnaire.version == select(func.max(Questionnaire.version)).where(Questionnaire.code == code)
        .scalar_subquery()).scalar_subquery()
    text = QuestionnaireItem.text_zh if lang == "zh_CN" else QuestionnaireItem.text_en
    rows = conn.execute(select(QuestionnaireItem.item_code, text, QuestionnaireItem.required)
                        .where(QuestionnaireItem.questionnaire_id == newest)
                        .order_by(QuestionnaireItem.position, QuestionnaireItem.id)).all()
    return [(str(c), str(t_), bool(r)) for c, t_, r in rows]
