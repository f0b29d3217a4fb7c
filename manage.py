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
from datetime import date

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

import i18n
from config import database_url
from db.engine import make_engine, transaction
from db.models import ROLES, Patient
from services import clock
from services.errors import UserError

LANG = "zh_CN" if os.environ.get("LANG", "").startswith("zh") else "en"


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

    engine = _engine()
    upgrade(engine)
    with transaction(engine) as s:
        ensure_reference_data(s)
    print(f"schema is at head; reference data loaded ({_safe_url()})")
    return 0


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


def _safe_url() -> str:
    url = database_url()
    return url.split("@", 1)[-1] if "@" in url else url


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OperationalError as exc:
        print(f"cannot reach the database at {_safe_url()}: {exc.orig}", file=sys.stderr)
        print("set CARELOOP_DATABASE_URL, or run `python manage.py init-db` first", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
