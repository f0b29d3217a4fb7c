"""The quality summary's top-box table: the same figures from live answers, the rollup, or both (on both engines)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Questionnaire, QuestionnaireItem, SurveyAnswer, TopboxDaily, TopboxRollupState
from queries import report_data, satisfaction
from queries.filters import DataScope, PeriodFilter
from services import topbox_rollup
from tests.factories import create_response, department

ALL = DataScope("quality", None)
JUNE = PeriodFilter(date(2026, 6, 1), date(2026, 6, 30))
NOW = datetime(2026, 6, 20, 10)


def _items(session: Session) -> dict[str, int]:
    rows = session.execute(select(QuestionnaireItem.item_code, QuestionnaireItem.id)
                           .join(Questionnaire, Questionnaire.id == QuestionnaireItem.questionnaire_id)
                           .where(Questionnaire.code == "satisfaction")).all()
    return {str(code): int(iid) for code, iid in rows}


def _answer(session: Session, items: dict[str, int], *, dept: int | None, at: datetime, doctors: int | None,
            overall: int, nurses: int = 5) -> None:
    r = create_response(session, department_id=dept, submitted_at=at, nps_score=overall)
    values = {"overall": overall, "nurses": nurses, "doctors": doctors}
    for code, value in values.items():
        session.add(SurveyAnswer(response_id=r.id, item_id=items[code],
                                 value_num=None if value is None else float(value)))
    session.add(SurveyAnswer(response_id=r.id, item_id=items["comment"], value_num=None, value_text="好"))
    session.flush()


def _expected(session: Session, f: PeriodFilter, scope: DataScope) -> dict[str, tuple[int, int]]:
    """queries.satisfaction.topbox (per item x department, straight from the answers) pooled by item."""
    tb = satisfaction.topbox(conn=session.connection(), f=f, scope=scope, lang="en")
    pooled = tb.groupby("item_code")[["answers", "top_box"]].sum()
    return {str(code): (int(r["answers"]), int(r["top_box"])) for code, r in pooled.iterrows()}


def _got(session: Session, f: PeriodFilter, scope: DataScope) -> dict[str, tuple[int, int]]:
    df = report_data.topbox_by_item(conn=session.connection(), f=f, scope=scope, lang="en")
    return {str(r["item_code"]): (int(r["answers"]), int(r["top_box"])) for _, r in df.iterrows()}


def _load(session: Session) -> tuple[int, int]:
    items = _items(session)
    card = department(session, "CARD").id
    endo = department(session, "ENDO").id
    for n in range(12):
        _answer(session, items, dept=card if n % 3 else endo, at=NOW - timedelta(days=n * 3, hours=n),
                doctors=None if n == 4 else 1 + n % 5, overall=10 - n % 6)
    _answer(session, items, dept=None, at=datetime(2026, 6, 30, 23, 59), doctors=5, overall=9)  # last minute
    _answer(session, items, dept=card, at=datetime(2026, 7, 1, 0, 0), doctors=5, overall=10)  # outside June
    return card, endo


def test_live_rollup_and_tail_give_the_same_figures(session: Session) -> None:
    card, endo = _load(session)
    one_dept = PeriodFilter(JUNE.date_from, JUNE.date_to, (card,), ("Cardiology",))
    nurse_scope = DataScope("nurse", (endo,))
    cases = [(JUNE, ALL), (one_dept, ALL), (JUNE, nurse_scope)]
    expected = [_expected(session, f, s) for f, s in cases]
    # 8 June responses (7 of the loop and the last-minute one); one skipped "doctors" (1,2,3,4,1,2 and a 5)
    assert expected[0]["doctors"] == (7, 1)
    assert expected[0]["overall"] == (8, 4)  # 10,9,8,7,6,5,10 and 9: top box 9-10

    live = [_got(session, f, s) for f, s in cases]  # watermark 0: everything read live
    assert live == expected

    assert topbox_rollup.refresh(session) == 14
    assert (session.scalar(select(TopboxRollupState.max_response_id)) or 0) > 0
    assert session.scalars(select(TopboxDaily)).first() is not None
    assert [_got(session, f, s) for f, s in cases] == expected  # all from the rollup

    items = _items(session)
    _answer(session, items, dept=card, at=NOW, doctors=5, overall=3)  # newer than the watermark: the live tail
    after = [_expected(session, f, s) for f, s in cases]
    assert after[0]["doctors"] == (8, 2)
    assert [_got(session, f, s) for f, s in cases] == after

    assert topbox_rollup.refresh(session) == 1
    assert topbox_rollup.refresh(session) == 0  # nothing new: a no-op
    assert [_got(session, f, s) for f, s in cases] == after
    topbox_rollup.rebuild(session, now=NOW)
    assert [_got(session, f, s) for f, s in cases] == after


def test_item_order_text_and_empty_period(session: Session) -> None:
    _load(session)
    df = report_data.topbox_by_item(conn=session.connection(), f=JUNE, scope=ALL, lang="zh_CN")
    assert list(df["item_code"]) == ["doctors", "nurses", "overall"]  # questionnaire order; text item left out
    assert df.iloc[0]["item"] == "您对医生的服务态度和诊疗是否满意？"
    assert df.iloc[1]["pct"] == 100.0
    empty = report_data.topbox_by_item(conn=session.connection(), f=PeriodFilter(date(2020, 1, 1), date(2020, 1, 31)),
                                       scope=ALL, lang="en")
    assert isinstance(empty, pd.DataFrame) and empty.empty
