"""manage.py run-automation (idempotent) and export followups|interventions."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import openpyxl  # type: ignore[import-untyped]
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import manage
from db.models import FollowupTask
from tests.factories import create_patient, create_user
from tests.factories_followup import create_encounter, day

AS_OF = date(2026, 6, 15)


def test_run_automation_twice_and_export(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    with Session(sqlite_engine) as s, s.begin():
        nurse = create_user(s)
        p = create_patient(s, nurse_id=nurse.id)
        create_encounter(s, patient_id=p.id, kind="discharge", started_at=day(AS_OF - timedelta(days=3)),
                         ended_at=day(AS_OF))
    assert manage.main(["run-automation", "--as-of", AS_OF.isoformat()]) == 0
    assert "3 tasks opened" in capsys.readouterr().out
    assert manage.main(["run-automation", "--as-of", AS_OF.isoformat()]) == 0
    assert "0 tasks opened" in capsys.readouterr().out
    with Session(sqlite_engine) as s:
        assert s.scalar(select(func.count()).select_from(FollowupTask)) == 3
    csv_out = tmp_path / "followups.csv"
    assert manage.main(["export", "followups", "--format", "csv", "--out", str(csv_out)]) == 0
    assert len(csv_out.read_text(encoding="utf-8-sig").strip().splitlines()) == 4
    xlsx_out = tmp_path / "interventions.xlsx"
    assert manage.main(["export", "interventions", "--format", "xlsx", "--out", str(xlsx_out)]) == 0
    sheet = openpyxl.load_workbook(xlsx_out).active
    assert sheet is not None and sheet.max_row == 1  # header only: no interventions yet
    with pytest.raises(SystemExit) as exc:
        manage.main(["run-automation", "--as-of", "June 15"])
    assert exc.value.code == 2
