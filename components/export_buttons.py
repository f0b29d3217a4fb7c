"""CSV and Excel download buttons for a table: the file holds what the table shows, with the filter's
description, and each download writes an audit row (who, what, filter, rows) when it happens."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from components import data
from components.navigation import current_user
from components.runtime import tr
from db.engine import transaction
from reports.tables import file_name, to_csv_bytes, to_xlsx_bytes
from services.auth import CurrentUser
from services.exports import record_export

CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _deferred(engine: Engine, user: CurrentUser | None, *, kind: str, description: str, rows: int, fmt: str,
              build: Callable[[], bytes]) -> Callable[[], bytes]:
    """Runs on click, outside the script run: build the file, then audit it in its own transaction."""

    def run() -> bytes:
        payload = build()
        with transaction(engine) as session:
            record_export(session, user, kind, description, rows, fmt=fmt)
        return payload

    return run


def export_buttons(df: pd.DataFrame, *, name: str, description: str, key: str | None = None) -> None:
    """Two buttons side by side; `name` is the table's kind ("nps_by_month"), `description` the filter's."""
    user = current_user()
    engine = data.engine()
    frame = df.copy()
    rows = len(frame)
    key = key or f"export_{name}"
    col_csv, col_xlsx, _ = st.columns([1, 1, 4])
    help_text = tr("reports.export_help", description=description)
    col_csv.download_button(
        tr("reports.csv"), key=f"{key}_csv", help=help_text, mime=CSV_MIME, on_click="ignore",
        file_name=file_name(name, description, "csv"), icon=":material/download:",
        data=_deferred(engine, user, kind=name, description=description, rows=rows, fmt="csv",
                       build=lambda: to_csv_bytes(frame, description)))
    col_xlsx.download_button(
        tr("reports.xlsx"), key=f"{key}_xlsx", help=help_text, mime=XLSX_MIME, on_click="ignore",
        file_name=file_name(name, description, "xlsx"), icon=":material/table_view:",
        data=_deferred(engine, user, kind=name, description=description, rows=rows, fmt="xlsx",
                       build=lambda: to_xlsx_bytes(frame, description, sheet=name)))
