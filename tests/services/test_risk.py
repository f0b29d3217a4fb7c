"""Risk models against their publications' worked examples and at every band boundary (table-driven)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import RiskAssessment
from services.risk import assess_all, assess_patient, cdrs, findrisc, framingham, pce
from services.risk.base import CHOL_MMOL_TO_MGDL, RiskInputs
from tests.factories import create_patient
from tests.factories_care import create_history, create_observation

MG = CHOL_MMOL_TO_MGDL
# Goff 2013 (ACC/AHA risk assessment guideline), Table A example: 55 years, TC 213 mg/dL, HDL-C 50 mg/dL,
# untreated SBP 120 mmHg, non-smoker, no diabetes.
GOFF = RiskInputs(age=55, tc_mmol=213 / MG, hdl_mmol=50 / MG, sbp=120, bp_treated=False, smoker=False,
                  diabetes=False)


@pytest.mark.parametrize(
    ("race", "sex", "paper_sum", "paper_risk"),
    [
        ("white", "F", -29.67, 2.1),
        ("aa", "F", 86.16, 3.0),
        ("white", "M", 60.69, 5.3),
        ("aa", "M", 18.97, 6.1),
    ],
)
def test_pce_goff_2013_worked_examples(race: str, sex: str, paper_sum: float, paper_risk: float) -> None:
    r = pce.assess(replace(GOFF, race=race, sex=sex))
    assert r.model == "pce" and r.version == "ACC/AHA 2013" and r.unit == "%"
    # The paper prints the individual sum to two decimals and derives the risk from that rounded sum.
    assert r.inputs["sum"] == pytest.approx(paper_sum, abs=0.011)
    paper_from_rounded_sum = 100 * (1 - pce.COEF[(race, sex)]["s10"] ** pytest.importorskip("math").exp(
        paper_sum - pce.COEF[(race, sex)]["mean"]))
    assert round(paper_from_rounded_sum, 1) == paper_risk
    # Full precision differs from the printed figure by less than 0.1 percentage point (white men: 5.38).
    assert r.score == pytest.approx(paper_risk, abs=0.1)
    assert sum(f.contribution for f in r.factors) == pytest.approx(r.inputs["sum"], abs=1e-3)
    assert [f.name for f in r.factors] == ["age", "tc", "hdl", "sbp", "smoker", "diabetes"]


@pytest.mark.parametrize(
    ("race", "sex", "expected"),
    # The same patient with SBP 140, as in the CVrisk package's tests (vcastro/CVrisk, test-ascvd_10y_accaha.R).
    [("white", "F", 2.76), ("aa", "F", 5.08), ("white", "M", 7.01), ("aa", "M", 7.95)],
)
def test_pce_sbp_140_cross_check(race: str, sex: str, expected: float) -> None:
    assert round(pce.assess(replace(GOFF, race=race, sex=sex, sbp=140)).score or 0, 2) == expected


def test_pce_other_race_uses_white_equations_and_treatment_raises_risk() -> None:
    other = pce.assess(replace(GOFF, race="other", sex="F"))
    white = pce.assess(replace(GOFF, race="white", sex="F"))
    assert other.score == white.score and other.inputs["equations"] == "white"
    treated = pce.assess(replace(GOFF, race="white", sex="F", sbp=140, bp_treated=True))
    assert (treated.score or 0) > 2.76


def test_framingham_2008_example() -> None:
    # 55-year-old man, TC 213, HDL 50, untreated SBP 140, non-smoker, no diabetes: 13.53 % (CVrisk's test).
    r = framingham.assess(replace(GOFF, sex="M", sbp=140))
    assert round(r.score or 0, 2) == 13.53
    assert r.level == "intermediate"
    assert r.version == "D'Agostino 2008"


@pytest.mark.parametrize(
    ("fn", "inputs", "missing"),
    [
        (pce.assess, replace(GOFF, race="white", sex="F", hdl_mmol=None), ["hdl_mmol"]),
        (pce.assess, RiskInputs(age=50, sex="M", race="other"),
         ["tc_mmol", "hdl_mmol", "sbp", "bp_treated", "smoker", "diabetes"]),
        (framingham.assess, replace(GOFF, sex=None), ["sex"]),
        (cdrs.assess, RiskInputs(age=50, sex="F", bmi=25, sbp=120, family_diabetes="none"), ["waist_cm"]),
        (findrisc.assess, RiskInputs(age=50, sex="F", bmi=25, waist_cm=80, antihypertensive_ever=False,
                                     high_glucose_ever=False, family_diabetes="none"),
         ["physically_active", "vegetables_daily"]),
    ],
)
def test_missing_inputs_are_named_not_defaulted(fn, inputs: RiskInputs, missing: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = fn(inputs)
    assert r.score is None and r.level is None
    assert r.missing == missing
    assert r.error == "care.risk.missing_inputs"


@pytest.mark.parametrize(
    ("fn", "base", "age", "ok"),
    [
        (pce.assess, replace(GOFF, race="white", sex="F"), 39, False),
        (pce.assess, replace(GOFF, race="white", sex="F"), 40, True),
        (pce.assess, replace(GOFF, race="white", sex="F"), 79, True),
        (pce.assess, replace(GOFF, race="white", sex="F"), 80, False),
        (framingham.assess, replace(GOFF, sex="M"), 29, False),
        (framingham.assess, replace(GOFF, sex="M"), 30, True),
        (framingham.assess, replace(GOFF, sex="M"), 74, True),
        (framingham.assess, replace(GOFF, sex="M"), 75, False),
        (cdrs.assess, RiskInputs(sex="M", bmi=22, waist_cm=80, sbp=120, family_diabetes="none"), 19, False),
        (cdrs.assess, RiskInputs(sex="M", bmi=22, waist_cm=80, sbp=120, family_diabetes="none"), 20, True),
        (cdrs.assess, RiskInputs(sex="M", bmi=22, waist_cm=80, sbp=120, family_diabetes="none"), 74, True),
        (cdrs.assess, RiskInputs(sex="M", bmi=22, waist_cm=80, sbp=120, family_diabetes="none"), 75, False),
    ],
)
def test_age_range_gives_a_clear_result_never_a_number(fn, base: RiskInputs, age: int, ok: bool) -> None:  # type: ignore[no-untyped-def]
    r = fn(replace(base, age=age))
    if ok:
        assert r.score is not None
    else:
        assert r.score is None and r.level is None
        assert r.error == "care.risk.age_out_of_range"
        assert r.error_params["age"] == age


@pytest.mark.parametrize(("score", "level"), [(4.99, "low"), (5.0, "borderline"), (7.49, "borderline"),
                                               (7.5, "intermediate"), (19.99, "intermediate"), (20.0, "high")])
def test_pce_bands(score: float, level: str) -> None:
    from services.risk.base import band_for

    assert band_for(score, pce.BANDS) == level


@pytest.mark.parametrize(("score", "level"), [(9.99, "low"), (10.0, "intermediate"), (19.99, "intermediate"),
                                               (20.0, "high")])
def test_framingham_bands(score: float, level: str) -> None:
    from services.risk.base import band_for

    assert band_for(score, framingham.BANDS) == level


@pytest.mark.parametrize(
    ("item", "value", "points"),
    [
        ("age", 20, 0), ("age", 24, 0), ("age", 25, 4), ("age", 34, 4), ("age", 35, 8), ("age", 39, 8),
        ("age", 40, 11), ("age", 44, 11), ("age", 45, 12), ("age", 49, 12), ("age", 50, 13), ("age", 54, 13),
        ("age", 55, 15), ("age", 59, 15), ("age", 60, 16), ("age", 64, 16), ("age", 65, 18), ("age", 74, 18),
        ("bmi", 21.9, 0), ("bmi", 22.0, 1), ("bmi", 23.9, 1), ("bmi", 24.0, 3), ("bmi", 29.9, 3), ("bmi", 30.0, 5),
        ("sbp", 109, 0), ("sbp", 110, 1), ("sbp", 119, 1), ("sbp", 120, 3), ("sbp", 129, 3), ("sbp", 130, 6),
        ("sbp", 139, 6), ("sbp", 140, 7), ("sbp", 149, 7), ("sbp", 150, 8), ("sbp", 159, 8), ("sbp", 160, 10),
        ("waist_M", 74.9, 0), ("waist_M", 75, 3), ("waist_M", 79.9, 3), ("waist_M", 80, 5), ("waist_M", 84.9, 5),
        ("waist_M", 85, 7), ("waist_M", 89.9, 7), ("waist_M", 90, 8), ("waist_M", 94.9, 8), ("waist_M", 95, 10),
        ("waist_F", 69.9, 0), ("waist_F", 70, 3), ("waist_F", 74.9, 3), ("waist_F", 75, 5), ("waist_F", 79.9, 5),
        ("waist_F", 80, 7), ("waist_F", 84.9, 7), ("waist_F", 85, 8), ("waist_F", 89.9, 8), ("waist_F", 90, 10),
    ],
)
def test_cdrs_item_boundaries(item: str, value: float, points: int) -> None:
    if item == "age":
        assert cdrs.age_points(value) == points
    elif item == "bmi":
        assert cdrs.bmi_points(value) == points
    elif item == "sbp":
        assert cdrs.sbp_points(value) == points
    else:
        assert cdrs.waist_points(value, item[-1]) == points


@pytest.mark.parametrize(
    ("inputs", "score", "level"),
    [
        # 50-year-old man, BMI 25, waist 88, SBP 135, no family history: 13 + 3 + 7 + 6 + 0 + 2 = 31 -> high.
        (RiskInputs(age=50, sex="M", bmi=25, waist_cm=88, sbp=135, family_diabetes="none"), 31, "high"),
        # 40-year-old woman, BMI 23, waist 72, SBP 115, parent with diabetes: 11 + 1 + 3 + 1 + 6 = 22 -> below 25.
        (RiskInputs(age=40, sex="F", bmi=23, waist_cm=72, sbp=115, family_diabetes="first"), 22, "low"),
        # Exactly 25: 45-year-old woman, BMI 24, waist 80, SBP 122: 12 + 3 + 7 + 3 = 25 -> high (>= 25).
        (RiskInputs(age=45, sex="F", bmi=24, waist_cm=80, sbp=122, family_diabetes="none"), 25, "high"),
        # 24 points: the same with SBP 118 (1 point): 12 + 3 + 7 + 1 = 23; + second-degree family (no points).
        (RiskInputs(age=45, sex="F", bmi=24, waist_cm=80, sbp=118, family_diabetes="second"), 23, "low"),
    ],
)
def test_cdrs_totals_and_high_risk_at_25(inputs: RiskInputs, score: int, level: str) -> None:
    r = cdrs.assess(inputs)
    assert r.score == score and r.level == level
    assert sum(f.contribution for f in r.factors) == score


@pytest.mark.parametrize(
    ("item", "value", "sex", "points"),
    [
        ("age", 44, None, 0), ("age", 45, None, 2), ("age", 54, None, 2), ("age", 55, None, 3), ("age", 64, None, 3),
        ("age", 65, None, 4), ("bmi", 24.9, None, 0), ("bmi", 25, None, 1), ("bmi", 30, None, 1),
        ("bmi", 30.1, None, 3), ("waist", 93.9, "M", 0), ("waist", 94, "M", 3), ("waist", 102, "M", 3),
        ("waist", 102.1, "M", 4), ("waist", 79.9, "F", 0), ("waist", 80, "F", 3), ("waist", 88, "F", 3),
        ("waist", 88.1, "F", 4),
    ],
)
def test_findrisc_item_boundaries(item: str, value: float, sex: str | None, points: int) -> None:
    if item == "age":
        assert findrisc.age_points(value) == points
    elif item == "bmi":
        assert findrisc.bmi_points(value) == points
    else:
        assert findrisc.waist_points(value, sex or "M") == points


@pytest.mark.parametrize(("score", "level"), [(6, "low"), (7, "slightly_elevated"), (11, "slightly_elevated"),
                                               (12, "moderate"), (14, "moderate"), (15, "high"), (20, "high"),
                                               (21, "very_high"), (26, "very_high")])
def test_findrisc_bands(score: int, level: str) -> None:
    from services.risk.base import band_for

    assert band_for(score, findrisc.BANDS) == level


def test_findrisc_maximum_is_26() -> None:
    worst = RiskInputs(age=70, sex="M", bmi=35, waist_cm=110, physically_active=False, vegetables_daily=False,
                       antihypertensive_ever=True, high_glucose_ever=True, family_diabetes="first")
    r = findrisc.assess(worst)
    assert r.score == 26 and r.level == "very_high"
    best = replace(worst, age=30, bmi=20, waist_cm=70, physically_active=True, vegetables_daily=True,
                   antihypertensive_ever=False, high_glucose_ever=False, family_diabetes="none")
    assert findrisc.assess(best).score == 0


AS_OF = datetime(2026, 6, 15, 12, 0)


def _risky_patient(session: Session) -> int:
    p = create_patient(session, sex="M", birth_date=date(1966, 3, 1))
    for code, value in (("SBP", 150), ("TC", 6.0), ("HDL", 1.0), ("BMI", 27), ("WAIST", 92)):
        create_observation(session, patient_id=p.id, code=code, value=value, at=datetime(2026, 5, 1))
    create_history(session, patient_id=p.id, kind="lifestyle", text="吸烟 20支/天", detail={"aspect": "smoking"})
    create_history(session, patient_id=p.id, kind="family", text="糖尿病", relation="母亲")
    return p.id


def test_assess_all_stores_each_model_once_and_is_idempotent(session: Session) -> None:
    pid = _risky_patient(session)
    bare = create_patient(session, sex="F", birth_date=date(1990, 1, 1)).id
    first = assess_all(session, as_of=AS_OF)
    assert first.patients == 2 and first.stored == 8
    rows = {(r.patient_id, r.model): r for r in session.scalars(select(RiskAssessment))}
    pce_row = rows[(pid, "pce")]
    assert pce_row.score is not None and pce_row.level in [b.level for b in pce.BANDS]
    assert pce_row.model_version == "ACC/AHA 2013"
    assert {f["name"] for f in pce_row.factors} >= {"age", "sbp", "smoker"}
    assert pce_row.inputs["smoker"] is True and pce_row.inputs["age"] == 60
    # Age 60 (16) + BMI 27 (3) + waist 92 (8) + SBP 150 (8) + mother with diabetes (6) + male (2).
    assert rows[(pid, "cdrs")].score == 16 + 3 + 8 + 8 + 6 + 2
    assert rows[(pid, "cdrs")].level == "high"
    assert rows[(pid, "findrisc")].missing == ["physically_active", "vegetables_daily"]
    assert rows[(bare, "pce")].score is None
    assert rows[(bare, "cdrs")].missing == ["bmi", "waist_cm", "sbp", "family_diabetes"]
    assert rows[(bare, "pce")].inputs["error"] == "care.risk.missing_inputs"
    assert "hdl_mmol" in (rows[(bare, "pce")].missing or [])
    again = assess_all(session, as_of=AS_OF)
    assert again.stored == 0 and again.unchanged == 8
    assert session.scalar(select(func.count()).select_from(RiskAssessment)) == 8


def test_assess_patient_is_fresh_and_unstored(session: Session) -> None:
    pid = _risky_patient(session)
    results = assess_patient(session, patient_id=pid, as_of=AS_OF)
    assert set(results) == {"pce", "framingham", "findrisc", "cdrs"}
    assert results["framingham"].score is not None
    assert session.scalar(select(func.count()).select_from(RiskAssessment)) == 0
