"""Survey-tool CSV exports ("survey-csv"): a saved column mapping turns each row into one survey response.

Mapping (TOML or JSON, passed as ImportOptions.mapping):
    questionnaire = "satisfaction"        # template code (its newest version)
    source = "sudzilla"                   # names the tool; (source, respondent) is the duplicate key
    channel = "web"                       # fixed channel, or a "channel" column below
    department = "CARD"                   # fixed department code, or a "department" column below
    date_order = "mdy"                    # how to read 1/11/2019: "mdy" (US tools, default) or "dmy"
    open_recovery = true                  # detractors open service-recovery cases
    ignore = ["column", ...]              # columns that are read by nobody, on purpose
    [columns]  submitted_at, respondent, patient_card, department, doctor, channel, comment  -> CSV column
    [items]    questionnaire item code -> CSV column
A mapped column missing from the file, or a file column that nobody mapped or ignored, rejects the whole file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from db.models import Department, Patient, SurveyResponse
from services import clock, surveys
from services import questionnaires as qs
from services.errors import UserError
from services.importers.base import ImportOptions, ImportResult, Rejection, register

COLUMN_ROLES = ("submitted_at", "respondent", "patient_card", "department", "doctor", "channel", "comment")
_FORMATS_MDY = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y",
                "%m/%d/%y %H:%M", "%m/%d/%y")
_FORMATS_DMY = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
                "%d.%m.%Y", "%d/%m/%y %H:%M", "%d/%m/%y")
_FORMATS_OTHER = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M",
                  "%Y年%m月%d日", "%d %b %Y %H:%M", "%d %b %Y", "%b %d, %Y %H:%M", "%b %d, %Y",
                  "%Y%m%d%H%M%S")


def parse_timestamp(text: str, *, date_order: str = "mdy", tz: str = clock.DEFAULT_TZ) -> datetime:
    """A submitted time in any common survey-tool format, as naive site-local time. ValueError if unreadable."""
    s = re.sub(r"\s+", " ", text.strip())
    if not s:
        raise ValueError("empty")
    if re.fullmatch(r"\d{10}(\.\d+)?", s):  # Unix seconds
        return datetime.fromtimestamp(float(s), ZoneInfo(tz)).replace(tzinfo=None)
    try:
        parsed = datetime.fromisoformat(s.replace("Z", "+00:00").replace(" T", "T"))
    except ValueError:
        parsed = None
    if parsed is None:
        base = re.sub(r"\.\d+$", "", s)  # fractions of a second after a non-ISO time
        first = _FORMATS_DMY if date_order == "dmy" else _FORMATS_MDY
        second = _FORMATS_MDY if date_order == "dmy" else _FORMATS_DMY
        for fmt in (*first, *_FORMATS_OTHER, *second):
            try:
                parsed = datetime.strptime(base, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise ValueError(s)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    return parsed


@dataclass(frozen=True)
class SurveyMapping:
    questionnaire: str
    source: str
    columns: dict[str, str]
    items: dict[str, str]
    ignore: frozenset[str]
    channel: str | None
    department: str | None
    date_order: str
    open_recovery: bool

    @staticmethod
    def parse(raw: Mapping[str, Any] | None) -> SurveyMapping:
        if not raw:
            raise UserError("survey_import.mapping_required")
        columns = {str(k): str(v) for k, v in dict(raw.get("columns") or {}).items() if v}
        items = {str(k): str(v) for k, v in dict(raw.get("items") or {}).items() if v}
        bad = sorted(set(columns) - set(COLUMN_ROLES))
        if bad:
            raise UserError("survey_import.mapping_bad_role", roles=", ".join(bad))
        if "submitted_at" not in columns:
            raise UserError("survey_import.mapping_needs_time")
        if not items:
            raise UserError("survey_import.mapping_needs_items")
        order = str(raw.get("date_order", "mdy"))
        if order not in ("mdy", "dmy"):
            raise UserError("survey_import.mapping_bad_date_order", value=order)
        return SurveyMapping(
            questionnaire=str(raw.get("questionnaire", "satisfaction")), source=str(raw.get("source", "survey-csv")),
            columns=columns, items=items, ignore=frozenset(str(c) for c in raw.get("ignore", [])),
            channel=raw.get("channel"), department=raw.get("department"), date_order=order,
            open_recovery=bool(raw.get("open_recovery", True)),
        )


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UserError("survey_import.bad_encoding")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise UserError("survey_import.empty_file")
    return [h.strip() for h in rows[0]], rows[1:]


def _department_lookup(session: Session) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in session.scalars(select(Department)):
        for key in (d.code, d.name_zh, d.name_en):
            out[key.strip().lower()] = d.id
    return out


@dataclass
class _Row:
    line: int
    submitted_at: datetime
    answers: dict[str, str]
    source_ref: str
    patient_id: int | None
    department_id: int | None
    doctor: str | None
    channel: str | None
    comment: str | None


def _source_ref(when: datetime, cells: Mapping[str, str], respondent: str) -> str:
    respondent = respondent.strip()
    if respondent:
        return respondent[:128]
    # No respondent id: the same person's same answers at the same second are the same response, whatever the
    # timestamp format or its milliseconds (the Sudzilla files hold one survey in two formats).
    body = when.isoformat(timespec="seconds") + "|" + "|".join(f"{k}={cells[k]}" for k in sorted(cells))
    return "h:" + hashlib.sha1(body.encode()).hexdigest()


@register("survey-csv")
def import_survey_csv(session: Session, paths: list[Path], options: ImportOptions) -> ImportResult:
    """Import each file; rows are validated first, so a rejected row writes nothing and a strict file nothing at all.

    A mapping that cannot work rejects every file with the translated reason (nothing is written).
    """
    try:
        return _import(session, paths, options)
    except UserError as exc:
        return ImportResult(rejected=[Rejection(p.name, "mapping", exc.key, dict(exc.params)) for p in paths])


@dataclass(frozen=True)
class _Resolved:
    mapping: SurveyMapping
    questionnaire_id: int
    items: list[Any]
    departments: dict[str, int]
    fixed_department: int | None


def _resolve(session: Session, raw: Mapping[str, Any] | None) -> _Resolved:
    """The mapping checked against the database: its questionnaire, items, channel and department exist."""
    mapping = SurveyMapping.parse(raw)
    q = qs.latest(session, mapping.questionnaire)
    if q is None:
        raise UserError("questionnaire.not_found", code=mapping.questionnaire)
    items = qs.items_of(session, q.id)
    unknown_items = sorted(set(mapping.items) - {i.item_code for i in items})
    if unknown_items:
        raise UserError("survey_import.mapping_unknown_item", items=", ".join(unknown_items),
                        questionnaire=mapping.questionnaire)
    if mapping.channel is not None and mapping.channel not in surveys.CHANNELS:
        raise UserError("survey.bad_channel", channel=mapping.channel)
    departments = _department_lookup(session)
    fixed_department = None
    if mapping.department is not None:
        fixed_department = departments.get(mapping.department.strip().lower())
        if fixed_department is None:
            raise UserError("survey_import.unknown_department", value=mapping.department)
    return _Resolved(mapping, q.id, items, departments, fixed_department)


def check_header(mapping: SurveyMapping, header: list[str]) -> None:
    """A mapped column the file does not have, or a file column nobody mapped or ignored: UserError."""
    mapped = set(mapping.columns.values()) | set(mapping.items.values())
    missing = sorted(mapped - set(header))
    if missing:
        raise UserError("survey_import.missing_columns", columns=", ".join(missing))
    unknown = [h for h in header if h and h not in mapped and h not in mapping.ignore]
    if unknown:
        raise UserError("survey_import.unknown_columns", columns=", ".join(unknown))


def validate_mapping(session: Session, raw: Mapping[str, Any] | None, *, header: list[str] | None = None
                     ) -> SurveyMapping:
    """Everything an import would refuse about a mapping, before it is saved or used (the Import page)."""
    resolved = _resolve(session, raw)
    if header is not None:
        check_header(resolved.mapping, header)
    return resolved.mapping


def read_header(data: bytes) -> list[str]:
    """The header row of an uploaded survey CSV (UTF-8 or GB18030), for building a mapping from its columns."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UserError("survey_import.bad_encoding")
    first = next(csv.reader(io.StringIO(text, newline="")), None)
    if not first:
        raise UserError("survey_import.empty_file")
    return [h.strip() for h in first]


