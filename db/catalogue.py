"""Reference data as data: indicator catalogue, guideline bands, departments, the built-in questionnaire."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Department, GuidelineBand, Indicator, Questionnaire, QuestionnaireItem

# Bumped whenever a value below changes, so a deployment can tell which catalogue it runs.
CATALOGUE_VERSION = "2026.1"

# Reference intervals are typical adult Chinese laboratory intervals (the WS/T 404 series where one exists);
# a site should replace them with its own laboratory's. Plausible ranges are not clinical: they reject
# input that cannot be a human measurement (a typo, a wrong unit) before it reaches a chart.
REFERENCE_SOURCE = (
    "Typical adult laboratory reference intervals (WS/T 404 series); confirm with the site laboratory"
)


@dataclass(frozen=True)
class IndicatorDef:
    code: str
    name_zh: str
    name_en: str
    unit: str
    # The first code is the one Careloop writes itself (the variant reported in the canonical unit).
    loinc_codes: tuple[str, ...]
    ref_low: float | None
    ref_high: float | None
    plausible_low: float
    plausible_high: float
    decimals: int
    position: int


@dataclass(frozen=True)
class BandDef:
    """One band of a guideline; low is inclusive and high exclusive, None means unbounded."""

    band: str
    low: float | None
    high: float | None
    abnormal: bool
    sex: str | None = None


@dataclass(frozen=True)
class Guideline:
    source: str
    version: str
    bands: dict[str, tuple[BandDef, ...]] = field(default_factory=dict)


INDICATORS: tuple[IndicatorDef, ...] = (
    IndicatorDef("SBP", "收缩压", "Systolic blood pressure", "mmHg", ("8480-6",),
                 90, 139, 50, 300, 0, 10),
    IndicatorDef("DBP", "舒张压", "Diastolic blood pressure", "mmHg", ("8462-4",),
                 60, 89, 20, 200, 0, 20),
    IndicatorDef("HR", "心率", "Heart rate", "bpm", ("8867-4",),
                 60, 100, 20, 250, 0, 30),
    IndicatorDef("FPG", "空腹血糖", "Fasting plasma glucose", "mmol/L",
                 ("14749-6", "2345-7", "2339-0", "15074-8", "1558-6"),
                 3.9, 6.1, 1.0, 40.0, 1, 40),
    IndicatorDef("HBA1C", "糖化血红蛋白", "Haemoglobin A1c", "%", ("4548-4", "17856-6"),
                 4.0, 6.0, 3.0, 20.0, 1, 50),
    IndicatorDef("TC", "总胆固醇", "Total cholesterol", "mmol/L", ("14647-2", "2093-3", "35200-5"),
                 None, 5.2, 1.0, 20.0, 2, 60),
    IndicatorDef("LDL", "低密度脂蛋白胆固醇", "LDL cholesterol", "mmol/L",
                 ("22748-8", "13457-7", "18262-6", "2089-1"),
                 None, 3.4, 0.2, 15.0, 2, 70),
    IndicatorDef("HDL", "高密度脂蛋白胆固醇", "HDL cholesterol", "mmol/L", ("14646-4", "2085-9"),
                 1.0, None, 0.1, 5.0, 2, 80),
    IndicatorDef("TG", "甘油三酯", "Triglycerides", "mmol/L", ("14927-8", "2571-8"),
                 None, 1.7, 0.1, 50.0, 2, 90),
    IndicatorDef("UA", "尿酸", "Uric acid", "µmol/L", ("14933-6", "3084-1"),
                 150, 420, 30, 1500, 0, 100),
    IndicatorDef("ALT", "丙氨酸氨基转移酶", "Alanine aminotransferase", "U/L", ("1742-6",),
                 7, 50, 1, 5000, 0, 110),
    IndicatorDef("CREA", "肌酐", "Creatinine", "µmol/L", ("14682-9", "2160-0"),
                 41, 97, 10, 3000, 0, 120),
    IndicatorDef("HEIGHT", "身高", "Height", "cm", ("8302-2",),
                 None, None, 100, 230, 1, 130),
    IndicatorDef("WEIGHT", "体重", "Body weight", "kg", ("29463-7", "3141-9"),
                 None, None, 20, 300, 1, 140),
    IndicatorDef("BMI", "体重指数", "Body mass index", "kg/m2", ("39156-5",),
                 18.5, 23.9, 10, 80, 1, 150),
    IndicatorDef("WAIST", "腰围", "Waist circumference", "cm", ("8280-0", "56086-2"),
                 None, None, 40, 200, 1, 160),
)

INDICATOR_CODES: tuple[str, ...] = tuple(i.code for i in INDICATORS)

GUIDELINES: tuple[Guideline, ...] = (
    Guideline(
        "中国高血压防治指南（2018年修订版） / 2018 Chinese Guidelines for the Management of Hypertension",
        "2018",
        {
            # Office BP without medication; when SBP and DBP fall in different grades the higher one applies.
            "SBP": (
                BandDef("normal", None, 120, False),
                BandDef("high_normal", 120, 140, False),
                BandDef("grade_1", 140, 160, True),
                BandDef("grade_2", 160, 180, True),
                BandDef("grade_3", 180, None, True),
            ),
            "DBP": (
                BandDef("normal", None, 80, False),
                BandDef("high_normal", 80, 90, False),
                BandDef("grade_1", 90, 100, True),
                BandDef("grade_2", 100, 110, True),
                BandDef("grade_3", 110, None, True),
            ),
        },
    ),
    Guideline(
        "中国2型糖尿病防治指南（2020年版） / Guideline for the prevention and treatment of type 2 diabetes"
        " mellitus in China (2020 edition)",
        "2020",
        {
            # WHO 1999 fasting categories as adopted by the Chinese guideline (IFG 6.1 to <7.0).
            "FPG": (
                BandDef("normal", None, 6.1, False),
                BandDef("ifg", 6.1, 7.0, True),
                BandDef("diabetes", 7.0, None, True),
            ),
            # The 2020 edition added HbA1c >= 6.5 % (standardised assay) as a diagnostic criterion.
            "HBA1C": (
                BandDef("normal", None, 6.5, False),
                BandDef("diabetes", 6.5, None, True),
            ),
        },
    ),
    Guideline(
        "WS/T 428-2013 成人体重判定 / Criteria of weight for adults",
        "2013",
        {
            "BMI": (
                BandDef("underweight", None, 18.5, True),
                BandDef("normal", 18.5, 24, False),
                BandDef("overweight", 24, 28, True),
                BandDef("obese", 28, None, True),
            ),
            "WAIST": (
                BandDef("normal", None, 85, False, "M"),
                BandDef("pre_central_obesity", 85, 90, True, "M"),
                BandDef("central_obesity", 90, None, True, "M"),
                BandDef("normal", None, 80, False, "F"),
                BandDef("pre_central_obesity", 80, 85, True, "F"),
                BandDef("central_obesity", 85, None, True, "F"),
            ),
        },
    ),
    Guideline(
        "中国成人血脂异常防治指南（2016年修订版） / Chinese guidelines for the management of dyslipidemia"
        " in adults (2016)",
        "2016",
        {
            # The guideline's words: 理想 ideal, 合适 appropriate, 边缘升高 borderline high,
            # 升高 high, 降低 low.
            "TC": (
                BandDef("appropriate", None, 5.2, False),
                BandDef("borderline_high", 5.2, 6.2, True),
                BandDef("high", 6.2, None, True),
            ),
            "LDL": (
                BandDef("ideal", None, 2.6, False),
                BandDef("appropriate", 2.6, 3.4, False),
                BandDef("borderline_high", 3.4, 4.1, True),
                BandDef("high", 4.1, None, True),
            ),
            "HDL": (
                BandDef("low", None, 1.0, True),
                BandDef("normal", 1.0, None, False),
            ),
            "TG": (
                BandDef("appropriate", None, 1.7, False),
                BandDef("borderline_high", 1.7, 2.3, True),
                BandDef("high", 2.3, None, True),
            ),
        },
    ),
)

# Display names of the band codes above, for screens and reports that do not go through i18n/.
BAND_LABELS: dict[str, tuple[str, str]] = {
    "normal": ("正常", "Normal"),
    "high_normal": ("正常高值", "High-normal"),
    "grade_1": ("1级高血压", "Grade 1 hypertension"),
    "grade_2": ("2级高血压", "Grade 2 hypertension"),
    "grade_3": ("3级高血压", "Grade 3 hypertension"),
    "ifg": ("空腹血糖受损", "Impaired fasting glucose"),
    "diabetes": ("糖尿病", "Diabetes"),
    "underweight": ("体重过低", "Underweight"),
    "overweight": ("超重", "Overweight"),
    "obese": ("肥胖", "Obese"),
    "pre_central_obesity": ("中心型肥胖前期", "Pre-central obesity"),
    "central_obesity": ("中心型肥胖", "Central obesity"),
    "ideal": ("理想水平", "Ideal"),
    "appropriate": ("合适水平", "Appropriate"),
    "borderline_high": ("边缘升高", "Borderline high"),
    "high": ("升高", "High"),
    "low": ("降低", "Low"),
}


@dataclass(frozen=True)
class DepartmentDef:
    code: str
    name_zh: str
    name_en: str
    kind: str  # "hospital" or "checkup" (the health-check centre side)


DEPARTMENTS: tuple[DepartmentDef, ...] = (
    DepartmentDef("CARD", "心内科", "Cardiology", "hospital"),
    DepartmentDef("ENDO", "内分泌科", "Endocrinology", "hospital"),
    DepartmentDef("NEURO", "神经内科", "Neurology", "hospital"),
    DepartmentDef("RESP", "呼吸内科", "Respiratory medicine", "hospital"),
    DepartmentDef("GI", "消化内科", "Gastroenterology", "hospital"),
    DepartmentDef("ORTHO", "骨科", "Orthopaedics", "hospital"),
    DepartmentDef("GS", "普外科", "General surgery", "hospital"),
    DepartmentDef("OBGYN", "妇产科", "Obstetrics & gynaecology", "hospital"),
    DepartmentDef("PAED", "儿科", "Paediatrics", "hospital"),
    DepartmentDef("HCC", "体检中心", "Health-check centre", "checkup"),
    DepartmentDef("HMC", "健康管理中心", "Health management centre", "checkup"),
)


@dataclass(frozen=True)
class ItemDef:
    item_code: str
    qtype: str  # "scale_0_10", "likert_5" or "text"
    text_zh: str
    text_en: str
    required: bool
    options: list[Any] | None
    top_box: list[Any] | None
    is_nps: bool = False


@dataclass(frozen=True)
class QuestionnaireDef:
    code: str
    version: int
    kind: str
    title_zh: str
    title_en: str
    score_rule: dict[str, Any] | None
    items: tuple[ItemDef, ...]


_SCALE_0_10: list[Any] = list(range(11))
_LIKERT_5: list[Any] = [
    {"value": 1, "zh": "非常不满意", "en": "Very dissatisfied"},
    {"value": 2, "zh": "不满意", "en": "Dissatisfied"},
    {"value": 3, "zh": "一般", "en": "Neutral"},
    {"value": 4, "zh": "满意", "en": "Satisfied"},
    {"value": 5, "zh": "非常满意", "en": "Very satisfied"},
]
LIKERT_ITEMS: tuple[str, ...] = ("doctors", "nurses", "waiting", "environment", "explanation")

# Top box follows the HCAHPS method: the best answer of each scale (5 on 1-5, 9-10 on 0-10); skipped items
# leave the denominator. NPS follows Bain: promoters 9-10, detractors 0-6.
SATISFACTION = QuestionnaireDef(
    code="satisfaction",
    version=1,
    kind="satisfaction",
    title_zh="就医满意度调查",
    title_en="Post-visit satisfaction survey",
    score_rule={"method": "mean", "items": list(LIKERT_ITEMS), "scale": [1, 5]},
    items=(
        ItemDef("nps", "scale_0_10", "您有多大可能向亲友推荐我院？（0 = 完全不可能，10 = 非常可能）",
                "How likely are you to recommend our hospital to a friend or relative? (0 = not at all, "
                "10 = extremely likely)", True, _SCALE_0_10, [9, 10], is_nps=True),
        ItemDef("doctors", "likert_5", "您对医生的服务态度和诊疗是否满意？",
                "How satisfied were you with the doctors' care and manner?", False, _LIKERT_5, [5]),
        ItemDef("nurses", "likert_5", "您对护士的服务是否满意？",
                "How satisfied were you with the nurses' care?", False, _LIKERT_5, [5]),
        ItemDef("waiting", "likert_5", "您对挂号、候诊和检查的等候时间是否满意？",
                "How satisfied were you with waiting times for registration, consultation and tests?",
                False, _LIKERT_5, [5]),
        ItemDef("environment", "likert_5", "您对就医环境（整洁、安静、指引）是否满意？",
                "How satisfied were you with the environment (clean, quiet, easy to find your way)?",
                False, _LIKERT_5, [5]),
        ItemDef("explanation", "likert_5", "医护人员是否向您清楚解释了病情、检查和用药？",
                "Did the staff explain your condition, tests and medicines clearly?", False, _LIKERT_5, [5]),
        ItemDef("overall", "scale_0_10", "您对本次就医的总体评分（0-10分）",
                "Your overall rating of this visit (0-10)", False, _SCALE_0_10, [9, 10]),
        ItemDef("comment", "text", "您还有什么意见或建议？", "Any comments or suggestions?",
                False, None, None),
    ),
)

QUESTIONNAIRES: tuple[QuestionnaireDef, ...] = (SATISFACTION,)
# A fixed creation time keeps the built-in template rows identical on every database (and the demo
# deterministic); callers that create it for real pass `now`.
BUILTIN_CREATED_AT = datetime(2020, 1, 1)


def _indicator_values(d: IndicatorDef) -> dict[str, Any]:
    return {
        "name_zh": d.name_zh,
        "name_en": d.name_en,
        "unit": d.unit,
        "loinc_codes": list(d.loinc_codes),
        "ref_low": d.ref_low,
        "ref_high": d.ref_high,
        "plausible_low": d.plausible_low,
        "plausible_high": d.plausible_high,
        "decimals": d.decimals,
        "position": d.position,
    }


def _bands_by_indicator() -> dict[str, list[tuple[BandDef, Guideline]]]:
    out: dict[str, list[tuple[BandDef, Guideline]]] = {}
    for g in GUIDELINES:
        for code, bands in g.bands.items():
            out.setdefault(code, []).extend((b, g) for b in bands)
    return out


def _band_key(band: str, sex: str | None, low: float | None, high: float | None, abnormal: bool,
              source: str, version: str) -> tuple[Any, ...]:
    return (band, sex, low, high, abnormal, source, version)


def ensure_catalogue(session: Session) -> None:
    """Upsert indicators by code; replace an indicator's bands only when they differ from the catalogue."""
    existing = {i.code: i for i in session.scalars(select(Indicator))}
    bands = _bands_by_indicator()
    for d in INDICATORS:
        values = _indicator_values(d)
        ind = existing.get(d.code)
        if ind is None:
            ind = Indicator(code=d.code, **values)
            session.add(ind)
            session.flush()
        else:
            for k, v in values.items():
                if getattr(ind, k) != v:
                    setattr(ind, k, v)
        wanted = sorted(
            (_band_key(b.band, b.sex, b.low, b.high, b.abnormal, g.source, g.version)
             for b, g in bands.get(d.code, [])),
            key=repr,
        )
        current_rows = list(
            session.scalars(select(GuidelineBand).where(GuidelineBand.indicator_id == ind.id))
        )
        current = sorted(
            (_band_key(r.band, r.sex, r.low, r.high, r.abnormal, r.source, r.version) for r in current_rows),
            key=repr,
        )
        # Rewriting identical rows on every start-up would churn ids for nothing.
        if current == wanted:
            continue
        for r in current_rows:
            session.delete(r)
        for band, sex, low, high, abnormal, source, version in wanted:
            session.add(GuidelineBand(indicator_id=ind.id, band=band, sex=sex, low=low, high=high,
                                      abnormal=abnormal, source=source, version=version))
    session.flush()


