"""Automatic and manual patient tags: built-in guideline rules as data, rule saving, and set-based re-evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    CursorResult,
    MetaData,
    Result,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from db.models import Patient, PatientTag, TagRule
from services import audit, clock, latest_values, rules
from services.auth import CurrentUser
from services.errors import UserError

SRC_BP = "中国高血压防治指南（2018年修订版） / 2018 Chinese Guidelines for the Management of Hypertension"
SRC_DM = "中国2型糖尿病防治指南（2020年版）; ADA Standards of Care Table 2.2 (repeat testing)"
SRC_WT = "WS/T 428-2013 成人体重判定 / Criteria of weight for adults"
SRC_LIP = "中国成人血脂异常防治指南（2016年修订版） / Chinese guidelines for dyslipidaemia in adults (2016)"
SRC_NPS = "Bain & Company, Net Promoter Score (detractors 0-6)"
SRC_LTFU = "WHO HEARTS as operationalised by Simple (docs.simple.org): lost to follow-up = no visit for > 12 months"
SRC_CVD = "Careloop: ACC/AHA 2013 PCE or Framingham 2008 10-year risk >= 20 %"
SRC_SMOKE = "Careloop: current smoking recorded in the lifestyle history"

YEAR = 365
SMOKING_NEGATIONS = ["不吸烟", "从不", "已戒", "戒烟", "无吸烟", "never", "former", "quit", "non-smoker"]


def _ind(code: str, cmp: str, value: float, *, mode: str = "latest", window: int | None = None,
         min_count: int | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"kind": "indicator", "code": code, "mode": mode, "cmp": cmp, "value": value}
    if window is not None:
        node["window_days"] = window
    if min_count is not None:
        node["min_count"] = min_count
    return node


def _between(code: str, low: float, high: float) -> dict[str, Any]:
    return {"op": "and", "args": [_ind(code, ">=", low), _ind(code, "<", high)]}


def _any(*args: dict[str, Any]) -> dict[str, Any]:
    return {"op": "or", "args": list(args)}


def _all(*args: dict[str, Any]) -> dict[str, Any]:
    return {"op": "and", "args": list(args)}


def _not(arg: dict[str, Any]) -> dict[str, Any]:
    return {"op": "not", "arg": arg}


HTN_DX = {"kind": "diagnosis", "codes": ["I10", "I11", "I12", "I13", "I15"], "text": ["高血压", "hypertension"]}
DM_DX = {"kind": "diagnosis", "codes": ["E10", "E11", "E12", "E13", "E14"], "text": ["糖尿病", "diabetes"]}
GRADE_3 = _any(_ind("SBP", ">=", 180), _ind("DBP", ">=", 110))
GRADE_2 = _any(_ind("SBP", ">=", 160), _ind("DBP", ">=", 100))
GRADE_1 = _any(_ind("SBP", ">=", 140), _ind("DBP", ">=", 90))


@dataclass(frozen=True)
class BuiltinRule:
    code: str
    name_zh: str
    name_en: str
    expression: dict[str, Any]
    source: str
    version: int = 1


BUILTIN_RULES: tuple[BuiltinRule, ...] = (
    # Office BP: hypertension needs raised readings on at least two days (the guideline's "non-same-day" rule,
    # approximated by two readings in a year) or a recorded diagnosis.
    BuiltinRule("hypertension", "高血压", "Hypertension", _any(
        HTN_DX,
        _ind("SBP", ">=", 140, mode="count", window=YEAR, min_count=2),
        _ind("DBP", ">=", 90, mode="count", window=YEAR, min_count=2),
    ), f"{SRC_BP}, 2018"),
    # Grades from the latest reading; when SBP and DBP fall in different grades the higher one applies.
    BuiltinRule("htn_grade_3", "3级高血压", "Hypertension grade 3", GRADE_3, f"{SRC_BP}, 2018"),
    BuiltinRule("htn_grade_2", "2级高血压", "Hypertension grade 2", _all(GRADE_2, _not(GRADE_3)), f"{SRC_BP}, 2018"),
    BuiltinRule("htn_grade_1", "1级高血压", "Hypertension grade 1", _all(GRADE_1, _not(GRADE_2)), f"{SRC_BP}, 2018"),
    BuiltinRule("high_normal_bp", "正常高值血压", "High-normal blood pressure", _all(
        _any(_between("SBP", 120, 140), _between("DBP", 80, 90)),
        _ind("SBP", "<", 140), _ind("DBP", "<", 90), _not(HTN_DX),
    ), f"{SRC_BP}, 2018"),
    # Diabetes: a diagnosis, or a diagnostic value confirmed by a second test (two FPG >= 7.0 or two HbA1c >= 6.5
    # within two years, or one of each).
    BuiltinRule("diabetes", "糖尿病", "Diabetes", _any(
        DM_DX,
        _ind("FPG", ">=", 7.0, mode="count", window=2 * YEAR, min_count=2),
        _ind("HBA1C", ">=", 6.5, mode="count", window=2 * YEAR, min_count=2),
        _all(_ind("FPG", ">=", 7.0, mode="any", window=2 * YEAR), _ind("HBA1C", ">=", 6.5, mode="any",
                                                                      window=2 * YEAR)),
    ), f"{SRC_DM}, 2020"),
    BuiltinRule("ifg", "空腹血糖受损", "Impaired fasting glucose",
                _all(_between("FPG", 6.1, 7.0), _not(DM_DX)), f"{SRC_DM}, 2020 (WHO 1999 IFG 6.1-<7.0)"),
    BuiltinRule("overweight", "超重", "Overweight", _between("BMI", 24, 28), f"{SRC_WT}, 2013"),
    BuiltinRule("obesity", "肥胖", "Obesity", _ind("BMI", ">=", 28), f"{SRC_WT}, 2013"),
    BuiltinRule("central_obesity", "中心型肥胖", "Central obesity", _any(
        _all({"kind": "sex", "value": "M"}, _ind("WAIST", ">=", 90)),
        _all({"kind": "sex", "value": "F"}, _ind("WAIST", ">=", 85)),
    ), f"{SRC_WT}, 2013"),
    BuiltinRule("tc_borderline_high", "总胆固醇边缘升高", "Total cholesterol borderline high",
                _between("TC", 5.2, 6.2), f"{SRC_LIP}, 2016"),
    BuiltinRule("tc_high", "高胆固醇血症", "Total cholesterol high", _ind("TC", ">=", 6.2), f"{SRC_LIP}, 2016"),
    BuiltinRule("ldl_borderline_high", "LDL-C边缘升高", "LDL-C borderline high",
                _between("LDL", 3.4, 4.1), f"{SRC_LIP}, 2016"),
    BuiltinRule("ldl_high", "LDL-C升高", "LDL-C high", _ind("LDL", ">=", 4.1), f"{SRC_LIP}, 2016"),
    BuiltinRule("tg_borderline_high", "甘油三酯边缘升高", "Triglycerides borderline high",
                _between("TG", 1.7, 2.3), f"{SRC_LIP}, 2016"),
    BuiltinRule("tg_high", "高甘油三酯血症", "Triglycerides high", _ind("TG", ">=", 2.3), f"{SRC_LIP}, 2016"),
    BuiltinRule("hdl_low", "低HDL-C血症", "HDL-C low", _ind("HDL", "<", 1.0), f"{SRC_LIP}, 2016"),
    BuiltinRule("dyslipidaemia", "血脂异常", "Dyslipidaemia", _any(
        _ind("TC", ">=", 6.2), _ind("LDL", ">=", 4.1), _ind("TG", ">=", 2.3), _ind("HDL", "<", 1.0),
    ), f"{SRC_LIP}, 2016"),
    # Current smoking: a structured status when the record has one, otherwise the text without a negation.
    BuiltinRule("smoker", "吸烟", "Smoker", _any(
        {"kind": "lifestyle", "aspect": "smoking", "key": "status", "values": ["current"]},
        _all({"kind": "lifestyle", "aspect": "smoking", "text_not": SMOKING_NEGATIONS},
             _not({"kind": "lifestyle", "aspect": "smoking", "key": "status", "values": ["former", "never"]})),
    ), SRC_SMOKE),
    BuiltinRule("high_cvd_risk", "心血管病高危", "High cardiovascular risk", _any(
        {"kind": "risk", "model": "pce", "levels": ["high"]},
        {"kind": "risk", "model": "framingham", "levels": ["high"]},
    ), SRC_CVD),
    BuiltinRule("detractor", "贬损者", "Detractor",
                {"kind": "satisfaction", "cmp": "<=", "value": 6, "window_days": YEAR}, SRC_NPS),
    BuiltinRule("lost_to_followup", "失访", "Lost to follow-up",
                {"kind": "days_since_visit", "cmp": ">", "value": YEAR}, SRC_LTFU),
)
BUILTIN_CODES = frozenset(r.code for r in BUILTIN_RULES)


def ensure_builtin_rules(session: Session, *, now: datetime | None = None) -> int:
    """Insert the built-in rules that are missing (code + version); returns how many were added. Idempotent."""
    now = now or clock.now()
    have = {(c, v) for c, v in session.execute(select(TagRule.code, TagRule.version)).all()}
    added = 0
    for r in BUILTIN_RULES:
        if (r.code, r.version) in have:
            continue
        # A newer built-in version retires the older one, so only one version of a rule is active.
        session.execute(update(TagRule).where(TagRule.code == r.code).values(active=False))
        session.add(TagRule(code=r.code, version=r.version, name_zh=r.name_zh, name_en=r.name_en,
                            expression=r.expression, source=r.source, active=True, created_at=now))
        added += 1
    session.flush()
    return added


# --- saving rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleInput:
    code: str
    name_zh: str
    name_en: str
    expression: dict[str, Any]
    source: str | None = None


def save_rule(session: Session, *, data: RuleInput, user_id: int | None, username: str | None,
              now: datetime | None = None) -> TagRule:
    """Validate, then save as the next version of the code (old versions stay for the tags they set)."""
    now = now or clock.now()
    code = data.code.strip()
    if not code or len(code) > 48 or not all(ch.isalnum() or ch == "_" for ch in code) or not code.isascii():
        raise UserError("care.rules.bad_code")
    if not data.name_zh.strip() or not data.name_en.strip():
        raise UserError("care.rules.name_required")
    rules.validate(data.expression, rules.load_catalogue(session))
    latest = session.scalar(select(func.max(TagRule.version)).where(TagRule.code == code))
    version = 1 if latest is None else latest + 1
    session.execute(update(TagRule).where(TagRule.code == code).values(active=False))
    row = TagRule(code=code, version=version, name_zh=data.name_zh.strip(), name_en=data.name_en.strip(),
                  expression=data.expression, source=(data.source or "").strip() or None, active=True,
                  created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, action="tag_rule.save", user_id=user_id, username=username, entity="tag_rule",
                 entity_id=row.id, detail={"code": code, "version": version}, at=now)
    return row


def set_rule_active(session: Session, *, rule_id: int, active: bool, user_id: int | None,
                    username: str | None) -> None:
    row = session.get(TagRule, rule_id)
    if row is None:
        raise UserError("care.rules.not_found")
    row.active = active
    audit.record(session, action="tag_rule.activate" if active else "tag_rule.deactivate", user_id=user_id,
                 username=username, entity="tag_rule", entity_id=rule_id, detail={"code": row.code})


# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    rules: int
    added: int
    ended: int


# Session-local scratch table (created on first use in each connection; never part of the schema).
_MATCH = Table("care_rule_match", MetaData(), Column("patient_id", BigInteger, primary_key=True))


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def apply_rules(session: Session, *, as_of: datetime, patient_ids: list[int] | None = None,
                refreshed: bool = False) -> ApplyResult:
    """Re-evaluate every active rule for all patients (or the given ones): opens and ends tags in bulk SQL.

    A patient who matches and has no open tag of that code gets one (since = as_of, rule id and version);
    an automatic tag whose patient no longer matches is ended (until = as_of). Manual tags are left alone.
    Idempotent: a second run with the same data changes nothing. refreshed=True: the caller has just refreshed
    observation_latest for these patients in this transaction.
    """
    catalogue = rules.load_catalogue(session)
    rules.tune_for_sets(session)
    if not refreshed:
        latest_values.refresh(session, patient_ids=patient_ids)
    use_table = latest_values.usable(session, as_of)
    active = session.scalars(select(TagRule).where(TagRule.active.is_(True)).order_by(TagRule.code)).all()
    scope = None if patient_ids is None else rules.patient_scope(session, patient_ids)
    history = rules.prefetch_history(session, [r.expression for r in active], as_of=as_of, scope=scope)
    pivot = (rules.prefetch_latest(session, [r.expression for r in active], catalogue=catalogue, scope=scope)
             if use_table else None)
    added = ended = 0
    pg = session.get_bind().dialect.name == "postgresql"
    # Each rule's matches are computed once into a temporary table, then tags are ended and opened against it.
    session.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_MATCH.name} (patient_id BIGINT PRIMARY KEY)"))
    for rule in active:
        # TRUNCATE empties a temporary table without a dead row per match (hundreds of thousands per rule).
        session.execute(text(f"TRUNCATE {_MATCH.name}") if pg else delete(_MATCH))
        matching = rules.matching_ids(rule.expression, as_of=as_of, catalogue=catalogue, latest_table=use_table,
                                      history=history, pivot=pivot, scope=scope)
        session.execute(insert(_MATCH).from_select(["patient_id"], matching))
        if pg:
            # A temporary table has no statistics: without them the planner guesses a few rows and picks nested
            # loops over what may be hundreds of thousands of matches.
            session.execute(text(f"ANALYZE {_MATCH.name}"))
        open_tag = and_(PatientTag.tag_code == rule.code, PatientTag.until.is_(None))
        still = exists().where(_MATCH.c.patient_id == PatientTag.patient_id)
        end = update(PatientTag).where(open_tag, PatientTag.rule_id.is_not(None), ~still).values(until=as_of)
        if scope is not None:
            end = end.where(PatientTag.patient_id.in_(scope))
        ended += _rowcount(session.execute(end.execution_options(synchronize_session=False)))
        has_open = exists().where(open_tag, PatientTag.patient_id == _MATCH.c.patient_id)
        rows = select(_MATCH.c.patient_id, literal(rule.code), literal(rule.id), literal(rule.version),
                      literal(as_of)).where(~has_open)
        result = session.execute(
            insert(PatientTag).from_select(["patient_id", "tag_code", "rule_id", "rule_version", "since"], rows)
        )
        added += _rowcount(result)
    session.execute(delete(_MATCH))
    # Tags of rules that were switched off are ended too: a retired rule no longer vouches for them.
    active_codes = select(TagRule.code).where(TagRule.active.is_(True))
    stale = update(PatientTag).where(PatientTag.until.is_(None), PatientTag.rule_id.is_not(None),
                                     PatientTag.tag_code.not_in(active_codes)).values(until=as_of)
    if scope is not None:
        stale = stale.where(PatientTag.patient_id.in_(scope))
    ended += _rowcount(session.execute(stale.execution_options(synchronize_session=False)))
    session.flush()
    return ApplyResult(len(active), added, ended)


# --- manual tags --------------------------------------------------------------------------------


def add_manual_tag(session: Session, *, patient_id: int, tag_code: str, user_id: int, username: str | None,
                   now: datetime | None = None) -> PatientTag:
    now = now or clock.now()
    code = tag_code.strip()
    if not code or len(code) > 48:
        raise UserError("care.tags.bad_code")
    if session.get(Patient, patient_id) is None:
        raise UserError("care.tags.no_patient")
    already = session.scalar(select(PatientTag.id).where(PatientTag.patient_id == patient_id,
                                                         PatientTag.tag_code == code, PatientTag.until.is_(None)))
    if already is not None:
        raise UserError("care.tags.already_open", code=code)
    tag = PatientTag(patient_id=patient_id, tag_code=code, rule_id=None, rule_version=None, since=now,
                     until=None, set_by=user_id)
    session.add(tag)
    session.flush()
    audit.record(session, action="tag.add", user_id=user_id, username=username, entity="patient_tag",
                 entity_id=tag.id, patient_id=patient_id, detail={"tag": code}, at=now)
    return tag


MANUAL_TAG_ROLES = frozenset({"nurse", "admin"})


def end_manual_tag(session: Session, *, tag_id: int, user: CurrentUser, now: datetime | None = None) -> None:
    """End a hand-set tag (until = now) with an audit row; only nurses and administrators may (checked here, not
    just by hiding the button)."""
    if user.role not in MANUAL_TAG_ROLES:
        raise UserError("care.tags.not_allowed")
    now = now or clock.now()
    tag = session.get(PatientTag, tag_id)
    if tag is None or tag.until is not None:
        raise UserError("care.tags.not_open")
    if tag.rule_id is not None:
        # An automatic tag would come back on the next run; change the rule instead.
        raise UserError("care.tags.automatic")
    tag.until = now
    audit.record(session, action="tag.end", user_id=user.id, username=user.username, entity="patient_tag",
                 entity_id=tag.id, patient_id=tag.patient_id, detail={"tag": tag.tag_code}, at=now)
