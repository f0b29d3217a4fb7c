"""Deterministic, realistic Chinese demo data at any size: numpy-built chunks, bulk-loaded (COPY on Postgres).

Everything is drawn from numpy generators seeded by (seed, chunk number) and from the `today` argument, never
from the wall clock, so one (patients, seed, today) gives the same rows on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import logging
import math
import time as _time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from faker.providers.person.zh_CN import Provider as ZhPerson
from faker.providers.phone_number.zh_CN import Provider as ZhPhone
from pypinyin import Style, lazy_pinyin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    func,
    insert,
    select,
)

from db.base import Base
from db.catalogue import (
    DEPARTMENTS,
    GUIDELINES,
    INDICATORS,
    LIKERT_ITEMS,
    SATISFACTION,
    ensure_reference_data,
)
from db.engine import transaction
from db.models import (
    AuditLog,
    Department,
    FollowupPlan,
    FollowupPlanStep,
    Indicator,
    Patient,
    Questionnaire,
    QuestionnaireItem,
    User,
)

Arr = npt.NDArray[Any]
log = logging.getLogger(__name__)

DEFAULT_TODAY = date(2026, 1, 1)
CHUNK_PATIENTS = 20_000
SOURCE = "seed"
# Seeded staff cannot log in: "!" is not a bcrypt hash, so every password check fails.
UNUSABLE_PASSWORD_HASH = "!"
CARD_PREFIX = "CL"
CARD_DIGITS = 10

# Tables the bulk loader writes, parents before children (SQLite checks foreign keys row by row).
BULK_TABLES: tuple[str, ...] = (
    "patients",
    "consents",
    "health_history",
    "encounters",
    "exam_reports",
    "observations",
    "survey_invitations",
    "survey_responses",
    "survey_answers",
    "service_recovery_cases",
    "followup_tasks",
    "followup_records",
    "interventions",
)


class SeedError(RuntimeError):
    """The demo data cannot be loaded (for example the database already has patients)."""


# --- check digits ------------------------------------------------------------------------------


def _mod11_2(digits: Arr) -> Arr:
    """ISO 7064 MOD 11-2 check characters for rows of digits (shape (n, L)), as a bytes array."""
    length = digits.shape[1]
    weights = np.array([pow(2, length - i, 11) for i in range(length)], dtype=np.int64)
    check = (12 - (digits.astype(np.int64) @ weights) % 11) % 11
    chars: Arr = np.array(list(b"0123456789X"), dtype=np.uint8)[check].view("S1")
    return chars


def card_check_digit(body: str) -> str:
    """Check character of a card number body (the digits after the "CL" prefix): ISO 7064 MOD 11-2.

    The same system as the check digit of the resident ID number (GB 11643), so it catches every single
    wrong digit and every swap of two neighbours; the result is "0"-"9" or "X".
    """
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(f"card number body must be ASCII digits, got {body!r}")
    digits = np.frombuffer(body.encode(), dtype=np.uint8).reshape(1, -1) - ord("0")
    return bytes(_mod11_2(digits)[0]).decode()


def id_number_valid(value: str) -> bool:
    """Whether an 18-character resident ID number has a valid GB 11643 (ISO 7064 MOD 11-2) check digit."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    return card_check_digit(value[:17]) == value[17].upper()


