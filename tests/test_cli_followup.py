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


def test_export_honours_from_to_and_department(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from services.interventions import InterventionInput, log_intervention
    from tests.factories import create_task, department
    from tests.factories_followup import as_current

    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    with Session(sqlite_engine) as s, s.begin():
        card, onc = department(s), department(s, "ONC")
        nurse = create_user(s, department_id=card.id)
        for dept in (card, onc):
            p = create_patient(s, department_id=dept.id)
            for d in (date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 28), date(2026, 3, 1)):
                create_task(s, patient_id=p.id, department_id=dept.id, due_date=d)
                log_intervention(s, data=InterventionInput(p.id, "diet", "少盐", d), user=as_current(nurse),
                                 now=day(AS_OF))

    def export(kind: str, *extra: str) -> list[str]:
        out = tmp_path / f"{kind}.csv"
        assert manage.main(["export", kind, "--format", "csv", "--out", str(out), *extra]) == 0
        return out.read_text(encoding="utf-8-sig").strip().splitlines()[1:]

    february = ("--from", "2026-02-01", "--to", "2026-02-28")
    assert len(export("followups")) == 8
    rows = export("followups", *february)
    assert len(rows) == 4 and all(",2026-02-" in r for r in rows)
    assert len(export("interventions", *february)) == 4
    assert len(export("followups", *february, "--department", "ONC")) == 2
    assert len(export("interventions", "--from", "2026-03-01", "--department", "CARD")) == 1
    assert len(export("interventions", "--to", "2026-01-31")) == 2
    capsys.readouterr()
    assert manage.main(["export", "followups", "--out", str(tmp_path / "x.csv"), "--department", "NOPE"]) == 2
    assert "NOPE" in capsys.readouterr().err
    assert manage.main(["export", "interventions", "--out", str(tmp_path / "x.csv"), "--from", "2026-03-01",
                        "--to", "2026-02-01"]) == 2
