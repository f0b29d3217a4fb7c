"""`manage.py export KIND`: checks the options first (clear, translated errors), writes the file atomically
(nothing half-written), and audits the export (who: manage.py, what: the kind, which filter, how many rows)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

import i18n
from db.engine import transaction
from db.models import Department
from queries.filters import PeriodFilter, scope_for
from reports.patient_exports import write_table
from services.errors import UserError
from services.exports import record_export

FORMATS = ("csv", "xlsx")
GROUPINGS = ("month", "quarter", "department")
SURVEY_KINDS = ("nps", "satisfaction")
PERIOD_KINDS = ("followups", "interventions", *SURVEY_KINDS)
# Kinds whose rows carry contacts that --unmasked shows in full.
UNMASKABLE_KINDS = ("patients",)
# A writer of a kind without a period: (conn, out, fmt, unmasked) -> rows written.
Writer = Callable[[Connection, str, str, bool], int]


@dataclass(frozen=True)
class ExportRequest:
    kind: str
    fmt: str
    out: str
    date_from: date | None = None
    date_to: date | None = None
    by: str | None = None
    department: str | None = None
    unmasked: bool = False


@dataclass(frozen=True)
class ExportResult:
    rows: int
    description: str


def kinds(writers: dict[str, Writer]) -> list[str]:
    return [*writers, *(k for k in PERIOD_KINDS if k not in writers)]


def validate(req: ExportRequest, writers: dict[str, Writer]) -> None:
    """Every check that needs no database, before anything is read or written."""
    known = kinds(writers)
    if req.kind not in known:
        raise UserError("reports.cli.unknown_kind", kind=req.kind, kinds=", ".join(known))
    if req.fmt not in FORMATS:
        raise UserError("reports.cli.bad_format", format=req.fmt, formats=", ".join(FORMATS))
    if req.by is not None and req.kind not in SURVEY_KINDS:
        raise UserError("reports.cli.option_not_for", option="--by", kind=req.kind)
    if req.by is not None and req.by not in GROUPINGS:
        raise UserError("reports.cli.bad_by", by=req.by, groupings=", ".join(GROUPINGS))
    if req.kind not in PERIOD_KINDS:
        for option, value in (("--from", req.date_from), ("--to", req.date_to), ("--department", req.department)):
            if value is not None:
                raise UserError("reports.cli.option_not_for", option=option, kind=req.kind)
    if req.unmasked and req.kind not in UNMASKABLE_KINDS:
        raise UserError("reports.cli.option_not_for", option="--unmasked", kind=req.kind)
    if req.date_from and req.date_to and req.date_from > req.date_to:
        raise UserError("reports.bad_period", start=req.date_from.isoformat(), end=req.date_to.isoformat())
    out = Path(req.out)
    if out.is_dir() or not out.parent.is_dir():
        raise UserError("reports.cli.bad_out", path=req.out)


def period_filter(conn: Connection, req: ExportRequest, *, today: date) -> PeriodFilter:
    """--from/--to/--department as a filter; surveys default to the last year, tasks and interventions to all."""
    dept_ids: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    if req.department:
        found = conn.execute(select(Department.id).where(Department.code == req.department)).scalar()
        if found is None:
            raise UserError("reports.unknown_department", code=req.department)
        dept_ids, names = (int(found),), (req.department,)
    if req.kind in SURVEY_KINDS:
        start = req.date_from or date(today.year - 1, today.month, 1)
        end = req.date_to or today
    else:
        start = req.date_from or date(1900, 1, 1)
        end = req.date_to or date(2999, 12, 31)
    if start > end:
        raise UserError("reports.bad_period", start=start.isoformat(), end=end.isoformat())
    return PeriodFilter(start, end, dept_ids, names)


def _frame_rows(df: Any) -> list[tuple[Any, ...]]:
    return [tuple(None if v != v else v for v in r) for r in df.itertuples(index=False, name=None)]  # NaN out


def _write_period_kind(conn: Connection, req: ExportRequest, f: PeriodFilter, out: Path, lang: str) -> int:
    scope = scope_for(role="admin", department_id=None)
    if req.kind in SURVEY_KINDS:
        from queries.satisfaction import GroupBy, export_rows

        by: GroupBy = "quarter" if req.by == "quarter" else "department" if req.by == "department" else "month"
        rows = export_rows(conn=conn, f=f, scope=scope, by=by, lang=lang)
        columns = ["department" if by == "department" else "period", "responses", "promoters", "passives",
                   "detractors", "nps"]
        return write_table(out, req.fmt, columns, [[tuple(r[c] for c in columns) for r in rows]], sheet=req.kind)
    from queries import followup as fq

    reader = fq.export_followups if req.kind == "followups" else fq.export_interventions
    df = reader(conn=conn, f=f, scope=scope, lang=lang)
    return write_table(out, req.fmt, list(df.columns), [_frame_rows(df)], sheet=req.kind)


def _describe(req: ExportRequest, f: PeriodFilter | None, lang: str) -> str:
    parts = [f.describe(lang)] if f is not None else [i18n.t("reports.cli.everything", lang)]
    if req.kind in SURVEY_KINDS:
        parts.append(i18n.t("reports.cli.by", lang, by=req.by or "month"))
    if req.kind in UNMASKABLE_KINDS:
        parts.append(i18n.t("reports.cli.unmasked" if req.unmasked else "reports.cli.masked", lang))
    return i18n.t("filter.separator", lang).join(parts)


def run_export(engine: Engine, req: ExportRequest, *, writers: dict[str, Writer], lang: str,
               today: date) -> ExportResult:
    """Validate, write to FILE.part and rename over FILE on success, then audit. A UserError leaves no file."""
    validate(req, writers)
    out = Path(req.out)
    tmp = out.with_name(out.name + ".part")
    f: PeriodFilter | None = None
    try:
        with engine.connect() as conn:
            if req.kind in PERIOD_KINDS and req.kind not in writers:
                f = period_filter(conn, req, today=today)
                n = _write_period_kind(conn, req, f, tmp, lang)
            else:
                n = writers[req.kind](conn, str(tmp), req.fmt, req.unmasked)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    description = _describe(req, f, lang)
    with transaction(engine) as session:
        extra: dict[str, Any] = {"out": str(out)}
        if req.kind in UNMASKABLE_KINDS:
            extra["unmasked"] = req.unmasked
        if req.kind in SURVEY_KINDS:
            extra["by"] = req.by or "month"
        record_export(session, None, req.kind, description, n, fmt=req.fmt, extra=extra)
    return ExportResult(n, description)
