"""The patient health report: text extraction finds the name, indicators and values, in both languages."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from config import Settings
from reports import charts, fonts
from reports.patient_report import age_on, build_patient_report
from services.errors import UserError
from tests.factories import create_patient
from tests.factories_reports import NOW, rich_patient
from tests.reports.pdftext import pdf_pages, pdf_text, squash

SETTINGS = Settings(database_url="sqlite://", demo=True, cookie_key="x" * 40, institution_name="康乐健康管理中心")


def test_zh_report_has_name_indicators_values_and_sections(session: Session) -> None:
    p = rich_patient(session)
    pdf = build_patient_report(session, card_no=p.card_no, lang="zh_CN", now=NOW, settings=SETTINGS)
    text = pdf_text(pdf)
    flat = squash(text)
    for expected in ("李秀英", p.card_no, "康乐健康管理中心", "健康报告", "收缩压", "空腹血糖", "体重指数",
                     "152", "7.4", "↑偏高", "1级高血压", "高血压", "减少钠盐摄入", "血压管理计划", "低盐饮食指导",
                     "血压控制欠佳", "本年度血压与血糖呈上升趋势", "第1页/共", "不作为诊断依据", "68岁"):
        assert expected in flat, expected
    # contacts are masked on paper
    assert "13812345678" not in flat and "138****5678" in flat
    assert "110105********1234" in flat
    assert pdf_pages(pdf) >= 2


def test_en_report(session: Session) -> None:
    p = rich_patient(session)
    text = pdf_text(build_patient_report(session, card_no=p.card_no, lang="en", now=NOW, settings=SETTINGS))
    for expected in ("Health report", "Systolic blood pressure", "Fasting plasma glucose", "152", "High",
                     "Grade 1 hypertension", "Hypertension", "Eat less salt", "not a diagnosis", "Page 1 of",
                     "ASCVD 10-year risk", "Intermediate"):
        assert expected in text, expected
    assert "李秀英" in squash(text)


def test_long_text_wraps_inside_the_page(session: Session) -> None:
    p = rich_patient(session)
    text = pdf_text(build_patient_report(session, card_no=p.card_no, lang="zh_CN", now=NOW, settings=SETTINGS,
                                         with_charts=False))
    # The advice body is 12 sentences long: it wraps over several lines instead of running off the page.
    lines = [line for line in text.splitlines() if "每日食盐不超过5克" in line]
    assert len(lines) >= 3


def test_patient_without_data_gets_a_valid_report_that_says_so(session: Session) -> None:
    p = create_patient(session, name="赵无数", sex="M", birth_date=None, phone=None)
    for lang, phrase in (("zh_CN", "该患者尚无任何健康数据"), ("en", "No health data has been recorded")):
        pdf = build_patient_report(session, card_no=p.card_no, lang=lang, now=NOW, settings=SETTINGS)
        text = pdf_text(pdf)
        assert phrase.replace(" ", "") in squash(text)
        assert pdf_pages(pdf) >= 1


def test_unknown_card_is_a_user_error(session: Session) -> None:
    with pytest.raises(UserError) as exc:
        build_patient_report(session, card_no="NO-SUCH", lang="en", now=NOW, settings=SETTINGS)
    assert exc.value.key == "reports.unknown_card"


def test_rare_character_outside_the_subset_uses_the_full_font(session: Session) -> None:
    # 䶮 (U+4DAE, in a historical name) is not in GB 2312: the report adds the full Noto Sans SC as fallback.
    assert fonts.needs_fallback(["刘䶮"])
    p = create_patient(session, name="刘䶮")
    text = pdf_text(build_patient_report(session, card_no=p.card_no, lang="zh_CN", now=NOW, settings=SETTINGS))
    assert "刘䶮" in squash(text)


def test_logo_from_settings(session: Session, tmp_path: object) -> None:
    from pathlib import Path

    from PIL import Image

    logo = Path(str(tmp_path)) / "logo.png"
    Image.new("RGB", (120, 60), (31, 95, 168)).save(logo)
    p = create_patient(session)
    settings = Settings(database_url="sqlite://", demo=True, cookie_key="x" * 40, logo_path=str(logo))
    pdf = build_patient_report(session, card_no=p.card_no, lang="en", now=NOW, settings=settings)
    assert b"/Subtype /Image" in pdf


def test_age() -> None:
    assert age_on(datetime(1958, 6, 15).date(), NOW.date()) == 68
    assert age_on(datetime(1958, 6, 16).date(), NOW.date()) == 67
    assert age_on(None, NOW.date()) is None


def test_vega_renderer_embeds_the_vl_convert_image(sqlite_engine: Engine) -> None:
    """The alternative chart path: the Vega-Lite panels rendered by vl-convert to one PNG in the PDF."""
    with Session(sqlite_engine) as s:
        p = rich_patient(s)
        pdf = build_patient_report(s, card_no=p.card_no, lang="zh_CN", now=NOW, settings=SETTINGS,
                                   chart_renderer="vega")
    assert b"/Subtype /Image" in pdf
    assert "历年趋势" in squash(pdf_text(pdf))


def test_trend_panel_png_has_cjk_titles() -> None:
    points = (charts.Point(datetime(2021, 1, 1), 120, "收缩压"), charts.Point(datetime(2024, 1, 1), 145, "收缩压"))
    bands = (charts.Band(None, 140, False, "正常"), charts.Band(140, None, True, "高"))
    png = charts.render_panels([charts.Panel("收缩压 (2021–2026)", "mmHg", points, bands)])
    assert png.startswith(b"\x89PNG")
