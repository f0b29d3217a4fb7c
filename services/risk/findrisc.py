"""FINDRISC, the Finnish Diabetes Risk Score (Lindstrom & Tuomilehto, Diabetes Care 2003;26:725), original form."""

from __future__ import annotations

from services.risk.base import (
    Band,
    Factor,
    RiskInputs,
    RiskResult,
    age_check,
    as_dict,
    band_for,
    missing_of,
    not_applicable,
)

MODEL = "findrisc"
# Variants score some items differently (German FINDRISK, vegetables = 2): the version names the form used.
VERSION = "FINDRISC 2003 original form"
SOURCE = "Lindstrom J, Tuomilehto J. The Diabetes Risk Score. Diabetes Care 2003;26:725-731"
# The questionnaire is for adults; the age item has no upper bound.
AGE_RANGE = (18, 120)
REQUIRED = ("age", "sex", "bmi", "waist_cm", "physically_active", "vegetables_daily", "antihypertensive_ever",
            "high_glucose_ever", "family_diabetes")

# <7 low (~1 %), 7-11 slightly elevated (~4 %), 12-14 moderate (~17 %), 15-20 high (~33 %), >20 very high (~50 %).
BANDS = (
    Band("low", None, 7), Band("slightly_elevated", 7, 12), Band("moderate", 12, 15), Band("high", 15, 21),
    Band("very_high", 21, None),
)


def age_points(age: float) -> int:
    return 0 if age < 45 else 2 if age < 55 else 3 if age < 65 else 4


def bmi_points(bmi: float) -> int:
    return 0 if bmi < 25 else 1 if bmi <= 30 else 3


def waist_points(waist: float, sex: str) -> int:
    low, high = (94, 102) if sex == "M" else (80, 88)
    return 0 if waist < low else 3 if waist <= high else 4


def family_points(family: str) -> int:
    return {"none": 0, "second": 3, "first": 5}[family]


def assess(inputs: RiskInputs) -> RiskResult:
    missing = missing_of(inputs, REQUIRED)
    if missing:
        return not_applicable(MODEL, VERSION, "points", as_dict(inputs), missing=missing,
                              error="care.risk.missing_inputs")
    out_of_range = age_check(MODEL, VERSION, "points", inputs, *AGE_RANGE)
    if out_of_range:
        return out_of_range
    assert inputs.age is not None and inputs.bmi is not None and inputs.waist_cm is not None
    assert inputs.sex in ("M", "F") and inputs.family_diabetes is not None
    factors = [
        Factor("age", inputs.age, age_points(inputs.age)),
        Factor("bmi", inputs.bmi, bmi_points(inputs.bmi)),
        Factor("waist", inputs.waist_cm, waist_points(inputs.waist_cm, inputs.sex)),
        Factor("physically_active", inputs.physically_active, 0 if inputs.physically_active else 2),
        Factor("vegetables_daily", inputs.vegetables_daily, 0 if inputs.vegetables_daily else 1),
        Factor("antihypertensive_ever", inputs.antihypertensive_ever, 2 if inputs.antihypertensive_ever else 0),
        Factor("high_glucose_ever", inputs.high_glucose_ever, 5 if inputs.high_glucose_ever else 0),
        Factor("family_diabetes", inputs.family_diabetes, family_points(inputs.family_diabetes)),
    ]
    score = float(sum(f.contribution for f in factors))
    return RiskResult(MODEL, VERSION, score, "points", band_for(score, BANDS), as_dict(inputs), factors)
