"""Line breaking of the report's wrapped text (reports/pdf.ReportPDF.wrap_lines), in both languages."""

from __future__ import annotations

from datetime import datetime

import pytest

from reports.pdf import ReportPDF


@pytest.fixture(scope="module")
def pdf() -> ReportPDF:
    doc = ReportPDF(lang="zh_CN", title="t", header_text="h", generated_at=datetime(2026, 1, 1), footer_note="f")
    doc.add_page()
    doc.set_font(doc.family, size=9.5)
    return doc


def _fits(pdf: ReportPDF, lines: list[str], width: float) -> bool:
    return all(pdf.get_string_width(line) <= width - 2 * pdf.c_margin + 1e-6 for line in lines)


def test_latin_breaks_at_spaces(pdf: ReportPDF) -> None:
    text = "Eat less salt: no more than five grams a day, and choose fresh food over pickled or processed food."
    lines = pdf.wrap_lines(text, 60)
    assert len(lines) >= 3 and _fits(pdf, lines, 60)
    assert " ".join(lines) == text  # only spaces were dropped, words stay whole
    assert all(not line.startswith(" ") and not line.endswith(" ") for line in lines)


def test_chinese_breaks_between_characters_but_not_before_closing_punctuation(pdf: ReportPDF) -> None:
    text = "每日食盐不超过5克，少吃腌制食品（咸菜、腊肉），多吃新鲜蔬菜水果。" * 4
    for width in (30, 41, 57, 80):
        lines = pdf.wrap_lines(text, width)
        assert "".join(lines) == text and _fits(pdf, lines, width)
        assert all(line[0] not in "，。、）" for line in lines[1:]), lines
        assert all(line[-1] != "（" for line in lines), lines


def test_mixed_text_newlines_and_overlong_words(pdf: ReportPDF) -> None:
    lines = pdf.wrap_lines("第一行\n\nsecond line", 100)
    assert lines == ["第一行", "", "second line"]
    long = "x" * 200
    cut = pdf.wrap_lines(long, 40)
    assert "".join(cut) == long and len(cut) > 1 and _fits(pdf, cut, 40)
    assert pdf.wrap_lines("", 50) == [""]
