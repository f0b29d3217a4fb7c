"""CSV/Excel writers for patient and observation exports: rows streamed from a query, never one big frame."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from services.masking import mask_id_number, mask_phone


def _cell(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    return v


def write_csv(fh: BinaryIO, columns: Sequence[str], batches: Iterable[list[tuple[Any, ...]]]) -> int:
    """UTF-8 with a BOM so that Excel on Chinese Windows opens it without garbling names."""
    import io

    text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    w = csv.writer(text)
    w.writerow(columns)
    n = 0
    for batch in batches:
        w.writerows([[_cell(v) for v in row] for row in batch])
        n += len(batch)
    text.flush()
    text.detach()
    return n


def write_xlsx(path: Path, columns: Sequence[str], batches: Iterable[list[tuple[Any, ...]]], *,
               sheet: str = "data") -> int:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(list(columns))
    n = 0
    for batch in batches:
        for row in batch:
            ws.append([_cell(v) for v in row])
        n += len(batch)
    wb.save(path)
    return n


def write_table(path: Path, fmt: str, columns: Sequence[str], batches: Iterable[list[tuple[Any, ...]]],
                *, sheet: str = "data") -> int:
    if fmt == "xlsx":
        return write_xlsx(path, columns, batches, sheet=sheet)
    with path.open("wb") as fh:
        return write_csv(fh, columns, batches)


def masked_patients(batches: Iterable[list[tuple[Any, ...]]], *, phone_col: int, id_col: int,
                    full: bool) -> Iterable[list[tuple[Any, ...]]]:
    """Exports mask phones and ID numbers unless the operator asked for them in full."""
    for batch in batches:
        if full:
            yield batch
            continue
        out = []
        for row in batch:
            r = list(row)
            r[phone_col] = mask_phone(r[phone_col])
            r[id_col] = mask_id_number(r[id_col])
            out.append(tuple(r))
        yield out
