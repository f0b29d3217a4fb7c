"""Health reports of a segment of patients as one zip, with progress; optionally over a process pool."""

from __future__ import annotations

import io
import multiprocessing
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from sqlalchemy import Engine

from config import Settings
from db.engine import make_engine
from queries import report_data
from queries.report_data import IndicatorInfo
from reports import fonts
from reports.patient_report import render

Progress = Callable[[int, int], None]
CHUNK = 25


def _reports(engine: Engine, card_nos: Sequence[str], *, lang: str, now: datetime, settings: Settings,
             with_charts: bool) -> Iterator[tuple[str, bytes | None]]:
    """(card number, PDF or None for an unknown card), reading the indicator catalogue once."""
    with engine.connect() as conn:
        catalogue: dict[str, IndicatorInfo] = report_data.indicator_catalogue(conn=conn)
        for card in card_nos:
            data = report_data.patient_report_data(conn=conn, card_no=card, lang=lang, now=now, catalogue=catalogue)
            yield card, None if data is None else render(data, lang=lang, now=now, settings=settings,
                                                         with_charts=with_charts, chart_renderer="vector")


_worker_engine: Engine | None = None


def _context() -> multiprocessing.context.BaseContext:
    """fork where there is one: a worker starts in milliseconds with the modules and the font's glyphs already
    loaded, and works for scripts without a __main__ guard (spawn re-runs the main module). A forked worker
    never touches the parent's pooled connections (it makes its own engine) and leaves with os._exit, so it
    closes none of them; spawn elsewhere (macOS, Windows)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _init_worker(url: str) -> None:
    global _worker_engine
    _worker_engine = make_engine(url)
    fonts.warm_up()


def _chunk_job(args: tuple[list[str], str, datetime, Settings, bool]) -> list[tuple[str, bytes | None]]:
    cards, lang, now, settings, with_charts = args
    assert _worker_engine is not None
    return list(_reports(_worker_engine, cards, lang=lang, now=now, settings=settings, with_charts=with_charts))


@dataclass(frozen=True)
class BatchResult:
    cards: list[str]  # the card numbers with a report in the zip, in order
    missing: list[str]

    @property
    def written(self) -> int:
        return len(self.cards)


def write_batch(engine: Engine, out: IO[bytes], *, card_nos: Sequence[str], lang: str, now: datetime,
                settings: Settings, progress: Progress | None = None, workers: int = 1,
                with_charts: bool = True) -> BatchResult:
    """Write a zip of <card>.pdf files (and missing.txt listing unknown card numbers) to `out` as the reports
    come in: nothing but the chunk in flight is held in memory, and `out` need not be seekable. `workers` > 1
    spreads chunks of reports over processes, each with its own engine (same database URL) and font cache;
    they share nothing but the database."""
    total = len(card_nos)
    done = 0
    cards: list[str] = []
    missing: list[str] = []
    # PDFs are already compressed: storing them saves the time deflate would spend for a few percent.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        def add(card: str, pdf: bytes | None) -> None:
            nonlocal done
            if pdf is None:
                missing.append(card)
            else:
                zf.writestr(f"{card}.pdf", pdf)
                cards.append(card)
            done += 1
            if progress is not None:
                progress(done, total)

        if workers <= 1 or total <= CHUNK:
            for card, pdf in _reports(engine, card_nos, lang=lang, now=now, settings=settings,
                                      with_charts=with_charts):
                add(card, pdf)
        else:
            url = engine.url.render_as_string(hide_password=False)
            chunks = [list(card_nos[i:i + CHUNK]) for i in range(0, total, CHUNK)]
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(url,),
                                     mp_context=_context()) as pool:
                for results in pool.map(_chunk_job, [(c, lang, now, settings, with_charts) for c in chunks]):
                    for card, pdf in results:
                        add(card, pdf)
        if missing:
            zf.writestr("missing.txt", "\n".join(missing) + "\n")
    return BatchResult(cards, missing)


def build_batch(engine: Engine, *, card_nos: Sequence[str], lang: str, now: datetime, settings: Settings,
                progress: Progress | None = None, workers: int = 1, with_charts: bool = True) -> bytes:
    """The same zip as bytes (for a download button, which needs the whole file)."""
    return build_batch_with_result(engine, card_nos=card_nos, lang=lang, now=now, settings=settings,
                                   progress=progress, workers=workers, with_charts=with_charts)[0]


def build_batch_with_result(engine: Engine, *, card_nos: Sequence[str], lang: str, now: datetime,
                            settings: Settings, progress: Progress | None = None, workers: int = 1,
                            with_charts: bool = True) -> tuple[bytes, BatchResult]:
    buf = io.BytesIO()
    result = write_batch(engine, buf, card_nos=card_nos, lang=lang, now=now, settings=settings, progress=progress,
                         workers=workers, with_charts=with_charts)
    return buf.getvalue(), result


def default_workers(reports: int) -> int:
    """Processes for a batch: one per core (at most 4), none extra for a batch of one chunk."""
    return 1 if reports <= CHUNK else max(1, min(4, os.cpu_count() or 1))
