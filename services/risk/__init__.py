"""Disease risk models (PCE, Framingham 2008, FINDRISC, CDRS) and their set-based run over all patients.

China-PAR is deliberately absent: neither its coefficients nor a worked example could be taken from the publication
to check them against, and coefficients are never guessed (docs/china-par.md says what was found and what it takes).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Text, and_, case, cast, func, or_, select, text
from sqlalchemy.orm import Session

from db.models import HealthHistory, Observation, ObservationLatest, Patient, RiskAssessment
from services import latest_values, rules
from services.risk import cdrs, findrisc, framingham, pce, vector
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
BATCH = 50000


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


def _flags(session: Session, as_of: datetime, only: list[int] | None = None, *,
           latest_table: bool = False) -> _Flags:
    """Patient-id sets for the yes/no inputs, each one set-based query (reusing the tag rule compiler)."""
    from services.tags import BUILTIN_RULES

    catalogue = rules.load_catalogue(session)
    by_code = {r.code: r.expression for r in BUILTIN_RULES}
    exprs: dict[str, dict[str, Any]] = {
        "diabetes": by_code["diabetes"],
        "smoking_recorded": {"kind": "lifestyle", "aspect": "smoking"},
        "inactive": {"op": "or", "args": [
            {"kind": "lifestyle", "aspect": "exercise", "key": "level", "values": ["none", "occasional"]},
            {"kind": "lifestyle", "aspect": "activity", "key": "level", "values": ["none", "occasional"]}]},
        "few_vegetables": {"kind": "lifestyle", "aspect": "diet", "text": ["蔬菜水果摄入不足"]},
        "smoker": by_code["smoker"],
        "high_glucose": {"op": "or", "args": [
            {"kind": "indicator", "code": "FPG", "mode": "any", "cmp": ">=", "value": 6.1, "window_days": 36500},
            {"kind": "indicator", "code": "HBA1C", "mode": "any", "cmp": ">=", "value": 5.7, "window_days": 36500},
        ]},
    }
    scope = None if only is None else rules.patient_scope(session, only)
    history = rules.prefetch_history(session, list(exprs.values()), as_of=as_of, scope=scope)
    pivot = (rules.prefetch_latest(session, list(exprs.values()), catalogue=catalogue, scope=scope)
             if latest_table else None)

    def rule_ids(expr: dict[str, Any]) -> set[int]:
        stmt = rules.matching_ids(expr, as_of=as_of, catalogue=catalogue, latest_table=latest_table,
                                  history=history, pivot=pivot, scope=scope)
        return set(session.scalars(stmt))

    day = as_of.date()
    active = and_(HealthHistory.recorded_at <= as_of,
                  or_(HealthHistory.started_on.is_(None), HealthHistory.started_on <= day),
                  or_(HealthHistory.ended_on.is_(None), HealthHistory.ended_on > day))
    meds = and_(HealthHistory.kind == "medication", active,
                or_(*[func.upper(HealthHistory.code).startswith(c) for c in ANTIHYPERTENSIVE_ATC],
                    *[func.lower(HealthHistory.text).contains(t) for t in ANTIHYPERTENSIVE_TEXT]))
    family_dm = and_(HealthHistory.kind == "family",
                     or_(HealthHistory.text.contains("糖尿病"), func.lower(HealthHistory.text).contains("diabet"),
                         func.upper(HealthHistory.code).startswith("E1")))
    first = or_(*[func.lower(func.coalesce(HealthHistory.relation, "")).contains(r) for r in FIRST_DEGREE])
    # Medication and family facts in one pass over health_history (one scan instead of four).
    wanted = (meds, HealthHistory.kind == "family", and_(family_dm, first), family_dm)
    q = (select(HealthHistory.patient_id, *[func.max(case((w, 1), else_=0)) for w in wanted])
         .where(HealthHistory.kind.in_(("medication", "family"))).group_by(HealthHistory.patient_id))
    if scope is not None:
        q = q.where(HealthHistory.patient_id.in_(scope))
    found: tuple[set[int], set[int], set[int], set[int]] = (set(), set(), set(), set())
    for row in session.execute(q):
        for i in range(4):
            if row[i + 1]:
                found[i].add(row[0])
    return _Flags(
        diabetes=rule_ids(exprs["diabetes"]),
        smoking_recorded=rule_ids(exprs["smoking_recorded"]),
        inactive=rule_ids(exprs["inactive"]),
        few_vegetables=rule_ids(exprs["few_vegetables"]),
        smoker=rule_ids(exprs["smoker"]),
        bp_treated=found[0],
        family_recorded=found[1],
        family_first=found[2],
        family_second=found[3],
        high_glucose=rule_ids(exprs["high_glucose"]),
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


_COLUMNS = ("patient_id", "model", "model_version", "assessed_at", "score", "level", "inputs", "factors", "missing")


def _write(session: Session, rows: list[vector.Row], at: datetime) -> Callable[[], None]:
    """Bulk insert of rows whose JSON is already text: COPY on PostgreSQL (an order of magnitude faster than
    INSERT at millions of rows), one executemany elsewhere.

    Returns the write still to be done on PostgreSQL (the COPY text is prepared here): assess_all runs it on a
    helper thread while it computes the next batch, nothing else using the connection meanwhile."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        stmt = text(f"INSERT INTO risk_assessments ({', '.join(_COLUMNS)}) VALUES "
                    "(:p, :m, :v, :at, :s, :l, :i, :f, :x)")
        session.execute(stmt, [{"p": r[0], "m": r[1], "v": r[2], "at": at, "s": r[3], "l": r[4], "i": r[5],
                                "f": r[6], "x": r[7]} for r in rows])
        return lambda: None
    stamp = at.isoformat(sep=" ")

    def field(v: Any) -> str:
        # COPY's text format: tab-separated, \N for NULL, backslashes doubled (JSON text has no tabs or newlines;
        # json.dumps escapes them inside strings).
        if v is None:
            return "\\N"
        t = v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
        return t.replace("\\", "\\\\") if "\\" in t else t

    buf = io.StringIO("".join(
        f"{pid}\t{field(model)}\t{field(version)}\t{stamp}\t{field(score)}\t{field(level)}\t{field(inputs)}\t"
        f"{field(factors)}\t{field(missing)}\n"
        for pid, model, version, score, level, inputs, factors, missing in rows))
    raw = conn.connection.dbapi_connection
    assert raw is not None

    def copy() -> None:
        cur: Any = raw.cursor()  # psycopg2: copy_expert is not part of the DB-API
        try:
            # Large reads: the driver releases the GIL while it sends, so the other thread keeps computing.
            cur.copy_expert(f"COPY risk_assessments ({', '.join(_COLUMNS)}) FROM STDIN", buf, size=1 << 20)
        finally:
            cur.close()

    return copy


