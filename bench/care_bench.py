"""Benchmark: run-automation's care part (all risk models + all built-in tag rules) and the tag rule preview.

Usage: python -m bench.care_bench [PATIENTS] [--runs R] [--readings K]
       python -m bench.care_bench --url URL [--as-of 2026-01-01] [--rollback] [--runs R] [--skip-runs] [--all-rules]
Starts a throwaway durable PostgreSQL (fsync, synchronous_commit and full_page_writes on), loads PATIENTS patients
(default 200,000) set-based with generate_series (db.seed.seed_demo takes ~4 s per 1,000 patients on this machine,
far too slow at this size): K readings (default 2, a year apart) of SBP, DBP, FPG, HbA1c, TC, HDL, LDL, TG, BMI and
waist per patient, 1-3 encounters, a smoking lifestyle record, a hypertension or diabetes diagnosis for some,
family history and an NPS answer for some. Then times: assess_all + apply_rules for everyone (the first run, which
writes every row; then a second, idempotent run that writes nothing), and the rule preview (p50/p95 over R runs)
for several rules. Prints a table and appends one JSON line to bench/results/care.jsonl.

With --url it runs against an existing database instead (the kept 1,000,000-patient demo, see bench/keepdb.py):
it migrates the care branch only, builds observation_latest if it has never been built (timed on its own: a
one-time cost, like an index), then times the first and the second run. --rollback rolls the first run back and
skips the second (the database keeps nothing, so a "first run" can be measured again); without it the first run
is committed and the second, idempotent run is then rolled back.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text  # noqa: E402

from db.catalogue import ensure_reference_data  # noqa: E402
from db.engine import make_engine, transaction  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from services import latest_values, risk, rules, tags  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "care.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "jit": "off"}
AS_OF = datetime(2026, 6, 15, 23, 59, 59)
# (code, base, spread) of the synthetic readings: value = base + (hash % spread) / 10.
VALUES = {"SBP": (105, 800), "DBP": (62, 450), "FPG": (4.2, 45), "HBA1C": (4.6, 35), "TC": (3.6, 40),
          "HDL": (0.7, 12), "LDL": (1.8, 30), "TG": (0.8, 30), "BMI": (19, 140), "WAIST": (68, 400)}
PREVIEWS: dict[str, dict[str, Any]] = {
    "latest SBP >= 140": {"kind": "indicator", "code": "SBP", "cmp": ">=", "value": 140},
    "builtin hypertension": next(r.expression for r in tags.BUILTIN_RULES if r.code == "hypertension"),
    "builtin diabetes": next(r.expression for r in tags.BUILTIN_RULES if r.code == "diabetes"),
    "male, 60+, BMI >= 28, smoker": {"op": "and", "args": [
        {"kind": "sex", "value": "M"}, {"kind": "age", "cmp": ">=", "value": 60},
        {"kind": "indicator", "code": "BMI", "cmp": ">=", "value": 28},
        next(r.expression for r in tags.BUILTIN_RULES if r.code == "smoker")]},
    "builtin lost_to_followup": next(r.expression for r in tags.BUILTIN_RULES if r.code == "lost_to_followup"),
    "builtin detractor": next(r.expression for r in tags.BUILTIN_RULES if r.code == "detractor"),
}
# --all-rules: every built-in rule as well, since an admin previews any of them before editing it.
ALL_BUILTINS = {f"builtin {r.code}": r.expression for r in tags.BUILTIN_RULES}


def _load(engine: Engine, patients: int, readings: int) -> dict[str, float]:
    h = "((p.id::bigint * 2654435761 + {k}) % 1000003)"
    obs = []
    for c, (code, (base, spread)) in enumerate(VALUES.items()):
        for r in range(readings):
            val = f"{base} + ({h.format(k=c * 104729 + r * 7919)} % {spread}) / 10.0"
            obs.append(f"""
            INSERT INTO observations (patient_id, indicator_id, value, observed_at, status, source, source_ref)
            SELECT p.id, i.id, {val}, TIMESTAMP '2026-05-01' - ({r} * 365 + p.id % 60) * INTERVAL '1 day',
                   'final', 'bench', '{code}{r}-' || p.id
            FROM patients p, indicators i WHERE i.code = '{code}'""")
    steps: dict[str, str] = {
        "patients": f"""
            INSERT INTO patients (card_no, name, sex, birth_date, phone, department_id, status, do_not_contact,
                                  enrolled_at, updated_at, version)
            SELECT 'C' || lpad(g::text, 9, '0'), '患者' || g, CASE WHEN g % 2 = 0 THEN 'F' ELSE 'M' END,
                   DATE '1946-01-01' + (g * 7 % 18000), NULL, d[1 + g % array_length(d, 1)], 'active', false,
                   TIMESTAMP '2020-01-01', now(), 1
            FROM generate_series(1, {patients}) g, (SELECT array(SELECT id FROM departments ORDER BY id) d) x""",
        "encounters": """
            INSERT INTO encounters (patient_id, department_id, kind, started_at, source, source_ref)
            SELECT p.id, p.department_id, 'checkup',
                   TIMESTAMP '2026-05-01' - (k * 400 + p.id % 300) * INTERVAL '1 day', 'bench', p.id || '-' || k
            FROM patients p CROSS JOIN generate_series(0, 2) k WHERE k <= p.id % 3""",
        "history": """
            INSERT INTO health_history (patient_id, kind, code, text, detail, source, recorded_at)
            SELECT p.id, 'lifestyle', 'smoking',
                   CASE WHEN p.id % 4 = 1 THEN '吸烟，约10支/日' WHEN p.id % 4 = 2 THEN '已戒烟' ELSE '从不吸烟' END,
                   CASE WHEN p.id % 4 = 1 THEN '{"status": "current"}' WHEN p.id % 4 = 2 THEN '{"status": "former"}'
                        ELSE '{"status": "never"}' END::json, 'bench', TIMESTAMP '2024-01-01'
            FROM patients p
            UNION ALL
            SELECT p.id, 'condition', CASE WHEN p.id % 8 = 3 THEN 'I10' ELSE 'E11.9' END,
                   CASE WHEN p.id % 8 = 3 THEN '原发性高血压' ELSE '2型糖尿病' END, NULL, 'bench',
                   TIMESTAMP '2024-01-01'
            FROM patients p WHERE p.id % 8 IN (3, 5)
            UNION ALL
            SELECT p.id, 'family', 'E11', '母亲：糖尿病', NULL, 'bench', TIMESTAMP '2024-01-01'
            FROM patients p WHERE p.id % 6 = 0""",
        "survey_responses": """
            INSERT INTO survey_responses (questionnaire_id, patient_id, department_id, submitted_at, nps_score,
                                          source, source_ref)
            SELECT q.id, p.id, p.department_id, TIMESTAMP '2026-03-01' + (p.id % 90) * INTERVAL '1 day',
                   p.id % 11, 'bench', 'r' || p.id
            FROM patients p, (SELECT min(id) AS id FROM questionnaires) q WHERE p.id % 3 = 0""",
    }
    out: dict[str, float] = {}
    for name, sql in [*steps.items(), *[(f"observations_{i}", s) for i, s in enumerate(obs)]]:
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(sql))
        out[name] = time.perf_counter() - t
        print(f"  loaded {name:20s} {out[name]:7.1f} s", flush=True)
    t = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    out["vacuum_analyze"] = time.perf_counter() - t
    return out


def _p(values: list[float], pct: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(pct / 100 * len(s) + 0.5) - 1))] * 1000


def _automation(engine: Engine, as_of: datetime = AS_OF, *, rollback: bool = False,
                undo_first: bool = False) -> dict[str, float | int]:
    out: dict[str, float | int] = {"rolled_back": int(rollback)}
    with transaction(engine) as s:
        if undo_first:
            # Measure a first run again on a database that has had one: inside this transaction (rolled back
            # below) remove what the committed first run at this date wrote, before the clock starts.
            t = time.perf_counter()
            s.execute(text("DELETE FROM risk_assessments WHERE assessed_at = :at"), {"at": as_of})
            s.execute(text("DELETE FROM patient_tags WHERE since = :at AND rule_id IS NOT NULL"), {"at": as_of})
            s.execute(text("UPDATE patient_tags SET until = NULL WHERE until = :at"), {"at": as_of})
            print(f"  undo of the committed first run (not timed): {time.perf_counter() - t:.1f} s", flush=True)
        t0 = time.perf_counter()
        tags.ensure_builtin_rules(s)
        t = time.perf_counter()
        assessed = risk.assess_all(s, as_of=as_of)
        out["risk_seconds"] = time.perf_counter() - t
        print(f"  risk {out['risk_seconds']:.1f} s ({assessed.stored:,} stored)", flush=True)
        t = time.perf_counter()
        tagged = tags.apply_rules(s, as_of=as_of)
        out["tags_seconds"] = time.perf_counter() - t
        print(f"  tags {out['tags_seconds']:.1f} s (+{tagged.added:,} -{tagged.ended:,})", flush=True)
        if rollback:
            s.rollback()
    out["total_seconds_incl_commit"] = time.perf_counter() - t0
    out |= {"risk_rows_stored": assessed.stored, "risk_unchanged": assessed.unchanged, "tags_added": tagged.added,
            "tags_ended": tagged.ended}
    return out


def _uptime() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "?"


def _previews(engine: Engine, runs: int, as_of: datetime, *, all_rules: bool = False) -> dict[str, Any]:
    previews: dict[str, Any] = {}
    for name, expr in (PREVIEWS | ALL_BUILTINS if all_rules else PREVIEWS).items():
        times, n = [], 0
        for _ in range(runs):
            t = time.perf_counter()
            with engine.connect() as conn:
                n = rules.preview_count(conn, expr, as_of=as_of)
            times.append(time.perf_counter() - t)
        previews[name] = {"matches": n, "p50_ms": _p(times, 50), "p95_ms": _p(times, 95),
                          "mean_ms": statistics.mean(times) * 1000}
        print(f"  preview {name:32s} {n:>10,} p50 {previews[name]['p50_ms']:7.0f} ms "
              f"p95 {previews[name]['p95_ms']:7.0f} ms", flush=True)
    return previews


def _print(result: dict[str, Any]) -> None:
    print(f"\npatients {result['patients']:,}; rows {result.get('rows')}; load average {result.get('loadavg')}")
    if "latest_build" in result:
        b = result["latest_build"]
        print(f"observation_latest build (one-time): {b['seconds']:.1f} s ({b['mode']})")
    for k in ("automation_first", "automation_second"):
        if k not in result:
            continue
        a = result[k]
        print(f"{k:20s} risk {a['risk_seconds']:7.1f} s  tags {a['tags_seconds']:7.1f} s  "
              f"total {a['total_seconds_incl_commit']:7.1f} s  (risk rows {a['risk_rows_stored']:,}, "
              f"tags +{a['tags_added']:,} -{a['tags_ended']:,}){' rolled back' if a['rolled_back'] else ''}")
    print(f"{'rule preview':32s} {'matches':>10s} {'p50 ms':>9s} {'p95 ms':>9s}")
    for name, p in result.get("preview", {}).items():
        print(f"{name:32s} {p['matches']:>10,} {p['p50_ms']:9.0f} {p['p95_ms']:9.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result, ensure_ascii=False) + "\n")


def _kept(args: argparse.Namespace) -> int:
    """Against an existing database (--url): nothing is seeded, dropped or truncated."""
    as_of = datetime.combine(args.as_of, datetime.max.time().replace(microsecond=0))
    engine = make_engine(args.url)
    upgrade(engine, "0612_care_preview_indexes")  # the care branch only: other areas' heads are not ours to apply
    result: dict[str, Any] = {"at": datetime.now().isoformat(timespec="seconds"), "url": args.url.split("@")[-1],
                              "as_of": as_of.isoformat(), "runs": args.runs, "loadavg_start": _uptime(),
                              "machine": f"{platform.machine()} {platform.system()}"}
    with engine.connect() as conn:
        result["rows"] = {n: conn.execute(text(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{n}'"))
                          .scalar_one() for n in ("patients", "observations", "risk_assessments", "patient_tags")}
    result["patients"] = result["rows"]["patients"]
    with transaction(engine) as s:
        t = time.perf_counter()
        stats = latest_values.refresh(s)
        result["latest_build"] = {"mode": stats.mode, "patients": stats.patients,
                                  "seconds": time.perf_counter() - t}
    print(f"observation_latest: {stats.mode} in {result['latest_build']['seconds']:.1f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does after a bulk load, and run-automation after a large care pass (db.engine.vacuum_analyze):
        # sets the visibility map, so index-only scans need no heap visits.
        for table in ("observation_latest", "health_history", "risk_assessments", "patient_tags"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
    if args.remeasure_first:
        print("run-automation (care part), first run again (rolled back) ...", flush=True)
        result["automation_first"] = _automation(engine, as_of, rollback=True, undo_first=True)
    elif not args.skip_runs:
        print("run-automation (care part), first run ...", flush=True)
        result["automation_first"] = _automation(engine, as_of, rollback=args.rollback)
        if not args.rollback:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE risk_assessments"))
                conn.execute(text("VACUUM ANALYZE patient_tags"))
        if not args.rollback:  # a second run after a rolled-back first would only repeat it
            print("run-automation (care part), second run ...", flush=True)
            result["automation_second"] = _automation(engine, as_of, rollback=True)
    result["preview"] = _previews(engine, args.runs, as_of, all_rules=args.all_rules)
    result["loadavg"] = _uptime()
    _print(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("patients", nargs="?", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--readings", type=int, default=2)
    parser.add_argument("--url", help="run against this existing database instead of seeding one")
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 1, 1),
                        help="evaluation date with --url (the kept demo was seeded with today = 2026-01-01)")
    parser.add_argument("--rollback", action="store_true", help="with --url: roll the first run back too")
    parser.add_argument("--skip-runs", action="store_true", help="with --url: only the rule preview")
    parser.add_argument("--all-rules", action="store_true", help="preview every built-in rule too")
    parser.add_argument("--remeasure-first", action="store_true",
                        help="with --url: time the first run again (undoing the committed one inside a rolled-back "
                             "transaction), then the preview")
    args = parser.parse_args(argv)
    if args.url:
        return _kept(args)
    server = start_postgres(settings=DURABLE)
    result: dict[str, Any] = {"at": datetime.now().isoformat(timespec="seconds"), "patients": args.patients,
                              "readings_per_indicator": args.readings, "runs": args.runs,
                              "machine": f"{platform.machine()} {platform.system()}"}
    try:
        engine = make_engine(server.create_database("careloop_care_bench"))
        upgrade(engine)
        with transaction(engine) as s:
            ensure_reference_data(s)
        t = time.perf_counter()
        result["load_seconds"] = _load(engine, args.patients, args.readings)
        result["load_total_seconds"] = time.perf_counter() - t
        with engine.connect() as conn:
            result["rows"] = {n: conn.execute(text(f"SELECT count(*) FROM {n}")).scalar_one()
                              for n in ("patients", "observations", "encounters", "health_history",
                                        "survey_responses")}
        with transaction(engine) as s:
            t = time.perf_counter()
            stats = latest_values.refresh(s)
            result["latest_build"] = {"mode": stats.mode, "patients": stats.patients,
                                      "seconds": time.perf_counter() - t}
        print("run-automation (care part), first run ...", flush=True)
        result["automation_first"] = _automation(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print("run-automation (care part), second run ...", flush=True)
        result["automation_second"] = _automation(engine)
        result["preview"] = _previews(engine, args.runs, AS_OF, all_rules=args.all_rules)
        result["loadavg"] = _uptime()
    finally:
        server.stop()
    _print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
