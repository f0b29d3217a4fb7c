"""Care automation (risk models, then tag rules) for everyone or just the patients an import touched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from services import clock, latest_values, risk, tags


@dataclass(frozen=True)
class CareRun:
    patients: int
    risk_stored: int
    tags_added: int
    tags_ended: int


def reevaluate(session: Session, *, patient_ids: Iterable[int] | None = None,
               as_of: datetime | None = None) -> CareRun:
    """Risk first (the "high CVD risk" rule reads it), then the tag rules, in the caller's transaction.

    With patient_ids only those patients are assessed and (un)tagged; the import calls this with the patients it
    touched, so a new reading shows in their tags and risk without waiting for the nightly run-automation.
    """
    at = as_of or clock.now()
    ids = None if patient_ids is None else sorted(set(patient_ids))
    if ids is not None and not ids:
        return CareRun(0, 0, 0, 0)
    tags.ensure_builtin_rules(session, now=at)
    # Once for both passes: with patient ids a refresh recomputes those patients even when nothing is new.
    latest_values.refresh(session, patient_ids=ids)
    assessed = risk.assess_all(session, as_of=at, patient_ids=ids, refreshed=True)
    tagged = tags.apply_rules(session, as_of=at, patient_ids=ids, refreshed=True)
    return CareRun(assessed.patients, assessed.stored, tagged.added, tagged.ended)
