"""The managers' Overview: KPI figures and NPS by month for a period, departments and scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import pandas as pd
from sqlalchemy import Connection, Label, and_, case, func, select

from db.datefn import month_of
from db.models import Department, FollowupTask, Patient, SurveyResponse
from queries.filters import DataScope, PeriodFilter, department_clause
from queries.metrics import PASSIVE_MIN, PROMOTER_MIN, NpsResult, nps


@dataclass(frozen=True)
class OverviewKpis:
    active_patients: int
    followups_due: int
    followups_on_time: int
    nps: NpsResult

    @property
    def on_time_rate(self) -> float | None:
        return None if self.followups_due == 0 else self.followups_on_time / self.followups_due


def _bounds(f: PeriodFilter) -> tuple[datetime, datetime]:
    # Half-open [from 00:00, to+1 00:00) so the whole last day counts and indexes stay usable.
    return datetime.combine(f.date_from, time.min), datetime.combine(f.date_to + timedelta(days=1), time.min)


def _nps_columns() -> tuple[Label[int], Label[int], Label[int]]:
    s = SurveyResponse.nps_score
    return (
        func.coalesce(func.sum(case((s >= PROMOTER_MIN, 1), else_=0)), 0).label("promoters"),
        func.coalesce(func.sum(case((and_(s >= PASSIVE_MIN, s < PROMOTER_MIN), 1), else_=0)), 0).label(
            "passives"),
        func.coalesce(func.sum(case((s < PASSIVE_MIN, 1), else_=0)), 0).label("detractors"),
    )


def overview_kpis(*, conn: Connection, f: PeriodFilter, scope: DataScope) -> OverviewKpis:
    start, end = _bounds(f)
    active = conn.execute(
        select(func.count())
        .select_from(Patient)
        .where(
            Patient.status == "active",
            Patient.enrolled_at < end,
            department_clause(Patient.department_id, f=f, scope=scope),
        )
    ).scalar_one()
    on_time = case(
        # date() of a timestamp is spelled the same on SQLite and PostgreSQL.
        (and_(FollowupTask.status == "done", func.date(FollowupTask.completed_at) <= FollowupTask.due_date), 1),
        else_=0,
    )
    due, done_on_time = conn.execute(
        select(func.count(), func.coalesce(func.sum(on_time), 0))
        .select_from(FollowupTask)
        .where(
            FollowupTask.due_date >= f.date_from,
            FollowupTask.due_date <= f.date_to,
            FollowupTask.status != "cancelled",
            department_clause(FollowupTask.department_id, f=f, scope=scope),
        )
    ).one()
    p, pa, d = conn.execute(
        select(*_nps_columns()).where(
            SurveyResponse.submitted_at >= start,
            SurveyResponse.submitted_at < end,
            SurveyResponse.nps_score.is_not(None),
            department_clause(SurveyResponse.department_id, f=f, scope=scope),
        )
    ).one()
    return OverviewKpis(int(active), int(due), int(done_on_time), nps(int(p), int(pa), int(d)))


def nps_by_month(*, conn: Connection, f: PeriodFilter, scope: DataScope) -> pd.DataFrame:
    """One row per month: month, responses, promoters, passives, detractors, nps, ci_low, ci_high."""
    start, end = _bounds(f)
    month = month_of(SurveyResponse.submitted_at).label("month")
    rows = conn.execute(
        select(month, *_nps_columns())
        .where(
            SurveyResponse.submitted_at >= start,
            SurveyResponse.submitted_at < end,
            SurveyResponse.nps_score.is_not(None),
            department_clause(SurveyResponse.department_id, f=f, scope=scope),
        )
        .group_by(month)
        .order_by(month)
    ).all()
    records = []
    for m, p, pa, d in rows:
        r = nps(int(p), int(pa), int(d))
        records.append({"month": m, "responses": r.responses, "promoters": r.promoters,
                        "passives": r.passives, "detractors": r.detractors, "nps": r.nps,
                        "ci_low": r.ci_low, "ci_high": r.ci_high})
    columns = ["month", "responses", "promoters", "passives", "detractors", "nps", "ci_low", "ci_high"]
    return pd.DataFrame.from_records(records, columns=columns)


def departments(*, conn: Connection, scope: DataScope, lang: str) -> list[tuple[int, str]]:
    """(id, name) of the departments the user may pick, in the user's language."""
    name = Department.name_zh if lang == "zh_CN" else Department.name_en
    stmt = select(Department.id, name).where(Department.active.is_(True)).order_by(Department.code)
    if scope.department_ids is not None:
        stmt = stmt.where(Department.id.in_(scope.department_ids))
    return [(int(i), str(n)) for i, n in conn.execute(stmt).all()]
