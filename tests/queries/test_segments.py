"""Tag segments narrow patient search, the worklist and the risk distribution to patients holding an open tag."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from queries import followup as fq
from queries import patients as pq
from queries import risk as rq
from queries.filters import scope_for
from tests.factories import create_patient, create_task, create_user, department
from tests.factories_care import create_risk
from tests.factories_followup import create_tag

TODAY = date(2026, 6, 15)
SINCE = datetime(2026, 1, 1)


def _segment(session: Session) -> dict[str, int]:
    """Three patients: one in the hypertension segment, one whose tag has ended, one never tagged."""
    dept = department(session, "CARD")
    tagged = create_patient(session, name="王高压", department_id=dept.id)
    ended = create_patient(session, name="王已停", department_id=dept.id)
    plain = create_patient(session, name="王普通", department_id=dept.id)
    create_tag(session, patient_id=tagged.id, since=SINCE)
    create_tag(session, patient_id=ended.id, since=SINCE, until=datetime(2026, 3, 1))
    create_tag(session, patient_id=plain.id, tag_code="smoker", since=SINCE)
    return {"tagged": tagged.id, "ended": ended.id, "plain": plain.id, "dept": dept.id}


def test_search_browses_a_segment_and_narrows_a_search(session: Session) -> None:
    ids = _segment(session)
    conn = session.connection()
    browse = pq.search_patients(conn=conn, f=pq.SearchFilter("", tag="hypertension", tag_name="高血压"))
    assert list(browse["id"]) == [ids["tagged"]]
    narrowed = pq.search_patients(conn=conn, f=pq.SearchFilter("王", tag="hypertension"))
    assert list(narrowed["id"]) == [ids["tagged"]]
    everyone = pq.search_patients(conn=conn, f=pq.SearchFilter("王"))
    assert set(everyone["id"]) == {ids["tagged"], ids["ended"], ids["plain"]}
    assert pq.search_patients(conn=conn, f=pq.SearchFilter("")).empty  # neither text nor segment: nothing
    # A name found by "contains" (no name starts with it) stays inside the segment too.
    assert list(pq.search_patients(conn=conn, f=pq.SearchFilter("高压"))["id"]) == [ids["tagged"]]
    assert pq.search_patients(conn=conn, f=pq.SearchFilter("高压", tag="smoker")).empty
    # The nurse's scope still applies inside a segment.
    other = scope_for(role="nurse", department_id=department(session, "ENDO").id)
    assert pq.search_patients(conn=conn, f=pq.SearchFilter("", tag="hypertension"), scope=other).empty


def test_search_describes_its_segment_in_both_languages() -> None:
    f = pq.SearchFilter("王", tag="hypertension", tag_name="高血压")
    assert f.describe("zh_CN") == "人群：高血压，检索“王”，第 1 页"
    assert pq.SearchFilter("", tag="smoker", tag_name="Smoker").describe("en") == "segment: Smoker, page 1"


def test_worklist_keeps_the_segment_only(session: Session) -> None:
    ids = _segment(session)
    nurse = create_user(session, role="nurse", department_id=ids["dept"])
    for p in (ids["tagged"], ids["ended"], ids["plain"]):
        create_task(session, patient_id=p, assignee_id=nurse.id, department_id=ids["dept"], due_date=TODAY)
    conn = session.connection()
    f = fq.WorklistFilter(user_id=nurse.id, department_id=ids["dept"], today=TODAY, tag="hypertension")
    assert list(fq.worklist(conn=conn, f=f)["patient_id"]) == [ids["tagged"]]
    assert fq.worklist_counts(conn=conn, f=f).today == 1
    everyone = fq.WorklistFilter(user_id=nurse.id, department_id=ids["dept"], today=TODAY)
    assert fq.worklist_counts(conn=conn, f=everyone).today == 3


def test_risk_distribution_and_drilldown_of_a_segment(session: Session) -> None:
    ids = _segment(session)
    for p in (ids["tagged"], ids["ended"], ids["plain"]):
        create_risk(session, patient_id=p, level="high", at=SINCE)
    conn = session.connection()
    scope = scope_for(role="manager", department_id=None)
    dist = rq.distribution(conn=conn, model="pce", scope=scope, lang="en", tag="hypertension")
    assert dist[["level", "patients"]].values.tolist() == [["high", 1]]
    assert int(rq.distribution(conn=conn, model="pce", scope=scope, lang="en")["patients"].sum()) == 3
    drill = rq.drilldown(conn=conn, model="pce", scope=scope, department_id=ids["dept"], level="high",
                         tag="hypertension")
    assert list(drill["patient_id"]) == [ids["tagged"]]


def test_search_names_the_department_in_the_user_language(session: Session) -> None:
    ids = _segment(session)
    conn = session.connection()
    zh = pq.search_patients(conn=conn, f=pq.SearchFilter("王高压", lang="zh_CN"))
    en = pq.search_patients(conn=conn, f=pq.SearchFilter("王高压", lang="en"))
    assert list(zh["id"]) == list(en["id"]) == [ids["tagged"]]
    assert zh["department"].iloc[0] != en["department"].iloc[0]
    assert en["department"].iloc[0].isascii()
