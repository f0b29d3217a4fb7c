"""Follow-up plans and tasks: plan templates, the daily automation that opens tasks, contacts and reassignment."""

from __future__ import annotations

import re
import time as _time
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    Select,
    String,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db.datefn import add_days, as_date, days_between
from db.models import (
    CONTACT_METHODS,
    CONTACT_OUTCOMES,
    ROLES,
    Encounter,
    FollowupPlan,
    FollowupPlanStep,
    FollowupRecord,
    FollowupTask,
    GuidelineBand,
    Indicator,
    Observation,
    Patient,
    PatientTag,
    Recording,
    SurveyResponse,
    User,
)
from services import audit, followup_rollup
from services.auth import CurrentUser
from services.errors import UserError

TRIGGERS = ("enrolment", "encounter", "abnormal", "tag", "discharge", "detractor")
# Only a standing condition (a tag, being enrolled) can carry a repeating step; a one-off event cannot.
REPEATABLE_TRIGGERS = ("tag", "enrolment")
PARAM_REQUIRED = ("tag",)
NEXT_STEPS = ("done", "retry", "escalate")
FAILED_OUTCOMES = ("no_answer", "wrong_number")
OPEN_STATUSES = ("pending",)
DETRACTOR_MAX = 6
MAX_NOTES = 4000
MAX_OFFSET_DAYS = 3650
# A discharge is dated by its end; an encounter that ended this long after it started is not looked for.
_DISCHARGE_MAX_STAY_DAYS = 120
_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,47}$")


# --- plan templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    offset_days: int
    method: str = "phone"
    repeat_every_days: int | None = None
    script: str | None = None
    questionnaire_id: int | None = None


@dataclass(frozen=True)
class PlanSpec:
    code: str
    name_zh: str
    name_en: str
    trigger: str
    steps: tuple[StepSpec, ...]
    trigger_param: str | None = None
    owner_role: str = "nurse"
    department_id: int | None = None


def validate_plan(spec: PlanSpec) -> None:
    """Every rule a plan must meet, checked before anything is written."""
    if not _CODE_RE.match(spec.code):
        raise UserError("followup.plan_bad_code")
    if not spec.name_zh.strip() or not spec.name_en.strip():
        raise UserError("followup.plan_name_required")
    if spec.trigger not in TRIGGERS:
        raise UserError("followup.plan_bad_trigger", trigger=spec.trigger, triggers=", ".join(TRIGGERS))
    if spec.trigger in PARAM_REQUIRED and not (spec.trigger_param or "").strip():
        raise UserError("followup.plan_param_required", trigger=spec.trigger)
    if spec.owner_role not in ROLES:
        raise UserError("followup.plan_bad_role", role=spec.owner_role)
    if not spec.steps:
        raise UserError("followup.plan_no_steps")
    for i, step in enumerate(spec.steps, start=1):
        if not 0 <= step.offset_days <= MAX_OFFSET_DAYS:
            raise UserError("followup.step_bad_offset", n=i, maximum=MAX_OFFSET_DAYS)
        if step.method not in CONTACT_METHODS:
            raise UserError("followup.step_bad_method", n=i, method=step.method)
        if step.repeat_every_days is not None:
            if spec.trigger not in REPEATABLE_TRIGGERS:
                raise UserError("followup.step_repeat_not_allowed", n=i, triggers=", ".join(REPEATABLE_TRIGGERS))
            if not 1 <= step.repeat_every_days <= MAX_OFFSET_DAYS:
                raise UserError("followup.step_bad_repeat", n=i, maximum=MAX_OFFSET_DAYS)


_STEP_RE = re.compile(r"^(\d{1,4})\s*:\s*([a-z]+)\s*(?:/\s*(\d{1,4}))?$")


