"""`manage.py report patient|quality`: the same PDFs the app downloads, written to a file and audited."""

from __future__ import annotations

import getpass
import os
import sys
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

import i18n
from config import ConfigError, Settings, database_url, load_settings
from db.engine import transaction
from queries import report_data
from services import clock, topbox_rollup
from services.errors import UserError
from services.exports import record_report

LANGS = {"zh": "zh_CN", "zh_CN": "zh_CN", "zh-CN": "zh_CN", "en": "en"}


def cli_settings() -> Settings:
    """Settings without requiring the web app's cookie key: the command line signs no cookies."""
    try:
        return load_settings()
    except ConfigError:
        return Settings(database_url=database_url(), demo=False, cookie_key="",
                        institution_name=os.environ.get("CARELOOP_INSTITUTION_NAME", "Careloop"),
                        logo_path=os.environ.get("CARELOOP_LOGO_PATH") or None,
                        timezone=os.environ.get("CARELOOP_TIMEZONE", "Asia/Shanghai"))


def _who(out: str) -> dict[str, str]:
    """The command line has no signed-in user: the audit row names the operating-system account and the file."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        account = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return {"os_user": account, "out": str(Path(out).resolve())}


def _write(out: str, data: bytes) -> None:
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def report_patient(engine: Engine, *, card_no: str, out: str, lang: str) -> int:
    from reports.patient_report import build_patient_report

    settings = cli_settings()
    now = clock.now(settings.timezone)
    try:
        with transaction(engine) as s:
            pdf = build_patient_report(s, card_no=card_no, lang=lang, now=now, settings=settings)
            patient = report_data.find_patient(conn=s, card_no=card_no, lang=lang)
            record_report(s, None, kind="patient_report", filter_desc=f"card {card_no}",
                          patient_id=patient.id if patient else None, card_no=card_no, lang=lang,
                          extra=_who(out))
            _write(out, pdf)
    except UserError as exc:
        print(i18n.t(exc.key, lang, **exc.params), file=sys.stderr)
        return 1
    print(f"wrote {out} ({len(pdf):,} bytes)")
    return 0


def report_quality(engine: Engine, *, date_from: date, date_to: date, department: str | None, out: str,
                   lang: str) -> int:
    from reports.quality_report import build_quality_report

    if date_from > date_to:
        print(i18n.t("reports.bad_period", lang, start=date_from.isoformat(), end=date_to.isoformat()),
              file=sys.stderr)
        return 2
    settings = cli_settings()
    now = clock.now(settings.timezone)
    try:
        with transaction(engine) as s:
            topbox_rollup.refresh(s)  # its own short transaction: survey submissions wait for it, not the PDF
        with transaction(engine) as s:
            conn = s.connection()
            dept_id = None
            if department:
                found = report_data.department_by_code(conn=conn, code=department, lang=lang)
                if found is None:
                    raise UserError("reports.unknown_department", code=department)
                dept_id = found[0]
            pdf = build_quality_report(conn, date_from=date_from, date_to=date_to, department_id=dept_id, lang=lang,
                                       now=now, settings=settings)
            record_report(s, None, kind="quality_report",
                          filter_desc=f"{date_from.isoformat()}..{date_to.isoformat()} "
                                      f"{department.strip().upper() if department else 'all departments'}",
                          lang=lang, extra=_who(out))
            _write(out, pdf)
    except UserError as exc:
        print(i18n.t(exc.key, lang, **exc.params), file=sys.stderr)
        return 1
    print(f"wrote {out} ({len(pdf):,} bytes)")
    return 0
