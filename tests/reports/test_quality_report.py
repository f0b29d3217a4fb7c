"""The quality summary PDF, its figures' queries on both engines, and `manage.py report` (exit codes, audit)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import manage
from config import Settings
from db.models import AuditLog, Department, RiskAssessment
from queries import report_data
from queries.filters import DataScope, PeriodFilter
from reports.quality_report import build_quality_report
from services.errors import UserError
from tests.factories import create_patient
from tests.factories_reports import NOW, quality_data, rich_patient
from tests.reports.pdftext import pdf_text, squash

SETTINGS = Settings(database_url="sqlite://", demo=True, cookie_key="x" * 40)
ALL = DataScope("quality", None)
JUNE = PeriodFilter(date(2026, 6, 1), date(2026, 6, 30))


def test_followup_rates_and_breakdowns(session: Session) -> None:
    dept_id = quality_data(session)
    conn = session.connection()
    by_dept = report_data.followup_rates(conn=conn, f=JUNE, scope=ALL, by="department", lang="en",
                                         today=NOW.date())
    row = by_dept[by_dept["key"] == dept_id].iloc[0]
    # 3 tasks due (the cancelled one left out), 2 done on the day, 1 pending past its due date; all 3 attempted,
    # the 2 done ones reached.
    assert (row["due"], row["on_time"], row["overdue"], row["attempted"], row["reached"]) == (3, 2, 1, 3, 2)
    assert row["on_time_rate"] == pytest.approx(2 / 3)
    assert row["contact_rate"] == pytest.approx(2 / 3)
    by_nurse = report_data.followup_rates(conn=conn, f=JUNE, scope=ALL, by="nurse", lang="en", today=NOW.date())
    assert int(by_nurse["due"].sum()) == 3
    kinds = report_data.interventions_by_kind(conn=conn, f=JUNE, scope=ALL)
    assert kinds.to_dict("records") == [{"kind": "exercise", "count": 1, "patients": 1}]
    risk = report_data.risk_distribution(conn=conn, f=JUNE, scope=ALL)
    assert risk.to_dict("records") == [{"model": "findrisc", "level": "moderate", "patients": 1}]
    # a nurse of another department sees none of it
    other = DataScope("nurse", (dept_id + 999,))
    assert report_data.followup_rates(conn=conn, f=JUNE, scope=other, by="department", lang="en",
                                      today=NOW.date()).empty


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_quality_pdf(session: Session, lang: str) -> None:
    dept_id = quality_data(session)
    pdf = build_quality_report(session.connection(), date_from=date(2026, 6, 1), date_to=date(2026, 6, 30),
                               department_id=dept_id, lang=lang, now=NOW, settings=SETTINGS)
    text = squash(pdf_text(pdf))
    dept = session.get(Department, dept_id)
    assert dept is not None
    expected = (["质量汇总", "净推荐值", "n=9", "推荐者4", "贬损者3", "新开1", "已关闭1", "66.7", "按时完成率%", "运动",
                 "FINDRISC", "指标定义", squash(dept.name_zh)] if lang == "zh_CN" else
                ["Qualitysummary", "NetPromoterScore", "n=9", "4promoters", "3detractors", "Opened1", "closed1",
                 "66.7", "Ontime%", "Exercise", "FINDRISC", "Definitions", squash(dept.name_en)])
    for phrase in expected:
        assert phrase in text, phrase


def test_quality_pdf_rejects_bad_input(session: Session) -> None:
    with pytest.raises(UserError) as exc:
        build_quality_report(session.connection(), date_from=date(2026, 7, 1), date_to=date(2026, 6, 1),
                             department_id=None, lang="en", now=NOW, settings=SETTINGS)
    assert exc.value.key == "reports.bad_period"
    with pytest.raises(UserError) as exc:
        build_quality_report(session.connection(), date_from=date(2026, 6, 1), date_to=date(2026, 6, 30),
                             department_id=987654, lang="en", now=NOW, settings=SETTINGS)
    assert exc.value.key == "reports.unknown_department"


def test_empty_period_still_makes_a_report(session: Session) -> None:
    pdf = build_quality_report(session.connection(), date_from=date(2020, 1, 1), date_to=date(2020, 1, 31),
                               department_id=None, lang="en", now=NOW, settings=SETTINGS)
    assert "No NPS answers in this period." in pdf_text(pdf)


# --- command line ----------------------------------------------------------------------------------------


@pytest.fixture
def cli_db(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    return sqlite_engine


def test_cli_patient_report(cli_db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Session(cli_db) as s, s.begin():
        card = rich_patient(s).card_no
    out = tmp_path / "r.pdf"
    assert manage.main(["report", "patient", card, "--out", str(out), "--lang", "en"]) == 0
    assert "Systolic blood pressure" in pdf_text(out.read_bytes())
    with Session(cli_db) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "report")).one()
    assert row.username == "manage.py" and row.entity_id == card and row.patient_id is not None
    assert row.detail is not None and row.detail["filter"] == f"card {card}" and row.detail["os_user"]
    assert row.detail["out"] == str(out.resolve()) and row.detail["lang"] == "en"
    assert manage.main(["report", "patient", "NO-SUCH", "--out", str(tmp_path / "x.pdf"), "--lang", "en"]) == 1
    assert "No patient has the card number NO-SUCH." in capsys.readouterr().err
    assert not (tmp_path / "x.pdf").exists()


def test_cli_quality_report(cli_db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Session(cli_db) as s, s.begin():
        quality_data(s)
    out = tmp_path / "q.pdf"
    args = ["report", "quality", "--from", "2026-06-01", "--to", "2026-06-30", "--out", str(out), "--lang", "en"]
    assert manage.main([*args, "--department", "card"]) == 0
    assert "Net Promoter Score" in pdf_text(out.read_bytes())
    with Session(cli_db) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "report")).one()
    assert row.username == "manage.py" and row.entity == "quality_report" and row.detail is not None
    assert row.detail["filter"] == "2026-06-01..2026-06-30 CARD" and row.detail["os_user"]
    assert manage.main([*args, "--department", "NOPE"]) == 1
    assert "No department has the code NOPE." in capsys.readouterr().err
    bad = ["report", "quality", "--from", "2026-07-01", "--to", "2026-06-01", "--out", str(out)]
    assert manage.main(bad) == 2
    with pytest.raises(SystemExit) as exc:
        manage.main(["report", "quality", "--from", "2026-06-01", "--out", str(out)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        manage.main(["report", "quality", "--from", "June", "--to", "2026-06-30", "--out", str(out)])
    assert exc.value.code == 2


def test_risk_distribution_counts_each_patient_once_at_the_latest_level(session: Session) -> None:
    dept_id = quality_data(session)  # one patient: findrisc "moderate" at NOW
    other = create_patient(session, department_id=dept_id)
    for patient_id, at, level in ((other.id, NOW - timedelta(days=20), "low"), (other.id, NOW, "high"),
                                  (other.id, NOW, "very_high"),  # same time: the later row (higher id) wins
                                  (other.id, NOW - timedelta(days=60), "low")):  # before June: not counted
        session.add(RiskAssessment(patient_id=patient_id, model="findrisc", model_version="v", assessed_at=at,
                                   score=1, level=level, inputs={}, factors=[]))
    session.flush()
    conn = session.connection()
    risk = report_data.risk_distribution(conn=conn, f=JUNE, scope=ALL)
    assert risk.to_dict("records") == [{"model": "findrisc", "level": "moderate", "patients": 1},
                                       {"model": "findrisc", "level": "very_high", "patients": 1}]
    dept_only = PeriodFilter(JUNE.date_from, JUNE.date_to, (dept_id + 999,), ("none",))
    assert report_data.risk_distribution(conn=conn, f=dept_only, scope=ALL).empty
