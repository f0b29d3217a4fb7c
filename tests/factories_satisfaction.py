"""Factories for satisfaction tests: the built-in templates and one submitted response with sensible defaults."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from db.models import Questionnaire
from services import questionnaires as qs
from services import surveys
from tests.factories import NOW

_seq = itertools.count(1)


def builtins(session: Session) -> dict[str, Questionnaire]:
    return {q.code: q for q in qs.ensure_builtin_questionnaires(session, now=NOW)}


def satisfaction(session: Session) -> Questionnaire:
    q = qs.latest(session, "satisfaction")
    if q is None or not qs.items_of(session, q.id):
        builtins(session)
        q = qs.latest(session, "satisfaction")
    assert q is not None
    return q


def submit(session: Session, nps: int | None = 9, *, at: datetime = NOW, questionnaire: Questionnaire | None = None,
           **kw: Any) -> surveys.SubmitResult:
    """A satisfaction response: nps plus any item answers passed as answers={...}; other keywords go through."""
    q = questionnaire or satisfaction(session)
    answers = dict(kw.pop("answers", {}))
    if nps is not None:
        answers.setdefault("nps", nps)
    kw.setdefault("source", "test")
    kw.setdefault("source_ref", f"s{next(_seq)}")
    return surveys.submit_response(session, questionnaire_id=q.id, answers=answers, submitted_at=at, now=at, **kw)
