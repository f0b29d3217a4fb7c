"""The risk models over numpy arrays (one batch of patients at a time) and their stored rows as JSON text.

The scalar functions (pce.assess, framingham.assess, findrisc.assess, cdrs.assess) stay the reference; this module
reproduces them exactly (same coefficients, band tables, required inputs, error keys and stored JSON) without a
Python call per patient, which is what makes run-automation feasible at a million patients. Tests check the two
agree on random inputs, at every band boundary and on missing inputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from services.risk import cdrs, findrisc, framingham, pce
from services.risk.base import CHOL_MMOL_TO_MGDL, Band, RiskInputs

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

# Order of RiskInputs' fields: the stored "inputs" JSON keeps it, as the scalar path does.
FIELDS = tuple(RiskInputs.__dataclass_fields__)
NUMBERS = ("tc_mmol", "hdl_mmol", "sbp", "bmi", "waist_cm")
FLAGS = ("bp_treated", "smoker", "diabetes", "physically_active", "vegetables_daily", "high_glucose_ever",
         "antihypertensive_ever")
FAMILY = ("none", "second", "first")
RACES = ("white", "aa", "other")
MISSING_KEY = "care.risk.missing_inputs"
AGE_KEY = "care.risk.age_out_of_range"


@dataclass
class Batch:
    """Inputs of n patients. Unknown: NaN for numbers, -1 for yes/no (0/1), sex, race and family codes."""

    n: int
    age: F64  # completed years
    sex: I8  # 1 male, 0 female, -1 unknown
    race: I8  # index into RACES, -1 unknown
    numbers: dict[str, F64]
    flags: dict[str, I8]
    family: I8  # index into FAMILY, -1 unknown

    def known(self, name: str) -> B:
        if name == "age":
            return ~np.isnan(self.age)
        if name == "sex":
            return self.sex >= 0
        if name == "race":
            return self.race >= 0
        if name == "family_diabetes":
            return self.family >= 0
        if name in self.numbers:
            return ~np.isnan(self.numbers[name])
        return self.flags[name] >= 0


def batch_of(inputs: Sequence[RiskInputs]) -> Batch:
    """A Batch from scalar inputs (tests and small callers)."""
    n = len(inputs)

    def flag(v: bool | None) -> int:
        return -1 if v is None else int(bool(v))

    return Batch(
        n=n,
        age=np.array([np.nan if i.age is None else float(i.age) for i in inputs], dtype=np.float64),
        sex=np.array([{"M": 1, "F": 0}.get(i.sex or "", -1) for i in inputs], dtype=np.int8),
        race=np.array([RACES.index(i.race) if i.race in RACES else -1 for i in inputs], dtype=np.int8),
        numbers={k: np.array([np.nan if getattr(i, k) is None else float(getattr(i, k)) for i in inputs],
                             dtype=np.float64) for k in NUMBERS},
        flags={k: np.array([flag(getattr(i, k)) for i in inputs], dtype=np.int8) for k in FLAGS},
        family=np.array([FAMILY.index(i.family_diabetes) if i.family_diabetes in FAMILY else -1 for i in inputs],
                        dtype=np.int8),
    )


@dataclass
class Factors:
    name: str
    source: str  # the input whose value the factor shows
    contribution: F64
    integer: bool = False  # point scores store whole points


@dataclass
class VectorResult:
    model: str
    version: str
    score: F64  # NaN when the model does not apply
    level: npt.NDArray[np.int64]  # index into LEVELS[model], -1 when no score
    missing: npt.NDArray[np.int64]  # bit i set: REQUIRED[i] is unknown
    age_out: B
    factors: list[Factors]
    total: F64 | None = None  # the equations' linear predictor ("sum" in the stored inputs)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> B:
        return ~np.isnan(self.score)


def _thresholds(bands: tuple[Band, ...]) -> F64:
    # Contiguous bands: the level is the number of lower bounds at or below the value.
    for a, b in zip(bands, bands[1:], strict=False):
        assert a.high == b.low, "bands must be contiguous"
    assert bands[0].low is None and bands[-1].high is None
    return np.array([b.low for b in bands[1:]], dtype=np.float64)


def band_index(values: F64, bands: tuple[Band, ...]) -> npt.NDArray[np.int64]:
    idx = np.searchsorted(_thresholds(bands), values, side="right").astype(np.int64)
    return np.where(np.isnan(values), -1, idx)


def _missing(batch: Batch, required: tuple[str, ...]) -> npt.NDArray[np.int64]:
    bits = np.zeros(batch.n, dtype=np.int64)
    for i, name in enumerate(required):
        bits |= (~batch.known(name)).astype(np.int64) << i
    return bits


def _safe(values: F64, ok: B, fill: float) -> F64:
    return np.where(ok, values, fill)


def _equation(batch: Batch, model: str) -> VectorResult:
    """PCE and Framingham: sum of beta*x, then 100 * (1 - S10 ** exp(sum - mean))."""
    mod = pce if model == pce.MODEL else framingham
    missing = _missing(batch, mod.REQUIRED)
    low, high = mod.AGE_RANGE
    complete = missing == 0
    age_out = complete & ((batch.age < low) | (batch.age > high))
    ok = complete & ~age_out
    male = batch.sex == 1
    if model == pce.MODEL:
        keys = [("white", "F"), ("white", "M"), ("aa", "F"), ("aa", "M")]
        # Goff 2013: the white equations for every race other than African American.
        group = ((batch.race == 1) * 2 + male).astype(np.int64)

        def coef(name: str) -> F64:
            picked: F64 = np.array([pce.COEF[k][name] for k in keys], dtype=np.float64)[group]
            return picked
    else:
        def coef(name: str) -> F64:
            chosen: F64 = np.where(male, framingham.COEF["M"][name], framingham.COEF["F"][name])
            return chosen

    ln_age = np.log(_safe(batch.age, ok, 50.0))
    ln_tc = np.log(_safe(batch.numbers["tc_mmol"], ok, 5.0) * CHOL_MMOL_TO_MGDL)
    ln_hdl = np.log(_safe(batch.numbers["hdl_mmol"], ok, 1.3) * CHOL_MMOL_TO_MGDL)
    ln_sbp = np.log(_safe(batch.numbers["sbp"], ok, 120.0))
    treated = batch.flags["bp_treated"] == 1
    smoker = (batch.flags["smoker"] == 1).astype(np.float64)
    diabetes = (batch.flags["diabetes"] == 1).astype(np.float64)
    if model == pce.MODEL:
        age_c = coef("ln_age") * ln_age + coef("ln_age_sq") * ln_age**2
        tc_c = coef("ln_tc") * ln_tc + coef("ln_age_ln_tc") * ln_age * ln_tc
        hdl_c = coef("ln_hdl") * ln_hdl + coef("ln_age_ln_hdl") * ln_age * ln_hdl
        sbp_c = np.where(treated,
                         coef("ln_sbp_treated") * ln_sbp + coef("ln_age_ln_sbp_treated") * ln_age * ln_sbp,
                         coef("ln_sbp_untreated") * ln_sbp + coef("ln_age_ln_sbp_untreated") * ln_age * ln_sbp)
        smoker_c = coef("smoker") * smoker + coef("ln_age_smoker") * ln_age * smoker
        diabetes_c = coef("diabetes") * diabetes
    else:
        age_c = coef("ln_age") * ln_age
        tc_c = coef("ln_tc") * ln_tc
        hdl_c = coef("ln_hdl") * ln_hdl
        sbp_c = np.where(treated, coef("ln_sbp_treated"), coef("ln_sbp_untreated")) * ln_sbp
        smoker_c = np.where(smoker == 1.0, coef("smoker"), 0.0)
        diabetes_c = np.where(diabetes == 1.0, coef("diabetes"), 0.0)
    # Added in the scalar functions' order (sum() starts at 0), so the floats agree to the last bit or two.
    total = 0.0 + age_c + tc_c + hdl_c + sbp_c + smoker_c + diabetes_c
    risk = 100.0 * (1.0 - coef("s10") ** np.exp(total - coef("mean")))
    score = np.where(ok, risk, np.nan)
    factors = [Factors("age", "age", age_c), Factors("tc", "tc_mmol", tc_c), Factors("hdl", "hdl_mmol", hdl_c),
               Factors("sbp", "sbp", sbp_c), Factors("smoker", "smoker", smoker_c),
               Factors("diabetes", "diabetes", diabetes_c)]
    extras: dict[str, Any] = {}
    if model == pce.MODEL:
        extras["equations"] = np.where(batch.race == 1, "aa", "white")
    return VectorResult(mod.MODEL, mod.VERSION, score, band_index(score, mod.BANDS), missing, age_out, factors,
                        total=np.where(ok, total, np.nan), extras=extras)


def _findrisc(batch: Batch) -> VectorResult:
    missing = _missing(batch, findrisc.REQUIRED)
    low, high = findrisc.AGE_RANGE
    complete = missing == 0
    age_out = complete & ((batch.age < low) | (batch.age > high))
    ok = complete & ~age_out
    age, bmi, waist = batch.age, batch.numbers["bmi"], batch.numbers["waist_cm"]
    male = batch.sex == 1
    w_low, w_high = np.where(male, 94.0, 80.0), np.where(male, 102.0, 88.0)
    with np.errstate(invalid="ignore"):
        parts = [
            Factors("age", "age", np.select([age < 45, age < 55, age < 65], [0.0, 2.0, 3.0], 4.0), True),
            Factors("bmi", "bmi", np.select([bmi < 25, bmi <= 30], [0.0, 1.0], 3.0), True),
            Factors("waist", "waist_cm", np.select([waist < w_low, waist <= w_high], [0.0, 3.0], 4.0), True),
            Factors("physically_active", "physically_active",
                    np.where(batch.flags["physically_active"] == 1, 0.0, 2.0), True),
            Factors("vegetables_daily", "vegetables_daily",
                    np.where(batch.flags["vegetables_daily"] == 1, 0.0, 1.0), True),
            Factors("antihypertensive_ever", "antihypertensive_ever",
                    np.where(batch.flags["antihypertensive_ever"] == 1, 2.0, 0.0), True),
            Factors("high_glucose_ever", "high_glucose_ever",
                    np.where(batch.flags["high_glucose_ever"] == 1, 5.0, 0.0), True),
            Factors("family_diabetes", "family_diabetes",
                    np.array([0.0, 3.0, 5.0])[np.clip(batch.family, 0, 2)], True),
        ]
    score = np.where(ok, sum((p.contribution for p in parts), np.zeros(batch.n)), np.nan)
    return VectorResult(findrisc.MODEL, findrisc.VERSION, score, band_index(score, findrisc.BANDS), missing,
                        age_out, parts)


def _points(values: F64, table: tuple[tuple[float, int], ...]) -> F64:
    # The scalar _points: the first row (from the top) whose lower bound the value reaches, else 0.
    with np.errstate(invalid="ignore"):
        return np.select([values >= low for low, _ in table], [float(p) for _, p in table], 0.0)


def _cdrs(batch: Batch) -> VectorResult:
    missing = _missing(batch, cdrs.REQUIRED)
    low, high = cdrs.AGE_RANGE
    complete = missing == 0
    age_out = complete & ((batch.age < low) | (batch.age > high))
    ok = complete & ~age_out
    male = batch.sex == 1
    waist = batch.numbers["waist_cm"]
    parts = [
        Factors("age", "age", _points(np.floor(batch.age), cdrs._AGE), True),
        Factors("bmi", "bmi", _points(batch.numbers["bmi"], cdrs._BMI), True),
        Factors("waist", "waist_cm", np.where(male, _points(waist, cdrs._WAIST_M), _points(waist, cdrs._WAIST_F)),
                True),
        Factors("sbp", "sbp", _points(batch.numbers["sbp"], cdrs._SBP), True),
        Factors("family_diabetes", "family_diabetes", np.where(batch.family == 2, 6.0, 0.0), True),
        Factors("sex", "sex", np.where(male, 2.0, 0.0), True),
    ]
    score = np.where(ok, sum((p.contribution for p in parts), np.zeros(batch.n)), np.nan)
    return VectorResult(cdrs.MODEL, cdrs.VERSION, score, band_index(score, cdrs.BANDS), missing, age_out, parts)


REQUIRED = {pce.MODEL: pce.REQUIRED, framingham.MODEL: framingham.REQUIRED, findrisc.MODEL: findrisc.REQUIRED,
            cdrs.MODEL: cdrs.REQUIRED}
AGE_RANGES = {pce.MODEL: pce.AGE_RANGE, framingham.MODEL: framingham.AGE_RANGE, findrisc.MODEL: findrisc.AGE_RANGE,
              cdrs.MODEL: cdrs.AGE_RANGE}
BANDS = {pce.MODEL: pce.BANDS, framingham.MODEL: framingham.BANDS, findrisc.MODEL: findrisc.BANDS,
         cdrs.MODEL: cdrs.BANDS}


def assess(batch: Batch) -> dict[str, VectorResult]:
    """Every model for every patient of the batch."""
    return {pce.MODEL: _equation(batch, pce.MODEL), framingham.MODEL: _equation(batch, framingham.MODEL),
            findrisc.MODEL: _findrisc(batch), cdrs.MODEL: _cdrs(batch)}


# --- stored form --------------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_STRINGS: dict[str, str] = {}


def _scalar(value: Any) -> str:
    """json.dumps of a flat value without its overhead: this runs millions of times per run."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)  # json.dumps writes finite floats exactly so
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = _STRINGS.get(value)
        if text is None:
            text = _STRINGS[value] = _dump(value)
        return text
    return _dump(value)


