"""Versioned questionnaire templates, the built-in instruments (satisfaction, intake, PHQ-9, GAD-7) and scoring."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Questionnaire, QuestionnaireItem, SurveyResponse
from services import audit, clock
from services.errors import UserError

# Spelled as db/catalogue.py spells them for the built-in satisfaction survey.
QTYPES = ("single", "multi", "scale_0_10", "likert_5", "number", "date", "text")
KINDS = ("satisfaction", "intake", "screening", "custom")
SCALE_RANGES: dict[str, tuple[int, int]] = {"scale_0_10": (0, 10), "likert_5": (1, 5)}
MAX_TEXT = 2000


@dataclass(frozen=True)
class ItemSpec:
    item_code: str
    qtype: str
    text_zh: str
    text_en: str
    required: bool = False
    # Choice options: [{"value": 0, "zh": "...", "en": "..."}, ...]; values are what answers store.
    options: tuple[dict[str, Any], ...] | None = None
    top_box: tuple[float, ...] | None = None
    is_nps: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_code": self.item_code, "qtype": self.qtype, "text_zh": self.text_zh, "text_en": self.text_en,
            "required": self.required, "options": list(self.options) if self.options is not None else None,
            "top_box": list(self.top_box) if self.top_box is not None else None, "is_nps": self.is_nps,
        }


@dataclass(frozen=True)
class TemplateSpec:
    code: str
    kind: str
    title_zh: str
    title_en: str
    items: tuple[ItemSpec, ...]
    # {"method": "sum", "items": [...], "bands": [{"min":, "max":, "key":}], "source": "..."} and/or
    # {"recovery": {"item": "overall", "below": 5, "sla_hours": 48}}.
    score_rule: dict[str, Any] | None = field(default=None)


# --- validation ------------------------------------------------------------------------------------


def validate_spec(spec: TemplateSpec) -> None:
    """Refuse a template that could not be filled or scored; raises UserError with the first problem."""
    if not spec.code.strip() or len(spec.code) > 48:
        raise UserError("questionnaire.bad_code")
    if spec.kind not in KINDS:
        raise UserError("questionnaire.bad_kind", kind=spec.kind)
    if not spec.title_zh.strip() or not spec.title_en.strip():
        raise UserError("questionnaire.title_required")
    if not spec.items:
        raise UserError("questionnaire.no_items")
    seen: set[str] = set()
    for item in spec.items:
        code = item.item_code.strip()
        if not code or len(code) > 48:
            raise UserError("questionnaire.bad_item_code", item=item.item_code)
        if code in seen:
            raise UserError("questionnaire.duplicate_item", item=code)
        seen.add(code)
        if item.qtype not in QTYPES:
            raise UserError("questionnaire.bad_qtype", item=code, qtype=item.qtype)
        if not item.text_zh.strip() or not item.text_en.strip():
            raise UserError("questionnaire.item_text_required", item=code)
        if item.qtype in ("single", "multi") and not item.options:
            raise UserError("questionnaire.options_required", item=code)
        if item.is_nps and item.qtype != "scale_0_10":
            raise UserError("questionnaire.nps_needs_scale10", item=code)
        if item.top_box is not None and item.qtype in SCALE_RANGES:
            low, high = SCALE_RANGES[item.qtype]
            if any(not low <= v <= high for v in item.top_box):
                raise UserError("questionnaire.bad_top_box", item=code)
    if sum(1 for i in spec.items if i.is_nps) > 1:
        raise UserError("questionnaire.one_nps_item")
    rule = spec.score_rule or {}
    for code in rule.get("items", []):
        if code not in seen:
            raise UserError("questionnaire.rule_unknown_item", item=code)
    recovery = rule.get("recovery")
    if recovery and recovery.get("item") and recovery["item"] not in seen:
        raise UserError("questionnaire.rule_unknown_item", item=recovery["item"])


# --- reading ---------------------------------------------------------------------------------------


def latest(session: Session, code: str) -> Questionnaire | None:
    return session.scalars(
        select(Questionnaire).where(Questionnaire.code == code).order_by(Questionnaire.version.desc()).limit(1)
    ).first()


def active_questionnaires(session: Session) -> list[Questionnaire]:
    """The newest version of every template that is not retired, by code."""
    newest = (
        select(Questionnaire.code, func.max(Questionnaire.version).label("v"))
        .group_by(Questionnaire.code)
        .subquery()
    )
    return list(session.scalars(
        select(Questionnaire)
        .join(newest, (newest.c.code == Questionnaire.code) & (newest.c.v == Questionnaire.version))
        .where(Questionnaire.status == "active")
        .order_by(Questionnaire.code)
    ))


def items_of(session: Session, questionnaire_id: int) -> list[QuestionnaireItem]:
    return list(session.scalars(
        select(QuestionnaireItem)
        .where(QuestionnaireItem.questionnaire_id == questionnaire_id)
        .order_by(QuestionnaireItem.position, QuestionnaireItem.id)
    ))


def spec_of(session: Session, q: Questionnaire) -> TemplateSpec:
    items = tuple(
        ItemSpec(i.item_code, i.qtype, i.text_zh, i.text_en, i.required,
                 tuple(i.options) if i.options is not None else None,
                 tuple(float(v) for v in i.top_box) if i.top_box is not None else None, i.is_nps)
        for i in items_of(session, q.id)
    )
    return TemplateSpec(q.code, q.kind, q.title_zh, q.title_en, items, q.score_rule)


def load(session: Session, code: str) -> tuple[Questionnaire, TemplateSpec, list[QuestionnaireItem]]:
    """The newest version of a template with its spec and items, for the builder and the fill page."""
    q = latest(session, code)
    if q is None:
        raise UserError("questionnaire.not_found", code=code)
    return q, spec_of(session, q), items_of(session, q.id)


def has_responses(session: Session, questionnaire_id: int) -> bool:
    return session.scalar(
        select(SurveyResponse.id).where(SurveyResponse.questionnaire_id == questionnaire_id).limit(1)
    ) is not None


# --- writing ---------------------------------------------------------------------------------------


def _normalised(spec: TemplateSpec) -> str:
    body = {"kind": spec.kind, "title_zh": spec.title_zh, "title_en": spec.title_en,
            "score_rule": spec.score_rule, "items": [i.as_dict() for i in spec.items]}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)


def _add_items(session: Session, q: Questionnaire, spec: TemplateSpec) -> None:
    for pos, item in enumerate(spec.items, start=1):
        d = item.as_dict()
        session.add(QuestionnaireItem(questionnaire_id=q.id, position=pos, **d))
    session.flush()


@dataclass(frozen=True)
class SaveOutcome:
    questionnaire: Questionnaire
    action: str  # "created", "new_version", "edited", "unchanged"


def save_template(
    session: Session, spec: TemplateSpec, *, actor_id: int | None = None, actor: str | None = None,
    now: datetime | None = None,
) -> SaveOutcome:
    """Create a template, or change it: in place while nobody has answered it, otherwise as version + 1.

    Old answers keep pointing at the version they answered, so their meaning never changes.
    """
    validate_spec(spec)
    at = now or clock.now()
    current = latest(session, spec.code)
    if current is None:
        q = Questionnaire(code=spec.code, version=1, kind=spec.kind, title_zh=spec.title_zh,
                          title_en=spec.title_en, status="active", score_rule=spec.score_rule, created_at=at)
        session.add(q)
        session.flush()
        _add_items(session, q, spec)
        action = "created"
    elif _normalised(spec_of(session, current)) == _normalised(spec) and current.status == "active":
        return SaveOutcome(current, "unchanged")
    elif has_responses(session, current.id):
        current.status = "retired"
        q = Questionnaire(code=spec.code, version=current.version + 1, kind=spec.kind, title_zh=spec.title_zh,
                          title_en=spec.title_en, status="active", score_rule=spec.score_rule, created_at=at)
        session.add(q)
        session.flush()
        _add_items(session, q, spec)
        action = "new_version"
    else:
        q = current
        for old in items_of(session, q.id):
            session.delete(old)
        session.flush()
        q.kind, q.title_zh, q.title_en, q.score_rule, q.status = (
            spec.kind, spec.title_zh, spec.title_en, spec.score_rule, "active")
        _add_items(session, q, spec)
        action = "edited"
    audit.record(session, action=f"questionnaire.{action}", user_id=actor_id, username=actor,
                 entity="questionnaire", entity_id=q.id, detail={"code": q.code, "version": q.version}, at=at)
    return SaveOutcome(q, action)


def retire(session: Session, code: str, *, actor_id: int | None = None, actor: str | None = None) -> None:
    q = latest(session, code)
    if q is None:
        raise UserError("questionnaire.not_found", code=code)
    q.status = "retired"
    audit.record(session, action="questionnaire.retired", user_id=actor_id, username=actor,
                 entity="questionnaire", entity_id=q.id, detail={"code": code, "version": q.version})


# --- the builder's text forms of options and top box ----------------------------------------------


def options_to_text(options: Sequence[Any] | None) -> str:
    """[{"value": 1, "en": "Yes", "zh": "是"}] -> "1=Yes/是"; plain values (a 0-10 scale) -> "0; 1; ..."."""
    parts = []
    for o in options or ():
        if isinstance(o, dict):
            parts.append(f"{o.get('value')}={o.get('en', '')}/{o.get('zh', '')}")
        else:
            parts.append(str(o))
    return "; ".join(parts)


def _value(text: str) -> Any:
    t = text.strip()
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    if re.fullmatch(r"-?\d+\.\d+", t):
        return float(t)
    return t


def options_from_text(text: str | None, *, item: str = "") -> tuple[Any, ...] | None:
    """The inverse of options_to_text; UserError when a part has no value."""
    if text is None or not str(text).strip():
        return None
    out: list[Any] = []
    for part in str(text).split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            out.append(_value(part))
            continue
        value, labels = part.split("=", 1)
        if not value.strip():
            raise UserError("questionnaire.bad_options", item=item)
        en, _, zh = labels.partition("/")
        out.append({"value": _value(value), "en": en.strip() or value.strip(), "zh": zh.strip() or en.strip()})
    return tuple(out) or None


def top_box_from_text(text: str | None, *, item: str = "") -> tuple[float, ...] | None:
    if text is None or not str(text).strip():
        return None
    try:
        return tuple(float(v) for v in str(text).replace("，", ",").split(",") if v.strip())
    except ValueError:
        raise UserError("questionnaire.bad_top_box", item=item) from None


# --- scoring ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    total: float
    band: str | None
    source: str | None


def score(rule: Mapping[str, Any] | None, answers: Mapping[str, float]) -> Score | None:
    """The template's score: "sum" with severity bands (PHQ-9, GAD-7; every item needed) or "mean" of the
    answered items (satisfaction; skipped items left out). None when there is no score to give."""
    if not rule or rule.get("method") not in ("sum", "mean"):
        return None
    codes: Sequence[str] = rule.get("items", [])
    if rule["method"] == "mean":
        answered = [float(answers[c]) for c in codes if answers.get(c) is not None]
        return Score(sum(answered) / len(answered), None, rule.get("source")) if answered else None
    if any(answers.get(c) is None for c in codes):
        return None
    total = float(sum(float(answers[c]) for c in codes))
    return Score(total, band_of(rule, total), rule.get("source"))


def band_of(rule: Mapping[str, Any] | None, total: float | None) -> str | None:
    if not rule or total is None:
        return None
    for b in rule.get("bands", []):
        if b["min"] <= total <= b["max"]:
            return str(b["key"])
    return None


# --- answer validation -----------------------------------------------------------------------------


def coerce_answer(item: QuestionnaireItem, raw: Any) -> tuple[float | None, str | None] | None:
    """(value_num, value_text) for one answer, None when skipped; UserError when the answer does not fit the item."""
    if raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, list | tuple) and not raw):
        return None
    code = item.item_code
    if item.qtype in SCALE_RANGES:
        low, high = SCALE_RANGES[item.qtype]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise UserError("survey.not_a_number", item=code, value=str(raw)) from None
        if value != int(value) or not low <= value <= high:
            raise UserError("survey.out_of_range", item=code, value=str(raw), low=low, high=high)
        return value, None
    if item.qtype == "number":
        try:
            return float(raw), None
        except (TypeError, ValueError):
            raise UserError("survey.not_a_number", item=code, value=str(raw)) from None
    if item.qtype == "date":
        if isinstance(raw, date):
            return None, raw.isoformat()
        try:
            return None, date.fromisoformat(str(raw).strip()).isoformat()
        except ValueError:
            raise UserError("survey.not_a_date", item=code, value=str(raw)) from None
    if item.qtype == "text":
        text = str(raw).strip()
        if len(text) > MAX_TEXT:
            raise UserError("survey.text_too_long", item=code, limit=MAX_TEXT)
        return None, text
    allowed = [o["value"] for o in (item.options or [])]
    if item.qtype == "single":
        match = _match_option(allowed, raw)
        if match is None:
            raise UserError("survey.not_an_option", item=code, value=str(raw))
        return (float(match), None) if isinstance(match, int | float) else (None, str(match))
    # multi
    chosen = list(raw) if isinstance(raw, list | tuple | set) else [raw]
    matched = []
    for c in chosen:
        m = _match_option(allowed, c)
        if m is None:
            raise UserError("survey.not_an_option", item=code, value=str(c))
        matched.append(m)
    return None, json.dumps(matched, ensure_ascii=False)


def _match_option(allowed: list[Any], raw: Any) -> Any:
    for a in allowed:
        if a == raw or str(a) == str(raw).strip():
            return a
    return None


# --- built-in instruments --------------------------------------------------------------------------

_FREQ = (  # PHQ-9 / GAD-7 answer scale: "over the last 2 weeks, how often ..."
    {"value": 0, "en": "Not at all", "zh": "完全不会"},
    {"value": 1, "en": "Several days", "zh": "好几天"},
    {"value": 2, "en": "More than half the days", "zh": "一半以上的天数"},
    {"value": 3, "en": "Nearly every day", "zh": "几乎每天"},
)

PHQ9_ITEMS = (
    ("Little interest or pleasure in doing things", "做事时提不起劲或没有兴趣"),
    ("Feeling down, depressed, or hopeless", "感到心情低落、沮丧或绝望"),
    ("Trouble falling or staying asleep, or sleeping too much", "入睡困难、睡不安稳或睡眠过多"),
    ("Feeling tired or having little energy", "感觉疲倦或没有活力"),
    ("Poor appetite or overeating", "食欲不振或吃太多"),
    ("Feeling bad about yourself — or that you are a failure or have let yourself or your family down",
     "觉得自己很糟，或觉得自己很失败，或让自己或家人失望"),
    ("Trouble concentrating on things, such as reading the newspaper or watching television",
     "对事物专注有困难，例如阅读报纸或看电视时"),
    ("Moving or speaking so slowly that other people could have noticed; or the opposite — being so fidgety "
     "or restless that you have been moving around a lot more than usual",
     "动作或说话速度缓慢到别人已经觉察，或正好相反，烦躁或坐立不安、动来动去的情况更胜于平常"),
    ("Thoughts that you would be better off dead or of hurting yourself in some way",
     "有不如死掉或用某种方式伤害自己的念头"),
)
GAD7_ITEMS = (
    ("Feeling nervous, anxious or on edge", "感觉紧张、焦虑或急切"),
    ("Not being able to stop or control worrying", "不能够停止或控制担忧"),
    ("Worrying too much about different things", "对各种各样的事情担忧过多"),
    ("Trouble relaxing", "很难放松下来"),
    ("Being so restless that it is hard to sit still", "由于不安而无法静坐"),
    ("Becoming easily annoyed or irritable", "变得容易烦恼或急躁"),
    ("Feeling afraid as if something awful might happen", "感到似乎将有可怕的事情发生而害怕"),
)

# Kroenke, Spitzer & Williams 2001 (J Gen Intern Med 16:606-613).
PHQ9_BANDS = (
    {"min": 0, "max": 4, "key": "minimal"},
    {"min": 5, "max": 9, "key": "mild"},
    {"min": 10, "max": 14, "key": "moderate"},
    {"min": 15, "max": 19, "key": "moderately_severe"},
    {"min": 20, "max": 27, "key": "severe"},
)
# Spitzer, Kroenke, Williams & Löwe 2006 (Arch Intern Med 166:1092-1097).
GAD7_BANDS = (
    {"min": 0, "max": 4, "key": "minimal"},
    {"min": 5, "max": 9, "key": "mild"},
    {"min": 10, "max": 14, "key": "moderate"},
    {"min": 15, "max": 21, "key": "severe"},
)


def _screening(code: str, title_en: str, title_zh: str, texts: Sequence[tuple[str, str]],
               bands: Sequence[dict[str, Any]], source: str) -> TemplateSpec:
    items = tuple(
        ItemSpec(f"{code}_{n}", "single", zh, en, required=True, options=_FREQ)
        for n, (en, zh) in enumerate(texts, start=1)
    )
    rule = {"method": "sum", "items": [i.item_code for i in items], "bands": list(bands), "source": source,
            "version": "1"}
    return TemplateSpec(code, "screening", title_zh, title_en, items, rule)


PHQ9 = _screening("phq9", "PHQ-9 depression screening (last 2 weeks)", "PHQ-9 抑郁症筛查量表（过去两周）",
                  PHQ9_ITEMS, PHQ9_BANDS, "Kroenke K, Spitzer RL, Williams JB. J Gen Intern Med 2001;16:606-13")
GAD7 = _screening("gad7", "GAD-7 anxiety screening (last 2 weeks)", "GAD-7 焦虑症筛查量表（过去两周）",
                  GAD7_ITEMS, GAD7_BANDS, "Spitzer RL, Kroenke K, Williams JB, Löwe B. Arch Intern Med 2006;166:1092-7")

_YES_NO = ({"value": "yes", "en": "Yes", "zh": "是"}, {"value": "no", "en": "No", "zh": "否"})
INTAKE = TemplateSpec(
    "intake", "intake", "诊前问诊表", "Pre-consultation intake form",
    (
        ItemSpec("chief_complaint", "text", "主诉：这次就诊最主要的不适是什么？持续多久？",
                 "Chief complaint: what brings you in today, and for how long?", required=True),
        ItemSpec("symptoms", "multi", "目前有哪些症状？", "Which symptoms do you have now?", options=(
            {"value": "fever", "en": "Fever", "zh": "发热"},
            {"value": "cough", "en": "Cough", "zh": "咳嗽"},
            {"value": "chest_pain", "en": "Chest pain", "zh": "胸痛"},
            {"value": "palpitations", "en": "Palpitations", "zh": "心悸"},
            {"value": "dizziness", "en": "Dizziness", "zh": "头晕"},
            {"value": "headache", "en": "Headache", "zh": "头痛"},
            {"value": "shortness_of_breath", "en": "Shortness of breath", "zh": "气短"},
            {"value": "abdominal_pain", "en": "Abdominal pain", "zh": "腹痛"},
            {"value": "fatigue", "en": "Fatigue", "zh": "乏力"},
            {"value": "none", "en": "None of these", "zh": "以上都没有"},
        )),
        ItemSpec("onset_date", "date", "症状开始日期", "When did it start?"),
        ItemSpec("pain_score", "scale_0_10", "疼痛程度（0 无痛 – 10 最痛）", "Pain (0 none - 10 worst)"),
        ItemSpec("history", "text", "既往病史（高血压、糖尿病、手术等）",
                 "Past medical history (hypertension, diabetes, operations ...)"),
        ItemSpec("medications", "text", "目前服用的药物及剂量", "Current medications and doses"),
        ItemSpec("allergies", "single", "有无药物或食物过敏？", "Any drug or food allergies?", required=True,
                 options=_YES_NO),
        ItemSpec("allergy_detail", "text", "过敏物质及反应", "Allergens and reactions"),
        ItemSpec("smoking", "single", "吸烟情况", "Smoking", options=(
            {"value": "never", "en": "Never", "zh": "从不"},
            {"value": "former", "en": "Former", "zh": "已戒烟"},
            {"value": "current", "en": "Current", "zh": "目前吸烟"},
        )),
        ItemSpec("alcohol", "single", "饮酒情况", "Alcohol", options=(
            {"value": "none", "en": "None", "zh": "不饮酒"},
            {"value": "occasional", "en": "Occasional", "zh": "偶尔"},
            {"value": "regular", "en": "Regular", "zh": "经常"},
        )),
        ItemSpec("exercise_days", "number", "每周运动天数", "Days of exercise per week"),
    ),
)

BUILTINS = (INTAKE, PHQ9, GAD7)


def ensure_builtin_questionnaires(session: Session, *, now: datetime | None = None) -> list[Questionnaire]:
    """The post-visit satisfaction survey (from db/catalogue.py), the intake form, PHQ-9 and GAD-7.

    Missing ones are created; an existing template (any version) is left as it is: idempotent.
    """
    from db.catalogue import ensure_questionnaires

    at = now or clock.now()
    ensure_questionnaires(session)
    out = []
    for spec in BUILTINS:
        q = latest(session, spec.code)
        if q is None:
            q = save_template(session, spec, actor="system", now=at).questionnaire
        out.append(q)
    sat = latest(session, "satisfaction")
    if sat is not None:
        out.insert(0, sat)
    return out
