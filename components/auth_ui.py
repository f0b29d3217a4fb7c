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
COOKIE_ACTION_KEY = "careloop_cookie_action"
COOKIE_VALUE_KEY = "careloop_cookie_value"


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
        # Written on the next runs by sync_cookie(): a component drawn just before st.rerun() may never
        # reach the browser.
        st.session_state[COOKIE_ACTION_KEY] = "set"

    def delete_cookie(self) -> None:
        st.session_state[COOKIE_ACTION_KEY] = "delete"


def sync_cookie(settings: Settings) -> None:
    """Set or delete the browser cookie asked for on an earlier run, drawing the setter on every run until the
    browser reports it done.

    Drawn on one run only, the setter raced CookieManager's own getAll component: its value triggers a rerun,
    and a rerun that no longer draws the setter removes its iframe before it has loaded, so the cookie was
    sometimes never written (or never deleted). The setter answers True once it has run in the browser.
    """
    action = st.session_state.get(COOKIE_ACTION_KEY)
    if action is None:
        return
    setter_key = f"careloop_{action}_cookie"
    if st.session_state.get(setter_key) is True:
        st.session_state.pop(COOKIE_ACTION_KEY, None)
        st.session_state.pop(COOKIE_VALUE_KEY, None)
        return
    if action == "set" and not st.session_state.get(TOKEN_KEY):
        st.session_state.pop(COOKIE_ACTION_KEY, None)
        return
    manager = stx.CookieManager(key="careloop_cookies")
    if action == "set":
        if COOKIE_VALUE_KEY not in st.session_state:
            # Encoded once, so the setter's arguments (and its iframe) stay the same from run to run.
            expires = clock.now(settings.timezone) + timedelta(hours=settings.session_hours)
            st.session_state[COOKIE_VALUE_KEY] = session_cookie.encode(
                token=st.session_state[TOKEN_KEY], expires_at=expires, key=settings.cookie_key)
        manager.set(settings.cookie_name, st.session_state[COOKIE_VALUE_KEY], key=setter_key,
                    max_age=settings.session_hours * 3600, same_site="strict")
    else:
        manager.set(settings.cookie_name, "", key=setter_key, max_age=0, same_site="strict")


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


class _Authenticator(stauth.Authenticate):  # type: ignore[misc]
    """The library's login form over our controllers.

    The library's __init__ is skipped on purpose: it builds its own CookieController, whose CookieManager draws
    an invisible component on every login-page run; that component's first value reruns the page a moment after
    it loads, and a "Sign in" clicked during that rerun was sometimes lost. Careloop never reads that cookie.
    login() (0.4.x) only needs the attributes set here.
    """

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.api_key = None
        self.attrs = {"login_sleep_time": 0}
        self.secret_key = settings.cookie_key
        self.path = None  # credentials live in the database, not in a YAML file
        # The credentials dict stays empty: users are looked up in the database on each attempt.
        self.authentication_controller = _DatabaseLogin(engine, settings)
        self.cookie_controller = _SessionCookie(settings)


def _authenticator(engine: Engine, settings: Settings) -> stauth.Authenticate:
    return _Authenticator(engine, settings)


def current_user(engine: Engine, settings: Settings) -> CurrentUser | None:
    """The signed-in user, re-checked against the database on every run so a revoked session ends at once."""
    token = st.session_state.get(TOKEN_KEY)
    if not token:
        # A new browser session (reload, bookmark, a link to /users) signs in from the cookie here, in its first
        # run and before anything is drawn. Going through the login form's st.rerun() instead loses the page the
        # URL asked for: st.navigation has not run yet, so the rerun lands on the default page.
        cookie = _SessionCookie(settings).get_cookie()
        if cookie is None or not _adopt(cookie["sid"], engine, settings):
            return None
        adopted: CurrentUser = st.session_state[USER_KEY]
        return adopted
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
        st.session_state.pop(COOKIE_VALUE_KEY, None)
        st.session_state[COOKIE_ACTION_KEY] = "delete"
        st.rerun()
