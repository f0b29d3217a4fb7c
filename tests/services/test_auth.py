"""Login rules: wrong passwords, unknown users, time-bounded lockout, over-long passwords, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditLog, User
from services import auth, session_cookie
from services.auth import LoginPolicy
from services.errors import UserError
from tests.factories import NOW, create_user

POLICY = LoginPolicy(max_failed=5, lockout_minutes=15, session_hours=12)
KEY = "test-cookie-key-" + "x" * 32


def _actions(session: Session) -> list[tuple[str, str | None]]:
    rows = session.execute(select(AuditLog.action, AuditLog.detail).order_by(AuditLog.id)).all()
    return [(a, (d or {}).get("reason")) for a, d in rows]


def test_good_login_opens_a_session(session: Session) -> None:
    create_user(session, username="lihua", password="correct horse battery", role="manager")
    out = auth.login(session, username="lihua", password="correct horse battery", now=NOW, policy=POLICY)
    assert out.ok and out.user is not None and out.token
    assert out.user.role == "manager"
    assert auth.resolve_session(session, token=out.token, now=NOW + timedelta(hours=1)) == out.user
    assert auth.resolve_session(session, token=out.token, now=NOW + timedelta(hours=12)) is None  # expired
    assert _actions(session) == [("login", None)]


@pytest.mark.parametrize(
    ("username", "password", "error", "reason"),
    [
        ("lihua", "wrong password!", "auth.invalid_credentials", "wrong_password"),
        ("nobody", "whatever123", "auth.invalid_credentials", "unknown_user"),
        ("", "whatever123", "auth.empty_fields", "empty_fields"),
        ("lihua", "", "auth.empty_fields", "empty_fields"),
        ("lihua", "密" * 25, "auth.password_too_long", "password_too_long"),  # 75 bytes in UTF-8
        ("lihua", "x" * 73, "auth.password_too_long", "password_too_long"),
    ],
)
def test_failed_logins_are_explained_and_audited(
    session: Session, username: str, password: str, error: str, reason: str
) -> None:
    create_user(session, username="lihua", password="correct horse battery")
    out = auth.login(session, username=username, password=password, now=NOW, policy=POLICY)
    assert not out.ok and out.error_key == error and out.token is None
    assert _actions(session) == [("login_failed", reason)]


def test_72_bytes_is_still_accepted(session: Session) -> None:
    password = "密" * 24  # exactly 72 bytes
    create_user(session, username="wang", password=password)
    assert auth.login(session, username="wang", password=password, now=NOW, policy=POLICY).ok


def test_lockout_is_time_bounded(session: Session) -> None:
    create_user(session, username="lihua", password="correct horse battery")
    for i in range(4):
        out = auth.login(session, username="lihua", password="bad", now=NOW + timedelta(seconds=i), policy=POLICY)
        assert out.error_key == "auth.invalid_credentials"
    out = auth.login(session, username="lihua", password="bad", now=NOW + timedelta(seconds=5), policy=POLICY)
    assert out.error_key == "auth.locked" and out.params == {"minutes": 15}
    # While locked even the right password is refused, and says how long to wait.
    out = auth.login(session, username="lihua", password="correct horse battery",
                     now=NOW + timedelta(minutes=10), policy=POLICY)
    assert out.error_key == "auth.locked" and out.params == {"minutes": 6}
    # The window passes: the right password works again, with a fresh failure count.
    out = auth.login(session, username="lihua", password="correct horse battery",
                     now=NOW + timedelta(minutes=16), policy=POLICY)
    assert out.ok
    user = session.scalars(select(User).where(User.username == "lihua")).one()
    assert user.failed_login_count == 0 and user.locked_until is None


def test_logout_revokes_the_cookie_server_side(session: Session) -> None:
    create_user(session, username="lihua", password="correct horse battery")
    out = auth.login(session, username="lihua", password="correct horse battery", now=NOW, policy=POLICY)
    assert out.token
    cookie = session_cookie.encode(token=out.token, expires_at=NOW + timedelta(days=3650), key=KEY)
    copied = session_cookie.decode(cookie, key=KEY)
    assert copied == out.token
    auth.logout(session, token=out.token, now=NOW + timedelta(minutes=1))
    # The copied cookie still decodes, but names a revoked session: it no longer logs in.
    assert auth.resolve_session(session, token=copied, now=NOW + timedelta(minutes=2)) is None
    assert [a for a, _ in _actions(session)] == ["login", "logout"]


@pytest.mark.parametrize("key", ["some_key", "another-key-" + "y" * 32])
def test_cookie_signed_with_another_key_is_refused(key: str) -> None:
    forged = session_cookie.encode(token="abc", expires_at=NOW + timedelta(days=1), key=key)
    assert session_cookie.decode(forged, key=KEY) is None
    assert session_cookie.decode("not-a-jwt", key=KEY) is None


def test_disabling_a_user_ends_their_sessions(session: Session) -> None:
    admin = create_user(session, username="root1", role="admin")
    create_user(session, username="lihua", password="correct horse battery")
    out = auth.login(session, username="lihua", password="correct horse battery", now=NOW, policy=POLICY)
    assert out.user and out.token
    actor = auth.CurrentUser(admin.id, admin.username, admin.display_name, "admin", None)
    auth.set_active(session, user_id=out.user.id, active=False, actor=actor, now=NOW)
    assert auth.resolve_session(session, token=out.token, now=NOW) is None
    with pytest.raises(UserError, match="users.cannot_disable_self"):
        auth.set_active(session, user_id=admin.id, active=False, actor=actor, now=NOW)


@pytest.mark.parametrize(
    ("username", "password", "role", "error"),
    [
        ("ok_name", "short", "nurse", "auth.password_too_short"),
        ("ok_name", "x" * 80, "nurse", "auth.password_too_long"),
        ("bad name!", "long enough pw", "nurse", "users.bad_username"),
        ("ok_name", "long enough pw", "doctor", "users.bad_role"),
    ],
)
def test_create_user_validates(session: Session, username: str, password: str, role: str, error: str) -> None:
    with pytest.raises(UserError) as info:
        auth.create_user(session, username=username, password=password, role=role, now=NOW)
    assert info.value.key == error
    assert session.scalars(select(User)).all() == []


def test_create_user_refuses_duplicates_and_unknown_department(session: Session) -> None:
    auth.create_user(session, username="zhang", password="long enough pw", role="nurse", now=NOW)
    with pytest.raises(UserError, match="users.exists"):
        auth.create_user(session, username="zhang", password="long enough pw", role="nurse", now=NOW)
    with pytest.raises(UserError, match="users.unknown_department"):
        auth.create_user(session, username="li", password="long enough pw", role="nurse", now=NOW,
                         department_code="NOPE")
