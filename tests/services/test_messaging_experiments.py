"""A/B tests on reminder rules: validation, random assignment recorded once, arms' wording/channel, results."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import Encounter, ExperimentAssignment, Intervention, Message
from queries.messaging import experiment_results, wilson
from services import experiments
from services.errors import UserError
from services.messaging import queue
from tests.factories import create_patient, create_task
from tests.factories_messaging import consent, contact

AS_OF = date(2026, 6, 15)
NOW = datetime(2026, 6, 15, 1, 0)


def _revisit_patients(s: Session, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        p = create_patient(s)
        consent(s, p.id)
        contact(s, p.id, "email", f"p{p.id}@example.cn")
        s.add(Intervention(patient_id=p.id, kind="education", content="x", performed_on=AS_OF - timedelta(days=30),
                           next_review_on=AS_OF + timedelta(days=1), created_at=NOW))
        ids.append(p.id)
    s.flush()
    return ids


@pytest.mark.parametrize(("kw", "key"), [
    ({"code": "Bad Code"}, "experiments.bad_code"),
    ({"rule": "birthday"}, "experiments.bad_rule"),
    ({"variant": "colour"}, "experiments.bad_variant"),
    ({"arm_b": "reminder_revisit"}, "experiments.same_arms"),
    ({"arm_b": "no_such_template"}, "messaging.template_not_found"),
    ({"variant": "channel", "arm_a": "sms", "arm_b": "fax"}, "experiments.bad_channel"),
])
def test_bad_experiments_are_refused(session: Session, kw: dict[str, str], key: str) -> None:
    values = {"code": "t1", "rule": "revisit", "variant": "wording", "arm_a": "reminder_revisit",
              "arm_b": "reminder_revisit_b", **kw}
    with pytest.raises(UserError) as err:
        experiments.create_experiment(session, started_on=AS_OF, user=None, now=NOW, **values)
    assert err.value.key == key


def test_one_running_test_per_rule(session: Session) -> None:
    experiments.create_experiment(session, code="a", rule="revisit", variant="channel", arm_a="sms", arm_b="email",
                                  started_on=AS_OF, user=None, now=NOW)
    with pytest.raises(UserError) as err:
        experiments.create_experiment(session, code="b", rule="revisit", variant="channel", arm_a="sms",
                                      arm_b="wechat", started_on=AS_OF, user=None, now=NOW)
    assert err.value.key == "experiments.rule_busy"


def test_wording_test_assigns_at_random_once(session: Session) -> None:
    ids = _revisit_patients(session, 40)
    exp = experiments.create_experiment(session, code="wording", rule="revisit", variant="wording",
                                        arm_a="reminder_revisit", arm_b="reminder_revisit_b", started_on=AS_OF,
                                        user=None, now=NOW)
    counts = queue.queue_reminders(session, as_of=AS_OF, now=NOW)
    assert counts["revisit"] == 40
    arms = dict(session.execute(select(ExperimentAssignment.patient_id, ExperimentAssignment.arm)
                                .where(ExperimentAssignment.experiment_id == exp.id)).all())
    assert set(arms) == set(ids) and set(arms.values()) == {"A", "B"}
    for m in session.scalars(select(Message)):
        assert m.template_code == ("reminder_revisit" if arms[m.patient_id] == "A" else "reminder_revisit_b")
    queue.queue_reminders(session, as_of=AS_OF, now=NOW)
    assert session.scalar(select(func.count()).select_from(ExperimentAssignment)) == 40
    assert session.scalar(select(func.count()).select_from(Message)) == 40


def test_channel_test_sends_each_arm_by_its_channel(session: Session) -> None:
    _revisit_patients(session, 12)
    exp = experiments.create_experiment(session, code="chan", rule="revisit", variant="channel", arm_a="sms",
                                        arm_b="email", started_on=AS_OF, user=None, now=NOW)
    queue.queue_reminders(session, as_of=AS_OF, now=NOW)
    rows = session.execute(select(ExperimentAssignment.arm, Message.channel)
                           .join(Message, Message.patient_id == ExperimentAssignment.patient_id)
                           .where(ExperimentAssignment.experiment_id == exp.id)).all()
    assert len(rows) == 12
    assert all(channel == {"A": "sms", "B": "email"}[arm] for arm, channel in rows)


def test_results_per_arm_with_interval(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        exp = experiments.create_experiment(s, code="r", rule="followup", variant="channel", arm_a="sms",
                                            arm_b="wechat", started_on=AS_OF, user=None, now=NOW)
        for i in range(10):
            p = create_patient(s)
            arm = "A" if i < 6 else "B"
            s.add(ExperimentAssignment(experiment_id=exp.id, patient_id=p.id, arm=arm, assigned_at=NOW))
            if i in (0, 1, 2, 6):
                create_task(s, patient_id=p.id, status="done", completed_at=NOW + timedelta(days=2))
            if i == 3:  # done before the assignment: not an outcome of the test
                create_task(s, patient_id=p.id, status="done", completed_at=NOW - timedelta(days=2))
            if i in (0, 7):
                s.add(Encounter(patient_id=p.id, kind="outpatient", started_at=NOW + timedelta(days=3),
                                source="t", source_ref=f"e{i}"))
        exp_id = exp.id
    with engine.connect() as conn:
        df = experiment_results(conn=conn, experiment_id=exp_id, as_of=AS_OF + timedelta(days=10))
    a, b = df.iloc[0], df.iloc[1]
    assert (a["arm"], a["n"], a["followup_completed"], a["visit_kept"]) == ("A", 6, 3, 1)
    assert (b["arm"], b["n"], b["followup_completed"], b["visit_kept"]) == ("B", 4, 1, 1)
    lo, hi = wilson(3, 6)
    assert (a["followup_ci_low"], a["followup_ci_high"]) == (lo, hi)
    assert lo < 0.5 < hi


def test_wilson_known_values() -> None:
    lo, hi = wilson(5, 10)
    assert round(lo, 4) == 0.2366 and round(hi, 4) == 0.7634
    assert wilson(0, 0) == (0.0, 0.0)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
