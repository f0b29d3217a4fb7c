"""Demo data: deterministic, realistic, consistent with itself, refused twice; the same rows on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from db.catalogue import DEPARTMENTS, GUIDELINES, INDICATORS, ensure_reference_data
from db.engine import make_engine, transaction
from db.migrate import upgrade
from db.models import GuidelineBand, Indicator, Patient, QuestionnaireItem
from db.seed import SeedError, card_check_digit, id_number_valid, seed_demo
from tests.support.pgserver import PgServer, PostgresUnavailable, start_postgres

N = 200
SEED = 20260101
TODAY = date(2026, 1, 1)


@dataclass
class Seeded:
    engine: Engine
    counts: dict[str, int]


def _fresh(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    engine = _fresh(tmp_path_factory.mktemp("seed_a") / "a.db")
    counts = seed_demo(engine, patients=N, seed=SEED, today=TODAY)
    yield Seeded(engine, counts)
    engine.dispose()


@pytest.fixture(scope="module")
def seeded_again(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    engine = _fresh(tmp_path_factory.mktemp("seed_b") / "b.db")
    counts = seed_demo(engine, patients=N, seed=SEED, today=TODAY)
    yield Seeded(engine, counts)
    engine.dispose()


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def _plain(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Dates as text: SQLite returns them as strings where PostgreSQL returns date objects."""
    return [tuple(str(v) if isinstance(v, date) else v for v in r) for r in rows]


