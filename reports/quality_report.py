"""The quality summary PDF for a period and optionally one department (zh-CN or en)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from config import Settings
from db.models import Department
from queries import report_data, satisfaction
from queries.filters import DataScope, PeriodFilter
from reports import charts, vector_charts
from reports.pdf import MUTED, ReportPDF, label, tr
from services.errors import UserError

FULL_SCOPE = DataScope("quality", None)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in rec.items()} for rec in df.to_dict("records")]


def _int(value: Any) -> str:
    return f"{int(value):,}"


def _pct(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f}"


def _share(rate: float | None) -> float | None:
    return None if rate is None or pd.isna(rate) else float(rate) * 100


def _num(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f}"


def quality_filter(conn: Connection, *, date_from: date, date_to: date, department_id: int | None,
                   lang: str) -> PeriodFilter:
    if date_from > date_to:
        raise UserError("reports.bad_period", start=date_from.isoformat(), end=date_to.isoformat())
    if department_id is None:
        return PeriodFilter(date_from, date_to)
    name_col = Department.name_zh if lang == "zh_CN" else Department.name_en
    name = conn.execute(select(name_col).where(Department.id == department_id)).scalar_one_or_none()
    if name is None:
        raise UserError("reports.unknown_department", code=str(department_id))
    return PeriodFilter(date_from, date_to, (department_id,), (str(name),))


def build_quality_report(conn: Connection, *, date_from: date, date_to: date, department_id: int | None, lang: str,
                         now: datetime, settings: Settings, scope: DataScope = FULL_SCOPE,
                         with_charts: bool = True, chart_renderer: str = "vector") -> bytes:
    """The quality team's summary as PDF bytes. Every figure comes from an aggregate query (SQL does the sums)."""
    f = quality_filter(conn, date_from=date_from, date_to=date_to, department_id=department_id, lang=lang)
    described = f.describe(lang)
    title = tr("reports.quality.title", lang)
    pdf = ReportPDF(lang=lang, title=title, header_text=f"{settings.institution_name} · {described}",
                    generated_at=now, footer_note=tr("reports.not_diagnosis", lang),
                    texts=[settings.institution_name, described])
    pdf.add_page()
    pdf.set_font(pdf.family, size=11)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 6, settings.institution_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.family, size=20)
    pdf.set_text_color(33, 37, 41)
    pdf.cell(0, 11, title, new_x="LMARGIN", new_y="NEXT")
    pdf.muted(tr("reports.quality.scope", lang, scope=described) + "  ·  "
              + tr("reports.generated_at", lang, at=now.strftime("%Y-%m-%d %H:%M")))

    # NPS with n and interval, and its trend
    pdf.section(tr("reports.quality.nps", lang))
    summary = satisfaction.nps_summary(conn=conn, f=f, scope=scope)
    if summary.responses:
        pdf.para(tr("reports.quality.nps_value", lang, nps=_num(summary.nps), low=_num(summary.ci_low),
                    high=_num(summary.ci_high), n=f"{summary.responses:,}", promoters=f"{summary.promoters:,}",
                    passives=f"{summary.passives:,}", detractors=f"{summary.detractors:,}"), size=10.5)
        if summary.small_sample:
            pdf.muted(tr("reports.quality.small_sample", lang))
    else:
        pdf.muted(tr("reports.quality.nps_none", lang))
    months = satisfaction.nps_by(conn=conn, f=f, scope=scope, by="month", lang=lang)
    if not months.empty:
        pdf.subheading(tr("reports.quality.trend", lang))
        if with_charts and len(months) > 1 and chart_renderer == "vega":
            chart = charts.line_chart(months, x="key", y="nps", title="", x_title=tr("reports.col.month", lang),
                                      y_title="NPS", band=("ci_low", "ci_high"), domain=(-100, 100))
            pdf.png(charts.render_chart(chart), width=pdf.content_width * 0.85)
        elif with_charts and len(months) > 1:
            points = tuple(charts.Point(datetime.strptime(f"{r['key']}-15", "%Y-%m-%d"), float(r["nps"]), "NPS")
                           for r in _records(months) if r["nps"] is not None)
            panel = charts.Panel("", "NPS", points,
                                 (charts.Band(None, 0, True, ""), charts.Band(0, None, False, "")))
            vector_charts.draw_panels(pdf, [panel], family=pdf.family, width=pdf.content_width * 0.96,
                                      panel_height=52)
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("month", "responses", "nps", "interval")],
                 [[str(r["key"]), _int(r["responses"]), _num(r["nps"]), _num(r["ci_low"]) + " – " + _num(r["ci_high"])]
                  for r in _records(months)], widths=(40, 40, 40, 60), align=("LEFT", "RIGHT", "RIGHT", "LEFT"))

    # top box by item (pooled over the departments in the filter)
    pdf.section(tr("reports.quality.topbox", lang))
    items = report_data.topbox_by_item(conn=conn, f=f, scope=scope, lang=lang)
    if items.empty:
        pdf.muted(tr("reports.none", lang))
    else:
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("item", "answers", "top_box", "pct")],
                 [[str(r["item"]), _int(r["answers"]), _int(r["top_box"]),
                   _pct(r["top_box"] / r["answers"] * 100 if r["answers"] else None)] for r in _records(items)],
                 widths=(100, 25, 25, 30), align=("LEFT", "RIGHT", "RIGHT", "RIGHT"))

    # detractor cases
    pdf.section(tr("reports.quality.recovery", lang))
    rs = satisfaction.recovery_stats(conn=conn, f=f, scope=scope, now=now)
    within = "—" if rs.within_sla_rate is None else f"{rs.closed_within_sla:,} ({rs.within_sla_rate * 100:.0f}%)"
    pdf.para(tr("reports.quality.recovery_value", lang, opened=f"{rs.opened:,}", closed=f"{rs.closed:,}",
                open=f"{rs.open:,}", overdue=f"{rs.overdue:,}", within=within, hours=_num(rs.mean_hours_to_close)))

    # follow-up completion and contact rates: the Follow-up dashboard's measures (grace 0), read from its
    # followup_daily rollup, so the figures match the dashboard and cost the same at any scale
    for by, key in (("department", "reports.quality.followup_dept"), ("nurse", "reports.quality.followup_nurse")):
        pdf.section(tr(key, lang))
        rates = report_data.followup_rates(conn=conn, f=f, scope=scope, by=by, lang=lang, today=now.date())
        if rates.empty:
            pdf.muted(tr("reports.none", lang))
            continue
        rows = rates.sort_values("due", ascending=False, kind="stable").head(40)
        pdf.grid([tr(f"reports.col.{c}", lang) for c in (by, "due", "on_time", "completion", "overdue",
                                                          "attempted", "contact")],
                 [[str(r["label"]), _int(r["due"]), _int(r["on_time"]), _pct(_share(r["on_time_rate"])),
                   _int(r["overdue"]), _int(r["attempted"]), _pct(_share(r["contact_rate"]))]
                  for r in _records(rows)],
                 widths=(52, 20, 20, 24, 20, 22, 24),
                 align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"))

    # interventions by type
    pdf.section(tr("reports.quality.interventions", lang))
    kinds = report_data.interventions_by_kind(conn=conn, f=f, scope=scope)
    if kinds.empty:
        pdf.muted(tr("reports.none", lang))
    else:
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("kind", "count", "patients")],
                 [[label("intervention_kind", str(r["kind"]), lang), _int(r["count"]), _int(r["patients"])]
                  for r in _records(kinds)], widths=(80, 50, 50), align=("LEFT", "RIGHT", "RIGHT"))

    # risk distribution
    pdf.section(tr("reports.quality.risk", lang))
    risk = report_data.risk_distribution(conn=conn, f=f, scope=scope)
    if risk.empty:
        pdf.muted(tr("reports.none", lang))
    else:
        totals = risk.groupby("model")["patients"].transform("sum")
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("model", "level", "patients", "share")],
                 [[label("reports.model", str(r["model"]), lang), label("reports.level", str(r["level"]), lang),
                   _int(r["patients"]), _pct(r["patients"] / t * 100 if t else None)]
                  for r, t in zip(_records(risk), totals.tolist(), strict=True)],
                 widths=(70, 40, 35, 35), align=("LEFT", "LEFT", "RIGHT", "RIGHT"))

    # definitions
    pdf.section(tr("reports.quality.definitions", lang))
    pdf.bullets([tr(f"reports.quality.def_{k}", lang)
                 for k in ("nps", "topbox", "recovery", "followup", "interventions", "risk")])
    return pdf.to_bytes()
