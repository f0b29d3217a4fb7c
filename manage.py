"""Careloop command line: schema, demo data and users (`python manage.py --help`).

Exit status: 0 success, 1 some input was rejected (and reported), 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import OperationalError

import i18n
from config import ConfigError, database_url
from db.engine import make_engine, transaction, vacuum_analyze
from db.models import ROLES, Patient
from services import clock
from services.errors import UserError

LANG = "zh_CN" if os.environ.get("LANG", "").startswith("zh") else "en"
# After a daily run that wrote this many risk rows and tag changes, the job vacuums what it wrote (db.engine).
VACUUM_AFTER_ROWS = 10_000


def _engine() -> Engine:
    return make_engine(database_url())


def _progress(label: str) -> Callable[[int, int], None]:
    """A one-line progress bar on a terminal; silent when output is piped (CI, cron)."""
    started = time.monotonic()
    if not sys.stderr.isatty():
        return lambda done, total: None

    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / max(time.monotonic() - started, 1e-6)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} ({rate:,.0f}/s)")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def cmd_init_db(args: argparse.Namespace) -> int:
    from db.catalogue import ensure_reference_data
    from db.migrate import upgrade
    from services.questionnaires import ensure_builtin_questionnaires

    engine = _engine()
    upgrade(engine)
    with transaction(engine) as s:
        ensure_reference_data(s)
        ensure_builtin_questionnaires(s)  # intake form, PHQ-9, GAD-7 (satisfaction comes from the catalogue)
    print(f"schema is at head; reference data loaded ({_safe_url()})")
    return 0


def _rebuild_nps_rollup(engine: Engine) -> None:
    """Bulk loads bypass the services: fold their survey responses and follow-up tasks into the dashboard
    rollups (dashboards stay exact without it, but read the raw tables until then)."""
    from services import followup_rollup, nps_rollup

    with transaction(engine) as s:
        nps_rollup.rebuild(s)
        followup_rollup.rebuild(s)


def cmd_seed_demo(args: argparse.Namespace) -> int:
    if args.patients < 1:
        print("--patients must be at least 1", file=sys.stderr)
        return 2
    from db.seed import SeedError, seed_demo

    engine = _engine()
    started = time.monotonic()
    try:
        counts = seed_demo(engine, patients=args.patients, seed=args.seed,
                           today=args.today or clock.today(), progress=_progress("seed-demo"))
    except SeedError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    _rebuild_nps_rollup(engine)
    elapsed = time.monotonic() - started
    for table, n in counts.items():
        print(f"{table:28s} {n:>12,}")
    print(f"seeded {args.patients:,} patients in {elapsed:.1f} s")
    return 0


def cmd_prepare_demo(args: argparse.Namespace) -> int:
    """What `make run` does before starting the app: migrate, seed once, fresh demo passwords."""
    from db.seed import seed_demo
    from services.demo import reset_demo_users

    cmd_init_db(args)
    engine = _engine()
    with engine.connect() as conn:
        has_patients = conn.execute(select(func.count()).select_from(Patient)).scalar_one() > 0
    with transaction(engine) as s:
        logins = reset_demo_users(s, now=clock.now())
    if not has_patients:
        print("loading demo data (first run) ...")
        seed_demo(engine, patients=args.patients, seed=args.seed, today=clock.today(),
                  progress=_progress("seed-demo"))
        _rebuild_nps_rollup(engine)
        # The daily job once, so the demo opens with what a running site has: risk levels, tags and the
        # segments they drive, today's reminders and survey invitations.
        print("running the daily job once (run-automation) ...")
        cmd_run_automation(argparse.Namespace(as_of=None, lookback_days=7))
    print("\nDemo logins (new passwords on every `make run`):")
    for login in logins:
        print(f"  {login.role:8s}  username: {login.username:8s}  password: {login.password}")
    print()
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    from services.auth import create_user

    password = os.environ.get("CARELOOP_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            print("no terminal to ask for a password: set CARELOOP_PASSWORD", file=sys.stderr)
            return 2
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            print("the passwords differ", file=sys.stderr)
            return 1
    try:
        with transaction(_engine()) as s:
            create_user(s, username=args.username, password=password, role=args.role,
                        department_code=args.department, display_name=args.name, now=clock.now(),
                        actor="manage.py")
    except UserError as exc:
        print(i18n.t(exc.key, LANG, **exc.params), file=sys.stderr)
        return 1
    print(f"user {args.username} created with role {args.role}")
    return 0


def _load_mapping(path: str | None) -> dict[str, object] | None:
    import json
    import tomllib
    from pathlib import Path

    if not path:
        return None
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a mapping file holds one object of column names")
    return data


def _saved_mapping(name: str) -> dict[str, object] | None:
    from queries.satisfaction import saved_mappings

    with _engine().connect() as conn:
        found = saved_mappings(conn=conn).get(name)
    return dict(found) if found is not None else None


def cmd_import(args: argparse.Namespace) -> int:
    """Import files or folders; prints the counts and every rejection; exit 1 when something was rejected."""
    from pathlib import Path

    from services.importers.base import ImportOptions
    from services.importers.runner import run_import

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        # --mapping NAME (not a file): a mapping saved from the Import page.
        mapping = (_saved_mapping(args.mapping) if args.mapping and not Path(args.mapping).exists() else None) \
            or _load_mapping(args.mapping)
    except (OSError, ValueError) as exc:
        print(f"cannot read the mapping file {args.mapping}: {exc}", file=sys.stderr)
        return 2
    options = ImportOptions(strict=args.strict, dry_run=args.dry_run, mapping=mapping, actor="manage.py")
    with transaction(_engine()) as s:
        result = run_import(s, [Path(p) for p in args.paths], fmt=args.format, options=options,
                            progress=_progress("import"))
    label = " (dry run, nothing written)" if args.dry_run else ""
    print(f"imported {result.imported}  updated {result.updated}  skipped {result.skipped}  "
          f"rejected {len(result.rejected)}{label}")
    for r in result.rejected:
        print(f"  {r.file}: {r.location}: {i18n.t(r.reason_key, LANG, **r.params)}")
    return 1 if result.rejected else 0


def _export_patients(conn: Connection, out: str, fmt: str, full: bool) -> int:
    from pathlib import Path

    from queries.patients import EXPORT_COLUMNS, export_patients
    from reports.patient_exports import masked_patients, write_table

    batches = masked_patients(export_patients(conn=conn), phone_col=EXPORT_COLUMNS.index("phone"),
                              id_col=EXPORT_COLUMNS.index("id_number"), full=full)
    return write_table(Path(out), fmt, EXPORT_COLUMNS, batches, sheet="patients")


def _export_observations(conn: Connection, out: str, fmt: str, full: bool) -> int:
    from pathlib import Path

    from queries.indicators import EXPORT_COLUMNS, export_observations
    from reports.patient_exports import write_table

    return write_table(Path(out), fmt, EXPORT_COLUMNS, export_observations(conn=conn), sheet="observations")


# Other areas add their kinds here (KIND -> writer(conn, out, fmt, full) returning the row count). Kinds with a
# period (followups, interventions, nps, satisfaction) live in reports/export_cli.py with --from/--to/--department.
EXPORTS: dict[str, Callable[[Connection, str, str, bool], int]] = {
    "patients": _export_patients,
    "observations": _export_observations,
}


def cmd_export(args: argparse.Namespace) -> int:
    """export KIND --format csv|xlsx --out FILE: options checked first, file written whole or not at all, audited."""
    from reports.export_cli import ExportRequest, run_export

    req = ExportRequest(kind=args.kind, fmt=args.format, out=args.out, date_from=args.date_from,
                        date_to=args.date_to, by=args.by, department=args.department, unmasked=args.unmasked)
    try:
        result = run_export(_engine(), req, writers=EXPORTS, lang=LANG, today=clock.today())
    except UserError as exc:
        print(i18n.t(exc.key, LANG, **exc.params), file=sys.stderr)
        return 2
    print(i18n.t("reports.cli.done", LANG, n=f"{result.rows:,}", kind=args.kind, out=args.out,
                 filter=result.description))
    return 0


def cmd_run_automation(args: argparse.Namespace) -> int:
    """The daily follow-up job: open the tasks whose triggers fired up to --as-of; idempotent."""
    from services.followup import ensure_builtin_plans, run_automation

    as_of = args.as_of or clock.today()
    # Risk first (the "high CVD risk" tag reads it), then tags (follow-up triggers and advice read them).
    from datetime import datetime as _dt
    from datetime import time as _time

    from services import advice as advice_svc
    from services import risk as risk_svc
    from services import tags as tags_svc

    # The end of the day for a past --as-of; for today, now: a tag or risk stamped later than now would be
    # invisible to everything that asks "what holds now" (the 360 view, reports) until midnight.
    care_at = min(clock.now(), _dt.combine(as_of, _time(23, 59, 59)))
    with transaction(_engine()) as s:
        tags_svc.ensure_builtin_rules(s)
        advice_svc.ensure_builtin_advice(s)
        assessed = risk_svc.assess_all(s, as_of=care_at)
        tagged = tags_svc.apply_rules(s, as_of=care_at)
    print(f"{'risk assessments stored':32s} {assessed.stored:>10,} ({assessed.unchanged:,} unchanged, "
          f"{assessed.patients:,} patients)")
    print(f"{'tags opened / ended':32s} {tagged.added:>10,} / {tagged.ended:,} ({tagged.rules} rules)")
    if assessed.stored + tagged.added + tagged.ended > VACUUM_AFTER_ROWS:
        vacuum_analyze(_engine(), ["risk_assessments", "patient_tags", "observation_latest"])
    with transaction(_engine()) as s:
        ensure_builtin_plans(s)
        result = run_automation(s, as_of=as_of, lookback_days=args.lookback_days, now=clock.now())
        from services.messaging.queue import queue_reminders

        reminders = queue_reminders(s, as_of=as_of, now=clock.now())
    for code, n in sorted(result.opened.items()):
        print(f"{code:32s} {n:>10,} tasks opened")
    print(f"{'reminders queued':32s} {reminders['total']:>10,} "
          f"({', '.join(f'{k} {v:,}' for k, v in reminders.items() if k not in ('total', 'seconds'))})")
    # Satisfaction: invite after finished visits and discharges (one invitation per encounter, consent checked).
    from services import invitations
    from services import questionnaires as questionnaires_svc

    invite_at = min(clock.now(), _dt.combine(as_of, _time(23, 59, 59)))
    with transaction(_engine()) as s:
        questionnaires_svc.ensure_builtin_questionnaires(s)
        invited = invitations.invite_after_encounters(s, as_of=as_of, now=invite_at,
                                                      lookback_days=args.lookback_days)
    print(f"{'survey invitations':32s} {invited.invited:>10,}")
    print(f"as of {as_of.isoformat()}: {result.total_opened:,} tasks opened, {result.overdue:,} overdue, "
          f"{result.seconds:.1f} s")
    return 0


def cmd_send_messages(args: argparse.Namespace) -> int:
    """Deliver the queued messages that are due (the daily schedule runs it after run-automation)."""
    from config import load_settings
    from db.engine import session_factory
    from services.messaging import adapters
    from services.messaging.sender import send_due

    settings = load_settings()
    engine = make_engine(settings.database_url)
    counts = send_due(session_factory(engine), now=args.now or clock.now(settings.timezone),
                      adapters=adapters.from_settings(settings))
    print(f"claimed {counts.claimed:,}: sent {counts.sent:,}, retry later {counts.retried:,}, "
          f"failed {counts.failed:,}, cancelled {counts.cancelled:,}, deferred {counts.deferred:,} "
          f"({counts.seconds:.1f} s)")
    for reason, n in sorted(counts.reasons.items()):
        print(f"  {reason:40s} {n:>8,}")
    return 0


def _datetime(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date and time (YYYY-MM-DDTHH:MM): {value!r}") from exc


def _safe_url() -> str:
    url = database_url()
    return url.split("@", 1)[-1] if "@" in url else url


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def cmd_report(args: argparse.Namespace) -> int:
    """`report patient CARD_NO` / `report quality --from --to`: the PDFs the app downloads, audited."""
    from reports.cli import LANGS, report_patient, report_quality

    lang = LANGS[args.lang]
    if args.report == "patient":
        return report_patient(_engine(), card_no=args.card_no, out=args.out, lang=lang)
    return report_quality(_engine(), date_from=args.date_from, date_to=args.date_to, department=args.department,
                          out=args.out, lang=lang)


def cmd_backup(args: argparse.Namespace) -> int:
    """`backup FILE`: the whole database as a portable archive (restores on SQLite or PostgreSQL)."""
    from pathlib import Path

    from services.backup import backup

    try:
        summary = backup(_engine(), Path(args.file), now=clock.now(), actor="manage.py",
                         progress=_progress("backup"))
    except UserError as exc:
        print(i18n.t(exc.key, LANG, **exc.params), file=sys.stderr)
        return 2 if exc.key in ("backup.out_is_dir", "backup.no_folder") else 1
    print(i18n.t("backup.done_backup", LANG, path=args.file, rows=f"{summary.total_rows:,}",
                 tables=len(summary.rows), revisions=", ".join(summary.revisions)))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """`restore FILE [--replace]`: replace the whole database with a backup, all or nothing."""
    from pathlib import Path

    from services.backup import restore

    try:
        summary = restore(_engine(), Path(args.file), replace=args.replace, now=clock.now(), actor="manage.py",
                          progress=_progress("restore"))
    except UserError as exc:
        print(i18n.t(exc.key, LANG, **exc.params), file=sys.stderr)
        return 2 if exc.key in ("backup.no_file", "backup.target_not_empty") else 1
    print(i18n.t("backup.done_restore", LANG, path=args.file, created_at=summary.created_at,
                 rows=f"{summary.total_rows:,}", tables=len(summary.rows)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="manage.py", description="Careloop operations.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init-db", help="create or upgrade the schema (Alembic upgrade head)")
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser("seed-demo", help="deterministic demo data in Chinese")
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument("--today", type=_date, default=None, help="the day the data ends (default: today)")
    p.set_defaults(func=cmd_seed_demo)

    p = sub.add_parser("prepare-demo", help="init-db, seed on first run, print fresh demo logins")
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--seed", type=int, default=20260101)
    p.set_defaults(func=cmd_prepare_demo)

    p = sub.add_parser("create-user", help="create a user; password from a prompt or CARELOOP_PASSWORD")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--department", help="department code, e.g. CARD")
    p.add_argument("--name", help="display name")
    p.set_defaults(func=cmd_create_user)
    p = sub.add_parser("import", help="import exam/lab files or folders (Synthea CSV, CSV/Excel, FHIR, HL7 v2)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", default="auto",
                   choices=["auto", "synthea-csv", "csv", "fhir", "hl7v2", "survey-csv"])
    p.add_argument("--mapping", help="column mapping file (JSON or TOML) for csv / survey-csv, or the name of a "
                                     "survey-csv mapping saved on the Import page")
    p.add_argument("--strict", action="store_true", help="a file with any rejected row is not imported at all")
    p.add_argument("--dry-run", action="store_true", help="read and report, write nothing")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("run-automation", help="open the follow-up tasks whose triggers fired (idempotent)")
    p.add_argument("--as-of", type=_date, default=None, help="the day to run for (default: today)")
    p.add_argument("--lookback-days", type=int, default=7,
                   help="also pick up trigger events of this many earlier days (catch-up after a missed run)")
    p.set_defaults(func=cmd_run_automation)

    p = sub.add_parser("send-messages", help="deliver the due reminders and education messages")
    p.add_argument("--now", type=_datetime, default=None, help="site-local time to send as of (default: now)")
    p.set_defaults(func=cmd_send_messages)

    p = sub.add_parser("export", help="export a table as CSV or Excel")
    p.add_argument("kind", help="patients | observations | followups | interventions | nps | satisfaction")
    p.add_argument("--format", default="csv", help="csv (UTF-8 with BOM, opens in Excel) or xlsx")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--unmasked", action="store_true", help="phones and ID numbers in full (audited)")
    p.add_argument("--by", default=None,
                   help="nps / satisfaction: one row per month, quarter or department (default month)")
    p.add_argument("--from", dest="date_from", type=_date, default=None, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", type=_date, default=None, help="last day (YYYY-MM-DD)")
    p.add_argument("--department", default=None, help="department code, e.g. CARD")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("report", help="patient health report or quality summary as PDF")
    reports = p.add_subparsers(dest="report", required=True)
    rp = reports.add_parser("patient", help="the health report of one patient")
    rp.add_argument("card_no")
    rp.add_argument("--out", required=True, help="PDF file to write")
    rp.add_argument("--lang", choices=("zh", "en"), default="zh")
    rp.set_defaults(func=cmd_report)
    rq = reports.add_parser("quality", help="the quality summary of a period")
    rq.add_argument("--from", dest="date_from", type=_date, required=True)
    rq.add_argument("--to", dest="date_to", type=_date, required=True)
    rq.add_argument("--department", help="department code, e.g. CARD")
    rq.add_argument("--out", required=True, help="PDF file to write")
    rq.add_argument("--lang", choices=("zh", "en"), default="zh")
    rq.set_defaults(func=cmd_report)

    p = sub.add_parser("backup", help="whole-database backup to a portable archive (SQLite or PostgreSQL)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="replace the whole database with a backup, all or nothing")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--replace", action="store_true", help="overwrite a database that already holds data")
    p.set_defaults(func=cmd_restore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OperationalError as exc:
        print(f"cannot reach the database at {_safe_url()}: {exc.orig}", file=sys.stderr)
        print("set CARELOOP_DATABASE_URL, or run `python manage.py init-db` first", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"configuration: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
