"""Tag rule language: JSON data validated before saving and compiled to one set-based SQL predicate on patients.

A rule is a tree of nodes, never code (nothing is eval'd):

    {"op": "and" | "or", "args": [node, ...]}        {"op": "not", "arg": node}
    {"kind": "indicator", "code": "SBP", "mode": "latest" | "any" | "count", "cmp": ">=", "value": 140,
     "window_days": 365, "min_count": 2}
        latest: the newest reading (within the window, if given) satisfies cmp/value;
        any:    some reading within the window satisfies it;
        count:  at least min_count readings within the window satisfy it ("abnormal readings"); without
                cmp/value a reading counts when it lies outside the indicator's reference range.
    {"kind": "diagnosis", "codes": ["I10"], "text": ["高血压"]}     an active condition (code prefix or text)
    {"kind": "age", "cmp": ">=", "value": 40}                       completed years on the evaluation date
    {"kind": "sex", "value": "M"}
    {"kind": "lifestyle", "aspect": "smoking", "key": "status", "values": ["current"], "text_not": ["戒"]}
        an active lifestyle record of that aspect (detail["aspect"], or its code when the detail names none: the
        form writes the former, the demo data the latter) whose detail[key] is one of
        values (if key given), whose text contains one of "text" (if given) and none of "text_not" (if given)
    {"kind": "risk", "model": "pce", "levels": ["high"]}            the newest assessment of that model
    {"kind": "satisfaction", "cmp": "<=", "value": 6, "window_days": 365}   the newest NPS answer
    {"kind": "days_since_visit", "cmp": ">", "value": 365}          no encounter at all counts as "never"
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Float,
    FromClause,
    MetaData,
    Select,
    SmallInteger,
    Table,
    and_,
    case,
    exists,
    false,
    func,
    insert,
    inspect,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from db.models import (
    Encounter,
    HealthHistory,
    Indicator,
    Observation,
    ObservationLatest,
    Patient,
    RiskAssessment,
    SurveyResponse,
    lifestyle_aspect,
)
from services import latest_values
from services.errors import UserError

CMPS = (">", ">=", "<", "<=", "==", "!=")
MODES = ("latest", "any", "count")
KINDS = ("indicator", "diagnosis", "age", "sex", "lifestyle", "risk", "satisfaction", "days_since_visit")
RISK_MODELS = ("pce", "framingham", "findrisc", "cdrs")
RISK_LEVELS = ("low", "borderline", "intermediate", "slightly_elevated", "moderate", "high", "very_high")
MAX_DEPTH = 12
MAX_NODES = 200
MAX_WINDOW_DAYS = 36600


@dataclass(frozen=True)
class IndicatorInfo:
    id: int
    code: str
    ref_low: float | None
    ref_high: float | None


Catalogue = dict[str, IndicatorInfo]


def load_catalogue(conn: Connection | Session) -> Catalogue:
    rows = conn.execute(select(Indicator.id, Indicator.code, Indicator.ref_low, Indicator.ref_high)).all()
    return {r.code: IndicatorInfo(r.id, r.code, r.ref_low, r.ref_high) for r in rows}


# --- parsing and validation ---------------------------------------------------------------------


def parse(text: str) -> dict[str, Any]:
    """JSON text of a rule -> its tree; malformed JSON is a translated error, never an exception trace."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError("care.rules.parse_error", detail=str(exc)) from None
    if not isinstance(data, dict):
        raise UserError("care.rules.parse_error", detail="a rule is a JSON object")
    return data


def _number(node: dict[str, Any], key: str, *, integer: bool = False, minimum: float | None = None) -> float:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError("care.rules.bad_value", field=key)
    if integer and not float(value).is_integer():
        raise UserError("care.rules.bad_value", field=key)
    if minimum is not None and value < minimum:
        raise UserError("care.rules.bad_value", field=key)
    return float(value)


def _cmp(node: dict[str, Any]) -> str:
    cmp = node.get("cmp")
    if cmp not in CMPS:
        raise UserError("care.rules.bad_operator", op=str(cmp))
    return str(cmp)


def _strings(node: dict[str, Any], key: str, *, allowed: tuple[str, ...] | None = None,
             required: bool = True) -> list[str]:
    value = node.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError("care.rules.bad_value", field=key)
    if required and not value:
        raise UserError("care.rules.bad_value", field=key)
    if allowed is not None:
        for v in value:
            if v not in allowed:
                raise UserError("care.rules.bad_value", field=key)
    return [v.strip() for v in value]


def _window(node: dict[str, Any], *, required: bool = False) -> None:
    if "window_days" in node or required:
        days = _number(node, "window_days", integer=True, minimum=1)
        if days > MAX_WINDOW_DAYS:
            raise UserError("care.rules.bad_value", field="window_days")


