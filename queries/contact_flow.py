"""What the contact form of a task needs beyond the task: its plan step's questionnaire and its recovery case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from db.models import (
    FollowupPlanStep,
    FollowupTask,
    Questionnaire,
    QuestionnaireItem,
    ServiceRecoveryCase,
    SurveyResponse,
)


@dataclass(frozen=True)
class FormItem:
    item_code: str
    qtype: str
    text: str
    required: bool
    # (value, label) in the reader's language; empty for items without options.
    options: tuple[tuple[Any, str], ...]


@dataclass(frozen=True)
class StepQuestionnaire:
    questionnaire_id: int
    code: str
    version: int
    title: str
    items: tuple[FormItem, ...]


@dataclass(frozen=True)
class CaseBrief:
    case_id: int
    version: int
    status: str
    attempts: int
    sla_due_at: datetime
    nps_score: int | None
    comment: str | None


@dataclass(frozen=True)
class TaskForm:
    questionnaire: StepQuestionnaire | None
    case: CaseBrief | None


def _options(raw: Any, qtype: str, zh: bool) -> tuple[tuple[Any, str], ...]:
    if raw:
        out = []
        for o in raw:
            if isinstance(o, dict):
                out.append((o.get("value"), str(o.get("zh" if zh else "en", o.get("value")))))
            else:
                out.append((o, str(o)))
        return tuple(out)
    if qtype == "likert_5":
        return tuple((v, str(v)) for v in range(1, 6))
    return ()


def task_form(*, conn: Connection, task_id: int, lang: str) -> TaskForm:
    """The step's questionnaire (items in order, labels in `lang`) and the open or closed recovery case, if any."""
    zh = lang == "zh_CN"
    row = conn.execute(
        select(FollowupTask.kind, FollowupTask.dedup_key, FollowupPlanStep.questionnaire_id)
        .outerjoin(FollowupPlanStep, FollowupPlanStep.id == FollowupTask.step_id)
        .where(FollowupTask.id == task_id)
    ).first()
    if row is None:
        return TaskForm(None, None)
    kind, key, qid = row
    questionnaire = None
    if qid is not None:
        q = conn.execute(select(Questionnaire.code, Questionnaire.version, Questionnaire.title_zh,
                                Questionnaire.title_en).where(Questionnaire.id == qid)).first()
        items = conn.execute(
            select(QuestionnaireItem.item_code, QuestionnaireItem.qtype, QuestionnaireItem.text_zh,
                   QuestionnaireItem.text_en, QuestionnaireItem.required, QuestionnaireItem.options)
            .where(QuestionnaireItem.questionnaire_id == qid)
            .order_by(QuestionnaireItem.position, QuestionnaireItem.id)
        ).all()
        if q is not None:
            questionnaire = StepQuestionnaire(
                int(qid), q.code, int(q.version), q.title_zh if zh else q.title_en,
                tuple(FormItem(i.item_code, i.qtype, i.text_zh if zh else i.text_en, bool(i.required),
                               _options(i.options, i.qtype, zh)) for i in items))
    case = None
    if kind == "service_recovery" and key and key.startswith("recovery:") and key[9:].isdigit():
        c = ServiceRecoveryCase
        r = conn.execute(
            select(c.id, c.version, c.status, c.attempts, c.sla_due_at, SurveyResponse.nps_score,
                   SurveyResponse.comment)
            .join(SurveyResponse, SurveyResponse.id == c.response_id)
            .where(c.id == int(key[9:]))
        ).first()
        if r is not None:
            case = CaseBrief(int(r[0]), int(r[1]), str(r[2]), int(r[3]), r[4],
                             None if r[5] is None else int(r[5]), r[6])
    return TaskForm(questionnaire, case)
