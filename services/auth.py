"""Login, lockout, server-side sessions and users: the hardening streamlit-authenticator leaves to us."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import bcrypt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ROLES, AuthSession, Department, User
from services import audit
from services.errors import UserError

# bcrypt only reads the first 72 bytes; a longer password would be silently truncated, so refuse it.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_LENGTH = 8
# A real hash to compare against for unknown users, so their answer takes as long as a known user's.
_DUMMY_HASH = bcrypt.hashpw(b"careloop-dummy", bcrypt.gensalt(rounds=12)).decode()


@dataclass(frozen=True)
class LoginPolicy:
    max_failed: int = 5
    lockout_minutes: int = 15
    session_hours: float = 12.0


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    display_name: str
    role: str
    department_id: int | None


@dataclass(frozen=True)
class LoginOutcome:
    """Failures are returned, not raised, so the caller's transaction still commits the audit row."""

    user: CurrentUser | None = None
    token: str | None = None
    error_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.user is not None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _current(user: User) -> CurrentUser:
    return CurrentUser(user.id, user.username, user.display_name, user.role, user.department_id)


def check_password_rules(password: str) -> None:
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise UserError("auth.password_too_long", limit=MAX_PASSWORD_BYTES)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError("auth.password_too_short", minimum=MIN_PASSWORD_LENGTH)


def hash_password(password: str, rounds: int = 12) -> str:
    check_password_rules(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode())
    except ValueError:  # an unusable hash (staff without a login) never matches
        return False


def login(
    session: Session, *, username: str, password: str, now: datetime, policy: LoginPolicy
) -> LoginOutcome:
    username = username.strip()
    if not username or not password:
        audit.record(session, action="login_failed", username=username or None,
                     detail={"reason": "empty_fields"}, at=now)
        return LoginOutcome(error_key="auth.empty_fields")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        audit.record(session, action="login_failed", username=username,
                     detail={"reason": "password_too_long"}, at=now)
        return LoginOutcome(error_key="auth.password_too_long", params={"limit": MAX_PASSWORD_BYTES})
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None or not user.active:
        verify_password(password, _DUMMY_HASH)
        audit.record(session, action="login_failed", username=username,
                     detail={"reason": "unknown_user" if user is None else "inactive"}, at=now)
        return LoginOutcome(error_key="auth.invalid_credentials")
    if user.locked_until is not None and user.locked_until > now:
        minutes = max(1, int((user.locked_until - now).total_seconds() // 60) + 1)
        audit.record(session, action="login_failed", user_id=user.id, username=username,
                     detail={"reason": "locked"}, at=now)
        return LoginOutcome(error_key="auth.locked", params={"minutes": minutes})
    if user.locked_until is not None:  # the window has passed: start counting afresh
        user.locked_until = None
        user.failed_login_count = 0
    if not verify_password(password, user.password_hash):
        user.failed_login_count += 1
        detail: dict[str, Any] = {"reason": "wrong_password", "failures": user.failed_login_count}
        if user.failed_login_count >= policy.max_failed:
            user.locked_until = now + timedelta(minutes=policy.lockout_minutes)
            user.failed_login_count = 0
            detail["locked_until"] = user.locked_until.isoformat()
            audit.record(session, action="login_failed", user_id=user.id, username=username,
                         detail=detail, at=now)
            return LoginOutcome(error_key="auth.locked", params={"minutes": policy.lockout_minutes})
        audit.record(session, action="login_failed", user_id=user.id, username=username,
                     detail=detail, at=now)
        return LoginOutcome(error_key="auth.invalid_credentials")
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = now
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                            expires_at=now + timedelta(hours=policy.session_hours)))
    audit.record(session, action="login", user_id=user.id, username=username, at=now)
    return LoginOutcome(user=_current(user), token=token)


def resolve_session(session: Session, *, token: str, now: datetime) -> CurrentUser | None:
    """The user of a live session token, or None when it is unknown, revoked, expired or disabled."""
    row = session.execute(
        select(AuthSession, User)
        .join(User, User.id == AuthSession.user_id)
        .where(AuthSession.token_hash == _token_hash(token))
    ).one_or_none()
    if row is None:
        return None
    auth, user = row
    if auth.revoked_at is not None or auth.expires_at <= now or not user.active:
        return None
    return _current(user)


def logout(session: Session, *, token: str, now: datetime) -> None:
    auth = session.scalars(
        select(AuthSession).where(AuthSession.token_hash == _token_hash(token))
    ).one_or_none()
    if auth is None or auth.revoked_at is not None:
        return
    auth.revoked_at = now
    user = session.get(User, auth.user_id)
    audit.record(session, action="logout", user_id=auth.user_id,
                 username=user.username if user else None, at=now)


def revoke_all_sessions(session: Session, *, user_id: int, now: datetime) -> None:
    session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    now: datetime,
    department_code: str | None = None,
    display_name: str | None = None,
    actor: str | None = None,
) -> User:
    username = username.strip()
    if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").isalnum():
        raise UserError("users.bad_username")
    if role not in ROLES:
        raise UserError("users.bad_role", role=role, roles=", ".join(ROLES))
    department_id = None
    if department_code:
        department_id = session.scalars(
            select(Department.id).where(Department.code == department_code)
        ).one_or_none()
        if department_id is None:
            raise UserError("users.unknown_department", department=department_code)
    if session.scalars(select(User.id).where(User.username == username)).first() is not None:
        raise UserError("users.exists", username=username)
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        department_id=department_id,
        created_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(session, action="user_created", username=actor, entity="user", entity_id=user.id,
                 detail={"username": username, "role": role, "department": department_code}, at=now)
    return user


def unlock_user(session: Session, *, user_id: int, actor: CurrentUser, now: datetime) -> None:
    user = session.get(User, user_id)
    if user is None:
        raise UserError("users.not_found")
    user.locked_until = None
    user.failed_login_count = 0
    audit.record(session, action="user_unlocked", user_id=actor.id, username=actor.username,
                 entity="user", entity_id=user_id, at=now)


def set_active(session: Session, *, user_id: int, active: bool, actor: CurrentUser, now: datetime) -> None:
    user = session.get(User, user_id)
    if user is None:
        raise UserError("users.not_found")
    if user.id == actor.id and not active:
        raise UserError("users.cannot_disable_self")
    user.active = active
    if not active:
        revoke_all_sessions(session, user_id=user.id, now=now)
    audit.record(session, action="user_enabled" if active else "user_disabled", user_id=actor.id,
                 username=actor.username, entity="user", entity_id=user_id, at=now)
