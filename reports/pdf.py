"""The shared PDF frame of Careloop's reports: embedded CJK font, running header, footer with page numbers,
generation time and the "not a diagnosis" notice, and helpers for headings, wrapped text and tables."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode, WrapMode, XPos, YPos
from fpdf.output import OutputProducer

import i18n
from reports import fonts

INK = (33, 37, 41)
MUTED = (110, 117, 125)
ACCENT = (31, 95, 168)
ALERT = (192, 40, 30)
HEAD_FILL = (232, 240, 250)
STRIPE_FILL = (247, 248, 250)


def tr(key: str, lang: str, **params: Any) -> str:
    return i18n.t(key, lang, **params)


def label(prefix: str, code: str | None, lang: str) -> str:
    """A translated code (sex.M, task_status.done ...) or the code itself when no catalogue has it."""
    if not code:
        return "—"
    text = i18n.catalogue(lang).get(f"{prefix}.{code}")
    return text if text is not None else code


# Characters a line must not start with (Chinese typesetting: closing punctuation stays with what it closes).
_NO_START = frozenset("，。、；：？！）】》」』”’…·%,.;:?!)]}")
_NO_END = frozenset("（【《「『“‘([{")  # ... nor end with an opening one


def _cjk(ch: str) -> bool:
    """A character after or before which a line may break: hanzi, kana, fullwidth forms and CJK punctuation."""
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF or code >= 0x20000


class ReportPDF(FPDF):
    """A4 portrait with a running header after page 1 and the Careloop footer on every page."""

    def __init__(self, *, lang: str, title: str, header_text: str, generated_at: datetime, footer_note: str,
                 texts: Iterable[str] = ()) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.lang = lang
        self.report_title = title
        self.header_text = header_text
        self.generated_at = generated_at
        self.footer_note = footer_note
        self.family = fonts.register(self, texts=texts)
        self.set_margins(15, 16, 15)
        self.set_auto_page_break(True, margin=20)
        self.set_title(title)
        self.set_creator("Careloop")
        self.set_creation_date(generated_at)
        # Word wrapping in both languages: Latin words and numbers stay whole, and a run of hanzi longer than
        # the line (no spaces to break at) is broken between characters by fpdf2.
        self.wrap = WrapMode.WORD
        self.alias_nb_pages()

    # fpdf2 hooks ----------------------------------------------------------------------------------------
    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(self.family, size=8)
        self.set_text_color(*MUTED)
        self.set_y(8)
        self.cell(0, 4, self.header_text, align="L")
        self.set_xy(self.l_margin, 8)
        self.cell(0, 4, self.report_title, align="R")
        self.set_draw_color(220, 220, 220)
        self.line(self.l_margin, 13, self.w - self.r_margin, 13)
        self.set_y(16)
        self.set_text_color(*INK)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_draw_color(220, 220, 220)
        self.line(self.l_margin, self.get_y() - 1, self.w - self.r_margin, self.get_y() - 1)
        self.set_font(self.family, size=7.5)
        self.set_text_color(*MUTED)
        generated = tr("reports.generated_at", self.lang, at=self.generated_at.strftime("%Y-%m-%d %H:%M"))
        self.cell(0, 4, f"{self.footer_note}  ·  {generated}", align="L")
        self.set_x(self.l_margin)
        self.cell(0, 4, tr("reports.page_of", self.lang, page=self.page_no(), pages="{nb}"), align="R")
        self.set_text_color(*INK)

    # building blocks -------------------------------------------------------------------------------------
    @property
    def content_width(self) -> float:
        return float(self.w - self.l_margin - self.r_margin)

    def ensure_space(self, height: float) -> None:
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()

    def section(self, text: str) -> None:
        # A heading never ends a page alone: keep room for it and the first lines below.
        self.ensure_space(34)
        self.ln(3)
        self.set_font(self.family, size=12.5)
        self.set_text_color(*ACCENT)
        self.cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*ACCENT)
        self.set_line_width(0.4)
        self.line(self.l_margin, self.get_y(), self.l_margin + 22, self.get_y())
        self.set_line_width(0.2)
        self.ln(2)
        self.set_text_color(*INK)
        self.set_font(self.family, size=9.5)

    def subheading(self, text: str) -> None:
        self.ensure_space(14)
        self.set_font(self.family, size=10.5)
        self.set_text_color(*INK)
        self.text_block(0, 5.5, text)
        self.set_font(self.family, size=9.5)

    def para(self, text: str, *, size: float = 9.5, colour: tuple[int, int, int] = INK, height: float = 5) -> None:
        self.set_font(self.family, size=size)
        self.set_text_color(*colour)
        self.text_block(0, height, text)
        self.set_text_color(*INK)
        self.set_font(self.family, size=9.5)

    def wrap_lines(self, text: str, width: float) -> list[str]:
        """`text` broken into lines that fit `width` in the current font: at spaces, and between hanzi (Chinese
        breaks between any two characters, but not before closing punctuation such as ，。）); a word longer
        than the line is cut where it overflows. What fpdf2's multi_cell does, in one pass over the text: its
        line breaker re-measures the line at every character, a third of a report's time."""
        room = width - 2 * self.c_margin
        size = self.font_size_pt
        cw: Any = self.current_font.cw  # type: ignore[union-attr]

        def advance(ch: str) -> float:
            return float(cw[ord(ch)]) * size * 0.001 / self.k

        lines: list[str] = []
        for paragraph in text.split("\n"):
            chars = paragraph
            start, used, cut = 0, 0.0, -1  # cut: index where the current line may end (a break opportunity)
            i = 0
            while i < len(chars):
                ch = chars[i]
                prev = chars[i - 1] if i else ""
                if i > start and (prev == " " or ((_cjk(prev) or _cjk(ch)) and ch not in _NO_START
                                                  and prev not in _NO_END)):
                    cut = i
                used += advance(ch)
                if used > room and i > start:
                    end = cut if cut > start else i
                    lines.append(chars[start:end].rstrip(" "))
                    start = end
                    while start < len(chars) and chars[start] == " ":
                        start += 1
                    used = sum(advance(c) for c in chars[start:i + 1])
                    cut = -1
                i += 1
            lines.append(chars[start:].rstrip(" "))
        return lines

    def text_block(self, w: float, h: float, text: str) -> None:
        """Left-aligned wrapped text from the current position (w = 0: to the right margin), one cell per line;
        the cursor ends at the left margin below it. Texts that need the fallback font go through multi_cell
        (its per-character font switching)."""
        x = self.get_x()
        width = w or (self.w - self.r_margin - x)
        if fonts.needs_fallback([text]):
            self.multi_cell(width, h, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT, wrapmode=self.wrap, align="L")
            return
        for line in self.wrap_lines(text, width):
            self.set_x(x)
            self.cell(width, h, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")

    def muted(self, text: str) -> None:
        self.para(text, size=9, colour=MUTED)

    def bullets(self, items: Sequence[str]) -> None:
        self.set_font(self.family, size=9.5)
        for item in items:
            self.set_x(self.l_margin + 2)
            self.cell(4, 5, "•")
            self.text_block(self.content_width - 6, 5, item)

    def grid(self, headings: Sequence[str], rows: Sequence[Sequence[str]], *, widths: Sequence[float],
             alerts: Sequence[bool] | None = None, size: float = 8.5,
             align: Sequence[str] | None = None) -> None:
        """A table whose cells wrap; rows flagged in `alerts` print in the alert colour."""
        self.set_font(self.family, size=size)
        self.set_draw_color(215, 220, 226)
        scale = self.content_width / sum(widths)
        real = [w * scale for w in widths]
        if all(self.get_string_width(str(c)) <= w - 2.6 for row in [headings, *rows]
               for c, w in zip(row, real, strict=True)):
            # Every cell fits on one line: plain cells, several times faster than fpdf2's wrapping table.
            self._flat_grid(headings, rows, real, alerts, size, align)
            return
        head = FontFace(emphasis="", color=INK, fill_color=HEAD_FILL)
        alert = FontFace(emphasis="", color=ALERT)
        with self.table(col_widths=tuple(widths), width=self.content_width, text_align=tuple(align or ["LEFT"] *
                        len(headings)), headings_style=head, line_height=size * 0.55, padding=(0.8, 1.2),
                        cell_fill_color=STRIPE_FILL, cell_fill_mode=TableCellFillMode.ROWS, wrapmode=self.wrap,
                        first_row_as_headings=True, repeat_headings=1) as table:
            table.row(list(headings))
            for n, row in enumerate(rows):
                style = alert if alerts is not None and alerts[n] else None
                table.row([str(c) for c in row], style=style)
        self.ln(2)
        self.set_font(self.family, size=9.5)

    def _flat_grid(self, headings: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float],
                   alerts: Sequence[bool] | None, size: float, align: Sequence[str] | None) -> None:
        height = size * 0.55 + 1.6
        aligns = ["R" if a == "RIGHT" else "L" for a in (align or ["LEFT"] * len(headings))]

        def line(cells: Sequence[str], fill: tuple[int, int, int] | None, colour: tuple[int, int, int]) -> None:
            self.set_text_color(*colour)
            if fill:
                self.set_fill_color(*fill)
            for text, w, a in zip(cells, widths, aligns, strict=True):
                self.cell(w, height, str(text), border=1, align=a, fill=fill is not None)
            self.ln(height)

        def head() -> None:
            line(headings, HEAD_FILL, INK)

        margin = self.c_margin
        self.c_margin = 1.2
        head()
        for n, row in enumerate(rows):
            if self.get_y() + height > self.page_break_trigger:
                self.add_page()
                head()
            alert = alerts is not None and alerts[n]
            line(row, STRIPE_FILL if n % 2 == 0 else None, ALERT if alert else INK)
        self.c_margin = margin
        self.set_text_color(*INK)
        self.ln(2)
        self.set_font(self.family, size=9.5)

    def _image_box(self, data: bytes, width: float | None) -> tuple[float, float]:
        from PIL import Image

        img = Image.open(io.BytesIO(data))
        w = width or self.content_width
        h = w * img.height / img.width
        # Never taller than a page's body (below the running header): shrink the image to fit.
        page_body = self.page_break_trigger - 18
        if h > page_body:
            w, h = w * page_body / h, page_body
        return w, h

    def image_height(self, data: bytes, *, width: float | None = None) -> float:
        return self._image_box(data, width)[1]

    def png(self, data: bytes, *, width: float | None = None, fit_here: bool = False) -> None:
        """Place an image; with fit_here it shrinks to the room left on this page instead of moving on."""
        w, h = self._image_box(data, width)
        room = self.page_break_trigger - self.get_y() - 1
        if fit_here and h > room > 0:
            w, h = w * room / h, room
        if self.get_y() + h > self.page_break_trigger:
            self.add_page()
        x = self.l_margin + (self.content_width - w) / 2
        self.image(io.BytesIO(data), x=x, y=self.get_y(), w=w, h=h)
        self.set_y(self.get_y() + h + 2)

    def to_bytes(self) -> bytes:
        return bytes(self.output(output_producer_class=_Producer))


class _Producer(OutputProducer):
    """fpdf2's producer, after the last footer and page-number substitutions have picked their glyphs: the
    report font is swapped for a small one of exactly the glyphs used (reports/fonts.prepare_output)."""

    def bufferize(self) -> bytearray:
        fonts.prepare_output(self.fpdf)
        return super().bufferize()
