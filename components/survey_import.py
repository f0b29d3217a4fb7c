"""The Import page's survey-csv section: pick a saved column mapping or build one from the file's columns, save it,
validate it against the file, then import with the same service as `manage.py import --format survey-csv`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from components import data
from components import satisfaction_data as sd
from components.export_buttons import data_table
from components.runtime import lang, settings_or_stop, tr
from queries import satisfaction as sq
from services import clock, import_mappings, surveys
from services.auth import CurrentUser
from services.errors import UserError
from services.importers import survey_csv
from services.importers.base import ImportOptions
from services.importers.runner import run_import

NEW = "new"
NONE = ""
# Roles of a column in the file besides the questionnaire's items (see services/importers/survey_csv.py).
ROLES = ("respondent", "patient_card", "department", "doctor", "channel", "comment")
_TIME_HINTS = ("timestamp", "time", "date", "submitted", "时间", "日期", "提交")


def _error(exc: UserError) -> None:
    st.error(tr(exc.key, **exc.params))


def _guess_time(header: list[str]) -> int:
    for i, h in enumerate(header):
        if any(hint in h.lower() for hint in _TIME_HINTS):
            return i
    return 0


def _builder(user: CurrentUser, header: list[str], templates: pd.DataFrame) -> dict[str, Any]:
    """Widgets that build a mapping from the uploaded file's columns; returns the mapping's body."""
    none_label = tr("survey_import.page.none")
    column_options = [NONE, *header]

    def col_label(c: str) -> str:
        return none_label if c == NONE else c

    active = templates[templates["status"] == "active"].drop_duplicates("code")
    titles = dict(zip(active["code"], active["title"], strict=True))
    codes = sorted(titles, key=lambda c: (c != "satisfaction", c))
    if not codes:
        st.info(tr("satisfaction.no_templates"))
        return {}
    c1, c2, c3 = st.columns(3)
    code = c1.selectbox(tr("satisfaction.questionnaire"), codes, format_func=titles.__getitem__, key="simp_q")
    source = c2.text_input(tr("survey_import.page.source"), value="survey-csv", max_chars=32, key="simp_source",
                           help=tr("survey_import.page.source_help"))
    orders = {o: tr(f"survey_import.page.order_{o}") for o in ("mdy", "dmy")}
    date_order = c3.radio(tr("survey_import.page.date_order"), list(orders), horizontal=True, key="simp_order",
                          format_func=orders.__getitem__)
    st.markdown(f"**{tr('survey_import.page.columns')}**")
    columns: dict[str, str] = {}
    columns["submitted_at"] = st.selectbox(tr("survey_import.page.role.submitted_at"), header,
                                           index=_guess_time(header), key="simp_col_submitted_at")
    cols = st.columns(3)
    for i, role in enumerate(ROLES):
        columns[role] = cols[i % 3].selectbox(tr(f"survey_import.page.role.{role}"), column_options,
                                              format_func=col_label, key=f"simp_col_{role}")
    d1, d2 = st.columns(2)
    channels = {NONE: none_label, **{c: tr(f"satisfaction.channel.{c}") for c in surveys.CHANNELS}}
    channel = d1.selectbox(tr("survey_import.page.fixed_channel"), list(channels), key="simp_channel",
                           format_func=channels.__getitem__)
    department = d2.text_input(tr("survey_import.page.fixed_department"), max_chars=32, key="simp_department",
                               help=tr("survey_import.page.fixed_department_help"))
    open_recovery = st.checkbox(tr("survey_import.page.open_recovery"), value=True, key="simp_recovery")
    st.markdown(f"**{tr('survey_import.page.items')}**")
    with data.read() as conn:
        items = sq.latest_items(conn=conn, code=code, lang=lang())
    mapped_items: dict[str, str] = {}
    item_cols = st.columns(2)
    for i, (item_code, text, required) in enumerate(items):
        label = f"{text} *" if required else text
        mapped_items[item_code] = item_cols[i % 2].selectbox(label, column_options, format_func=col_label,
                                                        key=f"simp_item_{code}_{item_code}")
    draft = import_mappings.MappingDraft(
        questionnaire=code, source=source, columns=columns, items=mapped_items, header=header,
        channel=channel or None, department=department.strip() or None, date_order=date_order,
        open_recovery=open_recovery)
    body = draft.to_body()
    e1, e2 = st.columns([3, 1])
    name = e1.text_input(tr("survey_import.page.save_name"), max_chars=64, key="simp_name")
    if e2.button(tr("survey_import.page.save"), key="simp_save"):
        try:
            with data.write() as s:
                import_mappings.save_mapping(s, name=name, body=body, user=user,
                                             now=clock.now(settings_or_stop().timezone), header=header)
        except UserError as exc:
            _error(exc)
        else:
            st.success(tr("survey_import.page.saved", name=name.strip()))
    return body


def section(user: CurrentUser) -> None:
    files = st.file_uploader(tr("survey_import.page.files"), accept_multiple_files=True, type=["csv", "txt"],
                             key="simp_files")
    header: list[str] | None = None
    if files:
        try:
            header = survey_csv.read_header(files[0].getvalue())
        except UserError as exc:
            _error(exc)
            return
    with data.read() as conn:
        saved = sq.saved_mappings(conn=conn)
        templates = sq.questionnaire_list(conn=conn, lang=lang())
    builtins = import_mappings.builtin_mappings()
    labels = {f"builtin:{k}": tr("survey_import.page.builtin", name=k) for k in builtins}
    labels.update({f"saved:{k}": tr("survey_import.page.saved_choice", name=k) for k in saved})
    labels[NEW] = tr("survey_import.page.new")
    pick = st.selectbox(tr("survey_import.page.mapping"), list(labels), format_func=labels.__getitem__,
                        key="simp_pick")
    if pick == NEW:
        if header is None:
            st.info(tr("survey_import.page.upload_first"))
            return
        body = _builder(user, header, templates)
        if not body:
            return
    else:
        kind, _, name = pick.partition(":")
        body = builtins[name] if kind == "builtin" else saved[name]
        with st.expander(tr("survey_import.page.show_mapping")):
            st.json(body)

    # Validate before anything is imported: a mapping pointing at a questionnaire, item, department or column
    # that is not there is refused here with the reason.
    try:
        with data.write() as s:
            mapping = survey_csv.validate_mapping(s, body, header=header)
    except UserError as exc:
        _error(exc)
        return
    if header is None:
        st.info(tr("survey_import.page.upload_to_import"))
        return
    st.success(tr("survey_import.page.mapping_ok", items=len(mapping.items), file=files[0].name if files else ""))
    c1, c2 = st.columns(2)
    strict = c1.checkbox(tr("import.page.strict"), help=tr("import.page.strict_help"), key="simp_strict")
    dry_run = c2.checkbox(tr("import.page.dry_run"), key="simp_dry")
    if not st.button(tr("import.page.run"), type="primary", key="simp_run"):
        return
    assert files
    with tempfile.TemporaryDirectory(prefix="careloop-survey-") as tmp:
        paths = []
        for up in files:
            target = Path(tmp) / Path(up.name).name
            target.write_bytes(up.getvalue())
            paths.append(target)
        options = ImportOptions(strict=strict, dry_run=dry_run, mapping=dict(body), actor_id=user.id,
                                actor=user.username)
        with data.write() as s:
            result = run_import(s, paths, fmt="survey-csv", options=options)
    sd.clear()
    c1, c2, c3 = st.columns(3)
    c1.metric(tr("import.page.imported"), result.imported, border=True)
    c2.metric(tr("import.page.skipped"), result.skipped, border=True)
    c3.metric(tr("import.page.rejected"), len(result.rejected), border=True)
    if dry_run:
        st.info(tr("import.page.dry_run_note"))
    if result.rejected:
        data_table(pd.DataFrame(
            [(Path(r.file).name, r.location, tr(r.reason_key, **r.params)) for r in result.rejected],
            columns=[tr("import.page.col.file"), tr("import.page.col.location"), tr("import.page.col.reason")],
        ), name="survey_import_rejections", caption=False,
            description=tr("reports.table_rows", table=tr("import.page.rejected"), n=len(result.rejected)))
    else:
        st.success(tr("import.page.all_good"))