def _import(session: Session, paths: list[Path], options: ImportOptions) -> ImportResult:
    r = _resolve(session, options.mapping)
    mapping, items, departments, fixed_department = r.mapping, r.items, r.departments, r.fixed_department
    q_id = r.questionnaire_id
    total = ImportResult()
    for path in paths:
        total.merge(_import_file(session, path, options, mapping, q_id, items, departments, fixed_department))
    return total


def _import_file(
    session: Session, path: Path, options: ImportOptions, m: SurveyMapping, questionnaire_id: int,
    items: list[Any], departments: dict[str, int], fixed_department: int | None,
) -> ImportResult:
    result = ImportResult()
    name = path.name
    try:
        header, rows = _read_rows(path)
    except UserError as exc:
        result.rejected.append(Rejection(name, "file", exc.key, dict(exc.params)))
        return result
    mapped = set(m.columns.values()) | set(m.items.values())
    missing = sorted(mapped - set(header))
    if missing:
        result.rejected.append(Rejection(name, "header", "survey_import.missing_columns",
                                         {"columns": ", ".join(missing)}))
        return result
    unknown = [h for h in header if h and h not in mapped and h not in m.ignore]
    if unknown:
        result.rejected.append(Rejection(name, "header", "survey_import.unknown_columns",
                                         {"columns": ", ".join(unknown)}))
        return result
    index = {h: i for i, h in enumerate(header)}
    card_col = m.columns.get("patient_card")
    cards = {r[index[card_col]].strip() for r in rows if card_col and len(r) > index[card_col]} if card_col else set()
    patients = {c: (pid, dep) for c, pid, dep in session.execute(
        select(Patient.card_no, Patient.id, Patient.department_id).where(Patient.card_no.in_(cards)))} if cards else {}

    good: list[_Row] = []
    for n, raw in enumerate(rows, start=2):
        if not any(c.strip() for c in raw):
            continue
        location = f"line {n}"
        cell = {h: (raw[i].strip() if i < len(raw) else "") for h, i in index.items()}
        try:
            when = parse_timestamp(cell[m.columns["submitted_at"]], date_order=m.date_order)
        except ValueError:
            result.rejected.append(Rejection(name, location, "survey_import.bad_timestamp",
                                             {"value": cell[m.columns["submitted_at"]]}))
            continue
        answers = {code: cell[col] for code, col in m.items.items()}
        try:
            surveys.validate_answers(items, answers)
        except UserError as exc:
            result.rejected.append(Rejection(name, location, exc.key, dict(exc.params)))
            continue
        role = {r: cell[c] for r, c in m.columns.items()}
        patient_id, department_id = None, fixed_department
        if role.get("patient_card"):
            found = patients.get(role["patient_card"])
            if found is None:
                result.rejected.append(Rejection(name, location, "survey_import.unknown_patient",
                                                 {"card": role["patient_card"]}))
                continue
            patient_id, department_id = found[0], department_id or found[1]
        if role.get("department"):
            department_id = departments.get(role["department"].lower())
            if department_id is None:
                result.rejected.append(Rejection(name, location, "survey_import.unknown_department",
                                                 {"value": role["department"]}))
                continue
        channel = role.get("channel") or m.channel or "import"
        if channel not in surveys.CHANNELS:
            result.rejected.append(Rejection(name, location, "survey.bad_channel", {"channel": channel}))
            continue
        ref_cells = {**{f"c.{k}": v for k, v in role.items() if k != "submitted_at"},
                     **{f"i.{k}": v for k, v in answers.items()}}
        ref = _source_ref(when, ref_cells, role.get("respondent", ""))
        good.append(_Row(n, when, answers, ref, patient_id, department_id, role.get("doctor") or None, channel,
                         role.get("comment") or None))

    if options.strict and result.rejected:
        return result  # all or nothing: the file is not imported
    refs = [r.source_ref for r in good]
    existing = set(session.scalars(select(SurveyResponse.source_ref).where(
        SurveyResponse.source == m.source,
        or_(*[SurveyResponse.source_ref.in_(refs[i:i + 500]) for i in range(0, len(refs), 500)]),
    ))) if refs else set()
    seen: set[str] = set()
    for r in good:
        if r.source_ref in existing or r.source_ref in seen:
            result.skipped += 1
            continue
        seen.add(r.source_ref)
        if options.dry_run:
            result.imported += 1
            continue
        out = surveys.submit_response(
            session, questionnaire_id=questionnaire_id, answers=r.answers, submitted_at=r.submitted_at,
            patient_id=r.patient_id, department_id=r.department_id, doctor_name=r.doctor, channel=r.channel,
            comment=r.comment, source=m.source, source_ref=r.source_ref, open_recovery=m.open_recovery,
            actor_id=options.actor_id, actor=options.actor or "import",
        )
        if out.created:
            result.imported += 1
            if r.patient_id is not None:
                result.touched_patient_ids.add(r.patient_id)
        else:
            result.skipped += 1
    return result


def load_mapping(path: Path) -> dict[str, Any]:
    """A saved mapping file: .toml or .json."""
    import json
    import tomllib

    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError("survey_import.mapping_unreadable", path=str(path), error=str(exc)) from None
    if not isinstance(data, dict):
        raise UserError("survey_import.mapping_unreadable", path=str(path), error="not a table")
    return data
