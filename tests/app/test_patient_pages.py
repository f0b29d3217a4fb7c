"""AppTest for the patients pages: every role in both languages, server-side denial, masking, audit, enrolment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
import streamlit as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from db.models import AuditLog, Department, Patient, User
from i18n import t
from services import auth, clock
from services.auth import LoginPolicy
from tests.factories import create_user
from tests.factories_patients import ACTOR, add_observation, patient_input, resident_id

ROLES = ("admin", "manager", "nurse", "quality")
PASSWORD = "correct horse battery"
TIMEOUT = 30
MY_PAGES = {
    "patients": ("app_pages/patients.py", {"nurse", "admin", "manager", "quality"}),
    "patient": ("app_pages/patient.py", {"nurse", "admin", "manager", "quality"}),
    "enrol": ("app_pages/enrol.py", {"nurse", "admin"}),
    "import": ("app_pages/import_data.py", {"nurse", "admin"}),
}


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    from datetime import datetime

    from services import patients as svc

    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        for role in ROLES:
            create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                        department_id=dept.id)
        p = svc.enrol(s, patient_input(name="张三", phone="13812345678", department_id=dept.id, birth_date=None,
                                       id_number=resident_id(date(1960, 1, 2), "M"), consents=("followup",)),
                      actor=ACTOR, card_prefix="CL")
        for year, v in ((2021, 128), (2023, 145)):
            add_observation(s, patient_id=p.id, code="SBP", value=v, at=datetime(year, 5, 1))
        svc.add_history(s, patient_id=p.id, actor=ACTOR, data=svc.HistoryInput(kind="allergy", text="青霉素"))
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _token(engine: Engine, username: str) -> str:
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    assert out.token
    return out.token


def _app(engine: Engine, username: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    at.session_state["careloop_token"] = _token(engine, username)
    return at


def _patient(engine: Engine) -> Patient:
    with Session(engine) as s:
        return s.scalars(select(Patient).where(Patient.name == "张三")).one()


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.error, *at.info, *at.warning,
                               *at.success, *at.subheader)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page_key", list(MY_PAGES))
@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_roles_see_or_do_not_see_each_page(app_db: Engine, role: str, page_key: str, lang: str) -> None:
    path, roles = MY_PAGES[page_key]
    at = _app(app_db, role, lang).run()
    assert not at.exception, at.exception
    if role not in roles:
        # Not in this role's navigation: the page is not registered for the session at all.
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(path)
        return
    at.switch_page(path).run()
    assert not at.exception, at.exception
    assert t(f"nav.{page_key}", lang) in [e.value for e in at.title]
    assert not at.error


@pytest.mark.parametrize("role", ["manager", "quality"])
def test_enrol_and_import_guard_themselves(app_db: Engine, role: str) -> None:
    for path in ("app_pages/enrol.py", "app_pages/import_data.py"):
        at = AppTest.from_file(f"../../{path}", default_timeout=TIMEOUT)
        at.session_state["lang"] = "en"
        with Session(app_db) as s:
            u = s.scalars(select(User).where(User.username == role)).one()
            at.session_state["careloop_user"] = auth.CurrentUser(u.id, u.username, u.display_name, u.role,
                                                                 u.department_id)
        at.run()
        assert [e.value for e in at.error] == ["You do not have access to this page."]
        assert not at.text_input


@pytest.mark.parametrize(("role", "masked"), [("manager", True), ("quality", True), ("nurse", False),
                                              ("admin", False)])
def test_search_masks_contacts_for_roles_that_do_not_need_them(app_db: Engine, role: str, masked: bool) -> None:
    at = _app(app_db, role).run()
    at.switch_page("app_pages/patients.py").run()
    at.text_input(key="patients_q").input("zs").run()
    assert not at.exception
    df = at.dataframe[0].value
    phone = df[t("patients.col.phone", "en")].iloc[0]
    assert phone == ("138****5678" if masked else "13812345678")
    idn = df[t("patients.col.id_number", "en")].iloc[0]
    assert ("*" in idn) == masked


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_360_view_shows_the_record_and_audits_the_open(app_db: Engine, lang: str) -> None:
    p = _patient(app_db)
    at = _app(app_db, "manager", lang)
    at.session_state["patient_id"] = p.id
    at.run()
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert p.card_no in text and "138****5678" in text and "13812345678" not in text
    assert len(at.tabs) == 4  # no edit tab for a manager
    with Session(app_db) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "patient_viewed")).all()
    assert [(r.patient_id, r.username) for r in rows] == [(p.id, "manager")]
    # a rerun on the same record (a widget) does not log another open
    at.run()
    with Session(app_db) as s:
        assert len(s.scalars(select(AuditLog).where(AuditLog.action == "patient_viewed")).all()) == 1


def test_360_view_by_card_query_param_for_a_nurse(app_db: Engine) -> None:
    p = _patient(app_db)
    at = _app(app_db, "nurse")
    at.query_params["card"] = p.card_no
    at.run()
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    assert "13812345678" in _texts(at)
    assert len(at.tabs) == 5


def test_360_view_without_a_patient_asks_for_one(app_db: Engine) -> None:
    at = _app(app_db, "quality").run()
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception
    assert t("patients.view.choose", "en") in _texts(at)


def test_enrolment_then_duplicate_confirmation(app_db: Engine) -> None:
    # zh_CN: AppTest re-applies the selectboxes' format_func outside the session, where the language is the default.
    at = _app(app_db, "nurse", "zh_CN").run()
    at.switch_page("app_pages/enrol.py").run()
    assert not at.exception, at.exception
    at.text_input[0].input("刘备")
    at.date_input[0].set_value(date(1961, 7, 1))
    at.text_input[1].input("13600001111")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("CL" in s.value for s in at.success), _texts(at)
    with Session(app_db) as s:
        assert s.scalars(select(Patient).where(Patient.name == "刘备")).one().phone == "13600001111"
    # the same person again: duplicates shown, nothing saved until confirmed
    at.text_input[0].input("刘备")
    at.date_input[0].set_value(date(1961, 7, 1))
    at.text_input[1].input("13600001111")
    at.button[0].click().run()
    assert at.warning and at.dataframe
    with Session(app_db) as s:
        assert len(s.scalars(select(Patient).where(Patient.name == "刘备")).all()) == 1
    at.button(key="enrol_confirm_new").click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert len(s.scalars(select(Patient).where(Patient.name == "刘备")).all()) == 2


def test_enrolment_bad_input_is_translated(app_db: Engine) -> None:
    at = _app(app_db, "admin", "zh_CN").run()
    at.switch_page("app_pages/enrol.py").run()
    at.text_input[0].input("关羽")
    at.text_input[2].input("110105194912310021")
    at.button[0].click().run()
    assert [e.value for e in at.error] == [t("patients.err.id_check_digit", "zh_CN")]
