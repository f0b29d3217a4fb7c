"""Interventions on the 360° view's indicator charts: one mark per intervention on the chart of the indicator it
targets, its tooltip the type, content, goal and the before/after means of the indicator (as on the
interventions page)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection

from components.runtime import tr
from components.trend_charts import ChartMarks
from queries import followup as q
from services import interventions

MAX_MARKS = 50  # per patient: the most recent interventions with a target indicator
CONTENT_CHARS = 200


def _mean(value: float | None, n: int) -> str:
    return "—" if value is None else tr("fu_marks.mean", mean=f"{value:.1f}", n=n)


def intervention_marks(*, conn: Connection, patient_id: int,
                       window_days: int = interventions.DEFAULT_WINDOW_DAYS) -> dict[str, ChartMarks]:
    """Indicator code -> the marks of the interventions that target it (none: the code is absent)."""
    ivs = q.patient_interventions(conn=conn, patient_id=patient_id)
    ivs = ivs[ivs["indicator"].notna()].head(MAX_MARKS)
    rows: dict[str, list[dict[str, object]]] = {}
    for iv in ivs.to_dict("records"):
        ba = interventions.before_after(conn=conn, intervention_id=int(iv["intervention_id"]),
                                        window_days=window_days)
        content, goal = str(iv["content"]), iv["goal"]
        rows.setdefault(str(iv["indicator"]), []).append({
            "at": pd.Timestamp(str(iv["performed_on"])),
            "kind": tr(f"intervention_kind.{iv['kind']}"),
            "content": content if len(content) <= CONTENT_CHARS else content[:CONTENT_CHARS] + "…",
            "goal": goal if isinstance(goal, str) and goal else "—",
            "before": _mean(ba.mean_before, ba.n_before),
            "after": _mean(ba.mean_after, ba.n_after),
        })
    tooltips = (("kind", tr("fu_marks.kind")), ("content", tr("fu_marks.content")), ("goal", tr("fu_marks.goal")),
                ("before", tr("fu_marks.before", days=window_days)), ("after", tr("fu_marks.after", days=window_days)))
    return {code: ChartMarks(pd.DataFrame(r), tooltips) for code, r in rows.items()}
