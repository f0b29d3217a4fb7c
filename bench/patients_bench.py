"""Benchmark: patient search p95, opening a 360° view (all of its queries + the audit row) p95, CSV import rows/s.

Usage: python -m bench.patients_bench [PATIENTS] [--with-obs N] [--obs-per-patient K] [--runs R]
       [--import-rows M] [--import-runs I] [--seed-demo] [--url URL] [--import-only]
Starts a throwaway durable PostgreSQL (fsync, synchronous_commit and full_page_writes on) and loads PATIENTS
patients (default 1,000,000) set-based with generate_series (db.seed.seed_demo takes minutes per 100,000 on this
machine; --seed-demo uses it instead), plus K observations (SBP, DBP, FPG, TC, BMI over the years) for the first N
patients, consents, history and encounters for them. Then times: search (card exact/prefix, phone prefix, ID
number, name prefix, pinyin initials) p50/p95 over R random patients; the 360° view (header, timeline, series,
bands, catalogue, yearly means, health record, consents, audit row + commit) p50/p95 over R patients with data;
and a Synthea CSV import of M observation rows (rows/s over the whole import incl. patients and commit), I times
with fresh patients each time (p50 and worst), then a re-import of the same files (must change nothing).
--url runs against an existing database instead (the kept 1M demo, bench/keepdb.py): nothing is loaded or dropped,
each import adds its own new patients and observations (ids tagged with the run's time so runs never collide).
Prints a table and appends one JSON line to bench/results/patients.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
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
from queries import indicators as iq  # noqa: E402
from queries import patients as pq  # noqa: E402
from services import patients as svc  # noqa: E402
from services.importers.runner import run_import  # noqa: E402
from tests.support.pgserver import start_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "patients.jsonl"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "jit": "off"}
TODAY = date(2026, 6, 15)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
SURNAME_PY = "wlzlcyhzwzxsmzhghglk"[: len(SURNAMES)]
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"
GIVEN_PY = "wfnmjlqljyyyjjtmcxyh"[: len(GIVEN)]


def _load(engine: Engine, patients: int, with_obs: int, per_patient: int) -> dict[str, float]:
    """Set-based load in SQL; returns seconds per step."""
    check = "substr('10X98765432', 1 + ((" + " + ".join(
        f"substr(b, {i + 1}, 1)::int * {w}" for i, w in enumerate((7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8,
                                                                      4, 2))
    ) + ") % 11), 1)"
    card_check = "substr('0123456789X', 1 + ((12 - ((" + " + ".join(
        f"substr(s, {i + 1}, 1)::int * {pow(2, 10 - i, 11)}" for i in range(10)
    ) + ") % 11)) % 11), 1)"
    steps = {
        "patients": f"""
            INSERT INTO patients (id, card_no, name, name_initials, sex, birth_date, phone, id_type, id_number,
                                  department_id, status, channel_prefs, do_not_contact, enrolled_at, updated_at,
                                  version)
            SELECT g, 'CL' || s || {card_check},
                   substr('{SURNAMES}', 1 + g % 20, 1) || substr('{GIVEN}', 1 + (g / 20) % 20, 1)
                       || substr('{GIVEN}', 1 + (g / 400) % 20, 1),
                   substr('{SURNAME_PY}', 1 + g % 20, 1) || substr('{GIVEN_PY}', 1 + (g / 20) % 20, 1)
                       || substr('{GIVEN_PY}', 1 + (g / 400) % 20, 1),
                   CASE WHEN g % 2 = 0 THEN 'F' ELSE 'M' END, bd,
                   '13' || lpad(((g::bigint * 7919) % 1000000000)::text, 9, '0'),
                   'resident', b || {check}, 1 + g % 11, 'active', '[]', false, now(), now(), 1
            FROM (SELECT g, lpad(g::text, 10, '0') s, DATE '1940-01-01' + (g * 37 % 25000) bd
                  FROM generate_series(1, {patients}) g) x,
                 LATERAL (SELECT '330106' || to_char(bd, 'YYYYMMDD') || lpad((g % 1000)::text, 3, '0') b) y""",
        "patients_seq": "SELECT setval(pg_get_serial_sequence('patients', 'id'), (SELECT max(id) FROM patients))",
        "encounters": f"""
            INSERT INTO encounters (patient_id, kind, started_at, reason, source, source_ref)
            SELECT p, 'wellness', TIMESTAMP '2018-03-01 09:00' + (y || ' years')::interval, '体检', 'bench',
                   p || '-' || y
            FROM generate_series(1, {with_obs}) p, generate_series(0, 7) y""",
        "observations": f"""
            INSERT INTO observations (patient_id, indicator_id, value, original_value, original_unit, loinc_code,
                                      observed_at, status, source, source_ref)
            SELECT p, i.id, round((i.base + (p % 13) - 6 + k * 0.3)::numeric, 2), NULL, NULL, NULL,
                   TIMESTAMP '2018-03-01 09:00' + ((k * 365 / 5) || ' days')::interval, 'final', 'bench',
                   p || '-' || i.code || '-' || k
            FROM generate_series(1, {with_obs}) p,
                 (SELECT id, code, CASE code WHEN 'SBP' THEN 130 WHEN 'DBP' THEN 82 WHEN 'FPG' THEN 5.8
                         WHEN 'TC' THEN 5.0 ELSE 24 END base FROM indicators
                  WHERE code IN ('SBP', 'DBP', 'FPG', 'TC', 'BMI')) i,
                 generate_series(0, {max(per_patient // 5 - 1, 0)}) k""",
        "consents": f"""
            INSERT INTO consents (patient_id, purpose, granted_at)
            SELECT p, 'followup', now() FROM generate_series(1, {with_obs}) p""",
        "health_history": f"""
            INSERT INTO health_history (patient_id, kind, text, source, recorded_at)
            SELECT p, k, CASE k WHEN 'condition' THEN '高血压' ELSE '青霉素' END, 'bench', now()
            FROM generate_series(1, {with_obs}) p, unnest(ARRAY['condition', 'allergy']) k""",
        "analyze": "ANALYZE",
    }
    out = {}
    for name, sql in steps.items():
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(sql))
        out[name] = round(time.perf_counter() - started, 1)
        print(f"  loaded {name:16s} {out[name]:7.1f} s", flush=True)
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def _search_terms(engine: Engine, rng: random.Random, patients: int, runs: int) -> list[tuple[str, str]]:
    ids = [rng.randint(1, patients) for _ in range(runs)]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, card_no, phone, id_number, name, name_initials FROM patients "
                                 "WHERE id = ANY(:ids)"), {"ids": ids}).all()
    kinds = ["card", "card_prefix", "phone_prefix", "id_number", "name_prefix", "initials"]
    terms = []
    for i, (_pid, card, phone, idn, name, initials) in enumerate(rows):
        kind = kinds[i % len(kinds)]
        term = {"card": card, "card_prefix": card[:9], "phone_prefix": phone[:8], "id_number": idn,
                "name_prefix": name[:2], "initials": initials}[kind]
        terms.append((kind, term))
    return terms