_ALLOWED_KEYS: dict[str, set[str]] = {
    "indicator": {"kind", "code", "mode", "cmp", "value", "window_days", "min_count"},
    "diagnosis": {"kind", "codes", "text"},
    "age": {"kind", "cmp", "value"},
    "sex": {"kind", "value"},
    "lifestyle": {"kind", "aspect", "key", "values", "text", "text_not"},
    "risk": {"kind", "model", "levels"},
    "satisfaction": {"kind", "cmp", "value", "window_days"},
    "days_since_visit": {"kind", "cmp", "value"},
}


def validate(expr: Any, catalogue: Catalogue) -> None:
    """Raise UserError for anything that cannot be evaluated or can never be true; silent when the rule is sound."""
    count = [0]
    _validate(expr, catalogue, depth=0, count=count)
    _check_contradictions(expr)


def _validate(node: Any, catalogue: Catalogue, *, depth: int, count: list[int]) -> None:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise UserError("care.rules.too_large", depth=MAX_DEPTH, nodes=MAX_NODES)
    if not isinstance(node, dict):
        raise UserError("care.rules.parse_error", detail="each condition is a JSON object")
    if "op" in node:
        op = node["op"]
        if op in ("and", "or"):
            if set(node) - {"op", "args"}:
                raise UserError("care.rules.unknown_field", field=sorted(set(node) - {"op", "args"})[0])
            args = node.get("args")
            if not isinstance(args, list) or not args:
                raise UserError("care.rules.empty_group", op=op)
            for a in args:
                _validate(a, catalogue, depth=depth + 1, count=count)
            return
        if op == "not":
            if set(node) - {"op", "arg"}:
                raise UserError("care.rules.unknown_field", field=sorted(set(node) - {"op", "arg"})[0])
            _validate(node.get("arg"), catalogue, depth=depth + 1, count=count)
            return
        raise UserError("care.rules.unknown_node", kind=str(op))
    kind = node.get("kind")
    if kind not in KINDS:
        raise UserError("care.rules.unknown_node", kind=str(kind))
    extra = set(node) - _ALLOWED_KEYS[kind]
    if extra:
        raise UserError("care.rules.unknown_field", field=sorted(extra)[0])
    if kind == "indicator":
        code = node.get("code")
        if not isinstance(code, str) or code not in catalogue:
            raise UserError("care.rules.unknown_indicator", code=str(code))
        mode = node.get("mode", "latest")
        if mode not in MODES:
            raise UserError("care.rules.bad_value", field="mode")
        if mode == "count":
            _number(node, "min_count", integer=True, minimum=1)
            if "cmp" in node or "value" in node:
                _cmp(node)
                _number(node, "value")
            else:
                info = catalogue[code]
                if info.ref_low is None and info.ref_high is None:
                    raise UserError("care.rules.no_reference_range", code=code)
        else:
            if "min_count" in node:
                raise UserError("care.rules.unknown_field", field="min_count")
            _cmp(node)
            _number(node, "value")
        _window(node, required=mode == "any")
    elif kind == "diagnosis":
        codes = _strings(node, "codes", required=False)
        texts = _strings(node, "text", required=False)
        if not codes and not texts:
            raise UserError("care.rules.bad_value", field="codes")
    elif kind == "age":
        _cmp(node)
        _number(node, "value", integer=True, minimum=0)
    elif kind == "sex":
        if node.get("value") not in ("M", "F", "U"):
            raise UserError("care.rules.bad_value", field="value")
    elif kind == "lifestyle":
        aspect = node.get("aspect")
        if not isinstance(aspect, str) or not aspect.isidentifier():
            raise UserError("care.rules.bad_value", field="aspect")
        if "key" in node or "values" in node:
            key = node.get("key")
            if not isinstance(key, str) or not key.isidentifier():
                raise UserError("care.rules.bad_value", field="key")
            _strings(node, "values")
        _strings(node, "text", required=False)
        _strings(node, "text_not", required=False)
    elif kind == "risk":
        if node.get("model") not in RISK_MODELS:
            raise UserError("care.rules.bad_value", field="model")
        _strings(node, "levels", allowed=RISK_LEVELS)
    elif kind == "satisfaction":
        _cmp(node)
        v = _number(node, "value")
        if not 0 <= v <= 10:
            raise UserError("care.rules.bad_value", field="value")
        _window(node)
    elif kind == "days_since_visit":
        _cmp(node)
        _number(node, "value", integer=True, minimum=0)


# --- contradictions -----------------------------------------------------------------------------


