"""The rollup moves by deltas: after any sequence of contacts, reassignments, automation runs, direct ORM edits,
deletions and refreshes (seeded random sequences), followup_daily and followup_daily_department hold exactly what
a full rebuild writes; a contact touches only its own cells; two writers at once on PostgreSQL lose nothing."""

from __future__ import annotations

import random
import threading
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models import FollowupDaily, FollowupDailyDepartment, FollowupRecord, FollowupTask
from services import followup as svc
from services import followup_rollup
from services.errors import UserError
from services.followup import ContactInput
from tests.factories import create_patient, create_task, create_user, department
from tests.factories_followup import as_current, create_encounter, create_record, create_tag, day

START = date(2026, 3, 1)
OUTCOMES = [("reached", "done"), ("reached", "escalate"), ("reached", "retry"), ("no_answer", "retry"),
            ("wrong_number", "retry"), ("refused", "done"), ("deceased", "done")]


def _tables(session: Session) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    daily = sorted(tuple(r) for r in session.execute(
        select(*(getattr(FollowupDaily, c) for c in followup_rollup.COLUMNS))).all())
    dept = sorted(tuple(r) for r in session.execute(
        select(*(getattr(FollowupDailyDepartment, c) for c in followup_rollup.DEPT_COLUMNS))).all())
    return daily, dept


def _assert_exact(session: Session, step: str) -> None:
    session.flush()
    assert followup_rollup.differences(session.connection()) == [], step


def _world(session: Session) -> dict[str, Any]:
    a, b = department(session), department(session, "ONC")
    nurses = [create_user(session, department_id=d.id) for d in (a, a, b, b)]
    admin = create_user(session, role="admin", department_id=None)
    plans = svc.ensure_builtin_plans(session)
    patients = []
    for i in range(16):
        nurse = nurses[i % 4]
        p = create_patient(session, department_id=nurse.department_id, nurse_id=nurse.id)
        patients.append(p)
        for k in range(3):
            create_task(session, patient_id=p.id, department_id=p.department_id,
                        assignee_id=None if (i + k) % 7 == 0 else nurse.id,
                        plan_id=plans[0].id if k == 0 else None, kind="service_recovery" if k == 2 else "followup",
                        due_date=START + timedelta(days=(i * 5 + k * 11) % 40))
    return {"nurses": nurses, "admin": admin, "patients": patients}


def _pending(session: Session) -> list[FollowupTask]:
    return list(session.scalars(select(FollowupTask).where(FollowupTask.status == "pending")
                                .order_by(FollowupTask.id)))


def _step(session: Session, rng: random.Random, w: dict[str, Any], clock: list[date]) -> str:
    op = rng.choice(["contact", "contact", "contact", "reassign", "automation", "edit", "record", "delete_record",
                     "delete_task", "refresh", "cancel"])
    pending = _pending(session)
    if op in ("contact", "reassign", "cancel") and not pending:
        op = "automation"
    if op == "contact":
        task = rng.choice(pending)
        outcome, next_step = rng.choice(OUTCOMES)
        now = day(task.due_date + timedelta(days=rng.randint(-3, 20)), rng.randint(8, 23))
        retry_on = now.date() + timedelta(days=rng.randint(0, 30)) if next_step == "retry" else None
        user = w["admin"] if task.assignee_id is None else next(n for n in w["nurses"] if n.id == task.assignee_id)
        try:
            svc.log_contact(session, task_id=task.id, expected_version=task.version, user=as_current(user), now=now,
                            contact=ContactInput("phone", outcome, next_step, retry_on=retry_on),
                            max_failed_attempts=rng.choice([2, 3]))
        except UserError as exc:  # e.g. "done" after no answer: refused, nothing written
            return f"contact refused: {exc.key}"
        return f"contact {task.id} {outcome}/{next_step}"
    if op == "reassign":
        task = rng.choice(pending)
        others = [n for n in w["nurses"] if n.id != task.assignee_id]
        svc.reassign(session, task_id=task.id, expected_version=task.version, assignee_id=rng.choice(others).id,
                     user=as_current(w["admin"]), now=day(clock[0]))
        return f"reassign {task.id}"
    if op == "automation":
        p = rng.choice(w["patients"])
        if rng.random() < 0.5:
            create_encounter(session, patient_id=p.id, kind="discharge", started_at=day(clock[0] - timedelta(days=3)),
                             ended_at=day(clock[0]), department_id=p.department_id)
        else:
            create_tag(session, patient_id=p.id, since=day(clock[0] - timedelta(days=rng.randint(0, 90))))
        svc.run_automation(session, as_of=clock[0])
        clock[0] += timedelta(days=rng.randint(1, 9))
        return f"automation {clock[0]}"
    tasks = list(session.scalars(select(FollowupTask).order_by(FollowupTask.id)))
    task = rng.choice(tasks)
    if op == "edit":  # another area's direct ORM edit of the fields the rollup groups and counts by
        field = rng.choice(["due_date", "department_id", "assignee_id", "completed_at", "attempts", "plan_id"])
        if field == "due_date":
            task.due_date = task.due_date + timedelta(days=rng.randint(-10, 10))
        elif field == "department_id":
            task.department_id = rng.choice([None, *{n.department_id for n in w["nurses"]}])
        elif field == "assignee_id":
            task.assignee_id = rng.choice([None, *(n.id for n in w["nurses"])])
        elif field == "completed_at":
            task.completed_at = day(task.due_date + timedelta(days=rng.randint(-2, 40)))
        elif field == "attempts":
            task.attempts = rng.randint(0, 3)
        else:
            task.plan_id = None
        session.flush()
        return f"edit {task.id} {field}"
    if op == "record":
        create_record(session, task_id=task.id, patient_id=task.patient_id, outcome=rng.choice(["reached", "refused"]),
                      contacted_at=day(task.due_date))
        return f"record on {task.id}"
    if op == "delete_record":
        rec = session.scalars(select(FollowupRecord).order_by(FollowupRecord.id)).all()
        if rec:
            session.delete(rng.choice(rec))
            session.flush()
        return "delete record"
    if op == "delete_task":
        for own in session.scalars(select(FollowupRecord).where(FollowupRecord.task_id == task.id)).all():
            session.delete(own)
        session.flush()
        session.delete(task)
        session.flush()
        return f"delete task {task.id}"
    if op == "cancel":
        task = rng.choice(pending)
        task.status = "cancelled"
        session.flush()
        return f"cancel {task.id}"
    followup_rollup.refresh(session)
    return "refresh"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_sequence_of_changes_leaves_the_rollup_equal_to_a_rebuild(session: Session, seed: int) -> None:
    rng = random.Random(seed)
    w = _world(session)
    followup_rollup.rebuild(session, now=datetime(2026, 3, 1, 2))
    _assert_exact(session, "after rebuild")
    clock = [START + timedelta(days=10)]
    done = []
    for i in range(45):
        done.append(_step(session, rng, w, clock))
        _assert_exact(session, f"step {i}: {done[-1]} (after {done[:-1][-5:]})")
    # and literally what rebuild() writes, once the live tail is folded in
    followup_rollup.refresh(session)
    stored = _tables(session)
    followup_rollup.rebuild(session)
    assert _tables(session) == stored
    assert any(s.startswith("contact ") for s in done) and any(s.startswith("automation") for s in done)


