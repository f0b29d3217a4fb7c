"""The topbox_daily rollup behind the quality summary's top-box table: answers per day x department x item x value.

Readers (queries/report_data.topbox_by_item) add the answers of responses with id > topbox_rollup_state's
watermark live, so the figures are exact whether or not the rollup is current; refresh() folds the newer
responses in (one INSERT ... SELECT, adding to existing cells) and moves the watermark, rebuild() recounts
everything. Answers are written once, with their response (services/surveys.submit_response, survey imports),
so counted responses never change. The quality report callers refresh before building (a no-op when nothing new
arrived). refresh() takes the nps_daily watermark lock first, which survey submission holds while it inserts:
every response id at or below the newest one it then sees is committed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.datefn import as_date
from db.models import SurveyAnswer, SurveyResponse, TopboxDaily, TopboxRollupState
from services import clock, nps_rollup

STATE_ID = 1
COLUMNS = ["day", "department_id", "item_id", "value", "answers"]


def _state(session: Session) -> TopboxRollupState:
    nps_rollup.lock(session)
    state = session.get(TopboxRollupState, STATE_ID, with_for_update=True)
    if state is None:
        state = TopboxRollupState(id=STATE_ID, max_response_id=0, rebuilt_at=None)
        session.add(state)
        session.flush()
    return state


def _fold(session: Session, after: int, upto: int) -> None:
    """Add the answers of responses after < id <= upto to their cells."""
    r, a = SurveyResponse, SurveyAnswer
    day = as_date(r.submitted_at)
    dept = func.coalesce(r.department_id, 0)
    rows = (select(day, dept, a.item_id, a.value_num, func.count())
            .select_from(a).join(r, r.id == a.response_id)
            .where(r.id > after, r.id <= upto, a.value_num.is_not(None))
            .group_by(day, dept, a.item_id, a.value_num))
    dialect = session.get_bind().dialect.name
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(TopboxDaily).from_select(COLUMNS, rows)
    session.execute(ins.on_conflict_do_update(
        index_elements=[TopboxDaily.day, TopboxDaily.department_id, TopboxDaily.item_id, TopboxDaily.value],
        set_={"answers": TopboxDaily.answers + ins.excluded.answers},
    ))


def refresh(session: Session) -> int:
    """Fold the responses newer than the watermark into the rollup (in the caller's transaction); returns how
    many responses were folded in."""
    state = _state(session)
    mark = int(state.max_response_id)
    newest = int(session.scalar(select(func.max(SurveyResponse.id))) or 0)
    if newest <= mark:
        return 0
    _fold(session, mark, newest)
    folded = int(session.scalar(select(func.count()).select_from(SurveyResponse)
                                .where(SurveyResponse.id > mark, SurveyResponse.id <= newest)) or 0)
    state.max_response_id = newest
    session.flush()
    return folded


def rebuild(session: Session, *, now: datetime | None = None) -> int:
    """Recount topbox_daily from every answer; returns the number of rollup rows."""
    state = _state(session)
    newest = int(session.scalar(select(func.max(SurveyResponse.id))) or 0)
    session.execute(delete(TopboxDaily))
    _fold(session, 0, newest)
    state.max_response_id = newest
    state.rebuilt_at = now or clock.now()
    session.flush()
    return int(session.scalar(select(func.count()).select_from(TopboxDaily)) or 0)
