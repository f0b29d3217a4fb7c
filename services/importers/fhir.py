"""FHIR R4: Bundles (transaction, collection, searchset, ...), bulk ndjson, single resources.

Patients first (so `urn:uuid:` and `Patient/id` references resolve), then Encounters, Observations (BP as a
component panel), DiagnosticReports and Conditions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ExamReport
from services.importers.base import ImportOptions, ImportResult, register
from services.importers.detect import read_text
from services.importers.store import (
    Catalogue,
    EncRow,
    ExternalPatient,
    HistRow,
    PatientResolver,
    RowError,
    Writer,
    is_cjk,
    observation_row,
    parse_date,
    parse_datetime,
    person_name,
    reject,
)

SOURCE = "fhir"
SYSTEM = "fhir"
LOINC = "http://loinc.org"
_STATUS = {"final": "final", "amended": "amended", "corrected": "corrected", "preliminary": "preliminary",
           "registered": "registered", "cancelled": "cancelled", "entered-in-error": "cancelled"}

Resource = dict[str, Any]


def _load(path: Path, result: ImportResult) -> list[tuple[str, str | None, Resource]]:
    """(location, fullUrl, resource) of every resource in a file, Bundles flattened."""
    text = read_text(path)
    out: list[tuple[str, str | None, Resource]] = []
    if path.suffix.lower() == ".ndjson":
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                res = json.loads(line)
            except ValueError:
                reject(result, str(path), f"line {i}", RowError("import.err.bad_json"))
                continue
            if not isinstance(res, dict) or "resourceType" not in res:
                reject(result, str(path), f"line {i}", RowError("import.err.not_fhir"))
                continue
            out.extend(_flatten(res, f"line {i}", None))
        return out
    try:
        res = json.loads(text)
    except ValueError as exc:
        raise RowError("import.err.bad_json") from exc
    if not isinstance(res, dict) or "resourceType" not in res:
        raise RowError("import.err.not_fhir")
    return _flatten(res, "", None)


def _flatten(res: Resource, where: str, full_url: str | None) -> list[tuple[str, str | None, Resource]]:
    if res.get("resourceType") == "Bundle":
        out: list[tuple[str, str | None, Resource]] = []
        for n, entry in enumerate(res.get("entry") or [], start=1):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict) and "resourceType" in inner:
                out.extend(_flatten(inner, f"{where} entry {n}".strip(), entry.get("fullUrl")))
        return out
    rid = res.get("id")
    loc = f"resource {res.get('resourceType')}/{rid}" if rid else f"{where} {res.get('resourceType')}".strip()
    return [(loc, full_url, res)]


def _ref_keys(res: Resource, full_url: str | None) -> list[str]:
    keys = []
    if full_url:
        keys.append(full_url)
    if res.get("id"):
        keys.append(f"{res['resourceType']}/{res['id']}")
    return keys


def _patient(res: Resource) -> ExternalPatient:
    names = res.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given_parts = [str(g) for g in official.get("given") or []]
    given = ("" if all(is_cjk(g) for g in given_parts) else " ").join(given_parts)
    name = official.get("text") or person_name(given, official.get("family"))
    phone = next((t.get("value") for t in res.get("telecom") or [] if t.get("system") == "phone"), None)
    addr = (res.get("address") or [{}])[0]
    address = addr.get("text") or ", ".join([*(addr.get("line") or []), addr.get("city") or "",
                                             addr.get("state") or ""]).strip(", ")
    gender = {"male": "M", "female": "F"}.get(res.get("gender") or "", "U")
    birth = parse_date(res.get("birthDate")) if res.get("birthDate") else None
    return ExternalPatient(system=SYSTEM, value=str(res.get("id") or ""), name=name or None, sex=gender,
                           birth_date=birth, phone=phone, address=address or None)


def _when(res: Resource) -> datetime:
    for key in ("effectiveDateTime", "effectiveInstant", "issued"):
        if res.get(key):
            return parse_datetime(res[key])
    period = res.get("effectivePeriod") or {}
    if period.get("start"):
        return parse_datetime(period["start"])
    raise RowError("import.err.missing_date")


def _loincs(concept: Resource | None) -> list[str]:
    return [c["code"] for c in (concept or {}).get("coding") or [] if c.get("system") == LOINC and c.get("code")]


def _quantity(item: Resource) -> tuple[Any, str | None]:
    q = item.get("valueQuantity")
    if isinstance(q, dict) and q.get("value") is not None:
        if q.get("comparator"):
            raise RowError("import.err.comparator", value=f"{q['comparator']}{q['value']}")
        return q["value"], q.get("code") or q.get("unit")
    if "valueString" in item:
        return item["valueString"], None
    if "valueInteger" in item:
        return item["valueInteger"], None
    raise RowError("import.err.missing_value")


@register("fhir")
def import_fhir(session: Session, paths: list[Path], options: ImportOptions) -> ImportResult:
    result = ImportResult()
    cat = Catalogue(session)
    for path in paths:
        try:
            resources = _load(path, result)
        except RowError as err:
            reject(result, str(path), "file", err)
            continue
        _import_resources(session, str(path), resources, cat, result)
    return result


def _import_resources(session: Session, file: str, resources: list[tuple[str, str | None, Resource]],
                      cat: Catalogue, result: ImportResult) -> None:
    resolver = PatientResolver(session, result)
    writer = Writer(session, result)
    patients: dict[str, int] = {}
    births: dict[int, date | None] = {}
    # Dates of DiagnosticReports, for result Observations that carry none themselves.
    report_dates: dict[str, datetime] = {}

    for loc, full_url, res in resources:
        if res["resourceType"] != "Patient":
            continue
        try:
            ext = _patient(res)
            if not ext.value:
                raise RowError("import.err.missing_id")
            pid = resolver.resolve(ext)
            births[pid] = ext.birth_date
            for key in _ref_keys(res, full_url):
                patients[key] = pid
        except RowError as err:
            reject(result, file, loc, err)

    def subject(res: Resource) -> int:
        ref = ((res.get("subject") or res.get("patient") or {}).get("reference") or "").strip()
        if not ref:
            raise RowError("import.err.no_subject")
        if ref in patients:
            return patients[ref]
        if not ref.startswith("Patient/"):
            raise RowError("import.err.unknown_patient", ref=ref)
        # A reference to a patient outside this file: known by its id, or enrolled with the id as its name.
        pid = resolver.resolve(ExternalPatient(system=SYSTEM, value=ref.removeprefix("Patient/"),
                                               name=(res.get("subject") or {}).get("display")))
        patients[ref] = pid
        return pid

    for loc, _full_url, res in resources:
        kind = res["resourceType"]
        try:
            if kind == "DiagnosticReport":
                at = _when(res)
                for r in res.get("result") or []:
                    if r.get("reference"):
                        report_dates[r["reference"]] = at
                _report(session, res, subject(res), at, result)
            elif kind == "Encounter":
                period = res.get("period") or {}
                if not period.get("start"):
                    raise RowError("import.err.missing_date")
                writer.add_encounter(EncRow(
                    patient_id=subject(res), kind=((res.get("class") or {}).get("code") or "other")[:16],
                    started_at=parse_datetime(period["start"]),
                    ended_at=parse_datetime(period["end"]) if period.get("end") else None,
                    reason=((res.get("type") or [{}])[0].get("text")), source=SOURCE,
                    source_ref=f"Encounter/{res.get('id') or _digest(res)}",
                ))
            elif kind == "Condition":
                code = (res.get("code") or {})
                coding = (code.get("coding") or [{}])[0]
                onset = res.get("onsetDateTime") or res.get("recordedDate")
                abated = res.get("abatementDateTime")
                writer.add_history(HistRow(
                    patient_id=subject(res), kind="condition",
                    text=code.get("text") or coding.get("display") or coding.get("code") or "?",
                    code=(coding.get("code") or None), code_system="SNOMED-CT" if "snomed" in (
                        coding.get("system") or "") else None,
                    started_on=parse_datetime(onset).date() if onset else None,
                    ended_on=parse_datetime(abated).date() if abated else None,
                    source=SOURCE, source_ref=f"Condition/{res.get('id') or _digest(res)}",
                ))
        except RowError as err:
            reject(result, file, loc, err)
    writer.flush()

    # Panels pass their date down to members (report -> panel Observation -> hasMember results).
    observations = [(loc, u, r) for loc, u, r in resources if r["resourceType"] == "Observation"]
    for _ in range(3):
        for _loc, full_url, res in observations:
            own: datetime | None
            try:
                own = _when(res)
            except RowError:
                own = next((report_dates[k] for k in _ref_keys(res, full_url) if k in report_dates), None)
            if own is not None:
                for m in res.get("hasMember") or []:
                    if m.get("reference"):
                        report_dates.setdefault(m["reference"], own)

    for loc, full_url, res in observations:
        try:
            _observation(res, full_url, cat, writer, subject, births, report_dates, (file, loc))
        except RowError as err:
            reject(result, file, loc, err)
    writer.flush()


def _observation(res: Resource, full_url: str | None, cat: Catalogue, writer: Writer, subject: Any,
                 births: dict[int, date | None], report_dates: dict[str, datetime],
                 where: tuple[str, str]) -> None:
    status = _STATUS.get(res.get("status") or "final", "final")
    if status == "cancelled":
        return
    codes = _loincs(res.get("code"))
    components = [c for c in res.get("component") or [] if any(cat.lookup(x) for x in _loincs(c.get("code")))]
    tracked = next((c for c in codes if c in cat.by_loinc), None)
    if tracked is None and not components:
        return  # a panel without values (vitals panel) or a test the catalogue does not track
    pid = subject(res)
    try:
        at = _when(res)
    except RowError:
        at = next((report_dates[k] for k in _ref_keys(res, full_url) if k in report_dates), None)  # type: ignore[assignment]
        if at is None:
            raise
    birth = births.get(pid)
    child = birth is not None and (at.date() - birth).days < 18 * 365
    base_ref = f"Observation/{res.get('id')}" if res.get("id") else (full_url or f"Observation/{_digest(res)}")
    enc = ((res.get("encounter") or {}).get("reference") or "").replace("urn:uuid:", "Encounter/") or None
    if tracked is not None and ("valueQuantity" in res or "valueString" in res or "valueInteger" in res):
        raw, unit = _quantity(res)
        row = observation_row(cat, key=tracked, raw_value=raw, unit=unit, patient_id=pid, observed_at=at,
                              source=SOURCE, source_ref=base_ref, status=status, encounter_ref=enc, loinc=tracked,
                              child=child)
        if row is not None:
            writer.add_observation(row, where=where)
    for comp in components:
        ccode = next(c for c in _loincs(comp.get("code")) if cat.lookup(c))
        raw, unit = _quantity(comp)
        row = observation_row(cat, key=ccode, raw_value=raw, unit=unit, patient_id=pid, observed_at=at,
                              source=SOURCE, source_ref=f"{base_ref}#{ccode}", status=status, encounter_ref=enc,
                              loinc=ccode, child=child)
        if row is not None:
            writer.add_observation(row, where=where)


def _report(session: Session, res: Resource, patient_id: int, at: datetime, result: ImportResult) -> None:
    ref = f"DiagnosticReport/{res.get('id') or _digest(res)}"
    code = res.get("code") or {}
    title = (code.get("text") or next((c.get("display") for c in code.get("coding") or [] if c.get("display")),
                                      None) or "DiagnosticReport")[:200]
    status = _STATUS.get(res.get("status") or "final", "final")
    existing = session.scalars(select(ExamReport).where(ExamReport.source == SOURCE,
                                                        ExamReport.source_ref == ref)).first()
    if existing is None:
        result.touched_patient_ids.add(patient_id)
        session.add(ExamReport(patient_id=patient_id, title=title, status=status, reported_at=at,
                               conclusion=res.get("conclusion"), source=SOURCE, source_ref=ref))
        session.flush()
        result.imported += 1
    elif (existing.status, existing.reported_at, existing.conclusion) != (status, at, res.get("conclusion")):
        existing.status, existing.reported_at, existing.conclusion = status, at, res.get("conclusion")
        session.flush()
        result.updated += 1
        result.touched_patient_ids.add(patient_id)
    else:
        result.skipped += 1


def _digest(res: Resource) -> str:
    return hashlib.sha1(json.dumps(res, sort_keys=True).encode(), usedforsecurity=False).hexdigest()[:32]
