"""Chinese Diabetes Risk Score (中国糖尿病风险评分表) of the Chinese T2DM guideline 2017/2020: >= 25 is high risk."""

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

MODEL = "cdrs"
VERSION = "CDS T2DM guideline 2017/2020"
SOURCE = "中国2型糖尿病防治指南 (2017/2020), 中国糖尿病风险评分表"
AGE_RANGE = (20, 74)
REQUIRED = ("age", "sex", "bmi", "waist_cm", "sbp", "family_diabetes")
HIGH_RISK_AT = 25

BANDS = (Band("low", None, HIGH_RISK_AT), Band("high", HIGH_RISK_AT, None))

# (lower bound inclusive, points), checked from the top.
_AGE = ((65, 18), (60, 16), (55, 15), (50, 13), (45, 12), (40, 11), (35, 8), (25, 4), (20, 0))
_BMI = ((30.0, 5), (24.0, 3), (22.0, 1))
_WAIST_M = ((95.0, 10), (90.0, 8), (85.0, 7), (80.0, 5), (75.0, 3))
_WAIST_F = ((90.0, 10), (85.0, 8), (80.0, 7), (75.0, 5), (70.0, 3))
_SBP = ((160.0, 10), (150.0, 8), (140.0, 7), (130.0, 6), (120.0, 3), (110.0, 1))


def _points(value: float, table: tuple[tuple[float, int], ...]) -> int:
    for low, pts in table:
        if value >= low:
            return pts
    return 0


def age_points(age: float) -> int:
    return _points(int(age), _AGE)  # completed years


def bmi_points(bmi: float) -> int:
    return _points(bmi, _BMI)


def waist_points(waist: float, sex: str) -> int:
    return _points(waist, _WAIST_M if sex == "M" else _WAIST_F)


def sbp_points(sbp: float) -> int:
    return _points(sbp, _SBP)


def assess(inputs: RiskInputs) -> RiskResult:
    missing = missing_of(inputs, REQUIRED)
    if missing:
        return not_applicable(MODEL, VERSION, "points", as_dict(inputs), missing=missing,
                              error="care.risk.missing_inputs")
    out_of_range = age_check(MODEL, VERSION, "points", inputs, *AGE_RANGE)
    if out_of_range:
        return out_of_range
    assert inputs.age is not None and inputs.bmi is not None and inputs.waist_cm is not None
    assert inputs.sbp is not None and inputs.sex in ("M", "F")
    factors = [
        Factor("age", inputs.age, age_points(inputs.age)),
        Factor("bmi", inputs.bmi, bmi_points(inputs.bmi)),
        Factor("waist", inputs.waist_cm, waist_points(inputs.waist_cm, inputs.sex)),
        Factor("sbp", inputs.sbp, sbp_points(inputs.sbp)),
        Factor("family_diabetes", inputs.family_diabetes, 6 if inputs.family_diabetes == "first" else 0),
        Factor("sex", inputs.sex, 2 if inputs.sex == "M" else 0),
    ]
    score = float(sum(f.contribution for f in factors))
    return RiskResult(MODEL, VERSION, score, "points", band_for(score, BANDS), as_dict(inputs), factors)