def _digits(values: Arr, width: int) -> Arr:
    """Non-negative integers as a (n, width) matrix of decimal digits, most significant first."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits: Arr = (values.astype(np.int64)[:, None] // powers) % 10
    return digits


def _zfill(values: Arr, width: int) -> Arr:
    """Non-negative integers as zero-padded ASCII (bytes array); much faster than astype("S") + zfill."""
    chars = np.ascontiguousarray((_digits(values, width) + ord("0")).astype(np.uint8))
    out: Arr = chars.view(f"S{width}").ravel()
    return out


# --- reference pools (Chinese text as UTF-8 bytes so numpy can concatenate it) -----------------


def _b(items: Iterable[str]) -> Arr:
    return np.array([s.encode() for s in items])


def _text_slots(n: int, *pools: Iterable[str]) -> Arr:
    """n empty texts, wide enough for any entry of the pools: numpy would silently cut a longer one, perhaps
    in the middle of a UTF-8 character."""
    width = max(len(t.encode()) for pool in pools for t in pool)
    return np.zeros(n, dtype=f"S{width}")


def _cat(*parts: Arr | bytes) -> Arr:
    out: Arr | bytes = parts[0]
    for p in parts[1:]:
        out = np.strings.add(out, p)
    assert isinstance(out, np.ndarray)
    return out


# Surnames whose reading as a surname differs from pypinyin's default reading of the character.
_SURNAME_INITIALS = {"曾": "z", "覃": "q", "翟": "z", "单": "s", "解": "x", "缪": "m", "仇": "q", "查": "z",
                     "乐": "y", "区": "o", "朴": "p", "盖": "g", "柏": "b"}

# Hospital in Hangzhou: most patients live in its districts; the ID number's region is where they were
# registered, which for a fifth of them is elsewhere in Zhejiang or another province.
_HOME_DISTRICTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("浙江省杭州市上城区", ("解放路", "庆春路", "建国南路", "秋涛路", "望江路")),
    ("浙江省杭州市拱墅区", ("莫干山路", "湖墅南路", "丽水路", "上塘路", "体育场路")),
    ("浙江省杭州市西湖区", ("文三路", "天目山路", "古墩路", "文一西路", "西溪路", "教工路")),
    ("浙江省杭州市滨江区", ("江南大道", "滨盛路", "长河路", "西兴路")),
    ("浙江省杭州市萧山区", ("市心路", "人民路", "金城路", "山阴路")),
    ("浙江省杭州市余杭区", ("五常大道", "良睦路", "文一西路")),
    ("浙江省杭州市临平区", ("临平大道", "迎宾路", "南苑街")),
    ("浙江省杭州市钱塘区", ("学林街", "学正街", "文泽路", "福城路")),
)
_ELSEWHERE: tuple[tuple[str, str], ...] = (
    ("330203", "浙江省宁波市海曙区"), ("330302", "浙江省温州市鹿城区"), ("330402", "浙江省嘉兴市南湖区"),
    ("330502", "浙江省湖州市吴兴区"), ("330602", "浙江省绍兴市越城区"), ("330702", "浙江省金华市婺城区"),
    ("331002", "浙江省台州市椒江区"), ("330902", "浙江省舟山市定海区"), ("340104", "安徽省合肥市蜀山区"),
    ("341221", "安徽省阜阳市临泉县"), ("360102", "江西省南昌市东湖区"), ("320102", "江苏省南京市玄武区"),
    ("310115", "上海市浦东新区"), ("110105", "北京市朝阳区"), ("420106", "湖北省武汉市武昌区"),
    ("430104", "湖南省长沙市岳麓区"), ("510107", "四川省成都市武侯区"), ("410105", "河南省郑州市金水区"),
)
# Registration codes of Hangzhou districts as they were when most adults got their ID numbers.
_HANGZHOU_ID_CODES = ("330102", "330103", "330104", "330105", "330106", "330108", "330109", "330110")
_GENERIC_STREETS = ("人民路", "中山路", "解放路", "建设路", "新华路", "和平路", "文化路", "胜利路")
_COMPOUNDS = ("翠苑一区", "阳光花园", "金都华庭", "嘉绿苑", "朝晖六区", "和睦新村", "南都花园", "桂花园",
              "景芳三区", "采荷一区", "城市花园", "锦绣家园", "春江花月", "绿洲小区", "东方郡", "香樟苑")
# Faker's mobile prefixes plus the newer 16x/17x/19x ranges it lacks.
_PHONE_PREFIXES = tuple(sorted({int(p) for p in ZhPhone.phonenumber_prefixes}
                               | {166, 173, 176, 177, 178, 191, 198, 199}))

# Department codes whose patients come for check-ups rather than treatment.
CHECKUP_DEPTS = tuple(d.code for d in DEPARTMENTS if d.kind == "checkup")
# Share of patients whose home department it is. Paediatrics gets none: the demo cohort is 18-90.
_PRIMARY_DEPT_WEIGHT = {"HCC": 0.24, "HMC": 0.10, "CARD": 0.13, "ENDO": 0.11, "NEURO": 0.07, "RESP": 0.07,
                        "GI": 0.08, "ORTHO": 0.07, "GS": 0.06, "OBGYN": 0.07, "PAED": 0.0}
# Where check-up patients go when they see a doctor: abnormal results lead to these clinics.
_REFERRAL_DEPT_WEIGHT = {"CARD": 0.3, "ENDO": 0.3, "NEURO": 0.1, "RESP": 0.1, "GI": 0.1, "ORTHO": 0.1}

_OUTPATIENT_REASONS: dict[str, tuple[str, ...]] = {
    "CARD": ("高血压复诊", "胸闷胸痛", "心悸", "冠心病复查", "头晕"),
    "ENDO": ("糖尿病复诊", "血糖控制不佳", "甲状腺结节复查", "血脂异常复查", "口干多饮"),
    "NEURO": ("头痛", "头晕", "脑梗死后复查", "失眠", "肢体麻木"),
    "RESP": ("咳嗽咳痰", "慢阻肺复诊", "发热", "哮喘复诊", "肺结节复查"),
    "GI": ("胃痛", "腹胀", "反酸烧心", "胃镜复查", "腹泻"),
    "ORTHO": ("腰腿痛", "膝关节痛", "颈椎病", "骨质疏松复查", "外伤"),
    "GS": ("腹痛", "胆囊结石复查", "甲状腺结节", "腹股沟肿物", "术后复查"),
    "OBGYN": ("月经不调", "子宫肌瘤复查", "妇科检查", "盆腔炎复诊", "更年期症状"),
    "PAED": ("发热", "咳嗽"),
    "HCC": ("体检结果咨询",),
    "HMC": ("健康管理咨询",),
}
_INPATIENT_REASONS: dict[str, tuple[str, ...]] = {
    "CARD": ("不稳定型心绞痛", "急性心肌梗死", "慢性心力衰竭急性加重", "心房颤动"),
    "ENDO": ("2型糖尿病血糖控制不佳", "糖尿病酮症", "糖尿病周围神经病变"),
    "NEURO": ("脑梗死", "短暂性脑缺血发作", "眩晕症"),
    "RESP": ("社区获得性肺炎", "慢性阻塞性肺疾病急性加重", "支气管扩张伴感染"),
    "GI": ("上消化道出血", "急性胰腺炎", "结肠息肉"),
    "ORTHO": ("股骨颈骨折", "腰椎间盘突出症", "膝关节骨关节炎"),
    "GS": ("胆囊结石伴胆囊炎", "急性阑尾炎", "腹股沟疝"),
    "OBGYN": ("子宫肌瘤", "卵巢囊肿"),
    "PAED": ("肺炎",),
    "HCC": ("体检",),
    "HMC": ("体检",),
}
# (text, ICD-10, probability) of conditions typical of a department's patients.
_DEPT_CONDITIONS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "CARD": (("冠状动脉粥样硬化性心脏病", "I25.1", 0.40), ("心房颤动", "I48.9", 0.10)),
    "ENDO": (("甲状腺功能减退症", "E03.9", 0.15), ("甲状腺结节", "E04.1", 0.20)),
    "NEURO": (("脑梗死", "I63.9", 0.35), ("偏头痛", "G43.9", 0.10)),
    "RESP": (("慢性阻塞性肺疾病", "J44.9", 0.30), ("支气管哮喘", "J45.9", 0.15)),
    "GI": (("慢性胃炎", "K29.5", 0.40), ("胃食管反流病", "K21.9", 0.15)),
    "ORTHO": (("骨质疏松症", "M81.9", 0.30), ("腰椎间盘突出症", "M51.2", 0.25)),
    "GS": (("胆囊结石", "K80.2", 0.25), ("腹股沟疝", "K40.9", 0.15)),
    "OBGYN": (("子宫平滑肌瘤", "D25.9", 0.25), ("卵巢囊肿", "N83.2", 0.10)),
}
# (text, ATC) per treated condition; one is picked per patient.
_HTN_DRUGS = (("苯磺酸氨氯地平片 5mg 每日一次", "C08CA01"), ("缬沙坦胶囊 80mg 每日一次", "C09CA03"),
              ("厄贝沙坦片 150mg 每日一次", "C09CA04"), ("琥珀酸美托洛尔缓释片 47.5mg 每日一次", "C07AB02"),
              ("氢氯噻嗪片 12.5mg 每日一次", "C03AA03"))
_DM_DRUGS = (("盐酸二甲双胍片 0.5g 每日三次", "A10BA02"), ("阿卡波糖片 50mg 每日三次", "A10BF01"),
             ("格列美脲片 2mg 每日一次", "A10BB12"), ("达格列净片 10mg 每日一次", "A10BK01"),
             ("甘精胰岛素注射液 睡前皮下注射", "A10AE04"))
_STATINS = (("阿托伐他汀钙片 20mg 每晚一次", "C10AA05"), ("瑞舒伐他汀钙片 10mg 每晚一次", "C10AA07"))
_ALLERGIES = (("青霉素类", "皮疹"), ("头孢菌素类", "皮疹"), ("磺胺类药物", "皮疹、瘙痒"),
              ("阿司匹林", "哮喘"), ("碘造影剂", "荨麻疹"), ("海鲜", "荨麻疹"), ("花粉", "过敏性鼻炎"),
              ("尘螨", "过敏性鼻炎"))
_FAMILY_DISEASES = (("高血压", "I10"), ("2型糖尿病", "E11.9"), ("冠心病", "I25.1"), ("脑卒中", "I64"),
                    ("恶性肿瘤", "C80.9"))
_RELATIONS = ("father", "mother", "sibling")
_RELATION_ZH = ("父亲", "母亲", "兄弟姐妹")

_COMMENTS_POSITIVE = ("医生很耐心，解释得很清楚。", "护士态度很好，服务周到，谢谢！",
                      "体检流程顺畅，效率很高。", "环境干净整洁，指引清楚。",
                      "整体很满意，会推荐给家人朋友。", "医生专业负责，值得信赖。",
                      "预约很方便，基本不用排队。")
_COMMENTS_NEUTRAL = ("整体还可以，希望检查报告能出得更快一些。", "停车不太方便。", "挂号系统有时候比较卡。",
                     "希望周末也能多开几个窗口。", "检查费用可以再解释清楚一点。")
# Complaints by the Likert item the patient rated lowest, so comments agree with the scores.
_COMMENTS_NEGATIVE: dict[str, tuple[str, ...]] = {
    "doctors": ("医生问诊时间太短，没怎么问就开检查了。", "医生态度比较冷淡，问问题不太愿意回答。"),
    "nurses": ("护士抽血时态度不太好。", "病房呼叫铃响了很久没人来。"),
    "waiting": ("排队时间太长，挂号缴费取药都要排很久。", "预约了还是等了一个多小时才看上。",
                "检查要等好几天才能排上。"),
    "environment": ("卫生间不太干净。", "候诊区太吵太拥挤，座位不够。", "指示牌不清楚，找科室找了半天。"),
    "explanation": ("用药说明不清楚，回家后不知道怎么吃。", "检查结果没有人解释，只能自己上网查。"),
}
# Root causes in services/recovery.py's vocabulary, by the item the patient rated lowest.
_ROOT_CAUSES = {"doctors": "communication", "nurses": "attitude", "waiting": "waiting",
                "environment": "environment", "explanation": "communication"}
_RESOLUTIONS = ("已电话致歉并说明改进措施，患者表示理解。", "已反馈科室整改，并邀请患者复诊时优先安排。",
                "已协调专人解释检查结果，患者满意。", "已转相关部门处理，并回访告知处理结果。")

# Follow-up plans of the demo, in the terms services/followup.py automates (its triggers, its key format), so
# `run-automation` after a seed neither fails on a plan nor opens a second task for a seeded event. An
# existing plan of the same code is used as it is, with its own steps. post_discharge mirrors the built-in
# plan there.
# (code, name_zh, name_en, trigger, trigger_param, ((offset_days, method, script), ...))
_PLANS: tuple[tuple[str, str, str, str, str | None, tuple[tuple[int, str, str], ...]], ...] = (
    ("post_discharge", "出院后随访", "Post-discharge follow-up", "discharge", None,
     ((3, "phone", "询问出院后恢复情况、用药和复诊安排。"), (7, "phone", "了解症状和用药，提醒复诊。"),
      (30, "phone", "了解康复情况，提醒复查。"))),
    ("post_visit", "门诊后随访", "Post-visit follow-up", "encounter", "outpatient",
     ((7, "phone", "询问症状变化和用药情况。"),)),
    ("abnormal_result", "异常结果随访", "Abnormal result follow-up", "abnormal", None,
     ((14, "phone", "告知异常结果并建议专科就诊或复查。"),)),
)
_PLAN_NOTES: dict[str, tuple[str, ...]] = {
    "post_discharge": ("出院后恢复良好，按时服药，已告知复诊时间。", "伤口愈合良好，无发热。",
                       "诉偶有乏力，已嘱注意休息，如有不适及时就诊。"),
    "post_visit": ("症状较前好转，已按医嘱用药。", "患者对就诊过程满意，已提醒按时复诊。",
                   "仍有轻微不适，建议门诊复查。"),
    "abnormal_result": ("已告知异常结果，建议专科门诊就诊。", "已预约专科门诊复查。",
                        "已建议低盐低脂饮食，三个月后复查。"),
}
_GENERIC_NOTES = ("已电话随访，患者情况稳定。", "已完成随访，嘱按时复诊。")
_ESCALATION_NOTE = "患者诉症状加重，已上报医生处理。"

# (kind, target indicator, goal, content) of an intervention, grouped by the problem it addresses.
_INTERVENTIONS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "htn": (
        ("education", "SBP", "血压控制在140/90 mmHg以下",
         "讲解高血压危害及家庭自测血压方法，发放健康教育手册。"),
        ("diet", "SBP", "每日食盐摄入少于5克", "低盐饮食指导：减少腌制食品和酱料，使用限盐勺。"),
        ("adherence", "SBP", "规律服用降压药",
         "用药依从性指导：讲解降压药服用时间和注意事项，建议使用分药盒。"),
        ("exercise", "SBP", "每周中等强度运动150分钟", "运动处方：快走或太极拳，每次30分钟，每周5次。"),
        ("psychological", "SBP", "缓解焦虑情绪", "心理疏导：针对疾病焦虑进行放松训练和情绪支持。"),
        ("referral", "SBP", "心内科专科就诊", "转诊至心内科调整降压方案。"),
    ),
    "dm": (
        ("diet", "FPG", "空腹血糖控制在4.4-7.0 mmol/L",
         "糖尿病饮食指导：控制总热量，主食粗细搭配，定时定量进餐。"),
        ("education", "HBA1C", "糖化血红蛋白控制在7%以下",
         "糖尿病自我管理教育：血糖监测、低血糖识别与处理。"),
        ("adherence", "FPG", "按时服药并监测血糖", "降糖药物使用指导，记录血糖日记。"),
        ("referral", "FPG", "内分泌科专科就诊", "转诊至内分泌科进一步评估治疗方案。"),
    ),
    "lipid": (
        ("diet", "LDL", "LDL-C降至3.4 mmol/L以下",
         "低脂饮食指导：减少动物内脏和油炸食品，增加蔬菜和全谷物。"),
        ("adherence", "LDL", "坚持服用调脂药物", "他汀类药物服用指导，定期复查肝功能和血脂。"),
    ),
    "weight": (
        ("exercise", "BMI", "半年内体重减轻5%", "减重运动方案：有氧运动结合抗阻训练，每周至少150分钟。"),
        ("diet", "WEIGHT", "每日热量减少500千卡", "饮食日记与热量控制指导，晚餐七分饱。"),
    ),
}
_PROBLEMS = ("htn", "dm", "lipid", "weight")

# Satisfaction model: a latent score per response = department + month + yearly improvement + noise.
_DEPT_SATISFACTION = {"CARD": 0.35, "ENDO": 0.25, "NEURO": 0.0, "RESP": -0.15, "GI": 0.1, "ORTHO": -0.05,
                      "GS": -0.25, "OBGYN": 0.3, "PAED": -0.3, "HCC": 0.15, "HMC": 0.45}
# Crowded clinics wait longer; the health-check centre runs on appointments.
_DEPT_WAITING = {"RESP": -0.5, "PAED": -0.6, "GS": -0.3, "ORTHO": -0.2, "HCC": 0.2, "HMC": 0.4}
_WINTER_DEPTS = ("RESP", "PAED")
_ITEM_BASE = {"doctors": 0.25, "nurses": 0.2, "waiting": -0.45, "environment": 0.0, "explanation": -0.1}


# --- writing: one chunk of one table as numpy columns ------------------------------------------


@dataclass
class Col:
    """A column of a chunk; `null` marks rows that are NULL (values there are ignored)."""

    values: Arr
    null: Arr | None = None


@dataclass
class TableChunk:
    table: str
    n: int
    cols: dict[str, Col]


def _chunk(table: str, **cols: Arr | Col) -> TableChunk:
    norm = {k: v if isinstance(v, Col) else Col(v) for k, v in cols.items()}
    n = len(next(iter(norm.values())).values)
    for k, c in norm.items():
        if len(c.values) != n:
            raise ValueError(f"{table}.{k}: {len(c.values)} values, expected {n}")
    return TableChunk(table, n, norm)


_KINDS_CACHE: dict[str, dict[str, str]] = {}


def _column_kinds(table: str) -> dict[str, str]:
    """Storage kind of each column, from the models, so the writers follow the schema rather than a copy."""
    if table not in _KINDS_CACHE:
        kinds: dict[str, str] = {}
        t: Table = Base.metadata.tables[table]
        for c in t.columns:
            ty = c.type
            if isinstance(ty, SmallInteger):
                kinds[c.name] = "i2"
            elif isinstance(ty, BigInteger):
                kinds[c.name] = "i8"
            elif isinstance(ty, Integer):
                kinds[c.name] = "i4"
            elif isinstance(ty, Float):
                kinds[c.name] = "f8"
            elif isinstance(ty, Boolean):
                kinds[c.name] = "bool"
            elif isinstance(ty, DateTime):
                kinds[c.name] = "ts"
            elif isinstance(ty, Date):
                kinds[c.name] = "date"
            elif isinstance(ty, (String, JSON)):
                kinds[c.name] = "text"
            else:
                kinds[c.name] = "other"
        _KINDS_CACHE[table] = kinds
    return _KINDS_CACHE[table]


_PG_FIXED = {"i2": ">i2", "i4": ">i4", "i8": ">i8", "f8": ">f8", "bool": "u1", "date": ">i4", "ts": ">i8"}
_PG_EPOCH_DAY = np.datetime64("2000-01-01", "D")
_PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us")
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_PG_TRAILER = b"\xff\xff"


def _pg_values(kind: str, values: Arr) -> Arr:
    if kind == "date":
        return (values.astype("M8[D]") - _PG_EPOCH_DAY).astype(np.int64)
    if kind == "ts":
        return (values.astype("M8[us]") - _PG_EPOCH_US).astype(np.int64)
    if kind == "bool":
        return values.astype(np.uint8)
    return values


def pack_pg_binary(chunk: TableChunk) -> Arr:
    """The rows of a chunk as COPY ... (FORMAT binary) tuples (no file header), in one uint8 array.

    Binary COPY spares PostgreSQL the text parsing, and numpy builds it without a Python loop per row: rows
    whose variable-length fields have equal lengths share one fixed layout, so each such group is a numpy
    structured array. Rows keep the order they were given in (the heap then matches the indexes built after
    the load, which makes those builds cheaper).
    """
    kinds = _column_kinds(chunk.table)
    n = chunk.n
    names = list(chunk.cols)
    vals: list[Arr] = []
    lens: list[Arr | int] = []  # an int when every row has the same length
    for name in names:
        col = chunk.cols[name]
        kind = kinds[name]
        ln: Arr | int
        if kind in _PG_FIXED:
            v = _pg_values(kind, col.values)
            ln = np.dtype(_PG_FIXED[kind]).itemsize
        elif kind == "text":
            v = col.values
            if v.dtype.kind != "S":
                raise TypeError(f"{chunk.table}.{name}: text columns are passed as UTF-8 bytes arrays")
            ln = np.strings.str_len(v).astype(np.int64)
        else:
            raise TypeError(f"{chunk.table}.{name}: no binary COPY support for this column type")
        if col.null is not None:
            ln = np.where(col.null, -1, ln)
        if isinstance(ln, np.ndarray) and n and (ln == ln[0]).all():
            ln = int(ln[0])
        vals.append(v)
        lens.append(ln)
    varying = [j for j, ln in enumerate(lens) if isinstance(ln, np.ndarray)]
    order: Arr | None = None
    if varying:
        # One integer per distinct layout (mixed radix over the lengths); a stable sort keeps generation
        # order within a layout, and small keys sort as uint16 (numpy's radix sort).
        key = np.zeros(n, dtype=np.int64)
        mult = 1
        for j in varying:
            lj = lens[j]
            assert isinstance(lj, np.ndarray)
            lo = int(lj.min())
            key += (lj - lo) * mult
            mult *= int(lj.max()) - lo + 1
        if mult > 2**62:
            raise ValueError(f"{chunk.table}: too many distinct row layouts")
        order = np.argsort(key.astype(np.uint16) if mult <= 2**16 else key, kind="stable")
        sk = key[order]
        starts = np.concatenate(([0], np.flatnonzero(sk[1:] != sk[:-1]) + 1))
    else:
        starts = np.zeros(1 if n else 0, dtype=np.int64)
    ends = np.append(starts[1:], n)
    layouts: list[tuple[int, int, Arr | None, np.dtype[Any], list[int]]] = []
    total = 0
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        idx = order[s:e] if order is not None else None
        first = int(order[s]) if order is not None else 0
        glen = [ln if isinstance(ln, int) else int(ln[first]) for ln in lens]
        fields: list[tuple[str, str]] = [("nf", ">i2")]
        for j, name in enumerate(names):
            fields.append((f"l{j}", ">i4"))
            if glen[j] > 0:
                kind = kinds[name]
                fields.append((f"v{j}", _PG_FIXED[kind] if kind in _PG_FIXED else f"S{glen[j]}"))
        dt = np.dtype(fields)
        layouts.append((e - s, total, idx, dt, glen))
        total += (e - s) * dt.itemsize
    out = np.empty(total, dtype=np.uint8)
    row_at: Arr | None = None
    if len(layouts) > 1:
        # Rows go out in the order they were given (the order the indexes will want, see _gen_chunk), so
        # each layout's rows are scattered to their offsets in that order.
        assert order is not None
        size_sorted = np.repeat([dt.itemsize for _, _, _, dt, _ in layouts], [m for m, *_ in layouts])
        size = np.empty(n, dtype=np.int64)
        size[order] = size_sorted
        row_at = np.cumsum(size) - size
    for m, off, idx, dt, glen in layouts:
        width = dt.itemsize
        rec = out[off:off + m * width].view(dt) if row_at is None else np.empty(m, dtype=dt)
        # The field count and lengths are the same on every row of a layout: copy one template row.
        tmpl = np.zeros(1, dtype=dt)
        tmpl["nf"] = len(names)
        for j, ln_j in enumerate(glen):
            tmpl[f"l{j}"] = ln_j
        rec.view(np.uint8).reshape(m, width)[:] = tmpl.view(np.uint8)
        for j, ln_j in enumerate(glen):
            if ln_j > 0:
                rec[f"v{j}"] = vals[j] if idx is None else vals[j][idx]
        if row_at is not None:
            assert idx is not None
            raw = rec.view(np.uint8).reshape(m, width)
            step = max(1, (1 << 21) // width)  # bounded index arrays (about 16 MB each)
            for b in range(0, m, step):
                dest = row_at[idx[b:b + step]][:, None] + np.arange(width)
                out[dest] = raw[b:b + step]
    return out


class _Chain(io.RawIOBase):
    """A read-only file over several buffers, so COPY streams the packed arrays without joining them."""

    def __init__(self, parts: Sequence[bytes | Arr]) -> None:
        self._parts = [memoryview(p).cast("B") for p in parts]  # type: ignore[arg-type]
        self._i = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._i < len(self._parts) and self._pos >= len(self._parts[self._i]):
            self._i += 1
            self._pos = 0
        if self._i >= len(self._parts):
            return b""
        part = self._parts[self._i]
        end = len(part) if size < 0 else min(len(part), self._pos + size)
        data = bytes(part[self._pos:end])
        self._pos = end
        return data


def _sqlite_rows(chunk: TableChunk) -> list[tuple[Any, ...]]:
    """DB-API rows in the formats SQLAlchemy writes on SQLite, so ORM reads and string comparisons agree."""
    kinds = _column_kinds(chunk.table)
    columns: list[list[Any]] = []
    for name, col in chunk.cols.items():
        kind = kinds[name]
        v = col.values
        if kind == "ts":
            out: list[Any] = np.strings.replace(
                np.datetime_as_string(v.astype("M8[us]"), unit="us"), "T", " ").tolist()
        elif kind == "date":
            out = np.datetime_as_string(v.astype("M8[D]"), unit="D").tolist()
        elif kind == "text":
            out = [b.decode() for b in v.tolist()]
        elif kind == "bool":
            out = v.astype(np.int64).tolist()
        else:
            out = v.tolist()
        if col.null is not None:
            for i in np.nonzero(col.null)[0].tolist():
                out[i] = None
        columns.append(out)
    return list(zip(*columns, strict=True))


class _Writer:
    """Writes chunks inside the caller's transaction: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.counts: dict[str, int] = {}
        # Patients whose chunk is in the database (inside the transaction); read for progress reports.
        self.patients_written = 0
        self._pool = ThreadPoolExecutor(max_workers=1) if self.pg else None
        self._pending: Future[None] | None = None
        self._rows: dict[str, int] = {}

    def write(self, chunks: Sequence[TableChunk]) -> None:
        for c in chunks:
            self.counts[c.table] = self.counts.get(c.table, 0) + c.n
        if not self.pg:
            for c in chunks:
                if c.n:
                    cols = ", ".join(c.cols)
                    marks = ", ".join("?" for _ in c.cols)
                    sql = f"INSERT INTO {c.table} ({cols}) VALUES ({marks})"
                    self.conn.exec_driver_sql(sql, _sqlite_rows(c))
            self.patients_written += sum(c.n for c in chunks if c.table == "patients")
            return
        # Packing happens here, the COPY in a worker thread: psycopg2 releases the GIL while it sends, so the
        # next chunk is generated while PostgreSQL ingests this one (two cores, two jobs).
        payloads = [(c.table, list(c.cols), pack_pg_binary(c)) for c in chunks if c.n]
        self.flush()
        self._rows = {c.table: c.n for c in chunks}
        assert self._pool is not None
        self._pending = self._pool.submit(self._copy, payloads)

    def _copy(self, payloads: list[tuple[str, list[str], Arr]]) -> None:
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        cur: Any = raw.cursor()
        try:
            for table, cols, data in payloads:
                sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT binary)"
                cur.copy_expert(sql, _Chain([_PG_HEADER, data, _PG_TRAILER]), size=1 << 22)
                if table == "patients":
                    self.patients_written += self._rows[table]
        finally:
            cur.close()

    def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


