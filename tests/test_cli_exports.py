"""`manage.py export KIND`: every kind in csv and xlsx on SQLite and PostgreSQL, one audit row per file, the
filters applied, contacts masked unless --unmasked, and bad options refused with a translated error, no file."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl  # type: ignore[import-untyped]
import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

import manage
from db.models import AuditLog
from i18n import t
from services.interventions import InterventionInput, log_intervention
from services.masking import mask_phone
from tests.factories import create_patient, create_response, create_task, create_user, department
from tests.factories_care import create_observation
from tests.factories_followup import as_current

KINDS = ("patients", "observations", "followups", "interventions", "nps", "satisfaction")
PHONE = "13912345678"


@pytest.fixture
def cli_db(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("CARELOOP_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setattr(manage, "LANG", "en")
    with Session(engine) as s, s.begin():
        card, endo = department(s, "CARD"), department(s, "ENDO")
        nurse = create_user(s, department_id=card.id)
        for i, dept in enumerate((card, endo)):
            p = create_patient(s, department_id=dept.id, name=f"李{i}", phone=PHONE, id_number="110105198001011234")
            create_observation(s, patient_id=p.id, code="SBP", value=150 + i, at=datetime(2026, 2, 10, 9))
            for d in (date(2026, 1, 20), date(2026, 2, 20)):
                create_task(s, patient_id=p.id, department_id=dept.id, due_date=d)
                log_intervention(s, data=InterventionInput(p.id, "diet", "少盐", d), user=as_current(nurse),
                                 now=datetime(2026, 3, 1, 10))
            for score, day in ((10, 5), (3, 15)):
                create_response(s, nps_score=score, department_id=dept.id, submitted_at=datetime(2026, 2, day, 10))
    return engine


def _audits(engine: Engine) -> list[AuditLog]:
    with Session(engine) as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id)))


def _detail(row: AuditLog) -> dict[str, Any]:
    assert row.detail is not None
    return dict(row.detail)


def _read(path: Path) -> list[list[str]]:
    if path.suffix == ".xlsx":
        ws = openpyxl.load_workbook(path).active
        return [["" if v is None else str(v) for v in row] for row in ws.iter_rows(values_only=True)]
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode()), "CSV carries a UTF-8 BOM so Excel opens Chinese text"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_every_kind_writes_its_file_and_one_audit_row(cli_db: Engine, tmp_path: Path, fmt: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    period = ("--from", "2026-01-01", "--to", "2026-12-31")
    for kind in KINDS:
        out = tmp_path / f"{kind}.{fmt}"
        extra = period if kind in ("nps", "satisfaction") else ()
        assert manage.main(["export", kind, "--format", fmt, "--out", str(out), *extra]) == 0, kind
        rows = _read(out)
        assert len(rows) >= 2, kind  # a header and data
        assert not (tmp_path / f"{kind}.{fmt}.part").exists()
        audit = _audits(cli_db)[-1]
        assert audit.username == "manage.py" and audit.entity == kind
        assert _detail(audit)["format"] == fmt and _detail(audit)["rows"] == len(rows) - 1
        assert _detail(audit)["filter"] and _detail(audit)["out"] == str(out)
    assert len(_audits(cli_db)) == len(KINDS)
    assert "audit log" in capsys.readouterr().out


def test_filters_apply_and_are_audited(cli_db: Engine, tmp_path: Path) -> None:
    def export(kind: str, *extra: str) -> list[list[str]]:
        out = tmp_path / f"{kind}.csv"
        assert manage.main(["export", kind, "--out", str(out), *extra]) == 0
        return _read(out)[1:]

    assert len(export("followups")) == 4
    assert len(export("followups", "--from", "2026-02-01", "--to", "2026-02-28")) == 2
    assert len(export("interventions", "--department", "ENDO")) == 2
    assert len(export("interventions", "--to", "2026-01-31", "--department", "CARD")) == 1
    audit = _audits(cli_db)[-1]
    assert "CARD" in _detail(audit)["filter"] and "2026-01-31" in _detail(audit)["filter"]
    by_dept = export("nps", "--by", "department", "--from", "2026-02-01", "--to", "2026-02-28")
    assert len(by_dept) == 2 and all(r[1] == "2" for r in by_dept)
    assert _detail(_audits(cli_db)[-1])["by"] == "department"


def test_patients_are_masked_unless_unmasked(cli_db: Engine, tmp_path: Path) -> None:
    masked, full = tmp_path / "m.csv", tmp_path / "f.csv"
    assert manage.main(["export", "patients", "--out", str(masked)]) == 0
    assert manage.main(["export", "patients", "--out", str(full), "--unmasked"]) == 0
    text_masked, text_full = masked.read_text(encoding="utf-8-sig"), full.read_text(encoding="utf-8-sig")
    assert PHONE not in text_masked and mask_phone(PHONE) in text_masked
    assert PHONE in text_full
    first, second = _audits(cli_db)[-2:]
    assert _detail(first)["unmasked"] is False and _detail(second)["unmasked"] is True
    assert _detail(second)["filter"].endswith(t("reports.cli.unmasked", "en"))


BAD = [
    (["export", "visits"], "reports.cli.unknown_kind"),
    (["export", "patients", "--format", "pdf"], "reports.cli.bad_format"),
    (["export", "patients", "--by", "month"], "reports.cli.option_not_for"),
    (["export", "nps", "--by", "week"], "reports.cli.bad_by"),
    (["export", "observations", "--from", "2026-01-01"], "reports.cli.option_not_for"),
    (["export", "patients", "--department", "CARD"], "reports.cli.option_not_for"),
    (["export", "followups", "--unmasked"], "reports.cli.option_not_for"),
    (["export", "followups", "--from", "2026-03-01", "--to", "2026-02-01"], "reports.bad_period"),
    (["export", "interventions", "--department", "NOPE"], "reports.unknown_department"),
    (["export", "nps", "--department", "NOPE"], "reports.unknown_department"),
]


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_bad_options_are_refused_in_the_users_language(cli_db: Engine, tmp_path: Path, lang: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(manage, "LANG", lang)
    out = tmp_path / "x.csv"
    for argv, key in BAD:
        capsys.readouterr()
        assert manage.main([*argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err
        # The message is the catalogue's text in that language (its fixed part, before any placeholder).
        assert t(key, lang, kind="§", kinds="§", format="§", formats="§", option="§", by="§", groupings="§",
                 start="§", end="§", code="§", path="§").split("§")[0] in err, (argv, err)
        assert not out.exists() and not (tmp_path / "x.csv.part").exists()
    assert manage.main(["export", "patients", "--out", str(tmp_path / "missing" / "p.csv")]) == 2
    assert t("reports.cli.bad_out", lang, path="§").split("§")[0] in capsys.readouterr().err
    assert manage.main(["export", "patients", "--out", str(tmp_path)]) == 2  # a folder
    assert _audits(cli_db) == []


def test_a_failed_write_leaves_nothing_behind(cli_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: Connection, out: str, fmt: str, full: bool) -> int:
        Path(out).write_text("half a file")
        raise RuntimeError("disk full")

    monkeypatch.setitem(manage.EXPORTS, "patients", broken)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "p.csv"
    with pytest.raises(RuntimeError):
        manage.main(["export", "patients", "--out", str(out)])
    assert list((tmp_path / "out").iterdir()) == []
    with Session(cli_db) as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "export")) == 0
