"""The vectorised risk models equal the scalar reference: random inputs, every band boundary, missing inputs."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from services.risk import MODELS, cdrs, findrisc, framingham, pce, to_row, vector
from services.risk.base import CHOL_MMOL_TO_MGDL, RiskInputs

AT = datetime(2026, 6, 1)


def _stored_by_vector(inputs: list[RiskInputs]) -> dict[tuple[int, str], dict[str, Any]]:
    batch = vector.batch_of(inputs)
    body = vector.InputsJson(batch)
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for result in vector.assess(batch).values():
        for pid, model, version, score, level, inp, factors, missing in vector.rows(
                list(range(len(inputs))), result, range(len(inputs)), body):
            out[(pid, model)] = {"model_version": version, "score": score, "level": level, "inputs": json.loads(inp),
                                 "factors": json.loads(factors), "missing": None if missing is None
                                 else json.loads(missing)}
    return out


def _assert_same(inputs: list[RiskInputs]) -> int:
    """Compare every (patient, model) row of the vectorised path with the scalar reference; return how many scored."""
    vec = _stored_by_vector(inputs)
    scored = 0
    for i, one in enumerate(inputs):
        for name, fn in MODELS.items():
            ref = to_row(i, fn(one), AT)
            got = vec[(i, name)]
            assert got["model_version"] == ref["model_version"]
            assert got["level"] == ref["level"], (name, one)
            assert got["missing"] == ref["missing"], (name, one)
            if ref["score"] is None:
                assert got["score"] is None
                assert got["inputs"] == ref["inputs"]
                assert got["factors"] == ref["factors"] == []
                continue
            # numpy's log/exp may differ from libm's in the last bit: equal to far below the stored 4 decimals.
            assert got["score"] == pytest.approx(ref["score"], abs=1.01e-4), (name, one)
            assert got["inputs"].keys() == ref["inputs"].keys()
            for key, value in ref["inputs"].items():
                assert got["inputs"][key] == (pytest.approx(value, abs=1.01e-4) if isinstance(value, float)
                                              else value), key
            assert [f["name"] for f in got["factors"]] == [f["name"] for f in ref["factors"]]
            for g, r in zip(got["factors"], ref["factors"], strict=True):
                assert g["value"] == r["value"]
                assert g["contribution"] == pytest.approx(r["contribution"], rel=1e-12, abs=1e-12)
                assert type(g["contribution"]) is type(r["contribution"])
            scored += 1
    return scored


def _random_inputs(rng: random.Random, n: int, *, holes: float) -> list[RiskInputs]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < holes else value

    out = []
    for _ in range(n):
        out.append(RiskInputs(
            age=maybe(rng.randint(15, 95)), sex=maybe(rng.choice(["M", "F"])),
            race=maybe(rng.choice(["white", "aa", "other"])),
            tc_mmol=maybe(round(rng.uniform(2.5, 9.0), 2)), hdl_mmol=maybe(round(rng.uniform(0.6, 2.6), 2)),
            sbp=maybe(round(rng.uniform(90, 200), 1)), bp_treated=maybe(rng.random() < 0.3),
            smoker=maybe(rng.random() < 0.25), diabetes=maybe(rng.random() < 0.15),
            bmi=maybe(round(rng.uniform(16, 40), 1)), waist_cm=maybe(round(rng.uniform(60, 120), 1)),
            family_diabetes=maybe(rng.choice(["none", "second", "first"])),
            physically_active=maybe(rng.random() < 0.5), vegetables_daily=maybe(rng.random() < 0.5),
            high_glucose_ever=maybe(rng.random() < 0.2), antihypertensive_ever=maybe(rng.random() < 0.3),
        ))
    return out


@pytest.mark.parametrize("holes", [0.0, 0.05, 0.5])
def test_vector_equals_scalar_on_random_inputs(holes: float) -> None:
    scored = _assert_same(_random_inputs(random.Random(20261122 + int(holes * 100)), 600, holes=holes))
    assert scored > 0, "the random inputs must reach the scoring path, not only missing-input errors"


def test_vector_names_missing_inputs_and_never_defaults() -> None:
    cases = [RiskInputs(), RiskInputs(age=50, sex="M", race="other"),
             RiskInputs(age=50, sex="F", bmi=25, sbp=120, family_diabetes="none"),
             RiskInputs(age=50, sex="M", race="other", tc_mmol=5, hdl_mmol=1.2, sbp=130, bp_treated=False,
                        smoker=None, diabetes=False)]
    _assert_same(cases)
    vec = _stored_by_vector(cases)
    assert vec[(3, "pce")]["missing"] == ["smoker"] and vec[(3, "pce")]["score"] is None
    assert vec[(3, "pce")]["inputs"]["error"] == "care.risk.missing_inputs"
    assert vec[(2, "cdrs")]["missing"] == ["waist_cm"]


def test_vector_age_out_of_range_is_an_error_not_a_score() -> None:
    full = RiskInputs(sex="M", race="other", tc_mmol=5, hdl_mmol=1.2, sbp=130, bp_treated=False, smoker=False,
                      diabetes=False, bmi=26, waist_cm=90, family_diabetes="none", physically_active=True,
                      vegetables_daily=True, high_glucose_ever=False, antihypertensive_ever=False)
    ages = [17, 18, 19, 20, 29, 30, 39, 40, 74, 75, 79, 80, 120, 121]
    cases = [replace(full, age=a) for a in ages]
    _assert_same(cases)
    vec = _stored_by_vector(cases)
    assert vec[(ages.index(39), "pce")]["inputs"]["error_params"] == {"age": 39, "low": 40, "high": 79}
    assert vec[(ages.index(40), "pce")]["score"] is not None
    assert vec[(ages.index(75), "framingham")]["score"] is None


def _boundaries(bands: tuple[Any, ...]) -> list[float]:
    out: list[float] = []
    for b in bands[1:]:
        out += [float(np.nextafter(b.low, -np.inf)), float(b.low), float(np.nextafter(b.low, np.inf))]
    return out


@pytest.mark.parametrize("model", [pce, framingham, findrisc, cdrs])
def test_band_lookup_equals_scalar_at_every_boundary(model: Any) -> None:
    from services.risk.base import band_for

    values = _boundaries(model.BANDS) + [0.0, 1e6]
    idx = vector.band_index(np.array(values), model.BANDS)
    assert [model.BANDS[i].level for i in idx] == [band_for(v, model.BANDS) for v in values]
    assert vector.band_index(np.array([np.nan]), model.BANDS).tolist() == [-1]


def _findrisc_case(**kw: Any) -> RiskInputs:
    base = RiskInputs(age=40, sex="M", bmi=22, waist_cm=80, physically_active=True, vegetables_daily=True,
                      antihypertensive_ever=False, high_glucose_ever=False, family_diabetes="none")
    return replace(base, **kw)


def _cdrs_case(**kw: Any) -> RiskInputs:
    return replace(RiskInputs(age=30, sex="F", bmi=20, waist_cm=60, sbp=100, family_diabetes="none"), **kw)


def test_point_scores_at_every_item_and_band_boundary() -> None:
    cases = []
    # FINDRISC item edges (age 45/55/65, BMI 25/30, waist by sex) and total scores 6/7, 11/12, 14/15, 20/21.
    for age in (44, 45, 54, 55, 64, 65):
        cases.append(_findrisc_case(age=age))
    for bmi in (24.9, 25, 30, 30.1):
        cases.append(_findrisc_case(bmi=bmi))
    findrisc_waists: tuple[tuple[str, tuple[float, ...]], ...] = (("M", (93.9, 94, 102, 102.1)),
                                                                  ("F", (79.9, 80, 88, 88.1)))
    for sex, waists in findrisc_waists:
        cases += [_findrisc_case(sex=sex, waist_cm=w) for w in waists]
    for total in (6, 7, 11, 12, 14, 15, 20, 21):
        # age 65 (4) + glucose (5) + family first (5) + ... built up to the wanted total.
        items = [("high_glucose_ever", True, 5), ("family_diabetes", "first", 5), ("age", 65, 4),
                 ("waist_cm", 103, 4), ("bmi", 31, 3), ("antihypertensive_ever", True, 2),
                 ("physically_active", False, 2), ("vegetables_daily", False, 1)]
        kw: dict[str, Any] = {}
        left = total
        for name, value, pts in items:
            if pts <= left:
                kw[name] = value
                left -= pts
        assert left == 0
        cases.append(_findrisc_case(**kw))
    # CDRS item edges and the high-risk line at 25.
    for age in (24, 25, 34, 35, 39, 40, 44, 45, 49, 50, 54, 55, 59, 60, 64, 65):
        cases.append(_cdrs_case(age=age))
    for bmi in (21.9, 22, 23.9, 24, 29.9, 30):
        cases.append(_cdrs_case(bmi=bmi))
    cdrs_waists: tuple[tuple[str, tuple[float, ...]], ...] = (("M", (74.9, 75, 80, 85, 90, 95)),
                                                              ("F", (69.9, 70, 75, 80, 85, 90)))
    for sex, waists in cdrs_waists:
        cases += [_cdrs_case(sex=sex, waist_cm=w) for w in waists]
    for sbp in (109.9, 110, 120, 130, 140, 150, 160):
        cases.append(_cdrs_case(sbp=sbp))
    cases += [_cdrs_case(age=45, waist_cm=85, sbp=130),  # 12 + 8 + 6 = 26 (F): high
              _cdrs_case(age=45, waist_cm=85, sbp=120),  # 12 + 8 + 3 = 23
              _cdrs_case(age=40, waist_cm=90, bmi=24, sbp=110),  # 11 + 10 + 3 + 1 = 25: exactly high
              _cdrs_case(age=40, waist_cm=90, bmi=22, sbp=110, family_diabetes="first")]
    _assert_same(cases)
    vec = _stored_by_vector(cases)
    scores = {vec[(i, "findrisc")]["score"] for i in range(len(cases))}
    assert {6, 7, 11, 12, 14, 15, 20, 21} <= scores
    assert any(vec[(i, "cdrs")]["score"] == 25 and vec[(i, "cdrs")]["level"] == "high" for i in range(len(cases)))


def test_equation_scores_near_band_boundaries() -> None:
    """Patients whose 10-year risk lies just around 5 / 7.5 / 10 / 20 %: the same band as the scalar path."""
    rng = random.Random(7)
    near: list[RiskInputs] = []
    pool = _random_inputs(rng, 4000, holes=0.0)
    for one in pool:
        for fn, lows in ((pce.assess, (5.0, 7.5, 20.0)), (framingham.assess, (10.0, 20.0))):
            s = fn(one).score
            if s is not None and any(abs(s - low) < 0.25 for low in lows):
                near.append(one)
    assert len(near) > 20
    _assert_same(near)


def test_goff_worked_example_through_the_vector_path() -> None:
    mg = CHOL_MMOL_TO_MGDL
    goff = RiskInputs(age=55, tc_mmol=213 / mg, hdl_mmol=50 / mg, sbp=120, bp_treated=False, smoker=False,
                      diabetes=False)
    cases = [replace(goff, race=r, sex=s) for r, s in (("white", "F"), ("aa", "F"), ("white", "M"), ("aa", "M"))]
    vec = _stored_by_vector(cases)
    assert [round(vec[(i, "pce")]["score"], 1) for i in range(4)] == [2.1, 3.0, 5.4, 6.1]
    _assert_same(cases)
