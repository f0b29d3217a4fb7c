"""Altair charts of the follow-up dashboard; each carries a title that says what it shows."""

from __future__ import annotations

import altair as alt
import pandas as pd


def rate_by_group(df: pd.DataFrame, *, title: str, group: str, rate: str, due: str) -> alt.Chart:
    """On-time completion rate per group (bars), tasks due in the tooltip."""
    chart: alt.Chart = alt.Chart(df).mark_bar().encode(
        x=alt.X("on_time_rate:Q", title=rate, axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("label:N", title=group, sort=None),
        tooltip=[alt.Tooltip("label:N", title=group), alt.Tooltip("on_time_rate:Q", title=rate, format=".1%"),
                 alt.Tooltip("due:Q", title=due)],
    ).properties(title=title, height=max(120, 28 * len(df)))
    return chart


def cohorts(df: pd.DataFrame, *, title: str, cohort: str, patients: str) -> alt.Chart:
    """Patients per HEARTS cohort, in the cohorts' own order."""
    chart: alt.Chart = alt.Chart(df).mark_bar().encode(
        x=alt.X("patients:Q", title=patients),
        y=alt.Y("cohort:N", title=cohort, sort=list(df["cohort"])),
        tooltip=[alt.Tooltip("cohort:N", title=cohort), alt.Tooltip("patients:Q", title=patients)],
    ).properties(title=title, height=180)
    return chart
