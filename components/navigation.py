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
    PageSpec("patients", "app_pages/patients.py", "nav.patients", ":material/person_search:",
             frozenset({"nurse", "admin", "manager", "quality"}), "nav.section.patients"),
    PageSpec("patient", "app_pages/patient.py", "nav.patient", ":material/person:",
             frozenset({"nurse", "admin", "manager", "quality"}), "nav.section.patients"),
    PageSpec("enrol", "app_pages/enrol.py", "nav.enrol", ":material/person_add:",
             frozenset({"nurse", "admin"}), "nav.section.patients"),
    PageSpec("import", "app_pages/import_data.py", "nav.import", ":material/upload_file:",
             frozenset({"admin", "nurse"}), "nav.section.patients"),
    PageSpec("nps", "app_pages/nps.py", "nav.nps", ":material/recommend:",
             frozenset({"manager", "quality", "admin"}), "nav.section.satisfaction"),
    PageSpec("topbox", "app_pages/topbox.py", "nav.topbox", ":material/grid_on:",
             frozenset({"manager", "quality", "admin"}), "nav.section.satisfaction"),
    PageSpec("comments", "app_pages/comments.py", "nav.comments", ":material/forum:",
             frozenset({"manager", "quality", "admin"}), "nav.section.satisfaction"),
    PageSpec("recovery", "app_pages/recovery.py", "nav.recovery", ":material/support_agent:",
             frozenset({"quality", "manager", "admin"}), "nav.section.satisfaction"),
    PageSpec("survey_fill", "app_pages/survey_fill.py", "nav.survey_fill", ":material/edit_note:",
             frozenset({"nurse", "admin"}), "nav.section.satisfaction"),
    PageSpec("questionnaires", "app_pages/questionnaires.py", "nav.questionnaires", ":material/quiz:",
             frozenset({"admin"}), "nav.section.admin"),
    PageSpec("task", "app_pages/task.py", "nav.task", ":material/call:",
             frozenset({"nurse", "admin"}), "nav.section.followup"),
    PageSpec("interventions", "app_pages/interventions.py", "nav.interventions", ":material/healing:",
             frozenset({"nurse", "admin"}), "nav.section.followup"),
    PageSpec("followup_dashboard", "app_pages/followup_dashboard.py", "nav.followup_dashboard",
             ":material/fact_check:", frozenset({"manager", "quality", "admin"}), "nav.section.followup"),
    PageSpec("plans", "app_pages/plans.py", "nav.plans", ":material/event_repeat:",
             frozenset({"admin"}), "nav.section.admin"),
    PageSpec("risk", "app_pages/risk.py", "nav.risk", ":material/monitor_heart:",
             frozenset({"manager", "quality", "admin"}), "nav.section.care"),
    PageSpec("return_risk", "app_pages/return_risk.py", "nav.return_risk", ":material/event_busy:",
             frozenset({"manager", "admin"}), "nav.section.care"),
    PageSpec("tag_rules", "app_pages/tag_rules.py", "nav.tag_rules", ":material/sell:",
             frozenset({"admin"}), "nav.section.admin"),
    PageSpec("advice", "app_pages/advice.py", "nav.advice", ":material/tips_and_updates:",
             frozenset({"admin"}), "nav.section.admin"),
    PageSpec("reports", "app_pages/report_center.py", "nav.reports", ":material/summarize:",
             frozenset({"quality", "manager", "admin"}), "nav.section.main"),
    PageSpec("outbox", "app_pages/outbox.py", "nav.outbox", ":material/outbox:",
             frozenset({"admin", "nurse"}), "nav.section.messaging"),
    PageSpec("education", "app_pages/education.py", "nav.education", ":material/menu_book:",
             frozenset({"admin", "nurse"}), "nav.section.messaging"),
    PageSpec("engagement", "app_pages/engagement.py", "nav.engagement", ":material/campaign:",
             frozenset({"manager", "admin"}), "nav.section.messaging"),
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
