"""Import exam and lab reports: upload files, pick the format, see what was imported and every rejected row."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from components import data, survey_import
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import tr
from services.importers.base import ImportOptions
from services.importers.runner import FORMATS, run_import

user = require("import")
st.title(tr("nav.import"))
st.caption(tr("import.page.caption"))
# Survey exports need a column mapping built from the file's own columns: their own section (components/survey_import).
KINDS = {"reports": tr("survey_import.page.kind_reports"), "surveys": tr("survey_import.page.kind_surveys")}
kind = st.radio(tr("survey_import.page.kind"), list(KINDS), format_func=KINDS.__getitem__, horizontal=True,
                key="import_kind")
if kind == "surveys":
    survey_import.section(user)
    st.stop()

# settings (labels resolved now: a format_func may be called again outside this run, in another language)
FORMAT_LABELS = {f: tr(f"import.fmt.{f}") for f in FORMATS}
with st.form("import_form"):
    files = st.file_uploader(tr("import.page.files"), accept_multiple_files=True, key="import_files",
                             type=["csv", "tsv", "xlsx", "json", "ndjson", "hl7", "txt", "zip"])
    c1, c2, c3 = st.columns(3)
    fmt = c1.selectbox(tr("import.page.format"), options=list(FORMATS), format_func=FORMAT_LABELS.__getitem__)
    strict = c2.checkbox(tr("import.page.strict"), help=tr("import.page.strict_help"))
    dry_run = c3.checkbox(tr("import.page.dry_run"))
    mapping_text = st.text_area(tr("import.page.mapping"), help=tr("import.page.mapping_help"), height=80)
    go = st.form_submit_button(tr("import.page.run"), type="primary", key="import_run")

if go:
    mapping = None
    if mapping_text.strip():
        try:
            mapping = json.loads(mapping_text)
            if not isinstance(mapping, dict):
                raise ValueError
        except ValueError:
            st.error(tr("import.page.bad_mapping"))
            st.stop()
    if not files:
        st.warning(tr("import.page.no_files"))
        st.stop()
    bar = st.progress(0.0, text=tr("import.page.running"))
    with tempfile.TemporaryDirectory(prefix="careloop-import-") as tmp:
        paths = []
        for up in files:
            # Keep the uploaded name: Synthea files are recognised by it (patients.csv, observations.csv).
            target = Path(tmp) / Path(up.name).name
            target.write_bytes(up.getvalue())
            paths.append(target)
        if fmt == "synthea-csv" or (fmt == "auto" and any(p.name == "patients.csv" for p in paths)):
            paths = [Path(tmp)] if len(paths) > 1 else paths
        options = ImportOptions(strict=strict, dry_run=dry_run, mapping=mapping, actor_id=user.id,
                                actor=user.username)

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=tr("import.page.progress", done=done, total=total))

        try:
            with data.write() as s:
                result = run_import(s, paths, fmt=fmt, options=options, progress=progress)
        except Exception as exc:  # noqa: BLE001 - the transaction is rolled back: say so instead of a traceback
            bar.empty()
            st.error(tr("import.page.failed", error=type(exc).__name__))
            st.stop()
            raise SystemExit from exc  # unreachable: st.stop() raises
    bar.empty()
    st.cache_data.clear()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(tr("import.page.imported"), result.imported, border=True)
    c2.metric(tr("import.page.updated"), result.updated, border=True)
    c3.metric(tr("import.page.skipped"), result.skipped, border=True)
    c4.metric(tr("import.page.rejected"), len(result.rejected), border=True)
    if dry_run:
        st.info(tr("import.page.dry_run_note"))
    st.session_state["import_rejected"] = [(Path(r.file).name, r.location, r.reason_key, r.params)
                                           for r in result.rejected]
    if not result.rejected:
        st.success(tr("import.page.all_good"))

# The rejected rows of the last import stay on screen (a download reruns the page) until the next import.
rejected = st.session_state.get("import_rejected") or []
if rejected:
    data_table(pd.DataFrame(
        [(name, location, tr(key, **params)) for name, location, key, params in rejected],
        columns=[tr("import.page.col.file"), tr("import.page.col.location"), tr("import.page.col.reason")],
    ), name="import_rejections", caption=False,
        description=tr("reports.table_rows", table=tr("import.page.rejected"), n=len(rejected)))
