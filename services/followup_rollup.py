"""The followup_daily rollup: completion counts per due date x department x nurse x plan x kind.

Exact by construction: readers (queries/followup.py) add the tasks with id > followup_rollup_state.max_task_id live,
and every ORM change to a follow-up task or contact record (any service, any area) recounts the due dates it
touched before the flush ends (session events below). Set-based statements on followup_tasks must call
recount_days() themselves (services/followup.py does). rebuild() recounts everything (after a bulk load); refresh()
folds the live tail (new tasks, e.g. from run-automation) into the rollup.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, event, func, insert, inspect, select, update
from sqlalchemy.orm import Session, UOWTransaction

from db.datefn import days_between
from db.models import FollowupDaily, FollowupDailyDepartment, FollowupRecord, FollowupRollupState, FollowupTask
from services import clock

STATE_ID = 1
GRACE_MAX = 30  # on_time_0 .. on_time_30: the dashboard's grace input goes up to 30 days
_PENDING_DAYS = "followup_rollup_days"
_PENDING_TASKS = "followup_rollup_tasks"


def _reached(task_id: Any) -> Any:
    return select(FollowupRecord.id).where(FollowupRecord.task_id == task_id,
                                           FollowupRecord.outcome == "reached").exists()


def measures() -> list[Any]:
    """The rollup's measure columns as aggregates over followup_tasks (same order as COLUMNS[5:])."""
    t = FollowupTask
    lag = days_between(t.completed_at, t.due_date)
    done = t.status == "done"
    return [
        func.count(),
        *(func.sum(case((and_(done, lag <= k), 1), else_=0)) for k in range(GRACE_MAX + 1)),
        func.sum(case((t.attempts > 0, 1), else_=0)),
        func.sum(case((and_(t.attempts > 0, _reached(t.id)), 1), else_=0)),
        func.sum(case((t.status == "pending", 1), else_=0)),
    ]


COLUMNS = ["due_date", "department_id", "assignee_id", "plan_id", "kind", "due",
           *(f"on_time_{k}" for k in range(GRACE_MAX + 1)), "attempted", "reached", "pending"]


def _keys() -> list[Any]:
    t = FollowupTask
    return [t.due_date, func.coalesce(t.department_id, 0), func.coalesce(t.assignee_id, 0),
            func.coalesce(t.plan_id, 0), t.kind]


DEPT_COLUMNS = ["due_date", "department_id", *COLUMNS[5:]]


def _department_rows(days: list[date] | None) -> Any:
    """followup_daily summed per due date x department, for followup_daily_department."""
    r = FollowupDaily
    stmt = select(r.due_date, r.department_id, *(func.sum(getattr(r, c)) for c in COLUMNS[5:]))
    if days is not None:
        stmt = stmt.where(r.due_date.in_(days))
    return stmt.group_by(r.due_date, r.department_id)


def _lock(conn: Connection) -> int | None:
    """Lock the watermark row (serialises rollup writers); its max_task_id, or None before the first rebuild."""
    stmt = select(FollowupRollupState.max_task_id).where(FollowupRollupState.id == STATE_ID)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    mark = conn.execute(stmt).scalar_one_or_none()
    return None if mark is None else int(mark)


def _recount(conn: Connection, days: set[date], mark: int) -> None:
    if not days:
        return
    ordered = sorted(days)
    conn.execute(delete(FollowupDaily).where(FollowupDaily.due_date.in_(ordered)))
    keys = _keys()
    conn.execute(insert(FollowupDaily).from_select(
        COLUMNS,
        select(*keys, *measures()).where(FollowupTask.due_date.in_(ordered), FollowupTask.status != "cancelled",
                                         FollowupTask.id <= mark).group_by(*keys),
    ))
    conn.execute(delete(FollowupDailyDepartment).where(FollowupDailyDepartment.due_date.in_(ordered)))
    conn.execute(insert(FollowupDailyDepartment).from_select(DEPT_COLUMNS, _department_rows(ordered)))


def recount_days(conn: Connection, days: Iterable[date]) -> None:
    """Recount the rollup rows of these due dates (in the caller's transaction)."""
    wanted = {d for d in days if d is not None}
    if not wanted:
        return
    mark = _lock(conn)
    if mark is not None:
        _recount(conn, wanted, mark)


def refresh(session: Session) -> int:
    """Fold the tasks added since the watermark (bulk inserts) into the rollup; returns how many were folded in.
    Before the first rebuild (a new or bulk-loaded database) this is the rebuild: the daily job sets it up."""
    conn = session.connection()
    mark = _lock(conn)
    if mark is None:
        rebuild(session)
        return int(conn.execute(select(FollowupRollupState.max_task_id)).scalar_one())
    newest = int(conn.execute(select(func.coalesce(func.max(FollowupTask.id), 0))).scalar_one())
    if newest <= mark:
        return 0
    days = {d for (d,) in conn.execute(select(FollowupTask.due_date).where(FollowupTask.id > mark).distinct())}
    conn.execute(update(FollowupRollupState).where(FollowupRollupState.id == STATE_ID)
                 .values(max_task_id=newest))
    _recount(conn, days, newest)
    return newest - mark


def rebuild(session: Session, *, now: datetime | None = None) -> int:
    """Recount followup_daily from followup_tasks (one INSERT ... SELECT); returns the number of rollup rows."""
    conn = session.connection()
    if _lock(conn) is None:
        conn.execute(insert(FollowupRollupState).values(id=STATE_ID, max_task_id=0, rebuilt_at=None))
        _lock(conn)
    newest = int(conn.execute(select(func.coalesce(func.max(FollowupTask.id), 0))).scalar_one())
    conn.execute(delete(FollowupDaily))
    keys = _keys()
    conn.execute(insert(FollowupDaily).from_select(
        COLUMNS,
        select(*keys, *measures()).where(FollowupTask.status != "cancelled", FollowupTask.id <= newest)
        .group_by(*keys),
    ))
    conn.execute(delete(FollowupDailyDepartment))
    conn.execute(insert(FollowupDailyDepartment).from_select(DEPT_COLUMNS, _department_rows(None)))
    conn.execute(update(FollowupRollupState).where(FollowupRollupState.id == STATE_ID)
                 .values(max_task_id=newest, rebuilt_at=now or clock.now()))
    return int(conn.execute(select(func.count()).select_from(FollowupDaily)).scalar_one())


# --- keeping it current on every ORM change ---------------------------------------------------------


def _collect(session: Session, ctx: UOWTransaction) -> None:
    days: set[date] = session.info.setdefault(_PENDING_DAYS, set())
    task_ids: set[int] = session.info.setdefault(_PENDING_TASKS, set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, FollowupTask):
            hist = inspect(obj).attrs.due_date.history
            days.update(d for d in (*hist.unchanged, *hist.added, *hist.deleted) if d is not None)
        elif isinstance(obj, FollowupRecord):
            hist = inspect(obj).attrs.task_id.history
            task_ids.update(i for i in (*hist.unchanged, *hist.added, *hist.deleted) if i is not None)


def _apply(session: Session, ctx: UOWTransaction) -> None:
    days: set[date] = session.info.pop(_PENDING_DAYS, set())
    task_ids: set[int] = session.info.pop(_PENDING_TASKS, set())
    if not days and not task_ids:
        return
    conn = session.connection()
    if task_ids:
        days.update(d for (d,) in conn.execute(select(FollowupTask.due_date)
                                               .where(FollowupTask.id.in_(sorted(task_ids))).distinct()))
    recount_days(conn, days)


event.listen(Session, "after_flush", _collect)
event.listen(Session, "after_flush_postexec", _apply)