# --- PostgreSQL bulk-load housekeeping ---------------------------------------------------------


def _pg_drop_secondary(conn: Connection, tables: Sequence[str]) -> tuple[list[str], list[str]]:
    """Drop every index and key of the bulk tables (primary keys too, with the foreign keys that point at
    them from anywhere); return the DDL that restores them: (keys and indexes, foreign keys).

    Maintaining them row by row costs more than building them once at the end (a primary key alone doubles
    the cost of COPY), and the builds then run with parallel workers. The restore statements come from the
    catalogue itself (pg_get_constraintdef / pg_get_indexdef), so names and definitions stay exactly those
    of the migrations. All of it runs in the seed's transaction: a failure rolls the drops back too.
    """
    params = {"tables": list(tables)}
    cons = conn.exec_driver_sql(
        """
        SELECT c.contype,
               format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
               format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                      pg_get_constraintdef(c.oid))
        FROM pg_constraint c
        WHERE (c.contype IN ('p', 'u', 'f') AND c.conrelid::regclass::text = ANY(%(tables)s))
           OR (c.contype = 'f' AND c.confrelid::regclass::text = ANY(%(tables)s))
        ORDER BY c.contype, c.conname
        """,
        params,
    ).all()
    idx = conn.exec_driver_sql(
        """
        SELECT format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid::regclass::text = ANY(%(tables)s) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """,
        params,
    ).all()
    fks = [(drop, add) for kind, drop, add in cons if kind == "f"]
    pks = [(drop, add) for kind, drop, add in cons if kind == "p"]
    uqs = [(drop, add) for kind, drop, add in cons if kind == "u"]
    # Foreign keys go first (they depend on the keys they reference) and come back last.
    for drop, _ in [*fks, *uqs, *pks, *idx]:
        conn.exec_driver_sql(drop)
    return [add for _, add in [*pks, *uqs, *idx]], [add for _, add in fks]


def _pg_restore(conn: Connection, keys: Sequence[str], fks: Sequence[str], tables: Sequence[str]) -> None:
    def run(stmt: str) -> None:
        started = _time.perf_counter()
        conn.exec_driver_sql(stmt)
        log.info("%6.1f s  %s", _time.perf_counter() - started, stmt)

    for stmt in keys:
        run(stmt)
    # Statistics before the foreign keys: each key's check is a join over millions of rows, and without
    # statistics the planner misjudges it (sorting the big side instead of hashing the small one).
    for t in tables:
        run(f"ANALYZE {t}")
    for stmt in fks:
        run(stmt)
    for t in tables:
        # Ids were assigned here, not by the sequences: move each sequence past the largest id.
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), GREATEST((SELECT max(id) FROM {t}), 1))"
        )


# --- the cohort model --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    code: str
    id: int
    trigger: str
    param: str | None
    # (step id, offset days, method) of the one-off steps; repeating steps run over tags and are left to
    # the automation, which has the tags.
    steps: tuple[tuple[int, int, str], ...]


@dataclass
class _Ctx:
    seed: int
    today: np.datetime64  # datetime64[D]
    dept_codes: list[str]
    dept_ids: Arr
    nurses: list[Arr]  # user ids per department index
    names: _Names
    indicator_ids: dict[str, int]
    item_ids: dict[str, int]
    questionnaire_id: int
    plans: list[_Plan]
    doctors: Arr  # (n_departments, 8) doctor names as bytes
    month_effect: Arr  # (n_departments, 12) latent satisfaction offsets
    next_id: dict[str, int] = field(default_factory=dict)

    def ids(self, table: str, n: int) -> Arr:
        start = self.next_id[table]
        self.next_id[table] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def dept(self, code: str) -> int:
        return self.dept_codes.index(code)

    def pick_nurse(self, rng: np.random.Generator, dept: Arr) -> Arr:
        """A random nurse of each row's department."""
        counts = np.array([len(a) for a in self.nurses], dtype=np.int64)
        table = np.zeros((len(self.nurses), int(counts.max())), dtype=np.int64)
        for i, a in enumerate(self.nurses):
            table[i, : len(a)] = a
        return table[dept, (rng.random(len(dept)) * counts[dept]).astype(np.int64)]


class _Names:
    """Chinese names drawn like Faker zh_CN does (its surname weights), but vectorised with numpy."""

    def __init__(self) -> None:
        surnames = list(ZhPerson.last_names)
        weights = np.array(list(ZhPerson.last_names.values()), dtype=float)
        self.surnames = surnames
        self.surname_p = weights / weights.sum()
        self.given: dict[str, list[str]] = {}
        self.given_p: dict[str, Arr] = {}
        for sex, pool in (("M", list(ZhPerson.first_names_male)), ("F", list(ZhPerson.first_names_female))):
            # Faker's given names carry no weights but are listed most common first: weight by rank. Half of
            # the people get a two-character name built from two single characters of the same list.
            rank_w = 1.0 / (np.arange(len(pool)) + 8.0)
            singles = [(g, w) for g, w in zip(pool, rank_w, strict=True) if len(g) == 1]
            combos = [(a + b, wa * wb * 12) for a, wa in singles for b, wb in singles if a != b]
            names = pool + [c for c, _ in combos]
            w = np.concatenate([rank_w, np.array([w for _, w in combos])])
            w[: len(pool)] *= w[len(pool):].sum() / w[: len(pool)].sum()
            self.given[sex] = names
            self.given_p[sex] = w / w.sum()
        self.cache: dict[str, str] = {}
        # Encoded pools and their initials, built once: pypinyin runs once per distinct name part.
        self.sur_b = _b(surnames)
        self.sur_ini = _b(self.initials(x, True) for x in surnames)
        self.giv_b = {sex: _b(v) for sex, v in self.given.items()}
        self.giv_ini = {sex: _b(self.initials(x, False) for x in v) for sex, v in self.given.items()}

    def initials(self, text: str, surname: bool) -> str:
        key = ("S:" if surname else "G:") + text
        hit = self.cache.get(key)
        if hit is None:
            if surname and text in _SURNAME_INITIALS:
                hit = _SURNAME_INITIALS[text]
            else:
                # Character by character: pypinyin's phrase guesses would read a name as a word.
                hit = "".join(lazy_pinyin(ch, style=Style.FIRST_LETTER)[0] for ch in text).lower()
            self.cache[key] = hit
        return hit

    def draw(self, rng: np.random.Generator, male: Arr) -> tuple[Arr, Arr]:
        """Names and pinyin initials (both UTF-8 bytes arrays) for people of the given sexes."""
        n = len(male)
        s_idx = rng.choice(len(self.surnames), size=n, p=self.surname_p)
        given = np.zeros(n, dtype="S12")
        given_ini = np.zeros(n, dtype="S4")
        for sex, mask in (("M", male), ("F", ~male)):
            g_idx = rng.choice(len(self.given[sex]), size=int(mask.sum()), p=self.given_p[sex])
            given[mask] = self.giv_b[sex][g_idx]
            given_ini[mask] = self.giv_ini[sex][g_idx]
        return _cat(self.sur_b[s_idx], given), _cat(self.sur_ini[s_idx], given_ini)


def _at(day: Arr, minutes: Arr) -> Arr:
    """Timestamps (datetime64[s]) at a number of minutes after midnight of each day."""
    stamps: Arr = day.astype("M8[s]") + (minutes * 60).astype(np.int64).astype("m8[s]")
    return stamps


def _pick(rng: np.random.Generator, n: int, weights: Sequence[float]) -> Arr:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def _repeat_index(counts: Arr) -> tuple[Arr, Arr]:
    """For per-parent counts: the parent of each child row and the child's number within its parent."""
    parent = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return parent, np.arange(len(parent)) - starts[parent]


def _sigmoid(x: Arr) -> Arr:
    out: Arr = 1.0 / (1.0 + np.exp(-x))
    return out