def _members(ids: npt.NDArray[np.int64], members: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    if len(members) == 0:
        return np.zeros(len(ids), dtype=np.bool_)
    pos = np.clip(np.searchsorted(members, ids), 0, len(members) - 1)
    found: npt.NDArray[np.bool_] = members[pos] == ids
    return found


def _as_batch(ids: npt.NDArray[np.int64], sexes: list[str | None], births: list[date | None],
              values: dict[str, npt.NDArray[np.float64]], flags: dict[str, npt.NDArray[np.int64]],
              on: date) -> vector.Batch:
    """The vector form of inputs_for() for a batch of patients (same rules; tested to agree)."""
    n = len(ids)

    def has(name: str) -> npt.NDArray[np.bool_]:
        return _members(ids, flags[name])

    def known(mask: npt.NDArray[np.bool_], value: npt.NDArray[np.bool_]) -> npt.NDArray[np.int8]:
        out: npt.NDArray[np.int8] = np.where(mask, value.astype(np.int8), -1).astype(np.int8)
        return out

    yes = np.ones(n, dtype=np.bool_)
    treated, diabetes = has("bp_treated"), has("diabetes")
    family = np.full(n, -1, dtype=np.int8)
    family[has("family_recorded")] = 0
    family[has("family_second")] = 1
    family[has("family_first")] = 2
    return vector.Batch(
        n=n,
        age=np.array([np.nan if b is None else float(_age(b, on) or 0) for b in births], dtype=np.float64),
        sex=np.array([{"M": 1, "F": 0}.get(x or "", -1) for x in sexes], dtype=np.int8),
        race=np.full(n, vector.RACES.index("other"), dtype=np.int8),
        numbers=values,
        flags={"bp_treated": known(yes, treated), "smoker": known(has("smoking_recorded"), has("smoker")),
               "diabetes": known(yes, diabetes),
               "physically_active": known(has("inactive"), np.zeros(n, dtype=np.bool_)),
               "vegetables_daily": known(has("few_vegetables"), np.zeros(n, dtype=np.bool_)),
               "high_glucose_ever": known(yes, has("high_glucose") | diabetes),
               "antihypertensive_ever": known(yes, treated)},
        family=family,
    )


def _values(session: Session, where: Any, as_of: datetime, fields: dict[int, str], use_table: bool,
            ids: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.float64]]:
    """Latest value within MAX_VALUE_AGE_DAYS of each model input for the batch, one query."""
    since = as_of - timedelta(days=MAX_VALUE_AGE_DAYS)
    if use_table:
        stmt: Any = select(ObservationLatest.patient_id, ObservationLatest.indicator_id, ObservationLatest.value).where(
            where(ObservationLatest.patient_id), ObservationLatest.indicator_id.in_(list(fields)),
            ObservationLatest.observed_at >= since)
    else:
        ranked = (
            select(Observation.patient_id, Observation.indicator_id, Observation.value,
                   func.row_number().over(partition_by=(Observation.patient_id, Observation.indicator_id),
                                          order_by=(Observation.observed_at.desc(), Observation.id.desc()))
                   .label("rn"))
            .where(where(Observation.patient_id), Observation.indicator_id.in_(list(fields)),
                   Observation.observed_at <= as_of, Observation.observed_at >= since)
            .subquery()
        )
        stmt = select(ranked.c.patient_id, ranked.c.indicator_id, ranked.c.value).where(ranked.c.rn == 1)
    out = {f: np.full(len(ids), np.nan) for f in vector.NUMBERS}
    rows = session.execute(stmt).all()
    if rows:
        pid = np.array([r[0] for r in rows], dtype=np.int64)
        ind = np.array([r[1] for r in rows], dtype=np.int64)
        val = np.array([r[2] for r in rows], dtype=np.float64)
        pos = np.searchsorted(ids, pid)
        for ind_id, name in fields.items():
            sel = ind == ind_id
            out[name][pos[sel]] = val[sel]
    return out


