"""Follow-up plans, the daily automation (triggers, idempotency, repeats) and logging contacts."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import AuditLog, FollowupPlan, FollowupRecord, FollowupTask, Patient
from services import followup
from services.errors import UserError
from services.followup import ContactInput, PlanSpec, StepSpec
from tests.factories import create_patient, create_response, create_task, create_user, department
from tests.factories_followup import (
    as_current,
    create_encounter,
    create_observation,
    create_tag,
    day,
)

AS_OF = date(2026, 6, 15)
NOW = datetime(2026, 6, 15, 10, 0)


def _tasks(session: Session) -> list[FollowupTask]:
    return list(session.scalars(select(FollowupTask).order_by(FollowupTask.due_date, FollowupTask.id)))


def _plan(session: Session, trigger: str, steps: tuple[StepSpec, ...] = (StepSpec(1),), param: str | None = None,
          code: str | None = None) -> FollowupPlan:
    return followup.create_plan(session, spec=PlanSpec(code or f"p_{trigger}", "计划", "Plan", trigger, steps,
                                                       trigger_param=param), user=None, now=NOW)


def test_builtin_plans_are_ensured_once(session: Session) -> None:
    followup.ensure_builtin_plans(session)
    followup.ensure_builtin_plans(session)
    codes = session.scalars(select(FollowupPlan.code).order_by(FollowupPlan.code)).all()
    assert codes == ["hypertension_monthly", "post_discharge"]


def test_discharge_opens_three_calls_once(session: Session) -> None:
    followup.ensure_builtin_plans(session)
    dept = department(session)
    nurse = create_user(session, department_id=dept.id)
    p = create_patient(session, department_id=dept.id, nurse_id=nurse.id)
    create_encounter(session, patient_id=p.id, kind="discharge", started_at=day(AS_OF - timedelta(days=5)),
                     ended_at=day(AS_OF - timedelta(days=1)))
    first = followup.run_automation(session, as_of=AS_OF)
    assert first.opened["post_discharge"] == 3
    tasks = _tasks(session)
    assert [t.due_date for t in tasks] == [AS_OF + timedelta(days=d - 1) for d in (3, 7, 30)]
    assert {(t.assignee_id, t.department_id, t.method, t.status) for t in tasks} == {
        (nurse.id, dept.id, "phone", "pending")}
    again = followup.run_automation(session, as_of=AS_OF)
    assert again.total_opened == 0
    # The next day the same discharge is still in the look-back window: still nothing new.
    assert followup.run_automation(session, as_of=AS_OF + timedelta(days=1)).total_opened == 0
    assert len(_tasks(session)) == 3


def test_hypertension_monthly_keeps_one_occurrence_ahead(session: Session) -> None:
    followup.ensure_builtin_plans(session)
    p = create_patient(session)
    since = AS_OF - timedelta(days=40)
    create_tag(session, patient_id=p.id, since=day(since))
    assert followup.run_automation(session, as_of=AS_OF).opened["hypertension_monthly"] == 1
    assert [t.due_date for t in _tasks(session)] == [since + timedelta(days=60)]
    assert followup.run_automation(session, as_of=AS_OF + timedelta(days=5)).total_opened == 0
    # On the due day itself nothing new; the day after, the following month opens.
    assert followup.run_automation(session, as_of=since + timedelta(days=60)).total_opened == 0
    assert followup.run_automation(session, as_of=since + timedelta(days=61)).total_opened == 1
    assert [t.due_date for t in _tasks(session)] == [since + timedelta(days=60), since + timedelta(days=90)]


def test_ended_tag_and_deceased_patient_open_nothing(session: Session) -> None:
    followup.ensure_builtin_plans(session)
    ended = create_patient(session)
    create_tag(session, patient_id=ended.id, since=day(AS_OF - timedelta(days=100)),
               until=day(AS_OF - timedelta(days=2)))
    dead = create_patient(session, status="deceased")
    create_tag(session, patient_id=dead.id, since=day(AS_OF - timedelta(days=10)))
    assert followup.run_automation(session, as_of=AS_OF).total_opened == 0


@pytest.mark.parametrize(
    ("trigger", "param", "make", "expected"),
    [
        ("enrolment", None, "enrol", 1),
        ("encounter", None, "visit", 1),
        ("encounter", "inpatient", "visit", 0),
        ("abnormal", None, "high_bp", 1),
        ("abnormal", "SBP", "high_bp", 1),
        ("abnormal", "LDL", "high_bp", 0),
        ("abnormal", None, "normal_bp", 0),
        ("tag", "diabetes", "tag", 1),
        ("detractor", None, "detractor", 1),
        ("detractor", None, "promoter", 0),
    ],
)
def test_each_trigger(session: Session, trigger: str, param: str | None, make: str, expected: int) -> None:
    _plan(session, trigger, (StepSpec(2),), param=param)
    when = day(AS_OF - timedelta(days=1))
    p = create_patient(session, enrolled_at=day(AS_OF - timedelta(days=400)))
    if make == "enrol":
        p.enrolled_at = when
    elif make == "visit":
        create_encounter(session, patient_id=p.id, kind="outpatient", started_at=when)
    elif make in ("high_bp", "normal_bp"):
        value = 165 if make == "high_bp" else 112
        create_observation(session, patient_id=p.id, code="SBP", value=value, observed_at=when)
        create_observation(session, patient_id=p.id, code="SBP", value=value, observed_at=when + timedelta(hours=1))
    elif make == "tag":
        create_tag(session, patient_id=p.id, tag_code="diabetes", since=when)
    else:
        create_response(session, patient_id=p.id, nps_score=4 if make == "detractor" else 9, submitted_at=when)
    session.flush()
    result = followup.run_automation(session, as_of=AS_OF)
    assert result.total_opened == expected
    if expected:
        assert _tasks(session)[0].due_date == AS_OF + timedelta(days=1)
    assert followup.run_automation(session, as_of=AS_OF).total_opened == 0


def test_events_before_the_window_are_not_picked_up(session: Session) -> None:
    _plan(session, "encounter")
    p = create_patient(session)
    create_encounter(session, patient_id=p.id, started_at=day(AS_OF - timedelta(days=30)))
    assert followup.run_automation(session, as_of=AS_OF, lookback_days=7).total_opened == 0


def test_overdue_is_counted_and_the_run_is_audited(session: Session) -> None:
    create_task(session, due_date=AS_OF - timedelta(days=2))
    create_task(session, due_date=AS_OF)
    create_task(session, due_date=AS_OF - timedelta(days=2), status="done")
    assert followup.run_automation(session, as_of=AS_OF).overdue == 1
    assert session.scalars(select(AuditLog.action)).all() == ["run_automation"]


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (PlanSpec("Bad Code", "a", "b", "discharge", (StepSpec(3),)), "followup.plan_bad_code"),
        (PlanSpec("ok_code", " ", "b", "discharge", (StepSpec(3),)), "followup.plan_name_required"),
        (PlanSpec("ok_code", "a", "b", "birthday", (StepSpec(3),)), "followup.plan_bad_trigger"),
        (PlanSpec("ok_code", "a", "b", "tag", (StepSpec(3),)), "followup.plan_param_required"),
        (PlanSpec("ok_code", "a", "b", "discharge", ()), "followup.plan_no_steps"),
        (PlanSpec("ok_code", "a", "b", "discharge", (StepSpec(-1),)), "followup.step_bad_offset"),
        (PlanSpec("ok_code", "a", "b", "discharge", (StepSpec(3, "fax"),)), "followup.step_bad_method"),
        (PlanSpec("ok_code", "a", "b", "discharge", (StepSpec(3, repeat_every_days=30),)),
         "followup.step_repeat_not_allowed"),
        (PlanSpec("ok_code", "a", "b", "tag", (StepSpec(3, repeat_every_days=0),), trigger_param="x"),
         "followup.step_bad_repeat"),
        (PlanSpec("ok_code", "a", "b", "discharge", (StepSpec(3),), owner_role="doctor"), "followup.plan_bad_role"),
    ],
)
def test_plan_validation(session: Session, spec: PlanSpec, key: str) -> None:
    with pytest.raises(UserError) as err:
        followup.create_plan(session, spec=spec, user=None, now=NOW)
    assert err.value.key == key
    assert session.scalar(select(func.count()).select_from(FollowupPlan)) == 0


def test_plan_update_makes_a_new_version_and_duplicate_code_is_refused(session: Session) -> None:
    plan = _plan(session, "discharge", code="calls")
    with pytest.raises(UserError) as err:
        _plan(session, "discharge", code="calls")
    assert err.value.key == "followup.plan_exists"
    new = followup.update_plan(session, plan_id=plan.id, spec=PlanSpec("ignored", "新", "New", "discharge",
                                                                       (StepSpec(5),)), user=None, now=NOW)
    session.refresh(plan)
    assert (new.code, new.version, new.active, plan.active) == ("calls", 2, True, False)
    followup.set_plan_active(session, plan_id=new.id, active=False, user=None, now=NOW)
    assert not new.active


# --- contacts ----------------------------------------------------------------------------------


@pytest.fixture
def nurse_task(session: Session) -> tuple[FollowupTask, object]:
    dept = department(session)
    nurse = create_user(session, department_id=dept.id)
    task = create_task(session, assignee_id=nurse.id, department_id=dept.id, due_date=AS_OF)
    return task, as_current(nurse)


def _log(session: Session, task: FollowupTask, user: object, **kw: object) -> followup.ContactResult:
    values: dict[str, object] = {"method": "phone", "outcome": "reached", "next_step": "done"}
    values.update(kw)
    version = int(values.pop("version", task.version))  # type: ignore[call-overload]
    return followup.log_contact(session, task_id=task.id, expected_version=version,
                                contact=ContactInput(**values),  # type: ignore[arg-type]
                                user=user, now=NOW, max_failed_attempts=3)  # type: ignore[arg-type]


def test_reached_and_done_closes_the_task(session: Session, nurse_task: tuple[FollowupTask, object]) -> None:
    task, user = nurse_task
    out = _log(session, task, user, notes="血压平稳")
    assert (out.status, out.attempts) == ("done", 1)
    assert task.completed_at == NOW
    rec = session.scalars(select(FollowupRecord)).one()
    assert (rec.outcome, rec.notes, rec.next_action) == ("reached", "血压平稳", "done")
    assert "followup_contact" in session.scalars(select(AuditLog.action)).all()


def test_failed_attempts_retry_then_close_as_unreachable(session: Session,
                                                         nurse_task: tuple[FollowupTask, object]) -> None:
    task, user = nurse_task
    out = _log(session, task, user, outcome="no_answer", next_step="retry", retry_on=AS_OF + timedelta(days=2))
    assert (out.status, task.due_date, out.failed_attempts) == ("pending", AS_OF + timedelta(days=2), 1)
    out = _log(session, task, user, outcome="wrong_number", next_step="retry", retry_on=AS_OF)
    assert out.status == "pending"
    out = _log(session, task, user, outcome="no_answer", next_step="retry", retry_on=AS_OF + timedelta(days=1))
    assert (out.status, out.attempts, out.failed_attempts) == ("unreachable", 3, 3)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"outcome": "no_answer", "next_step": "retry", "retry_on": AS_OF - timedelta(days=1)},
         "followup.retry_in_past"),
        ({"outcome": "no_answer", "next_step": "retry"}, "followup.retry_date_required"),
        ({"outcome": "no_answer", "next_step": "done"}, "followup.failed_needs_retry"),
        ({"outcome": "maybe"}, "followup.bad_outcome"),
        ({"method": "pigeon"}, "followup.bad_method"),
        ({"next_step": "later"}, "followup.bad_next_step"),
        ({"notes": "x" * 4001}, "followup.notes_too_long"),
        ({"version": 99}, "followup.stale"),
        ({"recording_id": 12345}, "followup.recording_mismatch"),
    ],
)
def test_bad_contacts_write_nothing(session: Session, nurse_task: tuple[FollowupTask, object], kw: dict[str, object],
                                    key: str) -> None:
    task, user = nurse_task
    with pytest.raises(UserError) as err:
        _log(session, task, user, **kw)
    assert err.value.key == key
    assert session.scalar(select(func.count()).select_from(FollowupRecord)) == 0
    assert task.attempts == 0


def test_closed_task_is_refused(session: Session, nurse_task: tuple[FollowupTask, object]) -> None:
    task, user = nurse_task
    _log(session, task, user)
    with pytest.raises(UserError) as err:
        _log(session, task, user)
    assert err.value.key == "followup.task_closed"


def test_other_departments_nurse_and_manager_are_refused(session: Session,
                                                         nurse_task: tuple[FollowupTask, object]) -> None:
    task, _ = nurse_task
    other = as_current(create_user(session, department_id=department(session, "ONC").id))
    with pytest.raises(UserError) as err:
        _log(session, task, other)
    assert err.value.key == "followup.not_yours"
    manager = as_current(create_user(session, role="manager"))
    with pytest.raises(UserError) as err:
        _log(session, task, manager)
    assert err.value.key == "followup.not_allowed"


def test_escalate_and_deceased(session: Session, nurse_task: tuple[FollowupTask, object]) -> None:
    task, user = nurse_task
    assert _log(session, task, user, next_step="escalate").status == "escalated"
    other = create_task(session, patient_id=task.patient_id, assignee_id=task.assignee_id,
                        department_id=task.department_id, due_date=AS_OF)
    third = create_task(session, patient_id=task.patient_id, due_date=AS_OF + timedelta(days=30))
    assert _log(session, other, user, outcome="deceased").status == "cancelled"
    session.refresh(third)
    assert third.status == "cancelled"
    assert session.get(Patient, task.patient_id).status == "deceased"  # type: ignore[union-attr]


def test_two_nurses_complete_the_same_task(engine: Engine) -> None:
    """Both read version 1; the second save is refused with a clear message and the first one stays."""
    with Session(engine) as s, s.begin():
        dept = department(s)
        a = as_current(create_user(s, department_id=dept.id))
        b = as_current(create_user(s, department_id=dept.id))
        task_id = create_task(s, assignee_id=a.id, department_id=dept.id, due_date=AS_OF).id
    first, second = Session(engine), Session(engine)
    try:
        second.get(FollowupTask, task_id)  # the second nurse opened the form too ...
        second.commit()  # ... in an earlier page run (its own read transaction), then saves in a new one
        with first.begin():
            followup.log_contact(first, task_id=task_id, expected_version=1, user=a, now=NOW,
                                 contact=ContactInput("phone", "reached", "done", notes="first"))
        with pytest.raises(UserError) as err:
            followup.log_contact(second, task_id=task_id, expected_version=1, user=b, now=NOW,
                                 contact=ContactInput("phone", "reached", "done", notes="second"))
        second.rollback()
        assert err.value.key in ("followup.stale", "followup.task_closed")
    finally:
        first.close()
        second.close()
    with Session(engine) as s:
        assert s.scalars(select(FollowupRecord.notes)).all() == ["first"]


def test_reassign(session: Session, nurse_task: tuple[FollowupTask, object]) -> None:
    task, user = nurse_task
    colleague = create_user(session, department_id=task.department_id)
    version = followup.reassign(session, task_id=task.id, expected_version=task.version, assignee_id=colleague.id,
                                user=user, now=NOW)  # type: ignore[arg-type]
    assert task.assignee_id == colleague.id and version == 2
    manager = create_user(session, role="manager")
    with pytest.raises(UserError) as err:
        followup.reassign(session, task_id=task.id, expected_version=version, assignee_id=manager.id,
                          user=user, now=NOW)  # type: ignore[arg-type]
    assert err.value.key == "followup.bad_assignee"
    with pytest.raises(UserError) as err:
        followup.reassign(session, task_id=task.id, expected_version=1, assignee_id=colleague.id,
                          user=user, now=NOW)  # type: ignore[arg-type]
    assert err.value.key == "followup.stale"


def test_parse_steps() -> None:
    assert followup.parse_steps("3:phone, 7:sms；30:phone/30") == (
        StepSpec(3, "phone"), StepSpec(7, "sms"), StepSpec(30, "phone", repeat_every_days=30))
    with pytest.raises(UserError) as err:
        followup.parse_steps("three days by phone")
    assert err.value.key == "followup.steps_unreadable"
    assert followup.format_steps([(3, "phone", None), (30, "phone", 30)]) == "3:phone, 30:phone/30"