def test_a_contact_writes_only_its_own_cells(session: Session) -> None:
    dept = department(session)
    nurse = create_user(session, department_id=dept.id)
    tasks = [create_task(session, department_id=dept.id, assignee_id=nurse.id, due_date=START + timedelta(days=d))
             for d in range(10) for _ in range(3)]
    followup_rollup.rebuild(session)
    before = _tables(session)
    task = tasks[4]
    svc.log_contact(session, task_id=task.id, expected_version=task.version, user=as_current(nurse),
                    now=day(task.due_date), contact=ContactInput("phone", "reached", "done"))
    after = _tables(session)
    changed = [r for r in after[0] if r not in before[0]]
    assert [r[0] for r in changed] == [task.due_date]
    assert changed[0][5:8] == (3, 1, 1)  # due, on time (grace 0), on time (grace 1)
    assert [r for r in before[0] if r[0] != task.due_date] == [r for r in after[0] if r[0] != task.due_date]
    _assert_exact(session, "one contact")


def test_retry_moves_the_task_to_its_new_due_cell_and_empties_the_old(session: Session) -> None:
    dept = department(session)
    nurse = create_user(session, department_id=dept.id)
    task = create_task(session, department_id=dept.id, assignee_id=nurse.id, due_date=START)
    followup_rollup.rebuild(session)
    svc.log_contact(session, task_id=task.id, expected_version=task.version, user=as_current(nurse), now=day(START),
                    contact=ContactInput("phone", "no_answer", "retry", retry_on=START + timedelta(days=5)))
    daily, dept_rows = _tables(session)
    assert [(r[0], r[5]) for r in daily] == [(START + timedelta(days=5), 1)]
    assert [(r[0], r[2]) for r in dept_rows] == [(START + timedelta(days=5), 1)]
    _assert_exact(session, "retry")


def test_concurrent_contacts_in_one_cell_lose_nothing(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    with Session(engine) as s:
        dept = department(s)
        nurse = create_user(s, department_id=dept.id)
        ids = [create_task(s, department_id=dept.id, assignee_id=nurse.id, due_date=START).id for _ in range(8)]
        followup_rollup.rebuild(s)
        user = as_current(nurse)
        s.commit()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(chunk: list[int]) -> None:
        try:
            barrier.wait()
            for task_id in chunk:
                with Session(engine) as s, s.begin():
                    svc.log_contact(s, task_id=task_id, expected_version=1, user=user, now=day(START),
                                    contact=ContactInput("phone", "reached", "done"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with Session(engine) as s:
        assert followup_rollup.differences(s.connection()) == []
        assert s.scalar(select(FollowupDaily.on_time_0)) == 8
