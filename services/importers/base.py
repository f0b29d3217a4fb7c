"""The importer contract: what every format returns, and the registry `manage.py import` dispatches on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Rejection:
    """One row or resource that could not be read: where it is and why (an i18n key with parameters)."""

    file: str
    location: str  # "line 12", "resource Observation/abc", "message 3 segment OBX 4"
    reason_key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    imported: int = 0
    updated: int = 0
    skipped: int = 0  # already there, unchanged: re-running an import only skips
    rejected: list[Rejection] = field(default_factory=list)
    # Patients whose data this import changed: enrolled or matched from an outside source, or with an observation,
    # visit or history row inserted or updated. Unchanged rows add nobody, so re-importing a file gives an empty
    # set; a dry run and a file rolled back by --strict give none either. For follow-up work such as re-evaluating
    # tag rules for just these patients.
    touched_patient_ids: set[int] = field(default_factory=set)

    def merge(self, other: ImportResult) -> None:
        self.imported += other.imported
        self.updated += other.updated
        self.skipped += other.skipped
        self.rejected.extend(other.rejected)
        self.touched_patient_ids |= other.touched_patient_ids


@dataclass(frozen=True)
class ImportOptions:
    strict: bool = False  # a file with any rejection is imported not at all
    dry_run: bool = False  # read and report, write nothing
    mapping: dict[str, Any] | None = None  # saved column mapping for generic CSV / survey CSV
    actor_id: int | None = None
    actor: str | None = None


# An importer reads the files it is given inside the caller's transaction and reports what it did.
Importer = Callable[[Session, list[Path], ImportOptions], ImportResult]
REGISTRY: dict[str, Importer] = {}


def register(fmt: str) -> Callable[[Importer], Importer]:
    def wrap(fn: Importer) -> Importer:
        REGISTRY[fmt] = fn
        return fn

    return wrap
