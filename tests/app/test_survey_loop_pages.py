"""AppTest for the detractor loop from the nurse's side (task page), the step questionnaire inline, the recovery
outcome on the recovery page and the survey-csv section of the Import page; both languages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from db.models import (
    Department,
    FollowupPlanStep,
    FollowupRecord,
    FollowupTask,
    ImportMapping,
    ServiceRecoveryCase,
    SurveyResponse,
    User,
)
from services import auth, clock, followup
from services.auth import LoginPolicy
from services.followup import PlanSpec, StepSpec
from tests.factories import create_patient, create_task, create_user
from tests.factories_satisfaction import builtins, submit

PASSWORD = "correct horse battery"
TIMEOUT = 30
ROOT = Path(__file__).resolve().parents[2]
SUDZILLA = ROOT.parent / "shared" / "reference-data" / "nps-survey-sudzilla"


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    monkeypatch.setenv("CARELOOP_RECORDINGS_DIR", str(tmp_path / "recordings"))
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    now = clock.now()
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        for role in ("admin", "manager", "nurse", "quality"):
            create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                        department_id=dept.id)
        nurse = s.scalars(select(User).where(User.username == "nurse")).one()
        qs_ = builtins(s)
        p = create_patient(s, department_id=dept.id, nurse_id=nurse.id, name="李投诉", card_no="CARDR1")
        submit(s, 2, patient_id=p.id, comment="护士态度不好", at=now, source_ref="loop1")
        plan = followup.create_plan(s, spec=PlanSpec("gad_call", "焦虑随访", "Anxiety call", "discharge",
                                                     (StepSpec(3, "phone", questionnaire_id=qs_["gad7"].id),)),
                                    user=None, now=now)
        step_id = s.scalars(select(FollowupPlanStep.id).where(FollowupPlanStep.plan_id == plan.id)).one()
        p2 = create_patient(s, department_id=dept.id, nurse_id=nurse.id, name="王焦虑", card_no="CARDQ1")
        create_task(s, patient_id=p2.id, plan_id=plan.id, step_id=step_id, assignee_id=nurse.id,
                    department_id=dept.id, due_date=clock.today())
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


class _Page:
    """The whole app (app.py: login by session token, navigation) switched to one page on every run, so the page
    runs as in production (imports resolved from the project root, the page's own guard and the app's)."""

    def __init__(self, engine: Engine, path: str, username: str, lang: str) -> None:
        self.at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
        self.at.session_state["lang"] = lang
        with Session(engine) as s, s.begin():
            out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
        self.at.session_state["careloop_token"] = out.token
        self.path = path
        self.first = True

    def run(self) -> AppTest:
        if self.first:
            self.at.run()
            self.first = False
        return self.at.switch_page(self.path).run()


def _page(engine: Engine, path: str, username: str, lang: str = "en") -> AppTest:
    """An AppTest already on the page; later `.run()`s (widget changes, clicks) stay on it."""
    return _Page(engine, path, username, lang).run()


def _task_page(engine: Engine, task_id: int, lang: str) -> AppTest:
    page = _Page(engine, "app_pages/task.py", "nurse", lang)
    page.at.session_state["followup_task_id"] = task_id
    return page.run()


def _task(engine: Engine, kind: str) -> int:
    with Session(engine) as s:
        return int(s.scalars(select(FollowupTask.id).where(FollowupTask.kind == kind)).one())


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_nurse_resolves_a_detractor_from_the_task_page(app_db: Engine, lang: str) -> None:
    task_id = _task(app_db, "service_recovery")
    at = _task_page(app_db, task_id, lang)
    assert not at.exception, at.exception
    assert any("护士态度不好" in w.value for w in at.warning), [w.value for w in at.warning]
    # Done without resolving the case: refused with the reason, nothing written.
    at.main.selectbox[1].set_value("reached")
    at.main.selectbox[2].set_value("done")
    at.main.button[0].click().run()
    assert at.error and not at.exception
    if lang == "en":
        assert any("service-recovery task" in e.value for e in at.error), [e.value for e in at.error]
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(FollowupRecord)) == 0
    at.checkbox(key="task_resolve").check()
    at.selectbox(key="task_cause").set_value("attitude")
    at.text_area(key="task_resolution").input("护士长致电道歉")
    at.checkbox(key="task_rerating_asked").check()
    at.slider(key="task_rerating").set_value(9)
    at.main.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    with Session(app_db) as s:
        case = s.scalars(select(ServiceRecoveryCase)).one()
        assert (case.status, case.root_cause, case.rerating, case.attempts) == ("closed", "attitude", 9, 1)
        assert case.rerating_response_id is not None
        task = s.get(FollowupTask, task_id)
        assert task is not None and (task.status, task.attempts) == ("done", 1)


def test_step_questionnaire_inline_missing_answer_then_saved(app_db: Engine) -> None:
    task_id = _task(app_db, "followup")
    at = _task_page(app_db, task_id, "en")
    assert not at.exception, at.exception
    radios = [r for r in at.radio if str(r.key).startswith(f"task_q_{task_id}_")]
    assert len(radios) == 7
    at.main.selectbox[1].set_value("reached")
    at.main.selectbox[2].set_value("done")
    for r in radios[:-1]:
        r.set_value(1)
    at.main.button[0].click().run()
    assert any("gad7_7" in e.value for e in at.error), [e.value for e in at.error]
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(FollowupRecord)) == 0
    [r for r in at.radio if str(r.key).endswith("gad7_7")][0].set_value(2)
    at.main.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with Session(app_db) as s:
        record = s.scalars(select(FollowupRecord)).one()
        response = s.get(SurveyResponse, record.response_id)
        assert response is not None and response.total_score == 8.0


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_recovery_page_shows_the_outcome(app_db: Engine, lang: str) -> None:
    at = _page(app_db, "app_pages/recovery.py", "quality", lang)
    assert not at.exception, at.exception
    heading = "Recovery outcome: re-ratings" if lang == "en" else "补救效果：复评"
    assert any(heading in h.value for h in at.subheader), [h.value for h in at.subheader]


@pytest.mark.parametrize("username", ["manager", "quality"])
def test_import_page_denied(app_db: Engine, username: str) -> None:
    page = _Page(app_db, "app_pages/import_data.py", username, "en")
    page.at.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        page.at.switch_page(page.path)  # the app does not register the page for this role


@pytest.mark.skipif(not SUDZILLA.exists(), reason="../shared/reference-data not present")
@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_import_sudzilla_with_the_builtin_mapping(app_db: Engine, lang: str) -> None:
    at = _page(app_db, "app_pages/import_data.py", "admin", lang)
    assert not at.exception, at.exception
    at.radio(key="import_kind").set_value("surveys").run()
    data = (SUDZILLA / "input_02.csv").read_bytes()
    at.file_uploader(key="simp_files").set_value(("input_02.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    at.selectbox(key="simp_pick").set_value("builtin:sudzilla_survey").run()
    assert not at.error, [e.value for e in at.error]
    at.button(key="simp_run").click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(SurveyResponse).where(SurveyResponse.source == "sudzilla")) \
            == 39


def test_build_save_and_refuse_a_mapping_from_the_file_columns(app_db: Engine) -> None:
    at = _page(app_db, "app_pages/import_data.py", "nurse")
    at.radio(key="import_kind").set_value("surveys").run()
    csv_bytes = "提交时间,卡号,推荐,意见\n2026-06-01 09:00,CARDR1,9,很好\n".encode()
    at.file_uploader(key="simp_files").set_value(("hosp.csv", csv_bytes, "text/csv")).run()
    at.selectbox(key="simp_pick").set_value("new").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="simp_col_submitted_at").value == "提交时间"
    # No question mapped yet: the mapping points at nothing and is refused with the reason.
    assert any("at least one question" in e.value for e in at.error), [e.value for e in at.error]
    at.selectbox(key="simp_col_patient_card").set_value("卡号")
    at.selectbox(key="simp_col_comment").set_value("意见")
    at.selectbox(key="simp_item_satisfaction_nps").set_value("推荐").run()
    assert not at.error, [e.value for e in at.error]
    at.text_input(key="simp_name").input("医院问卷")
    at.button(key="simp_save").click().run()
    assert any("医院问卷" in m.value for m in at.success), [m.value for m in at.success]
    at.button(key="simp_run").click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(ImportMapping)) == 1
        r = s.scalars(select(SurveyResponse).where(SurveyResponse.source == "survey-csv")).one()
        assert (r.nps_score, r.comment) == (9, "很好")
    # The saved mapping against a file without its columns: refused, nothing imported.
    other = _page(app_db, "app_pages/import_data.py", "nurse")
    other.radio(key="import_kind").set_value("surveys").run()
    other.file_uploader(key="simp_files").set_value(("x.csv", b"When,Score\n2026-06-01,9\n", "text/csv")).run()
    other.selectbox(key="simp_pick").set_value("saved:医院问卷").run()
    assert any("does not have" in e.value for e in other.error), [e.value for e in other.error]
    assert not [b for b in other.button if b.key == "simp_run"]
