"""The two-step worklist (page of task ids first, then their patients) returns exactly what the one-statement query
it replaced returned, for every view, bucket, sort, page and language, on both engines; the plan uses the partial
index on open tasks on PostgreSQL."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, case, func, select, text
from sqlalchemy.orm import Session, aliased

from db.models import FollowupPlan, FollowupTask, Patient, User
from queries import followup as q
from services import followup as svc
from tests.factories import create_patient, create_task, create_user, department
from tests.factories_followup import create_risk

TODAY = date(2026, 6, 15)


def _reference(conn: Connection, f: q.WorklistFilter) -> pd.DataFrame:
    """The worklist query as it was before the rewrite (one statement, joins before the sort)."""
    risk = q._latest_risk().label("risk")
    plan_name = (FollowupPlan.name_zh if f.lang == "zh_CN" else FollowupPlan.name_en).label("plan")
    assignee = aliased(User)
    stmt = (
        select(FollowupTask.id, FollowupTask.version, FollowupTask.due_date, risk, FollowupTask.kind, plan_name,
               FollowupTask.method, FollowupTask.attempts, Patient.card_no, Patient.name, Patient.sex,
               Patient.birth_date, Patient.phone, assignee.display_name, Patient.id)
        .join(Patient, Patient.id == FollowupTask.patient_id)
        .outerjoin(FollowupPlan, FollowupPlan.id == FollowupTask.plan_id)
        .outerjoin(assignee, assignee.id == FollowupTask.assignee_id)
        .where(*q._worklist_where(f))
    )
    if f.sort == "risk":
        rank = case(*((risk == k, v) for k, v in q.RISK_RANK.items()), else_=0)
        stmt = stmt.order_by(rank.desc(), FollowupTask.due_date, FollowupTask.id)
    else:
        stmt = stmt.order_by(FollowupTask.due_date, FollowupTask.id)
    rows = conn.execute(stmt.limit(f.limit).offset(f.offset)).all()
    records = [
        {"task_id": r[0], "version": r[1], "due_date": r[2], "overdue_days": max(0, (f.today - r[2]).days),
         "risk": r[3], "kind": r[4], "plan": r[5], "method": r[6], "attempts": r[7], "card_no": r[8],
         "name": r[9], "sex": r[10], "age": q.age_on(r[11], f.today), "phone": r[12], "assignee": r[13],
         "patient_id": r[14]}
        for r in rows
    ]
    return pd.DataFrame.from_records(records, columns=q.WORKLIST_COLUMNS)


def _populate(session: Session) -> tuple[list[Any], list[Any]]:
    rng = random.Random(7)
    depts = [department(session), department(session, "ONC")]
    nurses = [create_user(session, department_id=d.id) for d in depts for _ in range(2)]
    plan = svc.ensure_builtin_plans(session)[0]
    levels = [None, "low", "moderate", "medium", "high", "very_high", "unknown"]
    for i in range(60):
        nurse = rng.choice(nurses)
        p = create_patient(session, department_id=nurse.department_id, nurse_id=nurse.id,
                           birth_date=date(1950 + i % 40, 1 + i % 12, 1 + i % 28))
        for k in range(rng.randint(0, 2)):  # several assessments: the latest counts (ties on time: the last id)
            level = rng.choice(levels)
            if level is not None:
                create_risk(session, patient_id=p.id, level=level, assessed_at=datetime(2026, 1 + k, 1))
        for _ in range(rng.randint(1, 4)):
            create_task(session, patient_id=p.id, department_id=rng.choice([nurse.department_id, None]),
                        assignee_id=rng.choice([nurse.id, nurse.id, None, rng.choice(nurses).id]),
                        plan_id=rng.choice([plan.id, None]), due_date=TODAY + timedelta(days=rng.randint(-20, 25)),
                        status=rng.choice(["pending", "pending", "pending", "done", "cancelled"]))
    return depts, nurses


def test_worklist_equals_the_one_statement_query(session: Session) -> None:
    _, nurses = _populate(session)
    conn = session.connection()
    checked = 0
    for nurse in nurses:
        for view in ("mine", "department"):
            for bucket in q.BUCKETS:
                for sort in q.SORTS:
                    for limit, offset in ((50, 0), (5, 0), (5, 5), (7, 14)):
                        for lang in ("zh_CN", "en"):
                            f = q.WorklistFilter(user_id=nurse.id, department_id=nurse.department_id, today=TODAY,
                                                 view=view, bucket=bucket, sort=sort, lang=lang, limit=limit,
                                                 offset=offset)
                            got, want = q.worklist(conn=conn, f=f), _reference(conn, f)
                            pd.testing.assert_frame_equal(got, want, check_dtype=False)
                            checked += len(want)
    assert checked > 500


def test_worklist_plan_uses_the_partial_index_on_open_tasks(session: Session) -> None:
    _, nurses = _populate(session)
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE "
                                 "'ix_followup_tasks_pending_%'")).scalars().all()
        assert sorted(rows) == ["ix_followup_tasks_pending_assignee", "ix_followup_tasks_pending_department"]
        return
    conn.execute(text("SET LOCAL enable_seqscan = off"))  # a few rows: make the planner show its indexed plan
    conn.execute(text("ANALYZE followup_tasks"))
    f = q.WorklistFilter(user_id=nurses[0].id, department_id=nurses[0].department_id, today=TODAY, sort="risk")
    stmt = select(func.count()).where(*q._worklist_where(f))
    plan = "\n".join(conn.execute(text("EXPLAIN " + str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))))
                     .scalars())
    assert "ix_followup_tasks_pending_assignee" in plan, plan
