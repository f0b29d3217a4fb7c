"""Built-in rules as data, set-based tag application (since/until, rule and version), rule saving, manual tags."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuditLog, PatientTag, TagRule, User
from services import tags
from services.auth import CurrentUser
from services.errors import UserError
from tests.factories import create_patient, create_response, create_user
from tests.factories_care import create_encounter, create_history, create_observation, create_risk

T1 = datetime(2026, 6, 15, 12, 0)
T2 = datetime(2026, 7, 15, 12, 0)


def _open(session: Session, pid: int) -> set[str]:
    return set(session.scalars(select(PatientTag.tag_code).where(PatientTag.patient_id == pid,
                                                                 PatientTag.until.is_(None))))


def test_builtin_rules_are_data_with_source_and_version(session: Session) -> None:
    assert tags.ensure_builtin_rules(session, now=T1) == len(tags.BUILTIN_RULES)
    assert tags.ensure_builtin_rules(session, now=T1) == 0
    rows = session.scalars(select(TagRule)).all()
    assert {r.code for r in rows} == tags.BUILTIN_CODES
    assert all(r.source and r.version == 1 and r.active for r in rows)
    expected = {"hypertension", "htn_grade_1", "htn_grade_2", "htn_grade_3", "high_normal_bp", "diabetes", "ifg",
                "overweight", "obesity", "central_obesity", "tc_high", "ldl_high", "tg_high", "hdl_low",
                "dyslipidaemia", "smoker", "high_cvd_risk", "detractor", "lost_to_followup"}
    assert expected <= tags.BUILTIN_CODES


@pytest.mark.parametrize(
    ("sex", "readings", "expected", "absent"),
    [
        ("M", {"SBP": [150, 152], "DBP": [85, 86]}, {"hypertension", "htn_grade_1"}, {"high_normal_bp"}),
        ("M", {"SBP": [150, 165], "DBP": [85, 112]}, {"hypertension", "htn_grade_3"}, {"htn_grade_2"}),
        ("F", {"SBP": [170, 172], "DBP": [95, 96]}, {"hypertension", "htn_grade_2"}, {"htn_grade_1"}),
        ("F", {"SBP": [150, 128], "DBP": [85, 79]}, {"high_normal_bp"}, {"hypertension", "htn_grade_1"}),
        ("F", {"SBP": [118, 119], "DBP": [78, 79]}, set(), {"high_normal_bp", "hypertension"}),
        ("M", {"FPG": [7.2, 7.5]}, {"diabetes"}, {"ifg"}),
        ("M", {"FPG": [6.5]}, {"ifg"}, {"diabetes"}),
        ("M", {"FPG": [7.3], "HBA1C": [6.8]}, {"diabetes"}, set()),
        ("M", {"FPG": [7.3]}, set(), {"diabetes", "ifg"}),
        ("F", {"BMI": [23.9]}, set(), {"overweight", "obesity"}),
        ("F", {"BMI": [24.0]}, {"overweight"}, {"obesity"}),
        ("F", {"BMI": [28.0]}, {"obesity"}, {"overweight"}),
        ("M", {"WAIST": [89.9]}, set(), {"central_obesity"}),
        ("M", {"WAIST": [90]}, {"central_obesity"}, set()),
        ("F", {"WAIST": [85]}, {"central_obesity"}, set()),
        ("F", {"WAIST": [84.9]}, set(), {"central_obesity"}),
        ("F", {"TC": [5.19]}, set(), {"tc_borderline_high", "dyslipidaemia"}),
        ("F", {"TC": [5.2]}, {"tc_borderline_high"}, {"tc_high", "dyslipidaemia"}),
        ("F", {"TC": [6.2]}, {"tc_high", "dyslipidaemia"}, {"tc_borderline_high"}),
        ("F", {"LDL": [3.4]}, {"ldl_borderline_high"}, {"ldl_high"}),
        ("F", {"LDL": [4.1]}, {"ldl_high", "dyslipidaemia"}, set()),
        ("F", {"TG": [1.7]}, {"tg_borderline_high"}, {"tg_high"}),
        ("F", {"TG": [2.3]}, {"tg_high", "dyslipidaemia"}, set()),
        ("F", {"HDL": [0.99]}, {"hdl_low", "dyslipidaemia"}, set()),
        ("F", {"HDL": [1.0]}, set(), {"hdl_low"}),
    ],
)
def test_builtin_thresholds(session: Session, sex: str, readings: dict[str, list[float]], expected: set[str],
                            absent: set[str]) -> None:
    tags.ensure_builtin_rules(session, now=T1)
    p = create_patient(session, sex=sex, birth_date=date(1970, 1, 1))
    create_encounter(session, patient_id=p.id, at=datetime(2026, 6, 1))
    for code, values in readings.items():
        for i, v in enumerate(values):
            create_observation(session, patient_id=p.id, code=code, value=v, at=datetime(2026, 3 + i, 1))
    tags.apply_rules(session, as_of=T1)
    got = _open(session, p.id)
    assert expected <= got, got
    assert not (absent & got), got


def test_apply_sets_and_ends_tags_with_since_until_and_is_idempotent(session: Session) -> None:
    tags.ensure_builtin_rules(session, now=T1)
    p = create_patient(session, sex="M").id
    q = create_patient(session, sex="F").id
    create_observation(session, patient_id=p, code="BMI", value=29, at=datetime(2026, 6, 1))
    create_response(session, patient_id=q, nps_score=4, submitted_at=datetime(2026, 6, 1))
    create_encounter(session, patient_id=q, at=datetime(2026, 6, 1))
    r1 = tags.apply_rules(session, as_of=T1)
    assert _open(session, p) == {"obesity", "lost_to_followup"}
    assert _open(session, q) == {"detractor"}
    tag = session.scalars(select(PatientTag).where(PatientTag.patient_id == p, PatientTag.tag_code == "obesity")).one()
    rule = session.scalars(select(TagRule).where(TagRule.code == "obesity")).one()
    assert (tag.since, tag.until, tag.rule_id, tag.rule_version) == (T1, None, rule.id, 1)
    assert r1.added == 3
    again = tags.apply_rules(session, as_of=T1)
    assert (again.added, again.ended) == (0, 0)
    # Weight loss: the obesity tag ends, the history keeps since/until.
    create_observation(session, patient_id=p, code="BMI", value=23, at=datetime(2026, 7, 1))
    r2 = tags.apply_rules(session, as_of=T2)
    assert r2.ended == 1
    session.refresh(tag)
    assert tag.until == T2
    assert "obesity" not in _open(session, p)


def test_patient_ids_limits_the_run(session: Session) -> None:
    tags.ensure_builtin_rules(session, now=T1)
    a = create_patient(session).id
    b = create_patient(session).id
    tags.apply_rules(session, as_of=T1, patient_ids=[a])
    assert "lost_to_followup" in _open(session, a)
    assert _open(session, b) == set()


def test_high_cvd_risk_and_smoker(session: Session) -> None:
    tags.ensure_builtin_rules(session, now=T1)
    a = create_patient(session).id
    create_risk(session, patient_id=a, model="framingham", level="high", at=datetime(2026, 6, 1))
    create_history(session, patient_id=a, kind="lifestyle", text="吸烟", detail={"aspect": "smoking"})
    tags.apply_rules(session, as_of=T1)
    assert {"high_cvd_risk", "smoker"} <= _open(session, a)


def test_save_rule_versions_and_retires_old_tags(session: Session) -> None:
    admin = create_user(session, role="admin")
    p = create_patient(session, birth_date=date(1950, 1, 1)).id
    data = tags.RuleInput("elderly", "老年", "Elderly", {"kind": "age", "cmp": ">=", "value": 65}, "site policy")
    v1 = tags.save_rule(session, data=data, user_id=admin.id, username=admin.username, now=T1)
    tags.apply_rules(session, as_of=T1)
    assert "elderly" in _open(session, p)
    v2 = tags.save_rule(session, data=tags.RuleInput("elderly", "老年", "Elderly",
                                                      {"kind": "age", "cmp": ">=", "value": 80}),
                        user_id=admin.id, username=admin.username, now=T2)
    assert (v1.version, v2.version) == (1, 2)
    session.refresh(v1)
    assert not v1.active and v2.active
    tags.apply_rules(session, as_of=T2)
    assert "elderly" not in _open(session, p)
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "tag_rule.save")) == 2


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (tags.RuleInput("x y", "a", "b", {"kind": "sex", "value": "M"}), "care.rules.bad_code"),
        (tags.RuleInput("ok", "", "b", {"kind": "sex", "value": "M"}), "care.rules.name_required"),
        (tags.RuleInput("ok", "a", "b", {"kind": "indicator", "code": "FOO", "cmp": ">", "value": 1}),
         "care.rules.unknown_indicator"),
        (tags.RuleInput("ok", "a", "b", {"op": "and", "args": [
            {"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 140},
            {"kind": "indicator", "code": "SBP", "cmp": "<", "value": 120}]}), "care.rules.contradiction"),
    ],
)
def test_bad_rule_saves_nothing(session: Session, data: tags.RuleInput, key: str) -> None:
    with pytest.raises(UserError) as e:
        tags.save_rule(session, data=data, user_id=None, username=None, now=T1)
    assert e.value.key == key
    assert session.scalar(select(func.count()).select_from(TagRule)) == 0


def _current(user: User) -> CurrentUser:
    return CurrentUser(user.id, user.username, user.display_name, user.role, user.department_id)


def test_manual_tags(session: Session) -> None:
    tags.ensure_builtin_rules(session, now=T1)
    nurse = create_user(session)
    p = create_patient(session).id
    tag = tags.add_manual_tag(session, patient_id=p, tag_code="vip", user_id=nurse.id, username=nurse.username,
                              now=T1)
    with pytest.raises(UserError) as e:
        tags.add_manual_tag(session, patient_id=p, tag_code="vip", user_id=nurse.id, username=nurse.username)
    assert e.value.key == "care.tags.already_open"
    tags.apply_rules(session, as_of=T2)  # rules leave manual tags alone
    assert "vip" in _open(session, p)
    manager = create_user(session, role="manager")
    with pytest.raises(UserError) as e:
        tags.end_manual_tag(session, tag_id=tag.id, user=_current(manager), now=T2)
    assert e.value.key == "care.tags.not_allowed" and "vip" in _open(session, p)
    tags.end_manual_tag(session, tag_id=tag.id, user=_current(nurse), now=T2)
    assert "vip" not in _open(session, p)
    assert session.get(PatientTag, tag.id).until == T2  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "tag.end",
                                                                           AuditLog.patient_id == p)) == 1
    with pytest.raises(UserError) as e:
        tags.end_manual_tag(session, tag_id=tag.id, user=_current(nurse))
    assert e.value.key == "care.tags.not_open"
    auto = session.scalars(select(PatientTag).where(PatientTag.rule_id.is_not(None))).first()
    assert auto is not None
    with pytest.raises(UserError) as e:
        tags.end_manual_tag(session, tag_id=auto.id, user=_current(nurse))
    assert e.value.key == "care.tags.automatic"
