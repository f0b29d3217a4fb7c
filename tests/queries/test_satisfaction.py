"""Satisfaction queries on both engines: NPS groupings with n and intervals, HCAHPS top-box, response rate,
comments, drill-down, recovery statistics and the CSV export rows."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import AuditLog, SurveyInvitation, SurveyResponse
from queries import satisfaction as sq
from queries.filters import DataScope, scope_for
from queries.metrics import NpsResult
from services import recovery
from tests.factories import NOW, create_patient, create_user, department
from tests.factories_satisfaction import satisfaction, submit

ALL = DataScope("manager", None)
YEAR = sq.SurveyFilter(date(2026, 1, 1), date(2026, 12, 31))


def _seed(session: Session) -> tuple[int, int]:
    card = department(session, "CARD").id
    endo = department(session, "ENDO").id
    # CARD: March 10, 9, 8, 3 ; April 10, 6 (doctor 李医生, kiosk) ; ENDO: May 9, 9, 0 (wechat)
    for score, day in ((10, 1), (9, 2), (8, 3), (3, 4)):
        submit(session, score, at=datetime(2026, 3, day, 9), department_id=card, doctor_name="王医生",
               channel="kiosk", comment=f"March comment {score}")
    for score in (10, 6):
        submit(session, score, at=datetime(2026, 4, 10, 9), department_id=card, doctor_name="李医生", channel="kiosk",
               comment="waiting too long" if score == 6 else "great nurses")
    for score in (9, 9, 0):
        submit(session, score, at=datetime(2026, 5, 20, 23, 59), department_id=endo, channel="wechat",
               comment="态度很差" if score == 0 else None)
    submit(session, 10, at=datetime(2025, 12, 31, 23, 59), department_id=card)  # outside the year
    return card, endo


def test_nps_by_month_quarter_department_doctor_channel(session: Session) -> None:
    card, endo = _seed(session)
    conn = session.connection()
    month = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by="month")
    assert list(month["key"]) == ["2026-03", "2026-04", "2026-05"]
    assert list(month["responses"]) == [4, 2, 3]
    march = month.iloc[0]
    assert (march["promoters"], march["passives"], march["detractors"]) == (2, 1, 1)
    assert march["nps"] == pytest.approx(25.0)
    assert march["promoter_pct"] == pytest.approx(50.0) and march["passive_pct"] == pytest.approx(25.0)
    assert march["ci_low"] < 25.0 < march["ci_high"] and bool(march["small_sample"])

    quarter = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by="quarter")
    assert list(quarter["key"]) == ["2026-Q1", "2026-Q2"]
    assert list(quarter["responses"]) == [4, 5]
    assert quarter.iloc[1]["nps"] == pytest.approx((3 - 2) / 5 * 100)

    dept = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by="department", lang="en").set_index("key")
    assert dept.loc[card, "responses"] == 6 and dept.loc[card, "nps"] == pytest.approx((3 - 2) / 6 * 100)
    assert dept.loc[endo, "nps"] == pytest.approx((2 - 1) / 3 * 100)
    assert dept.loc[card, "label"] == "Cardiology"

    doctor = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by="doctor").set_index("key")
    assert doctor.loc["王医生", "responses"] == 4 and doctor.loc["李医生", "nps"] == pytest.approx(0.0)

    channel = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by="channel", lang="zh_CN").set_index("key")
    assert channel.loc["wechat", "responses"] == 3 and channel.loc["wechat", "label"] == "微信"

    summary = sq.nps_summary(conn=conn, f=YEAR, scope=ALL)
    assert summary.responses == 9 and summary.nps == pytest.approx((5 - 3) / 9 * 100)

    grid = sq.month_by_department(conn=conn, f=YEAR, scope=ALL)
    assert len(grid) == 3 and int(grid["responses"].sum()) == 9


def test_filters_and_scope(session: Session) -> None:
    card, endo = _seed(session)
    conn = session.connection()
    nurse_scope = scope_for(role="nurse", department_id=endo)
    assert sq.nps_summary(conn=conn, f=YEAR, scope=nurse_scope).responses == 3
    only_card = sq.SurveyFilter(date(2026, 1, 1), date(2026, 12, 31), (card,), ("Cardiology",))
    assert sq.nps_summary(conn=conn, f=only_card, scope=ALL).responses == 6
    assert sq.nps_summary(conn=conn, f=only_card, scope=nurse_scope).responses == 0  # scope always narrows
    kiosk = sq.SurveyFilter(date(2026, 1, 1), date(2026, 12, 31), channel="kiosk", doctor="李医生")
    assert sq.nps_summary(conn=conn, f=kiosk, scope=ALL).responses == 2
    # The last day counts whole: 23:59 on 20 May is inside a filter ending on 20 May.
    may20 = sq.SurveyFilter(date(2026, 5, 20), date(2026, 5, 20))
    assert sq.nps_summary(conn=conn, f=may20, scope=ALL).responses == 3
    text = kiosk.describe("en")
    assert "All departments" in text and "Kiosk" in text and "李医生" in text and "2026-01-01" in text
    assert "自助机" in kiosk.describe("zh_CN")


def test_topbox_leaves_skipped_items_out_of_the_denominator(session: Session) -> None:
    card = department(session, "CARD").id
    satisfaction(session)
    submit(session, 9, answers={"doctors": 5, "waiting": 5}, department_id=card)
    submit(session, 9, answers={"doctors": 4, "waiting": None}, department_id=card)  # waiting skipped
    submit(session, 9, answers={"doctors": 5}, department_id=card)                  # waiting skipped
    submit(session, 9, answers={"doctors": 3, "waiting": 2}, department_id=card)
    df = sq.topbox(conn=session.connection(), f=sq.SurveyFilter(date(2026, 1, 1), date(2026, 12, 31)),
                   scope=ALL, lang="en").set_index("item_code")
    assert (df.loc["doctors", "answers"], df.loc["doctors", "top_box"]) == (4, 2)
    assert df.loc["doctors", "pct"] == pytest.approx(50.0)
    assert (df.loc["waiting", "answers"], df.loc["waiting", "top_box"]) == (2, 1)
    assert df.loc["waiting", "pct"] == pytest.approx(50.0)  # not 25%: skipped answers are not "not top box"
    assert df.loc["nps", "pct"] == pytest.approx(100.0)     # 9-10 is top box on the 0-10 item
    assert "nurses" not in df.index                          # nobody answered it: no row, not 0%


def test_response_rate(session: Session) -> None:
    card = department(session, "CARD").id
    q = satisfaction(session)
    invs = [SurveyInvitation(questionnaire_id=q.id, department_id=card, channel="sms", sent_at=NOW)
            for _ in range(4)]
    session.add_all(invs)
    session.flush()
    submit(session, 9, invitation_id=invs[0].id, department_id=card)
    submit(session, 3, invitation_id=invs[1].id, department_id=card)
    df = sq.response_rate(conn=session.connection(), f=YEAR, scope=ALL)
    assert list(df["invited"]) == [4] and list(df["responded"]) == [2] and df.iloc[0]["rate"] == pytest.approx(50.0)
    empty = sq.response_rate(conn=session.connection(), f=sq.SurveyFilter(date(2020, 1, 1), date(2020, 2, 1)),
                             scope=ALL)
    assert empty.empty


def test_comments_by_band_department_and_keyword(session: Session) -> None:
    card, endo = _seed(session)
    conn = session.connection()
    rows, total = sq.comments(conn=conn, f=YEAR, scope=ALL)
    assert total == 7 and len(rows) == 7  # 6 CARD comments + 1 ENDO; empty comments are not listed
    assert rows.iloc[0]["comment"] == "态度很差"  # newest first
    det, n = sq.comments(conn=conn, f=YEAR, scope=ALL, band="detractor")
    assert n == 3 and set(det["nps_score"]) <= {0, 1, 2, 3, 4, 5, 6}
    kw, n = sq.comments(conn=conn, f=YEAR, scope=ALL, keyword="WAITING")
    assert n == 1 and kw.iloc[0]["comment"] == "waiting too long"
    assert sq.comments(conn=conn, f=YEAR, scope=ALL, keyword="100%")[1] == 0  # % is a literal, not a wildcard
    f_endo = sq.SurveyFilter(date(2026, 1, 1), date(2026, 12, 31), (endo,))
    assert sq.comments(conn=conn, f=f_endo, scope=ALL, band="passive")[1] == 0
    page, n = sq.comments(conn=conn, f=YEAR, scope=ALL, limit=2, offset=2)
    assert n == 7 and len(page) == 2


def test_drill_down_matches_the_point(session: Session) -> None:
    card, endo = _seed(session)
    conn = session.connection()
    for by in sq.GROUPS:
        points = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by=by)
        for point in points.to_dict("records"):
            rows, total = sq.drill_down(conn=conn, f=YEAR, scope=ALL, by=by, key=point["key"])
            assert total == point["responses"], (by, point["key"])
            assert len(rows) == total
    rows, total = sq.drill_down(conn=conn, f=YEAR, scope=ALL, by="month", key="2026-03", band="detractor")
    assert total == 1 and rows.iloc[0]["nps_score"] == 3
    rows, total = sq.drill_down(conn=conn, f=YEAR, scope=ALL, by="quarter", key="2026-Q4")
    assert total == 0


def test_recovery_stats(session: Session) -> None:
    dept = department(session, "CARD")
    nurse = create_user(session, role="nurse", department_id=dept.id)
    cases = []
    for i in range(4):
        p = create_patient(session, department_id=dept.id, nurse_id=nurse.id)
        c = submit(session, 2, patient_id=p.id, at=NOW + timedelta(minutes=i)).case
        assert c is not None
        cases.append(c)
    recovery.close_case(session, case_id=cases[0].id, expected_version=cases[0].version, root_cause="waiting",
                        resolution="called", now=cases[0].opened_at + timedelta(hours=10))
    recovery.close_case(session, case_id=cases[1].id, expected_version=cases[1].version, root_cause="attitude",
                        resolution="called", now=cases[1].opened_at + timedelta(hours=60))
    conn = session.connection()
    now = NOW + timedelta(hours=72)
    s = sq.recovery_stats(conn=conn, f=YEAR, scope=ALL, now=now)
    assert (s.opened, s.open, s.overdue, s.closed, s.closed_within_sla) == (4, 2, 2, 2, 1)
    assert s.closed_loop_rate == pytest.approx(0.5) and s.within_sla_rate == pytest.approx(0.5)
    assert s.mean_hours_to_close == pytest.approx(35.0, abs=0.01)
    early = sq.recovery_stats(conn=conn, f=YEAR, scope=ALL, now=NOW + timedelta(hours=1))
    assert early.overdue == 0
    df, total = sq.recovery_cases(conn=conn, f=YEAR, scope=ALL, now=now, status="active")
    assert total == 2 and bool(df["overdue"].all())
    df, total = sq.recovery_cases(conn=conn, f=YEAR, scope=ALL, now=now)
    assert total == 4 and list(df["status"])[-2:] == ["closed", "closed"]
    assert sq.recovery_cases(conn=conn, f=YEAR, scope=ALL, now=now, owner_id=nurse.id)[1] == 4
    causes = sq.recovery_by_root_cause(conn=conn, f=YEAR, scope=ALL)
    assert set(causes["root_cause"]) == {"waiting", "attitude"}
    empty = sq.recovery_stats(conn=conn, f=sq.SurveyFilter(date(2020, 1, 1), date(2020, 1, 2)), scope=ALL, now=now)
    assert empty.opened == 0 and empty.closed_loop_rate is None and empty.mean_hours_to_close is None


def test_export_rows(session: Session) -> None:
    _seed(session)
    conn = session.connection()
    rows = sq.export_rows(conn=conn, f=YEAR, scope=ALL, by="month")
    assert rows[0] == {"period": "2026-03", "responses": 4, "promoters": 2, "passives": 1, "detractors": 1,
                       "nps": "25.0"}
    rows = sq.export_rows(conn=conn, f=YEAR, scope=ALL, by="quarter")
    assert [r["period"] for r in rows] == ["2026-Q1", "2026-Q2"] and rows[1]["nps"] == "20.0"
    rows = sq.export_rows(conn=conn, f=YEAR, scope=ALL, by="department")
    assert {r["department"] for r in rows} == {"Cardiology", "Endocrinology"}
    assert {r["nps"] for r in rows} == {"16.7", "33.3"}


def test_quarter_of() -> None:
    assert [sq.quarter_of(f"2026-{m:02d}") for m in (1, 3, 4, 6, 7, 9, 10, 12)] == [
        "2026-Q1", "2026-Q1", "2026-Q2", "2026-Q2", "2026-Q3", "2026-Q3", "2026-Q4", "2026-Q4"]


def test_manage_export_nps(sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import manage

    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    with Session(sqlite_engine) as s, s.begin():
        _seed(s)
    out = tmp_path / "nps.csv"
    code = manage.main(["export", "nps", "--by", "quarter", "--format", "csv", "--out", str(out),
                        "--from", "2026-01-01", "--to", "2026-12-31"])
    assert code == 0
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"period": "2026-Q1", "responses": "4", "promoters": "2", "passives": "1", "detractors": "1", "nps": "25.0"},
        {"period": "2026-Q2", "responses": "5", "promoters": "3", "passives": "0", "detractors": "2", "nps": "20.0"},
    ]
    out2 = tmp_path / "dept.csv"
    assert manage.main(["export", "satisfaction", "--by", "department", "--out", str(out2), "--from", "2026-01-01",
                        "--to", "2026-12-31", "--department", "ENDO"]) == 0
    with out2.open(encoding="utf-8-sig", newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"department": "Endocrinology", "responses": "3", "promoters": "2",
                                             "passives": "0", "detractors": "1", "nps": "33.3"}]
    assert manage.main(["export", "nps", "--out", str(out2), "--department", "NOPE"]) == 2
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "export")) == 2


def test_rollup_and_raw_tail_agree_before_and_after_rebuild(session: Session) -> None:
    from db.models import NpsDaily, NpsRollupState
    from services import nps_rollup
    from tests.factories import create_response

    card, endo = _seed(session)  # through the service: counted in nps_daily as they arrive
    conn = session.connection()
    state = session.get(NpsRollupState, 1)
    assert state is not None and state.max_response_id == session.scalar(select(func.max(SurveyResponse.id)))
    assert session.scalar(select(func.sum(NpsDaily.promoters + NpsDaily.passives + NpsDaily.detractors))) == 10

    # A bulk load that bypasses the service (like the demo seed): the readers add it from survey_responses.
    for score in (10, 2, 7):
        create_response(session, nps_score=score, department_id=endo, channel="sms",
                        submitted_at=datetime(2026, 5, 2, 8))
    submit(session, 9, at=datetime(2026, 6, 1, 8), department_id=card, channel="kiosk")  # rollup stays stale

    def snapshot() -> list[object]:
        return [
            sq.nps_summary(conn=conn, f=YEAR, scope=ALL),
            *[sq.nps_by(conn=conn, f=YEAR, scope=ALL, by=by).drop(columns=["small_sample"]).to_dict("records")
              for by in ("month", "quarter", "department", "channel")],
            sq.month_by_department(conn=conn, f=YEAR, scope=ALL).to_dict("records"),
            sq.nps_summary(conn=conn, f=sq.SurveyFilter(date(2026, 1, 1), date(2026, 12, 31), (endo,),
                                                        channel="sms"), scope=ALL),
        ]

    before = snapshot()
    summary = before[0]
    assert isinstance(summary, NpsResult)
    assert summary.responses == 13 and (summary.promoters, summary.passives, summary.detractors) == (7, 2, 4)
    assert nps_rollup.rebuild(session) > 0
    assert session.get(NpsRollupState, 1).max_response_id == session.scalar(  # type: ignore[union-attr]
        select(func.max(SurveyResponse.id)))
    assert snapshot() == before
    # Doctor filters read survey_responses only and agree with the rollup-backed figures.
    doc = sq.nps_by(conn=conn, f=YEAR, scope=ALL, by="doctor")
    assert int(doc["responses"].sum()) == 13
