"""Saved column mappings for survey-csv imports: built from an uploaded file's columns, validated, kept for reuse.

Mappings live in the database (import_mappings), not in files next to one server, so every app process and the
command line see the same ones; the mappings shipped with the code (services/importers/mappings/*.toml) are offered
alongside as read-only built-ins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ImportMapping
from services import audit
from services.auth import CurrentUser
from services.errors import UserError
from services.importers import survey_csv

FORMAT = "survey-csv"
BUILTIN_DIR = Path(__file__).resolve().parent / "importers" / "mappings"
_NAME_RE = re.compile(r"^[\w\-. ]{1,64}$")
ROLES_ALLOWED = ("admin", "nurse")  # the roles the Import page is open to


@dataclass(frozen=True)
class MappingDraft:
    """What the Import page's mapping builder collects; to_body() is the mapping the importer reads."""

    questionnaire: str
    source: str
    columns: Mapping[str, str]  # role (submitted_at, respondent, patient_card, department, channel, ...) -> column
    items: Mapping[str, str]  # questionnaire item code -> column
    header: Sequence[str]
    channel: str | None = None
    department: str | None = None
    date_order: str = "mdy"
    open_recovery: bool = True

    def to_body(self) -> dict[str, Any]:
        columns = {k: v for k, v in self.columns.items() if v}
        items = {k: v for k, v in self.items.items() if v}
        used = set(columns.values()) | set(items.values())
        body: dict[str, Any] = {
            "questionnaire": self.questionnaire, "source": self.source.strip() or "survey-csv",
            "date_order": self.date_order, "open_recovery": self.open_recovery, "columns": columns, "items": items,
            # Columns the user left unmapped are ignored on purpose; a column the file later gains is still refused.
            "ignore": [h for h in self.header if h and h not in used],
        }
        if self.channel:
            body["channel"] = self.channel
        if self.department:
            body["department"] = self.department
        return body


def builtin_mappings() -> dict[str, dict[str, Any]]:
    """The mappings shipped with the code, by file stem."""
    return {p.stem: survey_csv.load_mapping(p) for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def save_mapping(session: Session, *, name: str, body: Mapping[str, Any], user: CurrentUser, now: datetime,
                 header: list[str] | None = None) -> ImportMapping:
    """Validate (against the database and, when given, the file's header) and save under a name; same name replaces."""
    if user.role not in ROLES_ALLOWED:
        raise UserError("survey_import.page.not_allowed")
    clean = name.strip()
    if not _NAME_RE.match(clean):
        raise UserError("survey_import.page.bad_name")
    if clean in builtin_mappings():
        raise UserError("survey_import.page.name_taken", name=clean)
    survey_csv.validate_mapping(session, body, header=header)
    row = session.scalars(select(ImportMapping).where(ImportMapping.format == FORMAT,
                                                      ImportMapping.name == clean)).first()
    action = "import_mapping.updated" if row is not None else "import_mapping.created"
    if row is None:
        row = ImportMapping(format=FORMAT, name=clean, body=dict(body), updated_at=now, updated_by=user.id)
        session.add(row)
    else:
        row.body, row.updated_at, row.updated_by = dict(body), now, user.id
    session.flush()
    audit.record(session, action=action, user_id=user.id, username=user.username, entity="import_mapping",
                 entity_id=row.id, detail={"name": clean, "format": FORMAT}, at=now)
    return row
