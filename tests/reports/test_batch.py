"""Batch of health reports over a process pool, streamed into a zip on a stream that cannot seek."""

from __future__ import annotations

import io
import zipfile
from typing import IO, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from config import Settings
from reports.batch import CHUNK, default_workers, write_batch
from tests.factories import create_patient
from tests.factories_reports import NOW
from tests.reports.pdftext import pdf_text, squash

SETTINGS = Settings(database_url="sqlite://", demo=True, cookie_key="x" * 40)


class ForwardOnly(io.RawIOBase):
    """A pipe-like sink (an HTTP response, a socket): write only, no seek or tell."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.data += bytes(b)
        return len(b)


def test_pool_batch_streams_every_report_with_progress(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        cards = [create_patient(s, name=f"批量{n:02d}").card_no for n in range(CHUNK + 3)]
    wanted = [*cards[:5], "NO-SUCH", *cards[5:]]
    seen: list[tuple[int, int]] = []
    sink = ForwardOnly()
    result = write_batch(engine, cast(IO[bytes], sink), card_nos=wanted, lang="zh_CN", now=NOW, settings=SETTINGS,
                         workers=2, progress=lambda done, total: seen.append((done, total)))
    assert result.cards == cards and result.missing == ["NO-SUCH"] and result.written == len(cards)
    assert seen == [(n, len(wanted)) for n in range(1, len(wanted) + 1)]
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as zf:
        assert zf.namelist() == [f"{c}.pdf" for c in cards] + ["missing.txt"]
        assert zf.read("missing.txt") == b"NO-SUCH\n"
        assert "批量07" in squash(pdf_text(zf.read(f"{cards[7]}.pdf")))


def test_default_workers() -> None:
    assert default_workers(1) == 1 and default_workers(CHUNK) == 1
    assert 1 <= default_workers(1000) <= 4