def _one(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


# A fingerprint of the generated content; ids included, so the same rows got the same keys.
FINGERPRINT = {
    "patients": "SELECT id, card_no, name, name_initials, sex, birth_date, phone, id_number, address, "
                "department_id, nurse_id FROM patients ORDER BY id",
    "observations": "SELECT id, patient_id, indicator_id, encounter_id, value, source_ref FROM observations "
                    "ORDER BY id",
    "tasks": "SELECT id, patient_id, dedup_key, status, attempts, due_date FROM followup_tasks ORDER BY id",
    "responses": "SELECT id, department_id, nps_score, comment FROM survey_responses ORDER BY id",
}


def test_same_arguments_give_the_same_data(seeded: Seeded, seeded_again: Seeded) -> None:
    assert seeded.counts == seeded_again.counts
    for sql in FINGERPRINT.values():
        assert _rows(seeded.engine, sql) == _rows(seeded_again.engine, sql)


def test_another_seed_gives_other_people(seeded: Seeded, tmp_path: Path) -> None:
    engine = _fresh(tmp_path / "c.db")
    seed_demo(engine, patients=20, seed=SEED + 1, today=TODAY)
    names = {r[0] for r in _rows(engine, "SELECT name FROM patients")}
    first = {r[0] for r in _rows(seeded.engine, "SELECT name FROM patients WHERE id <= 20")}
    assert names != first
    engine.dispose()


def test_row_counts_are_reported_and_sensible(seeded: Seeded) -> None:
    c = seeded.counts
    for table, n in c.items():
        assert _one(seeded.engine, f"SELECT count(*) FROM {table}") >= n, table
    assert c["patients"] == N
    # Every patient: 2-6 yearly check-ups with the full panel of 16 indicators, consents, a health record.
    per_patient = _rows(seeded.engine, "SELECT patient_id, count(*) FROM encounters WHERE kind = 'checkup' "
                                       "GROUP BY patient_id")
    assert len(per_patient) == N and all(2 <= k <= 6 for _, k in per_patient)
    assert c["observations"] >= N * 2 * len(INDICATORS)
    assert _one(seeded.engine, "SELECT count(DISTINCT patient_id) FROM health_history") == N
    assert _one(seeded.engine, "SELECT count(DISTINCT patient_id) FROM consents") >= N * 0.95
    assert c["exam_reports"] == _one(seeded.engine, "SELECT count(*) FROM encounters WHERE kind = 'checkup'")
    for table in ("survey_invitations", "survey_responses", "survey_answers", "followup_tasks",
                  "followup_records", "interventions", "service_recovery_cases"):
        assert c[table] > 0, table
    assert c["survey_responses"] < c["survey_invitations"]  # a response rate, not every invitation answered
    kinds = {r[0] for r in _rows(seeded.engine, "SELECT DISTINCT kind FROM encounters")}
    assert kinds == {"checkup", "outpatient", "discharge"}
    # Seeded staff per department, none of whom can log in.
    nurses = _rows(seeded.engine, "SELECT department_id, count(*) FROM users WHERE role = 'nurse' "
                                  "GROUP BY department_id")
    assert len(nurses) == len(DEPARTMENTS) and all(k >= 2 for _, k in nurses)
    assert {r[0] for r in _rows(seeded.engine, "SELECT DISTINCT password_hash FROM users")} == {"!"}


def test_identity_numbers_and_cards_carry_valid_check_characters(seeded: Seeded) -> None:
    rows = _rows(seeded.engine, "SELECT card_no, id_number, birth_date, sex, phone, name, name_initials "
                                "FROM patients")
    for card, id_number, birth, sex, phone, name, initials in rows:
        assert card.startswith("CL") and len(card) == 13
        assert card_check_digit(card[2:-1]) == card[-1]
        assert id_number_valid(id_number), id_number
        assert id_number[6:14] == str(birth).replace("-", "")
        assert int(id_number[16]) % 2 == (1 if sex == "M" else 0)  # odd for men (GB 11643)
        assert len(phone) == 11 and phone[0] == "1" and phone[1] in "3456789"
        assert 2 <= len(name) <= 5 and len(initials) == len(name)
        age = (TODAY - date.fromisoformat(str(birth))).days / 365.25
        assert 18 <= age <= 90


def test_check_digit_is_iso_7064_mod_11_2() -> None:
    # The worked example of GB 11643-1999.
    assert card_check_digit("11010519491231002") == "X"
    assert id_number_valid("11010519491231002X") and not id_number_valid("11010519491231003X")
    body = "0000012345"
    check = card_check_digit(body)
    for i in range(len(body)):  # every single wrong digit is caught
        for d in "0123456789":
            if d != body[i]:
                assert card_check_digit(body[:i] + d + body[i + 1:]) != check
    swapped = "0000021345"  # neighbours swapped
    assert card_check_digit(swapped) != check
    with pytest.raises(ValueError):
        card_check_digit("CL12")


def test_observations_are_plausible_and_consistent(seeded: Seeded) -> None:
    outside = _one(seeded.engine, """
        SELECT count(*) FROM observations o JOIN indicators i ON i.id = o.indicator_id
        WHERE o.value < i.plausible_low OR o.value > i.plausible_high""")
    assert outside == 0
    assert _one(seeded.engine, "SELECT count(DISTINCT source_ref) FROM observations") == seeded.counts[
        "observations"]
    # BMI is the weight over the squared height shown beside it.
    panels = _rows(seeded.engine, """
        SELECT max(CASE WHEN i.code = 'BMI' THEN o.value END),
               max(CASE WHEN i.code = 'WEIGHT' THEN o.value END),
               max(CASE WHEN i.code = 'HEIGHT' THEN o.value END)
        FROM observations o JOIN indicators i ON i.id = o.indicator_id
        JOIN encounters e ON e.id = o.encounter_id WHERE e.kind = 'checkup' GROUP BY o.encounter_id""")
    for bmi, weight, height in panels:
        assert abs(bmi - weight / (height / 100) ** 2) <= 0.051
    # Values drift from year to year for one person; they are not copies.
    changing = _one(seeded.engine, """
        SELECT count(*) FROM (
            SELECT o.patient_id FROM observations o JOIN indicators i ON i.id = o.indicator_id
            WHERE i.code = 'WEIGHT' GROUP BY o.patient_id HAVING count(DISTINCT o.value) > 1) t""")
    assert changing >= N * 0.9


def test_diagnoses_agree_with_the_measurements(seeded: Seeded) -> None:
    def mean_latest(code: str, condition: str, has: bool) -> float:
        return float(_one(seeded.engine, f"""
            SELECT avg(o.value) FROM observations o JOIN indicators i ON i.id = o.indicator_id
            WHERE i.code = :code AND o.observed_at = (
                SELECT max(o2.observed_at) FROM observations o2 WHERE o2.patient_id = o.patient_id
                AND o2.indicator_id = o.indicator_id)
            AND o.patient_id {'' if has else 'NOT'} IN (
                SELECT patient_id FROM health_history WHERE kind = 'condition' AND code LIKE :cond)""",
                               code=code, cond=condition + "%"))

    assert mean_latest("SBP", "I10", True) - mean_latest("SBP", "I10", False) >= 8
    assert mean_latest("FPG", "E11", True) - mean_latest("FPG", "E11", False) >= 1.0
    smokers = _one(seeded.engine, "SELECT count(*) FROM health_history WHERE code = 'smoking' "
                                  "AND detail LIKE '%current%'")
    assert 0 < smokers < N


def test_followup_tasks_are_done_overdue_and_due_today(seeded: Seeded) -> None:
    e = seeded.engine
    today = TODAY.isoformat()
    pending = "SELECT count(*) FROM followup_tasks WHERE status = 'pending' AND due_date "
    assert _one(e, pending + "< :d", d=today) > 0  # overdue
    assert _one(e, pending + "= :d", d=today) > 0  # due today
    assert _one(e, pending + "> :d", d=today) > 0  # upcoming
    done = "SELECT count(*) FROM followup_tasks WHERE status = 'done' AND date(completed_at) "
    on_time = _one(e, done + "<= due_date")
    late = _one(e, done + "> due_date")
    assert on_time > late > 0
    # Done tasks were reached on their last call; failed calls are recorded too.
    assert _one(e, """
        SELECT count(*) FROM followup_tasks t
        WHERE t.status = 'done' AND t.kind = 'followup' AND NOT EXISTS (
            SELECT 1 FROM followup_records r
            WHERE r.task_id = t.id AND r.outcome IN ('reached', 'refused'))""") == 0
    outcomes = {r[0] for r in _rows(e, "SELECT DISTINCT outcome FROM followup_records")}
    assert {"reached", "no_answer"} <= outcomes
    assert _one(e, "SELECT count(*) FROM followup_tasks t WHERE attempts != (SELECT count(*) FROM "
                   "followup_records r WHERE r.task_id = t.id) AND kind = 'followup'") == 0
    # Nothing happened today or later: history ends yesterday.
    assert _one(e, "SELECT count(*) FROM followup_records WHERE contacted_at >= :d", d=today) == 0
    assert _one(e, "SELECT count(*) FROM encounters WHERE started_at >= :d", d=today) == 0
    assert _one(e, "SELECT count(*) FROM survey_responses WHERE submitted_at >= :d", d=today) == 0


def test_nps_differs_by_department(seeded: Seeded) -> None:
    nps_sql = ("100.0 * (sum(CASE WHEN nps_score >= 9 THEN 1 ELSE 0 END) "
               "- sum(CASE WHEN nps_score <= 6 THEN 1 ELSE 0 END)) / count(*)")
    by_dept = _rows(seeded.engine, f"SELECT department_id, count(*), {nps_sql} FROM survey_responses "
                                   "GROUP BY department_id HAVING count(*) >= 10")
    assert len(by_dept) >= 3
    scores = [s for _, _, s in by_dept]
    assert max(scores) - min(scores) >= 10
    scores_0_10 = {r[0] for r in _rows(seeded.engine, "SELECT DISTINCT nps_score FROM survey_responses")}
    assert scores_0_10 <= set(range(11)) and {10, 9, 8, 7, 6} <= scores_0_10
    # Each response has its NPS answer row and Likert answers on 1-5; some free-text comments in Chinese.
    nps_item = _one(seeded.engine, "SELECT id FROM questionnaire_items WHERE item_code = 'nps'")
    assert _one(seeded.engine, "SELECT count(*) FROM survey_answers WHERE item_id = :i", i=nps_item) == (
        seeded.counts["survey_responses"])
    assert _one(seeded.engine, """
        SELECT count(*) FROM survey_answers a JOIN questionnaire_items q ON q.id = a.item_id
        WHERE q.qtype = 'likert_5' AND (a.value_num < 1 OR a.value_num > 5)""") == 0
    comments = [r[0] for r in _rows(seeded.engine,
                                    "SELECT comment FROM survey_responses WHERE comment IS NOT NULL")]
    assert comments and all(any("\u4e00" <= ch <= "\u9fff" for ch in c) for c in comments)


def test_orm_reads_the_bulk_rows(seeded: Seeded) -> None:
    with Session(seeded.engine) as s:
        p = s.scalars(select(Patient).order_by(Patient.id)).first()
        assert p is not None
        assert isinstance(p.enrolled_at, datetime) and isinstance(p.birth_date, date)
        assert isinstance(p.channel_prefs, list) and p.channel_prefs
        assert p.id_type == "resident" and p.status in ("active", "inactive")


def test_a_second_seed_is_refused(seeded: Seeded) -> None:
    before = _one(seeded.engine, "SELECT count(*) FROM observations")
    with pytest.raises(SeedError, match=f"already has {N} patients"):
        seed_demo(seeded.engine, patients=10, seed=SEED, today=TODAY)
    assert _one(seeded.engine, "SELECT count(*) FROM patients") == N
    assert _one(seeded.engine, "SELECT count(*) FROM observations") == before


def test_reference_data_is_idempotent(tmp_path: Path) -> None:
    engine = _fresh(tmp_path / "ref.db")

    def snapshot() -> tuple[Any, ...]:
        with Session(engine) as s:
            return (
                s.scalars(select(func.count()).select_from(Indicator)).one(),
                tuple(s.scalars(select(GuidelineBand.id).order_by(GuidelineBand.id))),
                s.scalars(select(func.count()).select_from(QuestionnaireItem)).one(),
                tuple(r[0] for r in s.execute(text("SELECT code FROM departments ORDER BY id"))),
            )

    with transaction(engine) as s:
        ensure_reference_data(s)
    first = snapshot()
    with transaction(engine) as s:
        ensure_reference_data(s)
    assert snapshot() == first
    assert first[0] == len(INDICATORS) and first[2] == 8
    engine.dispose()


def test_guideline_bands_tile_the_line() -> None:
    # Low inclusive, high exclusive: each band starts where the previous one ended, without gaps or overlaps.
    for g in GUIDELINES:
        assert g.source and g.version
        for code, bands in g.bands.items():
            for sex in {b.sex for b in bands}:
                chain = sorted((b for b in bands if b.sex == sex),
                               key=lambda b: -1e9 if b.low is None else b.low)
                assert chain[0].low is None and chain[-1].high is None, code
                for a, b in zip(chain, chain[1:], strict=False):
                    assert a.high == b.low, code
    loinc = {i.code: i.loinc_codes for i in INDICATORS}
    assert "8480-6" in loinc["SBP"] and "4548-4" in loinc["HBA1C"] and "2345-7" in loinc["FPG"]


# --- the same seed on PostgreSQL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_pg_server() -> Iterator[PgServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CARELOOP_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required (CARELOOP_REQUIRE_PG=1) but: {exc}")
        pytest.skip(f"no PostgreSQL binaries: {exc}")
    yield server
    server.stop()


def test_postgresql_gets_the_same_rows_and_its_indexes_back(seeded: Seeded, seed_pg_server: PgServer) -> None:
    reference = make_engine(seed_pg_server.create_database("seed_reference"))
    upgrade(reference)
    engine = make_engine(seed_pg_server.create_database("seed_demo"))
    upgrade(engine)
    try:
        counts = seed_demo(engine, patients=N, seed=SEED, today=TODAY)
        assert counts == seeded.counts
        for name, sql in FINGERPRINT.items():
            assert _plain(_rows(engine, sql)) == _plain(_rows(seeded.engine, sql)), name
        # The bulk load dropped indexes and constraints; they are all back, with the migration's definitions.
        schema_sql = """
            SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace AND convalidated ORDER BY 1, 2"""
        assert _rows(engine, schema_sql) == _rows(reference, schema_sql)
        # Sequences moved past the ids the seed assigned: the next ORM insert does not collide.
        with transaction(engine) as s:
            s.add(Patient(card_no="CLTEST", name="测试", sex="F", enrolled_at=datetime(2026, 1, 1),
                          updated_at=datetime(2026, 1, 1)))
            s.flush()
        assert _one(engine, "SELECT max(id) FROM patients") == N + 1
        with pytest.raises(SeedError):
            seed_demo(engine, patients=5, seed=SEED, today=TODAY)
    finally:
        engine.dispose()
        reference.dispose()
