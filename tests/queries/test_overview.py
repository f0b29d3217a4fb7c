"""Overview figures on both engines: counts, on-time completion, NPS by month, department scope."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from queries.filters import DataScope, PeriodFilter, scope_for
from queries.overview import departments, nps_by_month, overview_kpis
from tests.factories import create_patient, create_response, create_task, department

ALL = DataScope("manager", None)
PERIOD = PeriodFilter(date(2026, 1, 1), date(2026, 3, 31))


@pytest.fixture
def data(session: Session) -> tuple[int, int]:
    a, b = department(session, "CARD").id, department(session, "ENDO").id
    before = datetime(2025, 6, 1)
    create_patient(session, department_id=a, enrolled_at=before)
    create_patient(session, department_id=a, status="inactive", enrolled_at=before)
    create_patient(session, department_id=b, enrolled_at=before)
    create_patient(session, department_id=b, enrolled_at=datetime(2026, 5, 1))  # enrolled after the period
    due = date(2026, 2, 10)
    create_task(session, department_id=a, due_date=due, status="done", completed_at=datetime(2026, 2, 10, 23, 59))
    create_task(session, department_id=a, due_date=due, status="done", completed_at=datetime(2026, 2, 11, 8, 0))
    create_task(session, department_id=b, due_date=due, status="pending")
    create_task(session, department_id=b, due_date=due, status="cancelled")
    create_task(session, department_id=a, due_date=date(2026, 4, 1), status="done",
                completed_at=datetime(2026, 4, 1))  # due outside the period
    # January: 9, 10, 7, 3 -> (2 - 1) / 4 = 25; March: 6, 6, 10 -> (1 - 2) / 3 = -33.3 (department b)
    for score in (9, 10, 7, 3):
        create_response(session, nps_score=score, department_id=a, submitted_at=datetime(2026, 1, 15, 9))
    for score in (6, 6, 10):
        create_response(session, nps_score=score, department_id=b, submitted_at=datetime(2026, 3, 31, 23, 30))
    create_response(session, nps_score=None, department_id=a, submitted_at=datetime(2026, 1, 20))
    create_response(session, nps_score=0, department_id=a, submitted_at=datetime(2026, 4, 1, 0, 0))  # after
    session.commit()
    return a, b


def test_kpis_for_all_departments(engine: Engine, data: tuple[int, int]) -> None:
    with engine.connect() as conn:
        k = overview_kpis(conn=conn, f=PERIOD, scope=ALL)
    assert (k.active_patients, k.followups_due, k.followups_on_time) == (2, 3, 1)
    assert k.on_time_rate == pytest.approx(1 / 3)
    assert (k.nps.responses, k.nps.promoters, k.nps.passives, k.nps.detractors) == (7, 3, 1, 3)
    assert k.nps.nps == pytest.approx(0.0)


def test_nps_by_month(engine: Engine, data: tuple[int, int]) -> None:
    with engine.connect() as conn:
        df = nps_by_month(conn=conn, f=PERIOD, scope=ALL)
    assert df["month"].tolist() == ["2026-01", "2026-03"]
    assert df["responses"].tolist() == [4, 3]
    assert df["nps"].round(1).tolist() == [25.0, -33.3]


@pytest.mark.parametrize(
    ("chosen", "scope_dept", "expected_responses"),
    [
        ((), None, 7),  # everything
        (("a",), None, 4),  # a department chosen in the filter
        ((), "b", 3),  # a nurse's scope alone
        (("a",), "b", 0),  # a filter outside the scope shows nothing, never another department
    ],
)
def test_filter_and_scope(
    engine: Engine, data: tuple[int, int], chosen: tuple[str, ...], scope_dept: str | None, expected_responses: int
) -> None:
    ids = {"a": data[0], "b": data[1]}
    f = PeriodFilter(PERIOD.date_from, PERIOD.date_to, tuple(ids[c] for c in chosen))
    scope = scope_for(role="nurse", department_id=ids[scope_dept]) if scope_dept else ALL
    with engine.connect() as conn:
        assert overview_kpis(conn=conn, f=f, scope=scope).nps.responses == expected_responses


def test_describe_in_both_languages() -> None:
    f = PeriodFilter(date(2026, 1, 1), date(2026, 6, 30), (1,), ("心内科",))
    assert f.describe("en", 42, "units.patients") == "42 patients, 心内科, 2026-01-01 to 2026-06-30"
    assert f.describe("zh_CN") == "心内科，2026-01-01 至 2026-06-30"
    whole = PeriodFilter(date(2026, 1, 1), date(2026, 1, 31))
    assert whole.describe("en") == "All departments, 2026-01-01 to 2026-01-31"


def test_departments_respect_scope(engine: Engine, data: tuple[int, int]) -> None:
    with engine.connect() as conn:
        mine = departments(conn=conn, scope=scope_for(role="nurse", department_id=data[1]), lang="en")
        every = departments(conn=conn, scope=ALL, lang="zh_CN")
    assert [i for i, _ in mine] == [data[1]]
    assert len(every) > 2 and any(name == "心内科" for _, name in every)


def test_empty_period(engine: Engine) -> None:
    f = PeriodFilter(date(2020, 1, 1), date(2020, 1, 1) + timedelta(days=1))
    with engine.connect() as conn:
        k = overview_kpis(conn=conn, f=f, scope=ALL)
        df = nps_by_month(conn=conn, f=f, scope=ALL)
    assert k.nps.nps is None and k.on_time_rate is None and df.empty
