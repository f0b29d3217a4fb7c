"""AppTest for the Import page's report files: a GBK CSV with a bad row, a broken file, an unexpected failure."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.models import Observation, Patient
from i18n import t
from tests.app.test_patient_pages import _app, app_db  # noqa: F401 - the fixture is used by name


def _page(engine: Engine, lang: str):  # type: ignore[no-untyped-def]
    at = _app(engine, "nurse", lang)
    at.run()
    at.switch_page("app_pages/import_data.py").run()
    assert not at.exception, at.exception
    return at


def _n_obs(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(Observation)).scalar_one())


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_gbk_csv_with_a_bad_row_shows_counts_and_the_reason(app_db: Engine, lang: str) -> None:  # noqa: F811
    with Session(app_db) as s:
        card = s.scalars(select(Patient.card_no)).one()
    before = _n_obs(app_db)
    at = _page(app_db, lang)
    body = f"卡号,项目,结果,单位,日期\n{card},FPG,5.6,mmol/L,2024-01-01\n{card},WEIGHT,-3,kg,2024-01-01\n"
    at.file_uploader(key="import_files").set_value(("结果.csv", body.encode("gbk"), "text/csv"))
    at.button(key="import_run").click().run()
    assert not at.exception, at.exception
    assert [str(m.value) for m in at.metric] == ["1", "0", "0", "1"]
    reason = t("import.err.implausible", lang, code="WEIGHT", value="-3", unit="kg")
    assert reason in at.dataframe[0].value.to_string() or any(reason in str(v) for v in
                                                                at.dataframe[0].value.to_numpy().ravel())
    assert _n_obs(app_db) == before + 1


def test_an_unexpected_failure_is_reported_and_nothing_is_written(app_db: Engine,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from services import care_automation

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(care_automation, "reevaluate", broken)
    with Session(app_db) as s:
        card = s.scalars(select(Patient.card_no)).one()
    before = _n_obs(app_db)
    at = _page(app_db, "en")
    body = f"card_no,code,value,unit,date\n{card},FPG,5.6,mmol/L,2024-01-01\n"
    at.file_uploader(key="import_files").set_value(("r.csv", body.encode(), "text/csv"))
    at.button(key="import_run").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [t("import.page.failed", "en", error="RuntimeError")]
    assert _n_obs(app_db) == before