def parse_steps(text: str) -> tuple[StepSpec, ...]:
    """Steps written as "3:phone, 7:phone, 30:phone/30" (days:method, /N repeats every N days)."""
    steps = []
    for part in (p.strip() for p in re.split(r"[,;，；\n]+", text) if p.strip()):
        m = _STEP_RE.match(part)
        if m is None:
            raise UserError("followup.steps_unreadable", text=part[:40])
        steps.append(StepSpec(int(m.group(1)), m.group(2), int(m.group(3)) if m.group(3) else None))
    return tuple(steps)


def format_steps(steps: list[tuple[int, str, int | None]]) -> str:
    return ", ".join(f"{o}:{m}" + (f"/{r}" if r else "") for o, m, r in steps)


def _add_plan(session: Session, spec: PlanSpec, version: int) -> FollowupPlan:
    plan = FollowupPlan(code=spec.code, version=version, name_zh=spec.name_zh.strip(), name_en=spec.name_en.strip(),
                        trigger=spec.trigger, trigger_param=(spec.trigger_param or "").strip() or None,
                        owner_role=spec.owner_role, department_id=spec.department_id, active=True)
    session.add(plan)
    session.flush()
    for pos, step in enumerate(spec.steps, start=1):
        session.add(FollowupPlanStep(plan_id=plan.id, position=pos, offset_days=step.offset_days,
                                     repeat_every_days=step.repeat_every_days, method=step.method,
                                     script=step.script, questionnaire_id=step.questionnaire_id))
    session.flush()
    return plan


def _actor(user: CurrentUser | None) -> dict[str, Any]:
    return {"user_id": user.id, "username": user.username} if user else {"username": "system"}


def create_plan(session: Session, *, spec: PlanSpec, user: CurrentUser | None, now: datetime) -> FollowupPlan:
    validate_plan(spec)
    if session.scalars(select(FollowupPlan.id).where(FollowupPlan.code == spec.code)).first() is not None:
        raise UserError("followup.plan_exists", code=spec.code)
    plan = _add_plan(session, spec, 1)
    audit.record(session, action="plan_create", entity="followup_plan", entity_id=plan.id,
                 detail={"code": spec.code, "trigger": spec.trigger}, at=now, **_actor(user))
    return plan


def update_plan(session: Session, *, plan_id: int, spec: PlanSpec, user: CurrentUser | None,
                now: datetime) -> FollowupPlan:
    """A plan in use is never edited in place: the change becomes the next version, the old one is retired."""
    old = session.get(FollowupPlan, plan_id)
    if old is None:
        raise UserError("followup.plan_not_found")
    spec = PlanSpec(**{**spec.__dict__, "code": old.code})
    validate_plan(spec)
    latest = session.scalar(select(func.max(FollowupPlan.version)).where(FollowupPlan.code == old.code)) or 0
    session.execute(update(FollowupPlan).where(FollowupPlan.code == old.code).values(active=False))
    plan = _add_plan(session, spec, int(latest) + 1)
    audit.record(session, action="plan_update", entity="followup_plan", entity_id=plan.id,
                 detail={"code": old.code, "version": plan.version, "replaces": old.id}, at=now, **_actor(user))
    return plan


def set_plan_active(session: Session, *, plan_id: int, active: bool, user: CurrentUser | None,
                    now: datetime) -> None:
    plan = session.get(FollowupPlan, plan_id)
    if plan is None:
        raise UserError("followup.plan_not_found")
    plan.active = active
    audit.record(session, action="plan_activate" if active else "plan_deactivate", entity="followup_plan",
                 entity_id=plan.id, detail={"code": plan.code}, at=now, **_actor(user))


BUILTIN_PLANS = (
    PlanSpec("post_discharge", "出院后随访", "Post-discharge follow-up", "discharge",
             (StepSpec(3, "phone"), StepSpec(7, "phone"), StepSpec(30, "phone"))),
    PlanSpec("hypertension_monthly", "高血压月度随访", "Hypertension monthly follow-up", "tag",
             (StepSpec(30, "phone", repeat_every_days=30),), trigger_param="hypertension"),
)