@dataclass
class _Cohort:
    """Per-patient latent health (baselines, trends, disease onsets) from which every measurement follows."""

    male: Arr
    age: Arr  # years, at today
    bmi: Arr  # BMI at today before any intervention effect
    bmi_slope: Arr  # per year
    height: Arr
    htn_onset: Arr  # years relative to today (negative = in the past); +inf when never
    htn_treated: Arr
    dm_onset: Arr
    dm_treated: Arr
    statin_from: Arr
    u: dict[str, Arr]
    int_at: Arr  # intervention time in years relative to today, +inf when none
    int_problem: Arr  # index into _PROBLEMS, -1 when none

    def values(self, p: Arr, t: Arr, rng: np.random.Generator) -> dict[str, Arr]:
        """Every indicator for patients p measured at t (years relative to today), rounded for display."""
        n = len(p)
        male = self.male[p]
        age = self.age[p] + t
        after_int = t >= self.int_at[p]
        prob = self.int_problem[p]
        eff = {k: after_int & (prob == i) for i, k in enumerate(_PROBLEMS)}
        bmi_true = self.bmi[p] + self.bmi_slope[p] * t - 0.9 * eff["weight"]
        height = self.height[p] - np.clip(age - 60, 0, None) * 0.08 + rng.normal(0, 0.3, n)
        height = np.round(height, 1)
        weight = np.round(bmi_true * (height / 100) ** 2 + rng.normal(0, 0.6, n), 1)
        # BMI is computed from the weight and height shown, so the three always agree on a screen.
        bmi = np.round(weight / (height / 100) ** 2, 1)
        waist = np.where(male, 2.45 * bmi + 27, 2.35 * bmi + 22) + 0.1 * (age - 45) + self.u["waist"][p]
        waist = np.round(waist + rng.normal(0, 1.5, n), 1)
        htn = t >= self.htn_onset[p]
        htn_rx = htn & self.htn_treated[p] & (t >= self.htn_onset[p] + 0.25)
        sbp = (112 + 0.45 * (age - 40) + 0.9 * (bmi - 23) + 5 * male + self.u["sbp"][p]
               + htn * 24.0 - htn_rx * 11.0 - 7.0 * eff["htn"] + rng.normal(0, 6, n))
        dbp = 0.5 * sbp + 13 - 0.1 * (age - 50) + self.u["dbp"][p] - 3.0 * eff["htn"] + rng.normal(0, 4, n)
        hr = 72 + self.u["hr"][p] + rng.normal(0, 5, n)
        dm = t >= self.dm_onset[p]
        dm_rx = dm & self.dm_treated[p] & (t >= self.dm_onset[p] + 0.25)
        fpg_true = (4.9 + 0.012 * (age - 40) + 0.06 * (bmi - 23) + self.u["fpg"][p]
                    + dm * (2.8 + self.u["dm"][p]) - dm_rx * 1.1 - 0.7 * eff["dm"])
        fpg = fpg_true + rng.normal(0, 0.25, n) * (1 + dm)
        # HbA1c follows mean glucose (ADAG: eAG = 1.59 x A1c - 2.59), a little above fasting glucose.
        hba1c = (fpg_true + 1.1 + 2.59) / 1.59 + rng.normal(0, 0.18, n)
        statin = t >= self.statin_from[p]
        tc = (4.6 + 0.012 * (age - 40) + 0.25 * (~male & (age > 50)) + 0.04 * (bmi - 23) + self.u["tc"][p]
              - 1.0 * statin - 0.5 * eff["lipid"] + rng.normal(0, 0.22, n))
        hdl = np.where(male, 1.15, 1.38) - 0.025 * (bmi - 23) + self.u["hdl"][p] + rng.normal(0, 0.08, n)
        hdl = np.clip(hdl, 0.5, 3.0)
        tg = np.exp(np.log(1.25) + 0.06 * (bmi - 23) + 0.15 * male + self.u["tg"][p]
                    + rng.normal(0, 0.18, n)) + 0.3 * dm
        # LDL by the Friedewald relation keeps the lipid panel internally consistent.
        ldl = tc - hdl - tg / 2.2 + rng.normal(0, 0.12, n)
        ua = np.where(male, 375, 290) + 6 * (bmi - 23) + self.u["ua"][p] + rng.normal(0, 25, n)
        alt = np.exp(np.log(20) + 0.25 * male + 0.04 * (bmi - 23) + self.u["alt"][p] + rng.normal(0, 0.2, n))
        crea = np.where(male, 80, 60) + 0.25 * (age - 40) + self.u["crea"][p] + rng.normal(0, 5, n)
        raw = {"SBP": sbp, "DBP": dbp, "HR": hr, "FPG": fpg, "HBA1C": hba1c, "TC": tc, "LDL": ldl, "HDL": hdl,
               "TG": tg, "UA": ua, "ALT": alt, "CREA": crea, "HEIGHT": height, "WEIGHT": weight, "BMI": bmi,
               "WAIST": waist}
        lo = {"SBP": 85, "DBP": 45, "HR": 45, "FPG": 3.3, "HBA1C": 4.0, "TC": 2.2, "LDL": 0.6, "HDL": 0.5,
              "TG": 0.3, "UA": 120, "ALT": 5, "CREA": 35, "HEIGHT": 130, "WEIGHT": 30, "BMI": 14, "WAIST": 50}
        hi = {"SBP": 230, "DBP": 135, "HR": 130, "FPG": 25, "HBA1C": 14, "TC": 11, "LDL": 8, "HDL": 3,
              "TG": 12, "UA": 800, "ALT": 300, "CREA": 400, "HEIGHT": 200, "WEIGHT": 160, "BMI": 50,
              "WAIST": 150}
        return {d.code: np.round(np.clip(raw[d.code], lo[d.code], hi[d.code]), d.decimals)
                for d in INDICATORS}


def _make_cohort(rng: np.random.Generator, n: int, male: Arr, age: Arr, dept_code: Arr) -> _Cohort:
    # Right-skewed like adult BMI: median near 23, few under 18.5, a long tail above 28.
    bmi = 13.0 + np.exp(rng.normal(np.log(10.0), 0.3, n)) + 0.5 * male + 0.02 * (age - 45)
    logit_htn = -3.4 + 0.065 * (age - 18) + 0.12 * (bmi - 23) + 0.3 * male + 1.2 * (dept_code == "CARD")
    htn = rng.random(n) < _sigmoid(logit_htn)
    logit_dm = -4.8 + 0.05 * (age - 18) + 0.18 * (bmi - 23) + 0.2 * male + 2.2 * (dept_code == "ENDO")
    dm = rng.random(n) < _sigmoid(logit_dm)
    # Onset: some years ago, never before 25; a share falls inside the check-up window, so values step up.
    htn_years = np.minimum(rng.exponential(6.0, n), np.maximum(age - 25, 0.5))
    dm_years = np.minimum(rng.exponential(5.0, n), np.maximum(age - 25, 0.5))
    u = {
        "waist": rng.normal(0, 3.5, n), "sbp": rng.normal(0, 7, n), "dbp": rng.normal(0, 3.5, n),
        "hr": rng.normal(0, 7, n), "fpg": rng.normal(0, 0.32, n), "dm": rng.normal(0, 1.2, n),
        "tc": rng.normal(0, 0.75, n), "hdl": rng.normal(0, 0.22, n), "tg": rng.normal(0, 0.38, n),
        "ua": rng.normal(0, 55, n), "alt": rng.normal(0, 0.35, n), "crea": rng.normal(0, 9, n),
    }
    high_lipids = u["tc"] > 0.6
    statin = high_lipids & (rng.random(n) < 0.45)
    return _Cohort(
        male=male, age=age, bmi=bmi, bmi_slope=rng.normal(0.08, 0.25, n),
        height=np.where(male, rng.normal(169.5, 6.2, n), rng.normal(158.0, 5.6, n)),
        htn_onset=np.where(htn, -htn_years, np.inf), htn_treated=rng.random(n) < 0.8,
        dm_onset=np.where(dm, -dm_years, np.inf), dm_treated=rng.random(n) < 0.85,
        statin_from=np.where(statin, -rng.uniform(0, 8, n), np.inf), u=u,
        int_at=np.full(n, np.inf), int_problem=np.full(n, -1),
    )


# --- one chunk of patients and everything that hangs off them ----------------------------------


@dataclass
class _Encounters:
    pidx: Arr
    kind: Arr  # index into ENCOUNTER_KINDS
    dept: Arr  # department index
    start: Arr  # datetime64[s]
    end: Arr
    doctor: Arr  # bytes
    ids: Arr


# An inpatient stay is a "discharge" encounter (ended_at = discharge), as services/followup.py reads it.
ENCOUNTER_KINDS = ("checkup", "outpatient", "discharge")


