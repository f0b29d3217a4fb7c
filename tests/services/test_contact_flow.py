"""services/contact_flow: a contact on a recovery task works the case; a step's questionnaire is stored with the
contact; re-ratings are responses of their own that never count in NPS. Both engines."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import (
    FollowupPlanStep,
    FollowupRecord,
    FollowupTask,
    NpsDaily,
    Questionnaire,
    ServiceRecoveryCase,
    SurveyAnswer,
    SurveyResponse,
)
from queries.filters import DataScope
from queries.satisfaction import SurveyFilter, nps_summary, recovery_outcome
from services import contact_flow, followup, nps_rollup, recovery
from services.contact_flow import Resolution
from services.errors import UserError
from services.followup import ContactInput, PlanSpec, StepSpec
from tests.factories import NOW, create_patient, create_task, create_user, department
from tests.factories_followup import as_current
from tests.factories_satisfaction import builtins, submit

LATER = NOW + timedelta(hours=2)
QUALITY = DataScope("quality", None)
PERIOD = SurveyFilter(date(2026, 1, 1), date(2026, 12, 31))


def _count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _detractor(session: Session) -> tuple[Any, ServiceRecoveryCase, FollowupTask]:
    dept = department(session)
    nurse = create_user(session, role="nurse", department_id=dept.id)
    patient = create_patient(session, department_id=dept.id, nurse_id=nurse.id)
    out = submit(session, 3, patient_id=patient.id, comment="等了三个小时")
    assert out.case is not None
    task = session.scalars(select(FollowupTask).where(FollowupTask.dedup_key == f"recovery:{out.case.id}")).one()
    return as_current(nurse), out.case, task


def test_contact_on_recovery_task_logs_the_attempt_on_the_case(session: Session) -> None:
    nurse, case, task = _detractor(session)
    out = contact_flow.log_contact(
        session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER, case_version=case.version,
        contact=ContactInput("phone", "no_answer", "retry", retry_on=LATER.date() + timedelta(days=1)))
    assert (out.case_id, out.case_status, out.case_version) == (case.id, "in_progress", 2)
    assert (case.attempts, case.status) == (1, "in_progress")
    assert task.attempts == 1  # the call is counted once on the task, not again by the case
    assert _count(session, FollowupRecord, FollowupRecord.task_id == task.id) == 1


def test_resolving_closes_the_case_and_stores_the_rerating_as_its_own_response(session: Session) -> None:
    nurse, case, task = _detractor(session)
    out = contact_flow.log_contact(
        session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER, case_version=case.version,
        contact=ContactInput("phone", "reached", "done", notes="道歉并安排复诊"),
        resolve=Resolution("waiting", "道歉，安排优先复诊", 8))
    session.flush()
    assert (out.case_status, task.status, task.attempts) == ("closed", "done", 1)
    assert (case.status, case.root_cause, case.rerating, case.attempts) == ("closed", "waiting", 8, 1)
    rerating = session.get(SurveyResponse, case.rerating_response_id)
    assert rerating is not None
    q = session.get(Questionnaire, rerating.questionnaire_id)
    assert q is not None and (q.code, q.status) == (recovery.RERATING_CODE, "system")
    assert (rerating.source, rerating.source_ref, rerating.patient_id) == ("recovery", f"case:{case.id}",
                                                                           case.patient_id)
    assert rerating.nps_score is None and rerating.channel == "phone"
    answers = session.scalars(select(SurveyAnswer.value_num).where(SurveyAnswer.response_id == rerating.id)).all()
    assert answers == [8.0]
    # Re-ratings are not NPS answers: the dashboard still counts the one detractor, live and after a rebuild...
    summary = nps_summary(conn=session.connection(), f=PERIOD, scope=QUALITY)
    assert (summary.responses, summary.detractors) == (1, 1)
    nps_rollup.rebuild(session, now=LATER)
    assert session.scalar(select(func.sum(NpsDaily.detractors + NpsDaily.passives + NpsDaily.promoters))) == 1
    # ...and the recovery dashboard shows them as the outcome.
    outcome = recovery_outcome(conn=session.connection(), f=PERIOD, scope=QUALITY)
    assert (outcome.closed, outcome.rerated, outcome.recovered, outcome.promoters) == (1, 1, 1, 0)
    assert outcome.mean_before == pytest.approx(3.0) and outcome.mean_after == pytest.approx(8.0)


def test_closing_from_the_recovery_page_also_stores_the_rerating(session: Session) -> None:
    _, case, task = _detractor(session)
    recovery.close_case(session, case_id=case.id, expected_version=case.version, root_cause="attitude",
                        resolution="主任致电道歉", rerating=10, now=LATER)
    assert task.status == "done" and case.rerating_response_id is not None
    assert _count(session, SurveyResponse, SurveyResponse.source == "recovery") == 1
    with pytest.raises(UserError) as exc:
        recovery.close_case(session, case_id=case.id, expected_version=case.version, root_cause="attitude",
                            resolution="again", rerating=10, now=LATER)
    assert exc.value.key == "recovery.already_closed"


@pytest.mark.parametrize(("contact", "resolve", "case_delta", "key"), [
    (ContactInput("phone", "reached", "done"), None, 0, "contact_flow.done_needs_resolution"),
    (ContactInput("phone", "no_answer", "done"), Resolution("waiting", "x"), 0, "contact_flow.resolve_needs_contact"),
    (ContactInput("phone", "reached", "escalate"), Resolution("waiting", "x"), 0, "contact_flow.resolve_needs_done"),
    (ContactInput("phone", "reached", "done"), Resolution("nonsense", "x"), 0, "recovery.bad_root_cause"),
    (ContactInput("phone", "reached", "done"), Resolution("waiting", "  "), 0, "recovery.resolution_required"),
    (ContactInput("phone", "reached", "done"), Resolution("waiting", "x", 11), 0, "recovery.bad_rerating"),
    (ContactInput("phone", "reached", "done"), Resolution("waiting", "x"), -1, "recovery.stale"),
])
def test_bad_input_writes_nothing(session: Session, contact: ContactInput, resolve: Resolution | None,
                                  case_delta: int, key: str) -> None:
    nurse, case, task = _detractor(session)
    with pytest.raises(UserError) as exc:
        contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                 contact=contact, resolve=resolve, case_version=case.version + case_delta)
    assert exc.value.key == key
    assert _count(session, FollowupRecord) == 0
    assert (task.status, task.attempts, task.version) == ("pending", 0, 1)
    assert (case.status, case.attempts, case.version) == ("open", 0, 1)


def test_a_failure_after_the_contact_was_written_rolls_the_whole_unit_back(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    nurse, case, task = _detractor(session)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UserError("recovery.stale", case=case.id)  # as if another user closed it at this very moment

    monkeypatch.setattr(recovery, "close_case", refuse)
    with pytest.raises(UserError):
        contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                 contact=ContactInput("phone", "reached", "done"), case_version=case.version,
                                 resolve=Resolution("waiting", "apologised", 9))
    # The savepoint is gone, the caller's transaction is not: nothing of the unit is left in it.
    assert _count(session, FollowupRecord) == 0
    assert _count(session, SurveyResponse, SurveyResponse.source == "recovery") == 0
    session.refresh(task)
    session.refresh(case)
    assert (task.status, task.attempts, case.status, case.attempts) == ("pending", 0, "open", 0)


def test_two_nurses_resolving_the_same_case_the_second_is_told(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        nurse, case, task = _detractor(s)
        ids = (case.id, case.version, task.id, task.version)
    case_id, case_version, task_id, task_version = ids
    contact = ContactInput("phone", "reached", "done")
    with Session(engine) as s, s.begin():
        contact_flow.log_contact(s, task_id=task_id, expected_version=task_version, user=nurse, now=LATER,
                                 contact=contact, case_version=case_version, resolve=Resolution("waiting", "first"))
    with Session(engine) as s, s.begin(), pytest.raises(UserError) as exc:
        contact_flow.log_contact(s, task_id=task_id, expected_version=task_version, user=nurse, now=LATER,
                                 contact=contact, case_version=case_version, resolve=Resolution("billing", "second"))
    assert exc.value.key == "recovery.already_closed"
    with Session(engine) as s:
        c = s.get(ServiceRecoveryCase, case_id)
        assert c is not None and (c.root_cause, c.resolution) == ("waiting", "first")


# --- the questionnaire of a plan step ----------------------------------------------------------------------


def _step_task(session: Session, code: str) -> tuple[Any, FollowupTask]:
    qs_ = builtins(session)
    dept = department(session)
    nurse = create_user(session, role="nurse", department_id=dept.id)
    plan = followup.create_plan(session, spec=PlanSpec(
        f"call_{code}", "回访", "Call", "discharge", (StepSpec(3, "phone", questionnaire_id=qs_[code].id),)),
        user=None, now=NOW)
    step_id = session.scalars(select(FollowupPlanStep.id).where(FollowupPlanStep.plan_id == plan.id)).one()
    patient = create_patient(session, department_id=dept.id, nurse_id=nurse.id)
    task = create_task(session, patient_id=patient.id, plan_id=plan.id, step_id=step_id, assignee_id=nurse.id,
                       department_id=dept.id)
    return as_current(nurse), task


def test_the_step_questionnaire_is_saved_with_the_contact(session: Session) -> None:
    nurse, task = _step_task(session, "gad7")
    answers = {f"gad7_{i}": 1 for i in range(1, 8)}
    out = contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                   contact=ContactInput("phone", "reached", "done"), answers=answers)
    record = session.get(FollowupRecord, out.contact.record_id)
    assert record is not None and record.response_id == out.response_id
    response = session.get(SurveyResponse, out.response_id)
    assert response is not None
    assert (response.patient_id, response.source, response.source_ref, response.total_score) == (
        task.patient_id, "followup", f"record:{record.id}", 7.0)
    assert _count(session, SurveyAnswer, SurveyAnswer.response_id == response.id) == 7


def test_a_missing_required_answer_writes_nothing(session: Session) -> None:
    nurse, task = _step_task(session, "gad7")
    answers = {f"gad7_{i}": 1 for i in range(1, 7)}  # gad7_7 left out
    with pytest.raises(UserError) as exc:
        contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                 contact=ContactInput("phone", "reached", "done"), answers=answers)
    assert (exc.value.key, exc.value.params) == ("survey.required_missing", {"item": "gad7_7"})
    assert _count(session, FollowupRecord) == 0 and _count(session, SurveyResponse) == 0
    assert (task.status, task.attempts) == ("pending", 0)


def test_no_answers_are_asked_when_the_patient_was_not_reached(session: Session) -> None:
    nurse, task = _step_task(session, "gad7")
    out = contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                   contact=ContactInput("phone", "no_answer", "retry", retry_on=LATER.date()))
    assert out.response_id is None and _count(session, SurveyResponse) == 0


def test_a_detractor_answer_on_a_call_opens_a_recovery_case(session: Session) -> None:
    nurse, task = _step_task(session, "satisfaction")
    out = contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                   contact=ContactInput("phone", "reached", "done"), answers={"nps": 2})
    assert out.new_case_id is not None
    response = session.get(SurveyResponse, out.response_id)
    assert response is not None and (response.nps_score, response.channel) == (2, "phone")


def test_resolving_a_task_without_a_case_is_refused(session: Session) -> None:
    nurse, task = _step_task(session, "gad7")
    with pytest.raises(UserError) as exc:
        contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                 contact=ContactInput("phone", "no_answer", "retry", retry_on=LATER.date()),
                                 resolve=Resolution("waiting", "x"))
    assert exc.value.key == "contact_flow.nothing_to_resolve"


def test_answers_without_a_questionnaire_are_refused(session: Session) -> None:
    nurse, case, task = _detractor(session)
    with pytest.raises(UserError) as exc:
        contact_flow.log_contact(session, task_id=task.id, expected_version=task.version, user=nurse, now=LATER,
                                 contact=ContactInput("phone", "reached", "retry", retry_on=LATER.date()),
                                 case_version=case.version, answers={"nps": 9})
    assert exc.value.key == "contact_flow.no_questionnaire"
