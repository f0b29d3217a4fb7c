"""Benchmark: queue a day's reminders for N seeded patients on PostgreSQL, and adapter throughput on local servers.

Usage: python -m bench.messaging_bench [N] [--runs R] [--sends K] [--url URL [--keep]]
Seeds N demo patients (db.seed.seed_demo) into a throwaway durable PostgreSQL, or with --url uses an existing
seeded database (the kept 1M demo, bench/keepdb.py) and removes afterwards the messages and experiment
assignments its own runs added (by id) unless --keep. Records medication habit times where a medication has
none (the seed has none) and makes 2/3 of the day's follow-up steps SMS/WeChat (the seed's are phone calls),
then times queue_reminders for the seed's last day R times from an outbox without that day's reminders
(p50/p95/max) plus an idempotent re-run, and measures messages/s through the SMTP adapter (aiosmtpd, one
connection per batch), the HTTP SMS adapter (http.server) and the file adapter, and the whole send job (claim,
rules, file adapter, record) on PostgreSQL. Prints a table and appends one JSON line to
bench/results/messaging.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import typing
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from db.engine import make_engine, session_factory, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.seed import seed_demo  # noqa: E402
from services.messaging import sender  # noqa: E402
from services.messaging.adapters import (  # noqa: E402
    ChannelAdapter,
    FileAdapter,
    HttpSmsAdapter,
    OutgoingMessage,
    SMTPAdapter,
)
from services.messaging.queue import queue_reminders  # noqa: E402
from tests.support.gateways import http_gateway, smtp_server  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "messaging.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
BENCH_TODAY = date(2026, 1, 1)


def _throughput(adapter: ChannelAdapter, channel: str, recipient: str, k: int, batch: int = 0) -> float:
    """Messages per second; with batch > 0 an SMTP adapter keeps one connection per `batch` messages (as the job)."""
    started = time.perf_counter()
    for start in range(0, k, batch or k):
        with (typing.cast(SMTPAdapter, adapter).batch() if batch else contextlib.nullcontext()):
            for i in range(start, min(k, start + (batch or k))):
                result = adapter.send(OutgoingMessage(i, f"bench:{channel}:{batch}:{i}", channel, recipient,
                                                      f"张三您好，这是第{i}条提醒。"))
                if not result.ok:
                    raise RuntimeError(result.error)
    return k / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("patients", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--url", help="run against this seeded PostgreSQL instead of seeding a throwaway one")
    parser.add_argument("--keep", action="store_true", help="with --url: leave the queued messages in place")
    args = parser.parse_args(argv)

    server = None if args.url else start_postgres(settings=DURABLE)
    try:
        url = args.url or server.create_database("careloop_msg_bench")  # type: ignore[union-attr]
        engine = make_engine(url)
        upgrade(engine)
        seed_s = 0.0
        if server is not None:
            t = time.perf_counter()
            seed_demo(engine, patients=args.patients, today=BENCH_TODAY)
            seed_s = time.perf_counter() - t
        else:
            with engine.connect() as conn:
                args.patients = int(conn.execute(text("SELECT count(*) FROM patients")).scalar_one())
        with engine.begin() as conn:
            # Habit times a nurse would record; without them the medication rule sends nothing.
            conn.execute(text("UPDATE health_history SET detail = CAST('{\"times\": [\"08:00\", \"20:00\"]}' AS json) "
                              "WHERE kind = 'medication' AND (detail IS NULL OR detail ->> 'times' IS NULL)"))
            # The seed's follow-up steps are phone calls; make a share of the day's steps SMS / WeChat ones.
            conn.execute(text("UPDATE followup_tasks SET method = CASE WHEN id % 3 = 0 THEN 'sms' "
                              "WHEN id % 3 = 1 THEN 'wechat' ELSE method END WHERE due_date = :d"),
                         {"d": BENCH_TODAY})
            conn.execute(text("ANALYZE patients, health_history, followup_tasks, messages, consents"))
        with engine.connect() as conn:
            # What was there before this bench: only rows above these ids are ours to remove.
            base_msg = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM messages")).scalar_one())
            base_asg = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM experiment_assignments")).scalar_one())

        def _clear() -> None:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM experiment_assignments WHERE id > :i"), {"i": base_asg})
                conn.execute(text("DELETE FROM messages WHERE id > :i"), {"i": base_msg})
            # A day's queue meets a vacuumed outbox, not a million dead rows of the previous timed run.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE messages, experiment_assignments"))

        as_of = BENCH_TODAY
        timings: list[float] = []
        counts: dict[str, int] = {}
        for _ in range(args.runs):
            _clear()
            t = time.perf_counter()
            with transaction(engine) as s:
                counts = queue_reminders(s, as_of=as_of, now=datetime(2026, 1, 1, 1, 0))
            timings.append(time.perf_counter() - t)
        t = time.perf_counter()
        with transaction(engine) as s:
            rerun = queue_reminders(s, as_of=as_of, now=datetime(2026, 1, 1, 1, 0))
        rerun_s = time.perf_counter() - t

        k = args.sends
        sender_batch = 50  # send_due's default batch: one SMTP connection per claimed batch
        with smtp_server() as (port, _):
            smtp_rate = _throughput(SMTPAdapter(host="127.0.0.1", port=port, sender="bench@careloop"), "email",
                                    "a@example.cn", k)
            smtp_batch_rate = _throughput(SMTPAdapter(host="127.0.0.1", port=port, sender="bench@careloop"),
                                          "email", "a@example.cn", k, batch=sender_batch)
        with http_gateway() as (gw, _):
            http_rate = _throughput(HttpSmsAdapter(url=f"{gw}/ok", timeout=5), "sms", "13812345678", k)
        with tempfile.TemporaryDirectory() as tmp:
            file_rate = _throughput(FileAdapter(tmp), "sms", "13812345678", k)
            # The whole job on PostgreSQL: claim, send-time rules, file adapter, record outcome.
            with engine.begin() as conn:
                conn.execute(text("UPDATE messages SET scheduled_at = '2026-01-01 09:00' WHERE id IN "
                                  "(SELECT id FROM messages WHERE id > :i ORDER BY id LIMIT :k)"),
                             {"k": k, "i": base_msg})
            t = time.perf_counter()
            job = sender.send_due(session_factory(engine), now=datetime(2026, 1, 1, 9, 0),
                                  adapters={c: FileAdapter(tmp) for c in ("sms", "email", "wechat")}, limit=k)
            job_rate = job.claimed / (time.perf_counter() - t)
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar_one())
        if server is None and not args.keep:
            _clear()
    finally:
        if server is not None:
            server.stop()

    p50 = statistics.median(timings)
    p95 = sorted(timings)[max(0, int(round(0.95 * len(timings))) - 1)]
    print(f"\nqueue_reminders on PostgreSQL {version}, {args.patients:,} patients (seeded in {seed_s:.0f} s), "
          f"as_of {as_of}, {args.runs} runs")
    print(f"{'measure':44s} {'value':>14s}")
    for rule, n in counts.items():
        if rule != "seconds":
            print(f"{'queued: ' + rule:44s} {n:>14,}")
    print(f"{'queue p50 (s)':44s} {p50:>14.2f}")
    print(f"{'queue p95 (s)':44s} {p95:>14.2f}")
    print(f"{'queue max (s)':44s} {max(timings):>14.2f}")
    print(f"{'idempotent re-run (s), queued ' + str(rerun['total']):44s} {rerun_s:>14.2f}")
    print(f"{'SMTP adapter -> aiosmtpd, per message (msg/s)':44s} {smtp_rate:>14.0f}")
    print(f"{'SMTP adapter, 1 connection per ' + str(sender_batch) + ' (msg/s)':44s} {smtp_batch_rate:>14.0f}")
    print(f"{'HTTP SMS adapter -> http.server (msg/s)':44s} {http_rate:>14.0f}")
    print(f"{'file adapter (msg/s)':44s} {file_rate:>14.0f}")
    print(f"{'send job, PostgreSQL + file adapter (msg/s)':44s} {job_rate:>14.0f}  ({job.sent} sent, "
          f"{job.cancelled} cancelled)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({
            "at": datetime.now().isoformat(timespec="seconds"), "patients": args.patients, "postgres": version,
            "kept_db": bool(args.url), "cpus": os.cpu_count(), "machine": platform.machine(),
            "seed_s": round(seed_s, 1),
            "queue_s": [round(x, 3) for x in timings], "queue_p50_s": round(p50, 3), "queue_p95_s": round(p95, 3),
            "rerun_s": round(rerun_s, 3), "queued": {k2: v for k2, v in counts.items() if k2 != "seconds"},
            "smtp_msg_s": round(smtp_rate), "smtp_batched_msg_s": round(smtp_batch_rate),
            "http_sms_msg_s": round(http_rate), "file_msg_s": round(file_rate),
            "send_job_msg_s": round(job_rate), "send_job": job.as_dict(), "sends": k,
            "as_of": as_of.isoformat(),
        }, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
