"""Benchmark: table downloads (the whole filtered result of a paged table, its CSV and Excel bytes, the audit
row of the click) and `manage.py export` kinds, on PostgreSQL.

Usage: python -m bench.exports_bench [PATIENTS] [--runs R] [--url URL] [--today YYYY-MM-DD]
Without --url: starts a throwaway durable PostgreSQL and seeds PATIENTS demo patients (default 20,000).
With --url: uses that database as it is (the kept 1,000,000-patient demo: --url postgresql+psycopg2://postgres@
127.0.0.1:55432/careloop_bench --today 2026-01-01); it only adds audit rows. Times, R runs each (p50/p95):
  - the whole-result fetch of the widest paged tables, at the download cap (EXPORT_MAX_ROWS rows): patient
    search for a common surname (shaped and masked as on screen), verbatim comments of 90 days, the outbox of
    a month, a nurse's department worklist;
  - CSV and Excel bytes of the 10,000-row patient frame;
  - the on_click audit row (one transaction);
  - `manage.py export` (reports.export_cli.run_export): followups of one month, nps by month for a year,
    and (once) every patient, masked, as CSV.
Prints a table and appends one JSON line to bench/results/exports.jsonl.
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
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from sqlalchemy import Engine, func, select  # noqa: E402

from components.export_buttons import EXPORT_MAX_ROWS  # noqa: E402
from db.catalogue import ensure_reference_data  # noqa: E402
from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import FollowupTask  # noqa: E402
from db.seed import seed_demo  # noqa: E402
from queries import followup as fq  # noqa: E402
from queries import satisfaction as sq  # noqa: E402
from queries.filters import PeriodFilter, scope_for  # noqa: E402
from queries.messaging import OutboxFilter, outbox  # noqa: E402
from queries.patients import SearchFilter, search_patients  # noqa: E402
from reports.export_cli import ExportRequest, run_export  # noqa: E402
from reports.tables import to_csv_bytes, to_xlsx_bytes  # noqa: E402
from services.exports import record_export  # noqa: E402
from services.masking import id_number_for, phone_for  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "exports.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "jit": "off"}


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"p50_ms": round(statistics.median(samples) * 1000, 1), "p95_ms": round(p95 * 1000, 1), "runs": runs}


def shaped_patients(found: pd.DataFrame) -> pd.DataFrame:
    """As the search page shapes its rows for a quality user: contacts masked."""
    return found.assign(phone=[phone_for("quality", p) for p in found["phone"]],
                        id_number=[id_number_for("quality", v) for v in found["id_number"]]).drop(columns=["id"])


def measure(engine: Engine, *, today: date, runs: int, skip_cli: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    admin = scope_for(role="admin", department_id=None)
    cap = EXPORT_MAX_ROWS
    with engine.connect() as conn:
        nurse = conn.execute(select(FollowupTask.assignee_id, FollowupTask.department_id)
                             .where(FollowupTask.status == "pending", FollowupTask.assignee_id.is_not(None))
                             .limit(1)).first()

        def patients() -> pd.DataFrame:
            return shaped_patients(search_patients(conn=conn, f=SearchFilter("王", limit=cap), scope=admin))

        frame = patients()
        out["patients_rows"] = len(frame)
        out["fetch_patient_search"] = timed(patients, runs)
        comments_f = PeriodFilter(today - timedelta(days=89), today)
        out["comments_rows"] = len(sq.comments(conn=conn, f=comments_f, scope=admin, limit=cap)[0])
        out["fetch_comments_90d"] = timed(lambda: sq.comments(conn=conn, f=comments_f, scope=admin, limit=cap), runs)
        ob = OutboxFilter(today - timedelta(days=30), today, limit=cap)
        out["outbox_rows"] = len(outbox(conn=conn, f=ob, scope=admin))
        out["fetch_outbox_30d"] = timed(lambda: outbox(conn=conn, f=ob, scope=admin), runs)
        if nurse is not None:
            wl = fq.WorklistFilter(user_id=int(nurse[0] or 0), department_id=nurse[1], today=today, view="department",
                                   lang="zh_CN")
            full = replace(wl, limit=cap, offset=0)
            out["worklist_rows"] = len(fq.worklist(conn=conn, f=full))
            out["fetch_worklist_department"] = timed(lambda: fq.worklist(conn=conn, f=full), runs)
        # The file bytes are timed on the widest frame at the cap: the department worklist (or the comments).
        biggest = fq.worklist(conn=conn, f=full) if nurse is not None else pd.DataFrame()
        comments = sq.comments(conn=conn, f=comments_f, scope=admin, limit=cap)[0]
        frame = max((frame, biggest, comments), key=len)
    out["bytes_rows"] = len(frame)
    description = f"bench {len(frame)} rows"
    out["csv_10k"] = timed(lambda: to_csv_bytes(frame, description), runs)
    out["xlsx_10k"] = timed(lambda: to_xlsx_bytes(frame, description, sheet="patient_search"), max(3, runs // 2))

    def audit_row() -> None:
        with transaction(engine) as s:
            record_export(s, None, "bench", description, len(frame), fmt="csv", extra={"bench": True})

    out["audit_row"] = timed(audit_row, runs)
    if skip_cli:
        return out
    with tempfile.TemporaryDirectory(prefix="careloop-exports-") as tmp:
        month_start = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        month_end = today.replace(day=1) - timedelta(days=1)

        def cli(kind: str, fmt: str = "csv", **kw: Any) -> int:
            req = ExportRequest(kind=kind, fmt=fmt, out=os.path.join(tmp, f"{kind}.{fmt}"), **kw)
            return run_export(engine, req, writers=_writers(), lang="zh_CN", today=today).rows

        out["cli_followups_month_rows"] = cli("followups", date_from=month_start, date_to=month_end)
        out["cli_followups_month"] = timed(lambda: cli("followups", date_from=month_start, date_to=month_end),
                                           max(3, runs // 3))
        out["cli_followups_month_xlsx"] = timed(
            lambda: cli("followups", "xlsx", date_from=month_start, date_to=month_end), 3)
        out["cli_nps_year"] = timed(lambda: cli("nps", date_from=today - timedelta(days=364), date_to=today),
                                    max(3, runs // 3))
        started = time.perf_counter()
        out["cli_patients_rows"] = cli("patients")
        out["cli_patients_all_s"] = round(time.perf_counter() - started, 1)
    with engine.connect() as conn:
        out["followup_tasks_total"] = int(conn.execute(select(func.count()).select_from(FollowupTask)).scalar_one())
    return out


def _writers() -> dict[str, Any]:
    import manage

    return manage.EXPORTS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("patients", nargs="?", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--url", default=None, help="an existing database (kept demo); nothing is seeded")
    ap.add_argument("--skip-cli", action="store_true", help="only the page downloads, not manage.py export")
    ap.add_argument("--today", type=date.fromisoformat, default=date(2026, 1, 1),
                    help="the day the demo data ends (the kept demo: 2026-01-01)")
    args = ap.parse_args()

    server = None
    if args.url:
        engine = make_engine(args.url)
        patients = None
    else:
        from tests.support.pgserver import start_postgres

        server = start_postgres(settings=DURABLE)
        engine = make_engine(server.create_database("careloop_exports_bench"))
        upgrade(engine)
        with transaction(engine) as s:
            ensure_reference_data(s)
        seed_demo(engine, patients=args.patients, seed=20260101, today=args.today)
        patients = args.patients
    try:
        out = measure(engine, today=args.today, runs=args.runs, skip_cli=args.skip_cli)
    finally:
        engine.dispose()
        if server is not None:
            server.stop()
    load = os.getloadavg()
    record = {"at": datetime.now().isoformat(timespec="seconds"), "url": bool(args.url), "patients": patients,
              "host": platform.node(), "cpus": os.cpu_count(), "load_before_after": [round(x, 2) for x in load],
              "cap_rows": EXPORT_MAX_ROWS, **out}
    print(f"{'measure':34s} {'rows':>8s} {'p50 ms':>10s} {'p95 ms':>10s}")
    for key, rows_key in (("fetch_patient_search", "patients_rows"), ("fetch_comments_90d", "comments_rows"),
                          ("fetch_outbox_30d", "outbox_rows"), ("fetch_worklist_department", "worklist_rows"),
                          ("csv_10k", "bytes_rows"), ("xlsx_10k", "bytes_rows"), ("audit_row", ""),
                          ("cli_followups_month", "cli_followups_month_rows"),
                          ("cli_followups_month_xlsx", "cli_followups_month_rows"), ("cli_nps_year", "")):
        if key in out:
            print(f"{key:34s} {out.get(rows_key, ''):>8} {out[key]['p50_ms']:10.1f} {out[key]['p95_ms']:10.1f}")
    if "cli_patients_rows" in out:
        print(f"cli patients (all, masked, csv): {out['cli_patients_rows']:,} rows in {out['cli_patients_all_s']} s")
    print(f"load average: {load}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


if __name__ == "__main__":
    main()
