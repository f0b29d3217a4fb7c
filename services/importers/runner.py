"""Run an import: expand folders, detect formats, one savepoint per file (strict = all-or-nothing), dry-run rolls back.

The caller owns the transaction; every run leaves one audit row with its counts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from services import audit
from services.importers.base import REGISTRY, ImportOptions, ImportResult, Rejection
from services.importers.detect import expand, sniff

FORMATS = ("auto", "synthea-csv", "csv", "fhir", "hl7v2", "survey-csv")
_MODULES = ("services.importers.synthea_csv", "services.importers.generic_csv", "services.importers.fhir",
            "services.importers.hl7v2")
# Other areas register their formats from their own modules (the satisfaction area: "survey-csv").
_OPTIONAL_MODULES = ("services.importers.survey_csv", "services.surveys_import", "services.importers.surveys")


def load_importers() -> dict[str, object]:
    for name in _MODULES:
        importlib.import_module(name)
    for name in _OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    return dict(REGISTRY)


def plan(paths: list[Path], fmt: str = "auto") -> list[tuple[Path, str | None]]:
    """(path, format) units to import; format None means the file could not be recognised."""
    units: list[tuple[Path, str | None]] = []
    for p, named in expand(paths):
        kind = sniff(p) if fmt == "auto" or not named and p.is_file() and sniff(p) is None else fmt
        if kind is None and not named:
            continue  # a licence, README or export log next to the data files
        units.append((p, kind))
    return units


def run_import(
    session: Session, paths: list[Path], *, fmt: str = "auto", options: ImportOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    options = options or ImportOptions()
    load_importers()
    total = ImportResult()
    units = plan(paths, fmt)
    outer = session.begin_nested() if options.dry_run else None
    try:
        for i, (path, kind) in enumerate(units, start=1):
            if not path.exists():
                total.rejected.append(Rejection(str(path), "file", "import.err.not_found"))
            elif kind is None:
                reason = "import.err.empty_file" if path.is_file() and _blank(path) else "import.err.unknown_format"
                total.rejected.append(Rejection(str(path), "file", reason))
            elif kind not in REGISTRY:
                total.rejected.append(Rejection(str(path), "file", "import.err.no_importer", {"format": kind}))
            else:
                total.merge(_one(session, path, kind, options))
            if progress:
                progress(i, len(units))
    finally:
        if outer is not None:
            outer.rollback()
            # Nothing was written: the ids of patients a dry run would have enrolled do not exist.
            total.touched_patient_ids = set()
    if not options.dry_run:
        audit.record(session, action="import", user_id=options.actor_id, username=options.actor, entity="import",
                     detail={"paths": [str(p) for p in paths][:50], "format": fmt, "strict": options.strict,
                             "imported": total.imported, "updated": total.updated, "skipped": total.skipped,
                             "rejected": len(total.rejected)})
        if total.touched_patient_ids:
            # The care area re-evaluates risk and tag rules for just the patients this import touched.
            from services.care_automation import reevaluate

            reevaluate(session, patient_ids=total.touched_patient_ids)
    return total


def _blank(path: Path) -> bool:
    """Nothing but blank lines and spaces (what a spreadsheet saves for an empty sheet) counts as empty."""
    if path.stat().st_size > 65536:
        return False
    return not path.read_bytes().lstrip(b"\xef\xbb\xbf").strip()


def _one(session: Session, path: Path, kind: str, options: ImportOptions) -> ImportResult:
    """One file (or Synthea folder) in its own savepoint; strict rolls it back when anything was rejected."""
    sp = session.begin_nested()
    try:
        result = REGISTRY[kind](session, [path], options)
        session.flush()
    except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the others or the app
        sp.rollback()
        return ImportResult(rejected=[Rejection(str(path), "file", "import.err.unreadable",
                                                {"error": f"{type(exc).__name__}: {str(exc)[:200]}"})])
    if options.strict and result.rejected:
        sp.rollback()
        return ImportResult(rejected=result.rejected)
    sp.commit()
    return result