@dataclass
class _Interval:
    low: float = -math.inf
    low_open: bool = False
    high: float = math.inf
    high_open: bool = False
    excluded: tuple[float, ...] = ()

    def add(self, cmp: str, v: float) -> None:
        if cmp in (">", ">="):
            if v > self.low or (v == self.low and cmp == ">"):
                self.low, self.low_open = v, cmp == ">"
        elif cmp in ("<", "<="):
            if v < self.high or (v == self.high and cmp == "<"):
                self.high, self.high_open = v, cmp == "<"
        elif cmp == "==":
            self.add(">=", v)
            self.add("<=", v)
        else:
            self.excluded = (*self.excluded, v)

    def empty(self) -> bool:
        if self.low > self.high:
            return True
        if self.low == self.high:
            return self.low_open or self.high_open or self.low in self.excluded
        return False


def _flatten_and(node: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in node.get("args", []):
        if a.get("op") == "and":
            out.extend(_flatten_and(a))
        else:
            out.append(a)
    return out


def _single_value_key(node: dict[str, Any]) -> str | None:
    """Conditions on one value per patient (so two of them under an 'and' must be satisfiable together)."""
    kind = node.get("kind")
    if kind == "indicator" and node.get("mode", "latest") == "latest":
        return f"indicator:{node['code']}:{node.get('window_days')}"
    if kind in ("age", "days_since_visit"):
        return str(kind)
    if kind == "satisfaction":
        return f"satisfaction:{node.get('window_days')}"
    return None


def _label(key: str) -> str:
    parts = key.split(":")
    return parts[1] if parts[0] == "indicator" else parts[0]


def _check_contradictions(node: dict[str, Any]) -> None:
    if node.get("op") in ("or",):
        for a in node["args"]:
            _check_contradictions(a)
        return
    if node.get("op") == "not":
        _check_contradictions(node["arg"])
        return
    if node.get("op") != "and":
        return
    conds = _flatten_and(node)
    intervals: dict[str, _Interval] = {}
    sexes: set[str] = set()
    risk_levels: dict[str, set[str]] = {}
    for c in conds:
        if "op" in c:
            _check_contradictions(c)
            continue
        key = _single_value_key(c)
        if key is not None:
            intervals.setdefault(key, _Interval()).add(c["cmp"], float(c["value"]))
            if intervals[key].empty():
                raise UserError("care.rules.contradiction", what=_label(key))
        elif c["kind"] == "sex":
            sexes.add(c["value"])
            if len(sexes) > 1:
                raise UserError("care.rules.contradiction", what="sex")
        elif c["kind"] == "risk":
            levels = set(c["levels"])
            prev = risk_levels.get(c["model"])
            risk_levels[c["model"]] = levels if prev is None else prev & levels
            if not risk_levels[c["model"]]:
                raise UserError("care.rules.contradiction", what=c["model"])


# --- compilation --------------------------------------------------------------------------------


def _compare(col: Any, cmp: str, value: float) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if cmp == ">":
        result = col > value
    elif cmp == ">=":
        result = col >= value
    elif cmp == "<":
        result = col < value
    elif cmp == "<=":
        result = col <= value
    elif cmp == "==":
        result = col == value
    else:
        result = col != value
    return result


def _years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February in a non-leap target year
        return d.replace(year=d.year - years, day=28)


def _latest_value_ids(value_col: Any, time_col: Any, id_col: Any, patient_col: Any, where: list[Any],
                      cmp: str, value: float) -> Select[tuple[int]]:
    """Patients whose newest row (under `where`) satisfies cmp/value: one window function, set-based."""
    ranked = (
        select(
            patient_col.label("pid"),
            value_col.label("v"),
            func.row_number().over(partition_by=patient_col, order_by=(time_col.desc(), id_col.desc())).label("rn"),
        )
        .where(*where)
        .subquery()
    )
    return select(ranked.c.pid).where(ranked.c.rn == 1, _compare(ranked.c.v, cmp, value))


@dataclass(frozen=True)
class Compiler:
    as_of: datetime
    catalogue: Catalogue
    # observation_latest is current for as_of (latest_values.usable): "latest" reads one indexed row per patient.
    latest_table: bool = False
    # Diagnosis and lifestyle conditions already evaluated for everyone in one scan (prefetch_history).
    history: HistoryFlags | None = None
    # Latest values as columns joined to patients: a temporary table (prefetch_latest, for a run) or aliases of
    # observation_latest (latest_joins, for the preview); matching_ids and preview_count add the joins.
    pivot: LatestPivot | None = None
    # Only these patients (patient_scope): every sub-query is restricted to them, so re-evaluating the few hundred
    # patients an import touched reads their rows by index instead of ranking the whole population.
    scope: Scope | None = None

    def _scoped(self, col: Any) -> list[ColumnElement[bool]]:
        return [] if self.scope is None else [col.in_(self.scope)]

    def predicate(self, node: dict[str, Any], *, under_not: bool = False) -> ColumnElement[bool]:
        op = node.get("op")
        if op == "and":
            args, ranges = self._latest_ranges(node["args"])
            return and_(true(), *ranges, *[self.predicate(a, under_not=under_not) for a in args])
        if op == "or":
            return or_(false(), *[self.predicate(a, under_not=under_not) for a in node["args"]])
        if op == "not":
            return not_(self.predicate(node["arg"], under_not=True))
        if node["kind"] == "indicator":
            return self._indicator(node, under_not=under_not)
        if node["kind"] == "age" and under_not:
            # No birth date: "age >= 60" is false, so not(...) holds, as with a missing reading.
            return func.coalesce(self._age(node), false())
        result: ColumnElement[bool] = getattr(self, f"_{node['kind']}")(node)
        return result

    def _latest_ranges(self, args: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[ColumnElement[bool]]]:
        """Latest-value conditions on one indicator side by side under an "and" (SBP >= 120 and SBP < 140) as one
        range read of observation_latest: the same patients, but one semi-join, where two would be joined on a
        row estimate PostgreSQL gets badly wrong (it reads "value < 2.3" against every indicator's values: 54,000
        TG rows expected, 840,000 found, and a preview of 1.6 s instead of 0.2 s)."""
        groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        for a in args:
            if (self.latest_table and a.get("kind") == "indicator" and a.get("mode", "latest") == "latest"
                    and not (self.pivot is not None and self.catalogue[a["code"]].id in self.pivot.columns)):
                groups.setdefault((a["code"], a.get("window_days")), []).append(a)
        merged = [g for g in groups.values() if len(g) > 1]
        if not merged:
            return args, []
        taken = {id(a) for g in merged for a in g}
        ranges: list[ColumnElement[bool]] = []
        for group in merged:
            first = group[0]
            lw: list[Any] = [ObservationLatest.indicator_id == self.catalogue[first["code"]].id,
                             *[_compare(ObservationLatest.value, a["cmp"], float(a["value"])) for a in group],
                             *self._scoped(ObservationLatest.patient_id)]
            since = self._since(first)
            if since is not None:
                lw.append(ObservationLatest.observed_at >= since)
            ranges.append(Patient.id.in_(select(ObservationLatest.patient_id).where(*lw)))
        return [a for a in args if id(a) not in taken], ranges

    def _since(self, node: dict[str, Any]) -> datetime | None:
        days = node.get("window_days")
        return None if days is None else self.as_of - timedelta(days=int(days))

    def _indicator(self, node: dict[str, Any], *, under_not: bool = False) -> ColumnElement[bool]:
        info = self.catalogue[node["code"]]
        where: list[Any] = [Observation.indicator_id == info.id, Observation.observed_at <= self.as_of,
                            *self._scoped(Observation.patient_id)]
        since = self._since(node)
        if since is not None:
            where.append(Observation.observed_at >= since)
        mode = node.get("mode", "latest")
        if mode == "latest" and self.pivot is not None and info.id in self.pivot.columns:
            value_col, time_col = self.pivot.columns[info.id]
            cond = _compare(value_col, node["cmp"], float(node["value"]))
            if since is not None:
                cond = and_(time_col >= since, cond)
            # No reading must be "false", never NULL, once a not(...) is above: not(NULL) would drop the patient
            # where the IN (...) form keeps them. Elsewhere NULL already counts as false, and the bare comparison
            # lets PostgreSQL turn the outer join into an inner one.
            return func.coalesce(cond, false()) if under_not else cond
        if mode == "latest" and self.latest_table:
            # The newest reading on or before as_of is the table's row; "within the window" is then a date check.
            lw: list[Any] = [ObservationLatest.indicator_id == info.id,
                             _compare(ObservationLatest.value, node["cmp"], float(node["value"])),
                             *self._scoped(ObservationLatest.patient_id)]
            if since is not None:
                lw.append(ObservationLatest.observed_at >= since)
            return Patient.id.in_(select(ObservationLatest.patient_id).where(*lw))
        if mode == "latest":
            ids = _latest_value_ids(Observation.value, Observation.observed_at, Observation.id,
                                    Observation.patient_id, where, node["cmp"], float(node["value"]))
            return Patient.id.in_(ids)
        if mode == "count" and "cmp" not in node:
            outside: list[ColumnElement[bool]] = []
            if info.ref_low is not None:
                outside.append(Observation.value < info.ref_low)
            if info.ref_high is not None:
                outside.append(Observation.value > info.ref_high)
            where.append(or_(*outside))
        else:
            where.append(_compare(Observation.value, node["cmp"], float(node["value"])))
        if mode == "any":
            # Grouped, so the planner sees one row per patient and hashes the set (not one row per reading).
            return Patient.id.in_(select(Observation.patient_id).where(*where).group_by(Observation.patient_id))
        minimum = int(node["min_count"])
        return Patient.id.in_(
            select(Observation.patient_id).where(*where).group_by(Observation.patient_id)
            .having(func.count() >= minimum)
        )

    def _active_history(self, kind: str) -> list[ColumnElement[bool]]:
        day = self.as_of.date()
        return [
            HealthHistory.kind == kind,
            HealthHistory.recorded_at <= self.as_of,
            or_(HealthHistory.started_on.is_(None), HealthHistory.started_on <= day),
            or_(HealthHistory.ended_on.is_(None), HealthHistory.ended_on > day),
        ]

    def history_where(self, node: dict[str, Any]) -> list[ColumnElement[bool]]:
        """The health_history rows a diagnosis or lifestyle condition looks for (active on as_of)."""
        if node["kind"] == "diagnosis":
            matches: list[ColumnElement[bool]] = []
            for code in _strings(node, "codes", required=False):
                matches.append(func.upper(HealthHistory.code).startswith(code.upper(), autoescape=True))
            for text in _strings(node, "text", required=False):
                matches.append(HealthHistory.text.contains(text, autoescape=True))
            return [*self._active_history("condition"), or_(*matches)]
        where = [*self._active_history("lifestyle"), lifestyle_aspect() == node["aspect"]]
        if "key" in node:
            where.append(HealthHistory.detail[node["key"]].as_string().in_(_strings(node, "values")))
        texts = _strings(node, "text", required=False)
        if texts:
            where.append(or_(*[HealthHistory.text.contains(t, autoescape=True) for t in texts]))
        for t in _strings(node, "text_not", required=False):
            where.append(not_(HealthHistory.text.contains(t, autoescape=True)))
        return where

    def _history(self, node: dict[str, Any]) -> ColumnElement[bool]:
        column = None if self.history is None else self.history.columns.get(node_key(node))
        if column is not None and self.history is not None:
            flags = self.history.table
            return Patient.id.in_(select(flags.c.patient_id).where(flags.c[column] == 1))
        # Correlated, so the planner may choose: hash every matching row once (a condition on everyone), or probe
        # the patient's rows by index for each patient the rule's other conditions leave (male, 60+, BMI >= 28:
        # 10% of patients). An uncorrelated IN under or/not can only be hashed. The partial indexes on condition
        # and lifestyle rows (migration 0612) hold every column the conditions read, so either way is index-only.
        return exists().where(HealthHistory.patient_id == Patient.id, *self.history_where(node))

    def _diagnosis(self, node: dict[str, Any]) -> ColumnElement[bool]:
        return self._history(node)

    def _lifestyle(self, node: dict[str, Any]) -> ColumnElement[bool]:
        return self._history(node)

    def _age(self, node: dict[str, Any]) -> ColumnElement[bool]:
        n, cmp, day = int(node["value"]), node["cmp"], self.as_of.date()
        # age >= n  <=>  born on or before the n-th birthday's date counted back from today.
        at_least = {">=": n, ">": n + 1}.get(cmp)
        if at_least is not None:
            return Patient.birth_date <= _years_before(day, at_least)
        below = {"<": n, "<=": n + 1}.get(cmp)
        if below is not None:
            return Patient.birth_date > _years_before(day, below)
        exactly = and_(Patient.birth_date <= _years_before(day, n), Patient.birth_date > _years_before(day, n + 1))
        return exactly if cmp == "==" else and_(Patient.birth_date.is_not(None), not_(exactly))

    def _sex(self, node: dict[str, Any]) -> ColumnElement[bool]:
        return Patient.sex == str(node["value"])

    def _risk(self, node: dict[str, Any]) -> ColumnElement[bool]:
        ranked = (
            select(
                RiskAssessment.patient_id.label("pid"),
                RiskAssessment.level.label("level"),
                func.row_number().over(partition_by=RiskAssessment.patient_id,
                                       order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
                .label("rn"),
            )
            .where(RiskAssessment.model == node["model"], RiskAssessment.assessed_at <= self.as_of,
                   *self._scoped(RiskAssessment.patient_id))
            .subquery()
        )
        return Patient.id.in_(select(ranked.c.pid).where(ranked.c.rn == 1,
                                                         ranked.c.level.in_(_strings(node, "levels"))))

    def _satisfaction(self, node: dict[str, Any]) -> ColumnElement[bool]:
        where: list[Any] = [SurveyResponse.patient_id.is_not(None), SurveyResponse.nps_score.is_not(None),
                            SurveyResponse.submitted_at <= self.as_of, *self._scoped(SurveyResponse.patient_id)]
        since = self._since(node)
        if since is not None:
            where.append(SurveyResponse.submitted_at >= since)
        ids = _latest_value_ids(SurveyResponse.nps_score, SurveyResponse.submitted_at, SurveyResponse.id,
                                SurveyResponse.patient_id, where, node["cmp"], float(node["value"]))
        return Patient.id.in_(ids)

    def _days_since_visit(self, node: dict[str, Any]) -> ColumnElement[bool]:
        # Days since the last visit, in whole days: a visit at `as_of - n days` or later makes it <= n.
        n, cmp = int(node["value"]), node["cmp"]

        def visited_within(days: int) -> ColumnElement[bool]:
            if days < 0:
                return false()
            start = self.as_of - timedelta(days=days + 1)
            return Patient.id.in_(select(Encounter.patient_id).where(Encounter.started_at > start,
                                                                     Encounter.started_at <= self.as_of,
                                                                     *self._scoped(Encounter.patient_id))
                                  .group_by(Encounter.patient_id))

        if cmp == "<=":
            return visited_within(n)
        if cmp == "<":
            return visited_within(n - 1)
        if cmp == ">":
            return not_(visited_within(n))
        if cmp == ">=":
            return not_(visited_within(n - 1))
        exactly = and_(visited_within(n), not_(visited_within(n - 1)))
        return exactly if cmp == "==" else not_(exactly)


def compile_rule(expr: dict[str, Any], *, as_of: datetime, catalogue: Catalogue,
                 latest_table: bool = False, history: HistoryFlags | None = None,
                 pivot: LatestPivot | None = None, scope: Scope | None = None) -> ColumnElement[bool]:
    """A boolean SQL expression over `patients`: true for the patients the rule matches on `as_of`.

    latest_table=True reads "latest" conditions from observation_latest; only pass it when
    latest_values.usable(conn, as_of) said so. history: the result of prefetch_history for the same as_of.
    scope (patient_scope): the expression is then only meaningful for those patients, and reads only their rows.
    """
    return Compiler(as_of, catalogue, latest_table, history, pivot, scope).predicate(expr)


def matching_ids(expr: dict[str, Any], *, as_of: datetime, catalogue: Catalogue,
                 latest_table: bool = False, history: HistoryFlags | None = None,
                 pivot: LatestPivot | None = None, scope: Scope | None = None) -> Select[Any]:
    where = compile_rule(expr, as_of=as_of, catalogue=catalogue, latest_table=latest_table, history=history,
                         pivot=pivot, scope=scope)
    q = select(Patient.id)
    if pivot is not None:
        q = q.select_from(pivot.outerjoin(Patient.__table__))
    if scope is not None:
        q = q.where(Patient.id.in_(scope))
    return q.where(where)


# A set of patients to evaluate: a short id list inline, or the ids of a session-local temporary table.
Scope = tuple[int, ...] | Select[tuple[int]]
INLINE_SCOPE = 50
_SCOPE = Table("care_scope", MetaData(), Column("patient_id", BigInteger, primary_key=True))


def patient_scope(session: Session, patient_ids: Iterable[int]) -> Scope:
    """The patients a run is limited to, as something every sub-query can say `patient_id IN (...)` to.

    A few ids go inline (the 360 view's one patient: no table, works on a read-only connection). More go into a
    temporary table with statistics, so each condition's sub-query becomes an index lookup per scoped patient, and
    no statement carries thousands of bound parameters (SQLite allows 32,766 in all).
    """
    ids = sorted(set(patient_ids))
    if len(ids) <= INLINE_SCOPE:
        return tuple(ids)
    session.execute(text(f"DROP TABLE IF EXISTS {_SCOPE.name}"))
    session.execute(text(f"CREATE TEMPORARY TABLE {_SCOPE.name} (patient_id BIGINT PRIMARY KEY)"))
    for start in range(0, len(ids), 10000):
        session.execute(insert(_SCOPE), [{"patient_id": i} for i in ids[start:start + 10000]])
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {_SCOPE.name}"))
    return select(_SCOPE.c.patient_id)


@dataclass(frozen=True)
class LatestPivot:
    """The latest values the rules' "latest" conditions read, as columns outer-joined to patients (one row per
    patient): a temporary table with a value and a time column per indicator (prefetch_latest, for a run), or one
    alias of observation_latest per indicator (latest_joins, for a single read-only query such as the preview)."""

    joins: tuple[tuple[FromClause, ColumnElement[bool]], ...]
    columns: dict[int, tuple[Any, Any]]  # indicator id -> (value column, time column)

    def outerjoin(self, base: FromClause) -> FromClause:
        for table, on in self.joins:
            base = base.outerjoin(table, on)
        return base


def _latest_use_counts(exprs: list[dict[str, Any]]) -> Counter[str]:
    """How many "latest" conditions of the rules read each indicator code."""
    uses: Counter[str] = Counter()
    for e in exprs:
        _latest_uses(e, uses)
    return uses


def _latest_uses(node: Any, out: Counter[str]) -> None:
    if not isinstance(node, dict):
        return
    if node.get("op") in ("and", "or"):
        for a in node.get("args", []):
            _latest_uses(a, out)
    elif node.get("op") == "not":
        _latest_uses(node.get("arg"), out)
    elif node.get("kind") == "indicator" and node.get("mode", "latest") == "latest":
        out[str(node.get("code"))] += 1


def prefetch_latest(session: Session, exprs: list[dict[str, Any]], *, catalogue: Catalogue,
                    scope: Scope | None = None) -> LatestPivot | None:
    """Pivot observation_latest for the indicators the rules' "latest" conditions use into a temporary table.

    Each such condition is then a column test on one joined row per patient instead of a sub-plan hashing up to a
    million ids (a rule such as high-normal BP has seven of them). Only valid when latest_values.usable().
    """
    ids = sorted(catalogue[c].id for c in _latest_use_counts(exprs) if c in catalogue)
    if not ids:
        return None
    columns = {ind: (f"v{i}", f"t{i}") for i, ind in enumerate(ids)}
    name = "care_latest_pivot"
    session.execute(text(f"DROP TABLE IF EXISTS {name}"))
    table = Table(name, MetaData(), Column("patient_id", BigInteger, primary_key=True),
                  *[c for v, t in columns.values() for c in (Column(v, Float), Column(t, DateTime))])
    parts: list[Any] = []
    for ind, (v, t) in columns.items():
        parts.append(func.max(case((ObservationLatest.indicator_id == ind, ObservationLatest.value))).label(v))
        parts.append(func.max(case((ObservationLatest.indicator_id == ind, ObservationLatest.observed_at))).label(t))
    q: Any = select(ObservationLatest.patient_id, *parts).where(ObservationLatest.indicator_id.in_(ids))
    if scope is not None:
        q = q.where(ObservationLatest.patient_id.in_(scope))
    _fill_temp(session, table, q.group_by(ObservationLatest.patient_id))
    return LatestPivot(((table, table.c.patient_id == Patient.id),),
                       {ind: (table.c[v], table.c[t]) for ind, (v, t) in columns.items()})


# An indicator that many "latest" conditions of one rule read is joined once; read by one or two it stays a
# semi-join on the value index, which is cheaper than an outer join of every patient (measured at 1M patients:
# high-normal BP, SBP and DBP read three times each, 3.0 s -> 1.1 s joined; dyslipidaemia, four indicators read
# once each, 0.6 s as semi-joins, 1.6 s joined).
JOIN_MIN_USES = 3


def latest_joins(exprs: list[dict[str, Any]], *, catalogue: Catalogue,
                 min_uses: int = JOIN_MIN_USES) -> LatestPivot | None:
    """The indicators that the rules' "latest" conditions read at least `min_uses` times, as aliases of
    observation_latest joined by its key.

    For one read-only query (the preview: no temporary table on a replica). Each such condition is then a
    comparison on a joined row instead of a sub-plan hashing every patient with a matching value. Only valid when
    latest_values.usable().
    """
    uses = _latest_use_counts(exprs)
    joins: list[tuple[FromClause, ColumnElement[bool]]] = []
    columns: dict[int, tuple[Any, Any]] = {}
    for code in sorted(c for c, n in uses.items() if c in catalogue and n >= min_uses):
        ind = catalogue[code].id
        latest = aliased(ObservationLatest, name=f"latest_{code.lower()}")
        joins.append((inspect(latest).selectable,
                      and_(latest.patient_id == Patient.id, latest.indicator_id == ind)))
        columns[ind] = (latest.value, latest.observed_at)
    return LatestPivot(tuple(joins), columns) if joins else None


# --- whole-population runs: every health-history condition in one scan -----------------------------------


def node_key(node: dict[str, Any]) -> str:
    return json.dumps(node, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class HistoryFlags:
    """One row per patient with any condition or lifestyle fact and a 0/1 column per rule condition: the temporary
    table of prefetch_history, for a run of all rules."""

    table: FromClause
    columns: dict[str, str]  # node_key -> column name


def _history_leaves(node: Any, out: dict[str, dict[str, Any]]) -> None:
    if not isinstance(node, dict):
        return
    if node.get("op") in ("and", "or"):
        for a in node.get("args", []):
            _history_leaves(a, out)
    elif node.get("op") == "not":
        _history_leaves(node.get("arg"), out)
    elif node.get("kind") in ("diagnosis", "lifestyle"):
        out.setdefault(node_key(node), node)


def _history_select(exprs: list[dict[str, Any]], *, as_of: datetime,
                    scope: Scope | None = None) -> tuple[Select[Any], dict[str, str]] | None:
    leaves: dict[str, dict[str, Any]] = {}
    for e in exprs:
        _history_leaves(e, leaves)
    if not leaves:
        return None
    compiler = Compiler(as_of, {})
    columns = {key: f"c{i}" for i, key in enumerate(leaves)}
    flags = [func.max(case((and_(*compiler.history_where(node)), 1), else_=0)).label(columns[key])
             for key, node in leaves.items()]
    # Only rows that can match some condition: the conditions and lifestyle facts.
    q: Any = select(HealthHistory.patient_id, *flags).where(
        HealthHistory.kind.in_(("condition", "lifestyle")))
    if scope is not None:
        q = q.where(HealthHistory.patient_id.in_(scope))
    return q.group_by(HealthHistory.patient_id), columns


def prefetch_history(session: Session, exprs: list[dict[str, Any]], *, as_of: datetime,
                     scope: Scope | None = None) -> HistoryFlags | None:
    """Evaluate every diagnosis and lifestyle condition of `exprs` in a single pass over health_history.

    A run of all rules otherwise scans health_history once per condition (a dozen scans of millions of rows);
    here it is read once, grouped by patient, into a session-local temporary table the compiled rules read.
    """
    grouped = _history_select(exprs, as_of=as_of, scope=scope)
    if grouped is None:
        return None
    q, columns = grouped
    name = "care_history_flags"
    session.execute(text(f"DROP TABLE IF EXISTS {name}"))
    table = Table(name, MetaData(), Column("patient_id", BigInteger, primary_key=True),
                  *[Column(c, SmallInteger) for c in columns.values()])
    _fill_temp(session, table, q)
    return HistoryFlags(table, columns)


class _CreateTempAs(Executable, ClauseElement):
    """CREATE TEMPORARY TABLE name (cols) AS <select>, the select's parameters bound as usual."""

    inherit_cache = False

    def __init__(self, name: str, cols: list[str], query: Select[Any]) -> None:
        self.name, self.cols, self.query = name, cols, query


@compiles(_CreateTempAs)
def _compile_create_temp_as(element: _CreateTempAs, compiler: Any, **kw: Any) -> str:
    return (f"CREATE TEMPORARY TABLE {element.name} ({', '.join(element.cols)}) AS "
            f"{compiler.process(element.query, **kw)}")


def _fill_temp(session: Session, table: Table, q: Select[Any]) -> None:
    """Create the (dropped) session-local temporary `table` from `q`, keyed by patient_id.

    PostgreSQL: CREATE TEMPORARY TABLE ... AS, which may scan in parallel (INSERT ... SELECT never does: the
    health-history pass took 30 s single-threaded at 7M rows instead of 9 s), then the key and statistics.
    Elsewhere: CREATE TABLE with the declared columns, then INSERT ... SELECT.
    """
    cols = [c.name for c in table.columns]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_CreateTempAs(table.name, cols, q))
        session.execute(text(f"ALTER TABLE {table.name} ADD PRIMARY KEY (patient_id)"))
        session.execute(text(f"ANALYZE {table.name}"))
        return
    types = {BigInteger: "BIGINT", SmallInteger: "SMALLINT NOT NULL", Float: "FLOAT", DateTime: "TIMESTAMP"}
    decl = ", ".join("patient_id BIGINT PRIMARY KEY" if c.name == "patient_id" else f"{c.name} {types[type(c.type)]}"
                     for c in table.columns)
    session.execute(text(f"CREATE TEMPORARY TABLE {table.name} ({decl})"))
    session.execute(insert(table).from_select(cols, q))


def tune_for_sets(conn: Connection | Session) -> None:
    """Give set-based rule queries memory for their hashed sub-plans (PostgreSQL, this transaction only).

    A condition under or/not becomes a sub-plan that PostgreSQL hashes only if the set fits in work_mem; with the
    default 4 MB a million-patient set is searched linearly once per patient instead, which turns seconds into
    hours.
    """
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
        # JIT compiles each big statement anew (~1-2 s for the health-history pass) for simple comparisons that
        # run faster interpreted; a run issues dozens of such statements.
        conn.execute(text("SET LOCAL jit = off"))


def preview_count(conn: Connection | Session, expr: dict[str, Any], *, as_of: datetime,
                  patient_filter: ColumnElement[bool] | None = None) -> int:
    """How many patients a (validated) rule matches: a single COUNT in the database."""
    catalogue = load_catalogue(conn)
    validate(expr, catalogue)
    tune_for_sets(conn)
    usable = latest_values.usable(conn, as_of)
    pivot = latest_joins([expr], catalogue=catalogue) if usable else None
    where = compile_rule(expr, as_of=as_of, catalogue=catalogue, latest_table=usable, pivot=pivot)
    if patient_filter is not None:
        where = and_(where, patient_filter)
    source = Patient.__table__ if pivot is None else pivot.outerjoin(Patient.__table__)
    return int(conn.execute(select(func.count()).select_from(source).where(where)).scalar_one())
