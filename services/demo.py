"""Demo logins: one user per role with a fresh generated password, printed by `make run`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Department, User
from services import audit
from services.auth import hash_password

# (username, role, department code, display name)
DEMO_USERS = (
    ("admin", "admin", None, "系统管理员"),
    ("manager", "manager", None, "王院长"),
    ("nurse", "nurse", "CARD", "李护士"),
    ("quality", "quality", None, "质控科 陈"),
)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    password: str


def reset_demo_users(session: Session, *, now: datetime) -> list[DemoLogin]:
    """Create the demo users or give them new passwords; passwords are never stored in clear."""
    logins = []
    for username, role, dept_code, display in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        dept_id = None
        if dept_code:
            dept_id = session.scalars(select(Department.id).where(Department.code == dept_code)).first()
        user = session.scalars(select(User).where(User.username == username)).one_or_none()
        if user is None:
            user = User(username=username, display_name=display, role=role, department_id=dept_id,
                        password_hash=hash_password(password), created_at=now)
            session.add(user)
        else:
            user.password_hash = hash_password(password)
            user.locked_until = None
            user.failed_login_count = 0
            user.active = True
        session.flush()
        audit.record(session, action="demo_password_reset", entity="user", entity_id=user.id,
                     detail={"username": username}, at=now)
        logins.append(DemoLogin(username, role, password))
    return logins