def _time_search(engine: Engine, terms: list[tuple[str, str]]) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for _kind, term in terms[:20]:  # warm-up
            pq.search_patients(conn=conn, f=pq.SearchFilter(term))
        for kind, term in terms:
            started = time.perf_counter()
            pq.search_patients(conn=conn, f=pq.SearchFilter(term))
            by_kind.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
    all_ms = [v for vs in by_kind.values() for v in vs]
    out: dict[str, Any] = {"p50_ms": round(_pct(all_ms, 0.5), 2), "p95_ms": round(_pct(all_ms, 0.95), 2),
                           "n": len(all_ms)}
    out["by_kind_p95_ms"] = {k: round(_pct(v, 0.95), 2) for k, v in by_kind.items()}
    return out


def _open_360(engine: Engine, pid: int, steps: dict[str, list[float]] | None = None) -> None:
    def lap(name: str, started: float) -> float:
        now = time.perf_counter()
        if steps is not None:
            steps.setdefault(name, []).append((now - started) * 1000)
        return now

    t = time.perf_counter()
    with engine.connect() as conn:
        h = pq.patient_header(conn=conn, patient_id=pid, today=TODAY)
        assert h is not None
        t = lap("header (5 queries)", t)
        pq.timeline(conn=conn, patient_id=pid)
        t = lap("timeline (6 queries)", t)
        series = iq.series(conn=conn, patient_id=pid)
        t = lap("series", t)
        bands = iq.cached_bands(conn=conn, sex=h.sex)
        iq.cached_catalogue(conn=conn)
        t = lap("bands + catalogue (cached)", t)
        iq.flag(series, bands)
        iq.first_latest(series)
        t = lap("flags + first/latest (pandas)", t)
        iq.year_over_year(iq.yearly_means(conn=conn, patient_id=pid))
        t = lap("yearly means", t)
        pq.health_record(conn=conn, patient_id=pid)
        pq.consent_history(conn=conn, patient_id=pid)
        t = lap("record + consents", t)
    with transaction(engine) as s:
        svc.record_view(s, patient_id=pid, actor=svc.Actor(None, "bench"))
    lap("audit row + commit (fsync)", t)


