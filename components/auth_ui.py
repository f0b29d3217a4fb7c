"""Login with streamlit-authenticator's form, backed by Careloop's database users, lockout and sessions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import extra_streamlit_components as stx
import streamlit as st
import streamlit_authenticator as stauth
from sqlalchemy import Engine

from components.runtime import tr
from config import Settings
from db.engine import transaction
from services import auth, clock, session_cookie
from services.auth import CurrentUser, LoginPolicy

TOKEN_KEY = "careloop_token"
USER_KEY = "careloop_user"


def _policy(settings: Settings) -> LoginPolicy:
    return LoginPolicy(settings.max_failed_logins, settings.lockout_minutes, settings.session_hours)


class _DatabaseLogin:
    """Stands in for the library's AuthenticationController: passwords, lockout and sessions live in our DB."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings

    def login(self, username: str | None = None, password: str | None = None, *_: Any,
              token: dict[str, str] | None = None, **__: Any) -> bool:
        now = clock.now(self.settings.timezone)
        if token is not None:  # re-login from our cookie: the token was already resolved in get_cookie
            return _adopt(token["sid"], self.engine, self.settings)
        with transaction(self.engine) as s:
            outcome = auth.login(s, username=username or "", password=password or "", now=now,
                                 policy=_policy(self.settings))
        if not outcome.ok or outcome.token is None:
            st.session_state["authentication_status"] = False
            st.session_state["careloop_login_error"] = (outcome.error_key, outcome.params)
            return False
        st.session_state.pop("careloop_login_error", None)
        st.session_state[TOKEN_KEY] = outcome.token
        st.session_state[USER_KEY] = outcome.user
        st.session_state["authentication_status"] = True
        st.session_state["username"] = username
        return True


class _SessionCookie:
    """Stands in for the library's CookieController: the cookie names a revocable server-side session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get_cookie(self) -> dict[str, str] | None:
        if st.session_state.get("careloop_logged_out"):
            return None
        raw = st.context.cookies.get(self.settings.cookie_name)
        sid = session_cookie.decode(raw, key=self.settings.cookie_key) if raw else None
        return {"sid": sid} if sid else None

    def set_cookie(self) -> None:
        # Written on the next run by sync_cookie(): a component drawn just before st.rerun() may never
        # reach the browser.
        st.session_state["careloop_cookie_action"] = "set"

    def delete_cookie(self) -> None:
        st.session_state["careloop_cookie_action"] = "delete"


def sync_cookie(settings: Settings) -> None:
    """Set or delete the browser cookie asked for on the previous run."""
    action = st.session_state.pop("careloop_cookie_action", None)
    if action is None:
        return
    manager = stx.CookieManager(key="careloop_cookies")
    if action == "set" and st.session_state.get(TOKEN_KEY):
        expires = clock.now(settings.timezone) + timedelta(hours=settings.session_hours)
        value = session_cookie.encode(token=st.session_state[TOKEN_KEY], expires_at=expires,
                                      key=settings.cookie_key)
        manager.set(settings.cookie_name, value, key="careloop_set_cookie",
                    max_age=settings.session_hours * 3600, same_site="strict")
    elif action == "delete":
        manager.set(settings.cookie_name, "", key="careloop_delete_cookie", max_age=0, same_site="strict")


def _adopt(token: str, engine: Engine, settings: Settings) -> bool:
    with transaction(engine) as s:
        user = auth.resolve_session(s, token=token, now=clock.now(settings.timezone))
    if user is None:
        return False
    st.session_state[TOKEN_KEY] = token
    st.session_state[USER_KEY] = user
    st.session_state["authentication_status"] = True
    st.session_state["username"] = user.username
    return True


def _authenticator(engine: Engine, settings: Settings) -> stauth.Authenticate:
    # The credentials dict stays empty: users are looked up in the database on each attempt.
    authenticator = stauth.Authenticate(
        {"usernames": {}}, settings.cookie_name, settings.cookie_key,
        settings.session_hours / 24, auto_hash=False, login_sleep_time=0,
    )
    authenticator.authentication_controller = _DatabaseLogin(engine, settings)  # type: ignore[assignment]
    authenticator.cookie_controller = _SessionCookie(settings)  # type: ignore[assignment]
    return authenticator


def current_user(engine: Engine, settings: Settings) -> CurrentUser | None:
    """The signed-in user, re-checked against the database on every run so a revoked session ends at once."""
    token = st.session_state.get(TOKEN_KEY)
    if not token:
        return None
    with transaction(engine) as s:
        user = auth.resolve_session(s, token=token, now=clock.now(settings.timezone))
    if user is None:
        _forget()
        return None
    st.session_state[USER_KEY] = user
    return user


def _forget() -> None:
    for key in (TOKEN_KEY, USER_KEY):
        st.session_state.pop(key, None)
    st.session_state["authentication_status"] = None


def login_page(engine: Engine, settings: Settings) -> CurrentUser | None:
    sync_cookie(settings)
    st.title(tr("app.title"))
    st.caption(tr("app.tagline"))
    if settings.demo:
        st.info(tr("login.demo_mode"), icon=":material/science:")
    authenticator = _authenticator(engine, settings)
    authenticator.login(
        location="main",
        key="careloop_login",
        fields={"Form name": tr("login.title"), "Username": tr("login.username"),
                "Password": tr("login.password"), "Login": tr("login.submit")},
    )
    if st.session_state.get(USER_KEY) is not None and st.session_state.get(TOKEN_KEY):
        st.session_state.pop("careloop_logged_out", None)
        st.rerun()
    error = st.session_state.get("careloop_login_error")
    if error:
        key, params = error
        st.error(tr(key, **params))
    return None


def logout_button(engine: Engine, settings: Settings) -> None:
    if st.sidebar.button(tr("login.logout"), key="careloop_logout", icon=":material/logout:"):
        token = st.session_state.get(TOKEN_KEY)
        if token:
            with transaction(engine) as s:
                auth.logout(s, token=token, now=clock.now(settings.timezone))
        _forget()
        # The browser keeps sending the old cookie until this connection closes; this flag and the
        # revoked session both keep it from logging back in.
        st.session_state["careloop_logged_out"] = True
        st.session_state["careloop_cookie_action"] = "delete"
        st.rerun()
