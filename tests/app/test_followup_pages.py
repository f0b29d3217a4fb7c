"""AppTest for the follow-up screens: each role allowed or refused, both languages, and the main flows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from db.models import (
    AuditLog,
    Department,
    FollowupPlan,
    FollowupRecord,
    FollowupTask,
    Indicator,
    Intervention,
    User,
)
from i18n import t
from services import auth, clock
from services.auth import LoginPolicy
from tests.factories import create_patient, create_task, create_user
from tests.factories_followup import create_bp, create_tag

ROLES = ("admin", "manager", "nurse", "quality")
PASSWORD = "correct horse battery"
TIMEOUT = 30
MY_PAGES = {
    "worklist": ("app_pages/worklist.py", {"nurse"}),
    "task": ("app_pages/task.py", {"nurse", "admin"}),
    "interventions": ("app_pages/interventions.py", {"nurse", "admin"}),
    "followup_dashboard": ("app_pages/followup_dashboard.py", {"manager", "quality", "admin"}),
    "plans": ("app_pages/plans.py", {"admin"}),
}


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    monkeypatch.setenv("CARELOOP_RECORDINGS_DIR", str(tmp_path / "recordings"))
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    today = clock.today()
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        users = {role: create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                                   department_id=dept.id) for role in ROLES}
        create_user(s, username="nurse2", password=PASSWORD, role="nurse", display_name="第二护士",
                    department_id=dept.id)
        for days in (-3, 0, 2):
            p = create_patient(s, department_id=dept.id, name=f"王{days + 10}", card_no=f"CARD{days + 10}")
            create_task(s, patient_id=p.id, assignee_id=users["nurse"].id, department_id=dept.id,
                        due_date=today + timedelta(days=days))
            create_tag(s, patient_id=p.id, since=clock.now() - timedelta(days=400))
        create_bp(s, patient_id=p.id, sbp=150, dbp=95, observed_at=clock.now() - timedelta(days=10))
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _app(engine: Engine, username: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    at.session_state["careloop_token"] = out.token
    return at


def _page(engine: Engine, path: str, username: str, lang: str = "en") -> AppTest:
    """Run a page file directly, as if navigation had been bypassed: the page's own guard must hold."""
    at = AppTest.from_file(f"../../{path}", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    with Session(engine) as s:
        u = s.scalars(select(User).where(User.username == username)).one()
        at.session_state["careloop_user"] = auth.CurrentUser(u.id, u.username, u.display_name, u.role,
                                                             u.department_id)
    return at


PAIRS = [(role, key) for key in MY_PAGES for role in ROLES]


@pytest.mark.parametrize(("role", "key"), PAIRS)
@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_role_allowed_or_denied(app_db: Engine, role: str, key: str, lang: str) -> None:
    path, roles = MY_PAGES[key]
    at = _page(app_db, path, role, lang).run()
    assert not at.exception, at.exception
    if role in roles:
        title = t("worklist.title" if key == "worklist" else f"nav.{key}", lang)
        assert title in [e.value for e in at.title]
        assert t("auth.forbidden", lang) not in [e.value for e in at.error]
    else:
        assert [e.value for e in at.error] == [t("auth.forbidden", lang)]
        assert not at.dataframe


def test_worklist_counts_and_opens_a_task(app_db: Engine) -> None:
    at = _app(app_db, "nurse").run()
    assert "My worklist" in [e.value for e in at.title]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Overdue"], metrics["Due today"], metrics["Upcoming"]) == ("1", "1", "1")
    assert len(at.dataframe[0].value) == 3
    at.selectbox(key="lang").set_value("en")  # AppTest would otherwise resend the selector's default language
    at.button(key="wl_open").click().run()
    assert not at.exception, at.exception
    assert "Follow-up task" in [e.value for e in at.title]


def test_log_a_contact_with_a_recording_and_refuse_a_past_retry(app_db: Engine) -> None:
    with Session(app_db) as s:
        task_id = s.scalars(select(FollowupTask.id).order_by(FollowupTask.due_date)).first()
    at = _page(app_db, "app_pages/task.py", "nurse")
    at.session_state["followup_task_id"] = task_id
    at.run()
    assert not at.exception, at.exception
    # Retry in the past: refused, translated, nothing written.
    at.selectbox[1].set_value("no_answer")
    at.selectbox[2].set_value("retry")
    at.date_input[0].set_value(clock.today() - timedelta(days=1))
    at.text_area[0].input("无人接听")
    at.button[0].click().run()
    assert any("in the past" in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_area[0].value == "无人接听"  # the nurse's notes are still there
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(FollowupRecord)) == 0
    at.selectbox[1].set_value("reached")
    at.selectbox[2].set_value("done")
    at.date_input[0].set_value(None)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("Done" in e.value for e in at.success), [e.value for e in at.success]
    with Session(app_db) as s:
        task = s.get(FollowupTask, task_id)
        assert task is not None and task.status == "done"
        actions = s.scalars(select(AuditLog.action)).all()
        assert "followup_contact" in actions and "view" in actions


def test_second_nurse_gets_a_clear_message(app_db: Engine) -> None:
    with Session(app_db) as s:
        task_id = s.scalars(select(FollowupTask.id).order_by(FollowupTask.due_date)).first()
    at = _page(app_db, "app_pages/task.py", "nurse")
    at.session_state["followup_task_id"] = task_id
    at.run()
    with Session(app_db) as s, s.begin():  # a colleague saves the same task meanwhile
        task = s.get(FollowupTask, task_id)
        assert task is not None
        task.attempts += 1
    at.text_area[0].input("我的记录")
    at.button[0].click().run()
    assert any("Someone else saved this task" in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_area[0].value == "我的记录"


def test_dashboard_shows_definitions_rates_and_hearts(app_db: Engine) -> None:
    at = _app(app_db, "manager").run()
    at.selectbox(key="lang").set_value("en")
    at.switch_page("app_pages/followup_dashboard.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tasks due"] == "2"  # the task due in two days is after the period's end (today)
    assert metrics["Overdue"] == "1"
    assert any("On-time completion rate" in e.value for e in at.markdown)
    assert any("tagged hypertensive" in c.value for c in at.caption)
    assert at.dataframe


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_interventions_validation_and_save(app_db: Engine, lang: str) -> None:
    at = _page(app_db, "app_pages/interventions.py", "nurse", lang).run()
    at.text_input(key="iv_card").input("CARD10").run()
    assert not at.exception, at.exception
    at.text_area[0].input("低盐饮食")
    at.button[0].click().run()
    assert [e.value for e in at.error] == [t("interventions.kind_required", lang)]
    at.selectbox[0].set_value("diet")
    at.button[0].click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(Intervention)) == 1


def test_plans_builtin_and_bad_steps(app_db: Engine) -> None:
    at = _page(app_db, "app_pages/plans.py", "admin").run()
    at.button(key="plans_builtin").click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(FollowupPlan)) == 2
    at.text_input(key="plans_code").input("diabetes_quarterly")
    at.text_input(key="plans_name_zh").input("糖尿病季度随访")
    at.text_input(key="plans_name_en").input("Diabetes quarterly")
    at.text_input(key="plans_steps").input("ninety days")
    at.button[-1].click().run()
    assert any("Cannot read the steps" in e.value for e in at.error), [e.value for e in at.error]


