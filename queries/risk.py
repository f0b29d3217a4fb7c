"""Read side of risk: latest level per patient by department, drill-down lists, and one patient's results."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Subquery, func, select, true

from db.models import Department, Patient, RiskAssessment
from queries.filters import DataScope, has_open_tag


def _latest(model: str) -> Subquery:
    return (
        select(
            RiskAssessment.patient_id, RiskAssessment.score, RiskAssessment.level, RiskAssessment.assessed_at,
            RiskAssessment.factors, RiskAssessment.model_version,
            func.row_number().over(partition_by=RiskAssessment.patient_id,
                                   order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
            .label("rn"),
        )
        .where(RiskAssessment.model == model)
        .subquery()
    )


def _scope(scope: DataScope) -> ColumnElement[bool]:
    if scope.department_ids is None:
        return true()
    return Patient.department_id.in_(scope.department_ids)


def distribution(*, conn: Connection, model: str, scope: DataScope, lang: str, tag: str | None = None
                 ) -> pd.DataFrame:
    """One row per (department, level): how many patients' latest result of the model has that level (of the
    patients holding an open `tag`, if given)."""
    latest = _latest(model)
    dept_name = Department.name_zh if lang == "zh_CN" else Department.name_en
    level = func.coalesce(latest.c.level, "none")
    rows = conn.execute(
        select(Patient.department_id, dept_name.label("department"), level.label("level"),
               func.count().label("patients"))
        .select_from(latest)
        .join(Patient, Patient.id == latest.c.patient_id)
        .outerjoin(Department, Department.id == Patient.department_id)
        .where(latest.c.rn == 1, _scope(scope), has_open_tag(Patient.id, tag))
        .group_by(Patient.department_id, dept_name, level)
        .order_by(dept_name, level)
    ).all()
    return pd.DataFrame(rows, columns=["department_id", "department", "level", "patients"])


def drilldown(*, conn: Connection, model: str, scope: DataScope, department_id: int | None, level: str,
              limit: int = 200, tag: str | None = None) -> pd.DataFrame:
    """Patients of one department and level, highest score first (at most `limit`)."""
    latest = _latest(model)
    dept = Patient.department_id.is_(None) if department_id is None else Patient.department_id == department_id
    lvl = latest.c.level.is_(None) if level == "none" else latest.c.level == level
    rows = conn.execute(
        select(Patient.id, Patient.card_no, Patient.name, latest.c.score, latest.c.level, latest.c.assessed_at,
               latest.c.factors)
        .select_from(latest)
        .join(Patient, Patient.id == latest.c.patient_id)
        .where(latest.c.rn == 1, _scope(scope), dept, lvl, has_open_tag(Patient.id, tag))
        .order_by(latest.c.score.desc(), Patient.id)
        .limit(limit)
    ).all()
    return pd.DataFrame(rows, columns=["patient_id", "card_no", "name", "score", "level", "assessed_at", "factors"])


def patient_latest(*, conn: Connection, patient_id: int) -> list[dict[str, Any]]:
    """The newest stored result of each model for one patient."""
    ranked = (
        select(RiskAssessment,
               func.row_number().over(partition_by=RiskAssessment.model,
                                      order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
               .label("rn"))
        .where(RiskAssessment.patient_id == patient_id)
        .subquery()
    )
    rows = conn.execute(select(ranked).where(ranked.c.rn == 1).order_by(ranked.c.model)).mappings().all()
    return [dict(r) for r in rows]
