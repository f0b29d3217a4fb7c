"""Survey invitations made by the product: after a finished visit or discharge, one invitation per encounter.

Part of the daily `run-automation`. A patient is invited only while active, not marked do-not-contact, and with a
live "followup" consent: a satisfaction survey is a contact after the visit, which is what that consent covers
(research consent is about using data, not about being contacted, so it neither allows nor blocks an invitation).
The unique survey_invitations.encounter_id makes the job idempotent: a re-run, or two runs at once, invite nobody
twice. An encounter whose patient already had an invitation sent after it ended (the demo data's, or an earlier
run's) is not invited again. The invitation's channel is the patient's first preferred channel a survey can use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.models import Consent, Encounter, Patient, SurveyInvitation
from services import audit
from services import questionnaires as qs
from services.errors import UserError

QUESTIONNAIRE = "satisfaction"
CONSENT_PURPOSE = "followup"
# Finished encounters a patient can rate: a visit, a health check, a discharge from a ward.
ENCOUNTER_KINDS = ("outpatient", "checkup", "discharge")
INVITE_CHANNELS = ("wechat", "sms", "phone")
DEFAULT_CHANNEL = "sms"
BATCH = 5000


@dataclass(frozen=True)
class InviteResult:
    as_of: date
    candidates: int
    invited: int


def _channel(prefs: Any) -> str:
    for p in prefs or ():
        if p in INVITE_CHANNELS:
            return str(p)
    return DEFAULT_CHANNEL


def invite_after_encounters(
    session: Session, *, as_of: date, now: datetime, lookback_days: int = 7, actor_id: int | None = None,
    actor: str | None = None,
) -> InviteResult:
    """Invite for every encounter that ended from (as_of - lookback) to the end of as_of; idempotent."""
    if lookback_days < 0:
        raise UserError("invitations.bad_lookback")
    q = qs.latest(session, QUESTIONNAIRE)
    if q is None or q.status != "active":
        raise UserError("questionnaire.not_found", code=QUESTIONNAIRE)
    start = datetime.combine(as_of - timedelta(days=lookback_days), time.min)
    end = min(datetime.combine(as_of + timedelta(days=1), time.min), now)
    consented = exists().where(
        Consent.patient_id == Encounter.patient_id, Consent.purpose == CONSENT_PURPOSE, Consent.granted_at <= now,
        or_(Consent.withdrawn_at.is_(None), Consent.withdrawn_at > now))
    already = exists().where(SurveyInvitation.patient_id == Encounter.patient_id,
                             SurveyInvitation.sent_at >= Encounter.ended_at)
    invited = exists().where(SurveyInvitation.encounter_id == Encounter.id)
    rows = session.execute(
        select(Encounter.id, Encounter.patient_id, Encounter.department_id, Patient.channel_prefs)
        .join(Patient, Patient.id == Encounter.patient_id)
        .where(Encounter.ended_at.is_not(None), Encounter.ended_at >= start, Encounter.ended_at < end,
               Encounter.kind.in_(ENCOUNTER_KINDS), Patient.status == "active", Patient.do_not_contact.is_(False),
               consented, ~invited, ~already)
        .order_by(Encounter.id)
    ).all()
    values = [{"encounter_id": int(e), "patient_id": int(p), "department_id": d, "questionnaire_id": q.id,
               "channel": _channel(prefs), "sent_at": now} for e, p, d, prefs in rows]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    invited_n = 0
    for i in range(0, len(values), BATCH):
        # Two runs at once: the unique encounter_id, not a race, decides.
        stmt = dialect.insert(SurveyInvitation).values(values[i:i + BATCH]).on_conflict_do_nothing(
            index_elements=["encounter_id"])
        invited_n += int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
    audit.record(session, action="survey.invited", user_id=actor_id, username=actor or "system",
                 entity="survey_invitation", detail={"as_of": as_of.isoformat(), "invited": invited_n,
                                                     "candidates": len(values)}, at=now)
    return InviteResult(as_of, len(values), invited_n)
