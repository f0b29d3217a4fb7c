"""Which screens each role gets: one registry, read by app.py to build the menu and by pages to guard themselves."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from services.auth import CurrentUser


@dataclass(frozen=True)
class PageSpec:
    key: str
    path: str
    title_key: str
    icon: str
    roles: frozenset[str]
    section_key: str = "nav.section.main"


PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview", "app_pages/overview.py", "nav.overview", ":material/monitoring:",
             frozenset({"manager", "quality", "admin"})),
    PageSpec("worklist", "app_pages/worklist.py", "nav.worklist", ":material/checklist:",
             frozenset({"nurse"})),
    PageSpec("users", "app_pages/users.py", "nav.users", ":material/manage_accounts:",
             frozenset({"admin"}), "nav.section.admin"),
    PageSpec("audit", "app_pages/audit.py", "nav.audit", ":material/policy:",
             frozenset({"admin", "quality"}), "nav.section.admin"),
)
_BY_KEY = {p.key: p for p in PAGES}


def pages_for_role(role: str) -> list[PageSpec]:
    """The screens a role may open, in menu order; the first is its landing page."""
    return [p for p in PAGES if role in p.roles]


def allowed(role: str, page_key: str) -> bool:
    return role in _BY_KEY[page_key].roles


def current_user() -> CurrentUser | None:
    user = st.session_state.get("careloop_user")
    return user if isinstance(user, CurrentUser) else None


def require(page_key: str) -> CurrentUser:
    """Server-side guard at the top of every restricted page: the menu hiding a page is not enough."""
    from components.runtime import tr

    user = current_user()
    if user is None or not allowed(user.role, page_key):
        st.error(tr("auth.forbidden"))
        st.stop()
        raise RuntimeError("unreachable")
    return user
