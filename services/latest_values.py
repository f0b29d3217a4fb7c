"""observation_latest: the newest value of every (patient, indicator), kept current set-based from observations.

Tag rules on "the latest reading", their preview and the risk pass read this table (one row per patient and
indicator, indexed by indicator and value) instead of ranking every observation with a window function, which
takes tens of seconds at 50M+ observations. It is a derived cache with a watermark (the highest observation id it
has seen, in derived_state):
- refresh() brings it up to date: the first time a full build, afterwards only the patients with observations
  above the watermark (a handful after a day's imports, nothing on a second run);
- refresh(patient_ids=...) also recomputes the given patients, which covers observations an import updated in
  place (importers report the patients they touched);
- usable() says whether a reader may trust it for an evaluation date: the watermark covers every observation and
  no observation is newer than that date. Otherwise readers fall back to ranking observations (correct, slower).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, text
from sqlalchemy.orm import Session

from db.models import DerivedState, Observation, ObservationLatest
from services import clock

NAME = "observation_latest"
CHUNK = 5000
# Above this share of new observations a rebuild from scratch beats per-patient recomputation.
REBUILD_SHARE = 0.25
# ... or when more patients than this changed (their ids are listed in memory and recomputed 5,000 at a time).
REBUILD_PATIENTS = 200_000
_COLUMNS = ["patient_id", "indicator_id", "value", "observed_at", "observation_id"]


@dataclass(frozen=True)
class RefreshStats:
    mode: str  # "build", "incremental", "patients" or "current"
    patients: int  # patients recomputed (-1 for a full build)
    seconds: float


def _newest(*where: Any) -> Select[Any]:
    ranked = (
        select(Observation.patient_id, Observation.indicator_id, Observation.value, Observation.observed_at,
               Observation.id.label("observation_id"),
               func.row_number().over(partition_by=(Observation.patient_id, Observation.indicator_id),
                                      order_by=(Observation.observed_at.desc(), Observation.id.desc())).label("rn"))
        .where(*where)
        .subquery()
    )
    return select(ranked.c.patient_id, ranked.c.indicator_id, ranked.c.value, ranked.c.observed_at,
                  ranked.c.observation_id).where(ranked.c.rn == 1)


def _build(session: Session) -> None:
    """Rebuild the whole table from every observation."""
    if session.get_bind().dialect.name == "postgresql":
        # One sort of every observation: give it memory rather than spilling to disk in small runs.
        session.execute(text("SET LOCAL work_mem = '256MB'"))
    session.execute(delete(ObservationLatest))
    session.execute(insert(ObservationLatest).from_select(_COLUMNS, _newest()))


def _recompute(session: Session, patients: list[int]) -> None:
    """Replace the rows of the given patients (a chunk of ids)."""
    session.execute(delete(ObservationLatest).where(ObservationLatest.patient_id.in_(patients))
                    .execution_options(synchronize_session=False))
    session.execute(insert(ObservationLatest).from_select(_COLUMNS, _newest(Observation.patient_id.in_(patients))))


def _lock(session: Session) -> None:
    # Two refreshes at once (an import and the nightly run) would insert the same keys: take turns.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('observation_latest'))"))


def refresh(session: Session, *, patient_ids: Iterable[int] | None = None) -> RefreshStats:
    """Bring observation_latest up to date (and recompute `patient_ids`, if given). Idempotent and cheap when
    nothing changed: two index lookups."""
    started = clock.now()
    t0 = datetime.now()
    _lock(session)
    state = session.get(DerivedState, NAME)
    top = session.scalar(select(func.max(Observation.id))) or 0
    mode, patients = "current", 0
    wanted: set[int] = set() if patient_ids is None else set(patient_ids)
    if patient_ids is not None:
        mode = "patients"
    if state is None or state.watermark is None:
        _build(session)
        mode, patients, wanted = "build", -1, set()
    elif top > state.watermark:
        new_rows = top - state.watermark
        total = session.scalar(select(func.count()).select_from(ObservationLatest)) if new_rows > 100_000 else 0
        if total and new_rows > REBUILD_SHARE * total:
            _build(session)
            mode, patients, wanted = "build", -1, set()
        else:
            # The ids first, then the same chunked, index-driven recomputation as for the given patients: a
            # sub-query of "observations above the watermark" inside the recomputation was planned against all
            # 58M observations (6 s for an import's 500 patients), and an import's patients came twice.
            changed = session.scalars(select(Observation.patient_id).where(Observation.id > state.watermark)
                                      .distinct().limit(REBUILD_PATIENTS + 1)).all()
            if len(changed) > REBUILD_PATIENTS:
                _build(session)  # so many patients that one pass over everything is cheaper than chunks
                mode, patients, wanted = "build", -1, set()
            else:
                wanted |= set(changed)
                mode = "incremental" if mode == "current" else mode
    if wanted:
        ids = sorted(wanted)
        for start in range(0, len(ids), CHUNK):
            _recompute(session, ids[start:start + CHUNK])
        patients = len(ids)
    newest = session.scalar(select(func.max(Observation.observed_at)))
    if state is None:
        state = DerivedState(name=NAME, refreshed_at=started)
        session.add(state)
    state.watermark, state.max_observed_at, state.refreshed_at = top, newest, started
    session.flush()
    return RefreshStats(mode, patients, (datetime.now() - t0).total_seconds())


def usable(conn: Connection | Session, as_of: datetime) -> bool:
    """True when observation_latest holds exactly the newest reading on or before `as_of` for everyone."""
    row = conn.execute(select(DerivedState.watermark, DerivedState.max_observed_at)
                       .where(DerivedState.name == NAME)).first()
    if row is None or row.watermark is None:
        return False
    top = conn.execute(select(func.max(Observation.id))).scalar()
    if top is not None and top > row.watermark:
        return False
    # A reading after `as_of` would stand in for an older one that was current then.
    return row.max_observed_at is None or as_of >= row.max_observed_at
