"""AppTest for the satisfaction pages: every role x page in both languages (allowed pages render, the others are
refused by the page's own `require`), and the main actions (fill a survey, work a case, save a template)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import streamlit as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from components.navigation import PAGES, pages_for_role
from db.models import Department, FollowupTask, ServiceRecoveryCase, SurveyResponse, User
from i18n import t
from services import clock
from services.auth import CurrentUser
from tests.factories import create_patient, create_user
from tests.factories_satisfaction import builtins, submit

ROLES = ("admin", "manager", "nurse", "quality")
MINE = ("nps", "topbox", "comments", "recovery", "survey_fill", "questionnaires")
TIMEOUT = 30


@pytest.fixture
def sat_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    now = clock.now()
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        for role in ROLES:
            create_user(s, username=role, role=role, display_name=f"{role} 用户", department_id=dept.id)
        nurse = s.scalars(select(User).where(User.username == "nurse")).one()
        builtins(s)
        for i, score in enumerate([10, 9, 8, 3, 10, 6, 2]):
            p = create_patient(s, department_id=dept.id, nurse_id=nurse.id, card_no=f"C{i:08d}")
            submit(s, score, at=now - timedelta(days=15 * i), patient_id=p.id, doctor_name="王医生",
                   channel="kiosk", answers={"doctors": 5 if score > 6 else 2, "overall": score,
                                             "comment": f"意见 {score}"})
        create_patient(s, department_id=dept.id, card_no="KIOSK0001", name="李自助")
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _page(engine: Engine, key: str, username: str, lang: str = "en") -> AppTest:
    path = next(p.path for p in PAGES if p.key == key)
    at = AppTest.from_file(f"../../{path}", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    with Session(engine) as s:
        u = s.scalars(select(User).where(User.username == username)).one()
        at.session_state["careloop_user"] = CurrentUser(u.id, u.username, u.display_name, u.role, u.department_id)
    return at


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", MINE)
def test_every_role_on_every_satisfaction_page(sat_db: Engine, key: str, role: str, lang: str) -> None:
    at = _page(sat_db, key, role, lang).run()
    assert not at.exception, at.exception
    allowed = key in [p.key for p in pages_for_role(role)]
    titles = [e.value for e in at.title]
    if allowed:
        assert titles == [t(f"nav.{key}", lang)]
        assert not at.error, [e.value for e in at.error]
    else:
        assert titles == []
        assert [e.value for e in at.error] == [t("auth.forbidden", lang)]
        assert not at.dataframe and not at.metric


def test_landing_pages_are_kept() -> None:
    assert pages_for_role("manager")[0].key == "overview"
    assert pages_for_role("quality")[0].key == "overview"
    assert pages_for_role("admin")[0].key == "overview"
    assert pages_for_role("nurse")[0].key == "worklist"


def test_nps_page_numbers_and_captions(sat_db: Engine) -> None:
    at = _page(sat_db, "nps", "manager").run()
    metrics = {m.label: m.value for m in at.metric}
    # 7 responses within the default year: 3 promoters, 1 passive, 3 detractors.
    assert metrics["Responses"] == "7" and metrics["NPS"] == "0.0"
    assert any("7 responses" in c.value and "All departments" in c.value for c in at.caption)
    assert any("Only 7 responses" in w.value for w in at.warning)
    at.session_state["nps_by"] = "department"
    at.run()
    assert not at.exception
    at.session_state["nps_drill_band"] = "detractor"
    at.run()
    assert any("3 of 3 responses" in c.value for c in at.caption)


def test_topbox_and_comments_pages(sat_db: Engine) -> None:
    at = _page(sat_db, "topbox", "quality").run()
    assert not at.exception and at.dataframe
    assert any("HCAHPS" in c.value for c in at.caption)
    at = _page(sat_db, "comments", "quality", "zh_CN").run()
    assert not at.exception and len(at.dataframe[0].value) == 7
    at.session_state["comments_band"] = "detractor"
    at.run()
    assert len(at.dataframe[0].value) == 3
    at.text_input(key="comments_keyword").input("意见 2").run()
    assert len(at.dataframe[0].value) == 1


def test_nurse_fills_a_survey_at_the_kiosk(sat_db: Engine) -> None:
    at = _page(sat_db, "survey_fill", "nurse").run()
    at.text_input(key="fill_card").input("NOPE").run()
    assert [e.value for e in at.error] == ["No patient has card number NOPE."]
    at.text_input(key="fill_card").input("KIOSK0001").run()
    assert not at.error and any("李自助" in m.value for m in at.markdown)
    at.button[0].click().run()  # submit empty: the required recommend question is missing
    assert [e.value for e in at.error] == ["Question nps must be answered."]
    at.radio(key="fill_satisfaction_nps").set_value(4)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.success[0].value == "Thank you: the answers are saved."
    assert at.warning  # a detractor: a case was opened
    assert at.text_input(key="fill_card").value == ""  # ready for the next patient
    with Session(sat_db) as s:
        r = s.scalars(select(SurveyResponse).where(SurveyResponse.source == "kiosk")).one()
        assert r.nps_score == 4 and r.channel == "kiosk"
        case = s.scalars(select(ServiceRecoveryCase).where(ServiceRecoveryCase.response_id == r.id)).one()
        task = s.scalars(select(FollowupTask).where(FollowupTask.dedup_key == f"recovery:{case.id}")).one()
        assert task.kind == "service_recovery"


def test_quality_closes_a_case(sat_db: Engine) -> None:
    at = _page(sat_db, "recovery", "quality").run()
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert labels["Open"] == "3" and labels["Closed"] == "0"
    at.text_area[1].input("Called the patient and apologised.")
    at.button[1].click().run()  # close
    assert not at.exception and not at.error, [e.value for e in at.error]
    with Session(sat_db) as s:
        assert s.scalar(select(func.count()).select_from(ServiceRecoveryCase)
                        .where(ServiceRecoveryCase.status == "closed")) == 1
    labels = {m.label: m.value for m in at.metric}
    assert labels["Closed"] == "1"


def test_admin_saves_a_template_version(sat_db: Engine) -> None:
    at = _page(sat_db, "questionnaires", "admin").run()
    assert not at.exception
    at.session_state["builder_code"] = "gad7"
    at.run()
    at.button[0].click().run()
    assert at.success and "Nothing changed" in at.success[0].value
