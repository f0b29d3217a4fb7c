"""Which importer reads a path: by content first (a .txt may be HL7, a .csv may be Synthea), then by name."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

from services.importers.store import RowError

MAX_BYTES = 512 * 1024 * 1024
SYNTHEA_FILES = ("patients.csv", "encounters.csv", "observations.csv", "conditions.csv", "medications.csv",
                 "careplans.csv", "allergies.csv")
_SYNTHEA_HEADERS = {
    "patients.csv": {"Id", "BIRTHDATE", "GENDER", "FIRST", "LAST"},
    "observations.csv": {"DATE", "PATIENT", "CODE", "VALUE", "UNITS"},
    "encounters.csv": {"Id", "START", "PATIENT", "ENCOUNTERCLASS"},
}
DATA_SUFFIXES = {".csv", ".tsv", ".xlsx", ".json", ".ndjson", ".hl7", ".txt", ".zip", ".xml"}


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) first; GBK/GB18030 is what Excel writes on Chinese Windows."""
    if not data:
        raise RowError("import.err.empty_file")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        # Excel's "Unicode text" is UTF-16 with a byte order mark.
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise RowError("import.err.encoding") from exc
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            # Text files hold no NUL: this is binary, or UTF-16 without its mark, read as garbage otherwise.
            raise RowError("import.err.encoding")
        return text
    raise RowError("import.err.encoding")


def read_text(path: Path) -> str:
    size = path.stat().st_size
    if size == 0:
        raise RowError("import.err.empty_file")
    if size > MAX_BYTES:
        raise RowError("import.err.too_large", mb=MAX_BYTES // (1024 * 1024))
    return decode(path.read_bytes())


def csv_header(text: str) -> list[str]:
    first = text.split("\n", 1)[0].strip("\r")
    try:
        return [h.strip() for h in next(csv.reader(io.StringIO(first)))]
    except StopIteration:
        return []


def is_synthea_folder(path: Path) -> bool:
    return path.is_dir() and (path / "patients.csv").is_file()


def sniff(path: Path) -> str | None:
    """The format of one file or folder, or None when it is not something Careloop imports."""
    if path.is_dir():
        return "synthea-csv" if is_synthea_folder(path) else None
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = {Path(n).name for n in zf.namelist()}
        except zipfile.BadZipFile:
            return None
        return "synthea-csv" if "patients.csv" in names else None
    if suffix == ".xlsx":
        return "csv"
    try:
        with path.open("rb") as fh:
            head_bytes = fh.read(4096)
    except OSError:
        return None
    if not head_bytes.strip():
        return None
    try:
        head = head_bytes.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        try:
            head = head_bytes.decode("gb18030", errors="ignore")
        except UnicodeDecodeError:  # pragma: no cover - gb18030 with ignore never raises
            return None
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped.startswith("MSH"):
        return "hl7v2"
    if stripped.startswith("{") or stripped.startswith("["):
        return "fhir" if '"resourceType"' in head else None
    if suffix in (".csv", ".tsv"):
        header = set(csv_header(stripped))
        for name, needed in _SYNTHEA_HEADERS.items():
            if needed <= header and path.name.lower() == name:
                return "synthea-csv"
        if {"DATE", "PATIENT", "ENCOUNTER", "CODE", "VALUE", "UNITS"} <= header:
            return "synthea-csv"
        return "csv"
    return None


def expand(paths: list[Path]) -> list[tuple[Path, bool]]:
    """(path, named) pairs: folders become their data files (a Synthea folder stays whole), named=False for
    files found in a folder, so that licences and logs beside the data can be passed over quietly."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        if p.is_dir() and not is_synthea_folder(p):
            for child in sorted(p.iterdir()):
                if child.is_dir():
                    out.extend((c, False) for c, _ in expand([child]))
                elif child.suffix.lower() in DATA_SUFFIXES and not child.name.startswith("."):
                    out.append((child, False))
        else:
            out.append((p, True))
    return out


def looks_like_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
