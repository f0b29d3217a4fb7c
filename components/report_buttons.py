"""Download buttons for the PDF reports; the PDF is built (and the read audited) only when clicked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import streamlit as st
from sqlalchemy import Engine

from components import data
from components.runtime import lang, settings_or_stop, tr
from config import Settings
from db.engine import transaction
from queries import report_data
from queries.filters import DataScope
from reports.batch import build_batch_with_result, default_workers
from reports.patient_report import build_patient_report
from reports.quality_report import build_quality_report
from reports.tables import file_name
from services import clock, topbox_rollup
from services.auth import CurrentUser
from services.exports import record_report

PDF_MIME = "application/pdf"


def patient_report_pdf(engine: Engine, *, card_no: str, user: CurrentUser | None, lang: str,
                       settings: Settings) -> bytes:
    """Build one patient's report and audit the read in the same transaction."""
    with transaction(engine) as session:
        pdf = build_patient_report(session, card_no=card_no, lang=lang, now=clock.now(settings.timezone),
                                   settings=settings)
        patient = report_data.find_patient(conn=session, card_no=card_no, lang=lang)
        record_report(session, user, kind="patient_report", filter_desc=f"card {card_no}",
                      patient_id=patient.id if patient else None, card_no=card_no, lang=lang)
    return pdf


def _deferred_patient(engine: Engine, card_no: str, user: CurrentUser | None, language: str,
                      settings: Settings) -> Callable[[], bytes]:
    return lambda: patient_report_pdf(engine, card_no=card_no, user=user, lang=language, settings=settings)


def patient_report_button(card_no: str, user: CurrentUser | None) -> None:
    """The 360° view's "Download health report" button, in the language of the screen."""
    settings = settings_or_stop()
    language = lang()
    st.download_button(
        tr("reports.download_patient"), key=f"patient_report_{card_no}", help=tr("reports.download_patient_help"),
        mime=PDF_MIME, on_click="ignore", icon=":material/picture_as_pdf:",
        file_name=file_name("health-report", card_no, "pdf"),
        data=_deferred_patient(data.engine(), card_no, user, language, settings))


def quality_report_pdf(engine: Engine, *, date_from: date, date_to: date, department_id: int | None,
                       user: CurrentUser | None, lang: str, settings: Settings, scope: DataScope,
                       description: str) -> bytes:
    with transaction(engine) as session:
        topbox_rollup.refresh(session)  # its own short transaction: survey submissions wait for it, not the PDF
    with transaction(engine) as session:
        pdf = build_quality_report(session.connection(), date_from=date_from, date_to=date_to,
                                   department_id=department_id, lang=lang, now=clock.now(settings.timezone),
                                   settings=settings, scope=scope)
        record_report(session, user, kind="quality_report", filter_desc=description, lang=lang)
    return pdf


def quality_report_button(*, date_from: date, date_to: date, department_id: int | None, user: CurrentUser,
                          language: str, scope: DataScope, description: str) -> None:
    settings = settings_or_stop()
    engine = data.engine()
    st.download_button(
        tr("reports.page.download_quality"), key="quality_report_download", type="primary",
        help=tr("reports.page.download_quality_help"), mime=PDF_MIME, on_click="ignore",
        icon=":material/picture_as_pdf:", file_name=file_name("quality-summary", description, "pdf"),
        data=lambda: quality_report_pdf(engine, date_from=date_from, date_to=date_to, department_id=department_id,
                                        user=user, lang=language, settings=settings, scope=scope,
                                        description=description))


def segment_cards(*, scope: DataScope, department_id: int | None, tag_code: str | None, limit: int) -> list[str]:
    settings = settings_or_stop()
    with data.read() as conn:
        return report_data.segment_cards(conn=conn, scope=scope, department_id=department_id, tag_code=tag_code,
                                         as_of=clock.now(settings.timezone), limit=limit)


def tag_options() -> list[tuple[str, str]]:
    with data.read() as conn:
        return report_data.open_tag_codes(conn=conn, lang=lang())


def build_segment_zip(*, card_nos: list[str], user: CurrentUser, language: str, description: str) -> bytes:
    """Build the zip in this run with a progress bar, then audit it (one row for the batch, naming its size)."""
    settings = settings_or_stop()
    engine = data.engine()
    bar = st.progress(0.0, text=tr("reports.page.progress", done=0, total=len(card_nos)))

    def show(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=tr("reports.page.progress", done=done, total=total))

    payload, result = build_batch_with_result(engine, card_nos=card_nos, lang=language,
                                              now=clock.now(settings.timezone), settings=settings, progress=show,
                                              workers=default_workers(len(card_nos)))
    with transaction(engine) as session:
        record_report(session, user, kind="patient_report_batch", filter_desc=description, lang=language,
                      patients=result.written)
        # Each report in the zip is a read of that patient's record: one row per patient, naming the batch.
        ids = report_data.patient_ids(conn=session, card_nos=result.cards)
        for card in result.cards:
            record_report(session, user, kind="patient_report", filter_desc=f"batch: {description}",
                          patient_id=ids.get(card), card_no=card, lang=language)
    return payload
