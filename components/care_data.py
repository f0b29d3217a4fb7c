"""Cached reads and small formatters for the care screens (tags, risk, advice, return risk)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from components.data import TTL_SECONDS, engine
from components.runtime import tr
from queries import risk as risk_q
from queries.filters import DataScope
from services import return_risk
from services.risk import LEVELS

MODEL_KEYS = ("pce", "framingham", "findrisc", "cdrs")


@st.cache_data(ttl=TTL_SECONDS, max_entries=64, show_spinner=False)
def risk_distribution(scope_key: str, model: str, lang: str, _scope: DataScope, tag: str | None = None
                      ) -> pd.DataFrame:
    with engine().connect() as conn:
        return risk_q.distribution(conn=conn, model=model, scope=_scope, lang=lang, tag=tag)


@st.cache_data(ttl=TTL_SECONDS, max_entries=8, show_spinner=False)
def return_model(day: str) -> return_risk.ReturnModel:
    # Site-wide model (managers and admins see the whole site); the day is the cache key.
    with engine().connect() as conn:
        return return_risk.build(conn, as_of=datetime.fromisoformat(day))


def labelled(fn: Callable[[str], str], options: Iterable[str]) -> Callable[[str], str]:
    """A format_func with its labels computed now, in this run's language (AppTest calls it outside the run)."""
    table = {o: fn(o) for o in options}
    return lambda o: table.get(o, o)


def level_order(model: str) -> list[str]:
    return [*LEVELS.get(model, []), "none"]


def level_label(level: str | None) -> str:
    return tr(f"care.risk.level.{level or 'none'}")


def factor_text(factors: list[dict[str, Any]], *, top: int = 3) -> str:
    """The largest contributions, "Age +3, SBP +8", so a reader sees what drives the result."""
    ranked = sorted(factors, key=lambda f: abs(float(f.get("contribution", 0))), reverse=True)[:top]
    return ", ".join(f"{tr('care.risk.factor.' + str(f['name']))} {float(f['contribution']):+.2f}" for f in ranked)


def missing_text(missing: list[str] | None) -> str:
    return tr("care.risk.needs", what=", ".join(tr(f"care.risk.input.{m}") for m in (missing or [])))


def level_chart(df: pd.DataFrame, *, order: list[str], title: str, labels: dict[str, str]) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("department:N", title=labels["department"]),
            y=alt.Y("patients:Q", title=labels["patients"]),
            color=alt.Color("level_label:N", title=labels["level"],
                            sort=[level_label(lv) for lv in order]),
            tooltip=[alt.Tooltip("department:N", title=labels["department"]),
                     alt.Tooltip("level_label:N", title=labels["level"]),
                     alt.Tooltip("patients:Q", title=labels["patients"])],
        )
        .properties(title=title, height=320)
    )
    return chart