def _gen_chunk(ctx: _Ctx, chunk_no: int, first_pid: int, n: int) -> list[TableChunk]:
    rng = np.random.default_rng([ctx.seed, chunk_no])
    today = ctx.today
    yesterday_end = today.astype("M8[s]") - np.timedelta64(1, "s")
    pid = first_pid + np.arange(n, dtype=np.int64)
    codes = np.array(ctx.dept_codes)
    out: list[TableChunk] = []

    # Patients: department first (it shapes sex and age), then who they are.
    dept = _pick(rng, n, [_PRIMARY_DEPT_WEIGHT.get(c, 0.0) for c in ctx.dept_codes])
    dcode = codes[dept]
    male = (rng.random(n) < 0.49) & (dcode != "OBGYN")
    # Adults of 18 to 90, skewed older (a hospital's chronic patients); gynaecology patients younger.
    age_frac = np.where(dcode == "OBGYN", rng.beta(2.0, 2.5, n) * 0.6, rng.beta(2.2, 1.8, n))
    age_years = 18.01 + 71.98 * age_frac
    birth = today - (age_years * 365.25).astype(np.int64).astype("m8[D]")
    age = (today - birth).astype(np.int64) / 365.25
    name, initials = ctx.names.draw(rng, male)

    region = rng.random(n)
    hz = region < 0.65
    zj_or_other = rng.integers(0, len(_ELSEWHERE), n)
    id_region = np.where(hz, np.array(_HANGZHOU_ID_CODES)[rng.integers(0, len(_HANGZHOU_ID_CODES), n)],
                         np.array([c for c, _ in _ELSEWHERE])[zj_or_other]).astype("S6")
    seq = rng.integers(0, 500, n) * 2 + male  # odd for men, even for women (GB 11643)
    body = _cat(id_region, np.datetime_as_string(birth, unit="D").astype("S10"), np.strings.zfill(
        seq.astype("S"), 3))
    body = np.strings.replace(body, b"-", b"")
    body_digits = np.frombuffer(body.astype("S17").tobytes(), dtype=np.uint8).reshape(n, 17) - ord("0")
    id_number = _cat(body, _mod11_2(body_digits))

    card_digits = _digits(pid, CARD_DIGITS)
    card_no = _cat(CARD_PREFIX.encode(), _zfill(pid, CARD_DIGITS), _mod11_2(card_digits))

    prefixes = np.array(_PHONE_PREFIXES, dtype=np.int64)
    phone = (prefixes[rng.integers(0, len(prefixes), n)] * 10**8 + rng.integers(0, 10**8, n)).astype("S11")

    # Addresses: most live in a Hangzhou district; some of those registered elsewhere still live there.
    lives_home = hz | (rng.random(n) < 0.6)
    home = rng.integers(0, len(_HOME_DISTRICTS), n)
    home_prefix = _b(d for d, _ in _HOME_DISTRICTS)[home]
    street_pool = [list(s) for _, s in _HOME_DISTRICTS]
    street_idx = (rng.random(n) * np.array([len(street_pool[h]) for h in home])).astype(np.int64)
    flat_streets = _b(s for pool in street_pool for s in pool)
    offsets = np.cumsum([0] + [len(p) for p in street_pool[:-1]])
    home_street = flat_streets[offsets[home] + street_idx]
    other_prefix = _b(p for _, p in _ELSEWHERE)[zj_or_other]
    other_street = _b(_GENERIC_STREETS)[rng.integers(0, len(_GENERIC_STREETS), n)]
    address = _cat(
        np.where(lives_home, home_prefix, other_prefix), np.where(lives_home, home_street, other_street),
        rng.integers(1, 400, n).astype("S"), "号".encode(),
        _b(_COMPOUNDS)[rng.integers(0, len(_COMPOUNDS), n)],
        rng.integers(1, 30, n).astype("S"), "幢".encode(), rng.integers(1, 5, n).astype("S"), "单元".encode(),
        (rng.integers(1, 25, n) * 100 + rng.integers(1, 5, n)).astype("S"), "室".encode(),
    )

    nurse_of = ctx.pick_nurse(rng, dept)
    prefs = _b(['["wechat", "sms"]', '["sms"]', '["wechat"]', '["phone"]', '["sms", "phone"]'])
    channel_prefs = prefs[_pick(rng, n, [0.4, 0.25, 0.2, 0.1, 0.05])]
    do_not_contact = rng.random(n) < 0.01
    status = np.where(rng.random(n) < 0.01, b"inactive", b"active")

    cohort = _make_cohort(rng, n, male, age, dcode)

    # Check-ups: 2-6 yearly visits at the health-check centre, the latest within the past year; long
    # histories are rarer (membership grew over the years).
    n_chk = 2 + _pick(rng, n, [0.30, 0.25, 0.20, 0.15, 0.10])
    chk_dept_of = np.where(rng.random(n) < 0.75, ctx.dept("HCC"), ctx.dept("HMC"))
    chk_dept_of = np.where(np.isin(dcode, CHECKUP_DEPTS), dept, chk_dept_of)
    last_off = rng.integers(7, 366, n)
    cp, cj = _repeat_index(n_chk)
    chk_day = today - (last_off[cp] + 365 * cj + np.where(cj > 0, rng.normal(0, 12, len(cp)), 0)
                       ).astype(np.int64).astype("m8[D]")
    chk_start = _at(chk_day, rng.integers(450, 600, len(cp)))
    chk_end = chk_start + (rng.integers(90, 180, len(cp)) * 60).astype("m8[s]")

    # Outpatient visits in the last two years; check-up patients see a specialist now and then.
    is_hosp = ~np.isin(dcode, CHECKUP_DEPTS)
    n_out = np.minimum(rng.poisson(np.where(is_hosp, 1.5, 0.35)), 6)
    op, _ = _repeat_index(n_out)
    ref_w = [_REFERRAL_DEPT_WEIGHT.get(c, 0.0) for c in ctx.dept_codes]
    out_dept = np.where(is_hosp[op] & (rng.random(len(op)) < 0.85), dept[op], _pick(rng, len(op), ref_w))
    out_day = today - rng.integers(1, 731, len(op)).astype("m8[D]")
    # A few visits exactly a week ago: their 7-day follow-up call is due today on the worklist.
    forced_n = max(3, round(0.015 * n))
    forced_p = rng.choice(np.nonzero(is_hosp)[0], size=min(forced_n, int(is_hosp.sum())), replace=False)
    op = np.concatenate([op, forced_p])
    out_dept = np.concatenate([out_dept, dept[forced_p]])
    out_day = np.concatenate([out_day, np.full(len(forced_p), today - np.timedelta64(7, "D"))])
    out_start = _at(out_day, rng.integers(480, 1020, len(op)))
    out_end = out_start + (rng.integers(10, 45, len(op)) * 60).astype("m8[s]")

    # Inpatient stays: discharged between a few days and two years ago.
    n_in = (rng.random(n) < np.where(is_hosp, 0.07, 0.015)).astype(np.int64)
    ip, _ = _repeat_index(n_in)
    in_dept = np.where(is_hosp[ip], dept[ip], _pick(rng, len(ip), ref_w))
    los = rng.integers(3, 15, len(ip))
    dis_day = today - rng.integers(1, 720, len(ip)).astype("m8[D]")
    in_start = _at(dis_day - los.astype("m8[D]"), rng.integers(480, 1200, len(ip)))
    in_end = _at(dis_day, rng.integers(540, 690, len(ip)))

    e_p = np.concatenate([cp, op, ip])
    e_kind = np.concatenate([np.zeros(len(cp), np.int64), np.ones(len(op), np.int64), np.full(len(ip), 2)])
    e_dept = np.concatenate([chk_dept_of[cp], out_dept, in_dept])
    e_start = np.concatenate([chk_start, out_start, in_start])
    e_end = np.concatenate([chk_end, out_end, in_end])
    # Stored in (patient, time) order so one patient's timeline sits together on disk.
    order = np.lexsort((e_start, e_p))
    e_p, e_kind, e_dept = e_p[order], e_kind[order], e_dept[order]
    e_start, e_end = e_start[order], e_end[order]
    n_enc = len(e_p)
    enc = _Encounters(pidx=e_p, kind=e_kind, dept=e_dept, start=e_start, end=e_end,
                      doctor=ctx.doctors[e_dept, rng.integers(0, ctx.doctors.shape[1], n_enc)],
                      ids=ctx.ids("encounters", n_enc))
    t_enc = (enc.start.astype("M8[D]") - today).astype(np.int64) / 365.25

    # Interventions: after a check-up (not the last) for a patient with a problem; later values improve.
    problems = np.stack([
        np.isfinite(cohort.htn_onset), np.isfinite(cohort.dm_onset),
        cohort.u["tc"] > 0.5, cohort.bmi >= 25.5,
    ], axis=1)
    has_problem = problems.any(axis=1)
    want_int = has_problem & (rng.random(n) < 0.4)
    # Choose a problem the patient has, uniformly among theirs.
    score = np.where(problems, rng.random((n, len(_PROBLEMS))), -1.0)
    int_problem = np.where(want_int, score.argmax(axis=1), -1)
    is_chk = enc.kind == 0
    chk_rank_from_last = np.zeros(n_enc, np.int64)
    chk_idx = np.nonzero(is_chk)[0]
    # Rank of each check-up counted from the patient's latest (0 = latest).
    chk_counts = np.bincount(enc.pidx[chk_idx], minlength=n)
    _, within = _repeat_index(chk_counts)
    chk_rank_from_last[chk_idx] = chk_counts[enc.pidx[chk_idx]] - 1 - within
    base_sel = is_chk & (chk_rank_from_last == 1 + (rng.random(n_enc) < 0.4)) & want_int[enc.pidx]
    # One check-up per patient: the first candidate in (patient, time) order.
    cand = np.nonzero(base_sel)[0]
    _, first = np.unique(enc.pidx[cand], return_index=True)
    int_enc = cand[first]
    int_p = enc.pidx[int_enc]
    int_day = enc.start[int_enc].astype("M8[D]") + rng.integers(7, 41, len(int_enc)).astype("m8[D]")
    ok = int_day < today
    int_enc, int_p, int_day = int_enc[ok], int_p[ok], int_day[ok]
    cohort.int_at[int_p] = (int_day - today).astype(np.int64) / 365.25
    cohort.int_problem[int_p] = int_problem[int_p]

    # Observations: the full panel at check-ups, vitals at cardiology/endocrinology/neurology visits.
    codes_ind = [d.code for d in INDICATORS]
    want = np.zeros((n_enc, len(codes_ind)), dtype=bool)
    want[is_chk] = True
    vit_dept = np.isin(codes[enc.dept], ["CARD", "ENDO", "NEURO"]) & (enc.kind == 1)
    for c in ("SBP", "DBP", "HR"):
        want[vit_dept, codes_ind.index(c)] = True
    want[(enc.kind == 1) & (codes[enc.dept] == "ENDO"), codes_ind.index("FPG")] = True
    needs = want.any(axis=1)
    val_rows = np.nonzero(needs)[0]
    vals = cohort.values(enc.pidx[val_rows], t_enc[val_rows], rng)
    value_mat = np.zeros((n_enc, len(codes_ind)))
    for j, c in enumerate(codes_ind):
        value_mat[val_rows, j] = vals[c]
    oe, oi = np.nonzero(want)
    ind_id = np.array([ctx.indicator_ids[c] for c in codes_ind], dtype=np.int64)[oi]
    # Rows in the order of the (patient, indicator, time) index, and a fixed-width source_ref that sorts the
    # same way: PostgreSQL's sort notices presorted input, so the two biggest index builds of the load become
    # linear. Every row has one layout (no LOINC code: the values were generated in the canonical unit, not
    # received under a code), so the binary packer keeps this order.
    order = np.lexsort((oe, ind_id, enc.pidx[oe]))
    oe, oi, ind_id = oe[order], oi[order], ind_id[order]
    n_obs = len(oe)
    minutes_after = np.array([5 if c in ("SBP", "DBP", "HR") else 10 if c in (
        "HEIGHT", "WEIGHT", "BMI", "WAIST") else 30 for c in codes_ind])
    obs_pid = pid[enc.pidx[oe]]
    # Digits are made once per encounter and patient and then gathered: per row they would cost seconds.
    enc_digits = _zfill(enc.ids, 11)
    ind_digits = _zfill(np.array([ctx.indicator_ids[c] for c in codes_ind], dtype=np.int64), 3)
    out_obs = _chunk(
        "observations",
        id=ctx.ids("observations", n_obs),
        patient_id=obs_pid,
        indicator_id=ind_id,
        encounter_id=enc.ids[oe],
        value=value_mat[oe, oi],
        observed_at=enc.start[oe] + (minutes_after[oi] * 60).astype("m8[s]"),
        status=np.full(n_obs, b"final"),
        source=np.full(n_obs, SOURCE.encode()),
        source_ref=_cat(_zfill(pid, 10)[enc.pidx[oe]], b":", ind_digits[oi], b":", enc_digits[oe]),
    )

    # Findings per check-up drive exam report conclusions and abnormal-result follow-ups.
    def col(c: str) -> Arr:
        return value_mat[:, codes_ind.index(c)]

    male_e = male[enc.pidx]
    findings = np.stack([
        (col("SBP") >= 140) | (col("DBP") >= 90),
        (col("FPG") >= 6.1) | (col("HBA1C") >= 6.5),
        (col("TC") >= 6.2) | (col("LDL") >= 4.1) | (col("TG") >= 2.3) | (col("HDL") < 1.0),
        col("BMI") >= 24,
        col("UA") > 420,
        col("ALT") > 50,
        np.where(male_e, col("WAIST") >= 90, col("WAIST") >= 85),
    ], axis=1) & is_chk[:, None]
    finding_text = ("血压偏高", "血糖升高", "血脂异常", "超重或肥胖", "尿酸偏高", "转氨酶升高", "中心型肥胖")
    advice = "建议低盐低脂饮食、规律运动，相关科室门诊随诊，定期复查。"
    mask_bits = (findings * (1 << np.arange(findings.shape[1]))).sum(axis=1)
    conclusions = _b(
        ("体检发现：" + "；".join(t for k, t in enumerate(finding_text) if m >> k & 1) + "。" + advice)
        if m else "本次体检未见明显异常，建议保持健康生活方式，每年体检一次。"
        for m in range(1 << len(finding_text))
    )

    out_enc = _chunk(
        "encounters",
        id=enc.ids,
        patient_id=pid[enc.pidx],
        department_id=ctx.dept_ids[enc.dept],
        kind=_b(ENCOUNTER_KINDS)[enc.kind],
        started_at=enc.start,
        ended_at=enc.end,
        doctor_name=enc.doctor,
        reason=_encounter_reasons(rng, codes[enc.dept], enc.kind),
        source=np.full(n_enc, SOURCE.encode()),
        # Zero-padded ids: the refs sort like the rows, so the unique index builds from presorted input.
        source_ref=_cat(b"E", enc_digits),
    )
    rep_e = chk_idx
    rep_at = np.minimum(_at(enc.start[rep_e].astype("M8[D]") + np.timedelta64(3, "D"),
                            rng.integers(840, 1020, len(rep_e))), yesterday_end)
    out_rep = _chunk(
        "exam_reports",
        id=ctx.ids("exam_reports", len(rep_e)),
        patient_id=pid[enc.pidx[rep_e]],
        encounter_id=enc.ids[rep_e],
        title=_cat(np.datetime_as_string(enc.start[rep_e], unit="Y").astype("S4"),
                   "年度健康体检报告".encode()),
        status=np.full(len(rep_e), b"final"),
        reported_at=rep_at,
        conclusion=conclusions[mask_bits[rep_e]],
        source=np.full(len(rep_e), SOURCE.encode()),
        source_ref=_cat(b"R", enc_digits[rep_e]),
    )

    # Enrolment: shortly before the first encounter, never in the future.
    first_enc = np.full(n, np.datetime64("2100-01-01T00:00:00", "s"))
    np.minimum.at(first_enc, enc.pidx, enc.start)
    enrolled = np.minimum(first_enc - (rng.integers(0, 60, n) * 86400).astype("m8[s]"), yesterday_end)
    enrolled = enrolled.astype("M8[D]").astype("M8[s]") + (rng.integers(480, 1020, n) * 60).astype("m8[s]")
    out.append(_chunk(
        "patients",
        id=pid, card_no=card_no, name=name, name_initials=initials,
        sex=np.where(male, b"M", b"F"), birth_date=birth, phone=phone, id_type=np.full(n, b"resident"),
        id_number=id_number, address=address, department_id=ctx.dept_ids[dept], nurse_id=nurse_of,
        status=status, channel_prefs=channel_prefs, do_not_contact=do_not_contact,
        enrolled_at=enrolled, updated_at=enrolled, version=np.ones(n, np.int64),
    ))

    # Consents: separate per purpose (PIPL art. 29); a few are later withdrawn.
    consent_p: list[Arr] = []
    consent_purpose: list[Arr] = []
    consent_withdrawn: list[Arr] = []
    for purpose, p_grant, p_withdraw in (("followup", 0.98, 0.01), ("education", 0.65, 0.03),
                                         ("marketing", 0.12, 0.15), ("research", 0.25, 0.05)):
        granted = rng.random(n) < p_grant
        withdrawn = granted & (rng.random(n) < p_withdraw)
        idx = np.nonzero(granted)[0]
        consent_p.append(idx)
        consent_purpose.append(np.full(len(idx), purpose.encode()))
        consent_withdrawn.append(withdrawn[idx])
    # Rows by patient, like every table here: the patient_id index then builds from presorted input.
    by_patient = np.argsort(np.concatenate(consent_p), kind="stable")
    c_p = np.concatenate(consent_p)[by_patient]
    c_w = np.concatenate(consent_withdrawn)[by_patient]
    c_purpose = np.concatenate(consent_purpose)[by_patient]
    c_granted = enrolled[c_p]
    span = (yesterday_end - c_granted).astype(np.int64)
    c_with_at = c_granted + (rng.random(len(c_p)) * np.maximum(span, 1)).astype(np.int64).astype("m8[s]")
    out.append(_chunk(
        "consents",
        id=ctx.ids("consents", len(c_p)), patient_id=pid[c_p], purpose=c_purpose,
        granted_at=c_granted, withdrawn_at=Col(c_with_at, ~c_w), recorded_by=nurse_of[c_p],
    ))

    out.append(_history(ctx, rng, pid, nurse_of, enrolled, cohort, dcode, value_mat, enc, is_chk))
    out.append(out_enc)
    out.append(out_rep)
    out.append(out_obs)
    out.extend(_surveys(ctx, rng, pid, enc, today))
    obs = _Obs(pidx=enc.pidx[oe], day=enc.start[oe].astype("M8[D]"), ids=out_obs.cols["id"].values,
               code_idx=oi, abnormal=_abnormal(oi, value_mat[oe, oi], male[enc.pidx[oe]]))
    out.extend(_tasks(ctx, rng, pid, dept, nurse_of, status == b"active", enc, obs, today))

    # Pick one of the templates for the problem addressed: flat template list, per-problem offsets.
    templates = [t for prob in _PROBLEMS for t in _INTERVENTIONS[prob]]
    n_tpl = np.array([len(_INTERVENTIONS[prob]) for prob in _PROBLEMS])
    first_tpl = np.cumsum(n_tpl) - n_tpl
    ip_prob = cohort.int_problem[int_p]
    choice = first_tpl[ip_prob] + (rng.random(len(int_p)) * n_tpl[ip_prob]).astype(np.int64)
    # The patient's own nurse delivers it, in the patient's department (the worklist owner).
    int_dept = dept[int_p]
    out.append(_chunk(
        "interventions",
        id=ctx.ids("interventions", len(int_p)),
        patient_id=pid[int_p],
        kind=_b(t[0] for t in templates)[choice],
        indicator_id=np.array([ctx.indicator_ids[t[1]] for t in templates], dtype=np.int64)[choice],
        goal=_b(t[2] for t in templates)[choice],
        content=_b(t[3] for t in templates)[choice],
        performer_id=nurse_of[int_p],
        department_id=ctx.dept_ids[int_dept],
        performed_on=int_day,
        next_review_on=int_day + np.timedelta64(90, "D"),
        created_at=_at(int_day, rng.integers(540, 1020, len(int_p))),
    ))
    return out


