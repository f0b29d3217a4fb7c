"""The issue's bad-input list, file by file through every importer, on both engines: each bad row or resource is
rejected with its file, location and a translated reason; the good ones are imported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import Indicator, Observation, Patient
from i18n import LANGUAGES, t
from services.importers.base import ImportOptions, ImportResult
from services.importers.runner import run_import
from services.importers.store import bp_pair_error
from tests.factories import create_patient

HEAD = "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE"


def _values(session: Session, code: str) -> list[float]:
    return list(session.scalars(select(Observation.value).join(Indicator, Indicator.id == Observation.indicator_id)
                                .where(Indicator.code == code).order_by(Observation.observed_at)))


def _reasons(r: ImportResult) -> list[tuple[str, str, str]]:
    return [(Path(x.file).name, x.location, x.reason_key) for x in r.rejected]


def _folder(tmp_path: Path, patients: list[str], observations: list[str]) -> Path:
    folder = tmp_path / "synthea"
    folder.mkdir()
    (folder / "patients.csv").write_text("Id,BIRTHDATE,FIRST,LAST,GENDER\n" + "\n".join(patients) + "\n",
                                         encoding="utf-8")
    (folder / "observations.csv").write_text(HEAD + "\n" + "\n".join(observations) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(("sbp", "dbp", "ok"), [(300, 20, False), (120, 130, False), (80, 80, False),
                                                (120, 80, True), (250, 60, True), (300, 110, True)])
def test_bp_pair_rule(sbp: float, dbp: float, ok: bool) -> None:
    assert (bp_pair_error(sbp, dbp) is None) is ok


def test_synthea_bad_values_dates_and_birth_dates(session: Session, tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["p-1,1960-05-01,Li,Wei,M", "p-2,2999-01-01,Future,Baby,F",
                                "p-3,1850-01-01,Too,Old,M", "p-4,1970-02-30,Bad,Date,F"], [
        "2020-03-01T01:00:00Z,p-1,e-1,vital-signs,8480-6,SBP,300,mm[Hg],numeric",    # line 2: 300/20 ...
        "2020-03-01T01:00:00Z,p-1,e-1,vital-signs,8462-4,DBP,20,mm[Hg],numeric",     # line 3: ... both rejected
        "2021-03-01T01:00:00Z,p-1,e-2,vital-signs,8480-6,SBP,135,mm[Hg],numeric",    # line 4: fine
        "2021-03-01T01:00:00Z,p-1,e-2,vital-signs,8462-4,DBP,85,mm[Hg],numeric",     # line 5: fine
        "2021-03-01T01:00:00Z,p-1,e-2,vital-signs,29463-7,Weight,-70,kg,numeric",    # line 6: negative weight
        "2021-03-01T01:00:00Z,p-1,e-2,vital-signs,29463-7,Weight,70,stone,numeric",  # line 7: unknown unit
        "2099-03-01T01:00:00Z,p-1,e-3,vital-signs,29463-7,Weight,70,kg,numeric",     # line 8: in the future
        "2021-02-30T01:00:00Z,p-1,e-4,vital-signs,29463-7,Weight,70,kg,numeric",     # line 9: 30 February
        "2021-03-01T01:00:00Z,p-1,e-2,vital-signs,2339-0,Glucose,abc,mg/dL,numeric",  # line 10: not a number
    ])
    r = run_import(session, [folder])
    assert _reasons(r) == [
        ("patients.csv", "line 3", "import.err.birth_date"),
        ("patients.csv", "line 4", "import.err.birth_date"),
        ("patients.csv", "line 5", "import.err.bad_date"),
        ("observations.csv", "line 2", "import.err.bp_pair"),
        ("observations.csv", "line 3", "import.err.bp_pair"),
        ("observations.csv", "line 6", "import.err.implausible"),
        ("observations.csv", "line 7", "import.err.unit"),
        ("observations.csv", "line 8", "import.err.future_date"),
        ("observations.csv", "line 9", "import.err.bad_date"),
        ("observations.csv", "line 10", "import.err.not_a_number"),
    ]
    assert _values(session, "SBP") == [135] and _values(session, "DBP") == [85] and _values(session, "WEIGHT") == []
    assert session.execute(select(func.count()).select_from(Patient)).scalar_one() == 1
    # every reason reads in both languages with its parameters filled in
    for x in r.rejected:
        for lang in LANGUAGES:
            text = t(x.reason_key, lang, **x.params)
            assert text and "{" not in text and x.reason_key not in text
    assert "300/20" in t(r.rejected[3].reason_key, "en", **r.rejected[3].params)


def test_bp_pair_in_a_fhir_panel_and_unknown_code_in_csv(session: Session, tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:pa", "resource": {"resourceType": "Patient", "id": "pa", "name": [{"text": "赵雷"}],
                                                "gender": "male", "birthDate": "1955-08-09"}},
        {"fullUrl": "urn:uuid:bp", "resource": {
            "resourceType": "Observation", "id": "bp", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "urn:uuid:pa"}, "effectiveDateTime": "2023-05-01T09:00:00+08:00",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 300, "unit": "mmHg", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 20, "unit": "mmHg", "code": "mm[Hg]"}}]}},
    ]}
    f = tmp_path / "bundle.json"
    f.write_text(json.dumps(bundle), encoding="utf-8")
    r = run_import(session, [f])
    assert [x.reason_key for x in r.rejected] == ["import.err.bp_pair", "import.err.bp_pair"]
    assert _values(session, "SBP") == [] and _values(session, "DBP") == []

    create_patient(session, card_no="CARDX")
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("card_no,code,value,unit,date\nCARDX,XYZ,5,mmol/L,2024-01-01\n"
                        "CARDX,FPG,5.5,mmol/L,2024-01-01\n", encoding="utf-8")
    r = run_import(session, [csv_file])
    assert _reasons(r) == [("r.csv", "line 2", "import.err.unknown_code")] and _values(session, "FPG") == [5.5]


def test_hl7_bp_pair_rejected(session: Session, tmp_path: Path) -> None:
    msg = ("MSH|^~\\&|LAB|HOSP|CARELOOP|HOSP|20240101120000||ORU^R01|1|P|2.5.1\r"
           "PID|1||H001^^^HOSP||王^芳||19700101|F\r"
           "OBR|1|O1|F1|BP^Blood pressure|||20240101100000\r"
           "OBX|1|NM|8480-6^SBP^LN||300|mm[Hg]|||||F\r"
           "OBX|2|NM|8462-4^DBP^LN||20|mm[Hg]|||||F\r"
           "OBX|3|NM|8867-4^HR^LN||72|/min|||||F\r")
    f = tmp_path / "bp.hl7"
    f.write_text(msg, encoding="utf-8")
    r = run_import(session, [f])
    assert [(x.location, x.reason_key) for x in r.rejected] == [
        ("message 1 segment 4 OBX", "import.err.bp_pair"), ("message 1 segment 5 OBX", "import.err.bp_pair")]
    assert _values(session, "HR") == [72] and _values(session, "SBP") == []


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.csv", b"", "import.err.empty_file"),
    ("blank.csv", b"\n\n  \n", "import.err.empty_file"),
    ("header_only.csv", b"card_no,code,value,unit,date\n", None),
    ("binary.csv", bytes(range(256)) * 8, "import.err.encoding"),
    ("fake.hl7", b"this is not HL7", "import.err.unknown_format"),
    ("cut.json", b'{"resourceType": "Bundle", "entry": [', "import.err.bad_json"),
    ("fake.xlsx", b"PK\x03\x04 not really a workbook", "import.err.bad_xlsx"),
    ("fake.zip", b"PK\x03\x04 not really a zip", "import.err.unknown_format"),
])
def test_broken_files_leave_nothing_behind(session: Session, tmp_path: Path, name: str, content: bytes,
                                           reason: str | None) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    r = run_import(session, [f], options=ImportOptions(strict=True))
    assert [x.reason_key for x in r.rejected] == ([reason] if reason else [])
    assert r.imported == 0 and session.execute(select(func.count()).select_from(Observation)).scalar_one() == 0


def test_truncated_csv_keeps_the_good_rows_or_nothing_when_strict(session: Session, tmp_path: Path) -> None:
    create_patient(session, card_no="CARDT")
    f = tmp_path / "cut.csv"
    # the last line is cut in the middle of a quoted field: the CSV reader cannot go on
    f.write_text('card_no,code,value,unit,date\nCARDT,SBP,120,mmHg,2024-01-01\nCARDT,DBP,"8', encoding="utf-8")
    r = run_import(session, [f], options=ImportOptions(strict=True))
    assert r.rejected and r.imported == 0 and _values(session, "SBP") == []
    r = run_import(session, [f])
    assert r.rejected and _values(session, "SBP") == [120]


def test_gbk_csv_is_detected(session: Session, tmp_path: Path) -> None:
    create_patient(session, card_no="CARDG")
    f = tmp_path / "gbk.csv"
    f.write_bytes("卡号,项目,结果,单位,日期\nCARDG,空腹血糖,5.6,mmol/L,2024-01-01\nCARDG,FPG,5.8,mmol/L,2024-02-01\n"
                  .encode("gbk"))
    r = run_import(session, [f])
    # 空腹血糖 is the indicator's Chinese name, not a code: rejected with the name shown, read correctly from GBK
    assert [(x.reason_key, x.params.get("code")) for x in r.rejected] == [("import.err.unknown_code", "空腹血糖")]
    assert _values(session, "FPG") == [5.8]


def test_huge_files_are_refused_before_reading(session: Session, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from services.importers import detect, synthea_csv

    monkeypatch.setattr(detect, "MAX_BYTES", 1000)
    monkeypatch.setattr(synthea_csv, "MAX_BYTES", 1000)
    create_patient(session, card_no="CARDH")
    big = tmp_path / "big.csv"
    big.write_text("card_no,code,value,unit,date\n" + "CARDH,SBP,120,mmHg,2024-01-01\n" * 100, encoding="utf-8")
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("patients.csv", "Id,BIRTHDATE,FIRST,LAST,GENDER\n" + "p,1970-01-01,A,B,M\n" * 200)
    assert z.stat().st_size < 1000  # small on disk, large inside
    r = run_import(session, [big, z])
    assert [(Path(x.file).name, x.reason_key, x.params) for x in r.rejected] == [
        ("big.csv", "import.err.too_large", {"mb": 0}), ("export.zip", "import.err.too_large", {"mb": 0})]
    assert session.execute(select(func.count()).select_from(Observation)).scalar_one() == 0


def test_utf16_from_excel_is_read_and_without_its_mark_refused(session: Session, tmp_path: Path) -> None:
    create_patient(session, card_no="CARDU")
    text = "卡号,项目,结果,单位,日期\nCARDU,FPG,5.6,mmol/L,2024-01-01\n"
    with_bom = tmp_path / "unicode.csv"
    with_bom.write_bytes(text.encode("utf-16"))  # BOM + UTF-16LE, as Excel saves "Unicode text"
    r = run_import(session, [with_bom])
    assert r.rejected == [] and _values(session, "FPG") == [5.6]
    no_bom = tmp_path / "nobom.csv"
    no_bom.write_bytes(text.encode("utf-16-le"))
    r = run_import(session, [no_bom])
    assert [x.reason_key for x in r.rejected] == ["import.err.encoding"] and _values(session, "FPG") == [5.6]


def test_a_failure_after_the_files_leaves_nothing_written(engine: Engine, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's rollback undoes files already imported (SQLite too: its savepoints nest, not commit)."""
    from db.engine import transaction
    from services import care_automation

    with transaction(engine) as s:
        create_patient(s, card_no="CARDF")

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(care_automation, "reevaluate", broken)
    f = tmp_path / "r.csv"
    f.write_text("card_no,code,value,unit,date\nCARDF,FPG,5.6,mmol/L,2024-01-01\n", encoding="utf-8")
    with pytest.raises(RuntimeError), transaction(engine) as s:
        run_import(s, [f])
    with transaction(engine) as s:
        assert s.execute(select(func.count()).select_from(Observation)).scalar_one() == 0


