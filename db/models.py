"""Careloop's data model: SQLAlchemy 2 typed tables that run unchanged on SQLite and PostgreSQL.

Timestamps are naive and in the site's local time zone (config.timezone): every screen, report and
monthly bucket is read in hospital time, so storing it that way keeps month boundaries right in SQL.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId

ROLES = ("admin", "manager", "nurse", "quality")
SEXES = ("M", "F", "U")
CONSENT_PURPOSES = ("followup", "education", "marketing", "research")
HISTORY_KINDS = ("condition", "allergy", "family", "lifestyle", "medication", "surgery")
TASK_STATUSES = ("pending", "done", "unreachable", "escalated", "cancelled")
CONTACT_OUTCOMES = ("reached", "no_answer", "wrong_number", "refused", "deceased")
CONTACT_METHODS = ("phone", "sms", "wechat", "visit", "email")
INTERVENTION_KINDS = ("education", "diet", "exercise", "psychological", "adherence", "referral")
MESSAGE_STATUSES = ("queued", "sent", "delivered", "failed", "cancelled")


# --- organisation and access -------------------------------------------------------------------


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    # "hospital" wards and clinics vs the "checkup" (health-check centre) side of the site.
    kind: Mapped[str] = mapped_column(String(16), default="hospital")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    # Lockout is a window, never a flag: a user is locked only while now < locked_until.
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


class AuthSession(Base):
    """A server-side login session; the browser cookie only carries its id, so logout can revoke it."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of the random session token: a leaked database does not hand out live sessions.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditLog(Base):
    """Append-only record of every login, read of a patient record, export and change."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_patient_at", "patient_id", "at"),
        Index("ix_audit_log_user_at", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    entity: Mapped[str | None] = mapped_column(String(48))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    detail: Mapped[dict[str, Any] | None]


# --- patients and their records ----------------------------------------------------------------


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        Index("ix_patients_phone", "phone"),
        Index("ix_patients_name", "name"),
        Index("ix_patients_id_number", "id_number"),
        Index("ix_patients_department_status", "department_id", "status"),
        Index("ix_patients_nurse", "nurse_id"),
        Index("ix_patients_birth_date", "birth_date"),
        # Prefix search (LIKE 'abc%') uses a btree only under the C collation; pattern ops make it work under
        # any database locale (zh_CN.UTF-8, C.UTF-8). Plain indexes on SQLite.
        Index("ix_patients_card_no_pattern", "card_no", postgresql_ops={"card_no": "varchar_pattern_ops"}),
        Index("ix_patients_phone_pattern", "phone", postgresql_ops={"phone": "varchar_pattern_ops"}),
        Index("ix_patients_id_number_pattern", "id_number", postgresql_ops={"id_number": "varchar_pattern_ops"}),
        Index("ix_patients_name_pattern", "name", postgresql_ops={"name": "varchar_pattern_ops"}),
        Index("ix_patients_initials_pattern", "name_initials",
              postgresql_ops={"name_initials": "varchar_pattern_ops"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    card_no: Mapped[str] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Pinyin initials ("zs" for 张三) let a nurse search Chinese names from a Latin keyboard.
    name_initials: Mapped[str | None] = mapped_column(String(32), index=True)
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(32))
    id_type: Mapped[str | None] = mapped_column(String(16))
    id_number: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(255))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    nurse_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    channel_prefs: Mapped[list[Any] | None]
    do_not_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    # Messaging (0810_patient_language): the language reminders are written in (zh_CN | en).
    language: Mapped[str] = mapped_column(String(8), default="zh_CN", server_default="zh_CN")
    enrolled_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class PatientIdentifier(Base):
    """Identifiers of a patient in outside systems (Synthea id, HIS MRN, FHIR id) for import matching."""

    __tablename__ = "patient_identifiers"
    __table_args__ = (UniqueConstraint("system", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    system: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(128))


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class HealthHistory(Base):
    """One fact of a health record; an edit ends the old row and adds a new one, so history is kept."""

    __tablename__ = "health_history"
    __table_args__ = (Index("ix_health_history_patient_kind", "patient_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(32))
    code_system: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(500))
    relation: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None]
    started_on: Mapped[date | None] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("health_history.id"))
    source: Mapped[str] = mapped_column(String(32), default="manual")
    source_ref: Mapped[str | None] = mapped_column(String(128))
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Indicator(Base):
    __tablename__ = "indicators"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name_zh: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16))
    loinc_codes: Mapped[list[Any]]
    ref_low: Mapped[float | None] = mapped_column(Float)
    ref_high: Mapped[float | None] = mapped_column(Float)
    # Values outside [plausible_low, plausible_high] are rejected as input errors, not flagged.
    plausible_low: Mapped[float | None] = mapped_column(Float)
    plausible_high: Mapped[float | None] = mapped_column(Float)
    decimals: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer, default=0)


class GuidelineBand(Base):
    """A guideline threshold band for an indicator, as data with its source and version."""

    __tablename__ = "guideline_bands"

    id: Mapped[int] = mapped_column(primary_key=True)
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"), index=True)
    band: Mapped[str] = mapped_column(String(32))
    sex: Mapped[str | None] = mapped_column(String(1))
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    abnormal: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(32))


class Encounter(Base):
    __tablename__ = "encounters"
    __table_args__ = (
        UniqueConstraint("source", "source_ref"),
        Index("ix_encounters_patient_started", "patient_id", "started_at"),
        Index("ix_encounters_started_department", "started_at", "department_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    doctor_name: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str] = mapped_column(String(128))


class ExamReport(Base):
    __tablename__ = "exam_reports"
    __table_args__ = (
        UniqueConstraint("source", "source_ref"),
        Index("ix_exam_reports_patient_reported", "patient_id", "reported_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    encounter_id: Mapped[int | None] = mapped_column(ForeignKey("encounters.id"))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="final")
    reported_at: Mapped[datetime]
    conclusion: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str] = mapped_column(String(128))


class Observation(Base):
    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("source", "source_ref"),
        Index("ix_observations_patient_indicator_at", "patient_id", "indicator_id", "observed_at"),
        Index("ix_observations_observed_at", "observed_at"),
        # Tag rules "any / at least n readings >= x in a window": a range of one indicator's values, read from
        # the index alone on PostgreSQL (patient_id included) instead of scanning every observation.
        Index("ix_observations_indicator_value", "indicator_id", "value", "observed_at",
              postgresql_include=["patient_id"]),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"))
    encounter_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("encounters.id"))
    value: Mapped[float] = mapped_column(Float)
    original_value: Mapped[str | None] = mapped_column(String(64))
    original_unit: Mapped[str | None] = mapped_column(String(32))
    loinc_code: Mapped[str | None] = mapped_column(String(16))
    observed_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="final")
    source: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str] = mapped_column(String(160))


# --- tags and risk -----------------------------------------------------------------------------


class TagRule(Base):
    __tablename__ = "tag_rules"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(48))
    version: Mapped[int] = mapped_column(Integer, default=1)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    expression: Mapped[dict[str, Any]]
    source: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class PatientTag(Base):
    __tablename__ = "patient_tags"
    __table_args__ = (
        Index("ix_patient_tags_patient", "patient_id", "tag_code"),
        Index("ix_patient_tags_code_until", "tag_code", "until"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    tag_code: Mapped[str] = mapped_column(String(48))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("tag_rules.id"))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    since: Mapped[datetime]
    until: Mapped[datetime | None]
    set_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class RiskAssessment(Base):
    __tablename__ = "risk_assessments"
    __table_args__ = (Index("ix_risk_assessments_patient_at", "patient_id", "assessed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    model: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(32))
    assessed_at: Mapped[datetime]
    score: Mapped[float | None] = mapped_column(Float)
    level: Mapped[str | None] = mapped_column(String(32))
    inputs: Mapped[dict[str, Any]]
    factors: Mapped[list[Any]]
    missing: Mapped[list[Any] | None]


class ObservationLatest(Base):
    """The newest observation of each (patient, indicator): a derived table kept by services.latest_values, so
    tag rules, their preview and the risk pass read one row per patient instead of ranking 50M+ observations."""

    __tablename__ = "observation_latest"
    # The rule preview's "latest SBP >= 140": a value range read from the index alone (migration 0612).
    __table_args__ = (Index("ix_observation_latest_indicator_value", "indicator_id", "value",
                            postgresql_include=["patient_id", "observed_at"]),)

    patient_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    indicator_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[datetime]
    observation_id: Mapped[int] = mapped_column(BigId)


class DerivedState(Base):
    """How far a derived table is up to date: the highest source id it has seen and when it was refreshed."""

    __tablename__ = "derived_state"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    watermark: Mapped[int | None] = mapped_column(BigId)
    max_observed_at: Mapped[datetime | None]
    refreshed_at: Mapped[datetime]


# --- questionnaires and satisfaction -----------------------------------------------------------


class Questionnaire(Base):
    """A versioned template; a template in use is never edited, a change makes the next version."""

    __tablename__ = "questionnaires"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(48))
    version: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(16))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    score_rule: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class QuestionnaireItem(Base):
    __tablename__ = "questionnaire_items"
    __table_args__ = (UniqueConstraint("questionnaire_id", "item_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    questionnaire_id: Mapped[int] = mapped_column(ForeignKey("questionnaires.id"))
    item_code: Mapped[str] = mapped_column(String(48))
    position: Mapped[int] = mapped_column(Integer)
    qtype: Mapped[str] = mapped_column(String(16))
    text_zh: Mapped[str] = mapped_column(String(500))
    text_en: Mapped[str] = mapped_column(String(500))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[list[Any] | None]
    # Answers counted as "top box" for this item (for example [5] on a 1-5 scale, [9, 10] on 0-10).
    top_box: Mapped[list[Any] | None]
    is_nps: Mapped[bool] = mapped_column(Boolean, default=False)


class SurveyInvitation(Base):
    __tablename__ = "survey_invitations"
    __table_args__ = (
        Index("ix_survey_invitations_sent_department", "sent_at", "department_id"),
        # 0210_survey_loop: a response finds the patient's open invitation (services/surveys.py).
        Index("ix_survey_invitations_patient_sent", "patient_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    questionnaire_id: Mapped[int] = mapped_column(ForeignKey("questionnaires.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    channel: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime]
    # 0210_survey_loop: the visit or discharge the automation invited for; unique, so it invites once per encounter.
    encounter_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("encounters.id"), index=True, unique=True)


class SurveyResponse(Base):
    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("source", "source_ref"),
        Index("ix_survey_responses_submitted_department", "submitted_at", "department_id"),
        Index("ix_survey_responses_patient", "patient_id"),
        # 0210_survey_loop: "is this invitation answered" (linking a response, the response rate).
        Index("ix_survey_responses_invitation", "invitation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    questionnaire_id: Mapped[int] = mapped_column(ForeignKey("questionnaires.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    invitation_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("survey_invitations.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    doctor_name: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(16))
    submitted_at: Mapped[datetime]
    # The 0-10 "would you recommend" answer copied out of the answers so NPS aggregates on one table.
    nps_score: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    total_score: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str] = mapped_column(String(128))


class SurveyAnswer(Base):
    __tablename__ = "survey_answers"
    __table_args__ = (
        UniqueConstraint("response_id", "item_id"),
        Index("ix_survey_answers_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    response_id: Mapped[int] = mapped_column(BigId, ForeignKey("survey_responses.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("questionnaire_items.id"))
    value_num: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(Text)


class ServiceRecoveryCase(Base):
    __tablename__ = "service_recovery_cases"
    __table_args__ = (Index("ix_service_recovery_cases_status_opened", "status", "opened_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))
    response_id: Mapped[int] = mapped_column(BigId, ForeignKey("survey_responses.id"), unique=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime]
    sla_due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="open")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    root_cause: Mapped[str | None] = mapped_column(String(32))
    resolution: Mapped[str | None] = mapped_column(Text)
    rerating: Mapped[int | None] = mapped_column(SmallInteger)
    closed_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)
    # 0210_survey_loop: the re-rating stored as a survey response of its own (questionnaire "recovery_rerating",
    # no NPS item, so it never counts in NPS; the recovery dashboard shows it as the recovery outcome).
    rerating_response_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("survey_responses.id"))

    __mapper_args__ = {"version_id_col": version}


# --- follow-up and interventions ---------------------------------------------------------------


class FollowupPlan(Base):
    __tablename__ = "followup_plans"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(48))
    version: Mapped[int] = mapped_column(Integer, default=1)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_param: Mapped[str | None] = mapped_column(String(64))
    owner_role: Mapped[str] = mapped_column(String(16), default="nurse")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class FollowupPlanStep(Base):
    __tablename__ = "followup_plan_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("followup_plans.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    offset_days: Mapped[int] = mapped_column(Integer)
    repeat_every_days: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    script: Mapped[str | None] = mapped_column(Text)
    questionnaire_id: Mapped[int | None] = mapped_column(ForeignKey("questionnaires.id"))


class FollowupTask(Base):
    __tablename__ = "followup_tasks"
    __table_args__ = (
        Index("ix_followup_tasks_assignee_status_due", "assignee_id", "status", "due_date"),
        Index("ix_followup_tasks_department_due", "department_id", "due_date"),
        Index("ix_followup_tasks_patient", "patient_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("followup_plans.id"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("followup_plan_steps.id"))
    kind: Mapped[str] = mapped_column(String(20), default="followup")
    # Idempotency key of the trigger that opened the task: running automation twice opens nothing twice.
    dedup_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    method: Mapped[str] = mapped_column(String(16), default="phone")
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage: Mapped[str] = mapped_column(String(8))
    path: Mapped[str | None] = mapped_column(String(500))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class FollowupRecord(Base):
    __tablename__ = "followup_records"
    __table_args__ = (Index("ix_followup_records_patient_at", "patient_id", "contacted_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(BigId, ForeignKey("followup_tasks.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    contacted_at: Mapped[datetime]
    method: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str | None] = mapped_column(Text)
    next_action: Mapped[str | None] = mapped_column(String(16))
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"))
    response_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("survey_responses.id"))
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Intervention(Base):
    __tablename__ = "interventions"
    __table_args__ = (Index("ix_interventions_patient_on", "patient_id", "performed_on"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    kind: Mapped[str] = mapped_column(String(16))
    indicator_id: Mapped[int | None] = mapped_column(ForeignKey("indicators.id"))
    goal: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    performer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    performed_on: Mapped[date] = mapped_column(Date)
    next_review_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]


# --- advice, plans, summaries, messages --------------------------------------------------------


class AdviceItem(Base):
    __tablename__ = "advice_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(48), unique=True)
    category: Mapped[str] = mapped_column(String(16))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    body_zh: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    applies_to: Mapped[dict[str, Any]]
    source: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class WellnessPlan(Base):
    __tablename__ = "wellness_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    goals: Mapped[list[Any]]
    advice_codes: Mapped[list[Any]]
    start_on: Mapped[date] = mapped_column(Date)
    end_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


class HealthSummary(Base):
    __tablename__ = "health_summaries"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    period_from: Mapped[date] = mapped_column(Date)
    period_to: Mapped[date] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_status_scheduled", "status", "scheduled_at"),
        Index("ix_messages_patient", "patient_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    template_code: Mapped[str | None] = mapped_column(String(48))
    body: Mapped[str] = mapped_column(Text)
    scheduled_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None]
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    # Messaging (0800_messaging): the address used, the education item sent, when the channel reported an open.
    recipient: Mapped[str | None] = mapped_column(String(255))
    education_item_id: Mapped[int | None] = mapped_column(ForeignKey("education_items.id"))
    opened_at: Mapped[datetime | None]


# --- messaging, education, experiments (0800_messaging) ------------------------------------------


class MessageTemplate(Base):
    """A bilingual message template; placeholders are checked against MESSAGE_PLACEHOLDERS when saved."""

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(48), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    body_zh: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime]
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class PatientContact(Base):
    """A patient's address on a channel other than the phone on file (e-mail address, WeChat openid)."""

    __tablename__ = "patient_contacts"
    __table_args__ = (UniqueConstraint("patient_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(255))


class EducationItem(Base):
    __tablename__ = "education_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(8))
    tags: Mapped[list[Any]]
    risk_levels: Mapped[list[Any]]
    reviewed_by: Mapped[str] = mapped_column(String(100))
    reviewed_on: Mapped[date] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Experiment(Base):
    """An A/B test on one reminder rule: two wordings (template codes) or two channels."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(48), unique=True)
    rule: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(16))
    arm_a: Mapped[str] = mapped_column(String(48))
    arm_b: Mapped[str] = mapped_column(String(48))
    started_on: Mapped[date] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class ExperimentAssignment(Base):
    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("experiment_id", "patient_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    arm: Mapped[str] = mapped_column(String(1))
    assigned_at: Mapped[datetime]


# --- satisfaction rollup (migration 0200_satisfaction) -----------------------------------------


class NpsDaily(Base):
    """NPS counts per day x department x channel, so a 12-month dashboard reads thousands of rows, not millions.

    department_id 0 and channel "" stand for "none" (key columns cannot be NULL). Maintained by
    services/nps_rollup.py on every submitted response and rebuilt from survey_responses by its rebuild().
    """

    __tablename__ = "nps_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    promoters: Mapped[int] = mapped_column(Integer, default=0)
    passives: Mapped[int] = mapped_column(Integer, default=0)
    detractors: Mapped[int] = mapped_column(Integer, default=0)


class NpsRollupState(Base):
    """One row: every survey response with id <= max_response_id is counted in nps_daily; later ids are not."""

    __tablename__ = "nps_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    max_response_id: Mapped[int] = mapped_column(BigId, default=0)
    rebuilt_at: Mapped[datetime | None]


class ImportMapping(Base):
    """A saved column mapping for an import format (survey-csv), reused from the Import page (0210_survey_loop)."""

    __tablename__ = "import_mappings"
    __table_args__ = (UniqueConstraint("format", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    format: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


# --- follow-up completion rollup (migration 0500_followup) -----------------------------------------


class FollowupDaily(Base):
    """Completion counts per due date x department x nurse x plan x kind (the dashboard's groupings), so a 12-month
    completion dashboard reads thousands of rows, not millions.

    department_id/assignee_id/plan_id 0 stand for "none". on_time_k counts tasks done at most k days after their due
    date (k = 0..30, the dashboard's whole grace range, stays exact); pending is the open tasks (overdue is derived
    at read time from due_date). Maintained by services/followup_rollup.py; tasks with id > the watermark are read
    live.
    """

    __tablename__ = "followup_daily"

    due_date: Mapped[date] = mapped_column(Date, primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignee_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    due: Mapped[int] = mapped_column(Integer, default=0)
    on_time_0: Mapped[int] = mapped_column(Integer, default=0)
    on_time_1: Mapped[int] = mapped_column(Integer, default=0)
    on_time_2: Mapped[int] = mapped_column(Integer, default=0)
    on_time_3: Mapped[int] = mapped_column(Integer, default=0)
    on_time_4: Mapped[int] = mapped_column(Integer, default=0)
    on_time_5: Mapped[int] = mapped_column(Integer, default=0)
    on_time_6: Mapped[int] = mapped_column(Integer, default=0)
    on_time_7: Mapped[int] = mapped_column(Integer, default=0)
    on_time_8: Mapped[int] = mapped_column(Integer, default=0)
    on_time_9: Mapped[int] = mapped_column(Integer, default=0)
    on_time_10: Mapped[int] = mapped_column(Integer, default=0)
    on_time_11: Mapped[int] = mapped_column(Integer, default=0)
    on_time_12: Mapped[int] = mapped_column(Integer, default=0)
    on_time_13: Mapped[int] = mapped_column(Integer, default=0)
    on_time_14: Mapped[int] = mapped_column(Integer, default=0)
    on_time_15: Mapped[int] = mapped_column(Integer, default=0)
    on_time_16: Mapped[int] = mapped_column(Integer, default=0)
    on_time_17: Mapped[int] = mapped_column(Integer, default=0)
    on_time_18: Mapped[int] = mapped_column(Integer, default=0)
    on_time_19: Mapped[int] = mapped_column(Integer, default=0)
    on_time_20: Mapped[int] = mapped_column(Integer, default=0)
    on_time_21: Mapped[int] = mapped_column(Integer, default=0)
    on_time_22: Mapped[int] = mapped_column(Integer, default=0)
    on_time_23: Mapped[int] = mapped_column(Integer, default=0)
    on_time_24: Mapped[int] = mapped_column(Integer, default=0)
    on_time_25: Mapped[int] = mapped_column(Integer, default=0)
    on_time_26: Mapped[int] = mapped_column(Integer, default=0)
    on_time_27: Mapped[int] = mapped_column(Integer, default=0)
    on_time_28: Mapped[int] = mapped_column(Integer, default=0)
    on_time_29: Mapped[int] = mapped_column(Integer, default=0)
    on_time_30: Mapped[int] = mapped_column(Integer, default=0)
    attempted: Mapped[int] = mapped_column(Integer, default=0)
    reached: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)


class FollowupDailyDepartment(Base):
    """followup_daily summed over nurse, plan and kind: what the by-department and by-month views (and the KPI
    row) read, a few thousand rows a year whatever the number of nurses. Recounted with followup_daily."""

    __tablename__ = "followup_daily_department"

    due_date: Mapped[date] = mapped_column(Date, primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    due: Mapped[int] = mapped_column(Integer, default=0)
    on_time_0: Mapped[int] = mapped_column(Integer, default=0)
    on_time_1: Mapped[int] = mapped_column(Integer, default=0)
    on_time_2: Mapped[int] = mapped_column(Integer, default=0)
    on_time_3: Mapped[int] = mapped_column(Integer, default=0)
    on_time_4: Mapped[int] = mapped_column(Integer, default=0)
    on_time_5: Mapped[int] = mapped_column(Integer, default=0)
    on_time_6: Mapped[int] = mapped_column(Integer, default=0)
    on_time_7: Mapped[int] = mapped_column(Integer, default=0)
    on_time_8: Mapped[int] = mapped_column(Integer, default=0)
    on_time_9: Mapped[int] = mapped_column(Integer, default=0)
    on_time_10: Mapped[int] = mapped_column(Integer, default=0)
    on_time_11: Mapped[int] = mapped_column(Integer, default=0)
    on_time_12: Mapped[int] = mapped_column(Integer, default=0)
    on_time_13: Mapped[int] = mapped_column(Integer, default=0)
    on_time_14: Mapped[int] = mapped_column(Integer, default=0)
    on_time_15: Mapped[int] = mapped_column(Integer, default=0)
    on_time_16: Mapped[int] = mapped_column(Integer, default=0)
    on_time_17: Mapped[int] = mapped_column(Integer, default=0)
    on_time_18: Mapped[int] = mapped_column(Integer, default=0)
    on_time_19: Mapped[int] = mapped_column(Integer, default=0)
    on_time_20: Mapped[int] = mapped_column(Integer, default=0)
    on_time_21: Mapped[int] = mapped_column(Integer, default=0)
    on_time_22: Mapped[int] = mapped_column(Integer, default=0)
    on_time_23: Mapped[int] = mapped_column(Integer, default=0)
    on_time_24: Mapped[int] = mapped_column(Integer, default=0)
    on_time_25: Mapped[int] = mapped_column(Integer, default=0)
    on_time_26: Mapped[int] = mapped_column(Integer, default=0)
    on_time_27: Mapped[int] = mapped_column(Integer, default=0)
    on_time_28: Mapped[int] = mapped_column(Integer, default=0)
    on_time_29: Mapped[int] = mapped_column(Integer, default=0)
    on_time_30: Mapped[int] = mapped_column(Integer, default=0)
    attempted: Mapped[int] = mapped_column(Integer, default=0)
    reached: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)


class FollowupRollupState(Base):
    """One row: every follow-up task with id <= max_task_id is counted in followup_daily; later ids are not."""

    __tablename__ = "followup_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    max_task_id: Mapped[int] = mapped_column(BigId, default=0)
    rebuilt_at: Mapped[datetime | None]


# "The newest assessment of model M" per patient, read in order from the index alone (migration 0612).
Index("ix_risk_assessments_model_latest", RiskAssessment.model, RiskAssessment.patient_id,
      RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc(), postgresql_include=["level"])


def lifestyle_aspect() -> ColumnElement[Any]:
    """What a lifestyle record is about (smoking, alcohol, ...): detail["aspect"] as the form writes it, else the
    code, as the demo data and importers write it. One expression for the tag rules and the index that serves them."""
    return func.coalesce(HealthHistory.detail["aspect"].as_string(), HealthHistory.code)


# Tag rule conditions on diagnoses and lifestyle (migration 0612_care_preview_indexes): the few columns a condition
# reads, for the condition and lifestyle rows only, so a preview reads them from the index alone, either all of an
# aspect at once or one patient's by patient_id.
_CONDITION = text("kind = 'condition'")
_LIFESTYLE = text("kind = 'lifestyle'")
_HISTORY_READ = ["code", "text", "started_on", "ended_on", "recorded_at"]
Index("ix_health_history_condition", HealthHistory.patient_id, postgresql_include=_HISTORY_READ,
      postgresql_where=_CONDITION, sqlite_where=_CONDITION)
Index("ix_health_history_lifestyle", lifestyle_aspect(), HealthHistory.patient_id,
      postgresql_include=[*_HISTORY_READ, "detail"], postgresql_where=_LIFESTYLE, sqlite_where=_LIFESTYLE)

Index("ix_followup_tasks_due", FollowupTask.due_date)
# The worklist: open tasks only (a small fraction of all), in the page's order (due date, id) per nurse and per
# department, with patient_id so the risk lookup needs no visit to the table (migration 0510_worklist_index).
_PENDING = text("status = 'pending'")
Index("ix_followup_tasks_pending_assignee", FollowupTask.assignee_id, FollowupTask.due_date, FollowupTask.id,
      FollowupTask.patient_id, postgresql_where=_PENDING, sqlite_where=_PENDING)
Index("ix_followup_tasks_pending_department", FollowupTask.department_id, FollowupTask.due_date, FollowupTask.id,
      FollowupTask.patient_id, postgresql_where=_PENDING, sqlite_where=_PENDING)


# --- top-box rollup for the quality summary (migration 0700_reports_topbox) --------------------------------


class TopboxDaily(Base):
    """Answers per day x department x questionnaire item x value, so the quality summary's top-box table reads
    a few hundred thousand rows a year instead of joining millions of answers to their responses. department_id
    0 stands for "none". Counts every answer of the responses with id <= topbox_rollup_state.max_response_id;
    readers add later responses live (services/topbox_rollup.py)."""

    __tablename__ = "topbox_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float, primary_key=True)
    answers: Mapped[int] = mapped_column(Integer, default=0)


class TopboxRollupState(Base):
    """One row: every survey response with id <= max_response_id is counted in topbox_daily; later ids are not."""

    __tablename__ = "topbox_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    max_response_id: Mapped[int] = mapped_column(BigId, default=0)
    rebuilt_at: Mapped[datetime | None]
