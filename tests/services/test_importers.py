"""Importers on both engines: own fixtures always, the shared reference files when ../shared is present."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import (
    AuditLog,
    Encounter,
    ExamReport,
    HealthHistory,
    Indicator,
    Observation,
    Patient,
    PatientIdentifier,
)
from services.importers import units
from services.importers.base import ImportOptions
from services.importers.detect import sniff
from services.importers.runner import run_import
from tests.factories import create_patient

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference-data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/reference-data is not present")


def _obs(session: Session, code: str, **where: object) -> list[Observation]:
    stmt = select(Observation).join(Indicator, Indicator.id == Observation.indicator_id).where(Indicator.code == code)
    for k, v in where.items():
        stmt = stmt.where(getattr(Observation, k) == v)
    return list(session.scalars(stmt.order_by(Observation.observed_at)))


def _count(session: Session, model: type) -> int:
    return int(session.execute(select(func.count()).select_from(model)).scalar_one())


# --- units (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "unit", "canonical", "code", "expected"), [
    (126, "mg/dL", "mmol/L", "FPG", 126 / 18.016),
    (200, "mg/dL", "mmol/L", "TC", 200 / 38.67),
    (100, "mg/dl", "mmol/L", "LDL", 100 / 38.67),
    (50, "mg/dL", "mmol/L", "HDL", 50 / 38.67),
    (150, "mg/dL", "mmol/L", "TG", 150 / 88.57),
    (1.0, "mg/dL", "µmol/L", "CREA", 88.4),
    (6.0, "mg/dL", "µmol/L", "UA", 6.0 * 59.48),
    (185, "[lb_av]", "kg", "WEIGHT", 185 * 0.45359237),
    (70, "[in_i]", "cm", "HEIGHT", 70 * 2.54),
    (5.5, "mmol/L", "mmol/L", "FPG", 5.5),
    (120, "mm[Hg]", "mmHg", "SBP", 120),
    (72, "/min", "bpm", "HR", 72),
    (48, "mmol/mol", "%", "HBA1C", 0.09148 * 48 + 2.152),
])
def test_unit_conversion(value: float, unit: str, canonical: str, code: str, expected: float) -> None:
    assert units.convert(value, unit, canonical=canonical, indicator_code=code) == pytest.approx(expected)


def test_unknown_unit_is_an_error() -> None:
    with pytest.raises(units.UnitError):
        units.convert(5, "furlongs", canonical="mmol/L", indicator_code="FPG")
    with pytest.raises(units.UnitError):
        units.convert(5, "mg/dL", canonical="kg", indicator_code="WEIGHT")


def test_detection() -> None:
    assert sniff(FIX / "synthea") == "synthea-csv"
    assert sniff(FIX / "hl7_final.hl7") == "hl7v2"  # with a BOM and LF segment ends
    assert sniff(FIX / "fhir_bundle.json") == "fhir"
    assert sniff(FIX / "results_gbk.csv") == "csv"
    assert sniff(FIX / "empty.csv") is None
    assert sniff(FIX / "notes.txt") is None


# --- Synthea CSV -------------------------------------------------------------------------------


def test_synthea_folder_imports_patients_visits_values_and_history(session: Session) -> None:
    r = run_import(session, [FIX / "synthea"])
    assert {rej.reason_key for rej in r.rejected} == {"import.err.not_a_number", "import.err.unknown_patient"}
    assert [(Path(x.file).name, x.location) for x in r.rejected] == [("observations.csv", "line 11"),
                                                                       ("observations.csv", "line 14")]
    li = session.scalars(select(Patient).join(PatientIdentifier).where(PatientIdentifier.value == "p-1")).one()
    assert li.name == "Li Wei" and li.sex == "M" and li.id_number == "X11111111X"
    glucose = _obs(session, "FPG", patient_id=li.id)
    assert len(glucose) == 1 and glucose[0].value == pytest.approx(126 / 18.016, abs=1e-3)
    assert (glucose[0].original_value, glucose[0].original_unit, glucose[0].loinc_code) == ("126.0", "mg/dL",
                                                                                           "2339-0")
    # UTC in the file -> site time (Asia/Shanghai) in the database
    assert glucose[0].observed_at.hour == 9
    assert glucose[0].encounter_id is not None
    assert _obs(session, "TG", patient_id=li.id)[0].value == pytest.approx(2.0, abs=1e-3)
    assert [o.value for o in _obs(session, "SBP", patient_id=li.id)] == [150.0, 132.0]
    # a child's height (110 cm) is below the adult plausible range but real: imported
    assert len(_obs(session, "HEIGHT")) == 1
    assert _count(session, Encounter) == 3
    kinds = Counter(session.scalars(select(HealthHistory.kind)).all())
    assert kinds == {"condition": 1, "medication": 1}

    again = run_import(session, [FIX / "synthea"])
    assert again.imported == 0 and again.updated == 0 and again.skipped > 0


def test_synthea_strict_and_dry_run(session: Session) -> None:
    r = run_import(session, [FIX / "synthea"], options=ImportOptions(strict=True))
    assert r.rejected and r.imported == 0
    assert _count(session, Patient) == 0 and _count(session, Observation) == 0
    r = run_import(session, [FIX / "synthea"], options=ImportOptions(dry_run=True))
    assert r.imported > 0
    assert _count(session, Patient) == 0 and _count(session, Observation) == 0


def test_synthea_zip(session: Session, tmp_path: Path) -> None:
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", FIX / "synthea")
    r = run_import(session, [Path(archive)])
    assert r.imported > 0 and _count(session, Patient) == 2


# --- HL7 v2 ------------------------------------------------------------------------------------


def test_hl7_final_replaces_pending(session: Session) -> None:
    r = run_import(session, [FIX / "hl7_pending.hl7"])
    assert r.rejected == [] and r.imported == 3  # a patient and two results
    tc = _obs(session, "TC")
    assert len(tc) == 1 and tc[0].status == "preliminary" and tc[0].value == pytest.approx(200 / 38.67, abs=1e-3)
    r = run_import(session, [FIX / "hl7_final.hl7"])
    assert [x.reason_key for x in r.rejected] == ["import.err.not_a_number"], r.rejected
    assert r.rejected[0].location == "message 1 segment 6 OBX"
    session.expire_all()
    tc = _obs(session, "TC")
    assert len(tc) == 1 and tc[0].status == "final" and tc[0].value == pytest.approx(210 / 38.67, abs=1e-3)
    tg = _obs(session, "TG")
    assert len(tg) == 1 and tg[0].status == "final" and tg[0].original_value == "150"
    # a late pending message never downgrades a final result
    r = run_import(session, [FIX / "hl7_pending.hl7"])
    assert r.updated == 0
    session.expire_all()
    assert _obs(session, "TC")[0].status == "final"
    assert _count(session, Patient) == 1


# --- FHIR --------------------------------------------------------------------------------------


def test_fhir_bundle_with_bp_panel_and_us_units(session: Session) -> None:
    r = run_import(session, [FIX / "fhir_bundle.json"])
    assert [(x.location, x.reason_key) for x in r.rejected] == [("resource Observation/obs-bad", "import.err.unit")]
    assert [o.value for o in _obs(session, "SBP")] == [142.0]
    assert [o.value for o in _obs(session, "DBP")] == [91.0]
    assert _obs(session, "WEIGHT")[0].value == pytest.approx(90.72, abs=0.01)
    assert _obs(session, "WEIGHT")[0].original_unit == "[lb_av]"
    assert _obs(session, "HEIGHT")[0].value == pytest.approx(177.8)
    patient = session.scalars(select(Patient)).one()
    assert (patient.name, patient.sex, patient.phone) == ("Lei Zhao", "M", "13911112222")


def test_fhir_patient_matched_by_duplicate_rules(session: Session) -> None:
    from datetime import date

    existing = create_patient(session, name="Lei Zhao", birth_date=date(1955, 8, 9), phone="13911112222")
    run_import(session, [FIX / "fhir_bundle.json"])
    assert _count(session, Patient) == 1
    ident = session.scalars(select(PatientIdentifier)).one()
    assert (ident.patient_id, ident.system, ident.value) == (existing.id, "fhir", "pat-a")


# --- generic CSV, bad files --------------------------------------------------------------------


def test_gbk_csv_with_card_numbers(session: Session) -> None:
    create_patient(session, card_no="CARD1")
    r = run_import(session, [FIX / "results_gbk.csv"])
    reasons = sorted((x.location, x.reason_key) for x in r.rejected)
    assert reasons == [("line 4", "import.err.unknown_code"), ("line 5", "import.err.unknown_patient")]
    assert _obs(session, "FPG")[0].value == pytest.approx(108 / 18.016, abs=1e-3)
    assert _obs(session, "TC")[0].value == pytest.approx(5.5)


def test_generic_csv_with_mapping_enrols_unknown_patients(session: Session, tmp_path: Path) -> None:
    f = tmp_path / "his.csv"
    f.write_text("mrn,name,gender,test,result,uom,when\nH1,周八,男,LDL,3.1,mmol/L,2024-02-02\n", encoding="utf-8")
    mapping = {"patient": "mrn", "patient_system": "his", "name": "name", "sex": "gender", "indicator": "test",
               "value": "result", "unit": "uom", "date": "when"}
    r = run_import(session, [f], fmt="csv", options=ImportOptions(mapping=mapping))
    assert r.rejected == []
    p = session.scalars(select(Patient)).one()
    assert (p.name, p.sex) == ("周八", "M")
    again = run_import(session, [f], fmt="csv", options=ImportOptions(mapping=mapping))
    assert again.imported == 0


def test_xlsx_import(session: Session, tmp_path: Path) -> None:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    create_patient(session, card_no="CARD9")
    wb = Workbook()
    ws = wb.active
    ws.append(["card_no", "code", "value", "unit", "date"])
    ws.append(["CARD9", "WEIGHT", 150, "lb", "2024-03-03"])
    wb.save(tmp_path / "r.xlsx")
    r = run_import(session, [tmp_path / "r.xlsx"])
    assert r.rejected == [] and _obs(session, "WEIGHT")[0].value == pytest.approx(68.04, abs=0.01)


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.csv", "import.err.empty_file"),
    ("truncated.json", "import.err.bad_json"),
    ("notes.txt", "import.err.unknown_format"),
])
def test_bad_files_are_rejected_clearly(session: Session, name: str, reason: str) -> None:
    r = run_import(session, [FIX / name])
    assert [(Path(x.file).name, x.reason_key) for x in r.rejected] == [(name, reason)]


def test_truncated_json_as_fhir_and_wrong_format(session: Session) -> None:
    r = run_import(session, [FIX / "truncated.json"], fmt="fhir")
    assert [x.reason_key for x in r.rejected] == ["import.err.bad_json"]
    r = run_import(session, [FIX / "fhir_bundle.json"], fmt="hl7v2")
    assert [x.reason_key for x in r.rejected] == ["import.err.not_hl7"]
    assert _count(session, Observation) == 0


def test_import_is_audited(session: Session) -> None:
    run_import(session, [FIX / "hl7_pending.hl7"], options=ImportOptions(actor="tester"))
    row = session.scalars(select(AuditLog).where(AuditLog.action == "import")).one()
    assert row.username == "tester" and row.detail and row.detail["imported"] == 3


# --- the shared reference files ----------------------------------------------------------------


@needs_shared
def test_reference_synthea_csv(session: Session) -> None:
    r = run_import(session, [SHARED / "synthea-csv-sample"])
    assert {x.reason_key for x in r.rejected} <= {"import.err.implausible"} and len(r.rejected) < 5
    assert _count(session, Patient) == 22
    dario = session.scalars(select(Patient).join(PatientIdentifier).where(
        PatientIdentifier.value == "d9937c56-f2e8-ff4a-4744-3c13a452514e")).one()
    assert dario.name == "Dario Breitenberg" and str(dario.birth_date) == "1981-07-17"
    heights = _obs(session, "HEIGHT", patient_id=dario.id)
    assert heights[0].value == pytest.approx(188.5)
    years = {o.observed_at.year for o in _obs(session, "SBP", patient_id=dario.id)}
    assert len(years) >= 3  # multi-year history
    n_obs = _count(session, Observation)
    again = run_import(session, [SHARED / "synthea-csv-sample"])
    assert again.imported == 0 and again.updated == 0 and _count(session, Observation) == n_obs
    r2 = run_import(session, [SHARED / "synthea-csv-ohdsi-dbt-synthea"])
    assert r2.rejected == []
    assert _count(session, Patient) == 22 + 27


@needs_shared
def test_reference_fhir(session: Session) -> None:
    r = run_import(session, [SHARED / "synthea-fhir-r4-bundles"])
    assert r.rejected == [] and _count(session, Patient) == 2
    assert len(_obs(session, "SBP")) == len(_obs(session, "DBP")) > 0
    r = run_import(session, [SHARED / "hl7-fhir-r4-examples"])
    assert r.rejected == []
    weight = _obs(session, "WEIGHT", source_ref="Observation/example")[0]
    assert weight.value == pytest.approx(185 * 0.45359237, abs=0.01) and weight.original_unit == "[lb_av]"
    glucose = _obs(session, "FPG", source_ref="Observation/f001")[0]
    assert glucose.value == pytest.approx(6.3)
    bp = _obs(session, "SBP", source_ref="Observation/blood-pressure#8480-6")[0]
    assert bp.value == pytest.approx(107)
    ldl = _obs(session, "LDL", source_ref="Observation/ldlcholesterol")[0]
    assert ldl.value == pytest.approx(4.6)
    assert _count(session, ExamReport) >= 3
    r = run_import(session, [SHARED / "synthea-bulk-fhir-ndjson"])
    assert r.rejected == [] and r.imported == 120


@needs_shared
def test_reference_hl7v2(session: Session) -> None:
    r = run_import(session, [SHARED / "hl7v2-oru"])
    # the files' own oddities are reported, never crash: a URL as a heart rate, "27~25", 100 mmol/L cholesterol
    assert {x.reason_key for x in r.rejected} <= {"import.err.value_type", "import.err.repeated_value",
                                                  "import.err.implausible"}
    lipid = [o for o in _obs(session, "TC") if o.original_unit == "mg/dL"]
    assert lipid and lipid[0].value == pytest.approx(196 / 38.67, abs=1e-3) and lipid[0].status == "final"
    n = _count(session, Observation)
    again = run_import(session, [SHARED / "hl7v2-oru"])
    assert again.imported == 0 and _count(session, Observation) == n


# --- the command line --------------------------------------------------------------------------


def test_cli_import_and_export(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    import manage

    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(sqlite_engine.url))
    assert manage.main(["import", str(FIX / "hl7_pending.hl7")]) == 0
    assert "imported 3" in capsys.readouterr().out
    assert manage.main(["import", str(FIX / "hl7_final.hl7"), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "dry run" in out and "hl7_final.hl7: message 1 segment 6 OBX" in out
    assert manage.main(["import", str(tmp_path / "missing.csv")]) == 2
    assert manage.main(["export", "observations", "--out", str(tmp_path / "o.csv")]) == 0
    text = (tmp_path / "o.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == ("card_no,source_patient_id,indicator,loinc_code,value,unit,original_value,"
                                    "original_unit,observed_at,source")
    assert ",MRN77,TC,2093-3," in text
    assert manage.main(["export", "patients", "--format", "xlsx", "--out", str(tmp_path / "p.xlsx")]) == 0
    with Session(sqlite_engine) as s:
        actions = s.scalars(select(AuditLog.action)).all()
    assert actions.count("export") == 2 and actions.count("import") == 1


def test_synthea_reimport_updates_changed_values_only(session: Session, tmp_path: Path) -> None:
    folder = tmp_path / "synthea"
    shutil.copytree(FIX / "synthea", folder)
    first = run_import(session, [folder])
    obs = folder / "observations.csv"
    text = obs.read_text(encoding="utf-8")
    # a corrected result, a new one with a tab and a backslash in its encounter reference, a duplicate patient row
    obs.write_text(text.replace("Glucose,126.0,mg/dL", "Glucose,7.5,mmol/L").replace(
        "2021-06-01T01:00:00Z,p-2,e-3,vital-signs,8302-2,Body Height,110.0,cm,numeric",
        "2021-06-01T01:00:00Z,p-2,e-3,vital-signs,8302-2,Body Height,110.0,cm,numeric\n"
        '2021-07-01T01:00:00Z,p-2,"e\t4\\\\x",vital-signs,8302-2,Body Height,111.0,cm,numeric'), encoding="utf-8")
    pats = folder / "patients.csv"
    lines = pats.read_text(encoding="utf-8").splitlines()
    pats.write_text("\n".join([*lines, lines[1].replace("p-1,", "p-1b,", 1)]) + "\n", encoding="utf-8")
    again = run_import(session, [folder])
    assert not {r.reason_key for r in again.rejected} - {r.reason_key for r in first.rejected}
    # the new observation and p-1b (matched to p-1 by the duplicate rules) are new and changed; nothing else
    assert (again.imported, again.updated) == (1, 2)
    li = session.scalars(select(Patient).join(PatientIdentifier).where(PatientIdentifier.value == "p-1")).one()
    twin = session.scalars(select(PatientIdentifier.patient_id).where(PatientIdentifier.value == "p-1b")).one()
    assert twin == li.id
    glucose = _obs(session, "FPG", patient_id=li.id)
    assert [(g.value, g.original_value, g.original_unit) for g in glucose] == [(7.5, "7.5", "mmol/L")]
    heights = session.scalars(select(Observation.source_ref).where(Observation.source_ref.like("e\t4%"))).all()
    assert heights == ["e\t4\\\\x|2021-07-01T01:00:00Z|8302-2"]
    third = run_import(session, [folder])
    assert (third.imported, third.updated) == (0, 0) and third.skipped > 0