def _time_360(engine: Engine, rng: random.Random, with_obs: int, runs: int) -> dict[str, Any]:
    ids = [rng.randint(1, with_obs) for _ in range(runs)]
    for pid in ids[:10]:
        _open_360(engine, pid)
    times = []
    steps: dict[str, list[float]] = {}
    for pid in ids:
        started = time.perf_counter()
        _open_360(engine, pid, steps)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(_pct(times, 0.5), 2), "p95_ms": round(_pct(times, 0.95), 2), "n": len(times),
            "steps_p50_ms": {k: round(_pct(v, 0.5), 2) for k, v in steps.items()}}


def _write_synthea(folder: Path, rows: int, tag: str = "bench") -> int:
    patients = max(1, rows // 200)
    with (folder / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Id", "BIRTHDATE", "DEATHDATE", "SSN", "DRIVERS", "PASSPORT", "PREFIX", "FIRST", "LAST",
                    "SUFFIX", "MAIDEN", "MARITAL", "RACE", "ETHNICITY", "GENDER", "BIRTHPLACE", "ADDRESS", "CITY",
                    "STATE", "COUNTY", "ZIP", "LAT", "LON", "HEALTHCARE_EXPENSES", "HEALTHCARE_COVERAGE"])
        for p in range(patients):
            w.writerow([f"{tag}-{p}", f"{1950 + p % 40}-0{1 + p % 9}-1{p % 9}", "", "", "", "", "", f"Imp{p}",
                        f"Ort{p}", "", "", "", "", "", "MF"[p % 2], "", "", "", "", "", "", "", "", "", ""])
    codes = [("8480-6", "mm[Hg]", 130), ("8462-4", "mm[Hg]", 80), ("2339-0", "mg/dL", 100),
             ("2093-3", "mg/dL", 190), ("29463-7", "kg", 70), ("39156-5", "kg/m2", 24), ("72514-3", "{score}", 2)]
    n = 0
    with (folder / "observations.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["DATE", "PATIENT", "ENCOUNTER", "CATEGORY", "CODE", "DESCRIPTION", "VALUE", "UNITS", "TYPE"])
        while n < rows:
            p, k = n // 200, n % 200
            code, unit, base = codes[k % len(codes)]
            day = datetime(2010, 1, 1) + (datetime(2010, 1, 8) - datetime(2010, 1, 1)) * (k // len(codes))
            w.writerow([day.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{tag}-{p}", f"{tag}-enc-{p}-{k // len(codes)}",
                        "vital-signs", code, "x", f"{base + (n % 17) * 0.5:.1f}", unit, "numeric"])
            n += 1
    return n


def _time_import(engine: Engine, rows: int, runs: int, care_hook: str = "timed") -> dict[str, Any]:
    """`runs` imports of fresh files (new patients and observations each time), then a re-import of the last.

    The import ends with the care area's hook (risk and tag rules for the touched patients, services.care_automation):
    care_hook "timed" runs it and reports its seconds apart, "skip" leaves it out (on a database where its derived
    table was never built, its first call builds it from every observation: minutes at 58M rows).
    """
    from services import care_automation

    hook_seconds = [0.0]
    real_hook = care_automation.reevaluate

    def hook(session: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_hook(session, **kw) if care_hook == "timed" else care_automation.CareRun(0, 0, 0, 0)
        finally:
            hook_seconds[0] += time.perf_counter() - started

    care_automation.reevaluate = hook
    per_run: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            folder = Path(tmp) / f"run{run}"
            folder.mkdir()
            tag = f"bench{datetime.now():%Y%m%d%H%M%S}r{run}"
            n = _write_synthea(folder, rows, tag)
            load_before = os.getloadavg()[0]
            hook_seconds[0] = 0.0
            started = time.perf_counter()
            cpu = time.process_time()
            with transaction(engine) as s:
                result = run_import(s, [folder])
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            assert not result.rejected, result.rejected[:3]
            own = elapsed - hook_seconds[0]
            per_run.append({"seconds": round(elapsed, 2), "rows_per_s": round(n / own),
                            "care_hook": care_hook, "care_hook_seconds": round(hook_seconds[0], 2),
                            "rows_per_s_incl_care_hook": round(n / elapsed),
                            "python_cpu_seconds": round(cpu, 2), "rows_per_python_cpu_s": round(n / cpu),
                            "observations_imported": result.imported, "load1_before": round(load_before, 2),
                            "touched_patients": len(result.touched_patient_ids)})
            print(f"  import run {run + 1}: {n:,} rows in {own:.2f} s = {n / own:,.0f} rows/s "
                  f"(importer CPU {cpu:.2f} s, load {load_before:.2f}); care hook ({care_hook}) "
                  f"{hook_seconds[0]:.2f} s more", flush=True)
        started2 = time.perf_counter()
        with transaction(engine) as s:
            again = run_import(s, [folder])
        elapsed2 = time.perf_counter() - started2
    care_automation.reevaluate = real_hook
    assert again.imported == 0 and again.updated == 0 and not again.touched_patient_ids, again
    rates = [r["rows_per_s"] for r in per_run]
    return {"csv_rows": n, "runs": per_run, "rows_per_s": round(_pct(rates, 0.5)),
            "rows_per_s_worst": min(rates), "seconds": per_run[-1]["seconds"], "care_hook": care_hook,
            # p95 of the import's time, as a rate: 95% of imports were at least this fast
            "rows_per_s_p95": round(n / _pct([n / r for r in rates], 0.95)),
            "rows_per_s_incl_care_hook": round(_pct([r["rows_per_s_incl_care_hook"] for r in per_run], 0.5)),
            "rows_per_python_cpu_s": round(_pct([r["rows_per_python_cpu_s"] for r in per_run], 0.5)),
            "reimport_seconds": round(elapsed2, 2), "reimport_rows_per_s": round(n / elapsed2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("patients", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--with-obs", type=int, default=200_000, help="patients that get observations")
    ap.add_argument("--obs-per-patient", type=int, default=40)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--import-rows", type=int, default=200_000)
    ap.add_argument("--import-runs", type=int, default=3, help="imports of fresh files (p50 and worst reported)")
    ap.add_argument("--url", help="an existing, populated database (e.g. the kept 1M demo): nothing is loaded")
    ap.add_argument("--import-only", action="store_true", help="time the import only (no search, no 360° view)")
    ap.add_argument("--care-hook", choices=("timed", "skip"), default="timed",
                    help="the care area's re-evaluation after an import: timed apart (default) or skipped")
    ap.add_argument("--seed-demo", action="store_true", help="load with db.seed.seed_demo instead")
    ap.add_argument("--no-log", action="store_true", help="print only, do not append to bench/results")
    args = ap.parse_args(argv)
    with_obs = min(args.with_obs, args.patients)
    rng = random.Random(20260615)
    server = None
    search: dict[str, Any] | None = None
    view: dict[str, Any] | None = None
    try:
        if args.url:
            engine = make_engine(args.url)
            load: dict[str, float] = {}
        else:
            server = start_postgres(settings=DURABLE)
            engine = make_engine(server.create_database("bench"))
            upgrade(engine)
            with transaction(engine) as s:
                ensure_reference_data(s)
            started = time.perf_counter()
            if args.seed_demo:
                from db.seed import seed_demo

                seed_demo(engine, patients=args.patients, today=TODAY)
                load = {"seed_demo": round(time.perf_counter() - started, 1)}
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE"))
            else:
                load = _load(engine, args.patients, with_obs, args.obs_per_patient)
        with engine.connect() as conn:
            # Planner estimates: an exact count(*) of 58M observations would take longer than the benchmark.
            counts = {t: int(conn.execute(text("SELECT reltuples::bigint FROM pg_class WHERE relname = :t"),
                                          {"t": t}).scalar_one())
                      for t in ("patients", "observations", "encounters", "health_history")}
            pg_version = str(conn.execute(text("SELECT version()")).scalar_one()).split(" on ")[0]
            pg_settings = {k: str(conn.execute(text(f"SHOW {k}")).scalar_one())
                           for k in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers")}
        print(f"database: {counts} (estimates), {pg_settings}", flush=True)
        if not args.import_only:
            n_patients = counts["patients"] if args.url else args.patients
            search = _time_search(engine, _search_terms(engine, rng, n_patients, args.runs))
            view = _time_360(engine, rng, with_obs if not (args.seed_demo or args.url) else n_patients, args.runs)
        imp = _time_import(engine, args.import_rows, args.import_runs, args.care_hook)
    finally:
        if server is not None:
            server.stop()
    print()
    print(f"{'measure':34s} {'p50 ms':>9s} {'p95 ms':>9s}  target")
    if search is not None and view is not None:
        print(f"{'patient search (mixed keys)':34s} {search['p50_ms']:9.2f} {search['p95_ms']:9.2f}  p95 < 50 ms")
        for k, v in search["by_kind_p95_ms"].items():
            print(f"{'  ' + k:34s} {'':9s} {v:9.2f}")
        print(f"{'open a 360° view (all queries)':34s} {view['p50_ms']:9.2f} {view['p95_ms']:9.2f}  p95 < 150 ms")
        for k, v in view["steps_p50_ms"].items():
            print(f"{'  ' + k:34s} {v:9.2f}")
    print(f"{'CSV import (Synthea observations)':34s} {imp['rows_per_s']:>9,} rows/s p50 of {args.import_runs}, "
          f"{imp['rows_per_s_p95']:,} at p95 (worst {imp['rows_per_s_worst']:,}; {imp['csv_rows']:,} rows each)  "
          f">= 20,000 rows/s")
    print(f"{'  incl. the care hook':34s} {imp['rows_per_s_incl_care_hook']:>9,} rows/s ({args.care_hook})")
    print(f"{'  per second of importer CPU':34s} {imp['rows_per_python_cpu_s']:>9,} rows/s (load-independent part)")
    print(f"{'re-import of the same files':34s} {imp['reimport_rows_per_s']:>9,} rows/s (writes nothing)")
    print(f"load average now: {os.getloadavg()}")
    line = {
        "at": datetime.now().isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=ROOT, check=False).stdout.strip(),
        "patients": counts["patients"], "patients_with_observations": with_obs, "loader": "kept" if args.url
        else "seed_demo" if args.seed_demo else "generate_series", "counts": counts, "load_seconds": load,
        "search": search, "view_360": view,
        "import": imp, "runs": args.runs, "postgres": pg_version, "postgres_settings": pg_settings,
        "url": "kept database" if args.url else "throwaway",
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }
    if args.no_log:
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
