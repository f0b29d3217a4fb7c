"""CSV/Excel exports: the filter description travels with the data, formulas are neutralised, audit rows."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime

import pandas as pd
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from db.models import AuditLog
from reports.batch import build_batch
from reports.tables import file_name, to_csv_bytes, to_xlsx_bytes
from services.auth import CurrentUser
from services.exports import record_export, record_report
from tests.factories import create_patient, create_user
from tests.factories_reports import NOW
from tests.reports.pdftext import pdf_text

DF = pd.DataFrame({"科室": ["心内科", "=HYPERLINK(\"x\")"], "n": [3, 4], "at": [datetime(2026, 6, 1), NOW]})
DESCRIPTION = "2 patients, 心内科, 2026-01-01 to 2026-06-30"


def test_csv_has_bom_description_and_neutralised_formula() -> None:
    data = to_csv_bytes(DF, DESCRIPTION)
    assert data.startswith("\ufeff".encode())
    text = data.decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0] == f"# {DESCRIPTION}"
    assert lines[1] == "科室,n,at"
    assert "'=HYPERLINK" in text
    back = pd.read_csv(io.StringIO(text), comment="#")
    assert list(back["n"]) == [3, 4]


def test_xlsx_has_description_in_a1_and_the_table_below() -> None:
    wb = load_workbook(io.BytesIO(to_xlsx_bytes(DF, DESCRIPTION, sheet="nps/by:month")))
    ws = wb.active
    assert ws is not None
    assert ws.title == "nps_by_month"
    assert ws["A1"].value == DESCRIPTION
    assert [c.value for c in ws[3]] == ["科室", "n", "at"]
    assert ws["A4"].value == "心内科" and ws["A5"].value.startswith("'=")
    assert ws["C4"].value == datetime(2026, 6, 1)


def test_xlsx_writes_lists_as_text_and_missing_values_as_empty_cells() -> None:
    df = pd.DataFrame({"tags": [["高血压", "糖尿病"], []], "at": [pd.Timestamp("2026-06-01 09:30"), pd.NaT],
                       "score": [1.5, float("nan")]})
    ws = load_workbook(io.BytesIO(to_xlsx_bytes(df, DESCRIPTION))).active
    assert ws is not None
    assert [c.value for c in ws[4]] == ["高血压, 糖尿病", datetime(2026, 6, 1, 9, 30), 1.5]
    assert [c.value for c in ws[5]] == [None, None, None]
    assert ws.freeze_panes == "A4"


def test_file_name_carries_the_filter_and_is_safe() -> None:
    name = file_name("nps", "心内科, 2026-01-01 to 2026-06-30 / a:b", "csv", at=NOW)
    assert name == "careloop-nps-心内科_2026-01-01_to_2026-06-30_a_b-20260615-1000.csv"
    assert "/" not in file_name("x", "../../etc/passwd", "csv")


def test_exports_and_reports_are_audited(session: Session) -> None:
    u = create_user(session, username="quality1", role="quality")
    user = CurrentUser(u.id, u.username, u.display_name, u.role, None)
    record_export(session, user, "nps_by_month", DESCRIPTION, 2, fmt="xlsx")
    record_report(session, None, kind="patient_report", filter_desc="card T1", card_no="T1", lang="en")
    rows = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert rows[-2].action == "export" and rows[-2].detail == {"kind": "nps_by_month", "filter": DESCRIPTION,
                                                               "rows": 2, "format": "xlsx"}
    assert rows[-2].username == "quality1"
    assert rows[-1].action == "report" and rows[-1].username == "manage.py" and rows[-1].entity_id == "T1"


def test_batch_zip_with_progress_and_missing_cards(session: Session) -> None:
    a = create_patient(session, name="钱一")
    b = create_patient(session, name="孙二")
    session.commit()
    seen: list[tuple[int, int]] = []
    engine = session.get_bind()
    settings = Settings(database_url="sqlite://", demo=True, cookie_key="x" * 40)
    data = build_batch(engine, card_nos=[a.card_no, "NOPE", b.card_no], lang="zh_CN", now=NOW,  # type: ignore[arg-type]
                       settings=settings, progress=lambda d, t: seen.append((d, t)))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == sorted([f"{a.card_no}.pdf", f"{b.card_no}.pdf", "missing.txt"])
        assert zf.read("missing.txt").decode() == "NOPE\n"
        assert "钱一" in pdf_text(zf.read(f"{a.card_no}.pdf")).replace(" ", "")
    assert seen == [(1, 3), (2, 3), (3, 3)]
