"""A/B tests on a reminder rule: two wordings or two channels; patients are assigned at random when queued."""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Experiment
from services import audit
from services.auth import CurrentUser
from services.errors import UserError
from services.messaging import rules, templates
from services.messaging.queue import RULES

VARIANTS = ("wording", "channel")


def create_experiment(session: Session, *, code: str, rule: str, variant: str, arm_a: str, arm_b: str,
                      started_on: date, user: CurrentUser | None, now: datetime) -> Experiment:
    if not re.fullmatch(r"[a-z0-9_]{1,48}", code):
        raise UserError("experiments.bad_code")
    if rule not in RULES:
        raise UserError("experiments.bad_rule", rule=rule, rules=", ".join(RULES))
    if variant not in VARIANTS:
        raise UserError("experiments.bad_variant")
    if arm_a == arm_b:
        raise UserError("experiments.same_arms")
    if variant == "wording":
        for value in (arm_a, arm_b):
            templates.get_template(session, value)  # raises messaging.template_not_found
    elif arm_a not in rules.CHANNELS or arm_b not in rules.CHANNELS:
        raise UserError("experiments.bad_channel", channels=", ".join(rules.CHANNELS))
    if session.scalar(select(Experiment.id).where(Experiment.code == code)) is not None:
        raise UserError("experiments.exists", code=code)
    if session.scalar(select(Experiment.id).where(Experiment.rule == rule, Experiment.active.is_(True))):
        raise UserError("experiments.rule_busy", rule=rule)
    exp = Experiment(code=code, rule=rule, variant=variant, arm_a=arm_a, arm_b=arm_b, started_on=started_on,
                     active=True, created_at=now)
    session.add(exp)
    session.flush()
    audit.record(session, action="experiment_created", user_id=user.id if user else None,
                 username=user.username if user else None, entity="experiment", entity_id=exp.id,
                 detail={"rule": rule, "variant": variant, "a": arm_a, "b": arm_b}, at=now)
    return exp


def stop_experiment(session: Session, *, experiment_id: int, ended_on: date, user: CurrentUser | None,
                    now: datetime) -> None:
    exp = session.get(Experiment, experiment_id)
    if exp is None:
        raise UserError("experiments.not_found")
    exp.active, exp.ended_on = False, ended_on
    audit.record(session, action="experiment_stopped", user_id=user.id if user else None,
                 username=user.username if user else None, entity="experiment", entity_id=exp.id, at=now)
