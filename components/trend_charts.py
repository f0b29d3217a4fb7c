"""Multi-year indicator charts: the values over time on the guideline bands (from GuidelineBand rows) shaded."""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt
import pandas as pd


@dataclass(frozen=True)
class ChartMarks:
    """Dated events drawn on a trend as vertical rules (e.g. the interventions that target the indicator).

    frame: one row per event, column "at" (the date) and the columns named in tooltips; tooltips: (column, title)
    pairs shown when hovering a rule, in order."""

    frame: pd.DataFrame
    tooltips: tuple[tuple[str, str], ...]


MARK_COLOR = "#ff7f0e"


def trend(
    series: pd.DataFrame, bands: pd.DataFrame, *, title: str, unit: str, labels: dict[str, str],
    marks: ChartMarks | None = None,
) -> alt.LayerChart:
    """One indicator: a line with points (abnormal points red) over the shaded guideline bands, and a dashed rule
    with a marker on top at each of `marks` (tooltip: the event's details)."""
    lo = float(series["value"].min())
    hi = float(series["value"].max())
    for col in ("low", "high"):
        if not bands.empty:
            vals = bands[col].dropna()
            if not vals.empty:
                lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
    pad = (hi - lo) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    start, end = series["observed_at"].min(), series["observed_at"].max()
    if marks is not None and not marks.frame.empty:  # the bands span the events too
        at = pd.to_datetime(marks.frame["at"])
        start, end = min(start, at.min()), max(end, at.max())
    if start == end:
        start, end = start - pd.Timedelta(days=30), end + pd.Timedelta(days=30)
    layers: list[alt.Chart] = []
    if not bands.empty:
        b = bands.assign(y1=bands["low"].fillna(lo).clip(lower=lo), y2=bands["high"].fillna(hi).clip(upper=hi),
                         x1=start, x2=end)
        layers.append(alt.Chart(b).mark_rect(opacity=0.15).encode(
            x="x1:T", x2="x2:T", y=alt.Y("y1:Q", scale=alt.Scale(domain=[lo, hi])), y2="y2:Q",
            color=alt.Color("abnormal:N", scale=alt.Scale(domain=[False, True], range=["#2ca02c", "#d62728"]),
                            legend=None),
            tooltip=[alt.Tooltip("band:N", title=labels["band"]), alt.Tooltip("source:N", title=labels["source"])],
        ))
    line = alt.Chart(series).encode(
        x=alt.X("observed_at:T", title=labels["date"]),
        y=alt.Y("value:Q", title=unit, scale=alt.Scale(domain=[lo, hi])),
    )
    layers.append(line.mark_line(color="#1f77b4"))
    layers.append(line.mark_point(filled=True, size=40).encode(
        color=alt.condition("datum.abnormal", alt.value("#d62728"), alt.value("#1f77b4")),
        tooltip=[alt.Tooltip("observed_at:T", title=labels["date"]), alt.Tooltip("value:Q", title=unit),
                 alt.Tooltip("band:N", title=labels["band"]), alt.Tooltip("source:N", title=labels["source"])],
    ))
    if marks is not None and not marks.frame.empty:
        m = marks.frame.assign(at=pd.to_datetime(marks.frame["at"]), top=hi)
        tips = [alt.Tooltip("at:T", title=labels["date"]),
                *(alt.Tooltip(f"{col}:N", title=name) for col, name in marks.tooltips)]
        base = alt.Chart(m).encode(x="at:T", tooltip=tips)
        layers.append(base.mark_rule(color=MARK_COLOR, strokeDash=[5, 3], strokeWidth=2))
        layers.append(base.mark_point(shape="triangle-down", filled=True, size=90, color=MARK_COLOR, opacity=1)
                      .encode(y=alt.Y("top:Q", scale=alt.Scale(domain=[lo, hi]))))
    return alt.LayerChart(layer=layers).properties(title=title, height=220)
