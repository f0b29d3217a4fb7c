"""Submitting survey responses: validation, NPS copy, scoring, duplicates, and opening service-recovery cases."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from db.models import (
    FollowupTask,
    Patient,
    Questionnaire,
    QuestionnaireItem,
    ServiceRecoveryCase,
    SurveyAnswer,
    SurveyInvitation,
    SurveyResponse,
    User,
)
from queries.metrics import PASSIVE_MIN
from services import audit, clock, nps_rollup
from services import questionnaires as qs
from services.errors import UserError

DEFAULT_SLA_HOURS = 48
DEFAULT_LOW_ITEM = "overall"
DEFAULT_LOW_BELOW = 5.0
CHANNELS = ("kiosk", "app", "sms", "wechat", "phone", "web", "paper", "import")
# A response answers the patient's newest unanswered invitation to the same questionnaire sent this many days before.
INVITATION_WINDOW_DAYS = 30


@dataclass(frozen=True)
class RecoveryRules:
    """When a response opens a service-recovery case: every detractor, and `item` answered below `below`."""

    sla_hours: int = DEFAULT_SLA_HOURS
    item: str | None = None
    below: float | None = None

    @staticmethod
    def of(q: Questionnaire) -> RecoveryRules:
        # The template carries its own rule ("recovery" in score_rule), so an admin sets it in the builder;
        # without one, an overall rating below 5 of 10 opens a case, as a detractor does.
        r = (q.score_rule or {}).get("recovery") or {}
        below = r.get("below", DEFAULT_LOW_BELOW if "item" not in r else None)
        return RecoveryRules(int(r.get("sla_hours", DEFAULT_SLA_HOURS)), r.get("item", DEFAULT_LOW_ITEM),
                             float(below) if below is not None else None)


@dataclass(frozen=True)
class SubmitResult:
    response: SurveyResponse
    created: bool  # False: the same submission was already stored and is not counted twice
    case: ServiceRecoveryCase | None


def _recovery_reason(nps_score: int | None, answers: Mapping[str, float | None], rules: RecoveryRules) -> str | None:
    if nps_score is not None and nps_score < PASSIVE_MIN:
        return "detractor"
    if rules.item and rules.below is not None:
        v = answers.get(rules.item)
        if v is not None and v < rules.below:
            return f"low:{rules.item}"
    return None


def validate_answers(
    items: Sequence[QuestionnaireItem], answers: Mapping[str, Any]
) -> dict[str, tuple[float | None, str | None]]:
    """(value_num, value_text) per answered item; UserError for an unknown item, a bad value or a missing answer."""
    codes = {i.item_code for i in items}
    unknown = sorted(set(answers) - codes)
    if unknown:
        raise UserError("survey.unknown_items", items=", ".join(unknown))
    values: dict[str, tuple[float | None, str | None]] = {}
    for item in items:
        v = qs.coerce_answer(item, answers.get(item.item_code))
        if v is None:
            if item.required:
                raise UserError("survey.required_missing", item=item.item_code)
            continue
        values[item.item_code] = v
    return values


def submit_response(
    session: Session,
    *,
    questionnaire_id: int,
    answers: Mapping[str, Any],
    submitted_at: datetime | None = None,
    patient_id: int | None = None,
    department_id: int | None = None,
    doctor_name: str | None = None,
    channel: str | None = None,
    comment: str | None = None,
    invitation_id: int | None = None,
    source: str = "app",
    source_ref: str | None = None,
    rules: RecoveryRules | None = None,
    open_recovery: bool = True,
    link_invitation: bool = True,
    actor_id: int | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Validate every answer first, then write the response, its answers and (for a detractor) a recovery case."""
    at = now or clock.now()
    q = session.get(Questionnaire, questionnaire_id)
    if q is None:
        raise UserError("questionnaire.not_found", code=str(questionnaire_id))
    items = qs.items_of(session, q.id)
    by_code = {i.item_code: i for i in items}
    values = validate_answers(items, answers)
    if channel is not None and channel not in CHANNELS:
        raise UserError("survey.bad_channel", channel=channel)
    patient = session.get(Patient, patient_id) if patient_id is not None else None
    if patient_id is not None and patient is None:
        raise UserError("survey.unknown_patient", patient=str(patient_id))
    if department_id is None and patient is not None:
        department_id = patient.department_id
    when = submitted_at or at
    if source_ref is None:
        # A form submitted twice (double click, resend) by the same patient at the same second is one response.
        source_ref = (f"p{patient_id}:q{q.id}:{when.isoformat(timespec='seconds')}" if patient_id is not None
                      else uuid.uuid4().hex)
    existing = session.scalars(
        select(SurveyResponse).where(SurveyResponse.source == source, SurveyResponse.source_ref == source_ref)
    ).first()
    if existing is not None:
        return SubmitResult(existing, False, None)

    if invitation_id is None and link_invitation and patient_id is not None:
        invitation_id = open_invitation(session, patient_id=patient_id, questionnaire=q, at=when)
    mark = nps_rollup.lock(session)  # before the insert: ids then follow the order rollup updates commit
    nums = {code: num for code, (num, _) in values.items()}
    nps_item = next((i for i in items if i.is_nps), None)
    nps_value = nums.get(nps_item.item_code) if nps_item is not None else None
    nps_score = int(nps_value) if nps_value is not None else None
    scored = qs.score(q.score_rule, {c: n for c, n in nums.items() if n is not None})
    if comment is None and "comment" in values:
        comment = values["comment"][1]
    response = SurveyResponse(
        questionnaire_id=q.id, patient_id=patient_id, invitation_id=invitation_id, department_id=department_id,
        doctor_name=(doctor_name or None), channel=channel, submitted_at=when, nps_score=nps_score,
        comment=(comment or None), total_score=scored.total if scored else None, source=source,
        source_ref=source_ref,
    )
    session.add(response)
    session.flush()
    nps_rollup.add(session, mark, response)
    session.add_all(
        SurveyAnswer(response_id=response.id, item_id=by_code[code].id, value_num=num, value_text=text)
        for code, (num, text) in values.items()
    )
    session.flush()
    audit.record(session, action="survey.submitted", user_id=actor_id, username=actor, entity="survey_response",
                 entity_id=response.id, patient_id=patient_id,
                 detail={"questionnaire": q.code, "version": q.version, "nps": nps_score,
                         "score": scored.total if scored else None, "band": scored.band if scored else None},
                 at=at)
    case = None
    if open_recovery:
        reason = _recovery_reason(nps_score, nums, rules or RecoveryRules.of(q))
        if reason is not None:
            case = open_case(session, response=response, reason=reason, rules=rules or RecoveryRules.of(q),
                             actor_id=actor_id, actor=actor, now=at)
    return SubmitResult(response, True, case)


