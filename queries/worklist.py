"""The nurse worklist: open follow-up tasks assigned to a nurse, oldest due first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Connection, func, select

from db.models import FollowupTask, Patient


@dataclass(frozen=True)
class WorklistFilter:
    assignee_id: int
    today: date
    horizon_days: int = 7
    limit: int = 50
    offset: int = 0


def due_tasks(*, conn: Connection, f: WorklistFilter) -> pd.DataFrame:
    """Pending tasks due up to today + horizon, with the patient's key facts; one page of rows."""
    rows = conn.execute(
        select(
            FollowupTask.id.label("task_id"),
            FollowupTask.due_date,
            FollowupTask.method,
            FollowupTask.kind,
            FollowupTask.attempts,
            Patient.card_no,
            Patient.name,
            Patient.sex,
            Patient.birth_date,
        )
        .join(Patient, Patient.id == FollowupTask.patient_id)
        .where(
            FollowupTask.assignee_id == f.assignee_id,
            FollowupTask.status == "pending",
            FollowupTask.due_date <= f.today + timedelta(days=f.horizon_days),
        )
        .order_by(FollowupTask.due_date, FollowupTask.id)
        .limit(f.limit)
        .offset(f.offset)
    ).all()
    df = pd.DataFrame(rows, columns=["task_id", "due_date", "method", "kind", "attempts", "card_no", "name",
                                     "sex", "birth_date"])
    if not df.empty:
        df["overdue_days"] = [(f.today - d).days if d < f.today else 0 for d in df["due_date"]]
    else:
        df["overdue_days"] = pd.Series(dtype="int64")
    return df


def count_due(*, conn: Connection, f: WorklistFilter) -> tuple[int, int]:
    """(overdue, due today) for the worklist header."""
    rows = conn.execute(
        select(FollowupTask.due_date < f.today, func.count())
        .where(
            FollowupTask.assignee_id == f.assignee_id,
            FollowupTask.status == "pending",
            FollowupTask.due_date <= f.today,
        )
        .group_by(FollowupTask.due_date < f.today)
    ).all()
    counts = {bool(k): int(n) for k, n in rows}
    return counts.get(True, 0), counts.get(False, 0)
