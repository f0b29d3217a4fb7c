"""Frozen filter objects and the user's data scope; each filter can say in words what it selects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, true

from db.models import PatientTag
from i18n import t


@dataclass(frozen=True)
class DataScope:
    """Which departments a user may see; None means every department."""

    role: str
    department_ids: tuple[int, ...] | None

    @property
    def key(self) -> str:
        # Part of every cache key, so one user's cached numbers never reach another scope.
        ids = "all" if self.department_ids is None else ",".join(map(str, self.department_ids))
        return f"{self.role}:{ids}"


def scope_for(*, role: str, department_id: int | None) -> DataScope:
    """Nurses see their own department; managers, quality and admins see the whole site."""
    if role == "nurse":
        return DataScope(role, (department_id,) if department_id is not None else ())
    return DataScope(role, None)


@dataclass(frozen=True)
class PeriodFilter:
    date_from: date
    date_to: date
    department_ids: tuple[int, ...] = ()
    department_names: tuple[str, ...] = ()

    def describe(self, lang: str, count: int | None = None, unit_key: str | None = None) -> str:
        parts = []
        if count is not None and unit_key:
            parts.append(t(unit_key, lang, n=f"{count:,}"))
        parts.append(", ".join(self.department_names) if self.department_names
                     else t("filter.all_departments", lang))
        parts.append(t("filter.period", lang, start=self.date_from.isoformat(), end=self.date_to.isoformat()))
        return t("filter.separator", lang).join(parts)


def department_clause(
    col: SQLColumnExpression[Any], *, f: PeriodFilter, scope: DataScope
) -> ColumnElement[bool]:
    """Departments chosen in the filter, always narrowed to the user's scope."""
    clause: ColumnElement[bool] = true()
    if f.department_ids:
        clause = clause & col.in_(f.department_ids)
    if scope.department_ids is not None:
        clause = clause & col.in_(scope.department_ids)
    return clause


def has_open_tag(patient_col: SQLColumnExpression[Any], tag_code: str | None) -> ColumnElement[bool]:
    """A tag segment: the patient holds an open tag of that code (any patient when no tag is chosen). One probe of
    ix_patient_tags_patient per row, so it narrows a page of rows without reading the whole segment."""
    if not tag_code:
        return true()
    return exists().where(PatientTag.patient_id == patient_col, PatientTag.tag_code == tag_code,
                          PatientTag.until.is_(None))
