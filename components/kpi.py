"""KPI cards: a number, its label, and the help text that says how it is computed."""

from __future__ import annotations

import streamlit as st


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def cards(items: list[tuple[str, str, str]]) -> None:
    """items: (label, value, help) per card, laid out in one row."""
    for col, (label, value, help_text) in zip(st.columns(len(items)), items, strict=True):
        col.metric(label, value, help=help_text, border=True)
