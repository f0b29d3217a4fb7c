"""Satisfaction charts: NPS with its 95% interval and n, the promoter/passive/detractor split, top-box heatmap.

Every chart takes a title that says what it shows (the filter's describe()).
"""

from __future__ import annotations

import altair as alt
import pandas as pd


def _tooltip(labels: dict[str, str]) -> list[alt.Tooltip]:
    return [
        alt.Tooltip("label:N", title=labels["label"]),
        alt.Tooltip("nps:Q", title=labels["nps"], format=".1f"),
        alt.Tooltip("responses:Q", title=labels["responses"]),
        alt.Tooltip("ci_low:Q", title=labels["ci_low"], format=".1f"),
        alt.Tooltip("ci_high:Q", title=labels["ci_high"], format=".1f"),
    ]


def nps_trend(df: pd.DataFrame, *, title: str, labels: dict[str, str]) -> alt.LayerChart | alt.FacetChart:
    """NPS per month or quarter: a line, the 95% interval as a band, n written above each point."""
    base = alt.Chart(df).encode(x=alt.X("label:O", title=labels["label"], sort=None))
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y("ci_low:Q", title=labels["nps"], scale=alt.Scale(domain=[-100, 100])), y2="ci_high:Q")
    line = base.mark_line(point=True).encode(y="nps:Q", tooltip=_tooltip(labels))
    n = base.mark_text(dy=-12, fontSize=10, color="gray").encode(y="nps:Q", text=alt.Text("responses:Q"))
    return alt.layer(band, line, n).properties(title=title, height=320)


def nps_bars(df: pd.DataFrame, *, title: str, labels: dict[str, str]) -> alt.LayerChart | alt.FacetChart:
    """NPS per department, doctor or channel: a bar, its 95% interval as an error bar, and n beside it."""
    base = alt.Chart(df).encode(y=alt.Y("label:N", title=labels["label"], sort="-x"))
    bars = base.mark_bar().encode(
        x=alt.X("nps:Q", title=labels["nps"], scale=alt.Scale(domain=[-100, 100])),
        color=alt.condition("datum.small_sample", alt.value("#b0b0b0"), alt.value("#4c78a8")),
        tooltip=_tooltip(labels))
    rule = base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q")
    n = base.mark_text(align="left", dx=4, color="gray").encode(x=alt.value(0), text=alt.Text("responses:Q"))
    height = max(120, 28 * len(df))
    return alt.layer(bars, rule, n).properties(title=title, height=height)


def ppd_split(df: pd.DataFrame, *, title: str, labels: dict[str, str], band_labels: dict[str, str]) -> alt.Chart:
    """Promoters / passives / detractors as shares of each group's responses (stacked to 100%)."""
    long = df.melt(id_vars=["label", "responses"], value_vars=["promoter_pct", "passive_pct", "detractor_pct"],
                   var_name="band", value_name="pct")
    long["band"] = long["band"].map(lambda b: band_labels[b.removesuffix("_pct")])
    order = [band_labels[b] for b in ("promoter", "passive", "detractor")]
    chart: alt.Chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("label:O", title=labels["label"], sort=None),
        y=alt.Y("pct:Q", title=labels["pct"], stack="zero", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("band:N", title=labels["band"], sort=order,
                        scale=alt.Scale(domain=order, range=["#54a24b", "#bab0ac", "#e45756"])),
        order=alt.Order("band:N"),
        tooltip=[alt.Tooltip("label:N", title=labels["label"]), alt.Tooltip("band:N", title=labels["band"]),
                 alt.Tooltip("pct:Q", title=labels["pct"], format=".1f"),
                 alt.Tooltip("responses:Q", title=labels["responses"])],
    ).properties(title=title, height=260)
    return chart


def topbox_heatmap(df: pd.DataFrame, *, title: str, labels: dict[str, str]) -> alt.LayerChart | alt.FacetChart:
    """Top-box % for each item (rows) and department (columns), with the number of answers behind each cell."""
    base = alt.Chart(df).encode(
        x=alt.X("department:N", title=labels["department"]),
        y=alt.Y("item:N", title=labels["item"], sort=alt.EncodingSortField("position")),
    )
    tooltip = [alt.Tooltip("item:N", title=labels["item"]), alt.Tooltip("department:N", title=labels["department"]),
               alt.Tooltip("pct:Q", title=labels["pct"], format=".1f"),
               alt.Tooltip("top_box:Q", title=labels["top_box"]), alt.Tooltip("answers:Q", title=labels["answers"])]
    rect = base.mark_rect().encode(
        color=alt.Color("pct:Q", title=labels["pct"], scale=alt.Scale(domain=[0, 100], scheme="blues")),
        tooltip=tooltip)
    text = base.mark_text(fontSize=11).encode(text=alt.Text("pct:Q", format=".0f"))
    return alt.layer(rect, text).properties(title=title, height=max(160, 34 * df["item"].nunique()))
