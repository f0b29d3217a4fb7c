"""Disease risk models (PCE, Framingham 2008, FINDRISC, CDRS) and their set-based run over all patients.

China-PAR is deliberately absent: its coefficients are not verified in the project's clinical references,
and the brief forbids guessing them (see docs in the closing report).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, or_, select
from sqlalchemy.orm import Session

from db.models import HealthHistory, Observation, Patient, RiskAssessment
from services import rules
from services.risk import cdrs, findrisc, framingham, pce
from services.risk.base import RiskInputs, RiskResult

ModelFn = Callable[[RiskInputs], RiskResult]
MODELS: dict[str, ModelFn] = {
    pce.MODEL: pce.assess,
    framingham.MODEL: framingham.assess,
    findrisc.MODEL: findrisc.assess,
    cdrs.MODEL: cdrs.assess,
}
SOURCES = {pce.MODEL: pce.SOURCE, framingham.MODEL: framingham.SOURCE, findrisc.MODEL: findrisc.SOURCE,
           cdrs.MODEL: cdrs.SOURCE}
VERSIONS = {pce.MODEL: pce.VERSION, framingham.MODEL: framingham.VERSION, findrisc.MODEL: findrisc.VERSION,
            cdrs.MODEL: cdrs.VERSION}
LEVELS = {pce.MODEL: [b.level for b in pce.BANDS], framingham.MODEL: [b.level for b in framingham.BANDS],
          findrisc.MODEL: [b.level for b in findrisc.BANDS], cdrs.MODEL: [b.level for b in cdrs.BANDS]}

# Measurements older than this are not "current" for a 10-year risk estimate.
MAX_VALUE_AGE_DAYS = 730
VALUE_CODES = {"SBP": "sbp", "TC": "tc_mmol", "HDL": "hdl_mmol", "BMI": "bmi", "WAIST": "waist_cm"}
ANTIHYPERTENSIVE_ATC = ("C02", "C03", "C07", "C08", "C09")
ANTIHYPERTENSIVE_TEXT = ("降压", "地平", "普利", "沙坦", "洛尔", "氢氯噻嗪", "吲达帕胺", "antihypertensive",
                         "amlodipine", "nifedipine", "lisinopril", "enalapril", "losartan", "valsartan",
                         "metoprolol", "bisoprolol", "hydrochlorothiazide", "indapamide")
FIRST_DEGREE = ("父", "母", "兄", "弟", "姐", "妹", "子", "女", "parent", "father", "mother", "sibling", "brother",
                "sister", "son", "daughter", "child")
BATCH = 20000


def _age(birth: date | None, on: date) -> int | None:
    if birth is None:
        return None
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


@dataclass(frozen=True)
class _Flags:
    diabetes: set[int]
    smoking_recorded: set[int]
    smoker: set[int]
    inactive: set[int]
    few_vegetables: set[int]
    bp_treated: set[int]
    family_recorded: set[int]
    family_first: set[int]
    family_second: set[int]
    high_glucose: set[int]


def _flags(session: Session, as_of: datetime, only: list[int] | None = None) -> _Flags:
    """Patient-id sets for the yes/no inputs, each one set-based query (reusing the tag rule compiler)."""
    from services.tags import BUILTIN_RULES

    catalogue = rules.load_catalogue(session)
    by_code = {r.code: r.expression for r in BUILTIN_RULES}

    def rule_ids(expr: dict[str, Any]) -> set[int]:
        stmt = rules.matching_ids(expr, as_of=as_of, catalogue=catalogue)
        if only is not None:
            stmt = stmt.where(Patient.id.in_(only))
        return set(session.scalars(stmt))

    def _ids(stmt: Any) -> set[int]:
        if only is not None:
            stmt = stmt.where(HealthHistory.patient_id.in_(only))
        return set(session.scalars(stmt))

    day = as_of.date()
    active = and_(HealthHistory.recorded_at <= as_of,
                  or_(HealthHistory.started_on.is_(None), HealthHistory.started_on <= day),
                  or_(HealthHistory.ended_on.is_(None), HealthHistory.ended_on > day))
    meds = select(HealthHistory.patient_id).where(
        HealthHistory.kind == "medication", active,
        or_(*[func.upper(HealthHistory.code).startswith(c) for c in ANTIHYPERTENSIVE_ATC],
            *[func.lower(HealthHistory.text).contains(t) for t in ANTIHYPERTENSIVE_TEXT]))
    family_dm = and_(HealthHistory.kind == "family",
                     or_(HealthHistory.text.contains("糖尿病"), func.lower(HealthHistory.text).contains("diabet"),
                         func.upper(HealthHistory.code).startswith("E1")))
    first = or_(*[func.lower(func.coalesce(HealthHistory.relation, "")).contains(r) for r in FIRST_DEGREE])
    return _Flags(
        diabetes=rule_ids(by_code["diabetes"]),
        smoking_recorded=rule_ids({"kind": "lifestyle", "aspect": "smoking"}),
        inactive=rule_ids({"op": "or", "args": [
            {"kind": "lifestyle", "aspect": "exercise", "key": "level", "values": ["none", "occasional"]},
            {"kind": "lifestyle", "aspect": "activity", "key": "level", "values": ["none", "occasional"]}]}),
        few_vegetables=rule_ids({"kind": "lifestyle", "aspect": "diet", "text": ["蔬菜水果摄入不足"]}),
        smoker=rule_ids(by_code["smoker"]),
        bp_treated=_ids(meds),
        family_recorded=_ids(select(HealthHistory.patient_id).where(HealthHistory.kind == "family")),
        family_first=_ids(select(HealthHistory.patient_id).where(family_dm, first)),
        family_second=_ids(select(HealthHistory.patient_id).where(family_dm)),
        high_glucose=rule_ids({"op": "or", "args": [
            {"kind": "indicator", "code": "FPG", "mode": "any", "cmp": ">=", "value": 6.1, "window_days": 36500},
            {"kind": "indicator", "code": "HBA1C", "mode": "any", "cmp": ">=", "value": 5.7, "window_days": 36500},
        ]}),
    )


def _latest_values(session: Session, ids: list[int], as_of: datetime) -> dict[int, dict[str, float]]:
    catalogue = rules.load_catalogue(session)
    by_id = {catalogue[c].id: field for c, field in VALUE_CODES.items() if c in catalogue}
    ranked = (
        select(
            Observation.patient_id, Observation.indicator_id, Observation.value,
            func.row_number().over(partition_by=(Observation.patient_id, Observation.indicator_id),
                                   order_by=(Observation.observed_at.desc(), Observation.id.desc())).label("rn"),
        )
        .where(Observation.patient_id.in_(ids), Observation.indicator_id.in_(list(by_id)),
               Observation.observed_at <= as_of,
               Observation.observed_at >= as_of - timedelta(days=MAX_VALUE_AGE_DAYS))
        .subquery()
    )
    out: dict[int, dict[str, float]] = {}
    for pid, ind, value in session.execute(select(ranked.c.patient_id, ranked.c.indicator_id, ranked.c.value)
                                           .where(ranked.c.rn == 1)):
        out.setdefault(pid, {})[by_id[ind]] = value
    return out


def inputs_for(sex: str, birth: date | None, values: dict[str, float], pid: int, flags: _Flags,
               on: date) -> RiskInputs:
    """One patient's model inputs. Unknowns stay None so each model can name what it needs."""
    smoker: bool | None = None
    if pid in flags.smoking_recorded:
        smoker = pid in flags.smoker
    family: str | None = None
    if pid in flags.family_first:
        family = "first"
    elif pid in flags.family_second:
        family = "second"
    elif pid in flags.family_recorded:
        family = "none"
    return RiskInputs(
        age=_age(birth, on),
        sex=sex if sex in ("M", "F") else None,
        # No race is recorded; Goff 2013 advises the white equations for groups other than African American.
        race="other",
        tc_mmol=values.get("tc_mmol"),
        hdl_mmol=values.get("hdl_mmol"),
        sbp=values.get("sbp"),
        # Treatment and diabetes come from the record: no antihypertensive on the medication list = untreated.
        bp_treated=pid in flags.bp_treated,
        smoker=smoker,
        diabetes=pid in flags.diabetes,
        bmi=values.get("bmi"),
        waist_cm=values.get("waist_cm"),
        family_diabetes=family,
        antihypertensive_ever=pid in flags.bp_treated,
        high_glucose_ever=(pid in flags.high_glucose) or (pid in flags.diabetes),
        # FINDRISC asks for >= 30 minutes of activity every day and vegetables every day. The record only says
        # "no" for sure (no or occasional exercise; "not enough vegetables"); anything else stays unknown.
        physically_active=False if pid in flags.inactive else None,
        vegetables_daily=False if pid in flags.few_vegetables else None,
    )