def ensure_builtin_plans(session: Session) -> list[FollowupPlan]:
    """The plans every site starts with; an existing plan of the same code (any version) is left alone."""
    out = []
    for spec in BUILTIN_PLANS:
        existing = session.scalars(select(FollowupPlan).where(FollowupPlan.code == spec.code)
                                   .order_by(FollowupPlan.version.desc())).first()
        if existing is None:
            existing = _add_plan(session, spec, 1)
        out.append(existing)
    return out


# --- the daily automation ------------------------------------------------------------------------


@dataclass
class AutomationResult:
    as_of: date
    opened: dict[str, int] = field(default_factory=dict)
    overdue: int = 0
    seconds: float = 0.0

    @property
    def total_opened(self) -> int:
        return sum(self.opened.values())


def _window(as_of: date, lookback_days: int) -> tuple[datetime, datetime]:
    # Events from the start of (as_of - lookback) to the end of as_of: a day the job missed is caught up,
    # and the idempotency key makes the overlap harmless.
    return (datetime.combine(as_of - timedelta(days=lookback_days), time.min),
            datetime.combine(as_of + timedelta(days=1), time.min))


def _event_key(prefix: str, col: Any) -> Any:
    return literal(prefix, String) + cast(col, String)


def _events(plan: FollowupPlan, *, ws: datetime, we: datetime, standing: bool) -> Select[Any]:
    """(patient_id, anchor date, event key) for each trigger event of the plan.

    standing=True selects the population a repeating step runs over (every active tag / enrolment),
    otherwise only the events that happened in the window.
    """
    t, param = plan.trigger, plan.trigger_param
    if t == "enrolment":
        stmt = select(Patient.id.label("patient_id"), as_date(Patient.enrolled_at).label("anchor"),
                      _event_key("enr", Patient.id).label("ek")).where(Patient.enrolled_at < we)
        return stmt if standing else stmt.where(Patient.enrolled_at >= ws)
    if t == "tag":
        stmt = select(PatientTag.patient_id.label("patient_id"), as_date(PatientTag.since).label("anchor"),
                      _event_key("tag", PatientTag.id).label("ek")).where(
            PatientTag.tag_code == param, PatientTag.since < we)
        if standing:
            return stmt.where(or_(PatientTag.until.is_(None), PatientTag.until >= we))
        return stmt.where(PatientTag.since >= ws)
    if t == "encounter":
        stmt = select(Encounter.patient_id.label("patient_id"), as_date(Encounter.started_at).label("anchor"),
                      _event_key("enc", Encounter.id).label("ek")).where(
            Encounter.started_at >= ws, Encounter.started_at < we)
        return stmt.where(Encounter.kind == param) if param else stmt.where(Encounter.kind != "discharge")
    if t == "discharge":
        ended = func.coalesce(Encounter.ended_at, Encounter.started_at)
        return select(Encounter.patient_id.label("patient_id"), as_date(ended).label("anchor"),
                      _event_key("dis", Encounter.id).label("ek")).where(
            Encounter.kind == "discharge", ended >= ws, ended < we,
            Encounter.started_at >= ws - timedelta(days=_DISCHARGE_MAX_STAY_DAYS), Encounter.started_at < we)
    if t == "detractor":
        return select(SurveyResponse.patient_id.label("patient_id"),
                      as_date(SurveyResponse.submitted_at).label("anchor"),
                      _event_key("nps", SurveyResponse.id).label("ek")).where(
            SurveyResponse.patient_id.is_not(None), SurveyResponse.nps_score <= DETRACTOR_MAX,
            SurveyResponse.submitted_at >= ws, SurveyResponse.submitted_at < we)
    if t == "abnormal":
        # A reading inside any abnormal guideline band (for the patient's sex or either sex); several abnormal
        # readings on one day are one event, keyed by the first of them.
        band = exists().where(
            GuidelineBand.indicator_id == Observation.indicator_id,
            GuidelineBand.abnormal.is_(True),
            or_(GuidelineBand.sex.is_(None), GuidelineBand.sex == Patient.sex),
            or_(GuidelineBand.low.is_(None), Observation.value >= GuidelineBand.low),
            or_(GuidelineBand.high.is_(None), Observation.value < GuidelineBand.high),
        )
        day = as_date(Observation.observed_at)
        stmt = (select(Observation.patient_id.label("patient_id"), day.label("anchor"),
                       func.min(Observation.id).label("first_id"))
                .join(Patient, Patient.id == Observation.patient_id)
                .where(Observation.observed_at >= ws, Observation.observed_at < we, band)
                .group_by(Observation.patient_id, day))
        if param:
            stmt = stmt.join(Indicator, Indicator.id == Observation.indicator_id).where(Indicator.code == param)
        sub = stmt.subquery()
        return select(sub.c.patient_id, sub.c.anchor, _event_key("abn", sub.c.first_id).label("ek"))
    raise UserError("followup.plan_bad_trigger", trigger=t, triggers=", ".join(TRIGGERS))


