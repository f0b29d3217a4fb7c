"""Generic CSV/Excel results with a column mapping: patient key, indicator code or LOINC, value, unit, date.

Mapping (a saved JSON/TOML file, or the import page's choices), every key optional except the four columns:
  {"patient": "卡号", "patient_system": "card", "indicator": "项目", "value": "结果", "unit": "单位",
   "date": "日期", "name": "姓名", "sex": "性别", "birth_date": "出生日期"}
patient_system "card" matches Careloop card numbers; any other name matches PatientIdentifier(system, value),
and a row of an unknown patient with a name column enrols the patient.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Patient
from services.importers.base import ImportOptions, ImportResult, register
from services.importers.detect import read_text
from services.importers.store import (
    Catalogue,
    ExternalPatient,
    PatientResolver,
    RowError,
    Writer,
    observation_row,
    parse_date,
    parse_datetime,
    reject,
)

REQUIRED = ("patient", "indicator", "value", "date")
# Header names recognised without a mapping (lower case), English and Chinese.
GUESSES: dict[str, tuple[str, ...]] = {
    "patient": ("card_no", "card", "卡号", "会员卡号", "patient_id", "patient", "mrn", "病历号"),
    "indicator": ("indicator", "code", "loinc", "test", "项目", "项目代码", "指标"),
    "value": ("value", "result", "结果", "数值"),
    "unit": ("unit", "units", "单位"),
    "date": ("date", "observed_at", "datetime", "日期", "检查日期", "时间"),
    "name": ("name", "姓名"),
    "sex": ("sex", "gender", "性别"),
    "birth_date": ("birth_date", "birthdate", "出生日期"),
}
_SEX = {"m": "M", "male": "M", "男": "M", "f": "F", "female": "F", "女": "F"}


def guess_mapping(header: list[str]) -> dict[str, str]:
    lower = {h.strip().lower(): h for h in header}
    out: dict[str, str] = {}
    for key, names in GUESSES.items():
        for n in names:
            if n in lower:
                out[key] = lower[n]
                break
    if out.get("patient") and out["patient"].strip().lower() not in ("card_no", "card", "卡号", "会员卡号"):
        out.setdefault("patient_system", "csv")
    return out


def _records(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook  # type: ignore[import-untyped]

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises several kinds for a file that is not a workbook
            raise RowError("import.err.bad_xlsx") from exc
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        try:
            header = [str(h or "").strip() for h in next(rows)]
        except StopIteration as exc:
            raise RowError("import.err.empty_file") from exc

        def gen_x() -> Iterator[tuple[int, dict[str, Any]]]:
            for i, r in enumerate(rows, start=2):
                if r is None or all(v is None or str(v).strip() == "" for v in r):
                    continue
                yield i, dict(zip(header, r, strict=False))

        return header, gen_x()
    text = read_text(path)
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header

    def gen() -> Iterator[tuple[int, dict[str, Any]]]:
        for i, r in enumerate(reader, start=2):
            if None in r:
                raise RowError("import.err.bad_row_at", line=i)
            if all(not (v or "").strip() for v in r.values()):
                continue
            yield i, r

    return header, gen()


def _cell(row: dict[str, Any], col: str | None) -> Any:
    if not col:
        return None
    v = row.get(col)
    return v.strip() if isinstance(v, str) else v


@register("csv")
def import_generic(session: Session, paths: list[Path], options: ImportOptions) -> ImportResult:
    result = ImportResult()
    cat = Catalogue(session)
    for path in paths:
        file = str(path)
        try:
            header, rows = _records(path)
        except RowError as err:
            reject(result, file, "file", err)
            continue
        mapping = dict(options.mapping or guess_mapping(header))
        missing = [k for k in REQUIRED if not mapping.get(k) or mapping[k] not in header]
        if missing:
            reject(result, file, "line 1", RowError("import.err.mapping", columns=", ".join(missing)))
            continue
        system = str(mapping.get("patient_system") or "card")
        source = f"csv:{system}"[:32]
        resolver = PatientResolver(session, result)
        writer = Writer(session, result)
        cards: dict[str, int | None] = {}
        # Full batches are written in the background while the next ones are read (PostgreSQL); the resolver
        # waits for the batch in flight before a query of its own.
        resolver.before_query = writer.sync
        with writer.stream():
            try:
                for line, row in rows:
                    try:
                        key = str(_cell(row, mapping["patient"]) or "").strip()
                        if not key:
                            raise RowError("import.err.missing_id")
                        pid = _patient(session, resolver, cards, system, key, row, mapping)
                        code = str(_cell(row, mapping["indicator"]) or "").strip()
                        if cat.lookup(code) is None:
                            raise RowError("import.err.unknown_code", code=code[:32])
                        raw_date = _cell(row, mapping["date"])
                        at = raw_date if hasattr(raw_date, "year") and hasattr(raw_date, "hour") else parse_datetime(
                            str(raw_date or ""))
                        at = at.replace(microsecond=0)
                        unit = _cell(row, mapping.get("unit"))
                        obs = observation_row(cat, key=code, raw_value=_cell(row, mapping["value"]),
                                              unit=str(unit) if unit is not None else None, patient_id=pid,
                                              observed_at=at, source=source,
                                              source_ref=f"{key}|{code}|{at.isoformat()}",
                                              loinc=code if code in cat.by_loinc else None)
                        if obs is not None:
                            writer.add_observation(obs, where=(file, f"line {line}"))
                    except RowError as err:
                        reject(result, file, f"line {line}", err)
            except RowError as err:  # a broken line ends a CSV reader: the file is truncated or not CSV
                reject(result, file, "file", err)
        resolver.before_query = None
        writer.flush()
    return result


def _patient(session: Session, resolver: PatientResolver, cards: dict[str, int | None], system: str, key: str,
             row: dict[str, Any], mapping: dict[str, Any]) -> int:
    if system == "card":
        if key not in cards:
            if resolver.before_query is not None:
                resolver.before_query()
            # Unknown cards are remembered too: their rows cost one query in all, not one each.
            cards[key] = session.execute(select(Patient.id).where(Patient.card_no == key)).scalar_one_or_none()
        pid = cards[key]
        if pid is None:
            raise RowError("import.err.unknown_patient", ref=key)
        return pid
    known = resolver.known(system, key)
    if known is not None:
        return known
    name = _cell(row, mapping.get("name"))
    if not name:
        raise RowError("import.err.unknown_patient", ref=key)
    birth_raw = _cell(row, mapping.get("birth_date"))
    birth = birth_raw.date() if hasattr(birth_raw, "hour") else birth_raw if hasattr(birth_raw, "year") else (
        parse_date(str(birth_raw)) if birth_raw else None)
    sex = _SEX.get(str(_cell(row, mapping.get("sex")) or "").strip().lower(), "U")
    return resolver.resolve(ExternalPatient(system=system, value=key, name=str(name), sex=sex, birth_date=birth))
