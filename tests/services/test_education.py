"""Education library: validation, matching by tags and risk, a nurse's send under the rules, opens and reach."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.engine import session_factory
from db.models import AuditLog, EducationItem, Message, PatientTag, RiskAssessment
from queries.filters import PeriodFilter, scope_for
from queries.messaging import engagement
from services import education
from services.auth import CurrentUser
from services.errors import UserError
from services.messaging import sender
from services.messaging.adapters import FileAdapter
from tests.factories import create_patient, create_user, department
from tests.factories_messaging import consent, contact

NOW = datetime(2026, 6, 15, 10, 0)


def _input(**kw: object) -> education.EducationInput:
    values: dict[str, object] = {"title": "高血压饮食", "language": "zh_CN", "reviewed_by": "李主任",
                                 "reviewed_on": date(2026, 6, 1), "body": "少盐少油。", "tags": ["hypertension"],
                                 "risk_levels": ["high"]}
    values.update(kw)
    return education.EducationInput(**values)  # type: ignore[arg-type]


def _nurse(s: Session, dept_code: str = "CARD") -> CurrentUser:
    dept = department(s, dept_code)
    u = create_user(s, role="nurse", department_id=dept.id)
    return CurrentUser(u.id, u.username, u.display_name, u.role, u.department_id)


@pytest.mark.parametrize(("change", "key"), [
    ({"title": " "}, "education.bad_title"),
    ({"body": None, "link": None}, "education.body_or_link"),
    ({"link": "javascript:alert(1)"}, "education.bad_link"),
    ({"language": "fr"}, "education.bad_language"),
    ({"reviewed_by": ""}, "education.reviewer_required"),
    ({"reviewed_on": date(2026, 7, 1)}, "education.review_in_future"),
    ({"risk_levels": ["extreme"]}, "education.bad_risk_level"),
    ({"tags": [""]}, "education.bad_tag"),
])
def test_bad_items_are_refused_and_nothing_written(session: Session, change: dict[str, object], key: str) -> None:
    nurse = _nurse(session)
    with pytest.raises(UserError) as err:
        education.save_item(session, data=_input(**change), user=nurse, now=NOW)
    assert err.value.key == key
    assert session.scalar(select(func.count()).select_from(EducationItem)) == 0


def test_save_and_update_are_audited(session: Session) -> None:
    admin = _nurse(session)
    item = education.save_item(session, data=_input(link="https://example.cn/a"), user=admin, now=NOW)
    education.save_item(session, data=_input(title="新标题"), user=admin, now=NOW, item_id=item.id)
    assert session.get_one(EducationItem, item.id).title == "新标题"
    assert session.scalars(select(AuditLog.action).where(AuditLog.entity == "education_item")).all() == [
        "education_saved", "education_saved"]


def test_items_offered_by_tag_and_newest_risk(session: Session) -> None:
    admin = _nurse(session)
    by_tag = education.save_item(session, data=_input(title="A", tags=["hypertension"], risk_levels=[]),
                                 user=admin, now=NOW)
    by_risk = education.save_item(session, data=_input(title="B", tags=[], risk_levels=["high"]), user=admin,
                                  now=NOW)
    p = create_patient(session)
    session.add(PatientTag(patient_id=p.id, tag_code="hypertension", since=NOW - timedelta(days=9)))
    ended = create_patient(session)
    session.add(PatientTag(patient_id=ended.id, tag_code="hypertension", since=NOW - timedelta(days=9),
                           until=NOW - timedelta(days=1)))
    for days, level in ((30, "high"), (2, "low")):
        session.add(RiskAssessment(patient_id=ended.id, model="pce", model_version="2013", score=0.1,
                                   assessed_at=NOW - timedelta(days=days), level=level, inputs={}, factors=[]))
    session.add(RiskAssessment(patient_id=p.id, model="pce", model_version="2013", score=0.3,
                               assessed_at=NOW - timedelta(days=1), level="high", inputs={}, factors=[]))
    session.flush()
    assert [i.id for i in education.offered_items(session, patient_id=p.id, at=NOW)] == [by_tag.id, by_risk.id]
    assert education.offered_items(session, patient_id=ended.id, at=NOW) == []


def test_nurse_send_rules(session: Session) -> None:
    nurse = _nurse(session)
    item = education.save_item(session, data=_input(), user=nurse, now=NOW)
    dept_id = nurse.department_id
    no_consent = create_patient(session, department_id=dept_id)
    dnc = create_patient(session, department_id=dept_id, do_not_contact=True)
    consent(session, dnc.id, "education")
    only_followup = create_patient(session, department_id=dept_id)
    consent(session, only_followup.id, "followup")
    unreachable = create_patient(session, department_id=dept_id, phone="12345")
    consent(session, unreachable.id, "education")
    elsewhere = create_patient(session, department_id=department(session, "NEURO").id)
    consent(session, elsewhere.id, "education")
    cases = [(no_consent, "messaging.no_consent"), (dnc, "messaging.do_not_contact"),
             (only_followup, "messaging.no_consent"), (unreachable, "messaging.no_channel"),
             (elsewhere, "messaging.other_department")]
    for patient, key in cases:
        with pytest.raises(UserError) as err:
            education.send_item(session, item_id=item.id, card_no=patient.card_no, user=nurse, now=NOW)
        assert err.value.key == key, patient.card_no
    with pytest.raises(UserError) as err:
        education.send_item(session, item_id=item.id, card_no="NOPE", user=nurse, now=NOW)
    assert err.value.key == "messaging.unknown_card"
    assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_send_defers_out_of_quiet_hours_and_once_a_day(session: Session) -> None:
    nurse = _nurse(session)
    item = education.save_item(session, data=_input(link="https://example.cn/salt"), user=nurse, now=NOW)
    p = create_patient(session, department_id=nurse.department_id, channel_prefs=["email"])
    consent(session, p.id, "education")
    contact(session, p.id, "email", "wang@example.cn")
    late = datetime(2026, 6, 15, 22, 30)
    m = education.send_item(session, item_id=item.id, card_no=p.card_no, user=nurse, now=late)
    assert (m.channel, m.recipient, m.scheduled_at) == ("email", "wang@example.cn", datetime(2026, 6, 16, 8, 0))
    assert "https://example.cn/salt" in m.body and m.education_item_id == item.id
    with pytest.raises(UserError) as err:
        education.send_item(session, item_id=item.id, card_no=p.card_no, user=nurse, now=late)
    assert err.value.key == "education.already_sent"
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "education_sent")).one()
    assert audit.patient_id == p.id


def test_sent_and_opened_show_in_reach(engine: Engine, tmp_path: Path) -> None:
    sf = session_factory(engine)
    with sf() as s, s.begin():
        nurse = _nurse(s)
        item = education.save_item(s, data=_input(), user=nurse, now=NOW)
        p = create_patient(s, department_id=nurse.department_id)
        consent(s, p.id, "education")
        mid = education.send_item(s, item_id=item.id, card_no=p.card_no, user=nurse, now=NOW).id
    counts = sender.send_due(sf, now=NOW, adapters={"sms": FileAdapter(tmp_path)})
    assert counts.sent == 1
    with sf() as s, s.begin():
        assert education.record_open(s, message_id=mid, at=NOW + timedelta(hours=1)) is True
        assert education.record_open(s, message_id=mid, at=NOW + timedelta(hours=2)) is False
    f = PeriodFilter(date(2026, 6, 1), date(2026, 6, 30))
    with engine.connect() as conn:
        df = engagement(conn=conn, f=f, scope=scope_for(role="manager", department_id=None), lang="en")
        other = engagement(conn=conn, f=f, scope=scope_for(role="nurse", department_id=999), lang="en")
    row = df.iloc[0]
    assert (row["item"], row["patients_reached"], row["sent"], row["opened"], row["open_rate"]) == (
        "高血压饮食", 1, 1, 1, 100.0)
    assert other.empty
