"""`manage.py send-messages` and the reminder step of `run-automation`, through main() on a SQLite file."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import manage
from db.models import Message
from tests.factories import create_patient, create_task
from tests.factories_messaging import consent


@pytest.fixture
def cli_env(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    monkeypatch.setenv("CARELOOP_DEMO", "1")
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CARELOOP_OUTBOX_DIR", str(tmp_path / "outbox"))
    for name in ("SMTP_HOST", "SMS_URL", "WECHAT_URL"):
        monkeypatch.delenv(f"CARELOOP_{name}", raising=False)
    return tmp_path / "outbox"


def test_run_automation_queues_and_send_messages_delivers(sqlite_engine: Engine, cli_env: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with Session(sqlite_engine) as s, s.begin():
        p = create_patient(s)
        consent(s, p.id)
        create_task(s, patient_id=p.id, method="sms", due_date=date(2026, 6, 15))
    assert manage.main(["run-automation", "--as-of", "2026-06-15"]) == 0
    assert "reminders queued" in capsys.readouterr().out
    assert manage.main(["send-messages", "--now", "2026-06-15T09:30"]) == 0
    out = capsys.readouterr().out
    assert "sent 1" in out
    with Session(sqlite_engine) as s:
        m = s.scalars(select(Message)).one()
        assert (m.status, m.sent_at) == ("sent", datetime(2026, 6, 15, 9, 30))
    assert len(list((cli_env / "sms").glob("*.json"))) == 1
    # Again: nothing is due, nothing is sent twice.
    assert manage.main(["send-messages", "--now", "2026-06-15T10:00"]) == 0
    assert "claimed 0" in capsys.readouterr().out
    assert len(list((cli_env / "sms").glob("*.json"))) == 1


def test_send_messages_bad_time_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        manage.main(["send-messages", "--now", "tomorrow"])
    assert exc.value.code == 2
