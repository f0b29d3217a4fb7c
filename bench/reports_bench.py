"""Benchmark: patient health report (one after the first, p50/p95), 1,000 reports in a batch, quality summary.

Usage: python -m bench.reports_bench [PATIENTS] [--runs R] [--batch N] [--workers W] [--url URL [--today D]]
Starts a throwaway durable PostgreSQL (fsync, synchronous_commit and full_page_writes on), loads PATIENTS demo
patients with db.seed.seed_demo (default 20,000: seed_demo runs at roughly 1,000 patients a few seconds here),
adds risk assessments for the first 200 patients (services.risk.assess_all) and one synthetic assessment per
patient, then times:
  - one patient report (with trend charts) for the patient with the most observations, R runs after a warm-up
    (wall and CPU time of this process: the machine is shared, CPU time shows the report's own cost);
  - the same without charts (where the time goes);
  - N reports (default 1,000) in one batch zip over W worker processes (default 2), streamed to a file;
  - the quality summary for the last 12 months, all departments and one department, R runs each.
With --url it seeds nothing and reads an existing database instead (the kept 1,000,000-patient demo, seeded with
today=2026-01-01, the default --today then): the synthetic risk assessments are inserted in the quality summary's
own transaction and rolled back, so the shared database is left as it was. Run it under the shared lock:
  flock /work/bench.lock .venv/bin/python -m bench.reports_bench --url postgresql+psycopg2://...
Prints a table and appends one JSON line to bench/results/reports.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, func, select, text  # noqa: E402

from config import Settings  # noqa: E402
from db.catalogue import ensure_reference_data  # noqa: E402
from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Department, Patient  # noqa: E402
from db.seed import seed_demo  # noqa: E402
from reports import fonts  # noqa: E402
from reports.batch import write_batch  # noqa: E402
from reports.patient_report import build_patient_report  # noqa: E402
from reports.quality_report import build_quality_report  # noqa: E402
from services import topbox_rollup  # noqa: E402
from services.risk import assess_all  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reports.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "jit": "off"}
TODAY = date(2026, 6, 30)
NOW = datetime(2026, 6, 30, 10, 0)
SETTINGS = Settings(database_url="", demo=False, cookie_key="", institution_name="Careloop 健康管理中心")


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    samples, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        samples.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"p50_ms": statistics.median(samples) * 1000, "p95_ms": _p95(samples) * 1000,
            "cpu_p50_ms": statistics.median(cpu) * 1000, "cpu_p95_ms": _p95(cpu) * 1000, "runs": runs}


SYNTHETIC_RISK = text(
    "INSERT INTO risk_assessments (patient_id, model, model_version, assessed_at, score, level, inputs, factors)"
    " SELECT id, 'framingham', 'bench', :at, id % 30,"
    " CASE WHEN id % 10 < 6 THEN 'low' WHEN id % 10 < 9 THEN 'intermediate' ELSE 'high' END,"
    " '{}', '[]' FROM patients")


def seed_own(patients: int) -> tuple[Any, Engine, float]:
    """A throwaway durable server with `patients` demo patients; (server, engine, seconds to seed)."""
    server = start_postgres(settings=DURABLE)
    engine: Engine = make_engine(server.create_database("careloop_reports_bench"))
    upgrade(engine)
    with transaction(engine) as s:
        ensure_reference_data(s)
    started = time.perf_counter()
    seed_demo(engine, patients=patients, seed=20260101, today=TODAY)
    seed_s = time.perf_counter() - started
    print(f"seeded {patients:,} patients in {seed_s:.0f} s", flush=True)
    with transaction(engine) as s:
        ids = list(s.scalars(select(Patient.id).order_by(Patient.id).limit(200)))
        try:
            # Real assessments (with factors) for the patients whose reports are timed.
            assess_all(s, as_of=NOW, patient_ids=ids)
        except Exception as exc:  # noqa: BLE001 - a model bug must not stop the benchmark; noted in the output
            print(f"assess_all failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                  "using synthetic risk rows only", flush=True)
    with transaction(engine) as s:
        # One synthetic assessment per patient so the quality summary's risk distribution works at full scale.
        s.execute(SYNTHETIC_RISK, {"at": datetime(NOW.year, NOW.month, 1, 9)})
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    return server, engine, seed_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("patients", nargs="?", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--url", help="read this database instead of seeding a throwaway one")
    ap.add_argument("--today", type=date.fromisoformat, help="the data's 'today' (default 2026-01-01 with --url)")
    args = ap.parse_args()

    today = args.today or (date(2026, 1, 1) if args.url else TODAY)
    now = datetime.combine(today, datetime.min.time()).replace(hour=10)
    fonts.warm_up()
    server = None
    try:
        if args.url:
            engine = make_engine(args.url)
            seed_s = None
            # Only this area's migration (the top-box rollup), not every branch in the tree.
            upgrade(engine, "0700_reports_topbox")
        else:
            server, engine, seed_s = seed_own(args.patients)
        started = time.perf_counter()
        with transaction(engine) as s:
            folded = topbox_rollup.refresh(s)
        fold_s = time.perf_counter() - started
        print(f"top-box rollup: folded {folded:,} responses in {fold_s:.1f} s", flush=True)
        with engine.connect() as conn:
            patients = int(conn.execute(select(func.count()).select_from(Patient)).scalar_one())
            card = conn.execute(text(
                "SELECT p.card_no FROM patients p JOIN observations o ON o.patient_id = p.id "
                "WHERE p.id <= 2000 GROUP BY p.card_no ORDER BY count(*) DESC LIMIT 1")).scalar_one()
            cards = [str(c) for c in conn.execute(select(Patient.card_no).order_by(Patient.id)
                                                  .limit(args.batch)).scalars()]
            dept = conn.execute(select(Department.id).order_by(Department.id)).scalars().first()

        out: dict[str, Any] = {"patients": patients, "url": bool(args.url), "today": today.isoformat(),
                               "seed_s": None if seed_s is None else round(seed_s, 1),
                               "topbox_fold": {"responses": folded, "seconds": round(fold_s, 2)}}
        with engine.connect() as conn:
            def one(charts: bool = True) -> bytes:
                return build_patient_report(conn, card_no=card, lang="zh_CN", now=now, settings=SETTINGS,
                                            with_charts=charts)

            started = time.perf_counter()
            first = one()
            out["patient_first_ms"] = (time.perf_counter() - started) * 1000
            out["patient_pdf_kb"] = round(len(first) / 1024, 1)
            out["patient_report"] = timed(one, args.runs)
            print("patient report", out["patient_report"], flush=True)
            out["patient_report_no_charts"] = timed(lambda: one(False), args.runs)

        with engine.connect() as conn, conn.begin() as tx:
            if args.url:
                # Full-scale risk distribution without changing the shared database: rolled back below.
                conn.execute(SYNTHETIC_RISK, {"at": datetime(now.year, now.month, 1, 9) - timedelta(days=30)})
                conn.execute(text("ANALYZE risk_assessments"))

            def quality(dept_id: int | None) -> bytes:
                return build_quality_report(conn, date_from=today - timedelta(days=364), date_to=today,
                                            department_id=dept_id, lang="zh_CN", now=now, settings=SETTINGS)

            started = time.perf_counter()
            quality(None)
            out["quality_first_ms"] = (time.perf_counter() - started) * 1000
            out["quality_all"] = timed(lambda: quality(None), max(3, args.runs // 2))
            out["quality_one_department"] = timed(lambda: quality(dept), max(3, args.runs // 2))
            tx.rollback()
        print("quality", out["quality_all"], flush=True)

        if args.batch:
            marks: list[int] = []
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "batch.zip"
                started = time.perf_counter()
                with target.open("wb") as zip_out:
                    result = write_batch(engine, zip_out, card_nos=cards, lang="zh_CN", now=now, settings=SETTINGS,
                                         workers=args.workers, progress=lambda d, t: marks.append(d))
                seconds = time.perf_counter() - started
                out["batch"] = {"reports": result.written, "missing": len(result.missing), "workers": args.workers,
                                "seconds": seconds, "zip_mb": target.stat().st_size / 1e6,
                                "progress_calls": len(marks)}
    finally:
        if server is not None:
            server.stop()

    print(f"{'measure':38s} {'p50 ms':>10s} {'p95 ms':>10s} {'cpu p50':>10s} {'cpu p95':>10s}")
    print(f"{'patient report, first in process':38s} {out['patient_first_ms']:10.0f}")
    for key in ("patient_report", "patient_report_no_charts", "quality_all", "quality_one_department"):
        m = out[key]
        print(f"{key:38s} {m['p50_ms']:10.0f} {m['p95_ms']:10.0f} {m['cpu_p50_ms']:10.0f} {m['cpu_p95_ms']:10.0f}")
    if "batch" in out:
        b = out["batch"]
        print(f"batch: {b['reports']:,} reports on {b['workers']} workers in {b['seconds']:.1f} s "
              f"({b['zip_mb']:.1f} MB zip)")
    load = os.getloadavg()
    print(f"patients {patients:,}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    record = {"at": datetime.now().isoformat(timespec="seconds"), "host": platform.node(), "cpus": os.cpu_count(),
              "load_avg_1m": load[0], "load_avg_5m": load[1], **out}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
