"""Questionnaire templates and versioning, PHQ-9/GAD-7 scoring, survey submission, the detractor loop, imports."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import FollowupTask, ServiceRecoveryCase, SurveyAnswer, SurveyResponse
from queries.metrics import nps
from services import questionnaires as qs
from services import recovery, surveys
from services.errors import UserError
from services.importers.base import REGISTRY, ImportOptions
from services.importers.survey_csv import load_mapping, parse_timestamp
from tests.factories import NOW, create_patient, create_user, department
from tests.factories_satisfaction import builtins, satisfaction, submit

ROOT = Path(__file__).resolve().parents[2]
SUDZILLA = ROOT.parent / "shared" / "reference-data" / "nps-survey-sudzilla"
SUDZILLA_MAPPING = ROOT / "services" / "importers" / "mappings" / "sudzilla_survey.toml"


def _count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- NPS worked examples (Bain) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "pa", "d", "expected"),
    [
        (5, 3, 2, 30.0),     # 50% - 20%
        (0, 10, 0, 0.0),     # passives only: zero, not undefined
        (0, 0, 4, -100.0),
        (7, 0, 0, 100.0),
        (45, 35, 20, 25.0),  # a textbook example: 45% promoters, 20% detractors
    ],
)
def test_nps_worked_examples(p: int, pa: int, d: int, expected: float) -> None:
    r = nps(p, pa, d)
    assert r.nps == pytest.approx(expected)
    assert r.ci_low is not None and r.ci_high is not None and r.ci_low <= expected <= r.ci_high


# --- built-ins and scoring ---------------------------------------------------------------------


def test_builtins_exist_once(session: Session) -> None:
    first = builtins(session)
    again = builtins(session)
    assert set(first) == {"satisfaction", "intake", "phq9", "gad7"}
    assert {k: v.id for k, v in first.items()} == {k: v.id for k, v in again.items()}
    assert len(qs.items_of(session, first["phq9"].id)) == 9
    assert len(qs.items_of(session, first["gad7"].id)) == 7
    intake_codes = {i.item_code for i in qs.items_of(session, first["intake"].id)}
    assert {"chief_complaint", "symptoms", "history", "medications", "allergies", "smoking"} <= intake_codes
    sat_items = qs.items_of(session, first["satisfaction"].id)
    assert [i.item_code for i in sat_items if i.is_nps] == ["nps"]


PHQ9_CASES = [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
              (15, "moderately_severe"), (19, "moderately_severe"), (20, "severe"), (27, "severe")]
GAD7_CASES = [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
              (15, "severe"), (21, "severe")]


def _answers_summing_to(prefix: str, n_items: int, total: int) -> dict[str, int]:
    out = {}
    for i in range(1, n_items + 1):
        v = min(3, total)
        out[f"{prefix}_{i}"] = v
        total -= v
    assert total == 0
    return out


@pytest.mark.parametrize(("total", "band"), PHQ9_CASES)
def test_phq9_bands(total: int, band: str) -> None:
    s = qs.score(qs.PHQ9.score_rule, _answers_summing_to("phq9", 9, total))
    assert s is not None and (s.total, s.band) == (total, band)


@pytest.mark.parametrize(("total", "band"), GAD7_CASES)
def test_gad7_bands(total: int, band: str) -> None:
    s = qs.score(qs.GAD7.score_rule, _answers_summing_to("gad7", 7, total))
    assert s is not None and (s.total, s.band) == (total, band)


def test_phq9_submission_stores_total_and_needs_every_item(session: Session) -> None:
    q = builtins(session)["phq9"]
    answers = _answers_summing_to("phq9", 9, 12)
    r = surveys.submit_response(session, questionnaire_id=q.id, answers=answers, submitted_at=NOW, now=NOW)
    assert r.response.total_score == 12 and r.case is None
    assert qs.band_of(q.score_rule, r.response.total_score) == "moderate"
    del answers["phq9_9"]
    with pytest.raises(UserError) as err:
        surveys.submit_response(session, questionnaire_id=q.id, answers=answers, submitted_at=NOW, now=NOW)
    assert err.value.key == "survey.required_missing" and err.value.params["item"] == "phq9_9"
    with pytest.raises(UserError) as err:
        surveys.submit_response(session, questionnaire_id=q.id, answers={**answers, "phq9_9": 4},
                                submitted_at=NOW, now=NOW)
    assert err.value.key == "survey.not_an_option"


# --- versioning ----------------------------------------------------------------------------------


def _custom(text: str = "How was the food?") -> qs.TemplateSpec:
    return qs.TemplateSpec("food", "custom", "餐饮调查", "Food survey", (
        qs.ItemSpec("food", "likert_5", "饭菜如何？", text, required=True, top_box=(5.0,)),
        qs.ItemSpec("note", "text", "备注", "Note"),
    ))


def test_template_without_answers_is_edited_in_place(session: Session) -> None:
    first = qs.save_template(session, _custom())
    assert (first.action, first.questionnaire.version) == ("created", 1)
    assert qs.save_template(session, _custom()).action == "unchanged"
    edited = qs.save_template(session, _custom("Was the food good?"))
    assert (edited.action, edited.questionnaire.id, edited.questionnaire.version) == (
        "edited", first.questionnaire.id, 1)
    assert qs.items_of(session, first.questionnaire.id)[0].text_en == "Was the food good?"


def test_template_with_answers_gets_a_new_version(session: Session) -> None:
    v1 = qs.save_template(session, _custom()).questionnaire
    old = surveys.submit_response(session, questionnaire_id=v1.id, answers={"food": 4}, submitted_at=NOW, now=NOW)
    v1_item_ids = [i.id for i in qs.items_of(session, v1.id)]
    out = qs.save_template(session, _custom("Was the food good?"))
    assert out.action == "new_version" and out.questionnaire.version == 2 and out.questionnaire.id != v1.id
    session.refresh(v1)
    assert v1.status == "retired"
    # The old answer still points at version 1 and its item, whose text is unchanged.
    assert old.response.questionnaire_id == v1.id
    assert [i.id for i in qs.items_of(session, v1.id)] == v1_item_ids
    assert qs.items_of(session, v1.id)[0].text_en == "How was the food?"
    assert qs.latest(session, "food") is not None and qs.latest(session, "food").version == 2  # type: ignore[union-attr]
    assert "food" in {q.code for q in qs.active_questionnaires(session)}


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (qs.TemplateSpec("x", "custom", "标题", "Title", ()), "questionnaire.no_items"),
        (qs.TemplateSpec("x", "nonsense", "标题", "Title", (qs.ItemSpec("a", "text", "a", "a"),)),
         "questionnaire.bad_kind"),
        (qs.TemplateSpec("x", "custom", "标题", "Title", (qs.ItemSpec("a", "text", "a", "a"),
                                                       qs.ItemSpec("a", "text", "b", "b"))),
         "questionnaire.duplicate_item"),
        (qs.TemplateSpec("x", "custom", "标题", "Title", (qs.ItemSpec("a", "single", "a", "a"),)),
         "questionnaire.options_required"),
        (qs.TemplateSpec("x", "custom", "标题", "Title", (qs.ItemSpec("a", "likert_5", "a", "a", is_nps=True),)),
         "questionnaire.nps_needs_scale10"),
        (qs.TemplateSpec("x", "custom", "标题", "Title", (qs.ItemSpec("a", "likert_5", "a", "a", top_box=(6.0,)),)),
         "questionnaire.bad_top_box"),
        (qs.TemplateSpec("x", "custom", "标题", "Title", (qs.ItemSpec("a", "radio", "a", "a"),)),
         "questionnaire.bad_qtype"),
    ],
)
def test_bad_templates_are_refused(session: Session, spec: qs.TemplateSpec, key: str) -> None:
    with pytest.raises(UserError) as err:
        qs.save_template(session, spec)
    assert err.value.key == key
    assert qs.latest(session, "x") is None


# --- submission ----------------------------------------------------------------------------------


def test_submission_copies_nps_and_scores(session: Session) -> None:
    r = submit(session, 8, answers={"doctors": 5, "nurses": 4, "waiting": None, "overall": 8, "comment": " 挺好 "})
    assert r.created and r.case is None
    assert r.response.nps_score == 8
    assert r.response.total_score == pytest.approx(4.5)  # mean of the answered 1-5 items; skipped left out
    assert r.response.comment == "挺好"
    assert _count(session, SurveyAnswer) == 5  # the skipped item has no answer row


@pytest.mark.parametrize(
    ("answers", "key"),
    [
        ({"nps": 11}, "survey.out_of_range"),
        ({"nps": -1}, "survey.out_of_range"),
        ({"nps": 7.5}, "survey.out_of_range"),
        ({"nps": "ten"}, "survey.not_a_number"),
        ({"nps": 9, "doctors": 0}, "survey.out_of_range"),
        ({"doctors": 5}, "survey.required_missing"),
        ({"nps": 9, "parking": 3}, "survey.unknown_items"),
    ],
)
def test_bad_answers_write_nothing(session: Session, answers: dict[str, Any], key: str) -> None:
    q = satisfaction(session)
    with pytest.raises(UserError) as err:
        surveys.submit_response(session, questionnaire_id=q.id, answers=answers, submitted_at=NOW, now=NOW)
    assert err.value.key == key
    assert _count(session, SurveyResponse) == 0 and _count(session, SurveyAnswer) == 0


def test_duplicate_submission_is_not_counted_twice(session: Session) -> None:
    p = create_patient(session)
    q = satisfaction(session)
    first = surveys.submit_response(session, questionnaire_id=q.id, answers={"nps": 3}, patient_id=p.id,
                                    submitted_at=NOW, now=NOW)
    again = surveys.submit_response(session, questionnaire_id=q.id, answers={"nps": 3}, patient_id=p.id,
                                    submitted_at=NOW, now=NOW)
    assert first.created and not again.created and again.response.id == first.response.id
    assert _count(session, SurveyResponse) == 1 and _count(session, ServiceRecoveryCase) == 1


# --- the detractor loop --------------------------------------------------------------------------


def test_detractor_opens_a_case_and_a_worklist_task_for_the_patients_nurse(session: Session) -> None:
    dept = department(session, "CARD")
    nurse = create_user(session, role="nurse", department_id=dept.id)
    p = create_patient(session, department_id=dept.id, nurse_id=nurse.id)
    r = submit(session, 6, patient_id=p.id)
    case = r.case
    assert case is not None and case.status == "open" and case.owner_id == nurse.id
    assert case.department_id == dept.id
    assert case.sla_due_at == NOW + timedelta(hours=48)
    task = session.scalars(select(FollowupTask).where(FollowupTask.dedup_key == f"recovery:{case.id}")).one()
    assert (task.kind, task.assignee_id, task.due_date, task.status, task.patient_id) == (
        "service_recovery", nurse.id, (NOW + timedelta(hours=48)).date(), "pending", p.id)


def test_department_nurse_when_the_patient_has_none(session: Session) -> None:
    dept = department(session, "CARD")
    nurse = create_user(session, role="nurse", department_id=dept.id)
    p = create_patient(session, department_id=dept.id)
    case = submit(session, 0, patient_id=p.id).case
    assert case is not None and case.owner_id == nurse.id


@pytest.mark.parametrize(("score", "overall", "opens"), [(7, None, False), (9, 9, False), (6, None, True),
                                                         (9, 4, True), (9, 5, False)])
def test_which_responses_open_a_case(session: Session, score: int, overall: int | None, opens: bool) -> None:
    r = submit(session, score, answers={"overall": overall})
    assert (r.case is not None) == opens
    assert _count(session, FollowupTask) == 0  # no patient known: the case waits for quality, no task


def test_configured_item_and_threshold_and_sla(session: Session) -> None:
    spec = qs.TemplateSpec("ward", "satisfaction", "病房", "Ward", (
        qs.ItemSpec("nps", "scale_0_10", "推荐", "Recommend", required=True, is_nps=True, top_box=(9.0, 10.0)),
        qs.ItemSpec("food", "likert_5", "饭菜", "Food", top_box=(5.0,)),
    ), {"recovery": {"item": "food", "below": 3, "sla_hours": 24}})
    q = qs.save_template(session, spec).questionnaire
    ok = surveys.submit_response(session, questionnaire_id=q.id, answers={"nps": 10, "food": 3}, submitted_at=NOW,
                                 now=NOW)
    low = surveys.submit_response(session, questionnaire_id=q.id, answers={"nps": 10, "food": 2}, submitted_at=NOW,
                                  now=NOW)
    assert ok.case is None
    assert low.case is not None and low.case.sla_due_at == NOW + timedelta(hours=24)


def test_working_and_closing_a_case(session: Session) -> None:
    dept = department(session, "CARD")
    nurse = create_user(session, role="nurse", department_id=dept.id)
    p = create_patient(session, department_id=dept.id, nurse_id=nurse.id)
    case = submit(session, 2, patient_id=p.id).case
    assert case is not None
    v = case.version
    recovery.log_attempt(session, case_id=case.id, expected_version=v, reached=False, actor_id=nurse.id)
    assert case.attempts == 1 and case.status == "in_progress" and case.version == v + 1
    with pytest.raises(UserError) as err:  # a screen that read the old version loses
        recovery.log_attempt(session, case_id=case.id, expected_version=v, reached=True)
    assert err.value.key == "recovery.stale"
    with pytest.raises(UserError) as err:
        recovery.close_case(session, case_id=case.id, expected_version=case.version, root_cause="waiting",
                            resolution="  ")
    assert err.value.key == "recovery.resolution_required"
    with pytest.raises(UserError) as err:
        recovery.close_case(session, case_id=case.id, expected_version=case.version, root_cause="aliens",
                            resolution="x")
    assert err.value.key == "recovery.bad_root_cause"
    with pytest.raises(UserError) as err:
        recovery.close_case(session, case_id=case.id, expected_version=case.version, root_cause="waiting",
                            resolution="x", rerating=11)
    assert err.value.key == "recovery.bad_rerating"
    closed_at = NOW + timedelta(hours=20)
    recovery.close_case(session, case_id=case.id, expected_version=case.version, root_cause="waiting",
                        resolution="Apologised; fast-track booking next visit", rerating=8, now=closed_at)
    assert (case.status, case.closed_at, case.rerating, case.root_cause) == ("closed", closed_at, 8, "waiting")
    task = session.scalars(select(FollowupTask).where(FollowupTask.dedup_key == f"recovery:{case.id}")).one()
    assert (task.status, task.completed_at, task.attempts) == ("done", closed_at, 1)
    with pytest.raises(UserError) as err:
        recovery.log_attempt(session, case_id=case.id, expected_version=case.version, reached=True)
    assert err.value.key == "recovery.already_closed"


def test_assign_owner(session: Session) -> None:
    q_user = create_user(session, role="quality")
    admin = create_user(session, role="admin")
    case = submit(session, 1).case
    assert case is not None and case.owner_id is None
    with pytest.raises(UserError):
        recovery.assign(session, case_id=case.id, expected_version=case.version, owner_id=admin.id)
    recovery.assign(session, case_id=case.id, expected_version=case.version, owner_id=q_user.id)
    assert case.owner_id == q_user.id


# --- CSV import ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("11/1/2019 8:51:12", "mdy", datetime(2019, 11, 1, 8, 51, 12)),
        ("2019-11-01 08:51:12.402", "mdy", datetime(2019, 11, 1, 8, 51, 12, 402000)),
        ("1/11/2019 8:51", "dmy", datetime(2019, 11, 1, 8, 51)),
        ("2019/11/01 08:51", "mdy", datetime(2019, 11, 1, 8, 51)),
        ("2019年11月1日 08:51", "mdy", datetime(2019, 11, 1, 8, 51)),
        ("2019-11-01T00:51:12Z", "mdy", datetime(2019, 11, 1, 8, 51, 12)),  # UTC -> Asia/Shanghai
        ("11/01/2019 08:51 PM", "mdy", datetime(2019, 11, 1, 20, 51)),
        ("01.11.2019 08:51", "mdy", datetime(2019, 11, 1, 8, 51)),
    ],
)
def test_timestamps_in_common_formats(text: str, order: str, expected: datetime) -> None:
    assert parse_timestamp(text, date_order=order) == expected


def test_unreadable_timestamp() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("last tuesday")


def _csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


MAPPING: dict[str, Any] = {
    "questionnaire": "satisfaction", "source": "kiosk-export", "channel": "kiosk",
    "columns": {"submitted_at": "提交时间", "respondent": "编号", "department": "科室", "comment": "意见"},
    "items": {"nps": "推荐", "overall": "总体"},
}


def test_import_rows_rejections_and_rerun(session: Session, tmp_path: Path) -> None:
    satisfaction(session)
    department(session, "CARD")
    f = _csv(tmp_path / "s.csv", [
        ["编号", "提交时间", "科室", "推荐", "总体", "意见"],
        ["a1", "2026/03/01 09:00", "CARD", "10", "9", "很好"],
        ["a2", "3/2/2026 10:00", "card", "3", "2", "等太久"],
        ["a3", "not a time", "CARD", "9", "9", ""],
        ["a4", "2026-03-03 10:00", "CARD", "12", "9", ""],
        ["a5", "2026-03-03 11:00", "NOPE", "9", "9", ""],
        ["a1", "2026/03/01 09:00", "CARD", "10", "9", "很好"],  # the same respondent again
    ])
    importer = REGISTRY["survey-csv"]
    out = importer(session, [f], ImportOptions(mapping=MAPPING))
    assert (out.imported, out.skipped) == (2, 1)
    assert [(r.location, r.reason_key) for r in out.rejected] == [
        ("line 4", "survey_import.bad_timestamp"), ("line 5", "survey.out_of_range"),
        ("line 6", "survey_import.unknown_department")]
    assert _count(session, SurveyResponse) == 2 and _count(session, ServiceRecoveryCase) == 1
    r2 = session.scalars(select(SurveyResponse).where(SurveyResponse.source_ref == "a2")).one()
    assert (r2.submitted_at, r2.channel, r2.comment, r2.nps_score) == (datetime(2026, 3, 2, 10), "kiosk", "等太久", 3)
    again = importer(session, [f], ImportOptions(mapping=MAPPING))
    assert (again.imported, again.skipped) == (0, 3)
    assert _count(session, SurveyResponse) == 2


def test_import_strict_and_dry_run_write_nothing(session: Session, tmp_path: Path) -> None:
    satisfaction(session)
    department(session, "CARD")
    f = _csv(tmp_path / "s.csv", [["编号", "提交时间", "科室", "推荐", "总体", "意见"],
                                  ["b1", "2026-03-01 09:00", "CARD", "10", "", ""],
                                  ["b2", "2026-03-01 09:00", "CARD", "x", "", ""]])
    importer = REGISTRY["survey-csv"]
    strict = importer(session, [f], ImportOptions(mapping=MAPPING, strict=True))
    assert strict.imported == 0 and len(strict.rejected) == 1
    dry = importer(session, [f], ImportOptions(mapping=MAPPING, dry_run=True))
    assert dry.imported == 1
    assert _count(session, SurveyResponse) == 0


def test_file_with_unknown_or_missing_columns_is_rejected_whole(session: Session, tmp_path: Path) -> None:
    satisfaction(session)
    department(session, "CARD")
    importer = REGISTRY["survey-csv"]
    extra = _csv(tmp_path / "extra.csv", [["编号", "提交时间", "科室", "推荐", "总体", "意见", "停车"],
                                          ["c1", "2026-03-01 09:00", "CARD", "10", "9", "", "ok"]])
    out = importer(session, [extra], ImportOptions(mapping=MAPPING))
    assert [r.reason_key for r in out.rejected] == ["survey_import.unknown_columns"]
    assert out.rejected[0].params["columns"] == "停车"
    missing = _csv(tmp_path / "missing.csv", [["编号", "提交时间", "推荐"], ["c2", "2026-03-01 09:00", "10"]])
    out = importer(session, [missing], ImportOptions(mapping=MAPPING))
    assert [r.reason_key for r in out.rejected] == ["survey_import.missing_columns"]
    assert _count(session, SurveyResponse) == 0


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        (None, "survey_import.mapping_required"),
        ({"columns": {"submitted_at": "t"}}, "survey_import.mapping_needs_items"),
        ({"items": {"nps": "n"}}, "survey_import.mapping_needs_time"),
        ({"columns": {"submitted_at": "t", "shoe_size": "s"}, "items": {"nps": "n"}},
         "survey_import.mapping_bad_role"),
        ({"columns": {"submitted_at": "t"}, "items": {"parking": "p"}}, "survey_import.mapping_unknown_item"),
        ({"columns": {"submitted_at": "t"}, "items": {"nps": "n"}, "questionnaire": "nope"},
         "questionnaire.not_found"),
    ],
)
def test_bad_mappings(session: Session, tmp_path: Path, mapping: dict[str, Any] | None, key: str) -> None:
    satisfaction(session)
    out = REGISTRY["survey-csv"](session, [tmp_path / "x.csv"], ImportOptions(mapping=mapping))
    assert [(r.file, r.location, r.reason_key) for r in out.rejected] == [("x.csv", "mapping", key)]
    assert out.imported == 0


def _sudzilla_expected() -> tuple[int, float]:
    with (SUDZILLA / "input_01.csv").open(encoding="utf-8-sig", newline="") as fh:
        scores = [int(r[1]) for r in list(csv.reader(fh))[1:] if r]
    r = nps(sum(s >= 9 for s in scores), sum(7 <= s <= 8 for s in scores), sum(s <= 6 for s in scores))
    assert r.nps is not None
    return len(scores), r.nps


@pytest.mark.skipif(not SUDZILLA.exists(), reason="../shared/reference-data not present")
@pytest.mark.parametrize("first", ["input_01.csv", "input_02.csv"])
def test_sudzilla_imports_with_both_timestamp_formats(session: Session, first: str) -> None:
    from queries.filters import DataScope
    from queries.satisfaction import SurveyFilter, nps_summary

    satisfaction(session)
    mapping = load_mapping(SUDZILLA_MAPPING)
    importer = REGISTRY["survey-csv"]
    n, expected = _sudzilla_expected()
    out = importer(session, [SUDZILLA / first], ImportOptions(mapping=mapping))
    assert out.rejected == [] and out.imported == n
    other = "input_02.csv" if first == "input_01.csv" else "input_01.csv"
    # The other file holds the same answers in the other timestamp format: all duplicates, none counted twice.
    out2 = importer(session, [SUDZILLA / other], ImportOptions(mapping=mapping))
    assert out2.rejected == [] and (out2.imported, out2.skipped) == (0, n)
    session.flush()
    times = session.scalars(select(SurveyResponse.submitted_at).order_by(SurveyResponse.submitted_at)).all()
    assert times[0].replace(microsecond=0) == datetime(2019, 11, 1, 8, 51, 12)
    f = SurveyFilter(datetime(2019, 1, 1).date(), datetime(2019, 12, 31).date())
    result = nps_summary(conn=session.connection(), f=f, scope=DataScope("quality", None))
    assert result.responses == n and result.nps == pytest.approx(expected)
    detractors = result.detractors
    assert _count(session, ServiceRecoveryCase) >= detractors


def test_builder_text_forms_round_trip() -> None:
    options = ({"value": 0, "en": "Not at all", "zh": "完全不会"}, {"value": "yes", "en": "Yes", "zh": "是"})
    assert qs.options_from_text(qs.options_to_text(options)) == options
    assert qs.options_from_text(qs.options_to_text(list(range(3)))) == (0, 1, 2)
    assert qs.options_from_text("  ") is None
    assert qs.top_box_from_text("9，10") == (9.0, 10.0)
    with pytest.raises(UserError):
        qs.top_box_from_text("nine")
    with pytest.raises(UserError):
        qs.options_from_text("=Yes/是")


def test_find_patient_by_card_is_audited(session: Session) -> None:
    from db.models import AuditLog

    p = create_patient(session, card_no="K123")
    found = surveys.find_patient(session, card_no=" K123 ", actor="nurse1")
    assert (found.id, found.card_no) == (p.id, "K123")
    assert session.scalars(select(AuditLog.action).where(AuditLog.patient_id == p.id)).all() == ["patient.read"]
    with pytest.raises(UserError) as err:
        surveys.find_patient(session, card_no="nope")
    assert err.value.key == "survey.unknown_card"
    with pytest.raises(UserError):
        surveys.find_patient(session, card_no=" ")


def test_intake_form_answers(session: Session) -> None:
    q = builtins(session)["intake"]
    out = surveys.submit_response(session, questionnaire_id=q.id, submitted_at=NOW, now=NOW, answers={
        "chief_complaint": "胸闷两周", "symptoms": ["chest_pain", "palpitations"], "onset_date": "2026-06-01",
        "allergies": "no", "exercise_days": 3})
    rows = {a.item_id: (a.value_num, a.value_text) for a in session.scalars(
        select(SurveyAnswer).where(SurveyAnswer.response_id == out.response.id))}
    assert sorted(rows.values(), key=str) == sorted([
        (None, "胸闷两周"), (None, '["chest_pain", "palpitations"]'), (None, "2026-06-01"), (None, "no"),
        (3.0, None)], key=str)
    with pytest.raises(UserError) as err:
        surveys.submit_response(session, questionnaire_id=q.id, submitted_at=NOW, now=NOW, answers={
            "chief_complaint": "x", "allergies": "no", "onset_date": "June"})
    assert err.value.key == "survey.not_a_date"
    with pytest.raises(UserError) as err:
        surveys.submit_response(session, questionnaire_id=q.id, submitted_at=NOW, now=NOW, answers={
            "chief_complaint": "x", "allergies": "no", "symptoms": ["flu"]})
    assert err.value.key == "survey.not_an_option"
