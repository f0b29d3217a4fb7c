"""The nps_daily rollup: kept current on every submitted response, rebuilt in one statement from survey_responses.

Readers add survey_responses with id > nps_rollup_state.max_response_id to the rollup, so the numbers are exact
even after a bulk load that bypassed this module (demo seed, COPY); rebuild() makes them fast again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.datefn import as_date
from db.models import NpsDaily, NpsRollupState, SurveyResponse
from queries.metrics import PASSIVE_MIN, PROMOTER_MIN
from services import clock

STATE_ID = 1


@dataclass
class Watermark:
    """Taken (and locked) before a response is inserted; fresh when the rollup holds every earlier response."""

    state: NpsRollupState
    fresh: bool


def lock(session: Session) -> Watermark:
    """Lock the watermark row first, so response ids are handed out in the order their rollup updates commit."""
    state = session.get(NpsRollupState, STATE_ID, with_for_update=True)
    if state is None:
        state = NpsRollupState(id=STATE_ID, max_response_id=0, rebuilt_at=None)
        session.add(state)
        session.flush()
    newest = session.scalar(select(func.max(SurveyResponse.id))) or 0
    return Watermark(state, int(state.max_response_id) == int(newest))


def add(session: Session, mark: Watermark, response: SurveyResponse) -> None:
    """Count one new response in its day x department x channel, when the rollup was current before it."""
    if not mark.fresh:
        return  # the readers' "id > watermark" tail counts it; a rebuild folds it in
    if response.nps_score is not None:
        s = response.nps_score
        values = {
            "day": response.submitted_at.date(), "department_id": response.department_id or 0,
            "channel": response.channel or "", "promoters": int(s >= PROMOTER_MIN),
            "passives": int(PASSIVE_MIN <= s < PROMOTER_MIN), "detractors": int(s < PASSIVE_MIN),
        }
        dialect = session.get_bind().dialect.name
        ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(NpsDaily).values(**values)
        session.execute(ins.on_conflict_do_update(
            index_elements=[NpsDaily.day, NpsDaily.department_id, NpsDaily.channel],
            set_={"promoters": NpsDaily.promoters + ins.excluded.promoters,
                  "passives": NpsDaily.passives + ins.excluded.passives,
                  "detractors": NpsDaily.detractors + ins.excluded.detractors},
        ))
    mark.state.max_response_id = response.id
    session.flush()


def rebuild(session: Session, *, now: datetime | None = None) -> int:
    """Recount nps_daily from survey_responses (one INSERT ... SELECT); returns the number of rollup rows."""
    mark = lock(session)
    newest = session.scalar(select(func.max(SurveyResponse.id))) or 0
    s = SurveyResponse.nps_score
    day = as_date(SurveyResponse.submitted_at)
    dept = func.coalesce(SurveyResponse.department_id, 0)
    channel = func.coalesce(SurveyResponse.channel, "")
    session.execute(delete(NpsDaily))
    session.execute(insert(NpsDaily).from_select(
        ["day", "department_id", "channel", "promoters", "passives", "detractors"],
        select(day, dept, channel,
               func.sum(case((s >= PROMOTER_MIN, 1), else_=0)),
               func.sum(case((and_(s >= PASSIVE_MIN, s < PROMOTER_MIN), 1), else_=0)),
               func.sum(case((s < PASSIVE_MIN, 1), else_=0)))
        .where(s.is_not(None), SurveyResponse.id <= newest)
        .group_by(day, dept, channel),
    ))
    mark.state.max_response_id = int(newest)
    mark.state.rebuilt_at = now or clock.now()
    session.flush()
    return int(session.scalar(select(func.count()).select_from(NpsDaily)) or 0)