def _encounter_reasons(rng: np.random.Generator, dcodes: Arr, kind: Arr) -> Arr:
    checkup = "年度健康体检"
    out = _text_slots(len(kind), [checkup], *_OUTPATIENT_REASONS.values(), *_INPATIENT_REASONS.values())
    out[:] = checkup.encode()
    for code in sorted(set(dcodes.tolist())):
        for k, pool in ((1, _OUTPATIENT_REASONS[code]), (2, _INPATIENT_REASONS[code])):
            m = (dcodes == code) & (kind == k)
            if m.any():
                out[m] = _b(pool)[rng.integers(0, len(pool), int(m.sum()))]
    return out


def _history(ctx: _Ctx, rng: np.random.Generator, pid: Arr, nurse_of: Arr, enrolled: Arr, cohort: _Cohort,
             dcode: Arr, value_mat: Arr, enc: _Encounters, is_chk: Arr) -> TableChunk:
    """Health record facts that agree with the measurements: diagnoses, drugs, allergy, family, lifestyle."""
    today = ctx.today
    n = len(pid)
    codes_ind = [d.code for d in INDICATORS]
    # Latest check-up values per patient decide the diagnoses a clinician would have written down.
    last = np.full(n, -1, np.int64)
    chk_rows = np.nonzero(is_chk)[0]
    last[enc.pidx[chk_rows]] = chk_rows  # rows are in (patient, time) order, so the last write wins
    lv = {c: value_mat[last, codes_ind.index(c)] for c in ("TC", "LDL", "TG", "BMI", "UA", "ALT")}
    rows: dict[str, list[Arr]] = {k: [] for k in ("p", "kind", "code", "system", "text", "relation",
                                                  "relation_null", "detail", "started", "started_null")}

    def add(mask: Arr, kind: str, text: Arr | str, code: Arr | str | None, system: str | None,
            started: Arr | None = None, relation: Arr | None = None, detail: Arr | None = None) -> None:
        idx = np.nonzero(mask)[0]
        m = len(idx)
        if not m:
            return

        def full(v: Arr | str | None) -> Arr:
            if v is None:
                return np.full(m, b"")
            if isinstance(v, str):
                return np.full(m, v.encode())
            return v[idx] if len(v) == n else v

        rows["p"].append(idx)
        rows["kind"].append(np.full(m, kind.encode()))
        rows["code"].append(full(code))
        rows["system"].append(full(system))
        rows["text"].append(full(text))
        rows["relation"].append(full(relation))
        rows["relation_null"].append(np.full(m, relation is None))
        rows["detail"].append(full(detail))
        if started is None:
            rows["started"].append(np.zeros(m, "M8[D]"))
            rows["started_null"].append(np.ones(m, bool))
        else:
            rows["started"].append(started[idx] if len(started) == n else started)
            rows["started_null"].append(np.zeros(m, bool))

    def onset_day(years: Arr) -> Arr:
        return today + np.nan_to_num(years * 365.25, posinf=0, neginf=0).astype(np.int64).astype("m8[D]")

    htn = np.isfinite(cohort.htn_onset)
    dm = np.isfinite(cohort.dm_onset)
    add(htn, "condition", "原发性高血压", "I10", "ICD-10", onset_day(cohort.htn_onset))
    add(dm, "condition", "2型糖尿病", "E11.9", "ICD-10", onset_day(cohort.dm_onset))
    statin = np.isfinite(cohort.statin_from)
    dyslip = statin | (((lv["TC"] >= 6.2) | (lv["LDL"] >= 4.1) | (lv["TG"] >= 2.3)) & (rng.random(n) < 0.7))
    dys_start = np.where(statin, cohort.statin_from - rng.uniform(0, 1, n), -rng.uniform(0, 3, n))
    add(dyslip, "condition", "高脂血症", "E78.5", "ICD-10", onset_day(dys_start))
    add((lv["BMI"] >= 28) & (rng.random(n) < 0.5), "condition", "肥胖症", "E66.9", "ICD-10")
    add((lv["UA"] > 420) & (rng.random(n) < 0.6), "condition", "高尿酸血症", "E79.0", "ICD-10")
    add((lv["ALT"] > 50) & (lv["BMI"] >= 25) & (rng.random(n) < 0.7), "condition", "非酒精性脂肪性肝病",
        "K76.0", "ICD-10")
    for dept_code, conds in _DEPT_CONDITIONS.items():
        for cond_text, icd, prevalence in conds:
            add((dcode == dept_code) & (rng.random(n) < prevalence), "condition", cond_text, icd, "ICD-10",
                onset_day(-rng.uniform(0.2, 10, n)))

    for flag, start, drugs in ((htn & cohort.htn_treated, cohort.htn_onset + 0.25, _HTN_DRUGS),
                               (dm & cohort.dm_treated, cohort.dm_onset + 0.25, _DM_DRUGS),
                               (statin, cohort.statin_from, _STATINS)):
        pick = rng.integers(0, len(drugs), n)
        add(flag, "medication", _b(d for d, _ in drugs)[pick], _b(c for _, c in drugs)[pick], "ATC",
            onset_day(np.minimum(start, -0.01)))
    add(np.isin(dcode, ["CARD", "NEURO"]) & (rng.random(n) < 0.5), "medication",
        "阿司匹林肠溶片 100mg 每日一次", "B01AC06", "ATC", onset_day(-rng.uniform(0.2, 6, n)))

    allergic = rng.random(n) < 0.18
    a_pick = rng.integers(0, len(_ALLERGIES), n)
    add(allergic, "allergy", _cat(_b(a for a, _ in _ALLERGIES)[a_pick], "过敏（".encode(),
                                  _b(r for _, r in _ALLERGIES)[a_pick], "）".encode()), None, None,
        detail=_cat(b'{"substance": "', _b(a for a, _ in _ALLERGIES)[a_pick], b'", "reaction": "',
                    _b(r for _, r in _ALLERGIES)[a_pick], b'"}'))

    # Family history is likelier for patients who have the disease themselves.
    for d_i, (disease, icd) in enumerate(_FAMILY_DISEASES):
        own = htn if d_i == 0 else dm if d_i == 1 else np.zeros(n, bool)
        for r_i, rel in enumerate(_RELATIONS):
            has = rng.random(n) < (0.12 if d_i < 2 else 0.05) * np.where(own, 2.2, 1.0)
            add(has, "family", f"{_RELATION_ZH[r_i]}：{disease}", icd, "ICD-10",
                relation=np.full(n, rel.encode()))

    male = cohort.male
    smoke_r = rng.random(n)
    smoke = np.where(male, np.where(smoke_r < 0.45, 2, np.where(smoke_r < 0.57, 1, 0)),
                     np.where(smoke_r < 0.02, 2, np.where(smoke_r < 0.03, 1, 0)))
    per_day = np.array([5, 10, 20])[rng.integers(0, 3, n)]
    smoke_text = np.where(smoke == 2, _cat("吸烟，约".encode(), per_day.astype("S"), "支/日".encode()),
                          np.where(smoke == 1, "已戒烟".encode(), "从不吸烟".encode()))
    smoke_detail = np.where(
        smoke == 2, _cat(b'{"status": "current", "per_day": ', per_day.astype("S"), b"}"),
        np.where(smoke == 1, b'{"status": "former"}', b'{"status": "never"}'))
    add(np.ones(n, bool), "lifestyle", smoke_text, "smoking", None, detail=smoke_detail)
    drink = np.where(male, _pick(rng, n, [0.45, 0.35, 0.2]), _pick(rng, n, [0.85, 0.13, 0.02]))
    drink_text = _b(["不饮酒", "偶尔饮酒", "经常饮酒（每周3次以上）"])[drink]
    drink_detail = _b(['{"status": "never"}', '{"status": "occasional"}', '{"status": "regular"}'])[drink]
    add(np.ones(n, bool), "lifestyle", drink_text, "alcohol", None, detail=drink_detail)
    ex = _pick(rng, n, [0.35, 0.4, 0.25])
    ex_text = _b(["每周运动3次以上，每次30分钟以上", "偶尔运动", "基本不运动"])[ex]
    ex_detail = _b(['{"level": "regular"}', '{"level": "occasional"}', '{"level": "none"}'])[ex]
    add(np.ones(n, bool), "lifestyle", ex_text, "exercise", None, detail=ex_detail)
    diet = rng.integers(0, 4, n)
    add(rng.random(n) < 0.5, "lifestyle", _b(["口味偏咸", "喜食油腻", "饮食清淡", "蔬菜水果摄入不足"])[diet],
        "diet", None)

    h = {k: np.concatenate(v) for k, v in rows.items()}
    # In (patient, kind) order, the order of the table's index.
    by_patient = np.lexsort((h["kind"], h["p"]))
    h = {k: v[by_patient] for k, v in h.items()}
    hp, h_code, h_system, h_detail = h["p"], h["code"], h["system"], h["detail"]
    h_started, h_started_null = h["started"], h["started_null"]
    # Recorded at enrolment, or when diagnosed if that came later (never today or after).
    known = np.where(h_started_null, enrolled[hp], h_started.astype("M8[s]") + np.timedelta64(9 * 3600, "s"))
    recorded = np.minimum(np.maximum(enrolled[hp], known), today.astype("M8[s]") - np.timedelta64(1, "s"))
    return _chunk(
        "health_history",
        id=ctx.ids("health_history", len(hp)),
        patient_id=pid[hp],
        kind=h["kind"],
        code=Col(h_code, np.strings.str_len(h_code) == 0),
        code_system=Col(h_system, np.strings.str_len(h_system) == 0),
        text=h["text"],
        relation=Col(h["relation"], h["relation_null"]),
        detail=Col(h_detail, np.strings.str_len(h_detail) == 0),
        started_on=Col(h_started, h_started_null),
        source=np.full(len(hp), SOURCE.encode()),
        recorded_at=recorded,
        recorded_by=nurse_of[hp],
    )


