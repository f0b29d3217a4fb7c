"""AppTest over every (role, page) pair, access denial, and the login form's rules through the real app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import streamlit as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from components.navigation import PAGES, pages_for_role
from db.models import AuditLog, Department
from i18n import t
from services import auth, clock
from services.auth import LoginPolicy
from tests.factories import create_patient, create_response, create_task, create_user

ROLES = ("admin", "manager", "nurse", "quality")
PASSWORD = "correct horse battery"
TIMEOUT = 30


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    today = clock.today()
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        for role in ROLES:
            create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                        department_id=dept.id)
        nurse_id = s.scalars(select(auth.User.id).where(auth.User.username == "nurse")).one()
        for days in (-3, 0, 2):
            p = create_patient(s, department_id=dept.id, name=f"王{days + 10}")
            create_task(s, patient_id=p.id, assignee_id=nurse_id, department_id=dept.id,
                        due_date=today + timedelta(days=days))
        for i, score in enumerate([10, 9, 8, 3, 10, 6]):
            create_response(s, nps_score=score, department_id=dept.id,
                            submitted_at=clock.now() - timedelta(days=20 * i))
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _token(engine: Engine, username: str) -> str:
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    assert out.token
    return out.token


def _app(engine: Engine, username: str | None = None, lang: str = "en") -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    if username:
        at.session_state["careloop_token"] = _token(engine, username)
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.error, *at.info, *at.warning)]
    return "\n".join(str(p) for p in parts)


PAIRS = [(role, page.key, page.path) for role in ROLES for page in PAGES]


@pytest.mark.parametrize(("role", "page_key", "path"), PAIRS)
@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_every_role_and_page(app_db: Engine, role: str, page_key: str, path: str, lang: str) -> None:
    at = _app(app_db, role, lang).run()
    assert not at.exception, at.exception
    if page_key not in [p.key for p in pages_for_role(role)]:
        # The page is not in this role's navigation: switching to it fails.
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(path)
        return
    at.switch_page(path).run()
    assert not at.exception, at.exception
    assert at.title, "every page has a title"
    assert t("auth.forbidden", lang) not in [e.value for e in at.error]


@pytest.mark.parametrize("role", ["nurse", "manager"])
def test_restricted_page_guards_itself(app_db: Engine, role: str) -> None:
    """Run the admin page directly, bypassing navigation: the page's own check refuses."""
    at = AppTest.from_file("../../app_pages/users.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = "en"
    with Session(app_db) as s:
        u = s.scalars(select(auth.User).where(auth.User.username == role)).one()
        at.session_state["careloop_user"] = auth.CurrentUser(u.id, u.username, u.display_name, u.role,
                                                             u.department_id)
    at.run()
    assert [e.value for e in at.error] == ["You do not have access to this page."]
    assert not at.dataframe


def test_anonymous_sees_only_the_login_form(app_db: Engine) -> None:
    at = _app(app_db).run()
    assert not at.exception
    assert len(at.text_input) == 2
    assert not at.dataframe and not at.metric
    at.switch_page("app_pages/users.py").run()
    assert "Users" not in [e.value for e in at.title] and len(at.text_input) == 2


def _submit(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def test_login_through_the_form_lands_on_the_role_page(app_db: Engine) -> None:
    at = _submit(_app(app_db).run(), "manager", PASSWORD)
    assert not at.exception
    assert "Overview" in [e.value for e in at.title]
    assert len(at.metric) == 5
    with Session(app_db) as s:
        assert "login" in s.scalars(select(AuditLog.action)).all()


@pytest.mark.parametrize(
    ("lang", "username", "password", "message"),
    [
        ("en", "manager", "wrong password", "Username or password is incorrect."),
        ("en", "ghost", "wrong password", "Username or password is incorrect."),
        ("en", "", "", "Enter both your username and your password."),
        ("en", "manager", "x" * 80, "longer than 72 bytes"),
        ("zh_CN", "manager", "wrong password", "用户名或密码错误。"),
        ("zh_CN", "manager", "密" * 30, "超过 72 字节"),
    ],
)
def test_login_errors_are_translated(app_db: Engine, lang: str, username: str, password: str, message: str) -> None:
    at = _submit(_app(app_db, lang=lang).run(), username, password)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.text_input) == 2  # still on the login form


def test_lockout_message_after_five_failures(app_db: Engine) -> None:
    at = _app(app_db).run()
    for _ in range(5):
        at = _submit(at, "quality", "wrong password")
    assert any("locked" in e.value for e in at.error)
    at = _submit(at, "quality", PASSWORD)  # right password, still locked
    assert any("locked" in e.value for e in at.error)
    assert "Overview" not in [e.value for e in at.title]


def test_logout_ends_the_session(app_db: Engine) -> None:
    at = _app(app_db, "manager").run()
    token = at.session_state["careloop_token"]
    at.sidebar.button(key="careloop_logout").click().run()
    assert len(at.text_input) == 2
    with Session(app_db) as s:
        assert auth.resolve_session(s, token=token, now=clock.now()) is None


def test_unreachable_database_shows_a_clear_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", "postgresql+psycopg2://careloop:secret@127.0.0.1:9/careloop")
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = "en"
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Careloop cannot reach its database."]
    assert all("secret" not in c.value for c in at.code)


def test_missing_cookie_key_stops_start_up(app_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "some_key")
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = "en"
    at.run()
    assert not at.exception
    assert "configuration is incomplete" in at.error[0].value
    assert not at.text_input


def test_demo_mode_says_so_on_the_login_page(app_db: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CARELOOP_DEMO", "1")
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    at = _app(app_db).run()
    assert any("Demo mode" in e.value for e in at.info)


def test_overview_numbers_and_chart(app_db: Engine) -> None:
    at = _app(app_db, "manager").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Survey responses"] == "6"
    # 3 promoters (10, 9, 10), 1 passive (8), 2 detractors (3, 6): (3 - 2) / 6 = 16.7
    assert metrics["NPS"] == "16.7"
    assert any("All departments" in c.value for c in at.caption)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")


def test_nurse_worklist_lists_due_tasks(app_db: Engine) -> None:
    at = _app(app_db, "nurse").run()
    assert "My worklist" in [e.value for e in at.title]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Overdue"], metrics["Due today"]) == ("1", "1")
    assert len(at.dataframe[0].value) == 3
