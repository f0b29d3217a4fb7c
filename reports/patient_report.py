"""The patient health report PDF (zh-CN or en): pure function of the database state, returns bytes."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from config import Settings
from db.catalogue import BAND_LABELS
from queries import report_data
from queries.report_data import TREND_PANELS, IndicatorInfo, PatientReportData
from reports import charts, vector_charts
from reports.pdf import ALERT, MUTED, ReportPDF, label, tr
from services.errors import UserError
from services.masking import mask_id_number, mask_phone

PANEL_HEIGHT = 44.0


def age_on(birth: date | None, on: date) -> int | None:
    if birth is None:
        return None
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def fmt_value(value: float | None, decimals: int) -> str:
    if value is None:
        return "—"
    return f"{value:.{max(decimals, 0)}f}"


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}"


def reference_range(ind: IndicatorInfo) -> str:
    if ind.ref_low is not None and ind.ref_high is not None:
        return f"{_num(ind.ref_low)}–{_num(ind.ref_high)}"
    if ind.ref_high is not None:
        return f"≤ {_num(ind.ref_high)}"
    if ind.ref_low is not None:
        return f"≥ {_num(ind.ref_low)}"
    return "—"


def band_label(band: str | None, lang: str) -> str:
    if not band:
        return "—"
    names = BAND_LABELS.get(band)
    if names is None:
        return band
    return names[0] if lang == "zh_CN" else names[1]


def _day(d: date | datetime | None) -> str:
    if d is None:
        return "—"
    return d.strftime("%Y-%m-%d")


def _tag_name(tag: report_data.TagInfo, lang: str) -> str:
    name = tag.name_zh if lang == "zh_CN" else tag.name_en
    return name or label("reports.tag", tag.code, lang)


def _factor_value(value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return tr("reports.yes" if value else "reports.no", lang)
    if isinstance(value, float):
        return f"{value:g}"
    return label("reports.value", str(value), lang)


def _factor_text(f: Any, lang: str) -> str:
    if not isinstance(f, dict):
        return str(f)
    name = label("reports.factor", str(f.get("name", "")), lang)
    value = f.get("value")
    contribution = f.get("contribution")
    text = name if value is None else f"{name} {_factor_value(value, lang)}"
    if isinstance(contribution, int | float) and not isinstance(contribution, bool):
        text += f" ({contribution:+.2f})"
    return text


def _texts(data: PatientReportData) -> list[str]:
    """Every free text the report prints, so the font fallback is added only when one needs it."""
    p = data.patient
    out = [p.name, p.department or "", p.nurse or ""]
    out += [t.name_zh or t.name_en or t.code for t in data.tags]
    out += [a.title + a.body for a in data.advice]
    out += [c.notes or "" for c in data.contacts]
    out += [(i.goal or "") + i.content for i in data.interventions]
    out += [f.plan or "" for f in data.followups]
    if data.plan:
        out += [data.plan.title, *map(str, data.plan.goals)]
    if data.summary:
        out.append(data.summary.text)
    return out


def _trend_panels(data: PatientReportData, lang: str) -> list[charts.Panel]:
    panels = []
    sex = data.patient.sex
    for codes in TREND_PANELS:
        present = [c for c in codes if data.series.get(c)]
        if not present:
            continue
        main = data.indicators[present[0]]
        points = tuple(charts.Point(at, value, data.indicators[c].name(lang))
                       for c in present for at, value in data.series[c])
        bands = tuple(charts.Band(b.low, b.high, b.abnormal, band_label(b.band, lang)) for b in main.bands_for(sex))
        if not bands and (main.ref_low is not None or main.ref_high is not None):
            bands = (charts.Band(main.ref_low, main.ref_high, False, tr("reports.reference", lang)),)
        rules: list[tuple[float, str]] = []
        for code in present[1:]:
            other = data.indicators[code]
            edges = [b.low for b in other.bands_for(sex) if b.abnormal and b.low is not None]
            threshold = min(edges) if edges else other.ref_high
            if threshold is not None:
                rules.append((threshold, other.name(lang)))
        years = sorted({at.year for p in points for at in [p.at]})
        span = f"{years[0]}–{years[-1]}" if len(years) > 1 else str(years[0])
        title = f"{' / '.join(data.indicators[c].name(lang) for c in present)}  ({span})"
        panels.append(charts.Panel(title, main.unit, points, bands, tuple(rules)))
    return panels


def render(data: PatientReportData, *, lang: str, now: datetime, settings: Settings,
           with_charts: bool = True, chart_renderer: str = "vector") -> bytes:
    p = data.patient
    title = tr("reports.patient.title", lang)
    pdf = ReportPDF(lang=lang, title=title, header_text=f"{settings.institution_name} · {p.card_no}",
                    generated_at=now, footer_note=tr("reports.not_diagnosis", lang), texts=_texts(data))
    pdf.add_page()

    # cover block: logo, institution, title, period
    logo = Path(settings.logo_path) if settings.logo_path else None
    top = pdf.get_y()
    if logo is not None and logo.is_file():
        try:
            pdf.image(str(logo), x=pdf.l_margin, y=top, h=16)
            pdf.set_x(pdf.l_margin + 30)
        except Exception:  # noqa: BLE001 - a broken logo file must not stop a report
            pdf.set_x(pdf.l_margin)
    pdf.set_font(pdf.family, size=11)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 6, settings.institution_name, new_x="LMARGIN", new_y="NEXT")
    if logo is not None and logo.is_file():
        pdf.set_x(pdf.l_margin + 30)
    pdf.set_font(pdf.family, size=20)
    pdf.set_text_color(33, 37, 41)
    pdf.cell(0, 11, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + 18))
    pdf.muted(tr("reports.patient.period", lang, start=_day(data.period_from), end=_day(data.period_to))
              + "  ·  " + tr("reports.generated_at", lang, at=now.strftime("%Y-%m-%d %H:%M")))
    pdf.ln(2)

    # patient header (contacts masked: a printed report leaves the building)
    age = age_on(p.birth_date, now.date())
    fields = [
        (tr("reports.patient.card_no", lang), p.card_no),
        (tr("reports.patient.name", lang), p.name),
        (tr("reports.patient.sex", lang), label("sex", p.sex, lang)),
        (tr("reports.patient.age", lang), "—" if age is None else tr("reports.patient.years", lang, n=age)),
        (tr("reports.patient.department", lang), p.department or "—"),
        (tr("reports.patient.nurse", lang), p.nurse or "—"),
        (tr("reports.patient.phone", lang), mask_phone(p.phone) or "—"),
        (tr("reports.patient.id_number", lang), mask_id_number(p.id_number) or "—"),
    ]
    rows = [[fields[i][0], fields[i][1], fields[i + 1][0], fields[i + 1][1]] for i in range(0, len(fields), 2)]
    pdf.set_font(pdf.family, size=9.5)
    col = pdf.content_width / 4
    pdf.set_fill_color(244, 247, 251)
    for r in rows:
        for n, text in enumerate(r):
            pdf.set_text_color(*(MUTED if n % 2 == 0 else (33, 37, 41)))
            pdf.cell(col * (0.7 if n % 2 == 0 else 1.3), 7, text, fill=True)
        pdf.ln(7)
    pdf.set_text_color(33, 37, 41)
    pdf.ln(2)

    if not data.has_any_data:
        pdf.set_fill_color(255, 248, 225)
        pdf.para(tr("reports.patient.no_data", lang), size=11)

    # latest indicators
    pdf.section(tr("reports.patient.latest", lang))
    if data.latest:
        abnormal = sum(1 for lv in data.latest if lv.abnormal)
        pdf.muted(tr("reports.patient.latest_summary", lang, n=len(data.latest), abnormal=abnormal))
        table = []
        for lv in data.latest:
            ind = lv.indicator
            flag = ""
            if lv.abnormal:
                flag = tr(f"reports.flag.{lv.direction or 'abnormal'}", lang)
            table.append([ind.name(lang), fmt_value(lv.value, ind.decimals), ind.unit, reference_range(ind),
                          band_label(lv.band.band if lv.band else None, lang), flag, _day(lv.observed_at)])
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("indicator", "value", "unit", "reference", "band", "flag",
                                                           "date")],
                 table, widths=(36, 16, 16, 22, 32, 18, 20), alerts=[lv.abnormal for lv in data.latest],
                 align=("LEFT", "RIGHT", "LEFT", "LEFT", "LEFT", "LEFT", "LEFT"))
        sources = sorted({(b.source, b.version) for lv in data.latest if lv.band for b in [lv.band]})
        if sources:
            pdf.muted(tr("reports.patient.bands_source", lang) + " " + "; ".join(s for s, _ in sources))
    else:
        pdf.muted(tr("reports.none", lang))

    # tags
    pdf.section(tr("reports.patient.tags", lang))
    if data.tags:
        pdf.para("；".join(f"{_tag_name(t, lang)}（{_day(t.since)}）" for t in data.tags) if lang == "zh_CN"
                 else "; ".join(f"{_tag_name(t, lang)} (since {_day(t.since)})" for t in data.tags))
    else:
        pdf.muted(tr("reports.none", lang))

    # trends: drawn as vector panels (default), or one vl-convert image of the Vega-Lite panels; the heading
    # moves to the next page with the charts when they do not fit here
    panels = _trend_panels(data, lang)
    image = charts.render_panels(panels) if panels and with_charts and chart_renderer == "vega" else None
    needed = 0.0
    if image is not None:
        needed = pdf.image_height(image, width=pdf.content_width * 0.92)
    elif panels and with_charts:
        needed = len(panels) * (PANEL_HEIGHT + 2)
    if needed and pdf.get_y() + 24 + min(needed, 120) > pdf.page_break_trigger:
        pdf.add_page()
    pdf.section(tr("reports.patient.trends", lang))
    if image is not None:
        pdf.muted(tr("reports.patient.trends_help", lang))
        pdf.png(image, width=pdf.content_width * 0.92, fit_here=True)
    elif panels and with_charts:
        pdf.muted(tr("reports.patient.trends_help", lang))
        vector_charts.draw_panels(pdf, panels, family=pdf.family, width=pdf.content_width * 0.96,
                                  panel_height=PANEL_HEIGHT)
    elif panels:
        pdf.muted(tr("reports.patient.charts_off", lang))
    else:
        pdf.muted(tr("reports.none", lang))

    # risks
    pdf.section(tr("reports.patient.risks", lang))
    if data.risks:
        table = []
        for risk in data.risks:
            factors = ", ".join(_factor_text(f, lang) for f in risk.factors[:8])
            if risk.missing:
                missing = tr("reports.patient.missing", lang,
                             names=", ".join(label("reports.factor", str(m), lang) for m in risk.missing))
                factors = f"{factors}; {missing}" if factors else missing
            table.append([label("reports.model", risk.model, lang) + f" {risk.model_version}",
                          "—" if risk.score is None else f"{risk.score:.1f}", label("reports.level", risk.level, lang),
                          _day(risk.assessed_at), factors or "—"])
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("model", "score", "level", "date", "factors")], table,
                 widths=(34, 14, 20, 20, 72), alerts=[(r.level or "") in ("high", "very_high") for r in data.risks])
        pdf.muted(tr("reports.patient.risk_help", lang))
    else:
        pdf.muted(tr("reports.none", lang))

    # advice and wellness plan
    pdf.section(tr("reports.patient.advice", lang))
    if data.advice:
        for a in data.advice:
            pdf.subheading(f"{label('reports.category', a.category, lang)} · {a.title}")
            pdf.para(a.body)
            if a.source:
                pdf.muted(tr("reports.source", lang, source=a.source))
    else:
        pdf.muted(tr("reports.none", lang))
    pdf.section(tr("reports.patient.plan", lang))
    if data.plan:
        plan = data.plan
        pdf.subheading(plan.title)
        pdf.muted(tr("reports.patient.plan_dates", lang, start=_day(plan.start_on),
                     end=_day(plan.end_on) if plan.end_on else tr("reports.open_ended", lang),
                     status=label("reports.plan_status", plan.status, lang)))
        goals = [_goal_text(g, data, lang) for g in plan.goals]
        if goals:
            pdf.bullets(goals)
        if plan.end_on and plan.end_on > plan.start_on:
            done = min(max((now.date() - plan.start_on).days / (plan.end_on - plan.start_on).days, 0.0), 1.0)
            pdf.muted(tr("reports.patient.plan_progress", lang, pct=f"{done * 100:.0f}"))
    else:
        pdf.muted(tr("reports.none", lang))

    # follow-ups and interventions of the period
    pdf.section(tr("reports.patient.followups", lang, start=_day(data.period_from), end=_day(data.period_to)))
    if data.followups:
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("due", "plan", "method", "status", "attempts", "completed")],
                 [[_day(f.due_date), f.plan or "—", label("method", f.method, lang),
                   label("task_status", f.status, lang), str(f.attempts), _day(f.completed_at)]
                  for f in data.followups], widths=(22, 52, 20, 26, 18, 42))
    if data.contacts:
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("contacted", "method", "outcome", "notes")],
                 [[c.contacted_at.strftime("%Y-%m-%d %H:%M"), label("method", c.method, lang),
                   label("outcome", c.outcome, lang), c.notes or ""] for c in data.contacts],
                 widths=(30, 20, 26, 104))
    if not data.followups and not data.contacts:
        pdf.muted(tr("reports.none", lang))
    pdf.section(tr("reports.patient.interventions", lang))
    if data.interventions:
        pdf.grid([tr(f"reports.col.{c}", lang) for c in ("date", "kind", "indicator", "goal", "content")],
                 [[_day(i.performed_on), label("intervention_kind", i.kind, lang), i.indicator or "—", i.goal or "—",
                   i.content] for i in data.interventions], widths=(20, 24, 26, 40, 70))
    else:
        pdf.muted(tr("reports.none", lang))

    # health phase summary
    pdf.section(tr("reports.patient.summary", lang))
    if data.summary:
        s = data.summary
        pdf.muted(tr("reports.patient.summary_period", lang, start=_day(s.period_from), end=_day(s.period_to)))
        pdf.para(s.text)
    else:
        pdf.muted(tr("reports.none", lang))

    pdf.ln(4)
    pdf.para(tr("reports.disclaimer", lang), size=8.5, colour=ALERT)
    return pdf.to_bytes()


def _goal_text(goal: Any, data: PatientReportData, lang: str) -> str:
    """services.wellness goals ({"indicator", "cmp", "target", "by"}) with the latest value and whether it is met."""
    if not isinstance(goal, dict) or "indicator" not in goal:
        return str(goal)
    code = str(goal["indicator"])
    ind = data.indicators.get(code)
    name = ind.name(lang) if ind else code
    unit = ind.unit if ind else ""
    text = tr("reports.patient.goal", lang, indicator=name, cmp=str(goal.get("cmp", "")),
              target=_num(float(goal.get("target", 0))), unit=unit, by=str(goal.get("by", "")))
    latest = next((lv for lv in data.latest if lv.indicator.code == code), None)
    if latest is None:
        return text + " · " + tr("reports.patient.goal_no_value", lang)
    target = float(goal.get("target", 0))
    cmp = str(goal.get("cmp", ""))
    met = {"<": latest.value < target, "<=": latest.value <= target, ">": latest.value > target,
           ">=": latest.value >= target}.get(cmp)
    state = tr("reports.patient.goal_met" if met else "reports.patient.goal_not_met", lang)
    value = fmt_value(latest.value, latest.indicator.decimals)
    return text + " · " + tr("reports.patient.goal_latest", lang, value=value, date=_day(latest.observed_at),
                             state=state)


def build_patient_report(conn: Connection | Session, *, card_no: str, lang: str, now: datetime, settings: Settings,
                         period_from: date | None = None, period_to: date | None = None,
                         catalogue: dict[str, IndicatorInfo] | None = None, with_charts: bool = True,
                         chart_renderer: str = "vector") -> bytes:
    """The health report of one patient as PDF bytes; UserError for an unknown card number.

    chart_renderer: "vector" draws the trend panels into the PDF (milliseconds, sharp at any zoom); "vega"
    renders the same panels as a Vega-Lite spec through vl-convert to one PNG (about half a second more).

    The caller audits the read (services.exports.record_report) in its own transaction."""
    data = report_data.patient_report_data(conn=conn, card_no=card_no, lang=lang, now=now, period_from=period_from,
                                           period_to=period_to, catalogue=catalogue)
    if data is None:
        raise UserError("reports.unknown_card", card_no=card_no)
    return render(data, lang=lang, now=now, settings=settings, with_charts=with_charts,
                  chart_renderer=chart_renderer)
