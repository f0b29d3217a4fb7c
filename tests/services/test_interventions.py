"""Interventions: validation and the before/after mean of the targeted indicator."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Intervention
from services import interventions
from services.errors import UserError
from services.interventions import InterventionInput
from tests.factories import create_patient, create_user
from tests.factories_followup import as_current, create_observation, day

NOW = datetime(2026, 6, 15, 10, 0)
TODAY = NOW.date()


def _input(patient_id: int, **kw: object) -> InterventionInput:
    values: dict[str, object] = {"patient_id": patient_id, "kind": "diet", "content": "低盐饮食指导",
                                 "performed_on": TODAY - timedelta(days=1), "indicator_code": "SBP"}
    values.update(kw)
    return InterventionInput(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"kind": ""}, "interventions.kind_required"),
        ({"kind": "magic"}, "interventions.bad_kind"),
        ({"content": "  "}, "interventions.content_required"),
        ({"performed_on": TODAY + timedelta(days=1)}, "interventions.future_date"),
        ({"next_review_on": TODAY - timedelta(days=10)}, "interventions.review_before"),
        ({"indicator_code": "NOPE"}, "interventions.bad_indicator"),
        ({"pid": 999999}, "interventions.no_patient"),
    ],
)
def test_bad_input_writes_nothing(session: Session, kw: dict[str, object], key: str) -> None:
    nurse = as_current(create_user(session))
    p = create_patient(session)
    with pytest.raises(UserError) as err:
        kw = dict(kw)
        pid = int(kw.pop("pid", p.id))  # type: ignore[call-overload]
        interventions.log_intervention(session, data=_input(pid, **kw), user=nurse, now=NOW)
    assert err.value.key == key
    assert session.scalar(select(func.count()).select_from(Intervention)) == 0


def test_before_after_means(session: Session) -> None:
    nurse = as_current(create_user(session))
    p = create_patient(session)
    performed = date(2026, 5, 1)
    for offset, value in [(-100, 200), (-60, 150), (-10, 160), (0, 140), (30, 130), (90, 120), (91, 100)]:
        create_observation(session, patient_id=p.id, code="SBP", value=value,
                           observed_at=day(performed + timedelta(days=offset)))
    row = interventions.log_intervention(session, data=_input(p.id, performed_on=performed), user=nurse, now=NOW)
    assert row.kind == "diet" and row.performer_id == nurse.id
    session.commit()
    with session.connection() as conn:
        ba = interventions.before_after(conn=conn, intervention_id=row.id, window_days=90)
    # before: day -60 and -10 (day -100 is outside the window); after: day 0, 30 and 90 (day 91 is outside).
    assert (ba.n_before, ba.mean_before, ba.n_after, ba.mean_after) == (2, 155.0, 3, 130.0)
    assert ba.change == -25.0


def test_without_indicator_there_is_no_comparison(session: Session) -> None:
    nurse = as_current(create_user(session))
    row = interventions.log_intervention(session, data=_input(create_patient(session).id, indicator_code=None,
                                                              kind="psychological"), user=nurse, now=NOW)
    with session.connection() as conn:
        ba = interventions.before_after(conn=conn, intervention_id=row.id)
    assert ba.change is None and ba.n_before == 0
