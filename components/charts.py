"""Altair charts used by the dashboards; every chart carries a title that says what it shows."""

from __future__ import annotations

import altair as alt
import pandas as pd


def nps_by_month(df: pd.DataFrame, *, title: str, labels: dict[str, str]) -> alt.LayerChart:
    """NPS per month with its 95% interval as a band and the number of responses in the tooltip."""
    base = alt.Chart(df).encode(x=alt.X("month:O", title=labels["month"]))
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("ci_low:Q", title=labels["nps"], scale=alt.Scale(domain=[-100, 100])), y2="ci_high:Q"
    )
    tooltip = [
        alt.Tooltip("month:O", title=labels["month"]),
        alt.Tooltip("nps:Q", title=labels["nps"], format=".1f"),
        alt.Tooltip("responses:Q", title=labels["responses"]),
        alt.Tooltip("ci_low:Q", title=labels["ci_low"], format=".1f"),
        alt.Tooltip("ci_high:Q", title=labels["ci_high"], format=".1f"),
    ]
    line = base.mark_line(point=True).encode(y=alt.Y("nps:Q"), tooltip=tooltip)
    return alt.layer(band, line).properties(title=title, height=320)
