"""Benchmark: seed N demo patients (default 1,000,000) into a throwaway PostgreSQL with durable settings.

Usage: python -m bench.seed_bench [N] [--seed S]. Prints the elapsed time and the rows per table, and appends
one JSON line to bench/results/seed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.seed import seed_demo  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "seed.jsonl"
# The test fixtures turn durability off for speed; a benchmark must not, or it measures a different thing.
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# A fixed date keeps runs comparable: the same rows are generated every time.
BENCH_TODAY = date(2026, 1, 1)


def _server_cpu_seconds(datadir: Path) -> float | None:
    """CPU time the PostgreSQL server has used: the postmaster, its live children and those it has reaped
    (backends, parallel index-build workers). Unlike elapsed time it does not depend on other load."""
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
        return round(total / tick, 1)
    except (OSError, ValueError, IndexError):
        return None


def _git_commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patients", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    # A `kill` must still stop the throwaway server: turn SIGTERM into an exception that reaches `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    # The seeder logs how long each index and constraint takes to rebuild: that is where the time goes.
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)

    server = start_postgres(settings=DURABLE)
    try:
        url = server.create_database("careloop_bench")
        engine = make_engine(url)
        upgrade(engine)
        version = server.psql("SHOW server_version").strip()
        load_start = os.getloadavg()[0]
        started = time.perf_counter()
        cpu_started = time.process_time()
        marks: dict[str, float] = {}

        def progress(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            print(f"  {done:>9,} / {total:,} patients written  {elapsed:7.1f} s", file=sys.stderr, flush=True)
            if done == total:
                marks.setdefault("rows_loaded_s", round(elapsed, 1))

        counts = seed_demo(engine, patients=args.patients, seed=args.seed, today=BENCH_TODAY,
                           progress=progress)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        db_size = server.psql("SELECT pg_database_size(current_database())", "careloop_bench").strip()
        server_cpu = _server_cpu_seconds(server.datadir)
        engine.dispose()
    finally:
        server.stop()

    total_rows = sum(counts.values())
    print(f"seeded {args.patients:,} patients in {elapsed:.1f} s ({elapsed / 60:.1f} min), "
          f"{total_rows:,} rows, PostgreSQL {version}")
    print(f"CPU: seeder {cpu:.0f} s, PostgreSQL {server_cpu} s; load average {load_start:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end ({os.cpu_count()} CPUs)")
    for table, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {table:<24} {n:>12,}")
    record = {
        "at": datetime.now().isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "patients": args.patients,
        "seed": args.seed,
        "today": BENCH_TODAY.isoformat(),
        "seconds": round(elapsed, 1),
        "rows_loaded_seconds": marks.get("rows_loaded_s"),
        "python_cpu_seconds": round(cpu, 1),
        "postgres_cpu_seconds": server_cpu,
        "rows": counts,
        "total_rows": total_rows,
        "database_bytes": int(db_size) if db_size.isdigit() else None,
        "postgres": version,
        "postgres_settings": DURABLE,
        "cpus": os.cpu_count(),
        "loadavg_at_start": round(load_start, 2),
        "loadavg_at_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