def to_row(pid: int, result: RiskResult, at: datetime) -> dict[str, Any]:
    inputs = {k: v for k, v in result.inputs.items() if v is not None}
    if result.error:
        inputs["error"] = result.error
        inputs["error_params"] = result.error_params
    return {"patient_id": pid, "model": result.model, "model_version": result.version, "assessed_at": at,
            "score": None if result.score is None else round(result.score, 4), "level": result.level,
            "inputs": inputs, "factors": result.factors_json(), "missing": result.missing or None}


@dataclass(frozen=True)
class AssessSummary:
    patients: int
    stored: int
    unchanged: int


def _latest_stored(session: Session, ids: Iterable[int]) -> dict[tuple[int, str], tuple[Any, ...]]:
    ranked = (
        select(RiskAssessment.patient_id, RiskAssessment.model, RiskAssessment.model_version, RiskAssessment.score,
               RiskAssessment.level, RiskAssessment.missing,
               func.row_number().over(partition_by=(RiskAssessment.patient_id, RiskAssessment.model),
                                      order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
               .label("rn"))
        .where(RiskAssessment.patient_id.in_(list(ids)))
        .subquery()
    )
    rows = session.execute(select(ranked).where(ranked.c.rn == 1)).all()
    return {(r.patient_id, r.model): (r.model_version, r.score, r.level, r.missing) for r in rows}


_COLUMNS = ("patient_id", "model", "model_version", "assessed_at", "score", "level", "inputs", "factors", "missing")
_JSON = frozenset({"inputs", "factors", "missing"})


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk insert: COPY on PostgreSQL (an order of magnitude faster than INSERT at millions of rows), Core
    executemany elsewhere (the ORM bulk path splits rows into many small statements)."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        session.execute(insert(cast(Table, RiskAssessment.__table__)), rows)
        return
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow([r"\N" if row[c] is None else json.dumps(row[c], ensure_ascii=False) if c in _JSON
                         else row[c].isoformat(sep=" ") if isinstance(row[c], datetime) else row[c]
                         for c in _COLUMNS])
    buf.seek(0)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur: Any = raw.cursor()  # psycopg2: copy_expert is not part of the DB-API
    try:
        cur.copy_expert(f"COPY risk_assessments ({', '.join(_COLUMNS)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
                        buf)
    finally:
        cur.close()


def assess_all(session: Session, *, as_of: datetime, patient_ids: list[int] | None = None) -> AssessSummary:
    """Run every model for every patient (or the given ones) and store a row where the result changed.

    Idempotent: an unchanged score, level and missing list for the same model version writes nothing.
    """
    flags = _flags(session, as_of, patient_ids)
    on = as_of.date()
    id_query = select(Patient.id).order_by(Patient.id)
    if patient_ids is not None:
        id_query = id_query.where(Patient.id.in_(patient_ids))
    all_ids = list(session.scalars(id_query))
    stored = unchanged = 0
    for start in range(0, len(all_ids), BATCH):
        ids = all_ids[start:start + BATCH]
        people = session.execute(select(Patient.id, Patient.sex, Patient.birth_date).where(
            Patient.id.between(ids[0], ids[-1]))).all()
        values = _latest_values(session, ids, as_of)
        previous = _latest_stored(session, ids)
        rows: list[dict[str, Any]] = []
        wanted = set(ids)
        for pid, sex, birth in people:
            if pid not in wanted:
                continue
            inputs = inputs_for(sex, birth, values.get(pid, {}), pid, flags, on)
            for name, fn in MODELS.items():
                result = fn(inputs)
                row = to_row(pid, result, as_of)
                key = (row["model_version"], row["score"], row["level"], row["missing"])
                if previous.get((pid, name)) == key:
                    unchanged += 1
                    continue
                rows.append(row)
        if rows:
            _insert(session, rows)
            stored += len(rows)
    session.flush()
    return AssessSummary(len(all_ids), stored, unchanged)


def assess_patient(session: Session, *, patient_id: int, as_of: datetime) -> dict[str, RiskResult]:
    """Fresh results of every model for one patient (not stored): the 360° view's "what if now"."""
    flags = _flags(session, as_of, [patient_id])
    person = session.get(Patient, patient_id)
    if person is None:
        return {}
    values = _latest_values(session, [patient_id], as_of).get(patient_id, {})
    inputs = inputs_for(person.sex, person.birth_date, values, patient_id, flags, as_of.date())
    return {name: fn(inputs) for name, fn in MODELS.items()}

