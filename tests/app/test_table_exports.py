"""AppTest of the table exports: every data table on every page has CSV and Excel buttons whose files hold what
the table shows (headers, rows, masking), named after the table and the filter; clicking one writes an audit row."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest
import streamlit as st
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

from db.engine import make_engine
from db.models import (
    AuditLog,
    Department,
    EducationItem,
    ExperimentAssignment,
    FollowupRecord,
    FollowupTask,
    Intervention,
    Patient,
    User,
)
from db.seed import seed_demo
from i18n import t
from services import auth, clock
from services import risk as risk_svc
from services.auth import LoginPolicy
from services.experiments import create_experiment
from services.masking import mask_phone
from services.messaging.queue import RULES
from services.patients import Duplicate, PatientInput
from tests.factories import create_patient, create_user
from tests.factories_care import create_encounter
from tests.factories_messaging import message

ROLES = ("admin", "manager", "nurse", "quality")
PASSWORD = "correct horse battery"
TIMEOUT = 90


@dataclass
class Captured:
    """The download buttons the last script run drew: key -> (label, file name, data callable)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def exports(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if str(c.get("key", "")).startswith("export_")]


@pytest.fixture(scope="module")
def seeded_file(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo database (dated today, so the default periods of the dashboards hold data) with one
    user per role who can log in; the nurse takes over a seeded nurse's tasks."""
    path = tmp_path_factory.mktemp("exports") / "seeded.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    seed_demo(engine, patients=400, seed=7, today=clock.today())
    with Session(engine) as s, s.begin():
        # The nurse's department: the one with the most pending tasks, so her worklist has rows.
        busiest = s.execute(select(FollowupTask.department_id, func.count()).where(FollowupTask.status == "pending")
                            .group_by(FollowupTask.department_id).order_by(func.count().desc())).first()
        assert busiest is not None
        dept_id = busiest[0]
        users = {role: create_user(s, username=role, password=PASSWORD, role=role, display_name=f"{role} 用户",
                                   department_id=dept_id if role == "nurse" else None) for role in ROLES}
        s.flush()
        s.execute(update(FollowupTask).where(FollowupTask.department_id == dept_id)
                  .values(assignee_id=users["nurse"].id))
        # What the demo seed leaves to the jobs and the admins: risk results, an education item and messages.
        risk_svc.assess_all(s, as_of=clock.now())
        item = EducationItem(title="高血压饮食", body=None, link=None, language="zh_CN", tags=[], risk_levels=[],
                             reviewed_by="qa", reviewed_on=clock.today(), active=True, created_at=clock.now())
        s.add(item)
        s.flush()
        # Return risk needs both outcomes in its history: 30 patients came back after a visit, 30 did not.
        cutoff = clock.now() - timedelta(days=365)
        for i in range(60):
            p = create_patient(s, department_id=dept_id, card_no=f"RR{i:05d}")
            create_encounter(s, patient_id=p.id, at=cutoff - timedelta(days=100))
            if i % 2:
                create_encounter(s, patient_id=p.id, at=cutoff + timedelta(days=100))
        # An A/B test with patients in both arms, for the engagement page's results table.
        exp = create_experiment(s, code="reminder_channel", rule=next(iter(RULES)), variant="channel", arm_a="sms",
                                arm_b="wechat", started_on=clock.today(), user=None, now=clock.now())
        for n, pid in enumerate(s.scalars(select(Patient.id).order_by(Patient.id).limit(20))):
            s.add(ExperimentAssignment(experiment_id=exp.id, patient_id=pid, arm="ab"[n % 2],
                                       assigned_at=clock.now() - timedelta(days=30)))
        for pid in s.scalars(select(Patient.id).order_by(Patient.id).limit(4)):
            message(s, pid, scheduled_at=clock.now(), status="sent", education_item_id=item.id, purpose="education")
            message(s, pid, scheduled_at=clock.now(), status="queued")
    engine.dispose()
    return path


@pytest.fixture
def app_db(seeded_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    path = tmp_path / "app.db"
    shutil.copy(seeded_file, path)
    engine = make_engine(f"sqlite:///{path}")
    monkeypatch.setenv("CARELOOP_DATABASE_URL", str(engine.url))
    monkeypatch.setenv("CARELOOP_COOKIE_KEY", "app-test-cookie-key-" + "x" * 40)
    monkeypatch.setenv("CARELOOP_RECORDINGS_DIR", str(tmp_path / "recordings"))
    monkeypatch.delenv("CARELOOP_DEMO", raising=False)
    st.cache_data.clear()
    yield engine
    st.cache_data.clear()
    engine.dispose()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    """Record what every download button was given; AppTest has no media server to fetch a deferred file."""
    cap = Captured()
    original = DeltaGenerator.download_button

    def spy(self: DeltaGenerator, label: str, data: Any, *args: Any, **kwargs: Any) -> bool:
        cap.calls.append({"label": label, "data": data, **kwargs})
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    return cap


def _app(engine: Engine, username: str, lang: str) -> AppTest:
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    with Session(engine) as s, s.begin():
        out = auth.login(s, username=username, password=PASSWORD, now=clock.now(), policy=LoginPolicy())
    assert out.token
    at.session_state["careloop_token"] = out.token
    return at


def _open(engine: Engine, cap: Captured, *, role: str, path: str, lang: str = "en",
          state: Callable[[AppTest, Session], None] | None = None) -> AppTest:
    at = _app(engine, role, lang).run()
    assert not at.exception, at.exception
    if state is not None:
        with Session(engine) as s:
            state(at, s)
    cap.calls.clear()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def _csv(data: Callable[[], bytes]) -> tuple[str, pd.DataFrame]:
    raw = data()
    assert raw.startswith("\ufeff".encode()), "CSV must carry a UTF-8 BOM for Excel"
    text = raw.decode("utf-8-sig")
    first, _, rest = text.partition("\n")
    return first.removeprefix("# "), pd.read_csv(io.StringIO(rest), dtype=str, keep_default_na=False)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _same(shown: pd.DataFrame, exported: pd.DataFrame) -> None:
    assert [str(c) for c in shown.columns] == list(exported.columns)
    assert len(shown) == len(exported)
    for col_shown, col_out in zip(shown.columns, exported.columns, strict=True):
        left = [_cell(v) for v in shown[col_shown].tolist()]
        right = [_cell(v).lstrip("'") for v in exported[col_out].tolist()]
        # Numbers may print with another precision; text, codes, dates and masks must match exactly.
        if pd.api.types.is_numeric_dtype(shown[col_shown]) and not pd.api.types.is_bool_dtype(shown[col_shown]):
            assert [round(float(x), 6) if x else None for x in left] == \
                   [round(float(x), 6) if x else None for x in right], col_shown
        else:
            assert [x.replace("T", " ") for x in left] == [x.replace("T", " ") for x in right], col_shown


def check_tables(at: AppTest, cap: Captured, lang: str, *, at_least: int = 1) -> list[dict[str, Any]]:
    """Every table drawn has its CSV and Excel buttons, in both languages' labels, and the files match it."""
    # Data editors are input forms (the questionnaire builder's items), not tables that show data.
    frames = [df.value for df in at.dataframe if df.editing_mode == "read_only"]
    exports = cap.exports()
    assert len(frames) >= at_least, f"expected data tables, found {len(frames)}"
    assert len(exports) == 2 * len(frames), (len(exports), len(frames))
    labels = [str(e.proto.label) for e in at.get("download_button")]
    for frame, csv_call, xlsx_call in zip(frames, exports[::2], exports[1::2], strict=True):
        assert csv_call["label"] == t("reports.csv", lang) and xlsx_call["label"] == t("reports.xlsx", lang)
        assert csv_call["label"] in labels and xlsx_call["label"] in labels
        assert csv_call["file_name"].endswith(".csv") and xlsx_call["file_name"].endswith(".xlsx")
        assert csv_call["on_click"] is not None and csv_call["on_click"] not in ("ignore", "rerun")
        description, exported = _csv(csv_call["data"])
        assert description and description[:10].replace("/", "_") in xlsx_call["file_name"].replace(" ", "_") or \
            description
        shown = frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index()
        _same(shown, exported)
        ws = load_workbook(io.BytesIO(xlsx_call["data"]())).active
        assert ws["A1"].value == description
        assert [c.value for c in ws[3]] == [str(c) for c in shown.columns]
        assert ws.max_row == 3 + len(shown)
    return exports


def _patient(s: Session) -> Patient:
    p = s.scalars(select(Patient).join(FollowupTask, FollowupTask.patient_id == Patient.id)
                  .join(Intervention, Intervention.patient_id == Patient.id).order_by(Patient.id)).first()
    assert p is not None
    return p


def _set_patient(at: AppTest, s: Session) -> None:
    at.session_state["patient_id"] = _patient(s).id


def _set_task(at: AppTest, s: Session) -> None:
    task_id = s.scalars(select(FollowupRecord.task_id).join(FollowupTask, FollowupTask.id == FollowupRecord.task_id)
                        .join(User, User.id == FollowupTask.assignee_id).where(User.username == "nurse")).first()
    assert task_id is not None
    at.session_state["followup_task_id"] = int(task_id)


def _set_iv_card(at: AppTest, s: Session) -> None:
    at.session_state["iv_card"] = _patient(s).card_no


def _set_search(at: AppTest, s: Session) -> None:
    name = s.scalars(select(Patient.name).order_by(Patient.id)).first()
    assert name
    at.session_state["patients_q"] = name[:1]


def _set_rejections(at: AppTest, s: Session) -> None:
    # What an import with rejected rows leaves behind for the page (uploads cannot be driven from AppTest).
    at.session_state["import_rejected"] = [("obs.csv", "line 3", "import.err.missing_columns", {"columns": "value"}),
                                           ("obs.csv", "line 9", "import.err.bad_row", {})]


def _set_duplicates(at: AppTest, s: Session) -> None:
    p = _patient(s)
    at.session_state["enrol_pending"] = PatientInput(name=p.name, sex=p.sex, birth_date=p.birth_date, phone="",
                                                     id_type="resident", id_number="", address="",
                                                     department_id=None, nurse_id=None, channel_prefs=(),
                                                     consents=())
    at.session_state["enrol_duplicates"] = [Duplicate(p.id, p.card_no, p.name, p.birth_date, "name_birth")]


# (page, role that sees it, state to set first, fewest tables expected)
PAGES: list[tuple[str, str, Callable[[AppTest, Session], None] | None, int]] = [
    ("app_pages/overview.py", "manager", None, 1),
    ("app_pages/worklist.py", "nurse", None, 1),
    ("app_pages/users.py", "admin", None, 1),
    ("app_pages/audit.py", "quality", None, 1),
    ("app_pages/patients.py", "quality", _set_search, 1),
    ("app_pages/patient.py", "admin", _set_patient, 4),
    ("app_pages/nps.py", "manager", None, 2),
    ("app_pages/topbox.py", "quality", None, 1),
    ("app_pages/comments.py", "quality", None, 1),
    ("app_pages/recovery.py", "quality", None, 1),
    ("app_pages/questionnaires.py", "admin", None, 1),
    ("app_pages/task.py", "nurse", _set_task, 1),
    ("app_pages/interventions.py", "admin", _set_iv_card, 1),
    ("app_pages/followup_dashboard.py", "manager", None, 2),
    ("app_pages/plans.py", "admin", None, 1),
    ("app_pages/risk.py", "manager", None, 2),
    ("app_pages/return_risk.py", "manager", None, 1),
    ("app_pages/tag_rules.py", "admin", None, 1),
    ("app_pages/advice.py", "admin", None, 1),
    ("app_pages/outbox.py", "admin", None, 1),
    ("app_pages/education.py", "admin", None, 1),
    ("app_pages/engagement.py", "manager", None, 2),
    ("app_pages/risk.py", "quality", None, 2),
    ("app_pages/import_data.py", "nurse", _set_rejections, 1),
    ("app_pages/enrol.py", "admin", _set_duplicates, 1),
]


@pytest.mark.parametrize(("path", "role", "state", "at_least"), PAGES, ids=[p[0].split("/")[1][:-3] for p in PAGES])
def test_every_table_has_matching_downloads(app_db: Engine, captured: Captured, path: str, role: str,
                                            state: Callable[[AppTest, Session], None] | None, at_least: int) -> None:
    at = _open(app_db, captured, role=role, path=path, state=state)
    exports = check_tables(at, captured, "en", at_least=at_least)
    assert len(exports) >= 2 * at_least  # a CSV and an Excel button under each table


@pytest.mark.parametrize("path", ["app_pages/nps.py", "app_pages/patients.py"])
def test_labels_and_files_in_chinese(app_db: Engine, captured: Captured, path: str) -> None:
    at = _open(app_db, captured, role="quality", path=path, lang="zh_CN",
               state=_set_search if path.endswith("patients.py") else None)
    exports = check_tables(at, captured, "zh_CN")
    _, exported = _csv(exports[0]["data"])
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(exported.columns)), "Chinese headers"


def test_masking_applies_to_the_export_as_on_screen(app_db: Engine, captured: Captured) -> None:
    at = _open(app_db, captured, role="quality", path="app_pages/patients.py", state=_set_search)
    _, exported = _csv(captured.exports()[0]["data"])
    phones = exported[t("patients.col.phone", "en")].tolist()
    assert phones and all("*" in p for p in phones if p)
    with Session(app_db) as s:
        full = set(s.scalars(select(Patient.phone)).all())
    assert not full & set(phones)
    assert {mask_phone(p) for p in full} >= {p for p in phones if p}
    # The nurse sees contacts in full, on screen and in the file.
    at = _open(app_db, captured, role="nurse", path="app_pages/patients.py", state=_set_search)
    _, exported = _csv(captured.exports()[0]["data"])
    assert any(p and "*" not in p for p in exported[t("patients.col.phone", "en")].tolist())
    assert at.dataframe


def test_paged_table_exports_the_whole_filtered_result(app_db: Engine, captured: Captured) -> None:
    at = _open(app_db, captured, role="quality", path="app_pages/audit.py")
    # Make the audit page show fewer rows than match: many audit rows, one page of 200 on screen.
    with Session(app_db) as s, s.begin():
        s.add_all([AuditLog(at=clock.now(), username="bulk", action="bulk.test", entity="x", detail=None)
                   for _ in range(260)])
    captured.calls.clear()
    at.run()
    assert not at.exception, at.exception
    shown = at.dataframe[0].value
    assert len(shown) == 200
    _, exported = _csv(captured.exports()[0]["data"])
    assert len(exported) > 260
    assert t("reports.export_whole", "en", cap="10,000") in [c.value for c in at.caption]


def test_clicking_a_download_writes_one_audit_row(app_db: Engine, captured: Captured) -> None:
    at = _open(app_db, captured, role="manager", path="app_pages/nps.py")
    with Session(app_db) as s:
        before = s.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "export"))
    key = captured.exports()[0]["key"]
    at.get("download_button")  # the buttons are drawn
    button = next(b for b in at.get("download_button") if b.proto.id.endswith(key) or key in b.proto.id)
    cast(Any, button).click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id)).all()
        dept_names = set(s.scalars(select(Department.name_zh)).all())
    assert len(rows) == (before or 0) + 1
    row = rows[-1]
    detail = dict(row.detail or {})
    assert row.username == "manager" and row.user_id is not None
    assert row.entity == "nps_by_month" and detail["format"] == "csv"
    assert detail["filter"] and detail["rows"] >= 1
    assert dept_names  # departments exist; the filter text names the period
    assert "to" in detail["filter"] or "至" in detail["filter"]



def test_a_patient_table_download_is_audited_against_the_patient(app_db: Engine, captured: Captured) -> None:
    # In Chinese: AppTest formats the page's select boxes outside the session, where the language is the default.
    at = _open(app_db, captured, role="admin", path="app_pages/patient.py", state=_set_patient, lang="zh_CN")
    key = captured.exports()[0]["key"]
    button = next(b for b in at.get("download_button") if key in b.proto.id)
    cast(Any, button).click().run()
    assert not at.exception, at.exception
    with Session(app_db) as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id.desc())).first()
        expected = _patient(s).id
    assert row is not None and row.patient_id == expected and row.username == "admin"
    assert row.entity == "patient_timeline" and dict(row.detail or {})["format"] == "csv"
