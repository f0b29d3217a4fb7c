"""Advice library, wellness plans, phase summaries and the return-risk model, on both engines."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AdviceItem, AuditLog, HealthSummary, User, WellnessPlan
from services import advice, return_risk, summaries, tags, wellness
from services.errors import UserError
from tests.factories import create_patient, create_response, create_user
from tests.factories_care import create_encounter, create_observation, create_risk

T1 = datetime(2026, 6, 15, 12, 0)


def test_builtin_advice_is_bilingual_and_linked(session: Session) -> None:
    assert advice.ensure_builtin_advice(session) == len(advice.BUILTIN_ADVICE)
    assert advice.ensure_builtin_advice(session) == 0
    for item in session.scalars(select(AdviceItem)):
        assert item.title_zh and item.title_en and item.body_zh and item.body_en
        assert item.applies_to["tags"] or item.applies_to["risk"]
        assert item.category in advice.CATEGORIES
    assert {i.category for i in advice.BUILTIN_ADVICE} == set(advice.CATEGORIES)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"title_en": " "}, "care.advice.translation_missing"),
        ({"body_zh": ""}, "care.advice.translation_missing"),
        ({"category": "magic"}, "care.advice.bad_category"),
        ({"code": "bad code"}, "care.advice.bad_code"),
        ({"tags": (), "risk": ()}, "care.advice.no_link"),
        ({"risk": (("china_par", "high"),)}, "care.advice.bad_risk"),
    ],
)
def test_advice_refused_saves_nothing(session: Session, change: dict[str, object], key: str) -> None:
    base = {"code": "walk", "category": "exercise", "title_zh": "散步", "title_en": "Walk", "body_zh": "每天散步",
                "body_en": "Walk every day", "tags": ("obesity",)}
    base.update(change)
    with pytest.raises(UserError) as e:
        advice.save_item(session, data=advice.AdviceInput(**base), user_id=None, username=None)  # type: ignore[arg-type]
    assert e.value.key == key
    assert session.scalar(select(func.count()).select_from(AdviceItem)) == 0


def test_applicable_advice_says_why(session: Session) -> None:
    advice.ensure_builtin_advice(session)
    tags.ensure_builtin_rules(session, now=T1)
    p = create_patient(session).id
    create_observation(session, patient_id=p, code="BMI", value=29, at=T1 - timedelta(days=3))
    create_encounter(session, patient_id=p, at=T1 - timedelta(days=3))
    tags.apply_rules(session, as_of=T1)
    create_risk(session, patient_id=p, model="pce", level="high", at=T1)
    items = {a.code: a for a in advice.applicable_advice(session, patient_id=p, lang="en")}
    assert ("tag", "obesity") in items["weight_management"].reasons
    assert ("risk", "pce:high") in items["quit_smoking"].reasons
    assert items["weight_management"].title == "Manage your weight"
    zh = advice.applicable_advice(session, patient_id=p, lang="zh_CN")
    assert any(a.title == "控制体重" for a in zh)
    assert "salt_reduction" not in items


def test_wellness_plan_progress(session: Session) -> None:
    advice.ensure_builtin_advice(session)
    nurse = create_user(session)
    p = create_patient(session).id
    create_observation(session, patient_id=p, code="SBP", value=150, at=datetime(2026, 1, 5))
    create_observation(session, patient_id=p, code="SBP", value=128, at=datetime(2026, 5, 5))
    plan = wellness.create_plan(
        session, patient_id=p, title="降压", start_on=date(2026, 1, 10), end_on=date(2026, 12, 31),
        goals=[wellness.Goal("SBP", "<", 130, date(2026, 6, 30)), wellness.Goal("BMI", "<", 24, date(2026, 3, 1))],
        advice_codes=["salt_reduction"], user_id=nurse.id, username=nurse.username, now=T1)
    sbp, bmi = wellness.progress(session, plan=plan, as_of=T1)
    assert (sbp.baseline, sbp.latest, sbp.met, sbp.overdue) == (150, 128, True, False)
    assert (bmi.latest, bmi.met, bmi.overdue) == (None, None, True)
    assert session.scalar(select(func.count()).select_from(AuditLog)
                          .where(AuditLog.action == "wellness_plan.create")) == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"title": " "}, "care.wellness.title_required"),
        ({"goals": []}, "care.wellness.goal_required"),
        ({"goals": [wellness.Goal("XYZ", "<", 1, date(2026, 9, 1))]}, "care.rules.unknown_indicator"),
        ({"goals": [wellness.Goal("SBP", "<", 130, date(2025, 1, 1))]}, "care.wellness.goal_date"),
        ({"advice_codes": ["nope"]}, "care.wellness.unknown_advice"),
        ({"end_on": date(2025, 1, 1)}, "care.wellness.bad_period"),
    ],
)
def test_wellness_plan_refused(session: Session, kwargs: dict[str, object], key: str) -> None:
    p = create_patient(session).id
    goal = wellness.Goal("SBP", "<", 130, date(2026, 9, 1))
    args: dict[str, object] = {"patient_id": p, "title": "plan", "goals": [goal], "advice_codes": [],
                               "start_on": date(2026, 6, 1), "end_on": None, "user_id": None, "username": None}
    args.update(kwargs)
    with pytest.raises(UserError) as e:
        wellness.create_plan(session, **args)  # type: ignore[arg-type]
    assert e.value.key == key
    assert session.scalar(select(func.count()).select_from(WellnessPlan)) == 0


@pytest.mark.parametrize(("lang", "words"), [("en", ["Systolic blood pressure: 150 → 128 mmHg", "Tags gained"]),
                                              ("zh_CN", ["收缩压：150 → 128 mmHg", "新增标签"])])
def test_summary_draft_and_save(session: Session, lang: str, words: list[str]) -> None:
    tags.ensure_builtin_rules(session, now=T1)
    nurse = create_user(session)
    p = create_patient(session).id
    create_observation(session, patient_id=p, code="SBP", value=150, at=datetime(2026, 2, 1))
    create_observation(session, patient_id=p, code="SBP", value=128, at=datetime(2026, 5, 1))
    create_observation(session, patient_id=p, code="BMI", value=29, at=datetime(2026, 5, 1))
    create_response(session, patient_id=p, nps_score=9, submitted_at=datetime(2026, 4, 1))
    tags.apply_rules(session, as_of=datetime(2026, 5, 2))
    create_risk(session, patient_id=p, model="pce", level="intermediate", score=12.0, at=datetime(2026, 5, 2))
    text = summaries.draft(session, patient_id=p, period_from=date(2026, 1, 1), period_to=date(2026, 6, 30),
                           lang=lang)
    for w in words:
        assert w in text
    assert "12.0" in text and "9" in text
    row = summaries.save(session, patient_id=p, period_from=date(2026, 1, 1), period_to=date(2026, 6, 30),
                         language=lang, text=text + "\n(edited)", author_id=nurse.id, username=nurse.username)
    assert row.author_id == nurse.id and row.text.endswith("(edited)")
    with pytest.raises(UserError) as e:
        summaries.save(session, patient_id=p, period_from=date(2026, 7, 1), period_to=date(2026, 6, 30),
                       language=lang, text="x", author_id=nurse.id, username=nurse.username)
    assert e.value.key == "care.summary.bad_period"
    with pytest.raises(UserError) as e:
        summaries.save(session, patient_id=p, period_from=date(2026, 1, 1), period_to=date(2026, 6, 30),
                       language=lang, text="  ", author_id=nurse.id, username=nurse.username)
    assert e.value.key == "care.summary.empty"
    assert session.scalar(select(func.count()).select_from(HealthSummary)) == 1


def test_auc_and_logistic_fit() -> None:
    assert return_risk.auc(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert return_risk.auc(np.array([0.0, 1.0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    true = np.array([-0.5, 1.5, -1.0])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(true[0] + x @ true[1:])))).astype(float)
    beta = return_risk.fit_logistic(x, y)
    assert beta == pytest.approx(true, abs=0.15)


def test_return_risk_model_on_history(session: Session) -> None:
    as_of = datetime(2026, 6, 1)
    cutoff = as_of - timedelta(days=365)
    rng = np.random.default_rng(7)
    for i in range(120):
        p = create_patient(session).id
        # Seen some time in the year before the cutoff; the frequent visitors come back.
        frequent = i % 2 == 0
        for k in range(4 if frequent else 1):
            create_encounter(session, patient_id=p, at=cutoff - timedelta(days=30 + 200 * k + int(rng.integers(0, 20))))
        if frequent or i % 7 == 0:
            create_encounter(session, patient_id=p, at=cutoff + timedelta(days=100))
    model = return_risk.build(session, as_of=as_of)
    assert model.fitted and model.n_train + model.n_test == 120
    assert model.coefficients["frequency"] < 0
    assert model.auc is not None and model.auc > 0.7
    assert model.scores and all(0 <= s.probability <= 1 for s in model.scores)


def test_return_risk_not_enough_history(session: Session) -> None:
    model = return_risk.build(session, as_of=datetime(2026, 6, 1))
    assert not model.fitted and model.auc is None


def test_wellness_plan_complete_and_close(session: Session) -> None:
    from services.auth import CurrentUser

    nurse = create_user(session)
    quality = create_user(session, role="quality")
    p = create_patient(session).id

    def plan() -> WellnessPlan:
        return wellness.create_plan(session, patient_id=p, title="控糖", goals=[wellness.Goal(
            "FPG", "<", 6.1, date(2026, 9, 1))], advice_codes=[], start_on=date(2026, 1, 1), end_on=None,
            user_id=nurse.id, username=nurse.username, now=T1)

    def as_user(u: User) -> CurrentUser:
        return CurrentUser(u.id, u.username, u.display_name, u.role, u.department_id)

    first, second = plan(), plan()
    with pytest.raises(UserError) as e:
        wellness.close_plan(session, plan_id=first.id, user=as_user(quality), outcome="completed")
    assert e.value.key == "care.wellness.not_allowed" and first.status == "active"
    with pytest.raises(UserError) as e:
        wellness.close_plan(session, plan_id=first.id, user=as_user(nurse), outcome="maybe")
    assert e.value.key == "care.wellness.bad_outcome" and first.status == "active"
    wellness.close_plan(session, plan_id=first.id, user=as_user(nurse), outcome="completed", today=date(2026, 6, 1))
    wellness.close_plan(session, plan_id=second.id, user=as_user(nurse), today=date(2026, 6, 2))
    assert (first.status, first.end_on) == ("completed", date(2026, 6, 1))
    assert (second.status, second.end_on) == ("closed", date(2026, 6, 2))
    with pytest.raises(UserError) as e:
        wellness.close_plan(session, plan_id=first.id, user=as_user(nurse))
    assert e.value.key == "care.wellness.not_active"
    actions = set(session.scalars(select(AuditLog.action).where(AuditLog.patient_id == p)))
    assert {"wellness_plan.complete", "wellness_plan.close"} <= actions
