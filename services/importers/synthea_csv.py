"""Synthea CSV export (a folder, a zip, or single CSVs of one): patients, encounters, observations, history."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy.orm import Session

from services.importers.base import ImportOptions, ImportResult, register
from services.importers.detect import MAX_BYTES, decode, read_text
from services.importers.store import (
    Catalogue,
    EncRow,
    ExternalPatient,
    HistRow,
    PatientResolver,
    RowError,
    Writer,
    observation_row,
    parse_date,
    parse_datetime,
    reject,
)

SOURCE = "synthea"
SYSTEM = "synthea"
_REQUIRED = {
    "patients.csv": ("Id", "BIRTHDATE", "GENDER"),
    "encounters.csv": ("Id", "START", "PATIENT"),
    "observations.csv": ("DATE", "PATIENT", "CODE", "VALUE", "UNITS"),
    "conditions.csv": ("START", "PATIENT", "CODE", "DESCRIPTION"),
    "medications.csv": ("START", "PATIENT", "CODE", "DESCRIPTION"),
    "allergies.csv": ("START", "PATIENT", "CODE", "DESCRIPTION"),
}
_ORDER = ("patients.csv", "encounters.csv", "observations.csv", "conditions.csv", "medications.csv", "allergies.csv")
_HISTORY_KIND = {"conditions.csv": "condition", "medications.csv": "medication", "allergies.csv": "allergy"}


def _clean_name(first: str, last: str) -> str:
    # Synthea appends digits to names to keep them unique ("Dario75"); they are not part of the name.
    parts = [re.sub(r"\d+$", "", p.strip()) for p in (first, last)]
    return " ".join(p for p in parts if p)


def _members(path: Path) -> dict[str, tuple[str, str]]:
    """name -> (display path, text) of the Synthea CSVs in a folder, zip or single file."""
    out: dict[str, tuple[str, str]] = {}
    if path.is_dir():
        for name in _ORDER:
            f = path / name
            if f.is_file():
                out[name] = (str(f), read_text(f))
    elif path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = Path(info.filename).name.lower()
                if name in _REQUIRED:
                    # The size the zip declares, checked before unpacking: a small zip can hold gigabytes.
                    if info.file_size > MAX_BYTES:
                        raise RowError("import.err.too_large", mb=MAX_BYTES // (1024 * 1024))
                    out[name] = (f"{path}!{info.filename}", decode(zf.read(info)))
    else:
        out[path.name.lower()] = (str(path), read_text(path))
    return out


def _rows(text: str, file: str, name: str, result: ImportResult) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = set(reader.fieldnames or [])
    missing = [c for c in _REQUIRED.get(name, ()) if c not in header]
    if missing:
        reject(result, file, "line 1", RowError("import.err.missing_columns", columns=", ".join(missing)))
        return
    for i, row in enumerate(reader, start=2):
        if None in row:  # more fields than the header: a broken line
            reject(result, file, f"line {i}", RowError("import.err.bad_row"))
            continue
        yield i, row


def _lists(text: str, file: str, name: str, result: ImportResult,
           columns: dict[str, int]) -> Iterator[tuple[int, list[str | None]]]:
    """_rows() as lists (no dict per row) for the big files; `columns` is filled with column -> index.

    Same rules as csv.DictReader: the first line is the header, blank lines are skipped, a short line is padded
    with None, a long one rejected.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = next(reader, [])
    columns.update({c: i for i, c in enumerate(header)})
    missing = [c for c in _REQUIRED.get(name, ()) if c not in columns]
    if missing:
        reject(result, file, "line 1", RowError("import.err.missing_columns", columns=", ".join(missing)))
        return
    width = len(header)
    i = 1
    for row in reader:
        if not row:
            continue
        i += 1
        if len(row) > width:
            reject(result, file, f"line {i}", RowError("import.err.bad_row"))
            continue
        if len(row) < width:
            yield i, [*row, *([None] * (width - len(row)))]
        else:
            yield i, cast(list[str | None], row)


def _is_child(birth: date | None, at: datetime) -> bool:
    return birth is not None and (at.date() - birth).days < 18 * 365


@register("synthea-csv")
def import_synthea(session: Session, paths: list[Path], options: ImportOptions) -> ImportResult:
    result = ImportResult()
    cat = Catalogue(session)
    for path in paths:
        try:
            members = _members(path)
        except RowError as err:
            reject(result, str(path), "file", err)
            continue
        except zipfile.BadZipFile:
            reject(result, str(path), "file", RowError("import.err.bad_zip"))
            continue
        if not members:
            reject(result, str(path), "file", RowError("import.err.no_synthea_files"))
            continue
        _import_members(session, members, cat, result)
    return result


