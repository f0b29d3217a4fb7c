"""Shared shapes of the risk models: their inputs, a result with per-factor contributions, and band lookup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Published conversion factor for cholesterol (TC, HDL-C, LDL-C): 1 mmol/L = 38.67 mg/dL.
CHOL_MMOL_TO_MGDL = 38.67


@dataclass(frozen=True)
class RiskInputs:
    """What a model may use. None means "not known": models name it as missing, they never default it."""

    age: float | None = None
    sex: str | None = None  # "M" / "F"
    race: str | None = None  # "white" / "aa" / "other" (PCE only)
    tc_mmol: float | None = None
    hdl_mmol: float | None = None
    sbp: float | None = None
    bp_treated: bool | None = None
    smoker: bool | None = None
    diabetes: bool | None = None
    bmi: float | None = None
    waist_cm: float | None = None
    # Diabetes in the family: "none", "second" (grandparent, aunt, uncle, cousin) or "first" (parent, sibling, child).
    family_diabetes: str | None = None
    physically_active: bool | None = None  # >= 30 minutes a day
    vegetables_daily: bool | None = None
    high_glucose_ever: bool | None = None
    antihypertensive_ever: bool | None = None


@dataclass(frozen=True)
class Factor:
    """One input's share: points for point scores, beta*x (linear predictor) for the equations."""

    name: str
    value: Any
    contribution: float


@dataclass(frozen=True)
class RiskResult:
    model: str
    version: str
    score: float | None  # percent for the equations, points for the point scores
    unit: str  # "%" or "points"
    level: str | None
    inputs: dict[str, Any]
    factors: list[Factor] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # An i18n key when the model does not apply (for example age out of range); never a number then.
    error: str | None = None
    error_params: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.score is not None

    def factors_json(self) -> list[dict[str, Any]]:
        return [{"name": f.name, "value": f.value, "contribution": f.contribution} for f in self.factors]


@dataclass(frozen=True)
class Band:
    level: str
    low: float | None  # inclusive
    high: float | None  # exclusive


def band_for(value: float, bands: tuple[Band, ...]) -> str:
    for b in bands:
        if (b.low is None or value >= b.low) and (b.high is None or value < b.high):
            return b.level
    raise ValueError(f"no band for {value}")


def as_dict(inputs: RiskInputs) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; the inputs are flat, so a shallow copy is enough (and 20x faster).
    return dict(inputs.__dict__)


def missing_of(inputs: RiskInputs, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if getattr(inputs, n) is None]


def not_applicable(model: str, version: str, unit: str, inputs: dict[str, Any], *, missing: list[str] | None = None,
                   error: str | None = None, **params: Any) -> RiskResult:
    return RiskResult(model=model, version=version, score=None, unit=unit, level=None, inputs=inputs,
                      missing=missing or [], error=error, error_params=params)


def age_check(model: str, version: str, unit: str, inputs: RiskInputs, low: int, high: int) -> RiskResult | None:
    """A result that says "outside the age range" or None when the age is valid for the model."""
    assert inputs.age is not None
    if inputs.age < low or inputs.age > high:
        return not_applicable(model, version, unit, as_dict(inputs), error="care.risk.age_out_of_range",
                              age=int(inputs.age), low=low, high=high)
    return None
