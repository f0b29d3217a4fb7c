"""AppTest: every open of a 360° view leaves an audit row, also a return to the same patient from another page."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models import AuditLog, Patient
from tests.app.test_patient_pages import _app, app_db  # noqa: F401 - the fixture is used by name


def _views(engine: Engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(AuditLog).where(AuditLog.action == "patient_viewed")).all())


def test_coming_back_to_the_same_patient_is_a_new_open(app_db: Engine) -> None:  # noqa: F811
    with Session(app_db) as s:
        pid = s.scalars(select(Patient.id)).one()
    at = _app(app_db, "nurse", "zh_CN")
    at.session_state["patient_id"] = pid
    at.run()
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception, at.exception
    assert _views(app_db) == 1
    at.toggle(key="patient_record_history").set_value(True).run()  # a widget on the page: the same open
    assert not at.exception and _views(app_db) == 1
    at.switch_page("app_pages/patients.py").run()
    assert not at.exception and _views(app_db) == 1
    at.switch_page("app_pages/patient.py").run()  # back to the same record: logged again
    assert not at.exception and _views(app_db) == 2