def _import_members(session: Session, members: dict[str, tuple[str, str]], cat: Catalogue,
                    result: ImportResult) -> None:
    resolver = PatientResolver(session, result)
    writer = Writer(session, result)
    births: dict[str, date | None] = {}

    def patient_id(ref: str) -> int:
        pid = resolver.known(SYSTEM, ref)
        if pid is None:
            raise RowError("import.err.unknown_patient", ref=ref)
        return pid

    if "patients.csv" in members:
        file, text = members["patients.csv"]
        rows = list(_rows(text, file, "patients.csv", result))
        resolver.prefetch(SYSTEM, [r.get("Id", "").strip() for _, r in rows])
        exts: list[ExternalPatient] = []
        for line, row in rows:
            try:
                birth = parse_date(row.get("BIRTHDATE"))
                passport = (row.get("PASSPORT") or "").strip() or None
                gender = (row.get("GENDER") or "").strip().upper()
                ext = ExternalPatient(
                    system=SYSTEM, value=row["Id"].strip(),
                    name=_clean_name(row.get("FIRST", ""), row.get("LAST", "")), sex=gender if gender in "MF" and
                    gender else "U", birth_date=birth, id_type="passport" if passport else None,
                    id_number=passport,
                    address=", ".join(x.strip() for x in (row.get("ADDRESS", ""), row.get("CITY", ""),
                                                           row.get("STATE", "")) if x and x.strip()),
                )
                if not ext.value:
                    raise RowError("import.err.missing_id")
                exts.append(ext)
                births[ext.value] = birth
            except RowError as err:
                reject(result, file, f"line {line}", err)
        resolver.resolve_many(exts)

    if "encounters.csv" in members:
        file, text = members["encounters.csv"]
        for line, row in _rows(text, file, "encounters.csv", result):
            try:
                pid = patient_id(row["PATIENT"].strip())
                writer.add_encounter(EncRow(
                    patient_id=pid, kind=(row.get("ENCOUNTERCLASS") or "other").strip() or "other",
                    started_at=parse_datetime(row["START"]),
                    ended_at=parse_datetime(row["STOP"]) if (row.get("STOP") or "").strip() else None,
                    reason=(row.get("REASONDESCRIPTION") or row.get("DESCRIPTION") or "").strip() or None,
                    source=SOURCE, source_ref=row["Id"].strip(),
                ))
            except RowError as err:
                reject(result, file, f"line {line}", err)
        writer.flush()

    if "observations.csv" in members:
        file, text = members["observations.csv"]
        col: dict[str, int] = {}
        tracked = cat.by_loinc
        # Full batches are written in the background while the next ones are read (PostgreSQL).
        resolver.before_query = writer.sync
        with writer.stream():
            _observations(_lists(text, file, "observations.csv", result, col), col, tracked, file, cat, writer,
                          patient_id, births, result)
        resolver.before_query = None
        writer.flush()

    for name, kind in _HISTORY_KIND.items():
        if name not in members:
            continue
        file, text = members[name]
        for line, row in _rows(text, file, name, result):
            try:
                pid = patient_id(row["PATIENT"].strip())
                code = (row.get("CODE") or "").strip()
                start = (row.get("START") or "").strip()
                writer.add_history(HistRow(
                    patient_id=pid, kind=kind, text=(row.get("DESCRIPTION") or "").strip() or code,
                    code=code[:32] or None,
                    code_system=((row.get("SYSTEM") or "").strip() or ("RxNorm" if kind == "medication"
                                                                       else "SNOMED-CT"))[:32],
                    started_on=parse_date(start), ended_on=parse_date(row.get("STOP")),
                    source=SOURCE, source_ref=f"{name[:-4]}|{row['PATIENT'].strip()}|{start}|{code}",
                ))
            except RowError as err:
                reject(result, file, f"line {line}", err)
        writer.flush()



def _observations(rows: Iterator[tuple[int, list[str | None]]], col: dict[str, int], tracked: dict[str, Any],
                  file: str, cat: Catalogue, writer: Writer, patient_id: Callable[[str], int],
                  births: dict[str, date | None], result: ImportResult) -> None:
    """The rows of observations.csv -> the writer (or a rejection each); `col` is filled by the first row read."""
    c_code = c_patient = c_date = c_value = c_units = -1
    c_enc: int | None = None
    for line, vals in rows:
        if c_code < 0:
            c_code, c_patient, c_date, c_value, c_units = (col["CODE"], col["PATIENT"], col["DATE"], col["VALUE"],
                                                           col["UNITS"])
            c_enc = col.get("ENCOUNTER")
        code = (vals[c_code] or "").strip()
        if code not in tracked:
            continue  # a test the catalogue does not track (pain score, QALY, ...): not an error
        try:
            pref = cast(str, vals[c_patient]).strip()
            pid = patient_id(pref)
            raw_date = vals[c_date]
            at = parse_datetime(raw_date)
            enc = ((vals[c_enc] if c_enc is not None else None) or "").strip() or None
            obs = observation_row(
                cat, key=code, raw_value=vals[c_value], unit=vals[c_units], patient_id=pid,
                observed_at=at, source=SOURCE, source_ref=f"{enc or pref}|{cast(str, raw_date).strip()}|{code}",
                encounter_ref=enc, loinc=code, child=_is_child(births.get(pref), at),
            )
            if obs is not None:
                writer.add_observation(obs, where=(file, f"line {line}"))
        except RowError as err:
            reject(result, file, f"line {line}", err)