def test_hl7_crlf_own_encoding_characters_bom_and_sn_values(session: Session, tmp_path: Path) -> None:
    # Components separated by "$" as MSH-2 says; CRLF segment ends; a BOM; SN "=$5.6" is 5.6, SN ">$200" a limit.
    msg = ("\ufeffMSH|$~\\&|LAB|HOSP|CARELOOP|HOSP|20240101120000||ORU$R01|1|P|2.3.1\r\n"
           "PID|1||H9$$$HOSP||李$四||19600101|M\r\n"
           "OBR|1|O9|F9|GLU$Glucose|||20240101100000\r\n"
           "OBX|1|SN|2339-0$Glucose$LN||=$5.6|mmol/L|||||F\r\n"
           "OBX|2|SN|14647-2$Cholesterol$LN||>$200|mg/dL|||||F\r\n")
    f = tmp_path / "crlf.hl7"
    f.write_bytes(msg.encode("utf-8"))
    r = run_import(session, [f])
    assert [x.reason_key for x in r.rejected] == ["import.err.comparator"]
    assert _values(session, "FPG") == [5.6] and _values(session, "TC") == []
    p = session.scalars(select(Patient)).one()
    assert (p.name, str(p.birth_date)) == ("李四", "1960-01-01")  # Chinese order: family name first


@pytest.mark.parametrize(("given", "family", "name"), [
    ("四", "李", "李四"), ("Anna", "Smith", "Anna Smith"), (None, "王", "王"),
    ("雷", None, "雷"), ("Lei", "赵", "Lei 赵")])
def test_person_names_in_chinese_order(given: str | None, family: str | None, name: str) -> None:
    from services.importers.store import person_name

    assert person_name(given, family) == name
