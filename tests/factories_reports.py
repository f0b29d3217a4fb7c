"""Factories for the report tests: a patient with several years of data, and the rows the reports print."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    AdviceItem,
    FollowupRecord,
    HealthSummary,
    Indicator,
    Intervention,
    Observation,
    Patient,
    PatientTag,
    RiskAssessment,
    ServiceRecoveryCase,
    TagRule,
    WellnessPlan,
)
from tests.factories import create_patient, create_response, create_task, department

NOW = datetime(2026, 6, 15, 10, 0, 0)
_n = iter(range(1, 10**9))


def observe(session: Session, patient_id: int, code: str, value: float, at: datetime) -> None:
    ind = session.scalars(select(Indicator.id).where(Indicator.code == code)).one()
    session.add(Observation(patient_id=patient_id, indicator_id=ind, value=value, observed_at=at, source="test",
                            source_ref=f"rep{next(_n)}"))


def rich_patient(session: Session, **overrides: Any) -> Patient:
    """李秀英 with five years of checks, tags, a risk assessment, advice, a plan, follow-ups and a summary."""
    dept = department(session, "CARD")
    values: dict[str, Any] = {"name": "李秀英", "sex": "F", "birth_date": date(1958, 3, 9), "phone": "13812345678",
                              "id_number": "110105195803091234", "department_id": dept.id}
    values.update(overrides)
    p = create_patient(session, **values)
    for year, sbp, fpg in ((2021, 128, 5.6), (2022, 134, 5.9), (2023, 141, 6.3), (2024, 147, 6.8), (2026, 152, 7.4)):
        at = datetime(year, 4, 12, 9, 0)
        observe(session, p.id, "SBP", sbp, at)
        observe(session, p.id, "DBP", sbp - 60, at)
        observe(session, p.id, "FPG", fpg, at)
        observe(session, p.id, "LDL", 3.1 + (year - 2021) * 0.2, at)
        observe(session, p.id, "BMI", 24.5 + (year - 2021) * 0.3, at)
    observe(session, p.id, "HDL", 1.32, datetime(2026, 4, 12, 9, 0))
    session.add(TagRule(code="hypertension_rpt", version=1, name_zh="高血压", name_en="Hypertension",
                        expression={"all": []}, created_at=NOW))
    session.add(PatientTag(patient_id=p.id, tag_code="hypertension_rpt", since=datetime(2024, 5, 1)))
    session.add(RiskAssessment(patient_id=p.id, model="pce", model_version="ACC/AHA 2013",
                               assessed_at=datetime(2026, 4, 13), score=18.4, level="intermediate", inputs={},
                               factors=[{"name": "age", "value": 68.0, "contribution": 3.1},
                                        {"name": "smoker", "value": False, "contribution": 0.0}],
                               missing=["race"]))
    session.add(AdviceItem(code="rpt_salt", category="diet", title_zh="减少钠盐摄入", title_en="Eat less salt",
                           body_zh="每日食盐不超过5克。" * 12, body_en="No more than 5 g of salt a day. " * 12,
                           applies_to={"tags": ["hypertension_rpt"]}, source="中国高血压防治指南（2018年修订版）",
                           active=True))
    session.add(WellnessPlan(patient_id=p.id, title="血压管理计划", start_on=date(2026, 3, 1),
                             end_on=date(2026, 12, 31), status="active", created_at=NOW, advice_codes=["rpt_salt"],
                             goals=[{"indicator": "SBP", "cmp": "<", "target": 140, "by": "2026-12-31"}]))
    task = create_task(session, patient_id=p.id, department_id=dept.id, due_date=date(2026, 5, 2), status="done",
                       completed_at=datetime(2026, 5, 2, 15, 0))
    session.add(FollowupRecord(task_id=task.id, patient_id=p.id, contacted_at=datetime(2026, 5, 2, 15, 0),
                               method="phone", outcome="reached", notes="血压控制欠佳，建议复诊调整用药。"))
    session.add(Intervention(patient_id=p.id, kind="diet", content="低盐饮食指导", goal="收缩压低于140",
                             performed_on=date(2026, 5, 2), department_id=dept.id, created_at=NOW))
    session.add(HealthSummary(patient_id=p.id, period_from=date(2025, 6, 1), period_to=date(2026, 5, 31),
                              language="zh_CN", text="本年度血压与血糖呈上升趋势，已开始生活方式干预。",
                              created_at=NOW))
    session.flush()
    return p


def quality_data(session: Session) -> int:
    """NPS answers, a detractor case, tasks with contacts, interventions and risk rows in June 2026; the
    department id."""
    dept = department(session, "CARD")
    for i, score in enumerate([10, 9, 9, 8, 7, 3, 10, 6]):
        create_response(session, nps_score=score, department_id=dept.id,
                        submitted_at=NOW - timedelta(days=2 * i))
    detractor = create_response(session, nps_score=2, department_id=dept.id, submitted_at=NOW - timedelta(days=1))
    session.add(ServiceRecoveryCase(response_id=detractor.id, department_id=dept.id, opened_at=NOW - timedelta(days=1),
                                    sla_due_at=NOW + timedelta(days=2), status="closed",
                                    closed_at=NOW - timedelta(hours=12)))
    p = create_patient(session, department_id=dept.id, name="王小明")
    for status in ("done", "done", "pending", "cancelled"):
        t = create_task(session, patient_id=p.id, department_id=dept.id, due_date=date(2026, 6, 10), status=status,
                        attempts=1, completed_at=datetime(2026, 6, 10, 12) if status == "done" else None)
        session.add(FollowupRecord(task_id=t.id, patient_id=p.id, contacted_at=datetime(2026, 6, 10, 11),
                                   method="phone", outcome="reached" if status == "done" else "no_answer"))
    session.add(Intervention(patient_id=p.id, kind="exercise", content="步行", performed_on=date(2026, 6, 11),
                             department_id=dept.id, created_at=NOW))
    session.add(RiskAssessment(patient_id=p.id, model="findrisc", model_version="v", assessed_at=NOW, score=14,
                               level="moderate", inputs={}, factors=[]))
    session.flush()
    return dept.id
