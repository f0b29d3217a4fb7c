"""The followup_daily rollup: completion counts per due date x department x nurse x plan x kind.

Exact by construction: readers (queries/followup.py) add the tasks with id > followup_rollup_state.max_task_id live,
and every ORM change to a follow-up task or contact record (any service, any area) moves the rollup by a delta
before the flush ends (session events below): the touched tasks' cells are counted just before and just after the
flush and only the difference is added (a few rows, not a recount of the due day). Set-based statements on
followup_tasks wrap themselves in track_changes() (or call recount_days()). rebuild() recounts everything (after a
bulk load); refresh() folds the live tail (new tasks, e.g. from run-automation) into the rollup; differences()
compares the rollup with a full recount (tests, operations).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, event, func, insert, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, UOWTransaction

from db.datefn import days_between
from db.models import FollowupDaily, FollowupDailyDepartment, FollowupRecord, FollowupRollupState, FollowupTask
from services import clock

STATE_ID = 1
GRACE_MAX = 30  # on_time_0 .. on_time_30: the dashboard's grace input goes up to 30 days
_BEFORE = "followup_rollup_before"  # session.info: (mark, task ids, their cells) taken in before_flush


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


# --- keeping it current by deltas ------------------------------------------------------------------

Cell = tuple[Any, ...]  # (due_date, department_id, assignee_id, plan_id, kind), 0 for "none"


def _share_lock(conn: Connection) -> int | None:
    """The watermark, read under a shared row lock: writers of deltas run side by side, but not alongside a
    refresh or rebuild (which lock it exclusively), so a task never changes while its cells are being recounted."""
    stmt = select(FollowupRollupState.max_task_id).where(FollowupRollupState.id == STATE_ID)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    mark = conn.execute(stmt).scalar_one_or_none()
    return None if mark is None else int(mark)


def _task_rows(lock: bool) -> Any:
    """The fields a task's contribution depends on, for a list of ids (built once: a statement of ~40 aggregates
    per call cost more in building and compiling than in running). lock: FOR UPDATE of the task rows."""
    t = FollowupTask
    stmt = select(t.id, t.due_date, t.department_id, t.assignee_id, t.plan_id, t.kind, t.status, t.attempts,
                  t.completed_at, _reached(t.id)).where(t.id.in_(bindparam("ids", expanding=True)))
    return stmt.with_for_update(of=t) if lock else stmt


_TASK_ROWS = {False: _task_rows(False), True: _task_rows(True)}


def contribution(due_date: date, department_id: int | None, assignee_id: int | None, plan_id: int | None,
                 kind: str, status: str, attempts: int | None, completed_at: datetime | None,
                 reached: bool) -> tuple[Cell, list[int]] | None:
    """One task's cell and measures, the definitions of measures() in Python (tests check them equal)."""
    if status == "cancelled":
        return None
    done = status == "done" and completed_at is not None
    lag = (completed_at.date() - due_date).days if done and completed_at is not None else GRACE_MAX + 1
    attempted = 1 if attempts is not None and attempts > 0 else 0
    return ((due_date, department_id or 0, assignee_id or 0, plan_id or 0, kind),
            [1, *(1 if lag <= k else 0 for k in range(GRACE_MAX + 1)), attempted, attempted if reached else 0,
             1 if status == "pending" else 0])


