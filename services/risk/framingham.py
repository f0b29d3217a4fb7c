"""Framingham 2008 general cardiovascular disease 10-year risk (D'Agostino et al., Circulation 2008;117:743)."""

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

MODEL = "framingham"
VERSION = "D'Agostino 2008"
SOURCE = "D'Agostino RB et al. General cardiovascular risk profile for use in primary care, Circulation 2008;117:743"
# The derivation cohort was 30-74 years old.
AGE_RANGE = (30, 74)
REQUIRED = ("age", "sex", "tc_mmol", "hdl_mmol", "sbp", "bp_treated", "smoker", "diabetes")

COEF: dict[str, dict[str, float]] = {
    "M": {"ln_age": 3.06117, "ln_tc": 1.12370, "ln_hdl": -0.93263, "ln_sbp_untreated": 1.93303,
          "ln_sbp_treated": 1.99881, "smoker": 0.65451, "diabetes": 0.57367, "mean": 23.9802, "s10": 0.88936},
    "F": {"ln_age": 2.32888, "ln_tc": 1.20904, "ln_hdl": -0.70833, "ln_sbp_untreated": 2.76157,
          "ln_sbp_treated": 2.82263, "smoker": 0.52873, "diabetes": 0.69154, "mean": 26.1931, "s10": 0.95012},
}

# Conventional Framingham categories (<10 % low, 10-<20 % intermediate, >=20 % high).
BANDS = (Band("low", None, 10.0), Band("intermediate", 10.0, 20.0), Band("high", 20.0, None))


def assess(inputs: RiskInputs) -> RiskResult:
    missing = missing_of(inputs, REQUIRED)
    if missing:
        return not_applicable(MODEL, VERSION, "%", as_dict(inputs), missing=missing,
                              error="care.risk.missing_inputs")
    out_of_range = age_check(MODEL, VERSION, "%", inputs, *AGE_RANGE)
    if out_of_range:
        return out_of_range
    assert inputs.age is not None and inputs.tc_mmol is not None and inputs.hdl_mmol is not None
    assert inputs.sbp is not None and inputs.sex in ("M", "F")
    c = COEF[inputs.sex]
    sbp_term = c["ln_sbp_treated"] if inputs.bp_treated else c["ln_sbp_untreated"]
    factors = [
        Factor("age", inputs.age, c["ln_age"] * math.log(inputs.age)),
        Factor("tc", inputs.tc_mmol, c["ln_tc"] * math.log(inputs.tc_mmol * CHOL_MMOL_TO_MGDL)),
        Factor("hdl", inputs.hdl_mmol, c["ln_hdl"] * math.log(inputs.hdl_mmol * CHOL_MMOL_TO_MGDL)),
        Factor("sbp", inputs.sbp, sbp_term * math.log(inputs.sbp)),
        Factor("smoker", bool(inputs.smoker), c["smoker"] if inputs.smoker else 0.0),
        Factor("diabetes", bool(inputs.diabetes), c["diabetes"] if inputs.diabetes else 0.0),
    ]
    total = sum(f.contribution for f in factors)
    risk = 100.0 * (1.0 - c["s10"] ** math.exp(total - c["mean"]))
    return RiskResult(MODEL, VERSION, risk, "%", band_for(risk, BANDS), as_dict(inputs) | {"sum": round(total, 4)},
                      factors)
