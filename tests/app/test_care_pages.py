"""AppTest for the care screens: every role allowed or denied, both languages, and the main interactions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import streamlit as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

import i18n
from components.navigation import pages_for_role
from db.models import AdviceItem, Department, HealthSummary, Patient, TagRule
from services import advice, auth, clock, tags
from services.auth import LoginPolicy
from tests.factories import create_patient, create_task, create_user
from tests.factories_care import create_encounter, create_observation, create_risk
from tests.factories_followup import create_tag

ROLES = ("admin", "manager", "nurse", "quality")
PASSWORD = "correct horse battery"
TIMEOUT = 30
CARE_PAGES = {"tag_rules": "app_pages/tag_rules.py", "risk": "app_pages/risk.py", "advice": "app_pages/advice.py",
              "return_risk": "app_pages/return_risk.py"}


@pytest.fixture
def app_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "z" * 40)
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    now = clock.now()
    with Session(sqlite_engine) as s, s.begin():
        dept = s.scalars(select(Department).order_by(Department.id)).first()
        assert dept is not None
        for role in ROLES:
            create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                        department_id=dept.id)
        tags.ensure_builtin_rules(s, now=now)
        advice.ensure_builtin_advice(s)
        for i, level in enumerate(["high", "low", "intermediate", "high"]):
            p = create_patient(s, department_id=dept.id, sex="M", birth_date=date(1960, 1, 1), name=f"李{i}")
            create_observation(s, patient_id=p.id, code="SBP", value=150 + i, at=now - timedelta(days=10))
            create_encounter(s, patient_id=p.id, at=now - timedelta(days=10))
            create_risk(s, patient_id=p.id, model="pce", level=level, score=10.0 + i, at=now - timedelta(days=1),
                        factors=[{"name": "age", "value": 66, "contribution": 1.5},
                                 {"name": "sbp", "value": 150, "contribution": 3.2}])
    st.cache_data.clear()
    yield sqlite_engine
    st.cache_data.clear()


def _app(engine: Engine, username: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    assert out.token
    at.session_state["careloop_token"] = out.token
    return at


def _page(engine: Engine, role: str, key: str, lang: str = "en") -> AppTest:
    at = _app(engine, role, lang).run()
    assert not at.exception, at.exception
    at.switch_page(CARE_PAGES[key]).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", list(CARE_PAGES))
@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_each_role_allowed_or_denied(app_db: Engine, role: str, key: str, lang: str) -> None:
    title = i18n.t(f"nav.{key}", lang)
    if key in [p.key for p in pages_for_role(role)]:
        at = _page(app_db, role, key, lang)
        assert title in [e.value for e in at.title]
        assert not at.error, [e.value for e in at.error]
        return
    # Not in the role's navigation, and the page refuses on its own when run directly (server side).
    at = _app(app_db, role, lang).run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(CARE_PAGES[key])
    direct = AppTest.from_file(f"../../{CARE_PAGES[key]}", default_timeout=TIMEOUT)
    direct.session_state["lang"] = lang
    with Session(app_db) as s:
        u = s.scalars(select(auth.User).where(auth.User.username == role)).one()
        direct.session_state["careloop_user"] = auth.CurrentUser(u.id, u.username, u.display_name, u.role,
                                                                 u.department_id)
    direct.run()
    assert [e.value for e in direct.error] == [i18n.t("auth.forbidden", lang)]
    assert not direct.dataframe and title not in [e.value for e in direct.title]


def test_risk_page_shows_levels_and_drilldown(app_db: Engine) -> None:
    at = _page(app_db, "manager", "risk")
    assert at.dataframe, "distribution table"
    assert any("patients shown" in c.value for c in at.caption)
    drill = at.dataframe[-1].value
    assert len(drill) >= 1


def _tag_first_two(engine: Engine) -> list[int]:
    with Session(engine) as s, s.begin():
        ids = list(s.scalars(select(Patient.id).where(Patient.name.in_(["李0", "李1"])).order_by(Patient.id)))
        for pid in ids:
            create_tag(s, patient_id=pid, tag_code="hypertension", since=clock.now() - timedelta(days=3))
    return ids


@pytest.mark.parametrize(("lang", "segment"), [("en", "segment: Hypertension"), ("zh_CN", "人群：高血压")])
def test_risk_page_narrows_to_a_tag_segment(app_db: Engine, lang: str, segment: str) -> None:
    _tag_first_two(app_db)
    at = _page(app_db, "manager", "risk", lang)
    assert int(at.dataframe[0].value.to_numpy().sum()) == 4
    at.selectbox(key="risk_tag").set_value("hypertension").run()
    assert not at.exception, at.exception
    assert int(at.dataframe[0].value.to_numpy().sum()) == 2, "only the segment's patients are counted"
    drill = at.dataframe[-1].value
    assert 1 <= len(drill) <= 2 and set(drill[i18n.t("care.risk_page.col.name", lang)]) <= {"李0", "李1"}
    assert any(segment in c.value for c in at.caption), [c.value for c in at.caption]


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_patient_search_lists_a_segment_without_text(app_db: Engine, lang: str) -> None:
    _tag_first_two(app_db)
    at = _app(app_db, "nurse", lang).run()
    at.switch_page("app_pages/patients.py").run()
    assert not at.dataframe, "nothing to show before a search or a segment"
    at.selectbox(key="patients_tag").set_value("hypertension").run()
    assert not at.exception, at.exception
    names = list(at.dataframe[0].value[i18n.t("patients.col.name", lang)])
    assert names == ["李0", "李1"]
    at.text_input(key="patients_q").input("李1").run()
    assert list(at.dataframe[0].value[i18n.t("patients.col.name", lang)]) == ["李1"]


def test_worklist_narrows_to_a_tag_segment(app_db: Engine) -> None:
    ids = _tag_first_two(app_db)
    with Session(app_db) as s, s.begin():
        nurse = s.scalars(select(auth.User).where(auth.User.username == "nurse")).one()
        for pid in s.scalars(select(Patient.id)):
            create_task(s, patient_id=pid, assignee_id=nurse.id, due_date=clock.today())
    at = _app(app_db, "nurse").run()
    at.switch_page("app_pages/worklist.py").run()
    assert len(at.dataframe[0].value) == 4
    at.selectbox(key="wl_tag").set_value("hypertension").run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == len(ids) == 2
    assert any("segment: Hypertension" in c.value for c in at.caption)


def test_risk_page_in_chinese(app_db: Engine) -> None:
    at = _page(app_db, "quality", "risk", "zh_CN")
    assert "风险分布" in [t.value for t in at.title]
    assert any("China-PAR" in i.value for i in at.info)


@pytest.mark.parametrize(("lang", "expect"), [("en", "This rule matches 4 patients"), ("zh_CN", "匹配 4 位患者")])
def test_tag_rule_preview_and_save(app_db: Engine, lang: str, expect: str) -> None:
    at = _page(app_db, "admin", "tag_rules", lang)
    rule = {"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 140}
    at.text_input(key="rules_code").input("sbp_raised")
    at.text_input(key="rules_name_zh").input("血压偏高")
    at.text_input(key="rules_name_en").input("Raised SBP")
    at.text_area(key="rules_json").input(json.dumps(rule))
    at.button(key="rules_preview").click().run()
    assert not at.exception
    assert any(expect in s.value for s in at.success), [s.value for s in at.success]
    at.button(key="rules_save").click().run()
    assert not at.exception
    with Session(app_db) as s:
        saved = s.scalars(select(TagRule).where(TagRule.code == "sbp_raised")).one()
        assert saved.version == 1 and saved.expression == rule


@pytest.mark.parametrize(
    ("lang", "text", "message"),
    [
        ("en", "{not json", "The rule cannot be read"),
        ("zh_CN", "{not json", "无法读取规则"),
        ("en", json.dumps({"kind": "indicator", "code": "FOO", "cmp": ">", "value": 1}), "indicator “FOO”"),
        ("en", json.dumps({"op": "and", "args": [{"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 140},
                                                 {"kind": "indicator", "code": "SBP", "cmp": "<", "value": 120}]}),
         "contradicts itself"),
        ("zh_CN", json.dumps({"op": "and", "args": [{"kind": "sex", "value": "M"}, {"kind": "sex", "value": "F"}]}),
         "自相矛盾"),
    ],
)
def test_tag_rule_errors_are_translated_and_nothing_saved(app_db: Engine, lang: str, text: str, message: str) -> None:
    at = _page(app_db, "admin", "tag_rules", lang)
    at.text_input(key="rules_code").input("bad_rule")
    at.text_input(key="rules_name_zh").input("坏")
    at.text_input(key="rules_name_en").input("Bad")
    at.text_area(key="rules_json").input(text)
    at.button(key="rules_save").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(TagRule).where(TagRule.code == "bad_rule")) == 0


def test_builder_adds_conditions_to_the_rule(app_db: Engine) -> None:
    at = _page(app_db, "admin", "tag_rules")
    at.selectbox(key="rules_kind").set_value("age").run()
    at.button(key="rules_add").click().run()
    at.selectbox(key="rules_kind").set_value("sex").run()
    at.button(key="rules_add").click().run()
    assert not at.exception
    expr = json.loads(at.text_area(key="rules_json").value)
    assert expr["op"] == "and" and [a["kind"] for a in expr["args"]] == ["age", "sex"]
    at.button(key="rules_preview").click().run()
    assert any("matches" in s.value for s in at.success)


@pytest.mark.parametrize(("lang", "message"), [("en", "en is missing"), ("zh_CN", "缺少 en")])
def test_advice_without_translation_is_refused(app_db: Engine, lang: str, message: str) -> None:
    at = _page(app_db, "admin", "advice", lang)
    at.text_input(key="advice_code").input("walk_more")
    at.text_input(key="advice_title_zh").input("多走路")
    at.text_area(key="advice_body_zh").input("每天步行6000步")
    at.text_input(key="advice_tags").input("obesity")
    at.button(key="advice_save").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(AdviceItem).where(AdviceItem.code == "walk_more")) == 0
    at.text_input(key="advice_title_en").input("Walk more")
    at.text_area(key="advice_body_en").input("Walk 6,000 steps a day")
    at.button(key="advice_save").click().run()
    assert not at.error
    with Session(app_db) as s:
        assert s.scalar(select(func.count()).select_from(AdviceItem).where(AdviceItem.code == "walk_more")) == 1


def test_return_risk_page_says_when_history_is_too_short(app_db: Engine) -> None:
    at = _page(app_db, "manager", "return_risk")
    assert any("Not enough history" in i.value for i in at.info)


PANEL_SCRIPT = """
import streamlit as st
from components.care_panels import patient_care_panel
patient_care_panel(st.session_state["panel_patient"], st.session_state["careloop_user"])
"""


def _panel(engine: Engine, role: str, lang: str) -> tuple[AppTest, int]:
    with Session(engine) as s, s.begin():
        pid = s.scalars(select(Patient.id).order_by(Patient.id)).first()
        assert pid is not None
        tags.apply_rules(s, as_of=clock.now())
        u = s.scalars(select(auth.User).where(auth.User.username == role)).one()
        cu = auth.CurrentUser(u.id, u.username, u.display_name, u.role, u.department_id)
    at = AppTest.from_string(PANEL_SCRIPT, default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    at.session_state["panel_patient"] = pid
    at.session_state["careloop_user"] = cu
    return at.run(), pid


@pytest.mark.parametrize(("lang", "heading", "advice_title"), [("en", "Care plan", "Cut down on salt"),
                                                                ("zh_CN", "健康管理", "减少钠盐摄入")])
def test_care_panel_shows_tags_risk_and_advice_with_reasons(app_db: Engine, lang: str, heading: str,
                                                            advice_title: str) -> None:
    at, _ = _panel(app_db, "nurse", lang)
    assert not at.exception, at.exception
    assert heading in [h.value for h in at.header]
    text = "\n".join(m.value for m in at.markdown)
    assert advice_title in text
    assert any(i18n.t("care.panel.why", lang, reasons="")[:3] in c.value for c in at.caption)


def test_care_panel_drafts_and_saves_a_summary(app_db: Engine) -> None:
    at, pid = _panel(app_db, "nurse", "en")
    at.button(key=f"care_panel_summary_{pid}_draft").click().run()
    assert not at.exception
    draft = at.text_area(key=f"care_panel_summary_{pid}").value
    assert draft.startswith("Health summary for") and "Systolic blood pressure" in draft
    at.text_area(key=f"care_panel_summary_{pid}").input(draft + "\nReviewed with the patient.")
    at.button(key=f"care_panel_summary_{pid}_save").click().run()
    assert not at.exception
    assert any("Summary saved" in s.value for s in at.success)
    with Session(app_db) as s:
        row = s.scalars(select(HealthSummary).where(HealthSummary.patient_id == pid)).one()
        assert row.text.endswith("Reviewed with the patient.") and row.language == "en"


def test_care_panel_is_read_only_for_managers(app_db: Engine) -> None:
    at, pid = _panel(app_db, "manager", "en")
    assert not at.exception
    keys = {b.key for b in at.button}
    assert f"care_panel_summary_{pid}_save" not in keys
    assert f"care_panel_tag_add_{pid}" not in keys


def _manual_tag_and_plan(engine: Engine) -> tuple[int, int, int]:
    from db.models import User
    from services import wellness

    with Session(engine) as s, s.begin():
        pid = s.scalars(select(Patient.id).order_by(Patient.id)).first()
        assert pid is not None
        nurse = s.scalars(select(User).where(User.username == "nurse")).one()
        tag = tags.add_manual_tag(s, patient_id=pid, tag_code="vip", user_id=nurse.id, username=nurse.username)
        plan = wellness.create_plan(s, patient_id=pid, title="降压计划", goals=[wellness.Goal(
            "SBP", "<", 130, clock.today() + timedelta(days=60))], advice_codes=[], start_on=clock.today(),
            end_on=None, user_id=nurse.id, username=nurse.username)
        return pid, tag.id, plan.id


@pytest.mark.parametrize(("role", "lang", "end_label"), [("nurse", "en", "End"), ("admin", "zh_CN", "结束")])
def test_care_panel_ends_a_manual_tag(app_db: Engine, role: str, lang: str, end_label: str) -> None:
    from db.models import AuditLog, PatientTag

    _, tag_id, _ = _manual_tag_and_plan(app_db)
    at, _ = _panel(app_db, role, lang)
    button = at.button(key=f"care_panel_tag_end_{tag_id}")
    assert button.label == end_label
    button.click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        assert s.get(PatientTag, tag_id).until is not None  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "tag.end")) == 1
    assert f"care_panel_tag_end_{tag_id}" not in {b.key for b in at.button}


@pytest.mark.parametrize(("role", "lang", "key", "status", "shown"),
                         [("nurse", "en", "complete", "completed", "completed"),
                          ("admin", "zh_CN", "close", "closed", "已停止")])
def test_care_panel_completes_or_stops_a_wellness_plan(app_db: Engine, role: str, lang: str, key: str,
                                                      status: str, shown: str) -> None:
    from db.models import WellnessPlan

    _, _, plan_id = _manual_tag_and_plan(app_db)
    at, _ = _panel(app_db, role, lang)
    at.button(key=f"care_panel_plan_{key}_{plan_id}").click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        plan = s.get(WellnessPlan, plan_id)
        assert plan is not None and plan.status == status and plan.end_on == clock.today()
    assert any(shown in m.value for m in at.markdown)
    assert f"care_panel_plan_complete_{plan_id}" not in {b.key for b in at.button}


@pytest.mark.parametrize("role", ["manager", "quality"])
def test_care_panel_hides_tag_and_plan_actions_from_other_roles(app_db: Engine, role: str) -> None:
    _, tag_id, plan_id = _manual_tag_and_plan(app_db)
    at, _ = _panel(app_db, role, "en")
    assert not at.exception
    keys = {b.key for b in at.button}
    assert not {f"care_panel_tag_end_{tag_id}", f"care_panel_plan_complete_{plan_id}",
                f"care_panel_plan_close_{plan_id}"} & keys