def _surveys(ctx: _Ctx, rng: np.random.Generator, pid: Arr, enc: _Encounters, today: np.datetime64
             ) -> list[TableChunk]:
    """Invitations after visits of the last two years, responses with department and month effects."""
    recent = enc.end >= (today - np.timedelta64(730, "D")).astype("M8[s]")
    invited = recent & (rng.random(len(enc.ids)) < 0.75)
    ie = np.nonzero(invited)[0]
    ch = _pick(rng, len(ie), [0.6, 0.35, 0.05])
    channel = _b(["wechat", "sms", "phone"])[ch]
    sent_day = enc.end[ie].astype("M8[D]") + np.where(enc.kind[ie] == 1, 0, np.where(enc.kind[ie] == 2, 1, 2)
                                                      ).astype("m8[D]")
    sent = _at(sent_day, rng.integers(1080, 1200, len(ie)))
    keep = sent < today.astype("M8[s]")
    ie, ch, channel, sent = ie[keep], ch[keep], channel[keep], sent[keep]
    n_inv = len(ie)
    inv_ids = ctx.ids("survey_invitations", n_inv)
    invitations = _chunk(
        "survey_invitations",
        id=inv_ids, patient_id=pid[enc.pidx[ie]], questionnaire_id=np.full(n_inv, ctx.questionnaire_id),
        department_id=ctx.dept_ids[enc.dept[ie]], channel=channel, sent_at=sent,
    )

    responded = rng.random(n_inv) < np.array([0.42, 0.28, 0.65])[ch]
    delay = np.minimum(rng.exponential(10 * 3600, n_inv), 6 * 86400).astype(np.int64)
    submitted = sent + delay.astype("m8[s]")
    responded &= submitted < today.astype("M8[s]")
    ri = np.nonzero(responded)[0]
    n_resp = len(ri)
    r_enc = ie[ri]
    r_dept = enc.dept[r_enc]
    r_sub = submitted[ri]
    month = (r_sub.astype("M8[M]").astype(np.int64) % 12)
    years_ago = (today - r_sub.astype("M8[D]")).astype(np.int64) / 365.25
    dept_eff = np.array([_DEPT_SATISFACTION.get(c, 0.0) for c in ctx.dept_codes])[r_dept]
    # A few had a bad experience whatever the department: the long low tail real NPS data has.
    bad_day = np.where(rng.random(n_resp) < 0.05, rng.uniform(-4.5, -1.5, n_resp), 0.0)
    z = (dept_eff + ctx.month_effect[r_dept, month] - 0.12 * years_ago + bad_day
         + rng.normal(0, 0.55, n_resp) + rng.normal(0, 0.75, n_resp))
    nps = np.clip(np.round(8.3 + 1.55 * z), 0, 10).astype(np.int64)
    waiting_eff = np.array([_DEPT_WAITING.get(c, 0.0) for c in ctx.dept_codes])[r_dept]
    likert = np.empty((n_resp, len(LIKERT_ITEMS)))
    for k, item in enumerate(LIKERT_ITEMS):
        item_z = (0.8 * z + _ITEM_BASE[item] + (waiting_eff if item == "waiting" else 0)
                  + rng.normal(0, 0.6, n_resp))
        likert[:, k] = np.clip(np.round(4.1 + 0.8 * item_z), 1, 5)
    skipped = rng.random((n_resp, len(LIKERT_ITEMS))) < 0.04
    overall = np.clip(np.round(8.2 + 1.4 * (0.9 * z + rng.normal(0, 0.5, n_resp))), 0, 10)
    overall_skip = rng.random(n_resp) < 0.03
    answered = np.where(skipped, np.nan, likert)
    n_answered = (~skipped).sum(axis=1)
    total = np.where(n_answered > 0, np.nansum(answered, axis=1) / np.maximum(n_answered, 1), 0.0)

    # Comments: more likely from unhappy patients, about the item they rated lowest.
    has_comment = rng.random(n_resp) < np.where(nps <= 6, 0.45, np.where(nps >= 9, 0.1, 0.12))
    lowest = np.where(skipped, 9, likert).argmin(axis=1)
    comment = _text_slots(n_resp, _COMMENTS_POSITIVE, _COMMENTS_NEUTRAL, *_COMMENTS_NEGATIVE.values())
    pos = has_comment & (nps >= 9)
    comment[pos] = _b(_COMMENTS_POSITIVE)[rng.integers(0, len(_COMMENTS_POSITIVE), int(pos.sum()))]
    neu = has_comment & (nps >= 7) & (nps <= 8)
    comment[neu] = _b(_COMMENTS_NEUTRAL)[rng.integers(0, len(_COMMENTS_NEUTRAL), int(neu.sum()))]
    for k, item in enumerate(LIKERT_ITEMS):
        neg = has_comment & (nps <= 6) & (lowest == k)
        pool = _COMMENTS_NEGATIVE[item]
        comment[neg] = _b(pool)[rng.integers(0, len(pool), int(neg.sum()))]
    resp_ids = ctx.ids("survey_responses", n_resp)
    responses = _chunk(
        "survey_responses",
        id=resp_ids, questionnaire_id=np.full(n_resp, ctx.questionnaire_id), patient_id=pid[enc.pidx[r_enc]],
        invitation_id=inv_ids[ri], department_id=ctx.dept_ids[r_dept], doctor_name=enc.doctor[r_enc],
        channel=channel[ri], submitted_at=r_sub, nps_score=nps,
        comment=Col(comment, ~has_comment), total_score=Col(np.round(total, 2), n_answered == 0),
        source=np.full(n_resp, SOURCE.encode()), source_ref=_cat(b"I", _zfill(inv_ids[ri], 11)),
    )

    # One answer row per answered item (skipped items have no row: they leave top-box denominators).
    item_cols: list[tuple[str, Arr, Arr]] = [("nps", nps.astype(float), np.ones(n_resp, bool))]
    item_cols += [(item, likert[:, k], ~skipped[:, k]) for k, item in enumerate(LIKERT_ITEMS)]
    item_cols.append(("overall", overall, ~overall_skip))
    a_resp: list[Arr] = []
    a_item: list[Arr] = []
    a_num: list[Arr] = []
    for item, v, present in item_cols:
        idx = np.nonzero(present)[0]
        a_resp.append(idx)
        a_item.append(np.full(len(idx), ctx.item_ids[item]))
        a_num.append(v[idx])
    c_idx = np.nonzero(has_comment)[0]
    a_resp_all = np.concatenate([*a_resp, c_idx])
    n_num = sum(len(x) for x in a_resp)
    order = np.argsort(a_resp_all, kind="stable")
    a_item_all = np.concatenate([*a_item, np.full(len(c_idx), ctx.item_ids["comment"])])[order]
    a_num_all = np.concatenate([*a_num, np.zeros(len(c_idx))])[order]
    a_text = np.concatenate([np.zeros(n_num, dtype=comment.dtype), comment[c_idx]])[order]
    is_text = np.concatenate([np.zeros(n_num, bool), np.ones(len(c_idx), bool)])[order]
    a_resp_all = a_resp_all[order]
    answers = _chunk(
        "survey_answers",
        id=ctx.ids("survey_answers", len(a_resp_all)), response_id=resp_ids[a_resp_all], item_id=a_item_all,
        value_num=Col(a_num_all, is_text), value_text=Col(a_text, ~is_text),
    )

    # Service recovery for most detractors: recent cases still open, older ones closed with a re-rating.
    det = np.nonzero((nps <= 6) & (rng.random(n_resp) < 0.7))[0]
    n_case = len(det)
    opened = r_sub[det] + (rng.integers(1, 24, n_case) * 3600).astype("m8[s]")
    opened = np.minimum(opened, today.astype("M8[s]") - np.timedelta64(60, "s"))
    age_days = (today.astype("M8[s]") - opened).astype(np.int64) / 86400
    took = (np.minimum(rng.exponential(2.5, n_case), 20) * 86400).astype(np.int64)
    closed_at = opened + took.astype("m8[s]")
    is_closed = (closed_at < today.astype("M8[s]")) & (age_days > 3) & (rng.random(n_case) < 0.95)
    status = np.where(is_closed, b"closed", np.where(rng.random(n_case) < 0.5, b"open", b"in_progress"))
    rerated = is_closed & (rng.random(n_case) < 0.7)
    rerating = np.clip(nps[det] + rng.integers(1, 5, n_case), 0, 10)
    cause = _b(_ROOT_CAUSES[i] for i in LIKERT_ITEMS)[lowest[det]]
    dept_heads = np.array([ctx.nurses[d][0] for d in range(len(ctx.dept_codes))], dtype=np.int64)
    attempts = np.where(status == b"open", 0, rng.integers(1, 4, n_case))
    case_ids = ctx.ids("service_recovery_cases", n_case)
    owner = dept_heads[r_dept[det]]
    cases = _chunk(
        "service_recovery_cases",
        id=case_ids, patient_id=pid[enc.pidx[r_enc[det]]],
        response_id=resp_ids[det], department_id=ctx.dept_ids[r_dept[det]], owner_id=owner,
        opened_at=opened, sla_due_at=opened + np.timedelta64(72 * 3600, "s"), status=status,
        attempts=attempts,
        # A root cause is recorded when the case is closed (services/recovery.py), not before.
        root_cause=Col(cause, ~is_closed),
        resolution=Col(_b(_RESOLUTIONS)[rng.integers(0, len(_RESOLUTIONS), n_case)], ~is_closed),
        rerating=Col(rerating, ~rerated), closed_at=Col(closed_at, ~is_closed),
        version=np.ones(n_case, np.int64),
    )
    # Each case has its owner's worklist task, keyed as services/surveys.py keys it; closing the case
    # closed the task.
    sla = opened + np.timedelta64(72 * 3600, "s")
    recovery_tasks = _chunk(
        "followup_tasks",
        id=ctx.ids("followup_tasks", n_case), patient_id=pid[enc.pidx[r_enc[det]]], kind=np.full(n_case,
        b"service_recovery"), dedup_key=_cat(b"recovery:", case_ids.astype("S")),
        department_id=ctx.dept_ids[r_dept[det]], assignee_id=owner, method=np.full(n_case, b"phone"),
        due_date=sla.astype("M8[D]"), status=np.where(is_closed, b"done", b"pending"), attempts=attempts,
        completed_at=Col(closed_at, ~is_closed), created_at=opened, version=1 + attempts + is_closed,
    )
    return [invitations, responses, answers, cases, recovery_tasks]


@dataclass
class _Obs:
    """The observations of a chunk, as the abnormal-result trigger needs them."""

    pidx: Arr
    day: Arr
    ids: Arr
    code_idx: Arr
    abnormal: Arr


def _abnormal(code_idx: Arr, values: Arr, male: Arr) -> Arr:
    """Whether each reading lies in an abnormal guideline band of the catalogue (for the patient's sex)."""
    codes = [d.code for d in INDICATORS]
    out = np.zeros(len(values), dtype=bool)
    for g in GUIDELINES:
        for code, bands in g.bands.items():
            here = code_idx == codes.index(code)
            for band in bands:
                if not band.abnormal:
                    continue
                hit = here.copy()
                if band.low is not None:
                    hit &= values >= band.low
                if band.high is not None:
                    hit &= values < band.high
                if band.sex is not None:
                    hit &= male == (band.sex == "M")
                out |= hit
    return out


def _events(plan: _Plan, enc: _Encounters, obs: _Obs, today: np.datetime64) -> tuple[Arr, Arr, Arr]:
    """(patient index, anchor day, event key) of each trigger event of a plan, as services/followup.py defines
    them: a discharge by its end, an encounter by its start, abnormal readings once per patient and day."""
    kinds = np.array(ENCOUNTER_KINDS)
    if plan.trigger == "discharge":
        e = np.nonzero(kinds[enc.kind] == "discharge")[0]
        return enc.pidx[e], enc.end[e].astype("M8[D]"), _cat(b"dis", enc.ids[e].astype("S"))
    if plan.trigger == "encounter":
        sel = kinds[enc.kind] == plan.param if plan.param else kinds[enc.kind] != "discharge"
        e = np.nonzero(sel)[0]
        return enc.pidx[e], enc.start[e].astype("M8[D]"), _cat(b"enc", enc.ids[e].astype("S"))
    if plan.trigger == "abnormal":
        sel = obs.abnormal
        if plan.param:
            sel = sel & (obs.code_idx == [d.code for d in INDICATORS].index(plan.param))
        o = np.nonzero(sel)[0]
        # One event per patient and day, keyed by the lowest observation id of that day (as the automation).
        key = obs.pidx[o] * 1_000_000 + (obs.day[o] - today).astype(np.int64)
        by_key = np.lexsort((obs.ids[o], key))
        o, key = o[by_key], key[by_key]
        _, first = np.unique(key, return_index=True)
        o = o[first]
        return obs.pidx[o], obs.day[o], _cat(b"abn", obs.ids[o].astype("S"))
    return np.zeros(0, np.int64), np.zeros(0, "M8[D]"), np.zeros(0, "S1")


