"""The trend panels drawn straight into the PDF as vector graphics: the same bands, rules and lines as the
Vega-Lite chart in reports/charts.py, in a few milliseconds instead of a vl-convert render per report."""

from __future__ import annotations

import math
from datetime import datetime

from fpdf import FPDF

from reports.charts import ABNORMAL_FILL, NORMAL_FILL, SERIES_COLOURS, Panel, _domain

AXIS = (150, 150, 150)
GRID = (235, 235, 235)
TEXT = (70, 70, 70)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 6) for i in range(int((hi - first) / step) + 1)]


def _ts(at: datetime) -> float:
    return at.timestamp()


def draw_panel(pdf: FPDF, panel: Panel, *, x: float, y: float, w: float, h: float, family: str) -> None:
    """One panel: title line, plot area with guideline bands, dashed thresholds, a line per series, axes."""
    pdf.set_font(family, size=9)
    pdf.set_text_color(*TEXT)
    pdf.set_xy(x, y)
    pdf.cell(w * 0.6, 4.5, "  ·  ".join(t for t in (panel.title, panel.unit) if t))
    series = list(dict.fromkeys(p.series for p in panel.points))
    if len(series) > 1:  # legend, right-aligned on the title line
        lx = x + w
        pdf.set_font(family, size=7.5)
        for n, name in reversed(list(enumerate(series))):
            lx -= pdf.get_string_width(name) + 6
            pdf.set_fill_color(*_rgb(SERIES_COLOURS[n % len(SERIES_COLOURS)]))
            pdf.circle(x=lx + 1.2, y=y + 2.25, radius=1.0, style="F")
            pdf.set_xy(lx + 2.6, y + 0.5)
            pdf.cell(pdf.get_string_width(name) + 1, 3.5, name)
    left, top = x + 12, y + 6
    pw, ph = w - 14, h - 12
    lo, hi = _domain(panel)
    times = [_ts(p.at) for p in panel.points]
    t0, t1 = min(times), max(times)
    if t1 - t0 < 86400 * 30:
        t0, t1 = t0 - 86400 * 30, t1 + 86400 * 30
    pad = (t1 - t0) * 0.03
    t0, t1 = t0 - pad, t1 + pad

    def px(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def py(v: float) -> float:
        return top + ph - (min(max(v, lo), hi) - lo) / (hi - lo) * ph

    for band in panel.bands:
        b_lo = lo if band.low is None else max(band.low, lo)
        b_hi = hi if band.high is None else min(band.high, hi)
        if b_hi <= b_lo:
            continue
        pdf.set_fill_color(*_rgb(ABNORMAL_FILL if band.abnormal else NORMAL_FILL))
        pdf.rect(left, py(b_hi), pw, py(b_lo) - py(b_hi), style="F")
    pdf.set_font(family, size=7)
    pdf.set_line_width(0.15)
    for v in _ticks(lo, hi):
        pdf.set_draw_color(*GRID)
        pdf.line(left, py(v), left + pw, py(v))
        pdf.set_xy(left - 11, py(v) - 1.6)
        pdf.cell(10, 3.2, f"{v:g}", align="R")
    years = range(datetime.fromtimestamp(t0).year + 1, datetime.fromtimestamp(t1).year + 1)
    step = max(1, math.ceil(len(years) / 8))
    for year in list(years)[::step]:
        tx = px(_ts(datetime(year, 1, 1)))
        pdf.set_draw_color(*AXIS)
        pdf.line(tx, top + ph, tx, top + ph + 1)
        pdf.set_xy(tx - 8, top + ph + 1)
        pdf.cell(16, 3.2, str(year), align="C")
    for value, _name in panel.rules:
        if lo < value < hi:
            pdf.set_draw_color(136, 136, 136)
            pdf.set_dash_pattern(dash=1.2, gap=0.9)
            pdf.line(left, py(value), left + pw, py(value))
            pdf.set_dash_pattern()
    pdf.set_line_width(0.45)
    for n, name in enumerate(series):
        colour = _rgb(SERIES_COLOURS[n % len(SERIES_COLOURS)])
        pts = [(px(_ts(p.at)), py(p.value)) for p in panel.points if p.series == name]
        pdf.set_draw_color(*colour)
        pdf.set_fill_color(*colour)
        if len(pts) > 1:
            pdf.polyline(pts)
        for cx, cy in pts:
            pdf.circle(x=cx, y=cy, radius=0.6, style="F")
    pdf.set_line_width(0.2)
    pdf.set_draw_color(*AXIS)
    pdf.rect(left, top, pw, ph)
    pdf.set_text_color(33, 37, 41)


def draw_panels(pdf: FPDF, panels: list[Panel], *, family: str, width: float, panel_height: float = 44) -> None:
    """Stack the panels from the current position, moving to a new page when one does not fit."""
    x = pdf.l_margin + (pdf.epw - width) / 2
    for panel in panels:
        if pdf.get_y() + panel_height > pdf.page_break_trigger:
            pdf.add_page()
        y = pdf.get_y()
        draw_panel(pdf, panel, x=x, y=y, w=width, h=panel_height, family=family)
        pdf.set_xy(pdf.l_margin, y + panel_height + 2)
