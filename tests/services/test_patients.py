"""Enrolment, validation, duplicates, optimistic locking, consents and the health record, on both engines."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import AuditLog, Consent, HealthHistory, Patient
from services import masking
from services import patients as svc
from services.errors import UserError
from tests.factories_patients import ACTOR, patient_input, resident_id

NOW = datetime(2026, 6, 15, 10, 0)


def _count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(Patient)).scalar_one())


# --- identifiers (pure) ------------------------------------------------------------------------


def test_resident_id_check_digit_known_value() -> None:
    # The worked example of GB 11643-1999.
    assert svc.resident_id_check_char("11010519491231002") == "X"
    value, born = svc.validate_resident_id("11010519491231002x", today=date(2026, 1, 1))
    assert value == "11010519491231002X" and born == date(1949, 12, 31)


@pytest.mark.parametrize(("value", "key"), [
    ("11010519491231002", "patients.err.id_format"),
    ("110105194912310021", "patients.err.id_check_digit"),
    ("1101051949123100AX", "patients.err.id_format"),
])
def test_resident_id_rejections(value: str, key: str) -> None:
    with pytest.raises(UserError) as err:
        svc.validate_resident_id(value, today=date(2026, 1, 1))
    assert err.value.key == key


def test_resident_id_with_impossible_or_future_birth_date() -> None:
    for body in ("11010519490231002", "11010520990101002"):
        with pytest.raises(UserError) as err:
            svc.validate_resident_id(body + svc.resident_id_check_char(body), today=date(2026, 1, 1))
        assert err.value.key == "patients.err.id_birth_date"


def test_card_numbers_have_a_check_character_and_agree_with_the_seeder() -> None:
    assert svc.card_check_digit("0000000001") == svc.card_check_digit("0000000001")
    card = "CL" + "0000000042" + svc.card_check_digit("0000000042")
    assert svc.valid_card_no(card, "CL")
    assert not svc.valid_card_no(card[:-1] + ("0" if card[-1] != "0" else "1"), "CL")
    seed = pytest.importorskip("db.seed")
    assert seed.card_check_digit("0000000042") == svc.card_check_digit("0000000042")


def test_phone_and_passport_normalisation() -> None:
    assert svc.normalise_phone("+86 138-0013-8000") == "13800138000"
    assert svc.normalise_phone("0571-87654321") == "057187654321"
    for bad in ("12345", "abc", "12800138000"):
        with pytest.raises(UserError):
            svc.normalise_phone(bad)
    assert svc.validate_passport(" e1234 5678 ") == "E12345678"
    with pytest.raises(UserError):
        svc.validate_passport("E-1")


def test_pinyin_initials() -> None:
    assert svc.name_initials("张三") == "zs"
    assert svc.name_initials("Anna Smith") == "as"


def test_masking() -> None:
    assert masking.mask_phone("13800138000") == "138****8000"
    assert masking.mask_id_number("11010519491231002X") == "110105********002X"
    assert masking.phone_for("manager", "13800138000") == "138****8000"
    assert masking.phone_for("nurse", "13800138000") == "13800138000"
    assert masking.id_number_for("quality", "E12345678") == "E1*****78"
    assert masking.id_number_for("admin", "E12345678") == "E12345678"


# --- enrolment ---------------------------------------------------------------------------------


def test_enrol_issues_a_card_with_prefix_and_records_consents(session: Session) -> None:
    idn = resident_id(date(1980, 5, 17), "M")
    p = svc.enrol(session, patient_input(name="王 小明", id_number=idn, birth_date=None,
                                         consents=("followup", "research"), channel_prefs=("sms",)),
                  actor=ACTOR, card_prefix="HZ", now=NOW)
    assert p.card_no.startswith("HZ") and len(p.card_no) == 2 + svc.SERIAL_DIGITS + 1
    assert svc.valid_card_no(p.card_no, "HZ")
    assert p.name == "王 小明" and p.birth_date == date(1980, 5, 17) and p.id_type == "resident"
    assert p.name_initials == "wxm"
    purposes = session.scalars(select(Consent.purpose).where(Consent.patient_id == p.id)).all()
    assert sorted(purposes) == ["followup", "research"]
    p2 = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="HZ", now=NOW)
    assert int(p2.card_no[2:-1]) == int(p.card_no[2:-1]) + 1
    actions = session.scalars(select(AuditLog.action).where(AuditLog.patient_id == p.id)).all()
    assert "patient_enrolled" in actions


@pytest.mark.parametrize(("overrides", "key"), [
    ({"name": "  "}, "patients.err.name_required"),
    ({"birth_date": date(2030, 1, 1)}, "patients.err.birth_date"),
    ({"birth_date": date(1700, 1, 1)}, "patients.err.birth_date"),
    ({"phone": "call me"}, "patients.err.phone_format"),
    ({"sex": "X"}, "patients.err.sex"),
    ({"id_number": "110105194912310021"}, "patients.err.id_check_digit"),
    ({"id_type": "passport", "id_number": "??"}, "patients.err.passport_format"),
    ({"consents": ("spam",)}, "patients.err.consent_purpose"),
    ({"department_id": 999999}, "patients.err.department"),
])
def test_enrol_rejects_bad_input_and_writes_nothing(session: Session, overrides: dict[str, object],
                                                    key: str) -> None:
    before = _count(session)
    with pytest.raises(UserError) as err:
        svc.enrol(session, patient_input(**overrides), actor=ACTOR, card_prefix="CL", now=NOW)
    assert err.value.key == key
    assert _count(session) == before


def test_id_number_must_agree_with_birth_date_and_sex(session: Session) -> None:
    idn = resident_id(date(1980, 5, 17), "M")
    with pytest.raises(UserError) as err:
        svc.enrol(session, patient_input(id_number=idn, birth_date=date(1981, 1, 1)), actor=ACTOR,
                  card_prefix="CL", now=NOW)
    assert err.value.key == "patients.err.id_birth_mismatch"
    with pytest.raises(UserError) as err:
        svc.enrol(session, patient_input(id_number=idn, birth_date=None, sex="F"), actor=ACTOR, card_prefix="CL",
                  now=NOW)
    assert err.value.key == "patients.err.id_sex_mismatch"


def test_duplicates_are_shown_before_saving(session: Session) -> None:
    first = svc.enrol(session, patient_input(name="赵六", birth_date=date(1950, 3, 3), phone="13700001111"),
                      actor=ACTOR, card_prefix="CL", now=NOW)
    # same phone and birth date
    with pytest.raises(svc.DuplicateFound) as dup:
        svc.enrol(session, patient_input(name="赵陆", birth_date=date(1950, 3, 3), phone="13700001111"),
                  actor=ACTOR, card_prefix="CL", now=NOW)
    assert [(d.patient_id, d.reason) for d in dup.value.duplicates] == [(first.id, "phone_birth")]
    # same name and birth date
    with pytest.raises(svc.DuplicateFound) as dup:
        svc.enrol(session, patient_input(name="赵六", birth_date=date(1950, 3, 3)), actor=ACTOR,
                  card_prefix="CL", now=NOW)
    assert dup.value.duplicates[0].reason == "name_birth"
    # the user confirms it is another person
    other = svc.enrol(session, patient_input(name="赵六", birth_date=date(1950, 3, 3)), actor=ACTOR,
                      card_prefix="CL", now=NOW, confirm_new=True)
    assert other.id != first.id


def test_same_id_number_is_never_enrolled_twice(session: Session) -> None:
    idn = resident_id(date(1966, 6, 6), "F")
    first = svc.enrol(session, patient_input(id_number=idn, birth_date=None, sex="F"), actor=ACTOR,
                      card_prefix="CL", now=NOW)
    with pytest.raises(svc.DuplicateFound) as dup:
        svc.enrol(session, patient_input(id_number=idn, birth_date=None, sex="F"), actor=ACTOR, card_prefix="CL",
                  now=NOW)
    assert dup.value.duplicates[0].reason == "id_number"
    with pytest.raises(UserError) as err:
        svc.enrol(session, patient_input(id_number=idn, birth_date=None, sex="F"), actor=ACTOR, card_prefix="CL",
                  now=NOW, confirm_new=True)
    assert err.value.key == "patients.err.id_number_taken" and err.value.params["card_no"] == first.card_no


# --- optimistic locking ------------------------------------------------------------------------


def test_second_editor_gets_a_clear_message_and_nothing_is_overwritten(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        p = svc.enrol(s, patient_input(name="钱七"), actor=ACTOR, card_prefix="CL", now=NOW)
        pid, version = p.id, p.version
    # Both nurses open the record (version 1); the first one saves.
    with Session(engine, expire_on_commit=False) as a, Session(engine) as b:
        a_patient = a.get(Patient, pid)
        a.commit()  # A keeps the record on screen (version 1) without holding a transaction open
        assert a_patient is not None and a_patient.version == version
        svc.update_patient(b, patient_id=pid, expected_version=version, actor=ACTOR,
                           data=patient_input(name="钱七", address="B's address"))
        b.commit()
        # The second one saves with the version she saw: the UPDATE matches no row (StaleDataError) -> message.
        with pytest.raises(UserError) as err:
            svc.update_patient(a, patient_id=pid, expected_version=version, actor=ACTOR,
                               data=patient_input(name="钱七", address="A's address"))
        assert err.value.key == "patients.err.stale"
        a.rollback()
    with Session(engine) as s:
        saved = s.get(Patient, pid)
        assert saved is not None and saved.address == "B's address" and saved.version == version + 1


def test_stale_version_number_is_refused(session: Session) -> None:
    p = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="CL", now=NOW)
    with pytest.raises(UserError) as err:
        svc.update_patient(session, patient_id=p.id, expected_version=p.version + 5, actor=ACTOR,
                           data=patient_input(name="x"))
    assert err.value.key == "patients.err.stale"


# --- consents and history ----------------------------------------------------------------------


def test_consent_withdrawal_and_regrant_keep_history(session: Session) -> None:
    p = svc.enrol(session, patient_input(consents=("marketing",)), actor=ACTOR, card_prefix="CL", now=NOW)
    svc.set_consent(session, patient_id=p.id, purpose="marketing", granted=False, actor=ACTOR,
                    now=datetime(2026, 6, 16))
    assert svc.consent_state(session, patient_id=p.id)["marketing"] is False
    svc.set_consent(session, patient_id=p.id, purpose="marketing", granted=True, actor=ACTOR,
                    now=datetime(2026, 6, 17))
    rows = session.execute(select(Consent.granted_at, Consent.withdrawn_at).where(Consent.patient_id == p.id)
                           .order_by(Consent.id)).all()
    assert [tuple(r) for r in rows] == [(NOW, datetime(2026, 6, 16)), (datetime(2026, 6, 17), None)]
    with pytest.raises(UserError):
        svc.set_consent(session, patient_id=p.id, purpose="nope", granted=True, actor=ACTOR)


def test_health_history_add_edit_end_keeps_every_version(session: Session) -> None:
    p = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="CL", now=NOW)
    med = svc.add_history(session, patient_id=p.id, actor=ACTOR, now=NOW, data=svc.HistoryInput(
        kind="medication", text="氨氯地平 5mg qd", started_on=date(2024, 1, 1)))
    edited = svc.edit_history(session, history_id=med.id, actor=ACTOR, now=NOW, data=svc.HistoryInput(
        kind="medication", text="氨氯地平 10mg qd", started_on=date(2024, 1, 1)))
    ended = svc.end_history(session, history_id=edited.id, ended_on=date(2026, 1, 1), actor=ACTOR, now=NOW)
    assert ended.replaces_id == edited.id and edited.replaces_id == med.id
    rows = session.scalars(select(HealthHistory).where(HealthHistory.patient_id == p.id)
                           .order_by(HealthHistory.id)).all()
    assert [r.text for r in rows] == ["氨氯地平 5mg qd", "氨氯地平 10mg qd", "氨氯地平 10mg qd"]
    with pytest.raises(UserError) as err:
        svc.edit_history(session, history_id=med.id, actor=ACTOR, data=svc.HistoryInput(kind="medication", text="x"))
    assert err.value.key == "patients.err.history_superseded"
    family = svc.add_history(session, patient_id=p.id, actor=ACTOR, now=NOW, data=svc.HistoryInput(
        kind="family", text="高血压", relation="父亲"))
    assert family.relation == "父亲"


@pytest.mark.parametrize(("data", "key"), [
    (svc.HistoryInput(kind="family", text="糖尿病"), "patients.err.history_relation"),
    (svc.HistoryInput(kind="lifestyle", text="每天 10 支"), "patients.err.history_aspect"),
    (svc.HistoryInput(kind="allergy", text=""), "patients.err.history_text"),
    (svc.HistoryInput(kind="gossip", text="x"), "patients.err.history_kind"),
    (svc.HistoryInput(kind="condition", text="x", started_on=date(2030, 1, 1)), "patients.err.future_date"),
    (svc.HistoryInput(kind="condition", text="x", started_on=date(2020, 1, 1), ended_on=date(2019, 1, 1)),
     "patients.err.end_before_start"),
])
def test_health_history_validation(session: Session, data: svc.HistoryInput, key: str) -> None:
    p = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="CL", now=NOW)
    with pytest.raises(UserError) as err:
        svc.add_history(session, patient_id=p.id, data=data, actor=ACTOR, now=NOW)
    assert err.value.key == key


def test_lifestyle_aspect_is_kept(session: Session) -> None:
    p = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="CL", now=NOW)
    row = svc.add_history(session, patient_id=p.id, actor=ACTOR, now=NOW,
                          data=svc.HistoryInput(kind="lifestyle", text="每天 10 支", aspect="smoking"))
    assert row.detail == {"aspect": "smoking"}


def test_record_view_writes_an_audit_row(session: Session) -> None:
    p = svc.enrol(session, patient_input(), actor=ACTOR, card_prefix="CL", now=NOW)
    svc.record_view(session, patient_id=p.id, actor=svc.Actor(None, "nurse1"))
    row = session.scalars(select(AuditLog).where(AuditLog.action == "patient_viewed")).one()
    assert row.patient_id == p.id and row.username == "nurse1"