def _cells(conn: Connection, task_ids: Iterable[int], mark: int, *, lock: bool = False) -> dict[Cell, list[int]]:
    """What these tasks contribute to the rollup now: their cells with the measures summed (as rebuild counts).
    lock (PostgreSQL): hold the tasks' rows until commit, so a change that touches only a task's records (no
    version check on the task) cannot interleave with another between our before and after counts."""
    ids = sorted({i for i in task_ids if i <= mark})
    out: dict[Cell, list[int]] = {}
    stmt = _TASK_ROWS[lock and conn.dialect.name == "postgresql"]
    for chunk in (ids[k:k + 1000] for k in range(0, len(ids), 1000)):
        for _id, due, dept, nurse, plan, kind, status, attempts, completed_at, reached in conn.execute(
                stmt, {"ids": chunk}):
            got = contribution(due, dept, nurse, plan, kind, status, attempts, completed_at, bool(reached))
            if got is None:
                continue
            cell, values = got
            have = out.get(cell)
            out[cell] = values if have is None else [a + b for a, b in zip(have, values, strict=True)]
    return out


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(dialect: str, table: Any, keys: list[str], columns: list[str]) -> Any:
    """INSERT a row, or add its measures to the row already there (one statement per table and engine, built once
    and run executemany)."""
    found = _UPSERTS.get((dialect, table.__tablename__))
    if found is None:
        ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        found = ins.on_conflict_do_update(
            index_elements=keys,
            set_={c: getattr(table, c) + getattr(ins.excluded, c) for c in columns if c not in keys})
        _UPSERTS[(dialect, table.__tablename__)] = found
    return found


def _drop_empty(table: Any, keys: list[str]) -> Any:
    return delete(table).where(*(getattr(table, k) == bindparam(f"k_{k}") for k in keys), table.due == 0)


_DROP_DAILY = _drop_empty(FollowupDaily, COLUMNS[:5])
_DROP_DEPT = _drop_empty(FollowupDailyDepartment, DEPT_COLUMNS[:2])


def apply_delta(conn: Connection, before: dict[Cell, list[int]], after: dict[Cell, list[int]]) -> int:
    """Add after - before to followup_daily and followup_daily_department; drop the cells left empty. Returns the
    number of followup_daily cells changed. Rows are written in key order (no deadlock between two writers)."""
    width = len(COLUMNS) - 5
    delta: dict[Cell, list[int]] = {}
    for cell in before.keys() | after.keys():
        b, a = before.get(cell, [0] * width), after.get(cell, [0] * width)
        d = [x - y for x, y in zip(a, b, strict=True)]
        if any(d):
            delta[cell] = d
    if not delta:
        return 0
    per_dept: dict[tuple[Any, Any], list[int]] = {}
    for (due_date, dept, *_), d in delta.items():
        have = per_dept.setdefault((due_date, dept), [0] * width)
        per_dept[(due_date, dept)] = [x + y for x, y in zip(have, d, strict=True)]
    dialect = conn.dialect.name
    conn.execute(_upsert(dialect, FollowupDaily, COLUMNS[:5], COLUMNS),
                 [dict(zip(COLUMNS, (*cell, *d), strict=True)) for cell, d in sorted(delta.items())])
    dept_rows = [dict(zip(DEPT_COLUMNS, (*cell, *d), strict=True)) for cell, d in sorted(per_dept.items()) if any(d)]
    if dept_rows:
        conn.execute(_upsert(dialect, FollowupDailyDepartment, DEPT_COLUMNS[:2], DEPT_COLUMNS), dept_rows)
    # A cell whose last task moved away is deleted, as a recount would not have it (due = 0 implies all are 0).
    shrunk = sorted(cell for cell, d in delta.items() if d[0] < 0)
    if shrunk:
        conn.execute(_DROP_DAILY, [{f"k_{k}": v for k, v in zip(COLUMNS[:5], cell, strict=True)} for cell in shrunk])
        conn.execute(_DROP_DEPT, [{"k_due_date": d, "k_department_id": dep}
                                  for d, dep in sorted({c[:2] for c in shrunk})])
    return len(delta)


@contextmanager
def track_changes(conn: Connection, task_ids: Iterable[int]) -> Iterator[None]:
    """Around a set-based change of these tasks (UPDATE ... WHERE ...): move the rollup by the difference.
    New tasks are not for this (they are past the watermark: refresh() folds them in)."""
    ids = sorted(set(task_ids))
    mark = _share_lock(conn) if ids else None
    if mark is None:
        yield
        return
    before = _cells(conn, ids, mark, lock=True)
    yield
    apply_delta(conn, before, _cells(conn, ids, mark))