def test_patient_page_shows_the_followup_panel_and_audits_playback(app_db: Engine, tmp_path: Path) -> None:
    from services import recordings
    from services.recordings import RecordingPolicy
    from tests.services.test_recordings import wav_bytes

    with Session(app_db) as s, s.begin():
        nurse = s.scalars(select(User).where(User.username == "nurse")).one()
        task = s.scalars(select(FollowupTask).order_by(FollowupTask.due_date)).first()
        assert task is not None
        pid = task.patient_id
        recordings.store_recording(s, patient_id=pid, filename="call.wav", data=wav_bytes(),
                                   user=auth.CurrentUser(nurse.id, "nurse", "n", "nurse", nurse.department_id),
                                   policy=RecordingPolicy(tmp_path / "recordings"), now=clock.now())
    # In Chinese: the patient page's own widgets label their options in the default language between runs.
    at = _app(app_db, "nurse", "zh_CN").run()
    at.session_state["patient_id"] = pid
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    assert "随访与健康干预" in [e.value for e in at.subheader]
    at.button(key=f"fu_panel_play_{pid}").click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert "recording_play" in s.scalars(select(AuditLog.action)).all()


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_patient_charts_mark_the_interventions_on_their_indicator(app_db: Engine, lang: str) -> None:
    import json

    from services.interventions import InterventionInput, log_intervention

    with Session(app_db) as s, s.begin():
        nurse = s.scalars(select(User).where(User.username == "nurse")).one()
        pid = s.scalars(select(func.max(FollowupTask.patient_id))).one()  # the one with a BP reading
        log_intervention(s, data=InterventionInput(pid, "diet", "低盐饮食，每日食盐少于5克",
                                                   clock.today() - timedelta(days=5), indicator_code="SBP",
                                                   goal="SBP < 140"),
                         user=auth.CurrentUser(nurse.id, "nurse", "n", "nurse", nurse.department_id), now=clock.now())
        log_intervention(s, data=InterventionInput(pid, "exercise", "快走", clock.today()),  # no indicator: no mark
                         user=auth.CurrentUser(nurse.id, "nurse", "n", "nurse", nurse.department_id), now=clock.now())
    at = _app(app_db, "manager", lang).run()
    at.session_state["patient_id"] = pid
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    charts = [c.proto for c in at.get("vega_lite_chart")]
    specs = [json.loads(c.spec) for c in charts]
    marked = [(spec, c) for spec, c in zip(specs, charts, strict=True)
              if any(layer.get("mark", {}).get("type") == "rule" for layer in spec.get("layer", []))]
    assert len(marked) == 1  # the SBP chart only (the DBP chart has no intervention targeting it)
    spec, proto = marked[0]
    with Session(app_db) as s:
        sbp = s.scalars(select(Indicator).where(Indicator.code == "SBP")).one()
    assert str(spec["title"]).startswith(sbp.name_zh if lang == "zh_CN" else sbp.name_en)
    rule = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rule")
    titles = [tip["title"] for tip in rule["encoding"]["tooltip"]]
    assert t("fu_marks.kind", lang) in titles and t("fu_marks.content", lang) in titles
    assert t("fu_marks.before", lang, days=90) in titles
    blob = b"".join(d.data.data for d in proto.datasets) if proto.datasets else proto.data.data
    assert "低盐饮食".encode() in blob and t("intervention_kind.diet", lang).encode() in blob
    assert "快走".encode() not in blob
