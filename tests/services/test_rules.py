"""Rule language: table-driven parsing and validation, and evaluation in SQL on both engines."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from db.catalogue import INDICATORS
from services import rules
from services.errors import UserError
from services.tags import BUILTIN_RULES
from tests.factories import create_patient, create_response
from tests.factories_care import create_encounter, create_history, create_observation, create_risk

CAT: rules.Catalogue = {
    d.code: rules.IndicatorInfo(i, d.code, d.ref_low, d.ref_high) for i, d in enumerate(INDICATORS, start=1)
}
AS_OF = datetime(2026, 6, 15, 12, 0)


def ind(code: str, cmp: str, value: float, **kw: Any) -> dict[str, Any]:
    return {"kind": "indicator", "code": code, "cmp": cmp, "value": value, **kw}


def AND(*a: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    return {"op": "and", "args": list(a)}


def OR(*a: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    return {"op": "or", "args": list(a)}


def NOT(a: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    return {"op": "not", "arg": a}


@pytest.mark.parametrize(
    ("text", "detail_part"),
    [("{", "Expecting"), ("[1, 2]", "JSON object"), ("", "Expecting"), ('"SBP"', "JSON object")],
)
def test_parse_errors(text: str, detail_part: str) -> None:
    with pytest.raises(UserError) as e:
        rules.parse(text)
    assert e.value.key == "care.rules.parse_error"
    assert detail_part in e.value.params["detail"]


def test_parse_round_trip() -> None:
    assert rules.parse('{"kind": "sex", "value": "M"}') == {"kind": "sex", "value": "M"}


VALID = [
    ind("SBP", ">=", 140),
    ind("SBP", ">=", 140, mode="any", window_days=365),
    ind("SBP", ">=", 140, mode="count", window_days=365, min_count=2),
    {"kind": "indicator", "code": "TC", "mode": "count", "window_days": 365, "min_count": 1},
    {"kind": "diagnosis", "codes": ["I10"]},
    {"kind": "diagnosis", "text": ["高血压"]},
    {"kind": "age", "cmp": ">=", "value": 40},
    {"kind": "sex", "value": "F"},
    {"kind": "lifestyle", "aspect": "smoking", "text_not": ["戒"]},
    {"kind": "lifestyle", "aspect": "smoking", "key": "status", "values": ["current"]},
    {"kind": "risk", "model": "pce", "levels": ["high", "intermediate"]},
    {"kind": "satisfaction", "cmp": "<=", "value": 6, "window_days": 365},
    {"kind": "days_since_visit", "cmp": ">", "value": 365},
    AND(ind("SBP", ">=", 120), ind("SBP", "<", 140)),
    OR(ind("SBP", ">=", 140), ind("SBP", "<", 90)),
    # Two "any" readings may differ, so this is satisfiable.
    AND(ind("SBP", ">=", 140, mode="any", window_days=30), ind("SBP", "<", 120, mode="any", window_days=30)),
    NOT(AND(ind("SBP", ">=", 140), ind("DBP", ">=", 90))),
    AND(ind("SBP", ">=", 140), ind("SBP", "<=", 140)),
    *[r.expression for r in BUILTIN_RULES],
]


@pytest.mark.parametrize("expr", VALID)
def test_valid_rules_pass(expr: dict[str, Any]) -> None:
    assert rules.validate(expr, CAT) is None  # raises UserError for an unsound rule


INVALID = [
    (ind("XYZ", ">=", 1), "care.rules.unknown_indicator", {"code": "XYZ"}),
    (ind("SBP", "=>", 140), "care.rules.bad_operator", {"op": "=>"}),
    (ind("SBP", ">=", "140"), "care.rules.bad_value", {"field": "value"}),
    (ind("SBP", ">=", True), "care.rules.bad_value", {"field": "value"}),
    (ind("SBP", ">=", float("nan")), "care.rules.bad_value", {"field": "value"}),
    (ind("SBP", ">=", 140, mode="sometimes"), "care.rules.bad_value", {"field": "mode"}),
    (ind("SBP", ">=", 140, mode="any"), "care.rules.bad_value", {"field": "window_days"}),
    (ind("SBP", ">=", 140, mode="count", window_days=30), "care.rules.bad_value", {"field": "min_count"}),
    (ind("SBP", ">=", 140, min_count=2), "care.rules.unknown_field", {"field": "min_count"}),
    (ind("SBP", ">=", 140, window_days=0), "care.rules.bad_value", {"field": "window_days"}),
    ({"kind": "indicator", "code": "WAIST", "mode": "count", "window_days": 30, "min_count": 1},
     "care.rules.no_reference_range", {"code": "WAIST"}),
    ({**ind("SBP", ">=", 1), "eval": "os.system('x')"}, "care.rules.unknown_field", {"field": "eval"}),
    ({"kind": "python", "code": "1"}, "care.rules.unknown_node", {"kind": "python"}),
    ({"op": "xor", "args": []}, "care.rules.unknown_node", {"kind": "xor"}),
    ({"op": "and", "args": []}, "care.rules.empty_group", {"op": "and"}),
    ({"op": "not"}, "care.rules.parse_error", None),
    ({"op": "and", "args": [1]}, "care.rules.parse_error", None),
    ({"kind": "age", "cmp": ">=", "value": 40.5}, "care.rules.bad_value", {"field": "value"}),
    ({"kind": "sex", "value": "X"}, "care.rules.bad_value", {"field": "value"}),
    ({"kind": "risk", "model": "china_par", "levels": ["high"]}, "care.rules.bad_value", {"field": "model"}),
    ({"kind": "risk", "model": "pce", "levels": ["extreme"]}, "care.rules.bad_value", {"field": "levels"}),
    ({"kind": "satisfaction", "cmp": "<=", "value": 11}, "care.rules.bad_value", {"field": "value"}),
    ({"kind": "diagnosis"}, "care.rules.bad_value", {"field": "codes"}),
    ({"kind": "lifestyle", "aspect": "smoking", "key": "a b", "values": ["x"]}, "care.rules.bad_value",
     {"field": "key"}),
    ({"kind": "lifestyle", "key": "status", "values": ["x"]}, "care.rules.bad_value", {"field": "aspect"}),
    # Self-contradictions: a single value cannot be both.
    (AND(ind("SBP", ">=", 140), ind("SBP", "<", 120)), "care.rules.contradiction", {"what": "SBP"}),
    (AND(ind("SBP", ">", 140), ind("SBP", "<=", 140)), "care.rules.contradiction", {"what": "SBP"}),
    (AND(ind("SBP", ">=", 140), AND(ind("DBP", ">=", 90), ind("SBP", "<", 130))), "care.rules.contradiction",
     {"what": "SBP"}),
    (AND(ind("BMI", "==", 24), ind("BMI", "!=", 24)), "care.rules.contradiction", {"what": "BMI"}),
    (AND({"kind": "sex", "value": "M"}, {"kind": "sex", "value": "F"}), "care.rules.contradiction", {"what": "sex"}),
    (AND({"kind": "age", "cmp": "<", "value": 18}, {"kind": "age", "cmp": ">", "value": 65}),
     "care.rules.contradiction", {"what": "age"}),
    (OR(ind("HDL", "<", 1), NOT(AND({"kind": "days_since_visit", "cmp": ">", "value": 30},
                                    {"kind": "days_since_visit", "cmp": "<", "value": 10}))),
     "care.rules.contradiction", {"what": "days_since_visit"}),
    (AND({"kind": "risk", "model": "pce", "levels": ["high"]}, {"kind": "risk", "model": "pce", "levels": ["low"]}),
     "care.rules.contradiction", {"what": "pce"}),
]


@pytest.mark.parametrize(("expr", "key", "params"), INVALID)
def test_invalid_rules_are_refused(expr: Any, key: str, params: dict[str, Any] | None) -> None:
    with pytest.raises(UserError) as e:
        rules.validate(expr, CAT)
    assert e.value.key == key
    if params is not None:
        assert e.value.params == params


def test_too_deep_is_refused() -> None:
    expr: dict[str, Any] = ind("SBP", ">=", 1)
    for _ in range(20):
        expr = NOT(expr)
    with pytest.raises(UserError) as e:
        rules.validate(expr, CAT)
    assert e.value.key == "care.rules.too_large"


def test_every_error_key_is_translated() -> None:
    import i18n

    keys = {k for _, k, _ in INVALID} | {"care.rules.parse_error", "care.rules.too_large"}
    for lang in i18n.LANGUAGES:
        for key in keys:
            assert key in i18n.catalogue(lang), (lang, key)


# --- evaluation on both engines -----------------------------------------------------------------


def _count(session: Session, expr: dict[str, Any], as_of: datetime = AS_OF) -> int:
    return rules.preview_count(session, expr, as_of=as_of)


def _ids(session: Session, expr: dict[str, Any], as_of: datetime = AS_OF) -> set[int]:
    cat = rules.load_catalogue(session)
    return set(session.scalars(rules.matching_ids(expr, as_of=as_of, catalogue=cat)))


def test_indicator_latest_any_count(session: Session) -> None:
    a = create_patient(session).id
    b = create_patient(session).id
    c = create_patient(session).id
    create_observation(session, patient_id=a, code="SBP", value=150, at=datetime(2026, 1, 1))
    create_observation(session, patient_id=a, code="SBP", value=125, at=datetime(2026, 5, 1))
    create_observation(session, patient_id=b, code="SBP", value=145, at=datetime(2026, 3, 1))
    create_observation(session, patient_id=b, code="SBP", value=142, at=datetime(2026, 4, 1))
    # A reading after as_of does not exist yet for the rule.
    create_observation(session, patient_id=c, code="SBP", value=190, at=datetime(2026, 7, 1))
    create_observation(session, patient_id=c, code="SBP", value=118, at=datetime(2024, 1, 1))
    assert _ids(session, ind("SBP", ">=", 140)) == {b}
    assert _ids(session, ind("SBP", ">=", 140, mode="any", window_days=365)) == {a, b}
    assert _ids(session, ind("SBP", ">=", 140, mode="count", window_days=365, min_count=2)) == {b}
    assert _ids(session, ind("SBP", "<", 120)) == {c}
    assert _ids(session, ind("SBP", "<", 120, window_days=365)) == set()
    # Outside the reference range (90-139) counts as abnormal when no threshold is given.
    assert _ids(session, {"kind": "indicator", "code": "SBP", "mode": "count", "window_days": 365,
                          "min_count": 2}) == {b}
    assert _ids(session, NOT(ind("SBP", ">=", 140))) == {a, c}
    assert _count(session, OR(ind("SBP", ">=", 140), ind("SBP", "<", 120))) == 2
    assert _ids(session, ind("SBP", ">=", 190), as_of=datetime(2026, 7, 2)) == {c}


def test_demographics_history_and_visits(session: Session) -> None:
    old_m = create_patient(session, sex="M", birth_date=date(1966, 6, 15)).id  # 60 today
    young_f = create_patient(session, sex="F", birth_date=date(1986, 6, 16)).id  # 39 until tomorrow
    create_history(session, patient_id=old_m, kind="condition", text="原发性高血压", code="I10.x00")
    create_history(session, patient_id=young_f, kind="condition", text="糖尿病", code="E11.9",
                   ended_on=date(2025, 1, 1), recorded_at=datetime(2023, 1, 1))
    create_history(session, patient_id=young_f, kind="lifestyle", text="吸烟 10支/天", detail={"aspect": "smoking"})
    create_history(session, patient_id=old_m, kind="lifestyle", text="已戒烟", detail={"aspect": "smoking"})
    # The demo data's shape: code "smoking" and a structured status.
    seeded = create_patient(session, sex="M", birth_date=date(1980, 1, 1)).id
    create_history(session, patient_id=seeded, kind="lifestyle", text="吸烟，约10支/日", code="smoking",
                   detail={"status": "current", "per_day": 10})
    former = create_patient(session, sex="M", birth_date=date(1980, 1, 1)).id
    create_history(session, patient_id=former, kind="lifestyle", text="吸烟史", code="smoking",
                   detail={"status": "former"})
    create_encounter(session, patient_id=old_m, at=datetime(2026, 6, 1))
    create_encounter(session, patient_id=young_f, at=datetime(2025, 1, 1))
    assert _ids(session, {"kind": "age", "cmp": ">=", "value": 60}) == {old_m}
    assert _ids(session, {"kind": "age", "cmp": "!=", "value": 60}) == {young_f, seeded, former}
    assert _ids(session, {"kind": "age", "cmp": ">", "value": 59}) == {old_m}
    assert _ids(session, {"kind": "age", "cmp": "<", "value": 40}) == {young_f}
    assert _ids(session, {"kind": "age", "cmp": "==", "value": 39}) == {young_f}
    assert _ids(session, {"kind": "age", "cmp": "<=", "value": 39}) == {young_f}
    tomorrow = datetime(2026, 6, 16)
    assert _ids(session, {"kind": "age", "cmp": ">=", "value": 40}, as_of=tomorrow) == {old_m, young_f, seeded, former}
    assert _ids(session, {"kind": "sex", "value": "M"}) == {old_m, seeded, former}
    assert _ids(session, {"kind": "diagnosis", "codes": ["i10"]}) == {old_m}
    # An ended condition no longer counts.
    assert _ids(session, {"kind": "diagnosis", "text": ["糖尿病"]}) == set()
    assert _ids(session, {"kind": "diagnosis", "text": ["糖尿病"]}, as_of=datetime(2024, 6, 1)) == {young_f}
    smoker = next(r.expression for r in BUILTIN_RULES if r.code == "smoker")
    assert _ids(session, smoker) == {young_f, seeded}
    assert _ids(session, {"kind": "days_since_visit", "cmp": ">", "value": 365}) == {young_f, seeded, former}
    assert _ids(session, {"kind": "days_since_visit", "cmp": "<=", "value": 14}) == {old_m}
    assert _ids(session, {"kind": "days_since_visit", "cmp": "<=", "value": 13}) == set()
    assert _ids(session, {"kind": "days_since_visit", "cmp": "==", "value": 14}) == {old_m}
    never = create_patient(session).id
    assert never in _ids(session, {"kind": "days_since_visit", "cmp": ">", "value": 365})


def test_risk_and_satisfaction(session: Session) -> None:
    a = create_patient(session).id
    b = create_patient(session).id
    create_risk(session, patient_id=a, level="high", at=datetime(2026, 1, 1))
    create_risk(session, patient_id=a, level="low", at=datetime(2026, 6, 1))
    create_risk(session, patient_id=b, level="high", at=datetime(2026, 6, 1))
    create_risk(session, patient_id=b, model="cdrs", level="low", at=datetime(2026, 6, 2))
    assert _ids(session, {"kind": "risk", "model": "pce", "levels": ["high"]}) == {b}
    assert _ids(session, {"kind": "risk", "model": "pce", "levels": ["high"]}, as_of=datetime(2026, 2, 1)) == {a}
    create_response(session, patient_id=a, nps_score=3, submitted_at=datetime(2026, 3, 1))
    create_response(session, patient_id=a, nps_score=9, submitted_at=datetime(2026, 5, 1))
    create_response(session, patient_id=b, nps_score=6, submitted_at=datetime(2026, 5, 1))
    detractor = {"kind": "satisfaction", "cmp": "<=", "value": 6, "window_days": 365}
    assert _ids(session, detractor) == {b}
    assert _ids(session, detractor, as_of=datetime(2026, 4, 1)) == {a}


def test_preview_validates_first(session: Session) -> None:
    with pytest.raises(UserError) as e:
        rules.preview_count(session, ind("NOPE", ">", 1), as_of=AS_OF)
    assert e.value.key == "care.rules.unknown_indicator"


def test_text_is_matched_literally_not_as_a_pattern(session: Session) -> None:
    a = create_patient(session).id
    create_history(session, patient_id=a, kind="condition", text="高血压")
    assert _ids(session, {"kind": "diagnosis", "text": ["%"]}) == set()
    assert _ids(session, {"kind": "diagnosis", "text": ["血"]}) == {a}


@pytest.mark.parametrize(("expr", "unknown_matches", "old_matches"), [
    ({"kind": "age", "cmp": ">=", "value": 60}, False, True),
    ({"op": "not", "arg": {"kind": "age", "cmp": ">=", "value": 60}}, True, False),
    ({"op": "not", "arg": {"kind": "age", "cmp": "==", "value": 66}}, True, True),
    ({"op": "not", "arg": {"op": "and", "args": [{"kind": "sex", "value": "M"},
                                                 {"kind": "age", "cmp": "<", "value": 40}]}}, True, True),
])
def test_unknown_birth_date_is_false_like_a_missing_reading(session: Session, expr: dict[str, Any],
                                                            unknown_matches: bool, old_matches: bool) -> None:
    """A condition on age is false for a patient without a birth date, so not(...) holds for them, exactly as a
    condition on a reading the patient does not have; the preview and the run agree."""
    unknown = create_patient(session, sex="M", birth_date=None).id
    old = create_patient(session, sex="M", birth_date=date(1950, 1, 1)).id
    got = _ids(session, expr)
    assert (unknown in got) is unknown_matches
    assert (old in got) is old_matches
    assert _count(session, expr) == len(got)
