"""Health advice library: bilingual items linked to tags and risk levels, and which items apply to a patient and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AdviceItem, PatientTag, RiskAssessment
from services import audit, rules
from services.errors import UserError

CATEGORIES = ("diet", "exercise", "mental", "sleep", "smoking", "alcohol")

SRC_BP = "中国高血压防治指南（2018年修订版）"
SRC_DM = "中国2型糖尿病防治指南（2020年版）"
SRC_WT = "中国居民膳食指南（2022）; 体重管理指导原则（2024）"
SRC_LIP = "中国成人血脂异常防治指南（2016年修订版）"
SRC_GEN = "WHO guidelines on physical activity and sedentary behaviour (2020)"


@dataclass(frozen=True)
class AdviceInput:
    code: str
    category: str
    title_zh: str
    title_en: str
    body_zh: str
    body_en: str
    tags: tuple[str, ...] = ()
    # (model, level) pairs, for example ("pce", "high").
    risk: tuple[tuple[str, str], ...] = ()
    source: str | None = None
    active: bool = True

    def applies_to(self) -> dict[str, Any]:
        risk: dict[str, list[str]] = {}
        for model, level in self.risk:
            risk.setdefault(model, []).append(level)
        return {"tags": list(self.tags), "risk": risk}


BUILTIN_ADVICE: tuple[AdviceInput, ...] = (
    AdviceInput("salt_reduction", "diet", "减少钠盐摄入", "Cut down on salt",
                "每日食盐不超过5克，少吃腌制食品和酱料，烹调时使用限盐勺。",
                "Keep salt under 5 g a day: fewer pickled foods and sauces, and use a measuring spoon when cooking.",
                tags=("hypertension", "high_normal_bp", "htn_grade_1", "htn_grade_2", "htn_grade_3"), source=SRC_BP),
    AdviceInput("bp_exercise", "exercise", "规律有氧运动", "Regular aerobic exercise",
                "每周5-7天、每次30分钟中等强度有氧运动，如快走、骑车、游泳。",
                "Moderate aerobic exercise for 30 minutes on 5 to 7 days a week, such as brisk walking, cycling or "
                "swimming.", tags=("hypertension", "high_normal_bp", "overweight", "obesity"), source=SRC_BP),
    AdviceInput("glucose_diet", "diet", "控制碳水化合物和甜食", "Watch carbohydrates and sweets",
                "主食定量，粗细搭配，少喝含糖饮料，按时进餐。",
                "Keep staple portions steady, mix in whole grains, avoid sugary drinks and eat at regular times.",
                tags=("diabetes", "ifg"), risk=(("cdrs", "high"), ("findrisc", "high"), ("findrisc", "very_high")),
                source=SRC_DM),
    AdviceInput("weight_management", "diet", "控制体重", "Manage your weight",
                "控制总能量摄入，每餐七分饱，目标是6个月内体重下降5%-10%。",
                "Limit total energy intake and stop eating before you are full; aim to lose 5-10 % of body weight "
                "within six months.", tags=("overweight", "obesity", "central_obesity"), source=SRC_WT),
    AdviceInput("lipid_diet", "diet", "低脂饮食", "A low-fat diet",
                "减少动物油脂和油炸食品，每日烹调油不超过25克，多吃蔬菜、全谷物和鱼类。",
                "Less animal fat and fried food, no more than 25 g of cooking oil a day, more vegetables, whole grains "
                "and fish.", tags=("dyslipidaemia", "tc_high", "ldl_high", "tg_high", "tc_borderline_high",
                                   "ldl_borderline_high", "tg_borderline_high"), source=SRC_LIP),
    AdviceInput("quit_smoking", "smoking", "戒烟", "Stop smoking",
                "吸烟显著增加心血管病风险。可拨打戒烟热线或到戒烟门诊获得帮助。",
                "Smoking sharply raises cardiovascular risk. A quit line or a smoking-cessation clinic can help.",
                tags=("smoker",), risk=(("pce", "high"), ("framingham", "high")), source=SRC_BP),
    AdviceInput("limit_alcohol", "alcohol", "限制饮酒", "Limit alcohol",
                "最好不饮酒；如饮酒，男性每日酒精不超过25克，女性不超过15克。",
                "Better not to drink; if you do, no more than 25 g of alcohol a day for men and 15 g for women.",
                tags=("hypertension", "tg_high"), source=SRC_BP),
    AdviceInput("cvd_followup", "exercise", "心血管高危人群的生活方式", "Lifestyle at high cardiovascular risk",
                "遵医嘱控制血压、血脂和血糖，每周至少150分钟中等强度运动，定期复查。",
                "Keep blood pressure, lipids and glucose under control as prescribed, exercise at moderate intensity "
                "for at least 150 minutes a week and come back for regular checks.",
                tags=("high_cvd_risk",), risk=(("pce", "intermediate"), ("pce", "high"), ("framingham", "high")),
                source=SRC_GEN),
    AdviceInput("stress_sleep", "sleep", "睡眠与压力管理", "Sleep and stress",
                "保持规律作息，每晚睡眠7-8小时；焦虑或失眠持续两周以上请就医。",
                "Keep regular hours and sleep 7-8 hours a night; see a doctor if anxiety or insomnia lasts more than "
                "two weeks.", tags=("hypertension", "detractor"), source=SRC_BP),
    AdviceInput("mental_support", "mental", "心理支持", "Emotional support",
                "慢性病管理需要耐心，可与家人、病友或心理门诊交流，保持积极心态。",
                "Managing a long-term condition takes patience: talk with family, other patients or a psychology "
                "clinic.", tags=("diabetes", "hypertension"), source=SRC_DM),
)


def _validate(data: AdviceInput) -> None:
    code = data.code.strip()
    if not code or len(code) > 48 or not code.isascii() or not all(c.isalnum() or c == "_" for c in code):
        raise UserError("care.advice.bad_code")
    if data.category not in CATEGORIES:
        raise UserError("care.advice.bad_category")
    # Every item must exist in both languages: a patient never gets advice in a language they did not choose.
    for lang, title, body in (("zh_CN", data.title_zh, data.body_zh), ("en", data.title_en, data.body_en)):
        if not title.strip() or not body.strip():
            raise UserError("care.advice.translation_missing", language=lang)
    if not data.tags and not data.risk:
        raise UserError("care.advice.no_link")
    for model, level in data.risk:
        if model not in rules.RISK_MODELS or level not in rules.RISK_LEVELS:
            raise UserError("care.advice.bad_risk", model=model, level=level)
    for tag in data.tags:
        if not tag.strip() or len(tag) > 48:
            raise UserError("care.advice.bad_tag", tag=tag)


def save_item(session: Session, *, data: AdviceInput, user_id: int | None, username: str | None) -> AdviceItem:
    """Create or update an item by code after validating it; nothing is written when it is refused."""
    _validate(data)
    code = data.code.strip()
    item = session.scalars(select(AdviceItem).where(AdviceItem.code == code)).first()
    values = {"category": data.category, "title_zh": data.title_zh.strip(), "title_en": data.title_en.strip(),
              "body_zh": data.body_zh.strip(), "body_en": data.body_en.strip(), "applies_to": data.applies_to(),
              "source": (data.source or "").strip() or None, "active": data.active}
    if item is None:
        item = AdviceItem(code=code, **values)
        session.add(item)
    else:
        for k, v in values.items():
            setattr(item, k, v)
    session.flush()
    audit.record(session, action="advice.save", user_id=user_id, username=username, entity="advice_item",
                 entity_id=item.id, detail={"code": code})
    return item


def ensure_builtin_advice(session: Session) -> int:
    have = set(session.scalars(select(AdviceItem.code)))
    added = 0
    for data in BUILTIN_ADVICE:
        if data.code in have:
            continue
        _validate(data)
        session.add(AdviceItem(code=data.code, category=data.category, title_zh=data.title_zh,
                               title_en=data.title_en, body_zh=data.body_zh, body_en=data.body_en,
                               applies_to=data.applies_to(), source=data.source, active=True))
        added += 1
    session.flush()
    return added


@dataclass(frozen=True)
class Applicable:
    code: str
    category: str
    title: str
    body: str
    source: str | None
    # Why it applies: ("tag", "hypertension") or ("risk", "pce:high").
    reasons: list[tuple[str, str]] = field(default_factory=list)


def applicable_advice(session: Session, *, patient_id: int, lang: str, as_of: datetime | None = None
                      ) -> list[Applicable]:
    """The active items linked to one of the patient's open tags or latest risk levels, with the reasons."""
    tag_where = [PatientTag.patient_id == patient_id, PatientTag.until.is_(None)]
    if as_of is not None:
        tag_where.append(PatientTag.since <= as_of)
    open_tags = set(session.scalars(select(PatientTag.tag_code).where(*tag_where)))
    ranked = (
        select(RiskAssessment.model, RiskAssessment.level,
               func.row_number().over(partition_by=RiskAssessment.model,
                                      order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
               .label("rn"))
        .where(RiskAssessment.patient_id == patient_id)
        .subquery()
    )
    levels = {m: lv for m, lv in session.execute(select(ranked.c.model, ranked.c.level).where(ranked.c.rn == 1))
              if lv is not None}
    out: list[Applicable] = []
    for item in session.scalars(select(AdviceItem).where(AdviceItem.active.is_(True)).order_by(AdviceItem.code)):
        reasons: list[tuple[str, str]] = [("tag", t) for t in item.applies_to.get("tags", []) if t in open_tags]
        for model, wanted in (item.applies_to.get("risk") or {}).items():
            if levels.get(model) in wanted:
                reasons.append(("risk", f"{model}:{levels[model]}"))
        if reasons:
            zh = lang == "zh_CN"
            out.append(Applicable(item.code, item.category, item.title_zh if zh else item.title_en,
                                  item.body_zh if zh else item.body_en, item.source, reasons))
    return out
