"""HL7 v2 ORU^R01 lab results (v2.3.1 to 2.5.1): BOM, CR/CRLF/LF, encoding characters from MSH-2, NM and SN.

A result's source reference is order + test, without its status, so a final result updates the pending one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from services.importers.base import ImportOptions, ImportResult, register
from services.importers.detect import read_text
from services.importers.store import (
    Catalogue,
    ExternalPatient,
    PatientResolver,
    RowError,
    Writer,
    observation_row,
    person_name,
    reject,
)

SOURCE = "hl7v2"
_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "preliminary", "S": "preliminary",
           "A": "amended", "I": "registered", "X": "cancelled", "D": "cancelled", "W": "cancelled"}


@dataclass(frozen=True)
class Encoding:
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str


def split_messages(text: str) -> list[list[str]]:
    """Messages of a file as lists of segments; any of CR, CRLF, LF ends a segment."""
    text = text.lstrip("\ufeff")
    segments = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
    messages: list[list[str]] = []
    for seg in segments:
        if seg.startswith("MSH"):
            messages.append([seg])
        elif messages:
            messages[-1].append(seg)
    return messages


def encoding_of(msh: str) -> Encoding:
    sep = msh[3]
    chars = msh[4:].split(sep, 1)[0]
    comp = chars[0] if len(chars) > 0 else "^"
    rep = chars[1] if len(chars) > 1 else "~"
    esc = chars[2] if len(chars) > 2 else "\\"
    sub = chars[3] if len(chars) > 3 else "&"
    return Encoding(sep, comp, rep, esc, sub)


def fields(segment: str, enc: Encoding) -> list[str]:
    """Fields numbered as HL7 numbers them: fields(seg)[1] is field 1 (for MSH, MSH-1 is the separator)."""
    parts = segment.split(enc.field)
    if parts[0] == "MSH":
        return ["MSH", enc.field, *parts[1:]]
    return parts


def field(parts: list[str], n: int) -> str:
    return parts[n] if n < len(parts) else ""


def comps(value: str, enc: Encoding) -> list[str]:
    first = value.split(enc.repetition, 1)[0]
    return [unescape(c, enc) for c in first.split(enc.component)]


def comp(value: str, n: int, enc: Encoding) -> str:
    c = comps(value, enc)
    return c[n - 1].split(enc.subcomponent)[0].strip() if n - 1 < len(c) else ""


def unescape(value: str, enc: Encoding) -> str:
    e = enc.escape
    if not e or e not in value:
        return value
    table = {"F": enc.field, "S": enc.component, "R": enc.repetition, "E": e, "T": enc.subcomponent}
    return re.sub(re.escape(e) + r"([FSRET])" + re.escape(e), lambda m: table[m.group(1)], value)


def parse_ts(value: str) -> datetime:
    """YYYYMMDD[HHMM[SS[.S+]]][+/-ZZZZ] -> naive site-local time."""
    from services.importers.store import parse_datetime

    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?(?:\.\d+)?)?([+-]\d{4})?", value.strip())
    if not m:
        raise RowError("import.err.bad_date", value=value[:40])
    y, mo, d, h, mi, s, tz = m.groups()
    iso = f"{y}-{mo}-{d}T{h or '00'}:{mi or '00'}:{s or '00'}"
    if tz:
        iso += tz
    return parse_datetime(iso)


def _birth(value: str) -> date | None:
    m = re.match(r"(\d{4})(\d{2})(\d{2})", value.strip())
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None  # a birth date that does not exist is dropped, the results still count


def _value(vtype: str, raw: str, enc: Encoding) -> str:
    """OBX-5 as a number string: NM as is, SN (comparator^num1^sep^num2) when it is one exact number."""
    if enc.repetition in raw:
        raise RowError("import.err.repeated_value", value=raw[:40])
    if vtype == "SN":
        parts = raw.split(enc.component)
        comparator = parts[0].strip() if parts else ""
        num1 = parts[1].strip() if len(parts) > 1 else ""
        if comparator not in ("", "=") or (len(parts) > 2 and parts[2].strip()):
            raise RowError("import.err.comparator", value=raw.replace(enc.component, "")[:40])
        return num1
    if vtype in ("NM", "ST", "TX", "FT", ""):
        return raw.strip()
    raise RowError("import.err.value_type", type=vtype)


@register("hl7v2")
def import_hl7v2(session: Session, paths: list[Path], options: ImportOptions) -> ImportResult:
    result = ImportResult()
    cat = Catalogue(session)
    for path in paths:
        try:
            messages = split_messages(read_text(path))
        except RowError as err:
            reject(result, str(path), "file", err)
            continue
        if not messages:
            reject(result, str(path), "file", RowError("import.err.not_hl7"))
            continue
        resolver = PatientResolver(session, result)
        writer = Writer(session, result)
        for n, message in enumerate(messages, start=1):
            _message(str(path), n, message, cat, resolver, writer, result)
        writer.flush()
    return result


def _message(file: str, n: int, segments: list[str], cat: Catalogue, resolver: PatientResolver, writer: Writer,
             result: ImportResult) -> None:
    msh = segments[0]
    if len(msh) < 8:
        reject(result, file, f"message {n}", RowError("import.err.not_hl7"))
        return
    enc = encoding_of(msh)
    mshf = fields(msh, enc)
    sending = comp(field(mshf, 3), 1, enc) or comp(field(mshf, 4), 1, enc) or "lab"
    msg_type = field(mshf, 9)
    if comp(msg_type, 1, enc) not in ("ORU", ""):
        reject(result, file, f"message {n}", RowError("import.err.message_type", type=msg_type[:20]))
        return
    pid: int | None = None
    birth: date | None = None
    order = ""
    obr_time: datetime | None = None
    for s, seg in enumerate(segments[1:], start=2):
        f = fields(seg, enc)
        kind = f[0][:3]
        where = f"message {n} segment {s} {kind}"
        try:
            if kind == "PID":
                ids = field(f, 3) or field(f, 2) or field(f, 4)
                ident = comp(ids, 1, enc)
                if not ident:
                    raise RowError("import.err.missing_id")
                authority = comp(ids, 4, enc) or sending
                birth = _birth(field(f, 7))
                name_f = field(f, 5)
                family, given = comp(name_f, 1, enc), comp(name_f, 2, enc)
                sex = field(f, 8).strip().upper()[:1]
                pid = resolver.resolve(ExternalPatient(
                    system=f"hl7:{authority}"[:64], value=ident[:128],
                    name=person_name(given, family) or None,
                    sex=sex if sex in ("M", "F") else "U", birth_date=birth,
                    phone=comp(field(f, 13), 1, enc) or None,
                ))
            elif kind == "OBR":
                placer, filler = comp(field(f, 2), 1, enc), comp(field(f, 3), 1, enc)
                order = f"{sending}|{filler or placer or f'msg{n}-obr{s}'}"
                obr_time = parse_ts(field(f, 7)) if field(f, 7).strip() else None
            elif kind == "OBX":
                _obx(f, enc, (file, where), cat, writer, pid, birth, order, obr_time, n)
        except RowError as err:
            reject(result, file, where, err)


def _obx(f: list[str], enc: Encoding, where: tuple[str, str], cat: Catalogue, writer: Writer, pid: int | None,
         birth: date | None, order: str, obr_time: datetime | None, n: int) -> None:
    ident = field(f, 3)
    c = comps(ident, enc)
    # LOINC as the primary code (component 1, system 3) or as the alternate (component 4, system 6).
    loinc = next((c[i] for i, sys_i in ((0, 2), (3, 5)) if len(c) > sys_i and c[sys_i].strip() == "LN"
                  and c[i].strip() in cat.by_loinc), None)
    if loinc is None:
        return  # not a test the catalogue tracks
    status = _STATUS.get(field(f, 11).strip().upper()[:1], "final")
    raw = field(f, 5)
    if status == "cancelled" or (not raw.strip() and status in ("registered", "preliminary")):
        return  # ordered, no value yet
    if pid is None:
        raise RowError("import.err.no_subject")
    value = _value(field(f, 2).strip().upper(), raw, enc)
    unit = comp(field(f, 6), 1, enc) or None
    at = parse_ts(field(f, 14)) if field(f, 14).strip() else obr_time
    if at is None:
        raise RowError("import.err.missing_date")
    child = birth is not None and (at.date() - birth).days < 18 * 365
    row = observation_row(cat, key=loinc, raw_value=value, unit=unit, patient_id=pid, observed_at=at,
                          source=SOURCE, source_ref=f"{order or f'msg{n}'}|{loinc}", status=status, loinc=loinc,
                          child=child)
    if row is not None:
        writer.add_observation(row, where=where)
