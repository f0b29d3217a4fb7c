"""Two enrolments at the same moment get two different card numbers (PostgreSQL: the card lock serialises them)."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models import Patient
from services import patients as svc
from tests.factories_patients import ACTOR, patient_input

NOW = datetime(2026, 6, 1, 9, 0)


def test_simultaneous_enrolments_get_different_cards(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no race to serialise")
    cards: dict[str, str] = {}
    errors: list[BaseException] = []
    with Session(engine) as first:
        cards["first"] = svc.enrol(first, patient_input(name="孙一"), actor=ACTOR, card_prefix="CL", now=NOW).card_no
        started = threading.Event()

        def second() -> None:
            try:
                with Session(engine) as s, s.begin():
                    started.set()
                    cards["second"] = svc.enrol(s, patient_input(name="孙二"), actor=ACTOR, card_prefix="CL",
                                                now=NOW).card_no
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        t = threading.Thread(target=second)
        t.start()
        started.wait(5)
        t.join(0.5)
        assert t.is_alive(), "the second enrolment must wait for the first one's card number to be committed"
        first.commit()
    t.join(10)
    assert not errors, errors
    assert cards["first"] != cards["second"]
    with Session(engine) as s:
        assert sorted(s.scalars(select(Patient.card_no))) == sorted(cards.values())
