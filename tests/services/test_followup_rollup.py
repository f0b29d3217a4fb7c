"""The followup_daily rollup gives exactly the figures of a count over followup_tasks: before the first rebuild (all
live), after it (all rolled up), after contacts, reassignments and edits made since (ORM events recount the due
dates), after new tasks past the watermark (read live) and a refresh; at and around every grace boundary."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import FollowupDaily, FollowupRecord, FollowupTask
from queries import followup as q
from queries.filters import PeriodFilter, scope_for
from services import followup as svc
from services import followup_rollup
from services.followup import ContactInput
from tests.factories import create_patient, create_task, create_user, department
from tests.factories_followup import as_current, create_record, day

TODAY = date(2026, 6, 15)
PERIOD = PeriodFilter(date(2026, 3, 1), date(2026, 6, 30))
ALL = scope_for(role="manager", department_id=None)
GRACES = (0, 1, 2, 7, 14, 29, 30, 31, -1)  # 31 and -1 are outside the rollup's range: read from followup_tasks
# (due offset from 2026-03-01, status, days completed after due or None, outcomes)
SHAPES: list[tuple[int, str, int | None, list[str]]] = [
    (0, "done", -1, ["reached"]), (0, "done", 0, ["no_answer", "reached"]), (1, "done", 1, ["reached"]),
    (2, "done", 2, []), (3, "done", 7, ["reached"]), (4, "done", 8, ["no_answer"]), (5, "done", 14, ["reached"]),
    (6, "done", 15, ["reached"]), (7, "done", 30, []), (8, "unreachable", 0, ["no_answer"] * 3),
    (11, "done", 29, ["reached"]), (12, "done", 31, []),
    (9, "pending", None, []), (40, "pending", None, ["no_answer"]), (100, "pending", None, []),
    (10, "cancelled", None, []), (120, "pending", None, []),  # 120: due after the period
    (-5, "done", 0, ["reached"]),  # before the period
]


def _expected(session: Session, grace: int, by: str) -> list[tuple[Any, ...]]:
    """The published definitions, computed in Python from the raw rows."""
    reached = set(session.scalars(select(FollowupRecord.task_id).where(FollowupRecord.outcome == "reached")))
    groups: dict[Any, list[int]] = {}
    for t in session.scalars(select(FollowupTask)):
        if t.status == "cancelled" or not (PERIOD.date_from <= t.due_date <= PERIOD.date_to):
            continue
        plan_key = (t.plan_id, None) if t.plan_id else (None, t.kind)
        key = {"department": t.department_id, "nurse": t.assignee_id, "plan": plan_key,
               "month": t.due_date.strftime("%Y-%m")}[by]
        g = groups.setdefault(key, [0] * 6)
        g[0] += 1
        if t.status == "done" and t.completed_at is not None and (t.completed_at.date() - t.due_date).days <= grace:
            g[1] += 1
        g[2] += int(t.attempts > 0)
        g[3] += int(t.attempts > 0 and t.id in reached)
        if t.status == "pending" and t.due_date < TODAY:
            g[4] += 1
            g[5] += (TODAY - t.due_date).days
    return sorted((str(k), *v) for k, v in groups.items())


def _actual(session: Session, grace: int, by: str) -> list[tuple[Any, ...]]:
    f = q.CompletionFilter(PERIOD, today=TODAY, grace_days=grace, lang="en")
    df = q.completion_by(conn=session.connection(), f=f, scope=ALL, by=by)
    cols = ["due", "on_time", "attempted", "reached", "overdue", "overdue_days"]
    rows = []
    for r in df.to_dict("records"):
        raw = None if r["key"] is None or r["key"] != r["key"] else r["key"]
        if by == "plan":  # a named plan groups by its id; tasks without a plan by their kind
            key: Any = (int(raw), None) if raw is not None else (None, r["label"])
        elif by == "month":
            key = raw
        else:
            key = None if raw is None else int(raw)
        rows.append((str(key), *(int(r[c]) for c in cols)))
    return sorted(rows)


def _check(session: Session) -> None:
    for grace in GRACES:
        for by in q.GROUPS:
            assert _actual(session, grace, by) == _expected(session, grace, by), (grace, by)
        total = q.completion_total(conn=session.connection(), f=q.CompletionFilter(PERIOD, today=TODAY,
                                                                                   grace_days=grace), scope=ALL)
        assert int(total.iloc[0]["due"]) == sum(r[1] for r in _expected(session, grace, "department"))


def _populate(session: Session) -> tuple[list[FollowupTask], Any, Any]:
    a, b = department(session), department(session, "ONC")
    nurse_a = create_user(session, department_id=a.id)
    nurse_b = create_user(session, department_id=b.id)
    plan = svc.ensure_builtin_plans(session)[0]
    tasks = []
    for i, (offset, status, lag, outcomes) in enumerate(SHAPES * 2):
        due = PERIOD.date_from + timedelta(days=offset)
        dept, nurse = (a, nurse_a) if i % 2 == 0 else (b, nurse_b)
        t = create_task(session, department_id=None if i == 5 else dept.id,
                        assignee_id=None if i % 5 == 0 else nurse.id,
                        plan_id=plan.id if i % 3 == 0 else None, kind="service_recovery" if i % 7 == 0 else "followup",
                        due_date=due, status=status, attempts=len(outcomes),
                        completed_at=None if lag is None else day(due + timedelta(days=lag), 23))
        for j, outcome in enumerate(outcomes):
            create_record(session, task_id=t.id, patient_id=t.patient_id, outcome=outcome, contacted_at=day(due, 9 + j))
        tasks.append(t)
    return tasks, nurse_a, nurse_b


def test_rollup_equals_the_raw_figures_through_its_life(session: Session) -> None:
    tasks, nurse_a, nurse_b = _populate(session)
    _check(session)  # no rebuild yet: everything read live

    assert followup_rollup.rebuild(session, now=datetime(2026, 6, 15, 2)) > 0
    assert session.scalar(select(FollowupDaily.due).limit(1)) is not None
    _check(session)  # everything from the rollup

    # Changes after the rebuild: contacts through the service (ORM events recount the due dates) ...
    pending = [t for t in tasks if t.status == "pending" and t.department_id is not None and t.assignee_id]
    user = as_current(nurse_a if pending[0].assignee_id == nurse_a.id else nurse_b)
    svc.log_contact(session, task_id=pending[0].id, expected_version=pending[0].version, user=user,
                    contact=ContactInput("phone", "reached", "done"), now=day(pending[0].due_date + timedelta(days=2)))
    late = pending[1]
    user = as_current(nurse_a if late.assignee_id == nurse_a.id else nurse_b)
    svc.log_contact(session, task_id=late.id, expected_version=late.version, user=user,
                    contact=ContactInput("phone", "no_answer", "retry", retry_on=TODAY + timedelta(days=3)),
                    now=day(TODAY))
    # ... a reassignment, a direct ORM edit (as another area might make), a record added to an old task ...
    other = nurse_b if pending[2].assignee_id == nurse_a.id else nurse_a
    svc.reassign(session, task_id=pending[2].id, expected_version=pending[2].version, assignee_id=other.id,
                 user=as_current(create_user(session, role="admin", department_id=None)), now=day(TODAY))
    edited = next(t for t in tasks if t.status == "done" and t.completed_at is not None)
    edited.completed_at = edited.completed_at + timedelta(days=14)
    edited.due_date = edited.due_date + timedelta(days=1)
    session.flush()
    unreached = next(t for t in tasks if t.attempts > 0 and t.status == "unreachable")
    create_record(session, task_id=unreached.id, patient_id=unreached.patient_id, outcome="reached",
                  contacted_at=day(TODAY))
    _check(session)

    # ... new tasks past the watermark (read live), then folded in by refresh()
    for offset in (0, 7, 14):
        create_task(session, department_id=tasks[0].department_id, assignee_id=nurse_a.id,
                    due_date=PERIOD.date_from + timedelta(days=offset), status="done",
                    completed_at=day(PERIOD.date_from + timedelta(days=offset + 14), 23), attempts=1)
    _check(session)
    assert followup_rollup.refresh(session) == 3
    _check(session)


def test_deceased_outcome_cancels_the_other_tasks_in_the_rollup(session: Session) -> None:
    dept = department(session)
    nurse = create_user(session, department_id=dept.id)
    patient = create_patient(session, department_id=dept.id)
    first = create_task(session, patient_id=patient.id, department_id=dept.id, assignee_id=nurse.id,
                        due_date=date(2026, 4, 1))
    for d in (date(2026, 4, 1), date(2026, 5, 1), date(2026, 6, 1)):
        create_task(session, patient_id=patient.id, department_id=dept.id, assignee_id=nurse.id, due_date=d)
    followup_rollup.rebuild(session)
    svc.log_contact(session, task_id=first.id, expected_version=first.version, user=as_current(nurse),
                    contact=ContactInput("phone", "deceased", "done"), now=day(date(2026, 4, 2)))
    session.expire_all()
    open_left = session.scalars(select(FollowupTask.id).where(FollowupTask.patient_id == patient.id,
                                                              FollowupTask.status == "pending")).all()
    assert open_left == []
    _check(session)


def test_recount_before_any_rebuild_does_nothing_and_the_first_refresh_rebuilds(session: Session) -> None:
    task = create_task(session, due_date=date(2026, 4, 1))
    followup_rollup.recount_days(session.connection(), [date(2026, 4, 1)])
    assert session.scalar(select(FollowupDaily.due).limit(1)) is None
    _check(session)
    assert followup_rollup.refresh(session) == task.id  # the daily job's first run sets the rollup up
    assert session.scalar(select(FollowupDaily.due).limit(1)) == 1
    assert followup_rollup.refresh(session) == 0
    _check(session)


@pytest.mark.parametrize("grace", [0, 14, 30])
def test_grace_boundary_done_exactly_at_grace(session: Session, grace: int) -> None:
    dept = department(session)
    due = date(2026, 5, 1)
    for lag in (grace - 1, grace, grace + 1):
        create_task(session, department_id=dept.id, due_date=due, status="done",
                    completed_at=datetime(2026, 5, 1, 23, 59) + timedelta(days=lag))
    followup_rollup.rebuild(session)
    f = q.CompletionFilter(PERIOD, today=TODAY, grace_days=grace)
    assert int(q.completion_total(conn=session.connection(), f=f, scope=ALL).iloc[0]["on_time"]) == 2