# --- on every ORM change -------------------------------------------------------------------------


def _touched(session: Session) -> tuple[bool, set[int]]:
    """(whether this flush writes follow-up rows at all, the ids of the existing tasks whose cells it may move)."""
    ids: set[int] = set()
    any_rows = False
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, FollowupTask):
            any_rows = True
            identity = inspect(obj).identity
            if identity is not None:
                ids.add(int(identity[0]))
        elif isinstance(obj, FollowupRecord):
            any_rows = True
            hist = inspect(obj).attrs.task_id.history
            found = {i for i in (*hist.unchanged, *hist.added, *hist.deleted) if i is not None}
            if not found and inspect(obj).persistent:
                found = {obj.task_id}
            ids.update(int(i) for i in found)
    return any_rows, ids


def _before_flush(session: Session, ctx: UOWTransaction, instances: Any) -> None:
    session.info.pop(_BEFORE, None)
    any_rows, ids = _touched(session)
    if not any_rows:
        return
    conn = session.connection()
    mark = _share_lock(conn)  # taken before any new task gets its id: a refresh cannot pass over it
    if mark is None:
        return
    ids = {i for i in ids if i <= mark}
    session.info[_BEFORE] = (mark, ids, _cells(conn, ids, mark, lock=True))


def _after_flush(session: Session, ctx: UOWTransaction) -> None:
    state = session.info.get(_BEFORE)
    if state is None:
        return
    # New tasks have their ids now; normally past the watermark (read live), but count one that is not.
    state[1].update(int(o.id) for o in session.new if isinstance(o, FollowupTask) and o.id is not None)


def _after_flush_postexec(session: Session, ctx: UOWTransaction) -> None:
    state = session.info.pop(_BEFORE, None)
    if state is None:
        return
    mark, ids, before = state
    conn = session.connection()
    apply_delta(conn, before, _cells(conn, ids, mark))


event.listen(Session, "before_flush", _before_flush)
event.listen(Session, "after_flush", _after_flush)
event.listen(Session, "after_flush_postexec", _after_flush_postexec)


def differences(conn: Connection) -> list[tuple[str, Any, Any, Any]]:
    """Where the rollup differs from a full recount at its watermark: (table, key, stored, recounted); [] if exact."""
    mark = _lock(conn)
    if mark is None:
        return []
    keys = _keys()
    want = {tuple(r[:5]): tuple(int(v) for v in r[5:]) for r in conn.execute(
        select(*keys, *measures()).where(FollowupTask.status != "cancelled", FollowupTask.id <= mark)
        .group_by(*keys))}
    r = FollowupDaily
    have = {tuple(row[:5]): tuple(int(v) for v in row[5:]) for row in conn.execute(
        select(*(getattr(r, c) for c in COLUMNS)))}
    out: list[tuple[str, Any, Any, Any]] = [
        ("followup_daily", k, have.get(k), want.get(k)) for k in sorted(want.keys() | have.keys(), key=repr)
        if have.get(k) != want.get(k)]
    want_d: dict[Any, list[int]] = {}
    for k, v in want.items():
        have_v = want_d.setdefault(k[:2], [0] * len(v))
        want_d[k[:2]] = [a + b for a, b in zip(have_v, v, strict=True)]
    rd = FollowupDailyDepartment
    have_d = {tuple(row[:2]): tuple(int(v) for v in row[2:]) for row in conn.execute(
        select(*(getattr(rd, c) for c in DEPT_COLUMNS)))}
    want_dt = {k: tuple(v) for k, v in want_d.items()}
    out += [("followup_daily_department", k, have_d.get(k), want_dt.get(k))
            for k in sorted(want_dt.keys() | have_d.keys(), key=repr) if have_d.get(k) != want_dt.get(k)]
    return out
