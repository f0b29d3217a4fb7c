"""A kept PostgreSQL for benchmarks at scale: seed the 1,000,000-patient demo once, then point benches at it.

Seeding a million patients takes minutes; benchmarks that only read it (or add a little) can share one database
instead of seeding their own. The server keeps the durable settings of the other benchmarks.

Usage:
    python -m bench.keepdb start --dir /path/to/pgdir [--port 55432] [--patients 1000000]
        initdb on first use, start the server, migrate, seed when the database has no patients; prints the URL.
    python -m bench.keepdb stop --dir /path/to/pgdir
Benchmarks that accept `--url URL` then run against it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from tests.support.pgserver import find_bindir  # noqa: E402

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# The same fixed date as seed_bench, so the kept database holds the rows that benchmark measured.
BENCH_TODAY = date(2026, 1, 1)
DBNAME = "careloop_bench"


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_as_postgres(), *args], capture_output=True, text=True, check=True)


def url_for(port: int) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DBNAME}"


def start(base: Path, port: int, patients: int) -> str:
    bindir = find_bindir()
    data = base / "data"
    if not data.exists():
        base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
        _run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C.UTF-8")
        opts = {"listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": f"'{base}'",
                "max_connections": "100", "shared_buffers": "512MB", **DURABLE}
        with (data / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in opts.items())
    if not (data / "postmaster.pid").exists():
        _run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "120", "start")
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-Atc"]
    for _ in range(60):
        if subprocess.run([*psql, "SELECT 1"], capture_output=True, check=False).returncode == 0:
            break
        time.sleep(0.5)
    exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DBNAME}'"], capture_output=True,
                            text=True, check=True).stdout.strip()
    if not exists:
        subprocess.run([*psql, f'CREATE DATABASE "{DBNAME}"'], check=True, capture_output=True)
    url = url_for(port)
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            have = conn.execute(text("SELECT count(*) FROM patients")).scalar_one()
        if have == 0:
            from db.catalogue import ensure_reference_data
            from db.seed import seed_demo

            with transaction(engine) as s:
                ensure_reference_data(s)
            started = time.perf_counter()
            seed_demo(engine, patients=patients, today=BENCH_TODAY)
            print(f"seeded {patients:,} patients in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        engine.dispose()
    return url


def stop(base: Path) -> None:
    bindir = find_bindir()
    if (base / "data" / "postmaster.pid").exists():
        _run(str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "stop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "destroy"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=55432)
    parser.add_argument("--patients", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.action == "start":
        print(start(args.dir, args.port, args.patients))
    else:
        stop(args.dir)
        if args.action == "destroy":
            shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
