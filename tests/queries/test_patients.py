"""Search, the 360° reads and indicator trends, on both engines."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import FollowupRecord, Intervention, Message, Patient
from queries import indicators as iq
from queries import patients as pq
from queries.filters import scope_for
from services import patients as svc
from tests.factories import create_patient, create_response, create_task, create_user, department
from tests.factories_patients import ACTOR, add_observation, patient_input, resident_id

TODAY = date(2026, 6, 15)


def _people(session: Session) -> dict[str, int]:
    card = department(session, "CARD")
    endo = department(session, "ENDO")
    a = svc.enrol(session, patient_input(name="张三", phone="13812345678", birth_date=None,
                                         id_number=resident_id(date(1960, 1, 2), "M"), department_id=card.id),
                  actor=ACTOR, card_prefix="CL")
    b = svc.enrol(session, patient_input(name="张三丰", phone="13912345678", department_id=endo.id),
                  actor=ACTOR, card_prefix="CL")
    c = svc.enrol(session, patient_input(name="李小张", phone="13700000000", department_id=card.id),
                  actor=ACTOR, card_prefix="CL")
    return {"a": a.id, "b": b.id, "c": c.id, "card": card.id, "endo": endo.id}


def _ids(session: Session, text: str, **kw: object) -> list[int]:
    df = pq.search_patients(conn=session.connection(), f=pq.SearchFilter(text), **kw)  # type: ignore[arg-type]
    return [int(i) for i in df["id"]]


def test_search_by_every_key(session: Session) -> None:
    p = _people(session)
    a = session.get(Patient, p["a"])
    assert a is not None and a.id_number
    assert _ids(session, a.card_no) == [p["a"]]
    assert _ids(session, a.card_no[:8])[:1] == [p["a"]]
    assert _ids(session, "138123") == [p["a"]]
    assert _ids(session, a.id_number) == [p["a"]]
    assert _ids(session, "张三") == [p["a"], p["b"]]  # prefix
    assert _ids(session, "zs") == [p["a"], p["b"]]  # pinyin initials
    assert _ids(session, "小张") == [p["c"]]  # contains, after the prefix search found nothing
    assert _ids(session, "nobody") == []
    assert _ids(session, "   ") == []
    assert _ids(session, "%") == []


def test_search_is_paged_and_scoped(session: Session) -> None:
    p = _people(session)
    first = pq.search_patients(conn=session.connection(), f=pq.SearchFilter("张三", limit=1, offset=0))
    second = pq.search_patients(conn=session.connection(), f=pq.SearchFilter("张三", limit=1, offset=1))
    assert list(first["id"]) == [p["a"]] and list(second["id"]) == [p["b"]]
    nurse_scope = scope_for(role="nurse", department_id=p["card"])
    assert _ids(session, "张三", scope=nurse_scope) == [p["a"]]
    assert _ids(session, "张三", scope=scope_for(role="manager", department_id=None)) == [p["a"], p["b"]]
    assert pq.in_scope(conn=session.connection(), patient_id=p["b"], scope=nurse_scope, user_id=None) is False


def test_header_with_consents_tags_and_nurse(session: Session) -> None:
    nurse = create_user(session, role="nurse", display_name="护士甲")
    p = svc.enrol(session, patient_input(name="王五", birth_date=date(1960, 6, 16), nurse_id=nurse.id,
                                         consents=("followup",)), actor=ACTOR, card_prefix="CL")
    h = pq.patient_header(conn=session.connection(), patient_id=p.id, today=TODAY)
    assert h is not None
    assert (h.name, h.age, h.nurse_name, h.version) == ("王五", 65, "护士甲", 1)
    assert h.consents == {"followup": True, "education": False, "marketing": False, "research": False}
    assert pq.patient_header(conn=session.connection(), patient_id=999999, today=TODAY) is None
    assert pq.patient_id_by_card(conn=session.connection(), card_no=p.card_no) == p.id


def test_timeline_reads_every_table(session: Session) -> None:
    p = create_patient(session)
    task = create_task(session, patient_id=p.id)
    session.add(FollowupRecord(task_id=task.id, patient_id=p.id, contacted_at=datetime(2026, 5, 1, 9),
                               method="phone", outcome="reached", notes="ok"))
    session.add(Intervention(patient_id=p.id, kind="diet", content="少盐", performed_on=date(2026, 4, 1),
                             created_at=datetime(2026, 4, 1)))
    session.add(Message(patient_id=p.id, channel="sms", purpose="followup", body="提醒",
                        scheduled_at=datetime(2026, 3, 1), idempotency_key="k1"))
    create_response(session, patient_id=p.id, submitted_at=datetime(2026, 2, 1), nps_score=9)
    session.flush()
    df = pq.timeline(conn=session.connection(), patient_id=p.id)
    assert list(df["kind"]) == ["followup", "intervention", "message", "survey"]


def test_health_record_current_and_history(session: Session) -> None:
    p = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="CL")
    row = svc.add_history(session, patient_id=p.id, actor=ACTOR,
                          data=svc.HistoryInput(kind="lifestyle", text="吸烟", aspect="smoking"))
    svc.edit_history(session, history_id=row.id, actor=ACTOR,
                     data=svc.HistoryInput(kind="lifestyle", text="已戒烟", aspect="smoking"))
    current = pq.health_record(conn=session.connection(), patient_id=p.id)
    assert list(current["text"]) == ["已戒烟"] and list(current["aspect"]) == ["smoking"]
    full = pq.health_record(conn=session.connection(), patient_id=p.id, current_only=False)
    assert len(full) == 2


def test_indicator_series_flags_come_from_guideline_bands(session: Session) -> None:
    patient = create_patient(session, sex="M")
    for year, value in ((2022, 118), (2023, 135), (2024, 150), (2024, 170)):
        add_observation(session, patient_id=patient.id, code="SBP", value=value, at=datetime(year, 3, 1))
    add_observation(session, patient_id=patient.id, code="WAIST", value=88, at=datetime(2024, 3, 1))
    conn = session.connection()
    series = iq.series(conn=conn, patient_id=patient.id)
    bands = iq.bands(conn=conn, sex="M")
    flagged = iq.flag(series, bands)
    sbp = flagged[flagged["code"] == "SBP"]
    assert list(sbp["band"]) == ["normal", "high_normal", "grade_1", "grade_2"]
    assert list(sbp["abnormal"]) == [False, False, True, True]
    # male waist bands: 85-90 is pre-central obesity (the female bands do not apply)
    assert flagged[flagged["code"] == "WAIST"]["band"].tolist() == ["pre_central_obesity"]
    yearly = iq.yearly_means(conn=conn, patient_id=patient.id)
    sbp_years = yearly[yearly["code"] == "SBP"]
    assert list(sbp_years["year"]) == ["2022", "2023", "2024"]
    assert sbp_years["mean"].tolist() == pytest.approx([118, 135, 160])
    fl = iq.first_latest(series)
    row = fl[fl["code"] == "SBP"].iloc[0]
    assert (row["first"], row["latest"], row["change"], row["n"]) == (118, 170, 52, 4)
    yoy = iq.year_over_year(yearly)
    assert yoy.loc["SBP", "2024"] == pytest.approx(160)
    assert [c.code for c in iq.catalogue(conn=conn)][:2] == ["SBP", "DBP"]


def test_exports_stream_rows(session: Session) -> None:
    p = create_patient(session, phone="13800138000")
    add_observation(session, patient_id=p.id, code="FPG", value=5.5, at=datetime(2024, 1, 1))
    conn = session.connection()
    rows = [r for batch in pq.export_patients(conn=conn) for r in batch]
    assert rows[0][0] == p.card_no and rows[0][4] == "13800138000"
    obs = [r for batch in iq.export_observations(conn=conn) for r in batch]
    assert obs[0][0] == p.card_no and obs[0][2] == "FPG" and obs[0][4] == 5.5


def test_reference_data_is_cached_and_dropped_on_change(session: Session) -> None:
    from db.models import GuidelineBand, Indicator

    conn = session.connection()
    iq.reference_changed()
    first = iq.cached_bands(conn=conn, sex="M")
    assert first.equals(iq.bands(conn=conn, sex="M"))
    assert [r.code for r in iq.cached_catalogue(conn=conn)] == [r.code for r in iq.catalogue(conn=conn)]
    sbp = session.scalars(select(Indicator).where(Indicator.code == "SBP")).one()
    session.add(GuidelineBand(indicator_id=sbp.id, band="test-band", sex="M", low=300.0, high=None, abnormal=True,
                              source="test", version="1"))
    session.flush()  # an ORM write to a band forgets the cached ones
    assert "test-band" in set(iq.cached_bands(conn=conn, sex="M")["band"])
    got = iq.cached_bands(conn=conn, sex="M")
    got["band"] = "changed"
    assert "changed" not in set(iq.cached_bands(conn=conn, sex="M")["band"])  # callers get a copy
