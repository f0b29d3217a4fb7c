"""AppTest for the outbox, education and engagement pages: allowed and denied roles, both languages, key actions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import streamlit as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from db.models import (
    Department,
    EducationItem,
    Experiment,
    ExperimentAssignment,
    Message,
    Patient,
    PatientContact,
    User,
)
from i18n import t
from services import auth, clock
from services.auth import LoginPolicy
from tests.factories import create_patient, create_user, department
from tests.factories_messaging import consent, message

ROLES = ("admin", "manager", "nurse", "quality")
ALLOWED = {"outbox": {"admin", "nurse"}, "education": {"admin", "nurse"}, "engagement": {"admin", "manager"}}
PATHS = {"outbox": "app_pages/outbox.py", "education": "app_pages/education.py",
         "engagement": "app_pages/engagement.py"}
PASSWORD = "correct horse battery"
TIMEOUT = 30


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "m" * 40)
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    now = clock.now()
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        other = department(s, "ZZOTHER")
        for role in ROLES:
            create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                        department_id=dept.id)
        mine = create_patient(s, card_no="CL0000001", name="王小明", department_id=dept.id)
        consent(s, mine.id)
        consent(s, mine.id, "education")
        theirs = create_patient(s, card_no="CL0000002", name="李其他", department_id=other.id)
        message(s, mine.id, body="我的科室的提醒", scheduled_at=now)
        message(s, theirs.id, body="别的科室的提醒", scheduled_at=now)
        s.add(EducationItem(title="高血压饮食指南", body="少盐。", link=None, language="zh_CN", tags=["hypertension"],
                            risk_levels=["high"], reviewed_by="李主任", reviewed_on=date(2026, 1, 1), active=True,
                            created_at=now))
        exp = Experiment(code="revisit_wording", rule="revisit", variant="wording", arm_a="reminder_revisit",
                         arm_b="reminder_revisit_b", started_on=now.date() - timedelta(days=30), active=True,
                         created_at=now)
        s.add(exp)
        s.flush()
        s.add(ExperimentAssignment(experiment_id=exp.id, patient_id=mine.id, arm="A",
                                   assigned_at=now - timedelta(days=20)))
        s.add(ExperimentAssignment(experiment_id=exp.id, patient_id=theirs.id, arm="B",
                                   assigned_at=now - timedelta(days=20)))
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _app(engine: Engine, username: str, lang: str = "en") -> AppTest:
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    assert out.token
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    at.session_state["careloop_token"] = out.token
    return at


def _page(engine: Engine, key: str, username: str, lang: str = "en") -> AppTest:
    at = _app(engine, username, lang).run()
    assert not at.exception, at.exception
    at.switch_page(PATHS[key]).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", list(PATHS))
def test_roles_allowed_and_denied(app_db: Engine, key: str, role: str, lang: str) -> None:
    if role in ALLOWED[key]:
        at = _page(app_db, key, role, lang)
        assert [e.value for e in at.title] == [t(f"{key}.title", lang)]
        assert t("auth.forbidden", lang) not in [e.value for e in at.error]
        return
    at = _app(app_db, role, lang).run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PATHS[key])
    # Run the page directly, bypassing navigation: its own guard refuses.
    direct = AppTest.from_file(f"../../{PATHS[key]}", default_timeout=TIMEOUT)
    direct.session_state["lang"] = lang
    with Session(app_db) as s:
        u = s.scalars(select(User).where(User.username == role)).one()
        direct.session_state["careloop_user"] = auth.CurrentUser(u.id, u.username, u.display_name, u.role,
                                                                 u.department_id)
    direct.run()
    assert [e.value for e in direct.error] == [t("auth.forbidden", lang)]
    assert not direct.dataframe


def test_nurse_outbox_shows_only_her_department(app_db: Engine) -> None:
    at = _page(app_db, "outbox", "nurse")
    df = at.dataframe[0].value
    texts = list(df[t("outbox.col.body", "en")])
    assert texts == ["我的科室的提醒"]
    assert not any(h.value == t("outbox.templates", "en") for h in at.header)


def test_admin_template_preview_and_unknown_placeholder(app_db: Engine) -> None:
    at = _page(app_db, "outbox", "admin", "zh_CN")
    assert len(at.dataframe[0].value) == 2
    at.text_area(key="tpl_zh_None").input("{name}您好，请于{date}复诊。")
    at.text_area(key="tpl_en_None").input("Dear {name}, see you on {date}.")
    at.text_input(key="tpl_preview_card").input("CL0000001").run()
    assert not at.exception
    previews = [i.value for i in at.info]
    assert any(v.startswith("王小明您好，请于") for v in previews), previews
    at.text_area(key="tpl_en_None").input("Dear {nmae}").run()
    assert any("{nmae}" in e.value and "未知占位符" in e.value for e in at.error)
    at.text_input(key="tpl_code_None").input("my_reminder")
    at.text_area(key="tpl_en_None").input("Dear {name}.")
    at.button(key="tpl_save").click().run()
    assert any("my_reminder" in s.value for s in at.success)


def test_nurse_sends_education_by_card_number(app_db: Engine) -> None:
    at = _page(app_db, "education", "nurse")
    at.text_input(key="edu_card").input("CL0000001").run()
    assert any("王小明" in c.value for c in at.caption)
    at.button(key="edu_send").click().run()
    assert not at.exception
    assert any("Queued for sending by SMS" in s.value for s in at.success), [e.value for e in at.error]
    with Session(app_db) as s:
        m = s.scalars(select(Message).where(Message.purpose == "education")).one()
        assert m.education_item_id is not None and "高血压饮食指南" in m.body
    at.text_input(key="edu_card").input("CL0000002").run()
    assert [e.value for e in at.error] == ["This patient belongs to another department."]


def test_engagement_shows_experiment_arms(app_db: Engine) -> None:
    at = _page(app_db, "engagement", "manager", "zh_CN")
    frames = [d.value for d in at.dataframe]
    assert frames, "the experiment table is shown"
    arms = frames[-1]
    assert list(arms[t("engagement.col.arm", "zh_CN")]) == ["A", "B"]
    assert list(arms[t("engagement.col.n", "zh_CN")]) == [1, 1]



def test_admin_starts_an_experiment(app_db: Engine) -> None:
    # zh_CN: AppTest formats options with the page's format_func in the test process, where the language
    # is the default (zh_CN), so the app has to run in that language too.
    at = _page(app_db, "engagement", "admin", "zh_CN")
    at.text_input[0].input("exam_channel")
    at.selectbox[1].set_value("exam")
    at.selectbox[2].set_value("channel")
    at.text_input[1].input("sms")
    at.text_input[2].input("sms")
    at.button[0].click().run()
    assert [e.value for e in at.error] == [t("experiments.same_arms", "zh_CN")]
    at.text_input[2].input("email")
    at.button[0].click().run()
    assert any("exam_channel" in s.value for s in at.success)
    with Session(app_db) as s:
        assert s.scalars(select(Experiment.variant).where(Experiment.code == "exam_channel")).one() == "channel"


def _patient_page(engine: Engine, username: str, lang: str = "en") -> AppTest:
    at = _app(engine, username, lang)
    at.query_params["card"] = "CL0000001"
    at.run()
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    return at


def _mine(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalars(select(Patient.id).where(Patient.card_no == "CL0000001")).one())


def _save_contacts(at: AppTest, lang: str) -> AppTest:
    [button] = [b for b in at.button if b.label == t("messaging.contacts.save", lang)]
    return button.click().run()


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_360_view_shows_messages_and_the_contact_form(app_db: Engine, lang: str) -> None:
    at = _patient_page(app_db, "nurse", lang)
    # The 360° timeline lists the patient's message with its channel, template and status.
    timeline = at.dataframe[0].value
    assert t("messaging.timeline_kind.message", lang) in set(timeline.iloc[:, 1])
    assert any(str(v).startswith(t("messaging.status.queued", lang)) for v in timeline.iloc[:, 3])
    assert t("messaging.contacts.title", lang) in [h.value for h in at.subheader]
    assert at.text_input(key=f"ct_email_{_mine(app_db)}").label == t("messaging.contacts.email", lang)


def test_nurse_edits_contacts_bad_email_saves_nothing(app_db: Engine) -> None:
    # Clicking runs in the default language only: AppTest re-applies every selectbox's format_func (the
    # page's translated labels) outside the script run, where the session's language is not visible.
    lang = "zh_CN"
    at = _patient_page(app_db, "nurse", lang)
    pid = _mine(app_db)
    at.text_input(key=f"ct_email_{pid}").input("not-an-address")
    at = _save_contacts(at, lang)
    assert not at.exception, at.exception
    assert t("messaging.contacts.bad_email", lang, email="not-an-address") in [e.value for e in at.error]
    with Session(app_db) as s:
        assert s.scalars(select(PatientContact)).all() == []
    at.text_input(key=f"ct_email_{pid}").input("wang.xm@example.cn")
    at.text_input(key=f"ct_phone_{pid}").input("010-12345678")
    at.multiselect(key=f"ct_prefs_{pid}").set_value(["sms"])
    at = _save_contacts(at, lang)
    assert t("messaging.contacts.phone_not_sms", lang, phone="010-12345678") in [e.value for e in at.error]
    at.text_input(key=f"ct_phone_{pid}").input("13912345678")
    at.multiselect(key=f"ct_prefs_{pid}").set_value(["email", "sms"])
    at.selectbox(key=f"ct_lang_{pid}").set_value("en")
    at = _save_contacts(at, lang)
    assert not at.error, [e.value for e in at.error]
    assert t("messaging.contacts.saved", lang) in [m.value for m in at.success]
    with Session(app_db) as s:
        p = s.scalars(select(Patient).where(Patient.card_no == "CL0000001")).one()
        assert (p.phone, p.channel_prefs, p.language) == ("13912345678", ["email", "sms"], "en")
        assert [(c.channel, c.address) for c in s.scalars(select(PatientContact))] == [("email", "wang.xm@example.cn")]


@pytest.mark.parametrize("role", ["manager", "quality"])
def test_contact_form_is_not_offered_to_other_roles(app_db: Engine, role: str) -> None:
    at = _patient_page(app_db, role)
    assert t("messaging.contacts.save", "en") not in [b.label for b in at.button]
    assert f"ct_email_{_mine(app_db)}" not in [w.key for w in at.text_input]
