"""Administration reads: the user list with lockout state, and a page of the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd
from sqlalchemy import Connection, func, select

from db.models import AuditLog, Department, User
from i18n import t


def users(*, conn: Connection, now: datetime, lang: str) -> pd.DataFrame:
    dept = Department.name_zh if lang == "zh_CN" else Department.name_en
    rows = conn.execute(
        select(User.id, User.username, User.display_name, User.role, dept, User.active,
               User.locked_until, User.last_login_at)
        .outerjoin(Department, Department.id == User.department_id)
        .where(User.password_hash != "!")  # staff records without a login are not accounts
        .order_by(User.role, User.username)
    ).all()
    df = pd.DataFrame(rows, columns=["id", "username", "display_name", "role", "department", "active",
                                     "locked_until", "last_login_at"])
    df["locked"] = [lu is not None and lu > now for lu in df["locked_until"]]
    return df


@dataclass(frozen=True)
class AuditFilter:
    date_from: date
    date_to: date
    action: str | None = None
    username: str | None = None
    limit: int = 200

    def describe(self, lang: str) -> str:
        parts = [t("filter.period", lang, start=self.date_from.isoformat(), end=self.date_to.isoformat())]
        if self.action:
            parts.append(self.action)
        if self.username:
            parts.append(self.username)
        return t("filter.separator", lang).join(parts)


def audit_entries(*, conn: Connection, f: AuditFilter) -> tuple[int, pd.DataFrame]:
    """(total matching rows, newest `limit` rows)."""
    start = datetime.combine(f.date_from, time.min)
    end = datetime.combine(f.date_to + timedelta(days=1), time.min)
    where = [AuditLog.at >= start, AuditLog.at < end]
    if f.action:
        where.append(AuditLog.action == f.action)
    if f.username:
        where.append(AuditLog.username == f.username)
    total = conn.execute(select(func.count()).select_from(AuditLog).where(*where)).scalar_one()
    rows = conn.execute(
        select(AuditLog.at, AuditLog.username, AuditLog.action, AuditLog.entity, AuditLog.entity_id,
               AuditLog.patient_id, AuditLog.detail)
        .where(*where)
        .order_by(AuditLog.at.desc(), AuditLog.id.desc())
        .limit(f.limit)
    ).all()
    df = pd.DataFrame(rows, columns=["at", "username", "action", "entity", "entity_id", "patient_id", "detail"])
    df["detail"] = df["detail"].map(lambda d: "" if d is None else str(d))
    return int(total), df


def audit_actions(*, conn: Connection) -> list[str]:
    return [str(a) for a in conn.execute(select(AuditLog.action).distinct().order_by(AuditLog.action)).scalars()]
