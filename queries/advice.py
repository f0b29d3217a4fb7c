"""Read side of the advice library."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from db.models import AdviceItem


def items(*, conn: Connection, lang: str) -> pd.DataFrame:
    title = AdviceItem.title_zh if lang == "zh_CN" else AdviceItem.title_en
    rows = conn.execute(select(AdviceItem.code, AdviceItem.category, title, AdviceItem.applies_to, AdviceItem.source,
                               AdviceItem.active).order_by(AdviceItem.category, AdviceItem.code)).all()
    out = []
    for code, category, t, applies, source, active in rows:
        links = [*applies.get("tags", []),
                 *[f"{m}:{lv}" for m, levels in (applies.get("risk") or {}).items() for lv in levels]]
        out.append((code, category, t, ", ".join(links), source, active))
    return pd.DataFrame(out, columns=["code", "category", "title", "applies_to", "source", "active"])


def item(*, conn: Connection, code: str) -> dict[str, Any] | None:
    row = conn.execute(select(AdviceItem).where(AdviceItem.code == code)).first()
    if row is None:
        return None
    a = row[0]
    return {"code": a.code, "category": a.category, "title_zh": a.title_zh, "title_en": a.title_en,
            "body_zh": a.body_zh, "body_en": a.body_en, "tags": list(a.applies_to.get("tags", [])),
            "risk": [f"{m}:{lv}" for m, levels in (a.applies_to.get("risk") or {}).items() for lv in levels],
            "source": a.source or "", "active": a.active}
