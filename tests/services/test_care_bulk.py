"""The set-based care pass on both engines: observation_latest, the bulk risk run against the scalar reference,
rules read from the latest table agreeing with the window-function form, and re-evaluation of given patients."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from db.models import ObservationLatest, PatientTag, RiskAssessment
from services import latest_values, rules, tags
from services.risk import MODELS, assess_all, assess_patient, to_row
from tests.factories import create_patient, create_response
from tests.factories_care import (
    create_encounter,
    create_history,
    create_observation,
    create_risk,
    indicator_id,
)

AS_OF = datetime(2026, 6, 1, 23, 59, 59)
CODES = ("SBP", "DBP", "TC", "HDL", "BMI", "WAIST", "FPG", "HBA1C", "LDL", "TG")


def _population(session: Session, n: int, seed: int = 11) -> list[int]:
    rng = random.Random(seed)
    ids = []
    for _ in range(n):
        p = create_patient(session, sex=rng.choice(["M", "F"]),
                           birth_date=date(rng.randint(1935, 2005), rng.randint(1, 12), rng.randint(1, 28)))
        ids.append(p.id)
        for code in CODES:
            for _k in range(rng.randint(0, 3)):
                base = {"SBP": 110, "DBP": 70, "TC": 4, "HDL": 0.8, "BMI": 19, "WAIST": 70, "FPG": 4.5,
                        "HBA1C": 4.8, "LDL": 2, "TG": 0.8}[code]
                value = round(base * rng.uniform(0.9, 1.7), 1)
                at = AS_OF - timedelta(days=rng.randint(0, 1200), minutes=rng.randint(0, 600))
                create_observation(session, patient_id=p.id, code=code, value=value, at=at)
        if rng.random() < 0.6:
            status = rng.choice(["current", "former", "never"])
            create_history(session, patient_id=p.id, kind="lifestyle", text="吸烟" if status == "current" else "不吸烟",
                           detail={"aspect": "smoking", "status": status}, code="smoking")
        if rng.random() < 0.3:
            create_history(session, patient_id=p.id, kind="family", text="糖尿病",
                           relation=rng.choice(["母亲", "叔叔"]))
        if rng.random() < 0.2:
            create_history(session, patient_id=p.id, kind="medication", text="氨氯地平片", code="C08CA01")
        if rng.random() < 0.15:
            create_history(session, patient_id=p.id, kind="condition", text="2型糖尿病", code="E11.9")
        if rng.random() < 0.3:
            create_history(session, patient_id=p.id, kind="lifestyle", text="很少运动",
                           detail={"aspect": "exercise", "level": "none"}, code="exercise")
    return ids


def test_latest_values_build_incremental_and_patients(session: Session) -> None:
    p = create_patient(session).id
    sbp = indicator_id(session, "SBP")
    create_observation(session, patient_id=p, code="SBP", value=150, at=datetime(2026, 1, 1))
    first = latest_values.refresh(session)
    assert first.mode == "build"
    assert latest_values.usable(session, AS_OF)
    assert not latest_values.usable(session, datetime(2025, 12, 31))  # a reading after the date: fall back
    row = session.get(ObservationLatest, (p, sbp))
    assert row is not None and row.value == 150
    # An older reading added later does not replace the newer one; a newer one does.
    create_observation(session, patient_id=p, code="SBP", value=120, at=datetime(2025, 1, 1))
    assert not latest_values.usable(session, AS_OF)  # the watermark no longer covers every observation
    again = latest_values.refresh(session)
    assert again.mode == "incremental" and again.patients == 1
    session.expire_all()
    assert session.get(ObservationLatest, (p, sbp)).value == 150  # type: ignore[union-attr]
    newer = create_observation(session, patient_id=p, code="SBP", value=135, at=datetime(2026, 2, 1))
    latest_values.refresh(session)
    session.expire_all()
    assert session.get(ObservationLatest, (p, sbp)).value == 135  # type: ignore[union-attr]
    # An import that corrects a value in place names the patient: refresh(patient_ids=...) picks it up.
    session.execute(text("UPDATE observations SET value = 171 WHERE id = :i"), {"i": newer.id})
    assert latest_values.refresh(session).mode == "current"
    assert latest_values.refresh(session, patient_ids=[p]).mode == "patients"
    session.expire_all()
    assert session.get(ObservationLatest, (p, sbp)).value == 171  # type: ignore[union-attr]
    assert latest_values.usable(session, AS_OF)


def test_latest_values_rebuild_when_many_patients_changed(session: Session, monkeypatch: Any) -> None:
    people = [create_patient(session).id for _ in range(3)]
    create_observation(session, patient_id=people[0], code="SBP", value=150, at=datetime(2026, 1, 1))
    latest_values.refresh(session)
    monkeypatch.setattr(latest_values, "REBUILD_PATIENTS", 1)
    for p in people[1:]:
        create_observation(session, patient_id=p, code="SBP", value=140, at=datetime(2026, 1, 2))
    assert latest_values.refresh(session).mode == "build"
    assert session.scalar(select(func.count()).select_from(ObservationLatest)) == 3
    assert latest_values.usable(session, AS_OF)


def test_rules_on_latest_table_match_window_functions(session: Session) -> None:
    ids = _population(session, 40)
    latest_values.refresh(session)
    catalogue = rules.load_catalogue(session)
    exprs = [r.expression for r in tags.BUILTIN_RULES] + [
        {"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 140, "window_days": 365},
        {"kind": "indicator", "code": "HDL", "cmp": "<", "value": 1.0, "window_days": 90},
        # Side by side under an "and": read as one range per (indicator, window).
        {"op": "and", "args": [{"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 120, "window_days": 400},
                               {"kind": "indicator", "code": "SBP", "cmp": "<", "value": 170, "window_days": 400},
                               {"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 130},
                               {"kind": "indicator", "code": "DBP", "cmp": "<", "value": 95}]},
        # Patients with no reading at all: false under a not(...) too, so not(...) keeps them.
        {"op": "not", "arg": {"kind": "indicator", "code": "LDL", "cmp": ">=", "value": 3.0}},
        {"op": "not", "arg": {"op": "or", "args": [{"kind": "indicator", "code": "TG", "cmp": ">=", "value": 1.5},
                                                   {"kind": "sex", "value": "F"}]}},
    ]
    history = rules.prefetch_history(session, exprs, as_of=AS_OF)
    assert history is not None and len(history.columns) >= 4
    pivot = rules.prefetch_latest(session, exprs, catalogue=catalogue)
    assert pivot is not None and len(pivot.columns) >= 8
    # The preview's form (aliases of observation_latest, one per indicator), here for every indicator.
    joined = rules.latest_joins(exprs, catalogue=catalogue, min_uses=1)
    assert joined is not None and joined.columns.keys() == pivot.columns.keys()
    for expr in exprs:
        slow = set(session.scalars(rules.matching_ids(expr, as_of=AS_OF, catalogue=catalogue)))
        fast = set(session.scalars(rules.matching_ids(expr, as_of=AS_OF, catalogue=catalogue, latest_table=True,
                                                      history=history)))
        pivoted = set(session.scalars(rules.matching_ids(expr, as_of=AS_OF, catalogue=catalogue, latest_table=True,
                                                         history=history, pivot=pivot)))
        aliases = set(session.scalars(rules.matching_ids(expr, as_of=AS_OF, catalogue=catalogue, latest_table=True,
                                                         history=history, pivot=joined)))
        assert slow == fast == pivoted == aliases, expr
    assert any(session.scalars(rules.matching_ids(exprs[len(tags.BUILTIN_RULES)], as_of=AS_OF, catalogue=catalogue)))
    assert any(session.scalars(rules.matching_ids(exprs[-3], as_of=AS_OF, catalogue=catalogue)))
    # The preview joins an alias of observation_latest per indicator instead: the same counts, for every rule.
    no_ldl = set(ids) - set(session.scalars(select(ObservationLatest.patient_id)
                                            .where(ObservationLatest.indicator_id == indicator_id(session, "LDL"))))
    assert no_ldl and no_ldl <= set(session.scalars(rules.matching_ids(exprs[-2], as_of=AS_OF, catalogue=catalogue)))
    for expr in exprs:
        direct = len(set(session.scalars(rules.matching_ids(expr, as_of=AS_OF, catalogue=catalogue))))
        assert rules.preview_count(session, expr, as_of=AS_OF) == direct, expr


def test_bulk_risk_run_equals_the_scalar_reference(session: Session) -> None:
    ids = _population(session, 60, seed=5)
    summary = assess_all(session, as_of=AS_OF)
    assert summary.patients == 60 and summary.stored == 60 * len(MODELS)
    stored = {(r.patient_id, r.model): r for r in session.scalars(select(RiskAssessment))}
    computed = 0
    for pid in ids:
        for name, result in assess_patient(session, patient_id=pid, as_of=AS_OF).items():
            ref = to_row(pid, result, AS_OF)
            got = stored[(pid, name)]
            assert got.model_version == ref["model_version"] and got.level == ref["level"]
            assert got.missing == ref["missing"], (pid, name)
            if ref["score"] is None:
                assert got.score is None and got.inputs == json.loads(json.dumps(ref["inputs"]))
                continue
            computed += 1
            assert abs((got.score or 0) - ref["score"]) <= 1.01e-4
            assert [f["name"] for f in got.factors] == [f["name"] for f in ref["factors"]]
            assert set(got.inputs) == set(ref["inputs"])
    assert computed > 3  # the population exercises real scores, not only missing inputs
    again = assess_all(session, as_of=AS_OF)
    assert again.stored == 0 and again.unchanged == 60 * len(MODELS)


def test_reevaluate_given_patients_only(session: Session) -> None:
    a, b = _population(session, 2, seed=3)
    for p in (a, b):
        for day in (1, 2):
            create_observation(session, patient_id=p, code="SBP", value=165, at=datetime(2026, 5, day))
    tags.ensure_builtin_rules(session)
    assess_all(session, as_of=AS_OF, patient_ids=[a])
    tags.apply_rules(session, as_of=AS_OF, patient_ids=[a])
    risk_patients = set(session.scalars(select(RiskAssessment.patient_id).distinct()))
    tagged = set(session.scalars(select(PatientTag.patient_id).where(PatientTag.tag_code == "hypertension")))
    assert risk_patients == {a} and tagged == {a}
    assert session.scalar(select(func.count()).select_from(RiskAssessment)) == len(MODELS)


def test_bulk_risk_run_in_many_batches_writes_the_same_rows(session: Session, monkeypatch: Any) -> None:
    """Small batches: each batch's write (a COPY on a helper thread on PostgreSQL) overlaps the next batch's
    computation; the stored rows must be exactly those of a single-batch run."""
    import services.risk as risk_module

    _population(session, 23, seed=9)

    def snapshot() -> list[tuple[Any, ...]]:
        return sorted((r.patient_id, r.model, r.model_version, r.score, r.level, json.dumps(r.inputs, sort_keys=True),
                       json.dumps(r.factors), json.dumps(r.missing)) for r in session.scalars(select(RiskAssessment)))

    one = assess_all(session, as_of=AS_OF)
    single = snapshot()
    session.execute(delete(RiskAssessment))
    monkeypatch.setattr(risk_module, "BATCH", 4)
    many = assess_all(session, as_of=AS_OF)
    assert many == one and many.stored == 23 * len(MODELS)
    assert snapshot() == single
    again = assess_all(session, as_of=AS_OF)
    assert again.stored == 0 and again.unchanged == 23 * len(MODELS)


# Conditions whose sub-queries read other tables than the pivoted latest values: all of them must honour the scope.
SCOPED_EXTRA: dict[str, dict[str, Any]] = {
    "risk": {"kind": "risk", "model": "pce", "levels": ["high"]},
    "satisfaction": {"kind": "satisfaction", "cmp": "<=", "value": 6, "window_days": 365},
    "visit": {"op": "not", "arg": {"kind": "days_since_visit", "cmp": ">", "value": 90}},
    "count": {"kind": "indicator", "code": "SBP", "mode": "count", "min_count": 2},
    "latest_window": {"kind": "indicator", "code": "FPG", "cmp": ">=", "value": 5.6, "window_days": 400},
}


@pytest.mark.parametrize("inline", [True, False], ids=["inline ids", "temporary table"])
def test_scoped_evaluation_equals_the_whole_population_restricted(session: Session, monkeypatch: Any,
                                                                  inline: bool) -> None:
    """Re-evaluating a few patients (an import's) restricts every sub-query to them; the answer for those patients
    must be exactly what a run over everyone gives them, for every built-in rule and condition kind."""
    ids = _population(session, 30, seed=21)
    rng = random.Random(5)
    for p in ids:
        if rng.random() < 0.5:
            create_encounter(session, patient_id=p, at=AS_OF - timedelta(days=rng.randint(1, 200)))
        if rng.random() < 0.5:
            create_response(session, patient_id=p, nps_score=rng.randint(0, 10),
                            submitted_at=AS_OF - timedelta(days=rng.randint(1, 500)))
        if rng.random() < 0.4:
            create_risk(session, patient_id=p, level=rng.choice(["high", "low"]),
                        at=AS_OF - timedelta(days=rng.randint(1, 90)))
    latest_values.refresh(session)
    monkeypatch.setattr(rules, "INLINE_SCOPE", 1000 if inline else 0)
    chosen = sorted(rng.sample(ids, 11))
    scope = rules.patient_scope(session, chosen)
    assert isinstance(scope, tuple) is inline
    catalogue = rules.load_catalogue(session)
    exprs = {r.code: r.expression for r in tags.BUILTIN_RULES} | SCOPED_EXTRA
    full_history = rules.prefetch_history(session, list(exprs.values()), as_of=AS_OF)
    everyone = {code: set(session.scalars(rules.matching_ids(e, as_of=AS_OF, catalogue=catalogue,
                                                             history=full_history)))
                for code, e in exprs.items()}
    history = rules.prefetch_history(session, list(exprs.values()), as_of=AS_OF, scope=scope)
    pivot = rules.prefetch_latest(session, list(exprs.values()), catalogue=catalogue, scope=scope)
    for code, expr in exprs.items():
        for kw in ({}, {"history": history}, {"history": history, "latest_table": True},
                   {"history": history, "pivot": pivot, "latest_table": True}):
            got = set(session.scalars(rules.matching_ids(expr, as_of=AS_OF, catalogue=catalogue, scope=scope,
                                                         **kw)))
            assert got == everyone[code] & set(chosen), (code, kw.keys())
    assert any(everyone[c] & set(chosen) for c in SCOPED_EXTRA)


def test_scoped_rule_run_leaves_other_patients_tags_alone(session: Session, monkeypatch: Any) -> None:
    """apply_rules for an import's patients (a temporary scope table) opens and ends tags of those patients only:
    the tags of everyone else stay exactly as they were, even where the data would now change them."""
    ids = _population(session, 24, seed=31)
    tags.ensure_builtin_rules(session)
    tags.apply_rules(session, as_of=AS_OF)

    def open_tags() -> set[tuple[int, str]]:
        rows = session.execute(select(PatientTag.patient_id, PatientTag.tag_code).where(PatientTag.until.is_(None)))
        return {(int(p), str(c)) for p, c in rows}

    before = open_tags()
    # New readings for everyone that change their BP tags; only half of them are re-evaluated.
    for p in ids:
        for day in (2, 3):
            create_observation(session, patient_id=p, code="SBP", value=185, at=AS_OF - timedelta(days=day))
            create_observation(session, patient_id=p, code="DBP", value=115, at=AS_OF - timedelta(days=day))
    monkeypatch.setattr(rules, "INLINE_SCOPE", 0)
    chosen = set(ids[::2])
    tags.apply_rules(session, as_of=AS_OF, patient_ids=sorted(chosen))
    after = open_tags()
    assert {t for t in after if t[0] not in chosen} == {t for t in before if t[0] not in chosen}
    assert all((p, "htn_grade_3") in after for p in chosen)
    assert after != before
