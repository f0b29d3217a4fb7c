"""Trend charts for the reports: Altair specs with guideline bands, rendered to PNG by vl-convert."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import altair as alt
import pandas as pd

from reports import fonts

CHART_FONT = "Noto Sans SC"
_fonts_registered = False
_lock = threading.Lock()
# Light fills: the band says "normal" or "abnormal" by colour, the line stays readable over it.
NORMAL_FILL = "#d9f2e3"
ABNORMAL_FILL = "#fbe0dc"
SERIES_COLOURS = ("#1f5fa8", "#d9661f")


@dataclass(frozen=True)
class Band:
    low: float | None
    high: float | None
    abnormal: bool
    label: str


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float
    series: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    points: tuple[Point, ...]
    bands: tuple[Band, ...] = ()
    # Thresholds of a second series in the panel (for example DBP under SBP's bands), as dashed rules.
    rules: tuple[tuple[float, str], ...] = field(default=())


def _register_fonts() -> None:
    """vl-convert needs the CJK font registered once per process, before the first render."""
    global _fonts_registered
    with _lock:
        if not _fonts_registered:
            import vl_convert as vlc

            vlc.register_font_directory(str(fonts.font_directory()))
            _fonts_registered = True


def _domain(panel: Panel) -> tuple[float, float]:
    values = [p.value for p in panel.points] + [r[0] for r in panel.rules]
    edges = [b for band in panel.bands for b in (band.low, band.high) if b is not None]
    low, high = min(values), max(values)
    # Show the nearest band edges around the data so a reader sees how far a value is from a threshold.
    below = [e for e in edges if e <= low]
    above = [e for e in edges if e >= high]
    lo = max(below) if below else low
    hi = min(above) if above else high
    span = (hi - lo) or max(abs(hi), 1.0)
    return lo - span * 0.08, hi + span * 0.08


def panel_chart(panel: Panel, *, width: int = 460, height: int = 120, date_title: str = "") -> alt.LayerChart:
    lo, hi = _domain(panel)
    y_scale = alt.Scale(domain=[lo, hi], nice=False, zero=False)
    layers: list[Any] = []
    band_rows = [
        {"y": max(b.low if b.low is not None else lo, lo), "y2": min(b.high if b.high is not None else hi, hi),
         "fill": ABNORMAL_FILL if b.abnormal else NORMAL_FILL, "band": b.label}
        for b in panel.bands
        if (b.high is None or b.high > lo) and (b.low is None or b.low < hi)
    ]
    if band_rows:
        layers.append(alt.Chart(pd.DataFrame(band_rows)).mark_rect(opacity=0.9).encode(
            y=alt.Y("y:Q", scale=y_scale, title=panel.unit), y2="y2:Q", color=alt.Color("fill:N", scale=None)))
    if panel.rules:
        layers.append(alt.Chart(pd.DataFrame([{"y": v, "label": lab} for v, lab in panel.rules]))
                      .mark_rule(strokeDash=[4, 3], color="#888888").encode(y=alt.Y("y:Q", scale=y_scale)))
    df = pd.DataFrame([{"at": p.at, "value": p.value, "series": p.series} for p in panel.points])
    series = list(dict.fromkeys(df["series"]))
    layers.append(alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.6).encode(
        x=alt.X("at:T", title=date_title, axis=alt.Axis(format="%Y-%m", labelAngle=0, tickCount=6)),
        y=alt.Y("value:Q", scale=y_scale, title=panel.unit),
        color=alt.Color("series:N", scale=alt.Scale(domain=series, range=list(SERIES_COLOURS[:len(series)])),
                        legend=alt.Legend(title=None, orient="top-right") if len(series) > 1 else None),
    ))
    return alt.LayerChart(layer=layers, width=width, height=height, title=panel.title)


def panel_spec(panel: Panel, *, width: int = 480, height: int = 105, date_title: str = "") -> dict[str, Any]:
    """The same chart as panel_chart, written straight as a Vega-Lite dict: building Altair objects and copying
    them into a vconcat costs more than rendering, and a report must stay under 300 ms."""
    lo, hi = _domain(panel)
    y_scale = {"domain": [lo, hi], "nice": False, "zero": False}
    layers: list[dict[str, Any]] = []
    band_rows = [
        {"y": max(b.low if b.low is not None else lo, lo), "y2": min(b.high if b.high is not None else hi, hi),
         "fill": ABNORMAL_FILL if b.abnormal else NORMAL_FILL}
        for b in panel.bands
        if (b.high is None or b.high > lo) and (b.low is None or b.low < hi)
    ]
    if band_rows:
        layers.append({"data": {"values": band_rows}, "mark": {"type": "rect", "opacity": 0.9},
                       "encoding": {"y": {"field": "y", "type": "quantitative", "scale": y_scale,
                                          "title": panel.unit},
                                    "y2": {"field": "y2"}, "color": {"field": "fill", "type": "nominal",
                                                                     "scale": None}}})
    if panel.rules:
        layers.append({"data": {"values": [{"y": v} for v, _ in panel.rules]},
                       "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#888888"},
                       "encoding": {"y": {"field": "y", "type": "quantitative", "scale": y_scale}}})
    series = list(dict.fromkeys(p.series for p in panel.points))
    values = [{"at": p.at.strftime("%Y-%m-%dT%H:%M:%S"), "value": p.value, "series": p.series}
              for p in panel.points]
    legend = {"title": None, "orient": "top", "direction": "horizontal"} if len(series) > 1 else None
    colour: dict[str, Any] = {"field": "series", "type": "nominal", "legend": legend,
                              "scale": {"domain": series, "range": list(SERIES_COLOURS[:len(series)])}}
    layers.append({"data": {"values": values},
                   "mark": {"type": "line", "strokeWidth": 1.6, "point": {"size": 22}},
                   "encoding": {
                       "x": {"field": "at", "type": "temporal", "title": date_title,
                             "axis": {"format": "%Y-%m", "labelAngle": 0, "tickCount": 6}},
                       "y": {"field": "value", "type": "quantitative", "scale": y_scale, "title": panel.unit},
                       "color": colour}})
    return {"layer": layers, "width": width, "height": height, "title": panel.title}


def render_panels(panels: list[Panel], *, scale: float = 1.8, date_title: str = "") -> bytes:
    """All panels stacked in one image: one vl-convert call per report instead of one per indicator."""
    import vl_convert as vlc

    _register_fonts()
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "vconcat": [panel_spec(p, date_title=date_title) for p in panels],
        "spacing": 14,
        # Each panel keeps its own colours, legend and y axis.
        "resolve": {"scale": {"color": "independent", "y": "independent"}, "legend": {"color": "independent"}},
        "config": {"font": CHART_FONT, "view": {"stroke": "#cccccc"},
                   "title": {"fontSize": 12, "anchor": "start"},
                   "axis": {"labelFontSize": 9, "titleFontSize": 9, "gridColor": "#eeeeee"}},
    }
    return bytes(vlc.vegalite_to_png(spec, scale=scale))


def render_chart(chart: alt.TopLevelMixin, *, scale: float = 2.0) -> bytes:
    """Any Altair chart to PNG with the CJK font available."""
    import vl_convert as vlc

    _register_fonts()
    spec = chart.to_dict(validate=False)
    spec.setdefault("config", {}).setdefault("font", CHART_FONT)
    return bytes(vlc.vegalite_to_png(spec, scale=scale))


def line_chart(df: pd.DataFrame, *, x: str, y: str, title: str, x_title: str, y_title: str,
               band: tuple[str, str] | None = None, domain: tuple[float, float] | None = None) -> alt.TopLevelMixin:
    """A simple line chart (NPS by month, with its interval as a band) for the quality summary."""
    scale = alt.Scale(domain=list(domain)) if domain else alt.Scale(zero=False)
    base = alt.Chart(df).encode(x=alt.X(f"{x}:O", title=x_title, axis=alt.Axis(labelAngle=-45)))
    layers: list[Any] = []
    if band:
        layers.append(base.mark_area(opacity=0.2, color=SERIES_COLOURS[0]).encode(
            y=alt.Y(f"{band[0]}:Q", scale=scale, title=y_title), y2=f"{band[1]}:Q"))
    layers.append(base.mark_line(point=True, color=SERIES_COLOURS[0]).encode(
        y=alt.Y(f"{y}:Q", scale=scale, title=y_title)))
    return alt.layer(*layers).properties(width=460, height=170, title=title)
