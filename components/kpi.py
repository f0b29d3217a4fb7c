"""KPI cards: a number, its label, and the help text that says how it is computed."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def fmt_num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def cards(items: Sequence[tuple[str, str, str] | tuple[str, str, str, str]]) -> None:
    """items: (label, value, help) per card, laid out in one row, or (label, value, help, note) where the note is a
    small grey line under the value: a card five to a row is narrow, and a long value is cut off with "…"."""
    for col, item in zip(st.columns(len(items)), items, strict=True):
        label, value, help_text = item[:3]
        note = item[3] if len(item) > 3 else None
        col.metric(label, value, delta=note, delta_color="off", delta_arrow="off", help=help_text, border=True,
                   height="stretch")  # cards in a row stay the same height when only some have a note
