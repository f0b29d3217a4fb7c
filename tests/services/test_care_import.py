"""The patient import re-evaluates the patients it touched: a CSV of two raised readings makes a patient
hypertensive (tag and risk rows) without waiting for run-automation; a dry run changes nothing."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import PatientTag, RiskAssessment
from services import clock
from services.importers.base import ImportOptions
from services.importers.runner import run_import
from tests.factories import create_patient


def _csv(tmp_path: Path, card: str) -> Path:
    today = clock.today()
    f = tmp_path / "bp.csv"
    lines = ["卡号,项目,结果,单位,日期"]
    for days, sbp in ((40, 152), (10, 158)):
        lines.append(f"{card},SBP,{sbp},mmHg,{(today - timedelta(days=days)).isoformat()}")
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f


def _open_tags(session: Session, pid: int) -> set[str]:
    return set(session.scalars(select(PatientTag.tag_code).where(PatientTag.patient_id == pid,
                                                                 PatientTag.until.is_(None))))


def test_import_makes_a_patient_hypertensive(session: Session, tmp_path: Path) -> None:
    p = create_patient(session, card_no="CARE0001", sex="M", birth_date=date(1962, 3, 1))
    other = create_patient(session, card_no="CARE0002")
    f = _csv(tmp_path, "CARE0001")
    dry = run_import(session, [f], options=ImportOptions(dry_run=True))
    assert dry.rejected == [] and _open_tags(session, p.id) == set()
    result = run_import(session, [f])
    assert result.rejected == [] and result.imported == 2
    tags_now = _open_tags(session, p.id)
    assert {"hypertension", "htn_grade_1"} <= tags_now
    # Risk was assessed for the imported patient only (every model names what it still needs).
    assert set(session.scalars(select(RiskAssessment.patient_id).distinct())) == {p.id}
    assert _open_tags(session, other.id) == set()
    # Importing the same file again changes nothing.
    rows = session.scalar(select(func.count()).select_from(RiskAssessment))
    run_import(session, [f])
    assert session.scalar(select(func.count()).select_from(RiskAssessment)) == rows
    assert _open_tags(session, p.id) == tags_now
