"""Contact settings (server-side role check, validation, nothing half-written), per-patient language, timeline."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuditLog, EducationItem, Message, Patient, PatientContact
from queries import messaging as mq
from queries import patients as pq
from services import education
from services.auth import CurrentUser
from services.errors import UserError
from services.messaging import contacts, queue
from tests.factories import create_patient, create_task, create_user, department
from tests.factories_messaging import consent, contact, message

NOW = datetime(2026, 6, 15, 10, 0)
AS_OF = date(2026, 6, 15)


def _user(s: Session, role: str = "nurse", dept_code: str | None = "CARD") -> CurrentUser:
    dept_id = department(s, dept_code).id if dept_code else None
    u = create_user(s, role=role, department_id=dept_id)
    return CurrentUser(u.id, u.username, u.display_name, u.role, u.department_id)


def _contacts(s: Session, patient_id: int) -> dict[str, str]:
    return {str(c): str(a) for c, a in s.execute(select(PatientContact.channel, PatientContact.address)
                                                 .where(PatientContact.patient_id == patient_id))}


def test_nurse_saves_contacts_prefs_and_language(session: Session) -> None:
    nurse = _user(session)
    p = create_patient(session, department_id=nurse.department_id, channel_prefs=["sms"])
    contact(session, p.id, "wechat", "old_openid_1")
    saved = contacts.save_contacts(session, patient_id=p.id, expected_version=p.version, user=nurse, now=NOW,
                                   data=contacts.ContactInput(phone="+86 139-1234-5678", email=" li.si@example.cn ",
                                                              app="app:778899", channel_prefs=("email", "sms"),
                                                              language="en"))
    assert (saved.phone, saved.channel_prefs, saved.language) == ("13912345678", ["email", "sms"], "en")
    assert _contacts(session, p.id) == {"email": "li.si@example.cn", "app": "app:778899"}  # wechat cleared
    view = mq.patient_contact_settings(conn=session.connection(), patient_id=p.id)
    assert view is not None and (view.email, view.wechat, view.language) == ("li.si@example.cn", "", "en")
    log = session.scalars(select(AuditLog).where(AuditLog.action == "patient_contacts_updated")).one()
    assert log.patient_id == p.id and log.detail is not None
    assert "li.si@example.cn" not in str(log.detail)  # which fields, not the addresses


@pytest.mark.parametrize(("data", "key"), [
    (contacts.ContactInput(phone="13812345678", email="not-an-address"), "messaging.contacts.bad_email"),
    (contacts.ContactInput(phone="010-12345678", channel_prefs=("sms",)), "messaging.contacts.phone_not_sms"),
    (contacts.ContactInput(phone="12812345678", channel_prefs=("sms",)), "messaging.contacts.phone_not_sms"),
    (contacts.ContactInput(phone="call me"), "messaging.contacts.bad_phone"),
    (contacts.ContactInput(wechat="短"), "messaging.contacts.bad_wechat"),
    (contacts.ContactInput(app="a b"), "messaging.contacts.bad_app"),
    (contacts.ContactInput(language="fr"), "messaging.contacts.bad_language"),
    (contacts.ContactInput(channel_prefs=("fax",)), "messaging.contacts.bad_channel"),
    (contacts.ContactInput(phone="13812345678", channel_prefs=("email",)), "messaging.contacts.pref_without_address"),
])
def test_bad_input_is_refused_and_nothing_is_written(session: Session, data: contacts.ContactInput,
                                                     key: str) -> None:
    admin = _user(session, "admin", None)
    p = create_patient(session, phone="13800000001", channel_prefs=["wechat"])
    contact(session, p.id, "wechat", "keep_openid_1")
    before = (p.phone, list(p.channel_prefs or []), p.language, p.version)
    with pytest.raises(UserError) as err:
        contacts.save_contacts(session, patient_id=p.id, expected_version=p.version, data=data, user=admin, now=NOW)
    assert err.value.key == key
    session.expire_all()
    p2 = session.get(Patient, p.id)
    assert p2 is not None and (p2.phone, list(p2.channel_prefs or []), p2.language, p2.version) == before
    assert _contacts(session, p.id) == {"wechat": "keep_openid_1"}


def test_a_landline_is_kept_when_sms_is_not_wanted(session: Session) -> None:
    admin = _user(session, "admin", None)
    p = create_patient(session)
    saved = contacts.save_contacts(session, patient_id=p.id, expected_version=p.version, user=admin, now=NOW,
                                   data=contacts.ContactInput(phone="010-1234 5678", channel_prefs=("phone",)))
    assert saved.phone == "01012345678"


def test_role_and_reach_are_checked_on_the_server(session: Session) -> None:
    p = create_patient(session, department_id=department(session, "CARD").id)
    for user in (_user(session, "manager"), _user(session, "quality"), _user(session, "nurse", "NEURO")):
        with pytest.raises(UserError) as err:
            contacts.save_contacts(session, patient_id=p.id, expected_version=p.version, user=user, now=NOW,
                                   data=contacts.ContactInput(email="a@example.cn"))
        assert err.value.key == "messaging.contacts.forbidden"
    assert _contacts(session, p.id) == {}
    with pytest.raises(UserError) as err:
        contacts.save_contacts(session, patient_id=999_999, expected_version=1, user=_user(session, "admin", None),
                               now=NOW, data=contacts.ContactInput())
    assert err.value.key == "messaging.contacts.not_found"


def test_a_stale_version_is_refused(session: Session) -> None:
    admin = _user(session, "admin", None)
    p = create_patient(session)
    with pytest.raises(UserError) as err:
        contacts.save_contacts(session, patient_id=p.id, expected_version=p.version + 1, user=admin, now=NOW,
                               data=contacts.ContactInput(language="en"))
    assert err.value.key == "messaging.contacts.stale"


def test_reminders_are_rendered_in_each_patients_language(session: Session) -> None:
    dept = department(session, "CARD")
    zh = create_patient(session, name="王芳", department_id=dept.id)
    en = create_patient(session, name="Anna Smith", department_id=dept.id, language="en")
    for p in (zh, en):
        consent(session, p.id, granted_at=datetime(2026, 1, 1))
        create_task(session, patient_id=p.id, method="sms", due_date=AS_OF)
    assert queue.queue_reminders(session, as_of=AS_OF, now=datetime(2026, 6, 15, 1, 0))["followup"] == 2
    bodies = {int(i): str(b) for i, b in session.execute(select(Message.patient_id, Message.body))}
    assert bodies[zh.id] == f"王芳您好，{dept.name_zh}将于2026-06-15对您进行随访，请留意。"
    assert bodies[en.id] == f"Dear Anna Smith, {dept.name_en} will follow up with you on 2026-06-15."


def test_education_is_written_in_the_patients_language(session: Session) -> None:
    nurse = _user(session)
    p = create_patient(session, name="Anna Smith", department_id=nurse.department_id, language="en")
    consent(session, p.id, "education", granted_at=datetime(2026, 1, 1))
    item = EducationItem(title="Salt and blood pressure", body="Less salt.", language="en", tags=[],
                         risk_levels=[], reviewed_by="Dr Li", reviewed_on=date(2026, 1, 1), created_at=NOW)
    session.add(item)
    session.flush()
    m = education.send_item(session, item_id=item.id, card_no=p.card_no, user=nurse, now=NOW)
    assert m.body.startswith("Dear Anna Smith, some reading for you: Salt and blood pressure")


def test_timeline_lists_messages_and_education(session: Session) -> None:
    p = create_patient(session)
    item = EducationItem(title="控盐小知识", body="少盐", language="zh_CN", tags=[], risk_levels=[],
                         reviewed_by="李医生", reviewed_on=date(2026, 1, 1), created_at=NOW)
    session.add(item)
    session.flush()
    message(session, p.id, status="sent", template_code="reminder_revisit", body="请复诊",
            scheduled_at=datetime(2026, 6, 1, 9), sent_at=datetime(2026, 6, 1, 9, 5))
    message(session, p.id, status="failed", channel="email", template_code="reminder_exam", body="报告已出",
            last_error="SMTP 550", scheduled_at=datetime(2026, 6, 2, 9))
    message(session, p.id, status="delivered", channel="wechat", purpose="education", template_code="education",
            body="推荐阅读", scheduled_at=datetime(2026, 6, 3, 9), sent_at=datetime(2026, 6, 3, 9, 1),
            education_item_id=item.id, opened_at=datetime(2026, 6, 3, 20, 0))
    df = pq.timeline(conn=session.connection(), patient_id=p.id, lang="en")
    rows = list(zip(df["kind"], df["title"], df["detail"], strict=True))
    assert rows == [
        ("education_opened", "WeChat · 控盐小知识", "Opened by the patient"),
        ("education", "WeChat · 控盐小知识", "Delivered: 推荐阅读"),
        ("message", "E-mail · reminder_exam", "Failed (SMTP 550): 报告已出"),
        ("message", "SMS · reminder_revisit", "Sent: 请复诊"),
    ]
    zh = pq.timeline(conn=session.connection(), patient_id=p.id, lang="zh_CN")
    assert zh["detail"].iloc[0] == "患者已打开"
    assert int(session.scalar(select(func.count()).select_from(Message)) or 0) == 3
