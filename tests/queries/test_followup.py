"""Follow-up reads: worklist buckets and sorting, completion rates (worked examples), HEARTS cohort boundaries."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from queries import followup as q
from queries.filters import PeriodFilter, scope_for
from services import followup as svc
from services.followup import ContactInput
from tests.factories import create_patient, create_task, create_user, department
from tests.factories_followup import (
    as_current,
    create_bp,
    create_condition,
    create_record,
    create_risk,
    create_tag,
    day,
)

TODAY = date(2026, 6, 15)
ALL = scope_for(role="manager", department_id=None)


def test_worklist_buckets_sorting_and_scope(session: Session) -> None:
    dept, other = department(session), department(session, "ONC")
    nurse = create_user(session, department_id=dept.id)
    colleague = create_user(session, department_id=dept.id)
    low = create_patient(session, department_id=dept.id, birth_date=date(1960, 6, 16))
    high = create_patient(session, department_id=dept.id)
    create_risk(session, patient_id=high.id, level="low", assessed_at=datetime(2025, 1, 1))
    create_risk(session, patient_id=high.id, level="high", assessed_at=datetime(2026, 1, 1))
    create_risk(session, patient_id=low.id, level="low", assessed_at=datetime(2026, 1, 1))
    t_over = create_task(session, patient_id=low.id, assignee_id=nurse.id, department_id=dept.id,
                         due_date=TODAY - timedelta(days=3))
    create_task(session, patient_id=high.id, assignee_id=nurse.id, department_id=dept.id, due_date=TODAY)
    create_task(session, patient_id=high.id, assignee_id=nurse.id, department_id=dept.id,
                due_date=TODAY + timedelta(days=5))
    create_task(session, patient_id=low.id, assignee_id=nurse.id, department_id=dept.id,
                due_date=TODAY + timedelta(days=30))  # beyond the horizon
    create_task(session, patient_id=low.id, assignee_id=nurse.id, department_id=dept.id, due_date=TODAY,
                status="done")
    create_task(session, patient_id=low.id, assignee_id=colleague.id, department_id=dept.id, due_date=TODAY,
                kind="service_recovery")
    create_task(session, patient_id=low.id, assignee_id=None, department_id=other.id, due_date=TODAY)
    conn = session.connection()
    f = q.WorklistFilter(user_id=nurse.id, department_id=dept.id, today=TODAY, lang="en")
    df = q.worklist(conn=conn, f=f)
    assert list(df["due_date"]) == [TODAY - timedelta(days=3), TODAY, TODAY + timedelta(days=5)]
    first = df.iloc[0]
    assert (first["task_id"], first["overdue_days"], first["risk"], first["age"]) == (t_over.id, 3, "low", 65)
    assert list(df["risk"]) == ["low", "high", "high"]
    by_risk = q.worklist(conn=conn, f=q.WorklistFilter(**{**f.__dict__, "sort": "risk"}))
    assert list(by_risk["risk"]) == ["high", "high", "low"]
    assert q.worklist_counts(conn=conn, f=f) == q.WorklistCounts(1, 1, 1)
    for bucket, n in (("overdue", 1), ("today", 1), ("upcoming", 1)):
        assert len(q.worklist(conn=conn, f=q.WorklistFilter(**{**f.__dict__, "bucket": bucket}))) == n
    dept_view = q.worklist(conn=conn, f=q.WorklistFilter(**{**f.__dict__, "view": "department"}))
    assert "service_recovery" in set(dept_view["kind"]) and len(dept_view) == 4
    page2 = q.worklist(conn=conn, f=q.WorklistFilter(**{**f.__dict__, "limit": 2, "offset": 2}))
    assert len(page2) == 1


# Worked examples. Each task: (due offset from the period start, status, completion offset from due or None,
# outcomes logged). Period: 2026-05-01..2026-05-31, today 2026-06-15.
START = date(2026, 5, 1)
CASES = [
    pytest.param([(0, "done", 0, ["reached"]), (1, "done", 2, ["reached"])], 0,
                 {"due": 2, "on_time": 1, "attempted": 2, "reached": 2, "on_time_rate": 0.5, "contact_rate": 1.0},
                 id="late-by-two-days-without-grace"),
    pytest.param([(0, "done", 0, ["reached"]), (1, "done", 2, ["reached"])], 2,
                 {"due": 2, "on_time": 2, "on_time_rate": 1.0}, id="grace-two-days-covers-it"),
    pytest.param([(0, "done", -1, ["no_answer", "reached"]), (3, "unreachable", 0, ["no_answer"] * 3),
                  (5, "pending", None, []), (30, "cancelled", None, [])], 0,
                 {"due": 3, "on_time": 1, "attempted": 2, "reached": 1, "contact_rate": 0.5, "overdue": 1,
                  "mean_days_overdue": 40.0}, id="unreachable-overdue-cancelled"),
    pytest.param([(0, "pending", None, []), (10, "pending", None, [])], 0,
                 {"due": 2, "on_time": 0, "attempted": 0, "overdue": 2, "mean_days_overdue": 40.0},
                 id="no-attempts-contact-rate-undefined"),
]


@pytest.mark.parametrize(("tasks", "grace", "expected"), CASES)
def test_completion_rates(session: Session, tasks: list[tuple[int, str, int | None, list[str]]], grace: int,
                          expected: dict[str, float]) -> None:
    dept = department(session)
    for offset, status, done_after, outcomes in tasks:
        due = START + timedelta(days=offset)
        completed = None if done_after is None else day(due + timedelta(days=done_after), 18)
        t = create_task(session, department_id=dept.id, due_date=due, status=status, completed_at=completed,
                        attempts=len(outcomes))
        for i, outcome in enumerate(outcomes):
            create_record(session, task_id=t.id, patient_id=t.patient_id, outcome=outcome,
                          contacted_at=day(due, 9 + i))
    f = q.CompletionFilter(PeriodFilter(START, date(2026, 5, 31)), today=TODAY, grace_days=grace)
    row = q.completion_total(conn=session.connection(), f=f, scope=ALL).iloc[0]
    for key, value in expected.items():
        assert row[key] == pytest.approx(value), key
    if expected.get("attempted") == 0:
        assert row["contact_rate"] != row["contact_rate"]  # NaN: no attempts, no rate


def test_completion_groupings_and_drilldown(session: Session) -> None:
    a, b = department(session), department(session, "ONC")
    nurse = create_user(session, department_id=a.id, display_name="李护士")
    followup_plan = svc.ensure_builtin_plans(session)[0]
    create_task(session, department_id=a.id, assignee_id=nurse.id, plan_id=followup_plan.id, due_date=START,
                status="done", completed_at=day(START))
    create_task(session, department_id=b.id, due_date=date(2026, 6, 2))
    f = q.CompletionFilter(PeriodFilter(START, date(2026, 6, 30)), today=TODAY, lang="en")
    conn = session.connection()
    by_dept = q.completion_by(conn=conn, f=f, scope=ALL, by="department")
    assert list(by_dept["due"]) == [1, 1] and list(by_dept["on_time"]) == [1, 0]
    summed = q.total_of(by_dept).iloc[0].fillna(-1).to_dict()
    assert summed == q.completion_total(conn=conn, f=f, scope=ALL).iloc[0].fillna(-1).to_dict()
    assert list(q.completion_by(conn=conn, f=f, scope=ALL, by="month")["key"]) == ["2026-05", "2026-06"]
    by_nurse = q.completion_by(conn=conn, f=f, scope=ALL, by="nurse")
    assert "李护士" in set(by_nurse["label"])
    by_plan = q.completion_by(conn=conn, f=f, scope=ALL, by="plan")
    assert set(by_plan["label"]) == {"Post-discharge follow-up", "followup"}
    drill = q.completion_drilldown(conn=conn, f=f, scope=ALL, by="department", key=a.id)
    assert len(drill) == 1 and bool(drill.iloc[0]["on_time"])
    nurse_scope = scope_for(role="nurse", department_id=b.id)
    assert int(q.completion_total(conn=conn, f=f, scope=nurse_scope).iloc[0]["due"]) == 1


AS_OF = date(2026, 6, 15)


@pytest.mark.parametrize(
    ("reading", "cohort"),
    [
        (None, "lost_to_followup"),
        ((date(2026, 3, 15), 130, 80), "controlled"),  # exactly 3 months ago: still within 3 months
        ((date(2026, 3, 14), 130, 80), "missed_visit"),  # a day earlier: missed visit
        ((date(2025, 6, 15), 130, 80), "missed_visit"),  # exactly 12 months ago: not yet lost
        ((date(2025, 6, 14), 130, 80), "lost_to_followup"),
        ((date(2026, 6, 1), 140, 80), "uncontrolled"),  # 140 is not below 140
        ((date(2026, 6, 1), 139, 90), "uncontrolled"),
        ((date(2026, 6, 1), 139, 89), "controlled"),
    ],
)
def test_hearts_cohorts_at_the_boundaries(session: Session, reading: tuple[date, float, float] | None,
                                          cohort: str) -> None:
    p = create_patient(session)
    create_tag(session, patient_id=p.id, since=datetime(2024, 1, 1))
    if reading:
        # An older uncontrolled reading: only the latest one counts.
        create_bp(session, patient_id=p.id, sbp=170, dbp=100, observed_at=datetime(2024, 6, 1))
        create_bp(session, patient_id=p.id, sbp=reading[1], dbp=reading[2], observed_at=day(reading[0], 8))
    untagged = create_patient(session)
    create_bp(session, patient_id=untagged.id, sbp=180, dbp=110, observed_at=datetime(2026, 6, 1))
    r = q.hearts_cohorts(conn=session.connection(), as_of=AS_OF, scope=ALL)
    assert (r.source, r.total) == ("tag", 1)
    counts = {"controlled": r.controlled, "uncontrolled": r.uncontrolled, "missed_visit": r.missed_visit,
              "lost_to_followup": r.lost_to_followup}
    assert counts == {k: int(k == cohort) for k in counts}


def test_hearts_falls_back_to_recorded_conditions(session: Session) -> None:
    assert q.hearts_cohorts(conn=session.connection(), as_of=AS_OF, scope=ALL).source == "none"
    p = create_patient(session)
    create_condition(session, patient_id=p.id, text="原发性高血压")
    coded = create_patient(session)
    create_condition(session, patient_id=coded.id, text="Essential hypertension (disorder)", code="59621000")
    create_bp(session, patient_id=p.id, sbp=150, dbp=95, observed_at=datetime(2026, 6, 1))
    r = q.hearts_cohorts(conn=session.connection(), as_of=AS_OF, scope=ALL)
    assert (r.source, r.total, r.uncontrolled, r.lost_to_followup) == ("history", 2, 1, 1)


def test_months_before_clamps() -> None:
    assert q.months_before(date(2026, 5, 31), 3) == date(2026, 2, 28)
    assert q.months_before(date(2026, 1, 15), 12) == date(2025, 1, 15)


def test_task_detail_records_and_exports(session: Session) -> None:
    dept = department(session)
    nurse = create_user(session, department_id=dept.id)
    t = create_task(session, assignee_id=nurse.id, department_id=dept.id, due_date=TODAY)
    svc.log_contact(session, task_id=t.id, expected_version=1, user=as_current(nurse), now=day(TODAY),
                    contact=ContactInput("phone", "reached", "done", notes="ok"))
    conn = session.connection()
    d = q.task_detail(conn=conn, task_id=t.id, lang="en")
    assert d is not None and (d.status, d.version, d.attempts) == ("done", 2, 1)
    assert list(q.task_records(conn=conn, task_id=t.id)["outcome"]) == ["reached"]
    out = q.export_followups(conn=conn, f=PeriodFilter(TODAY, TODAY), scope=ALL, lang="zh_CN")
    assert list(out["last_outcome"]) == ["reached"]
    assert q.task_detail(conn=conn, task_id=999999, lang="en") is None
