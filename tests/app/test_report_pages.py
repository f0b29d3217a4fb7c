"""AppTest of the Reports page (roles allowed and denied, both languages, download buttons) and of the health
report button on the 360° view."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
import streamlit as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from db.models import AuditLog, Department, User
from i18n import t
from services import auth, clock
from services.auth import LoginPolicy
from tests.factories import create_patient, create_response, create_user

ROLES = ("admin", "manager", "nurse", "quality")
ALLOWED = ("admin", "manager", "quality")
PASSWORD = "correct horse battery"
TIMEOUT = 60


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "r" * 40)
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        for role in ROLES:
            create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                        department_id=dept.id)
        for i in range(3):
            create_patient(s, department_id=dept.id, name=f"周{i}", card_no=f"RP{i:05d}")
        for i, score in enumerate([10, 9, 3]):
            create_response(s, nps_score=score, department_id=dept.id,
                            submitted_at=clock.now() - timedelta(days=10 * i))
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _app(engine: Engine, username: str, lang: str) -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    assert out.token
    at.session_state["careloop_token"] = out.token
    return at


def _labels(at: AppTest, kind: str) -> list[str]:
    return [str(e.proto.label) for e in at.get(kind)]


@pytest.mark.parametrize("role", ALLOWED)
@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_reports_page_for_allowed_roles(app_db: Engine, role: str, lang: str) -> None:
    at = _app(app_db, role, lang).run()
    assert not at.exception, at.exception
    at.switch_page("app_pages/report_center.py").run()
    assert not at.exception, at.exception
    assert [e.value for e in at.title] == [t("reports.title", lang)]
    assert t("reports.page.download_quality", lang) in _labels(at, "download_button")
    assert t("auth.forbidden", lang) not in [e.value for e in at.error]
    assert any(t("reports.page.segment", lang, n=3, department=t("filter.all_departments", lang),
                 tag=t("reports.page.any_tag", lang)) == c.value for c in at.caption)


def test_batch_zip_is_built_with_progress_and_audited(app_db: Engine) -> None:
    at = _app(app_db, "quality", "en").run()
    at.switch_page("app_pages/report_center.py").run()
    build = next(b for b in at.button if b.label == t("reports.page.build_zip", "en"))
    build.click().run(timeout=180)
    assert not at.exception, at.exception
    assert t("reports.page.download_zip", "en", n=3) in _labels(at, "download_button")
    with Session(app_db) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "report",
                                               AuditLog.entity == "patient_report_batch")).one()
        each = s.scalars(select(AuditLog).where(AuditLog.action == "report", AuditLog.entity == "patient_report")).all()
    assert row.username == "quality" and row.detail is not None and row.detail["patients"] == 3
    # one row per patient in the zip too: who (the user), what (that patient's report), filter (the segment)
    assert len(each) == 3 and all(r.username == "quality" and r.patient_id is not None for r in each)
    assert all(r.detail is not None and r.detail["filter"] == "batch: " + row.detail["filter"] for r in each)


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_nurse_is_denied(app_db: Engine, lang: str) -> None:
    at = _app(app_db, "nurse", lang).run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("app_pages/report_center.py")
    direct = AppTest.from_file("../../app_pages/report_center.py", default_timeout=TIMEOUT)
    direct.session_state["lang"] = lang
    with Session(app_db) as s:
        u = s.scalars(select(User).where(User.username == "nurse")).one()
        direct.session_state["careloop_user"] = auth.CurrentUser(u.id, u.username, u.display_name, u.role,
                                                                 u.department_id)
    direct.run()
    assert [e.value for e in direct.error] == [t("auth.forbidden", lang)]
    assert not direct.get("download_button")


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_patient_view_has_the_health_report_button(app_db: Engine, lang: str) -> None:
    at = _app(app_db, "manager", lang)
    at.query_params["card"] = "RP00001"
    at.run()
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    assert t("reports.download_patient", lang) in _labels(at, "download_button")


def test_export_buttons_render_and_the_download_is_audited(app_db: Engine) -> None:
    def page() -> None:
        import pandas as pd

        from components.export_buttons import export_buttons

        export_buttons(pd.DataFrame({"科室": ["心内科"], "n": [3]}), name="demo_table",
                       description="3 patients, 心内科")

    with Session(app_db) as s:
        u = s.scalars(select(User).where(User.username == "quality")).one()
        user = auth.CurrentUser(u.id, u.username, u.display_name, u.role, u.department_id)
    at = AppTest.from_function(page, default_timeout=TIMEOUT)
    at.session_state["lang"] = "zh_CN"
    at.session_state["careloop_user"] = user
    at.run()
    assert not at.exception, at.exception
    assert _labels(at, "download_button") == [t("reports.csv", "zh_CN"), t("reports.xlsx", "zh_CN")]

    cast(Any, at.get("download_button")[1]).click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "export")).one()
    assert row.username == "quality" and row.user_id == user.id
    assert row.detail == {"kind": "demo_table", "filter": "3 patients, 心内科", "rows": 1, "format": "xlsx"}
