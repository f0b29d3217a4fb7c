"""Health phase summaries (健康阶段总结): a draft written from the data in the user's language, edited, then saved."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    FollowupRecord,
    FollowupTask,
    GuidelineBand,
    HealthSummary,
    Indicator,
    Intervention,
    Observation,
    Patient,
    PatientTag,
    RiskAssessment,
    SurveyResponse,
    TagRule,
)
from i18n import t
from services import audit, clock
from services.errors import UserError

MAX_TEXT = 20000


def _bounds(period_from: date, period_to: date) -> tuple[datetime, datetime]:
    if period_to < period_from:
        raise UserError("care.summary.bad_period")
    return datetime.combine(period_from, time.min), datetime.combine(period_to + timedelta(days=1), time.min)


def _band(session: Session, indicator_id: int, value: float, sex: str, lang: str) -> str | None:
    from db.catalogue import BAND_LABELS

    rows = session.execute(select(GuidelineBand.band, GuidelineBand.low, GuidelineBand.high, GuidelineBand.sex)
                           .where(GuidelineBand.indicator_id == indicator_id)).all()
    for band, low, high, band_sex in rows:
        if band_sex not in (None, sex):
            continue
        if (low is None or value >= low) and (high is None or value < high):
            zh, en = BAND_LABELS.get(band, (band, band))
            return zh if lang == "zh_CN" else en
    return None


def draft(session: Session, *, patient_id: int, period_from: date, period_to: date, lang: str) -> str:
    """A plain-text draft: indicator changes with guideline status, tags gained and lost, risk change,
    follow-ups and interventions done, and satisfaction in the period."""
    start, end = _bounds(period_from, period_to)
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise UserError("care.summary.no_patient")
    lines = [t("care.summary.heading", lang, name=patient.name, start=period_from.isoformat(),
               end=period_to.isoformat()), ""]

    # Indicators: first and last reading in the period.
    lines.append(t("care.summary.indicators", lang))
    inds = session.execute(select(Indicator.id, Indicator.code, Indicator.name_zh, Indicator.name_en, Indicator.unit)
                           .order_by(Indicator.position)).all()
    any_ind = False
    for ind_id, _code, name_zh, name_en, unit in inds:
        rows = session.execute(select(Observation.value, Observation.observed_at)
                               .where(Observation.patient_id == patient_id, Observation.indicator_id == ind_id,
                                      Observation.observed_at >= start, Observation.observed_at < end)
                               .order_by(Observation.observed_at)).all()
        if not rows:
            continue
        any_ind = True
        first, last = rows[0][0], rows[-1][0]
        name = name_zh if lang == "zh_CN" else name_en
        band = _band(session, ind_id, last, patient.sex, lang)
        status = f" ({band})" if band else ""
        if len(rows) == 1:
            lines.append(t("care.summary.indicator_one", lang, name=name, value=f"{last:g}", unit=unit,
                           status=status))
        else:
            lines.append(t("care.summary.indicator_change", lang, name=name, first=f"{first:g}", last=f"{last:g}",
                           unit=unit, n=len(rows), status=status))
    if not any_ind:
        lines.append(t("care.summary.none", lang))

    # Tags gained and lost.
    names = {c: (zh if lang == "zh_CN" else en) for c, zh, en in
             session.execute(select(TagRule.code, TagRule.name_zh, TagRule.name_en))}
    gained = session.scalars(select(PatientTag.tag_code).where(
        PatientTag.patient_id == patient_id, PatientTag.since >= start, PatientTag.since < end)).all()
    lost = session.scalars(select(PatientTag.tag_code).where(
        PatientTag.patient_id == patient_id, PatientTag.until >= start, PatientTag.until < end)).all()
    lines.append("")
    lines.append(t("care.summary.tags_gained", lang, tags=", ".join(sorted({names.get(c, c) for c in gained}))
                   or t("care.summary.none", lang)))
    lines.append(t("care.summary.tags_lost", lang, tags=", ".join(sorted({names.get(c, c) for c in lost}))
                   or t("care.summary.none", lang)))

    # Risk: the last assessment before the period against the last one in it, per model.
    lines.append("")
    lines.append(t("care.summary.risk", lang))
    any_risk = False
    for model in sorted(set(session.scalars(select(RiskAssessment.model).where(
            RiskAssessment.patient_id == patient_id, RiskAssessment.assessed_at < end)))):
        def last_before(limit: datetime, model: str = model) -> tuple[float | None, str | None] | None:
            row = session.execute(select(RiskAssessment.score, RiskAssessment.level).where(
                RiskAssessment.patient_id == patient_id, RiskAssessment.model == model,
                RiskAssessment.assessed_at < limit).order_by(RiskAssessment.assessed_at.desc()).limit(1)).first()
            return None if row is None else (row[0], row[1])
        before, after = last_before(start), last_before(end)
        if after is None or after[0] is None:
            continue
        any_risk = True
        label = t(f"care.risk.model.{model}", lang)
        level = t(f"care.risk.level.{after[1]}", lang)
        if before is None or before[0] is None:
            lines.append(t("care.summary.risk_now", lang, model=label, score=f"{after[0]:.1f}", level=level))
        else:
            lines.append(t("care.summary.risk_change", lang, model=label, before=f"{before[0]:.1f}",
                           after=f"{after[0]:.1f}", level=level))
    if not any_risk:
        lines.append(t("care.summary.none", lang))

    # Follow-ups, interventions and satisfaction.
    done = session.scalar(select(func.count()).select_from(FollowupTask).where(
        FollowupTask.patient_id == patient_id, FollowupTask.status == "done",
        FollowupTask.completed_at >= start, FollowupTask.completed_at < end)) or 0
    contacts = session.scalar(select(func.count()).select_from(FollowupRecord).where(
        FollowupRecord.patient_id == patient_id, FollowupRecord.contacted_at >= start,
        FollowupRecord.contacted_at < end)) or 0
    interventions = session.execute(select(Intervention.kind, func.count()).where(
        Intervention.patient_id == patient_id, Intervention.performed_on >= period_from,
        Intervention.performed_on <= period_to).group_by(Intervention.kind).order_by(Intervention.kind)).all()
    scores = session.scalars(select(SurveyResponse.nps_score).where(
        SurveyResponse.patient_id == patient_id, SurveyResponse.nps_score.is_not(None),
        SurveyResponse.submitted_at >= start, SurveyResponse.submitted_at < end)
        .order_by(SurveyResponse.submitted_at)).all()
    lines.append("")
    lines.append(t("care.summary.followups", lang, done=done, contacts=contacts))
    kinds = ", ".join(f"{t(f'care.summary.intervention.{k}', lang)} × {n}" for k, n in interventions)
    lines.append(t("care.summary.interventions", lang, kinds=kinds or t("care.summary.none", lang)))
    if scores:
        lines.append(t("care.summary.satisfaction", lang, scores=", ".join(str(s) for s in scores)))
    else:
        lines.append(t("care.summary.no_satisfaction", lang))
    return "\n".join(lines)


def save(session: Session, *, patient_id: int, period_from: date, period_to: date, language: str, text: str,
         author_id: int | None, username: str | None, now: datetime | None = None) -> HealthSummary:
    _bounds(period_from, period_to)
    if session.get(Patient, patient_id) is None:
        raise UserError("care.summary.no_patient")
    body = text.strip()
    if not body:
        raise UserError("care.summary.empty")
    if len(body) > MAX_TEXT:
        raise UserError("care.summary.too_long", limit=MAX_TEXT)
    if language not in ("zh_CN", "en"):
        raise UserError("care.summary.bad_language")
    now = now or clock.now()
    row = HealthSummary(patient_id=patient_id, period_from=period_from, period_to=period_to, language=language,
                        text=body, author_id=author_id, created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, action="health_summary.save", user_id=author_id, username=username,
                 entity="health_summary", entity_id=row.id, patient_id=patient_id, at=now,
                 detail={"from": period_from.isoformat(), "to": period_to.isoformat()})
    return row


def summaries_of(session: Session, *, patient_id: int) -> list[HealthSummary]:
    return list(session.scalars(select(HealthSummary).where(HealthSummary.patient_id == patient_id)
                                .order_by(HealthSummary.created_at.desc())))
