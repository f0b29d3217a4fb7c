"""Tables with their caption and CSV/Excel download buttons: the file holds what the filter shows (the whole
filtered result when the screen shows one page of it, up to EXPORT_MAX_ROWS), is named after the table and the
filter, and each download writes an audit row (who, which table, which filter) from the button's on_click."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from components import data
from components.navigation import current_user
from components.runtime import settings_or_stop, tr
from reports.tables import file_name, to_csv_bytes, to_xlsx_bytes
from services import clock
from services.auth import CurrentUser
from services.exports import record_export

CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("csv", "xlsx")
# The most rows one download holds: an Excel sheet of 10,000 rows x 20 columns builds in 2-4 s on two busy cores
# (bench/exports_bench.py); a larger extract is a job for `manage.py export`, not for a browser tab.
EXPORT_MAX_ROWS = 10_000
# Where Streamlit keeps a thread's script-run context (see streamlit.runtime.scriptrunner_utils).
_CTX_ATTR = "streamlit_script_run_ctx"

FullResult = Callable[[int], pd.DataFrame]
"""limit -> the whole filtered result (first `limit` rows), shaped, translated and masked like the table."""


def export_frame(df: pd.DataFrame, *, with_index: bool = False) -> pd.DataFrame:
    """The frame as the file holds it: a shown index (a pivot's row labels) becomes the first column."""
    return df.reset_index() if with_index else df.reset_index(drop=True)


def export_bytes(df: pd.DataFrame, description: str, fmt: str, *, sheet: str) -> bytes:
    if fmt == "xlsx":
        return to_xlsx_bytes(df, description, sheet=sheet)
    return to_csv_bytes(df, description)


def _with_session_context(build: Callable[[], bytes]) -> Callable[[], bytes]:
    """Streamlit runs a deferred download on a worker thread without the session; the shaping code reads the
    session's language through tr(), so the worker borrows this run's context while it builds the file."""
    ctx = get_script_run_ctx(suppress_warning=True)

    def run() -> bytes:
        thread = threading.current_thread()
        had = getattr(thread, _CTX_ATTR, None)
        if had is None and ctx is not None:
            setattr(thread, _CTX_ATTR, ctx)
        try:
            return build()
        finally:
            if had is None and ctx is not None:
                setattr(thread, _CTX_ATTR, None)

    return run


def _builder(frame: Callable[[], pd.DataFrame], description: str, fmt: str, sheet: str) -> Callable[[], bytes]:
    return lambda: export_bytes(frame(), description, fmt, sheet=sheet)


def audit_download(user: CurrentUser | None, kind: str, description: str, rows: int, fmt: str,
                   patient_id: int | None, extra: dict[str, Any] | None) -> None:
    """on_click of a download button: one audit row in its own transaction, before the rerun."""
    who = current_user() or user
    with data.write() as session:
        record_export(session, who, kind, description, rows, fmt=fmt, patient_id=patient_id, extra=extra)


def export_buttons(df: pd.DataFrame, *, name: str, description: str, key: str | None = None,
                   full: FullResult | None = None, total: int | None = None, patient_id: int | None = None,
                   with_index: bool = False) -> None:
    """CSV and Excel buttons side by side for a table named `name` ("nps_by_month") under a filter described by
    `description`. Without `full` the file is `df` itself; with it, the file is `full(EXPORT_MAX_ROWS)`, the whole
    filtered result of a paged table (`total`, when known, is how many rows match)."""
    user = current_user()
    key = key or f"export_{name}"
    at = clock.now(settings_or_stop().timezone)
    shown = export_frame(df, with_index=with_index)
    if full is None:
        rows = len(shown)
        extra: dict[str, Any] | None = None

        def frame() -> pd.DataFrame:
            return shown
    else:
        rows = min(total, EXPORT_MAX_ROWS) if total is not None else len(shown)
        extra = {"whole_result": True, "max_rows": EXPORT_MAX_ROWS}
        if total is not None:
            extra["matching"] = int(total)
        fetch = full

        def frame() -> pd.DataFrame:
            return export_frame(fetch(EXPORT_MAX_ROWS), with_index=with_index).head(EXPORT_MAX_ROWS)
        # Say on screen that the file is more than this page, and where it stops.
        if total is not None and total > EXPORT_MAX_ROWS:
            st.caption(tr("reports.export_capped", cap=f"{EXPORT_MAX_ROWS:,}", total=f"{total:,}"))
        elif total is None or total > len(shown):
            st.caption(tr("reports.export_whole", cap=f"{EXPORT_MAX_ROWS:,}"))
    help_text = tr("reports.export_help", description=description)
    columns = st.columns([1, 1, 4])
    for col, fmt, label, mime, icon in ((columns[0], "csv", "reports.csv", CSV_MIME, ":material/download:"),
                                        (columns[1], "xlsx", "reports.xlsx", XLSX_MIME, ":material/table_view:")):
        col.download_button(
            tr(label), key=f"{key}_{fmt}", help=help_text, mime=mime, icon=icon,
            file_name=file_name(name, description, fmt, at=at),
            data=_with_session_context(_builder(frame, description, fmt, name)),
            on_click=audit_download, args=(user, name, description, rows, fmt, patient_id, extra))


def data_table(df: pd.DataFrame, *, name: str, description: str, key: str | None = None, caption: bool = True,
               full: FullResult | None = None, total: int | None = None, patient_id: int | None = None,
               hide_index: bool = True, column_config: dict[str, Any] | None = None) -> None:
    """A table that says what it shows (the filter's description), with its CSV and Excel download buttons.

    `df` is the table as shown: translated headers, masked contacts. A paged table passes `full`, which returns
    the whole filtered result shaped the same way, so the download is the filter's result, not the page."""
    if caption:
        st.caption(description)
    st.dataframe(df, hide_index=hide_index, width="stretch", column_config=column_config)
    export_buttons(df, name=name, description=description, key=key, full=full, total=total, patient_id=patient_id,
                   with_index=not hide_index)