def missing_names(model: str, bits: int) -> list[str]:
    return [name for i, name in enumerate(REQUIRED[model]) if bits >> i & 1]


def missing_json(model: str, bits: npt.NDArray[np.int64]) -> list[str | None]:
    """The stored "missing" column as JSON text (None when nothing is missing), one per row."""
    cache: dict[int, str | None] = {}
    out: list[str | None] = []
    for b in bits.tolist():
        if b not in cache:
            cache[b] = _dump(missing_names(model, b)) if b else None
        out.append(cache[b])
    return out


def level_names(model: str, idx: npt.NDArray[np.int64]) -> list[str | None]:
    names = [b.level for b in BANDS[model]]
    return [None if i < 0 else names[i] for i in idx.tolist()]


class InputsJson:
    """Each patient's known inputs as the body of a JSON object, in RiskInputs' field order (None left out)."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.values = self._values()
        # Each value as JSON text once; the factors of all four models reuse it.
        self.text = {name: [None if v is None else _scalar(v) for v in vals] for name, vals in self.values.items()}
        cols = [self._column(name) for name in FIELDS]
        self.body = [", ".join(p for p in parts if p is not None) for parts in zip(*cols, strict=True)]

    def _values(self) -> dict[str, list[Any]]:
        b = self.batch
        out: dict[str, list[Any]] = {
            "age": [None if v != v else int(v) if v.is_integer() else v for v in b.age.tolist()],
            "sex": [None if v < 0 else ("M" if v == 1 else "F") for v in b.sex.tolist()],
            "race": [None if v < 0 else RACES[v] for v in b.race.tolist()],
            "family_diabetes": [None if v < 0 else FAMILY[v] for v in b.family.tolist()],
        }
        for k in NUMBERS:
            out[k] = [None if v != v else v for v in b.numbers[k].tolist()]
        for k in FLAGS:
            out[k] = [None if v < 0 else v == 1 for v in b.flags[k].tolist()]
        return out

    def _column(self, name: str) -> list[str | None]:
        key = _dump(name) + ": "
        return [None if v is None else key + v for v in self.text[name]]


Row = tuple[int, str, str, float | None, str | None, str, str, str | None]


def rows(ids: Sequence[int], result: VectorResult, which: Sequence[int], body: InputsJson) -> list[Row]:
    """(patient_id, model, version, score, level, inputs JSON, factors JSON, missing JSON) for the chosen rows:
    exactly what the scalar path stores (services.risk.to_row), as JSON text ready for COPY or executemany."""
    model = result.model
    levels = level_names(model, result.level)
    missing = missing_json(model, result.missing)
    score = result.score.tolist()
    total = None if result.total is None else result.total.tolist()
    # ids may be numpy integers; JSON and the drivers want Python ints.
    ids = [int(x) for x in ids]
    age_out = result.age_out.tolist()
    contributions = [('{"name": ' + _dump(f.name) + ', "value": ', body.text[f.source],
                      [str(int(c)) if c == c else "null" for c in f.contribution.tolist()] if f.integer
                      else [repr(c) for c in f.contribution.tolist()]) for f in result.factors]
    equations = result.extras.get("equations")
    out: list[Row] = []
    for i in which:
        parts = [body.body[i]] if body.body[i] else []
        s = score[i]
        factors = "[]"
        if s == s:
            if total is not None:
                if equations is not None:
                    parts.append(f'"equations": {_dump(str(equations[i]))}')
                parts.append(f'"sum": {round(total[i], 4)!r}')
            factors = "[" + ", ".join(f'{head}{vals[i]}, "contribution": {contrib[i]}}}'
                                      for head, vals, contrib in contributions) + "]"
            stored_score: float | None = round(s, 4)
        else:
            stored_score = None
            if age_out[i]:
                low, high = AGE_RANGES[model]
                age = body.values["age"][i]
                parts.append(f'"error": {_dump(AGE_KEY)}, "error_params": '
                             f'{_dump({"age": int(age), "low": low, "high": high})}')
            else:
                parts.append(f'"error": {_dump(MISSING_KEY)}, "error_params": {{}}')
        out.append((ids[i], model, result.version, stored_score, levels[i], "{" + ", ".join(parts) + "}", factors,
                    missing[i]))
    return out