def open_invitation(session: Session, *, patient_id: int, questionnaire: Questionnaire, at: datetime) -> int | None:
    """The patient's newest unanswered invitation to this questionnaire (any version) sent in the window before
    `at`: linking it is what makes the dashboards' response rate real for answers given on a page or a call."""
    answered = aliased(SurveyResponse)
    versions = select(Questionnaire.id).where(Questionnaire.code == questionnaire.code)
    return session.scalar(
        select(SurveyInvitation.id)
        .where(SurveyInvitation.patient_id == patient_id, SurveyInvitation.questionnaire_id.in_(versions),
               SurveyInvitation.sent_at <= at, SurveyInvitation.sent_at >= at - timedelta(days=INVITATION_WINDOW_DAYS),
               ~exists().where(answered.invitation_id == SurveyInvitation.id))
        .order_by(SurveyInvitation.sent_at.desc(), SurveyInvitation.id.desc()).limit(1)
    )


def recovery_owner(session: Session, *, patient: Patient | None, department_id: int | None) -> int | None:
    """The patient's own nurse, else the first active nurse of the department, else nobody (quality assigns)."""
    if patient is not None and patient.nurse_id is not None:
        return patient.nurse_id
    if department_id is None:
        return None
    return session.scalar(
        select(User.id).where(User.role == "nurse", User.active.is_(True), User.department_id == department_id)
        .order_by(User.id).limit(1)
    )


def open_case(
    session: Session,
    *,
    response: SurveyResponse,
    reason: str,
    rules: RecoveryRules,
    actor_id: int | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> ServiceRecoveryCase:
    """One case per response, with its SLA, and a worklist task for the owner when the patient is known."""
    at = now or clock.now()
    existing = session.scalars(
        select(ServiceRecoveryCase).where(ServiceRecoveryCase.response_id == response.id)
    ).first()
    if existing is not None:
        return existing
    patient = session.get(Patient, response.patient_id) if response.patient_id is not None else None
    owner = recovery_owner(session, patient=patient, department_id=response.department_id)
    due = at + timedelta(hours=rules.sla_hours)
    case = ServiceRecoveryCase(
        patient_id=response.patient_id, response_id=response.id, department_id=response.department_id,
        owner_id=owner, opened_at=at, sla_due_at=due, status="open", attempts=0,
    )
    session.add(case)
    session.flush()
    if patient is not None:
        session.add(FollowupTask(
            patient_id=patient.id, kind="service_recovery", dedup_key=f"recovery:{case.id}",
            department_id=response.department_id, assignee_id=owner, method="phone", due_date=due.date(),
            status="pending", attempts=0, created_at=at,
        ))
        session.flush()
    audit.record(session, action="recovery.opened", user_id=actor_id, username=actor, entity="service_recovery_case",
                 entity_id=case.id, patient_id=response.patient_id,
                 detail={"response_id": response.id, "reason": reason, "sla_due_at": due.isoformat()}, at=at)
    return case


@dataclass(frozen=True)
class PatientBrief:
    id: int
    card_no: str
    name: str
    department_id: int | None


def find_patient(session: Session, *, card_no: str, actor_id: int | None = None,
                 actor: str | None = None) -> PatientBrief:
    """The patient a survey is filled for, by membership card number; the look-up is audited."""
    card = card_no.strip()
    if not card:
        raise UserError("survey.card_required")
    p = session.scalars(select(Patient).where(Patient.card_no == card)).first()
    if p is None:
        raise UserError("survey.unknown_card", card=card)
    audit.record(session, action="patient.read", user_id=actor_id, username=actor, entity="patient", entity_id=p.id,
                 patient_id=p.id, detail={"purpose": "survey_fill"})
    return PatientBrief(p.id, p.card_no, p.name, p.department_id)
