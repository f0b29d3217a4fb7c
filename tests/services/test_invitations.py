"""services/invitations (survey invitations after visits, consent checked, idempotent), the link from a response
to its invitation (a real response rate), run-automation inviting, and saved survey-csv mappings. Both engines."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import manage
from db.models import AuditLog, Consent, ImportMapping, SurveyInvitation
from queries.filters import DataScope
from queries.satisfaction import SurveyFilter, response_rate, saved_mappings
from services import import_mappings, invitations
from services.errors import UserError
from services.importers import survey_csv
from tests.factories import NOW, create_patient, create_user, department
from tests.factories_followup import as_current, create_encounter
from tests.factories_satisfaction import builtins, submit

AS_OF = NOW.date()
RUN_AT = datetime.combine(AS_OF, datetime.min.time()) + timedelta(hours=23)
SUDZILLA = Path(__file__).resolve().parents[3] / "shared" / "reference-data" / "nps-survey-sudzilla"


def _consent(session: Session, patient_id: int, purpose: str = "followup", withdrawn: datetime | None = None) -> None:
    session.add(Consent(patient_id=patient_id, purpose=purpose, granted_at=NOW - timedelta(days=100),
                        withdrawn_at=withdrawn))
    session.flush()


def _visit(session: Session, *, kind: str = "outpatient", ended: datetime | None = NOW - timedelta(days=1),
           consent: str | None = "followup", **patient: Any) -> int:
    dept = department(session)
    p = create_patient(session, department_id=dept.id, **patient)
    if consent:
        _consent(session, p.id, consent)
    e = create_encounter(session, patient_id=p.id, kind=kind, started_at=NOW - timedelta(days=2), ended_at=ended,
                         department_id=dept.id)
    return e.id


def _invited(session: Session) -> set[int]:
    return set(session.scalars(select(SurveyInvitation.encounter_id)))


def test_one_invitation_per_finished_encounter_with_consent_idempotent(session: Session) -> None:
    builtins(session)
    yes = _visit(session, channel_prefs=["wechat", "sms"])
    discharge = _visit(session, kind="discharge")
    no_consent = _visit(session, consent=None)
    research_only = _visit(session, consent="research")
    dnc = _visit(session, do_not_contact=True)
    unfinished = _visit(session, ended=None)
    inactive = _visit(session, status="deceased")
    too_old = _visit(session, ended=NOW - timedelta(days=30))
    first = invitations.invite_after_encounters(session, as_of=AS_OF, now=RUN_AT)
    assert (first.invited, _invited(session)) == (2, {yes, discharge})
    assert {no_consent, research_only, dnc, unfinished, inactive, too_old}.isdisjoint(_invited(session))
    again = invitations.invite_after_encounters(session, as_of=AS_OF, now=RUN_AT + timedelta(hours=1))
    assert (again.candidates, again.invited) == (0, 0)
    inv = session.scalars(select(SurveyInvitation).where(SurveyInvitation.encounter_id == yes)).one()
    assert (inv.channel, inv.sent_at, inv.department_id is not None) == ("wechat", RUN_AT, True)
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "survey.invited")) == 2


def test_withdrawn_consent_and_an_earlier_invitation_block_it(session: Session) -> None:
    q = builtins(session)["satisfaction"]
    withdrawn = _visit(session, consent=None)
    pid = session.scalar(select(SurveyInvitation.patient_id).limit(1))
    assert pid is None
    from db.models import Encounter

    enc = session.get(Encounter, withdrawn)
    assert enc is not None
    _consent(session, enc.patient_id, withdrawn=NOW - timedelta(days=5))
    seeded = _visit(session)
    seeded_enc = session.get(Encounter, seeded)
    assert seeded_enc is not None and seeded_enc.ended_at is not None
    # An invitation the demo data (or an older run) already sent after this visit, without an encounter link.
    session.add(SurveyInvitation(patient_id=seeded_enc.patient_id, questionnaire_id=q.id, channel="sms",
                                 sent_at=seeded_enc.ended_at + timedelta(hours=3)))
    session.flush()
    assert invitations.invite_after_encounters(session, as_of=AS_OF, now=RUN_AT).invited == 0
    with pytest.raises(UserError) as exc:
        invitations.invite_after_encounters(session, as_of=AS_OF, now=RUN_AT, lookback_days=-1)
    assert exc.value.key == "invitations.bad_lookback"


def test_a_response_answers_the_open_invitation_so_the_response_rate_is_real(session: Session) -> None:
    builtins(session)
    _visit(session)
    _visit(session)
    invitations.invite_after_encounters(session, as_of=AS_OF, now=RUN_AT)
    pids = session.scalars(select(SurveyInvitation.patient_id).order_by(SurveyInvitation.id)).all()
    out = submit(session, 10, patient_id=pids[0], at=RUN_AT + timedelta(hours=5))
    inv_id = session.scalar(select(SurveyInvitation.id).where(SurveyInvitation.patient_id == pids[0]))
    assert out.response.invitation_id == inv_id
    # A second answer from the same patient is not a second answer to the same invitation.
    again = submit(session, 9, patient_id=pids[0], at=RUN_AT + timedelta(hours=6))
    assert again.response.invitation_id is None
    rate = response_rate(conn=session.connection(), f=SurveyFilter(AS_OF, AS_OF), scope=DataScope("quality", None))
    assert rate[["invited", "responded"]].values.tolist() == [[2, 1]]
    assert rate["rate"].tolist() == [50.0]


def test_run_automation_invites(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    as_of = date(2026, 6, 15)
    with Session(sqlite_engine) as s, s.begin():
        _visit(s, ended=datetime(2026, 6, 14, 11))
    assert manage.main(["run-automation", "--as-of", as_of.isoformat()]) == 0
    assert re.search(r"survey invitations +1\n", capsys.readouterr().out)
    assert manage.main(["run-automation", "--as-of", as_of.isoformat()]) == 0
    assert re.search(r"survey invitations +0\n", capsys.readouterr().out)
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(SurveyInvitation)) == 1


# --- saved survey-csv mappings -----------------------------------------------------------------------------

HEADER = ["Submitted", "Card", "Score", "Why", "Extra"]


def _draft(**kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"questionnaire": "satisfaction", "source": "tool", "header": HEADER,
                              "columns": {"submitted_at": "Submitted", "patient_card": "Card", "comment": "Why"},
                              "items": {"nps": "Score"}}
    values.update(kw)
    return import_mappings.MappingDraft(**values).to_body()


def test_a_mapping_built_from_columns_is_saved_validated_and_reused(session: Session) -> None:
    builtins(session)
    admin = as_current(create_user(session, role="admin"))
    body = _draft()
    assert body["ignore"] == ["Extra"]
    row = import_mappings.save_mapping(session, name="院内问卷", body=body, user=admin, now=NOW, header=HEADER)
    import_mappings.save_mapping(session, name="院内问卷", body=_draft(channel="sms"), user=admin, now=NOW,
                                 header=HEADER)
    assert session.scalar(select(func.count()).select_from(ImportMapping)) == 1
    assert saved_mappings(conn=session.connection())["院内问卷"]["channel"] == "sms"
    assert row.updated_by == admin.id
    assert survey_csv.validate_mapping(session, row.body, header=HEADER).items == {"nps": "Score"}


@pytest.mark.parametrize(("body", "header", "key"), [
    (_draft(items={"nps": "Nowhere"}), HEADER, "survey_import.missing_columns"),
    (_draft(items={"no_such_item": "Score"}), HEADER, "survey_import.mapping_unknown_item"),
    (_draft(items={}), HEADER, "survey_import.mapping_needs_items"),
    (_draft(questionnaire="nope"), HEADER, "questionnaire.not_found"),
    (_draft(department="NOPE"), HEADER, "survey_import.unknown_department"),
    (_draft(), [*HEADER, "New column"], "survey_import.unknown_columns"),
])
def test_a_mapping_that_points_at_nothing_is_refused(session: Session, body: dict[str, Any], header: list[str],
                                                    key: str) -> None:
    builtins(session)
    nurse = as_current(create_user(session, role="nurse"))
    with pytest.raises(UserError) as exc:
        import_mappings.save_mapping(session, name="m1", body=body, user=nurse, now=NOW, header=header)
    assert exc.value.key == key
    assert session.scalar(select(func.count()).select_from(ImportMapping)) == 0


@pytest.mark.parametrize(("role", "name", "key"), [
    ("quality", "ok", "survey_import.page.not_allowed"),
    ("admin", "", "survey_import.page.bad_name"),
    ("admin", "a/b", "survey_import.page.bad_name"),
    ("admin", "sudzilla_survey", "survey_import.page.name_taken"),
])
def test_who_and_what_name(session: Session, role: str, name: str, key: str) -> None:
    builtins(session)
    user = as_current(create_user(session, role=role))
    with pytest.raises(UserError) as exc:
        import_mappings.save_mapping(session, name=name, body=_draft(), user=user, now=NOW, header=HEADER)
    assert exc.value.key == key


@pytest.mark.skipif(not SUDZILLA.exists(), reason="../shared/reference-data not present")
def test_the_builtin_sudzilla_mapping_fits_both_files(session: Session) -> None:
    builtins(session)
    body = import_mappings.builtin_mappings()["sudzilla_survey"]
    for name in ("input_01.csv", "input_02.csv"):
        header = survey_csv.read_header((SUDZILLA / name).read_bytes())
        assert survey_csv.validate_mapping(session, body, header=header).source == "sudzilla"


def test_cli_import_with_a_saved_mapping_name(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    with Session(sqlite_engine) as s, s.begin():
        builtins(s)
        create_patient(s, card_no="CARDX1")
        admin = as_current(create_user(s, role="admin"))
        import_mappings.save_mapping(s, name="hosp", body=_draft(), user=admin, now=NOW, header=HEADER)
    f = tmp_path / "survey.csv"
    f.write_text("Submitted,Card,Score,Why,Extra\n2026-06-01 09:00,CARDX1,10,很好,x\n", encoding="utf-8")
    assert manage.main(["import", str(f), "--format", "survey-csv", "--mapping", "hosp"]) == 0
    assert "imported 1" in capsys.readouterr().out
    assert manage.main(["import", str(f), "--format", "survey-csv", "--mapping", "no-such-name"]) == 2