def _previous(session: Session, where: Any, ids: npt.NDArray[np.int64]) -> dict[str, dict[str, list[Any]]]:
    """Per model, per batch position: the newest stored (version, score, level, missing JSON text)."""
    ranked = (
        select(RiskAssessment.patient_id, RiskAssessment.model, RiskAssessment.model_version, RiskAssessment.score,
               RiskAssessment.level, cast(RiskAssessment.missing, Text).label("missing"),
               func.row_number().over(partition_by=(RiskAssessment.patient_id, RiskAssessment.model),
                                      order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
               .label("rn"))
        .where(where(RiskAssessment.patient_id))
        .subquery()
    )
    n = len(ids)
    out: dict[str, dict[str, list[Any]]] = {
        m: {"present": [False] * n, "version": [None] * n, "score": [None] * n, "level": [None] * n,
            "missing": [None] * n} for m in MODELS}
    rows = session.execute(select(ranked.c.patient_id, ranked.c.model, ranked.c.model_version, ranked.c.score,
                                  ranked.c.level, ranked.c.missing).where(ranked.c.rn == 1)).all()
    if not rows:
        return out
    pos = np.searchsorted(ids, np.array([r[0] for r in rows], dtype=np.int64)).tolist()
    for i, (_, model, version, score, level, missing) in zip(pos, rows, strict=True):
        slot = out.get(model)
        if slot is None:
            continue
        slot["present"][i] = True
        slot["version"][i] = version
        slot["score"][i] = score
        slot["level"][i] = level
        # JSON null and SQL NULL both mean "nothing missing"; other writers may space the list differently.
        slot["missing"][i] = None if missing in (None, "null") else json.dumps(json.loads(missing),
                                                                               ensure_ascii=False)
    return out


def _changed(result: vector.VectorResult, prev: dict[str, list[Any]]) -> list[int]:
    """Positions whose (version, score to 4 decimals, level, missing) differ from the newest stored row."""
    scores = [None if s != s else round(s, 4) for s in result.score.tolist()]
    levels = vector.level_names(result.model, result.level)
    missing = vector.missing_json(result.model, result.missing)
    return [i for i, (p, v, s, lv, ms) in enumerate(zip(prev["present"], prev["version"], prev["score"],
                                                          prev["level"], prev["missing"], strict=True))
            if not p or v != result.version or s != scores[i] or lv != levels[i] or ms != missing[i]]


def assess_all(session: Session, *, as_of: datetime, patient_ids: list[int] | None = None,
               refreshed: bool = False) -> AssessSummary:
    """Run every model for every patient (or the given ones) and store a row where the result changed.

    Set-based: per batch of patients one query for their latest values (observation_latest when current), one
    for their newest stored results, the models over numpy arrays, and one COPY of the changed rows.
    Idempotent: an unchanged score, level and missing list for the same model version writes nothing.
    refreshed=True: the caller has just refreshed observation_latest for these patients in this transaction.
    """
    rules.tune_for_sets(session)
    if not refreshed:
        latest_values.refresh(session, patient_ids=patient_ids)
    use_table = latest_values.usable(session, as_of)
    flags = _flags(session, as_of, patient_ids, latest_table=use_table)
    members = {name: np.array(sorted(getattr(flags, name)), dtype=np.int64) for name in _Flags.__dataclass_fields__}
    catalogue = rules.load_catalogue(session)
    fields = {catalogue[c].id: f for c, f in VALUE_CODES.items() if c in catalogue}
    on = as_of.date()
    chunks: Iterable[_Chunk]
    if patient_ids is not None:
        wanted = sorted(set(patient_ids))
        chunks = (_Chunk(ids=tuple(wanted[i:i + BATCH])) for i in range(0, len(wanted), BATCH))
    else:
        chunks = _id_ranges(session)
    patients = stored = unchanged = 0
    # The previous batch's COPY runs on a helper thread while this batch is computed in Python (two cores busy
    # instead of one); the connection is only used by the main thread while no COPY is in flight.
    pending: Callable[[], None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="risk-copy") as pool:
        for where in chunks:
            people = session.execute(select(Patient.id, Patient.sex, Patient.birth_date).where(where(Patient.id))
                                     .order_by(Patient.id)).all()
            if not people:
                continue
            ids = np.array([p[0] for p in people], dtype=np.int64)
            batch = _as_batch(ids, [p[1] for p in people], [p[2] for p in people],
                              _values(session, where, as_of, fields, use_table, ids), members, on)
            previous = _previous(session, where, ids)
            running = pool.submit(pending) if pending is not None else None
            pending = None
            body: vector.InputsJson | None = None
            rows: list[vector.Row] = []
            for name, result in vector.assess(batch).items():
                which = _changed(result, previous[name])
                unchanged += len(ids) - len(which)
                if which:
                    body = body or vector.InputsJson(batch)
                    rows += vector.rows(ids.tolist(), result, which, body)
            if running is not None:
                running.result()
            if rows:
                pending = _write(session, rows, as_of)
                stored += len(rows)
            patients += len(ids)
        if pending is not None:
            pending()
    session.flush()
    return AssessSummary(patients, stored, unchanged)


@dataclass(frozen=True)
class _Chunk:
    """A batch of patients: an id range (low exclusive, high inclusive; None = open) or explicit ids."""

    low: int | None = None
    high: int | None = None
    ids: tuple[int, ...] | None = None

    def __call__(self, col: Any) -> Any:
        if self.ids is not None:
            return col.in_(self.ids)
        parts = [col > self.low] if self.low is not None else []
        if self.high is not None:
            parts.append(col <= self.high)
        return and_(*parts) if parts else col.is_not(None)


def _id_ranges(session: Session) -> Iterable[_Chunk]:
    """Consecutive id ranges of about BATCH patients each (keyset paging: no OFFSET scan, no id list in SQL)."""
    last: int | None = None
    while True:
        q = select(Patient.id).order_by(Patient.id).limit(1).offset(BATCH - 1)
        if last is not None:
            q = q.where(Patient.id > last)
        end = session.scalar(q)
        yield _Chunk(low=last, high=end)
        if end is None:
            return
        last = end


def assess_patient(session: Session, *, patient_id: int, as_of: datetime) -> dict[str, RiskResult]:
    """Fresh results of every model for one patient (not stored): the 360° view's "what if now"."""
    flags = _flags(session, as_of, [patient_id])
    person = session.get(Patient, patient_id)
    if person is None:
        return {}
    values = _latest_values(session, [patient_id], as_of).get(patient_id, {})
    inputs = inputs_for(person.sex, person.birth_date, values, patient_id, flags, as_of.date())
    return {name: fn(inputs) for name, fn in MODELS.items()}
