"""Benchmark: patient health report (one after the first, p50/p95), 1,000 reports in a batch, quality summary.

Usage: python -m bench.reports_bench [PATIENTS] [--runs R] [--batch N] [--workers W]
Starts a throwaway durable PostgreSQL (fsync, synchronous_commit and full_page_writes on), loads PATIENTS demo
patients with db.seed.seed_demo (default 20,000: seed_demo runs at roughly 1,000 patients a few seconds here),
adds risk assessments for the first 2,000 patients (services.risk.assess_all), then times:
  - one patient report (with trend charts) for the patient with the most observations, R runs after a warm-up;
  - the same without charts (where the time goes);
  - N reports (default 1,000) in one batch zip over W worker processes (default 2);
  - the quality summary for the last 12 months, all departments and one department, R runs each.
Prints a table and appends one JSON line to bench/results/reports.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, select, text  # noqa: E402

from config import Settings  # noqa: E402
from db.catalogue import ensure_reference_data  # noqa: E402
from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Department, Patient  # noqa: E402
from db.seed import seed_demo  # noqa: E402
from reports import fonts  # noqa: E402
from reports.batch import build_batch  # noqa: E402
from reports.patient_report import build_patient_report  # noqa: E402
from reports.quality_report import build_quality_report  # noqa: E402
from services.risk import assess_all  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reports.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "jit": "off"}
TODAY = date(2026, 6, 30)
NOW = datetime(2026, 6, 30, 10, 0)
SETTINGS = Settings(database_url="", demo=False, cookie_key="", institution_name="Careloop 健康管理中心")


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"p50_ms": statistics.median(samples) * 1000, "p95_ms": p95 * 1000, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("patients", nargs="?", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    fonts.warm_up()
    server = start_postgres(settings=DURABLE)
    try:
        engine: Engine = make_engine(server.create_database("careloop_reports_bench"))
        upgrade(engine)
        with transaction(engine) as s:
            ensure_reference_data(s)
        started = time.perf_counter()
        seed_demo(engine, patients=args.patients, seed=20260101, today=TODAY)
        seed_s = time.perf_counter() - started
        print(f"seeded {args.patients:,} patients in {seed_s:.0f} s", flush=True)
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
            s.execute(text(
                "INSERT INTO risk_assessments (patient_id, model, model_version, assessed_at, score, level, inputs,"
                " factors) SELECT id, 'framingham', 'bench', TIMESTAMP '2026-06-01 09:00', id % 30,"
                " CASE WHEN id % 10 < 6 THEN 'low' WHEN id % 10 < 9 THEN 'intermediate' ELSE 'high' END,"
                " '{}', '[]' FROM patients"))
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            card = conn.execute(text(
                "SELECT p.card_no FROM patients p JOIN observations o ON o.patient_id = p.id "
                "WHERE p.id <= 2000 GROUP BY p.card_no ORDER BY count(*) DESC LIMIT 1")).scalar_one()
            cards = [str(c) for c in conn.execute(select(Patient.card_no).order_by(Patient.id)
                                                  .limit(args.batch)).scalars()]
            dept = conn.execute(select(Department.id).order_by(Department.id)).scalars().first()

        out: dict[str, Any] = {"patients": args.patients, "seed_s": round(seed_s, 1)}
        with engine.connect() as conn:
            def one(charts: bool = True) -> bytes:
                return build_patient_report(conn, card_no=card, lang="zh_CN", now=NOW, settings=SETTINGS,
                                            with_charts=charts)

            started = time.perf_counter()
            one()
            out["patient_first_ms"] = (time.perf_counter() - started) * 1000
            out["patient_report"] = timed(one, args.runs)
            print("patient report", out["patient_report"], flush=True)
            out["patient_report_no_charts"] = timed(lambda: one(False), args.runs)

            def quality(dept_id: int | None) -> bytes:
                return build_quality_report(conn, date_from=TODAY - timedelta(days=364), date_to=TODAY,
                                            department_id=dept_id, lang="zh_CN", now=NOW, settings=SETTINGS)

            quality(None)
            out["quality_all"] = timed(lambda: quality(None), max(3, args.runs // 2))
            out["quality_one_department"] = timed(lambda: quality(dept), max(3, args.runs // 2))

        print("quality", out["quality_all"], flush=True)
        progress_marks: list[int] = []
        started = time.perf_counter()
        payload = build_batch(engine, card_nos=cards, lang="zh_CN", now=NOW, settings=SETTINGS,
                              workers=args.workers, progress=lambda d, t: progress_marks.append(d))
        out["batch"] = {"reports": len(cards), "workers": args.workers, "seconds": time.perf_counter() - started,
                        "zip_mb": len(payload) / 1e6}
    finally:
        server.stop()

    print(f"{'measure':38s} {'p50 ms':>10s} {'p95 ms':>10s}")
    print(f"{'patient report, first in process':38s} {out['patient_first_ms']:10.0f}")
    for key in ("patient_report", "patient_report_no_charts", "quality_all", "quality_one_department"):
        print(f"{key:38s} {out[key]['p50_ms']:10.0f} {out[key]['p95_ms']:10.0f}")
    b = out["batch"]
    print(f"batch: {b['reports']:,} reports on {b['workers']} workers in {b['seconds']:.1f} s "
          f"({b['zip_mb']:.1f} MB zip)")
    record = {"at": datetime.now().isoformat(timespec="seconds"), "host": platform.node(), "cpus": os.cpu_count(),
              "load_avg_1m": os.getloadavg()[0], **out}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