def _tasks(ctx: _Ctx, rng: np.random.Generator, pid: Arr, dept: Arr, nurse_of: Arr, active: Arr,
           enc: _Encounters, obs: _Obs, today: np.datetime64) -> list[TableChunk]:
    """Follow-up tasks for the plans' events of the last 400 days, as the automation would have opened them,
    then worked the way services/followup.py records calls: a failed call moves the due date to the retry
    date, three failures make the task unreachable, tasks still open past their due date are overdue."""
    window = today - np.timedelta64(400, "D")
    yesterday_end = today.astype("M8[s]") - np.timedelta64(1, "s")
    parts: dict[str, list[Arr]] = {k: [] for k in ("p", "plan", "step", "method", "anchor", "due", "key")}
    plan_codes = [pl.code for pl in ctx.plans]
    for i, plan in enumerate(ctx.plans):
        ep, anchor, ek = _events(plan, enc, obs, today)
        keep = active[ep] & (anchor >= window) & (anchor < today)
        ep, anchor, ek = ep[keep], anchor[keep], ek[keep]
        for step_id, offset, step_method in plan.steps:
            parts["p"].append(ep)
            parts["plan"].append(np.full(len(ep), i))
            parts["step"].append(np.full(len(ep), step_id))
            parts["method"].append(np.full(len(ep), step_method.encode()))
            parts["anchor"].append(anchor)
            parts["due"].append(anchor + np.timedelta64(offset, "D"))
            parts["key"].append(_cat(f"p{plan.id}:s{step_id}:".encode(), ek))
    if not parts["p"]:
        return []
    t = {k: np.concatenate(v) for k, v in parts.items()}
    # By patient and due date, the order of the patient index.
    by_patient = np.lexsort((t["due"], t["p"]))
    t = {k: v[by_patient] for k, v in t.items()}
    tp, t_plan, t_step, method = t["p"], t["plan"], t["step"], t["method"]
    anchor, due0, dedup = t["anchor"], t["due"], t["key"]
    m = len(tp)
    # The daily job runs at 01:00 and picks up the previous day's events.
    created = np.minimum((anchor + np.timedelta64(1, "D")).astype("M8[s]") + np.timedelta64(3600, "s"),
                         yesterday_end)

    # The plan for each task: cancelled, unreachable, left overdue (likelier the more recent), or done.
    age = (today - due0).astype(np.int64)
    r = rng.random(m)
    p_overdue = 0.03 + 0.35 * np.exp(-np.maximum(age, 0) / 10.0)
    fate = np.full(m, 3)  # 0 cancelled, 1 unreachable, 2 overdue, 3 done
    fate[r < 0.02] = 0
    fate[(r >= 0.02) & (r < 0.05)] = 1
    fate[(r >= 0.05) & (r < 0.05 + p_overdue)] = 2
    fate[age <= 0] = 2  # not yet due: nobody has called
    retries = (rng.random(m) < 0.25).astype(np.int64) + (rng.random(m) < 0.08)
    failed = np.where(fate == 1, 3, np.where(fate == 2, rng.integers(0, 3, m), retries))
    failed = np.where((fate == 0) | (age <= 0), 0, failed)
    planned = failed + (fate == 3)  # calls planned, the last one reaching the patient when done
    # First call on the due day or a day early, a quarter of them late; retries one to three days apart.
    late = rng.random(m) < 0.25
    first_day = np.where(late, due0 + (1 + rng.geometric(0.3, m)).astype("m8[D]"),
                         due0 - rng.integers(0, 2, m).astype("m8[D]"))
    first_day = np.maximum(first_day, anchor + np.timedelta64(1, "D"))
    cp, ck = _repeat_index(planned + 1)  # one more slot: the retry date after the last call
    gaps = np.where(ck == 0, 0, rng.integers(1, 4, len(cp)))
    group_start = np.cumsum(planned + 1) - (planned + 1)
    running = np.cumsum(gaps)
    call_day = first_day[cp] + (running - running[group_start][cp]).astype("m8[D]")
    happened = (ck < planned[cp]) & (call_day < today)
    made = np.bincount(cp, weights=happened, minlength=m).astype(np.int64)
    # The slot after the calls made: the date the last retry asked for (the first call when none was made).
    next_slot = call_day[group_start + made]
    all_made = made == planned
    status = np.where(fate == 0, b"cancelled", b"pending").astype("S11")
    status[all_made & (fate == 1)] = b"unreachable"
    escalate = rng.random(m) < 0.015
    status[all_made & (fate == 3)] = np.where(escalate[all_made & (fate == 3)], b"escalated", b"done")
    is_closed = np.isin(status, [b"done", b"unreachable", b"escalated"])
    # Stored due date: the original one until a failed call set a retry date (the day of the next call).
    last_call_day = call_day[group_start + np.maximum(made - 1, 0)]
    due = np.where(made == 0, due0, np.where(is_closed, np.where(made == 1, due0, last_call_day), next_slot))

    rec = np.nonzero(happened)[0]
    rp, rk = cp[rec], ck[rec]
    minutes = rng.integers(540, 1050, len(rec))
    contacted = _at(call_day[rec], minutes)
    contacted = np.minimum(np.maximum(contacted, created[rp] + np.timedelta64(1800, "s")), yesterday_end)
    final = rk == planned[rp] - 1
    reached = final & (fate[rp] == 3)
    refused = reached & (rng.random(len(rec)) < 0.02)
    outcome = np.where(reached, np.where(refused, b"refused", b"reached"),
                       np.where(rng.random(len(rec)) < 0.85, b"no_answer", b"wrong_number"))
    esc = reached & escalate[rp]
    next_action = np.where(reached, np.where(esc, b"escalate", b"done"), b"retry")
    notes = _text_slots(len(rec), *_PLAN_NOTES.values(), _GENERIC_NOTES, [_ESCALATION_NOTE])
    for i, code in enumerate(plan_codes):
        sel = reached & (t_plan[rp] == i) & ~esc
        pool = _PLAN_NOTES.get(code, _GENERIC_NOTES)
        notes[sel] = _b(pool)[rng.integers(0, len(pool), int(sel.sum()))]
    notes[esc] = _ESCALATION_NOTE.encode()
    completed = np.full(m, np.datetime64("NaT"), dtype="M8[s]")
    last_rec = np.full(m, -1, np.int64)
    last_rec[rp] = np.arange(len(rec))  # records are in task order, so the last write is the last call
    closed_rows = np.nonzero(is_closed)[0]
    completed[closed_rows] = contacted[last_rec[closed_rows]]
    cancelled = status == b"cancelled"
    completed[cancelled] = np.minimum(created[cancelled] + np.timedelta64(2 * 86400, "s"), yesterday_end)

    ids = ctx.ids("followup_tasks", m)
    tasks = _chunk(
        "followup_tasks",
        id=ids, patient_id=pid[tp], plan_id=np.array([pl.id for pl in ctx.plans], np.int64)[t_plan],
        step_id=t_step, kind=np.full(m, b"followup"), dedup_key=dedup, department_id=ctx.dept_ids[dept[tp]],
        assignee_id=nurse_of[tp], method=method, due_date=due, status=status, attempts=made,
        completed_at=Col(np.where(np.isnat(completed), created, completed), np.isnat(completed)),
        created_at=created, version=1 + made,
    )
    records = _chunk(
        "followup_records",
        id=ctx.ids("followup_records", len(rec)), task_id=ids[rp], patient_id=pid[tp[rp]],
        contacted_at=contacted,
        method=method[rp], outcome=outcome, notes=Col(notes, np.strings.str_len(notes) == 0),
        next_action=next_action, recorded_by=nurse_of[tp[rp]],
    )
    return [tasks, records]


# --- orchestration -----------------------------------------------------------------------------


def _nurses_per_department(patients: int) -> int:
    # Roughly one nurse per 2,500 patients of a department, at least two so handovers exist.
    return max(2, min(40, math.ceil(patients / (2500 * len(DEPARTMENTS)))))


def _prepare(engine: Engine, *, patients: int, seed: int, today: date) -> tuple[_Ctx, dict[str, int]]:
    """Reference data, staff and plans (small, through the ORM, committed first): ids the chunks refer to."""
    created: dict[str, int] = {"users": 0, "followup_plans": 0, "followup_plan_steps": 0}
    setup_at = datetime.combine(today - timedelta(days=7 * 365), time(9, 0))
    rng = np.random.default_rng([seed, 1_000_000_007])
    names = _Names()
    with transaction(engine) as s:
        ensure_reference_data(s)
        depts = list(s.scalars(select(Department).order_by(Department.id)))
        per_dept = _nurses_per_department(patients)
        existing_users = set(s.scalars(select(User.username)))
        staff_names, _ = names.draw(rng, rng.random(len(depts) * per_dept) < 0.1)
        for di, d in enumerate(depts):
            for k in range(1, per_dept + 1):
                username = f"nurse_{d.code.lower()}_{k:02d}"
                if username in existing_users:
                    continue
                s.add(User(username=username, display_name=staff_names[di * per_dept + k - 1].decode(),
                           password_hash=UNUSABLE_PASSWORD_HASH, role="nurse", department_id=d.id,
                           active=True, failed_login_count=0, created_at=setup_at))
                created["users"] += 1
        have_plans = set(s.scalars(select(FollowupPlan.code)))
        for code, name_zh, name_en, trigger, param, steps in _PLANS:
            if code in have_plans:
                continue
            plan = FollowupPlan(code=code, version=1, name_zh=name_zh, name_en=name_en, trigger=trigger,
                                trigger_param=param, owner_role="nurse", department_id=None, active=True)
            s.add(plan)
            s.flush()
            created["followup_plans"] += 1
            for pos, (offset, method, script) in enumerate(steps, start=1):
                s.add(FollowupPlanStep(plan_id=plan.id, position=pos, offset_days=offset,
                                       repeat_every_days=None, method=method, script=script))
                created["followup_plan_steps"] += 1
        s.flush()
        nurse_rows = s.execute(
            select(User.id, User.department_id).where(User.role == "nurse", User.active.is_(True))
            .order_by(User.id)).all()
        nurses = [np.array([u for u, dd in nurse_rows if dd == d.id], dtype=np.int64) for d in depts]
        indicator_ids = dict(s.execute(select(Indicator.code, Indicator.id)).all())
        q = s.scalars(select(Questionnaire).where(Questionnaire.code == SATISFACTION.code)
                      .order_by(Questionnaire.version.desc())).first()
        assert q is not None
        item_ids = dict(s.execute(select(QuestionnaireItem.item_code, QuestionnaireItem.id)
                                  .where(QuestionnaireItem.questionnaire_id == q.id)).all())
        plans: list[_Plan] = []
        for code, *_ in _PLANS:
            # The latest version of each demo plan, with its own steps: tasks follow the plan as it stands.
            row = s.scalars(select(FollowupPlan).where(FollowupPlan.code == code)
                            .order_by(FollowupPlan.version.desc())).first()
            if row is None or not row.active:
                continue
            plan_steps = s.execute(
                select(FollowupPlanStep.id, FollowupPlanStep.offset_days, FollowupPlanStep.method)
                .where(FollowupPlanStep.plan_id == row.id, FollowupPlanStep.repeat_every_days.is_(None))
                .order_by(FollowupPlanStep.position)).all()
            plans.append(_Plan(code, row.id, row.trigger, row.trigger_param, tuple(plan_steps)))
        questionnaire_id = q.id
    codes = [d.code for d in depts]
    doc_names, _ = names.draw(rng, rng.random(len(depts) * 8) < 0.6)
    doctors = doc_names.reshape(len(depts), 8)
    # Seasonality shared by all chunks: winter crowding, plus a department's own month-to-month wobble.
    months = np.arange(12)
    common = -0.25 * np.cos(2 * np.pi * months / 12)
    month_effect = common[None, :] + rng.normal(0, 0.12, (len(depts), 12))
    for i, c in enumerate(codes):
        if c in _WINTER_DEPTS:
            month_effect[i, [0, 1, 11]] -= 0.3
    missing = [i for i, arr in enumerate(nurses) if len(arr) == 0]
    if missing:
        raise SeedError(f"no active nurse in department(s) {', '.join(codes[i] for i in missing)}")
    ctx = _Ctx(
        seed=seed, today=np.datetime64(today, "D"), dept_codes=codes,
        dept_ids=np.array([d.id for d in depts], dtype=np.int64),
        nurses=nurses,
        indicator_ids=indicator_ids, item_ids=item_ids, questionnaire_id=questionnaire_id, plans=plans,
        doctors=doctors, month_effect=month_effect, names=names,
    )
    return ctx, created


def seed_demo(
    engine: Engine,
    *,
    patients: int = 2000,
    seed: int = 20260101,
    today: date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Load `patients` demo patients with all their records; return the rows added per table.

    Deterministic for (patients, seed, today) on a fresh database; `today` defaults to DEFAULT_TODAY, never
    the clock (the CLI passes the real date). Refuses a database that already has patients.
    """
    if patients < 1:
        raise SeedError("the number of patients must be at least 1")
    today = today or DEFAULT_TODAY
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(Patient)).scalar_one()
    if existing:
        raise SeedError(
            f"database already has {existing} patients; demo data is only loaded into an empty database "
            "(create a new database, or point CARELOOP_DATABASE_URL elsewhere)"
        )
    ctx, counts = _prepare(engine, patients=patients, seed=seed, today=today)
    with engine.connect() as conn, conn.begin():
        pg = conn.dialect.name == "postgresql"
        if pg:
            # A second seed started at the same time waits here, then finds the first one's patients.
            conn.exec_driver_sql("LOCK TABLE patients IN SHARE ROW EXCLUSIVE MODE")
        existing = conn.execute(select(func.count()).select_from(Patient)).scalar_one()
        if existing:
            raise SeedError(f"database already has {existing} patients; demo data was not loaded")
        for t in BULK_TABLES:
            top = conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {t}").scalar_one()
            ctx.next_id[t] = int(top) + 1
        restore_keys: list[str] = []
        restore_fks: list[str] = []
        if pg:
            # Bulk-load settings for this transaction only: memory for the index builds at the end.
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '2GB'")
            # The foreign-key checks at the end are hash joins over millions of keys: keep them in memory.
            conn.exec_driver_sql("SET LOCAL work_mem = '512MB'")
            restore_keys, restore_fks = _pg_drop_secondary(conn, BULK_TABLES)
        writer = _Writer(conn)
        try:
            done = 0
            chunk_no = 0
            first = ctx.next_id["patients"]
            while done < patients:
                n = min(CHUNK_PATIENTS, patients - done)
                ctx.next_id["patients"] = first + done + n
                writer.write(_gen_chunk(ctx, chunk_no, first + done, n))
                done += n
                chunk_no += 1
                if progress is not None:
                    progress(writer.patients_written, patients)
        finally:
            writer.close()
        if progress is not None:
            progress(writer.patients_written, patients)
        if pg:
            _pg_restore(conn, restore_keys, restore_fks, BULK_TABLES)
        conn.execute(insert(AuditLog).values(
            at=datetime.combine(today, time(0, 0)), user_id=None, username=None, action="seed_demo",
            entity="database", entity_id=None, patient_id=None,
            detail={"patients": patients, "seed": seed, "today": today.isoformat(), "rows": writer.counts},
        ))
        if not pg:
            # Fresh statistics, or the first dashboards plan for empty tables (PostgreSQL got them above).
            conn.exec_driver_sql("ANALYZE")
    counts.update(writer.counts)
    counts["audit_log"] = 1
    return counts

