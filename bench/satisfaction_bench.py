"""Benchmark: the NPS dashboard (12 months by department) at 200,000 and 2,000,000 survey responses on PostgreSQL.

Usage: python -m bench.satisfaction_bench [--sizes 200000 2000000] [--repeat 20]

Responses are generated here with COPY (no patient seed needed): 11 departments, 60 doctors, 6 channels, spread
over the 12 months before BENCH_TODAY, so the dashboard's window covers every row (the worst case).
Measured, per size:
- cold: the query functions themselves (what a page runs on a Streamlit cache miss), p50/p95 over --repeat runs
  after one warm-up (PostgreSQL's buffer cache is warm; "cold" means no application cache);
- warm: the same call through st.cache_data (a Streamlit cache hit: hash the arguments, unpickle the result).
The COPY load bypasses the services, so nps_rollup.rebuild() folds it into the nps_daily rollup (timed too).
Prints a table and appends one JSON line per size to bench/results/satisfaction.jsonl.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

from db.catalogue import ensure_reference_data  # noqa: E402
from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from queries import satisfaction as sq  # noqa: E402
from queries.filters import DataScope  # noqa: E402
from services import nps_rollup  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "satisfaction.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
BENCH_TODAY = date(2026, 1, 1)
CHANNELS = ("kiosk", "app", "sms", "wechat", "phone", "web")
SCOPE = DataScope("manager", None)
FILTER = sq.SurveyFilter(BENCH_TODAY - timedelta(days=365), BENCH_TODAY)
_ENGINE: dict[str, Engine] = {}


def _git_commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or None


def load(engine: Engine, n: int, *, seed: int = 20260101) -> float:
    """Append n responses with COPY in chunks; returns seconds. NPS mix ~ 55% promoters, 25% passives."""
    rng = random.Random(seed + n)
    with engine.connect() as conn:
        qid = conn.execute(text("SELECT id FROM questionnaires WHERE code = 'satisfaction'")).scalar_one()
        depts = [int(d) for d in conn.execute(text("SELECT id FROM departments ORDER BY id")).scalars()]
        start_ref = int(conn.execute(text("SELECT count(*) FROM survey_responses")).scalar_one())
    doctors = [f"医生{i:02d}" for i in range(60)]
    weights = [2, 1, 1, 1, 2, 3, 5, 10, 15, 25, 35]  # scores 0..10
    first = datetime.combine(BENCH_TODAY - timedelta(days=365), datetime.min.time())
    span = 365 * 86400 - 1
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        chunk = 200_000
        for base in range(0, n, chunk):
            buf = io.StringIO()
            scores = rng.choices(range(11), weights=weights, k=min(chunk, n - base))
            for i, score in enumerate(scores):
                ref = start_ref + base + i
                at = first + timedelta(seconds=rng.randint(0, span))
                buf.write(f"{qid}\t{rng.choice(depts)}\t{rng.choice(doctors)}\t{rng.choice(CHANNELS)}\t"
                          f"{at:%Y-%m-%d %H:%M:%S}\t{score}\tbench\tb{ref}\n")
            buf.seek(0)
            cur.copy_expert(
                "COPY survey_responses (questionnaire_id, department_id, doctor_name, channel, submitted_at, "
                "nps_score, source, source_ref) FROM STDIN", buf)
        raw.commit()
        cur.execute("ANALYZE survey_responses")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def dashboard(engine: Engine) -> dict[str, Any]:
    """What the NPS page asks for with 12 months and all departments: summary, by month, by department."""
    with engine.connect() as conn:
        return {
            "summary": sq.nps_summary(conn=conn, f=FILTER, scope=SCOPE),
            "month": sq.nps_by(conn=conn, f=FILTER, scope=SCOPE, by="month"),
            "department": sq.nps_by(conn=conn, f=FILTER, scope=SCOPE, by="department"),
            "grid": sq.month_by_department(conn=conn, f=FILTER, scope=SCOPE),
        }


@st.cache_data(ttl=300, max_entries=256, show_spinner=False)
def cached_dashboard(scope_key: str, f: sq.SurveyFilter, url: str) -> dict[str, Any]:
    # The same shape as components/satisfaction_data.py: scope key and frozen filter are the cache key.
    return dashboard(_ENGINE[url])


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _p95(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]


def measure(engine: Engine, url: str, repeat: int) -> dict[str, Any]:
    dashboard(engine)  # warm PostgreSQL's buffers and the plan cache, not the application cache
    parts: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for name, fn in {
            "summary": lambda: sq.nps_summary(conn=conn, f=FILTER, scope=SCOPE),
            "by_month": lambda: sq.nps_by(conn=conn, f=FILTER, scope=SCOPE, by="month"),
            "by_department": lambda: sq.nps_by(conn=conn, f=FILTER, scope=SCOPE, by="department"),
            "month_x_department": lambda: sq.month_by_department(conn=conn, f=FILTER, scope=SCOPE),
            # Not in the dashboard set: doctors are not in the rollup, so this one scans survey_responses.
            "by_doctor_raw": lambda: sq.nps_by(conn=conn, f=FILTER, scope=SCOPE, by="doctor"),
        }.items():
            parts[name] = _timed(fn, repeat)
    cold = _timed(lambda: dashboard(engine), repeat)
    st.cache_data.clear()
    cached_dashboard(SCOPE.key, FILTER, url)  # the miss that fills the cache
    warm = _timed(lambda: cached_dashboard(SCOPE.key, FILTER, url), repeat * 5)
    return {
        "cold_p50_ms": statistics.median(cold), "cold_p95_ms": _p95(cold),
        "warm_p50_ms": statistics.median(warm), "warm_p95_ms": _p95(warm),
        "parts_p95_ms": {k: _p95(v) for k, v in parts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[200_000, 2_000_000])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    server = start_postgres(settings=DURABLE)
    rows = []
    try:
        url = server.create_database("careloop_sat_bench")
        engine = make_engine(url)
        _ENGINE[url] = engine
        upgrade(engine)
        with transaction(engine) as s:
            ensure_reference_data(s)
        version = server.psql("SHOW server_version").strip()
        loaded = 0
        for size in sorted(args.sizes):
            secs = load(engine, size - loaded)
            loaded = size
            t0 = time.perf_counter()
            with transaction(engine) as s:
                rollup_rows = nps_rollup.rebuild(s)  # COPY bypasses the service: fold the load into nps_daily
            rebuild_s = time.perf_counter() - t0
            result = measure(engine, url, args.repeat)
            row = {"at": datetime.now().isoformat(timespec="seconds"), "responses": size, "load_s": round(secs, 1),
                   "rebuild_s": round(rebuild_s, 2), "rollup_rows": rollup_rows,
                   "repeat": args.repeat, **result, "postgres": version, "python": platform.python_version(),
                   "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0], "commit": _git_commit()}
            rows.append(row)
            print(f"{size:>10,} responses  load {secs:6.1f} s  rebuild {rebuild_s:5.1f} s ({rollup_rows:,} rows)  "
                  f"load average {row['load_avg']:.1f}", flush=True)
            print(f"{'':14}dashboard cold p50 {row['cold_p50_ms']:7.1f} ms  "
                  f"p95 {row['cold_p95_ms']:7.1f} ms  warm p95 {row['warm_p95_ms']:6.2f} ms", flush=True)
            for k, v in row["parts_p95_ms"].items():
                print(f"{'':14}{k:20s} p95 {v:7.1f} ms", flush=True)
        engine.dispose()
    finally:
        server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
