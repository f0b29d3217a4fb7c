"""Audit of exports and reports: who took which data out, under which filter, how many rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services import audit
from services.auth import CurrentUser

CLI_USER = "manage.py"


def record_export(session: Session, user: CurrentUser | None, kind: str, filter_desc: str, rows: int, *,
                  fmt: str | None = None, patient_id: int | None = None,
                  extra: dict[str, Any] | None = None) -> None:
    """One audit row per download or file written; `user` None means the command line."""
    detail: dict[str, Any] = {"kind": kind, "filter": filter_desc, "rows": int(rows)}
    if fmt:
        detail["format"] = fmt
    if extra:
        detail.update(extra)
    audit.record(session, action="export", user_id=user.id if user else None,
                 username=user.username if user else CLI_USER, entity=kind, patient_id=patient_id, detail=detail)


def record_report(session: Session, user: CurrentUser | None, *, kind: str, filter_desc: str,
                  patient_id: int | None = None, card_no: str | None = None, lang: str | None = None,
                  pages: int | None = None, patients: int | None = None,
                  extra: dict[str, Any] | None = None) -> None:
    """A generated PDF (patient health report, quality summary, batch zip): a read of the records it prints."""
    detail: dict[str, Any] = {"kind": kind, "filter": filter_desc}
    for key, value in (("card_no", card_no), ("lang", lang), ("pages", pages), ("patients", patients)):
        if value is not None:
            detail[key] = value
    if extra:
        detail.update(extra)
    audit.record(session, action="report", user_id=user.id if user else None,
                 username=user.username if user else CLI_USER, entity=kind, entity_id=card_no,
                 patient_id=patient_id, detail=detail)
