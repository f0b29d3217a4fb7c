"""Per-process resources (settings, engine) and per-session language, the app's one caching seam."""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

import i18n
from config import ConfigError, Settings, load_settings
from db.engine import make_engine


def lang() -> str:
    value = st.session_state.get("lang", i18n.DEFAULT_LANGUAGE)
    return value if value in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE


def tr(key: str, **params: Any) -> str:
    return i18n.t(key, lang(), **params)


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return make_engine(url)


def settings_or_stop() -> Settings:
    try:
        # Read on every run (cheap): a changed secrets file or environment takes effect without a restart.
        return load_settings()
    except ConfigError as exc:
        st.error(tr("startup.config_error"))
        st.code(str(exc), language=None)
        st.stop()
        raise  # unreachable: st.stop() raises


def engine_or_stop(settings: Settings) -> Engine:
    """The engine, after proving the database answers and is migrated; otherwise a page that says how to fix it."""
    engine = _engine(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            ready = inspect(conn).has_table("users")
    except SQLAlchemyError as exc:
        st.error(tr("startup.db_unreachable"))
        st.markdown(tr("startup.db_help"))
        st.code(f"CARELOOP_DATABASE_URL={_masked(settings.database_url)}\n{type(exc).__name__}", language=None)
        st.stop()
        raise
    if not ready:
        st.error(tr("startup.db_not_migrated"))
        st.code("python manage.py init-db", language="bash")
        st.stop()
    return engine


def _masked(url: str) -> str:
    # Never print a password from the URL on a public error page.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def language_selector() -> None:
    st.sidebar.selectbox(
        "语言 / Language",
        options=list(i18n.LANGUAGES),
        format_func=i18n.language_label,
        key="lang",
    )