def _open_step(session: Session, plan: FollowupPlan, step: FollowupPlanStep, *, as_of: date, ws: datetime,
               we: datetime, now: datetime) -> int:
    """One INSERT ... SELECT for one plan step: every fired trigger without a task yet gets one."""
    repeat = step.repeat_every_days
    ev = _events(plan, ws=ws, we=we, standing=repeat is not None).subquery("ev")
    prefix = f"p{plan.id}:s{step.id}:"
    if repeat is None:
        key = literal(prefix, String) + ev.c.ek
        due = add_days(ev.c.anchor, literal(step.offset_days, Integer))
    else:
        # The next occurrence on or after as_of: k = ceil((as_of - anchor - offset) / repeat), at least 0;
        # one occurrence ahead is always open, and its number makes the key.
        n = days_between(literal(as_of, Date), ev.c.anchor) - step.offset_days
        k = case((n <= 0, 0), else_=(n + (repeat - 1)) // repeat)
        key = literal(prefix, String) + ev.c.ek + literal(":", String) + cast(k, String)
        due = add_days(ev.c.anchor, literal(step.offset_days, Integer) + k * repeat)
    assignee = Patient.nurse_id if plan.owner_role == "nurse" else null()
    department = Patient.department_id if plan.department_id is None else func.coalesce(
        Patient.department_id, plan.department_id)
    sel = (
        select(ev.c.patient_id, literal(plan.id, Integer), literal(step.id, Integer), literal("followup", String),
               key, department, assignee, literal(step.method, String), due, literal("pending", String),
               literal(0, Integer), literal(now), literal(1, Integer))
        .join(Patient, Patient.id == ev.c.patient_id)
        .where(Patient.status == "active", ~exists().where(FollowupTask.dedup_key == key))
    )
    if plan.department_id is not None:
        sel = sel.where(Patient.department_id == plan.department_id)
    cols = ["patient_id", "plan_id", "step_id", "kind", "dedup_key", "department_id", "assignee_id", "method",
            "due_date", "status", "attempts", "created_at", "version"]
    table = FollowupTask
    if session.get_bind().dialect.name == "postgresql":
        # Two runs at once (a retried cron job): the unique key, not a race, decides.
        stmt: Any = postgresql.insert(table).from_select(cols, sel).on_conflict_do_nothing(
            index_elements=["dedup_key"])
    else:
        stmt = sqlite.insert(table).from_select(cols, sel).on_conflict_do_nothing(index_elements=["dedup_key"])
    result = session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def count_overdue(session: Session, *, as_of: date) -> int:
    """Overdue is derived, not stored: a pending task whose due date is before as_of."""
    return int(session.scalar(select(func.count()).select_from(FollowupTask).where(
        FollowupTask.status == "pending", FollowupTask.due_date < as_of)) or 0)


def run_automation(session: Session, *, as_of: date, lookback_days: int = 7, now: datetime | None = None,
                   user: CurrentUser | None = None) -> AutomationResult:
    """The daily job: open the tasks whose triggers fired up to as_of, and count the overdue ones. Idempotent."""
    started = _time.perf_counter()
    now = now or datetime.combine(as_of, time(hour=1))
    ws, we = _window(as_of, lookback_days)
    result = AutomationResult(as_of=as_of)
    plans = session.scalars(select(FollowupPlan).where(FollowupPlan.active.is_(True))
                            .order_by(FollowupPlan.code)).all()
    for plan in plans:
        steps = session.scalars(select(FollowupPlanStep).where(FollowupPlanStep.plan_id == plan.id)
                                .order_by(FollowupPlanStep.position)).all()
        opened = sum(_open_step(session, plan, step, as_of=as_of, ws=ws, we=we, now=now) for step in steps)
        result.opened[plan.code] = result.opened.get(plan.code, 0) + opened
    result.overdue = count_overdue(session, as_of=as_of)
    followup_rollup.refresh(session)  # fold the tasks just opened into the completion rollup
    result.seconds = _time.perf_counter() - started
    audit.record(session, action="run_automation", entity="followup_task",
                 detail={"as_of": as_of.isoformat(), "opened": result.opened, "overdue": result.overdue},
                 at=now, **_actor(user))
    return result


# --- contacts, reassignment ----------------------------------------------------------------------


@dataclass(frozen=True)
class ContactInput:
    method: str
    outcome: str
    next_step: str = "done"
    notes: str = ""
    retry_on: date | None = None
    recording_id: int | None = None


@dataclass(frozen=True)
class ContactResult:
    record_id: int
    status: str
    attempts: int
    failed_attempts: int
    version: int


def _load_task(session: Session, task_id: int, expected_version: int, user: CurrentUser) -> FollowupTask:
    task = session.get(FollowupTask, task_id, populate_existing=True)
    if task is None:
        raise UserError("followup.task_not_found")
    if user.role not in ("nurse", "admin"):
        raise UserError("followup.not_allowed")
    if user.role == "nurse" and task.assignee_id != user.id and (
            task.department_id is None or task.department_id != user.department_id):
        raise UserError("followup.not_yours")
    if task.status not in OPEN_STATUSES:
        raise UserError("followup.task_closed", status=task.status)
    if task.version != expected_version:
        raise UserError("followup.stale")
    return task


def _flush_or_stale(session: Session) -> None:
    try:
        session.flush()
    except StaleDataError as exc:  # another nurse saved the task between our read and our write
        raise UserError("followup.stale") from exc


def log_contact(session: Session, *, task_id: int, expected_version: int, contact: ContactInput,
                user: CurrentUser, now: datetime, max_failed_attempts: int = 3) -> ContactResult:
    """Record one contact attempt and move the task on; refuses stale, closed or inconsistent input."""
    c = contact
    if c.method not in CONTACT_METHODS:
        raise UserError("followup.bad_method", method=c.method)
    if c.outcome not in CONTACT_OUTCOMES:
        raise UserError("followup.bad_outcome", outcome=c.outcome)
    if c.next_step not in NEXT_STEPS:
        raise UserError("followup.bad_next_step", step=c.next_step)
    if len(c.notes) > MAX_NOTES:
        raise UserError("followup.notes_too_long", maximum=MAX_NOTES)
    if c.next_step == "retry":
        if c.retry_on is None:
            raise UserError("followup.retry_date_required")
        if c.retry_on < now.date():
            raise UserError("followup.retry_in_past", date=c.retry_on.isoformat())
    task = _load_task(session, task_id, expected_version, user)
    if c.recording_id is not None:
        rec = session.get(Recording, c.recording_id)
        if rec is None or rec.patient_id != task.patient_id or rec.deleted_at is not None:
            raise UserError("followup.recording_mismatch")
    failed = c.outcome in FAILED_OUTCOMES
    previous_failed = int(session.scalar(select(func.count()).select_from(FollowupRecord).where(
        FollowupRecord.task_id == task.id, FollowupRecord.outcome.in_(FAILED_OUTCOMES))) or 0)
    failed_attempts = previous_failed + (1 if failed else 0)
    if failed and failed_attempts >= max_failed_attempts:
        status = "unreachable"
    elif c.outcome == "deceased":
        status = "cancelled"
    elif c.next_step == "escalate":
        status = "escalated"
    elif c.next_step == "retry":
        status = "pending"
    elif failed:
        # "Done" after no answer would count a call nobody took as a completed follow-up.
        raise UserError("followup.failed_needs_retry")
    else:
        status = "done"
    task.attempts += 1
    task.status = status
    if status == "pending":
        assert c.retry_on is not None
        task.due_date = c.retry_on
    else:
        task.completed_at = now
    record = FollowupRecord(task_id=task.id, patient_id=task.patient_id, contacted_at=now, method=c.method,
                            outcome=c.outcome, notes=c.notes.strip() or None, next_action=c.next_step,
                            recording_id=c.recording_id, recorded_by=user.id)
    session.add(record)
    _flush_or_stale(session)
    if c.outcome == "deceased":
        _patient_deceased(session, task, user, now)
    audit.record(session, action="followup_contact", user_id=user.id, username=user.username,
                 entity="followup_task", entity_id=task.id, patient_id=task.patient_id,
                 detail={"outcome": c.outcome, "next_step": c.next_step, "status": status,
                         "attempts": task.attempts, "record_id": record.id}, at=now)
    return ContactResult(record.id, status, task.attempts, failed_attempts, task.version)


def _patient_deceased(session: Session, task: FollowupTask, user: CurrentUser, now: datetime) -> None:
    """No more calls to a deceased patient's family: close the other open tasks and stop new ones."""
    others = (FollowupTask.patient_id == task.patient_id, FollowupTask.status == "pending", FollowupTask.id != task.id)
    ids = set(session.scalars(select(FollowupTask.id).where(*others)))
    # A set-based update: no ORM event sees it, so it moves the rollup itself (by the difference).
    with followup_rollup.track_changes(session.connection(), ids):
        session.execute(update(FollowupTask).where(*others)
                        .values(status="cancelled", completed_at=now, version=FollowupTask.version + 1)
                        .execution_options(synchronize_session=False))
    patient = session.get(Patient, task.patient_id)
    if patient is not None and patient.status != "deceased":
        patient.status = "deceased"
        patient.updated_at = now
        _flush_or_stale(session)
        audit.record(session, action="patient_deceased", user_id=user.id, username=user.username,
                     entity="patient", entity_id=patient.id, patient_id=patient.id,
                     detail={"reported_by_task": task.id}, at=now)


def reassign(session: Session, *, task_id: int, expected_version: int, assignee_id: int, user: CurrentUser,
             now: datetime) -> int:
    """Hand an open task to another nurse; returns the task's new version."""
    task = _load_task(session, task_id, expected_version, user)
    nurse = session.get(User, assignee_id)
    if nurse is None or not nurse.active or nurse.role != "nurse":
        raise UserError("followup.bad_assignee")
    if nurse.id == task.assignee_id:
        raise UserError("followup.same_assignee")
    previous = task.assignee_id
    task.assignee_id = nurse.id
    _flush_or_stale(session)
    audit.record(session, action="followup_reassign", user_id=user.id, username=user.username,
                 entity="followup_task", entity_id=task.id, patient_id=task.patient_id,
                 detail={"from": previous, "to": nurse.id}, at=now)
    return task.version


def record_view(session: Session, *, user: CurrentUser, patient_id: int, entity: str, entity_id: int | str,
                now: datetime) -> None:
    """A follow-up screen showed a patient's record: that read is audited like any other."""
    audit.record(session, action="view", user_id=user.id, username=user.username, entity=entity,
                 entity_id=entity_id, patient_id=patient_id, at=now)