def ensure_departments(session: Session) -> None:
    """Add missing departments; existing ones belong to the admin (renames and deactivation are kept)."""
    have = set(session.scalars(select(Department.code)))
    for d in DEPARTMENTS:
        if d.code not in have:
            session.add(
                Department(code=d.code, name_zh=d.name_zh, name_en=d.name_en, kind=d.kind, active=True)
            )
    session.flush()


def ensure_questionnaires(session: Session, *, now: datetime | None = None) -> None:
    """Create each built-in questionnaire once; an existing one is never edited (it may be in use)."""
    have = {(c, v) for c, v in session.execute(select(Questionnaire.code, Questionnaire.version))}
    for q in QUESTIONNAIRES:
        if (q.code, q.version) in have:
            continue
        row = Questionnaire(code=q.code, version=q.version, kind=q.kind, title_zh=q.title_zh,
                            title_en=q.title_en, status="active", score_rule=q.score_rule,
                            created_at=now or BUILTIN_CREATED_AT)
        session.add(row)
        session.flush()
        for pos, it in enumerate(q.items, start=1):
            session.add(QuestionnaireItem(
                questionnaire_id=row.id, item_code=it.item_code, position=pos, qtype=it.qtype,
                text_zh=it.text_zh, text_en=it.text_en, required=it.required, options=it.options,
                top_box=it.top_box, is_nps=it.is_nps,
            ))
    session.flush()


def ensure_reference_data(session: Session) -> None:
    """Everything a fresh database needs before the first patient: idempotent, safe on every start-up."""
    ensure_departments(session)
    ensure_catalogue(session)
    ensure_questionnaires(session)
