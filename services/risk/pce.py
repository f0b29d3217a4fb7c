"""ACC/AHA 2013 pooled cohort equations: 10-year risk of a first hard ASCVD event (Goff et al., Circulation 2014)."""

from __future__ import annotations

import math

from services.risk.base import (
    CHOL_MMOL_TO_MGDL,
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

MODEL = "pce"
VERSION = "ACC/AHA 2013"
SOURCE = ("Goff DC et al. 2013 ACC/AHA Guideline on the Assessment of Cardiovascular Risk, "
          "doi 10.1161/01.cir.0000437741.48606.98")
AGE_RANGE = (40, 79)
REQUIRED = ("age", "sex", "race", "tc_mmol", "hdl_mmol", "sbp", "bp_treated", "smoker", "diabetes")

# Coefficients per (race, sex), as tabulated in /work/shared/clinical-references.md (Goff 2013, Table A).
COEF: dict[tuple[str, str], dict[str, float]] = {
    ("white", "F"): {"ln_age": -29.799, "ln_age_sq": 4.884, "ln_tc": 13.540, "ln_age_ln_tc": -3.114,
                     "ln_hdl": -13.578, "ln_age_ln_hdl": 3.149, "ln_sbp_treated": 2.019, "ln_age_ln_sbp_treated": 0.0,
                     "ln_sbp_untreated": 1.957, "ln_age_ln_sbp_untreated": 0.0, "smoker": 7.574,
                     "ln_age_smoker": -1.665, "diabetes": 0.661, "mean": -29.18, "s10": 0.9665},
    ("aa", "F"): {"ln_age": 17.114, "ln_age_sq": 0.0, "ln_tc": 0.940, "ln_age_ln_tc": 0.0,
                  "ln_hdl": -18.920, "ln_age_ln_hdl": 4.475, "ln_sbp_treated": 29.291, "ln_age_ln_sbp_treated": -6.432,
                  "ln_sbp_untreated": 27.820, "ln_age_ln_sbp_untreated": -6.087, "smoker": 0.691,
                  "ln_age_smoker": 0.0, "diabetes": 0.874, "mean": 86.61, "s10": 0.9533},
    ("white", "M"): {"ln_age": 12.344, "ln_age_sq": 0.0, "ln_tc": 11.853, "ln_age_ln_tc": -2.664,
                     "ln_hdl": -7.990, "ln_age_ln_hdl": 1.769, "ln_sbp_treated": 1.797, "ln_age_ln_sbp_treated": 0.0,
                     "ln_sbp_untreated": 1.764, "ln_age_ln_sbp_untreated": 0.0, "smoker": 7.837,
                     "ln_age_smoker": -1.795, "diabetes": 0.658, "mean": 61.18, "s10": 0.9144},
    ("aa", "M"): {"ln_age": 2.469, "ln_age_sq": 0.0, "ln_tc": 0.302, "ln_age_ln_tc": 0.0,
                  "ln_hdl": -0.307, "ln_age_ln_hdl": 0.0, "ln_sbp_treated": 1.916, "ln_age_ln_sbp_treated": 0.0,
                  "ln_sbp_untreated": 1.809, "ln_age_ln_sbp_untreated": 0.0, "smoker": 0.549,
                  "ln_age_smoker": 0.0, "diabetes": 0.645, "mean": 19.54, "s10": 0.8954},
}

# Risk categories of the 2019 ACC/AHA primary prevention guideline (Arnett et al., Circulation 2019).
BANDS = (
    Band("low", None, 5.0),
    Band("borderline", 5.0, 7.5),
    Band("intermediate", 7.5, 20.0),
    Band("high", 20.0, None),
)


def equations_for(race: str) -> str:
    # Goff 2013 advises the white equations for races other than African American.
    return "aa" if race == "aa" else "white"


def assess(inputs: RiskInputs) -> RiskResult:
    missing = missing_of(inputs, REQUIRED)
    if missing:
        return not_applicable(MODEL, VERSION, "%", as_dict(inputs), missing=missing,
                              error="care.risk.missing_inputs")
    out_of_range = age_check(MODEL, VERSION, "%", inputs, *AGE_RANGE)
    if out_of_range:
        return out_of_range
    assert inputs.age is not None and inputs.tc_mmol is not None and inputs.hdl_mmol is not None
    assert inputs.sbp is not None and inputs.race is not None and inputs.sex in ("M", "F")
    c = COEF[(equations_for(inputs.race), inputs.sex)]
    ln_age = math.log(inputs.age)
    ln_tc = math.log(inputs.tc_mmol * CHOL_MMOL_TO_MGDL)
    ln_hdl = math.log(inputs.hdl_mmol * CHOL_MMOL_TO_MGDL)
    ln_sbp = math.log(inputs.sbp)
    smoker = 1.0 if inputs.smoker else 0.0
    diabetes = 1.0 if inputs.diabetes else 0.0
    sbp_kind = "treated" if inputs.bp_treated else "untreated"
    # Interaction terms are counted with the factor they modify, so each factor's share is its whole effect.
    factors = [
        Factor("age", inputs.age, c["ln_age"] * ln_age + c["ln_age_sq"] * ln_age**2),
        Factor("tc", inputs.tc_mmol, c["ln_tc"] * ln_tc + c["ln_age_ln_tc"] * ln_age * ln_tc),
        Factor("hdl", inputs.hdl_mmol, c["ln_hdl"] * ln_hdl + c["ln_age_ln_hdl"] * ln_age * ln_hdl),
        Factor("sbp", inputs.sbp, c[f"ln_sbp_{sbp_kind}"] * ln_sbp + c[f"ln_age_ln_sbp_{sbp_kind}"] * ln_age * ln_sbp),
        Factor("smoker", bool(inputs.smoker), c["smoker"] * smoker + c["ln_age_smoker"] * ln_age * smoker),
        Factor("diabetes", bool(inputs.diabetes), c["diabetes"] * diabetes),
    ]
    total = sum(f.contribution for f in factors)
    risk = 100.0 * (1.0 - c["s10"] ** math.exp(total - c["mean"]))
    used = as_dict(inputs) | {"equations": equations_for(inputs.race), "sum": round(total, 4)}
    return RiskResult(MODEL, VERSION, risk, "%", band_for(risk, BANDS), used, factors)
