"""Read side of tags: the rule list with tagged-patient counts, and one patient's tags."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select

from db.models import PatientTag, TagRule


def rules_table(*, conn: Connection, lang: str) -> pd.DataFrame:
    """The newest version of every rule code, with how many patients carry its tag now."""
    newest = (
        select(TagRule.code, func.max(TagRule.version).label("version")).group_by(TagRule.code).subquery()
    )
    counts = (
        select(PatientTag.tag_code, func.count().label("patients"))
        .where(PatientTag.until.is_(None)).group_by(PatientTag.tag_code).subquery()
    )
    name = TagRule.name_zh if lang == "zh_CN" else TagRule.name_en
    rows = conn.execute(
        select(TagRule.id, TagRule.code, name.label("name"), TagRule.version, TagRule.active, TagRule.source,
               func.coalesce(counts.c.patients, 0).label("patients"))
        .join(newest, (newest.c.code == TagRule.code) & (newest.c.version == TagRule.version))
        .outerjoin(counts, counts.c.tag_code == TagRule.code)
        .order_by(TagRule.code)
    ).all()
    return pd.DataFrame(rows, columns=["id", "code", "name", "version", "active", "source", "patients"])


def rule(*, conn: Connection, code: str) -> dict[str, Any] | None:
    row = conn.execute(select(TagRule).where(TagRule.code == code).order_by(TagRule.version.desc()).limit(1)).first()
    if row is None:
        return None
    r = row[0]
    return {"id": r.id, "code": r.code, "version": r.version, "name_zh": r.name_zh, "name_en": r.name_en,
            "expression": r.expression, "source": r.source, "active": r.active}


def tag_names(*, conn: Connection, lang: str) -> dict[str, str]:
    name = TagRule.name_zh if lang == "zh_CN" else TagRule.name_en
    return {str(row[0]): str(row[1]) for row in conn.execute(select(TagRule.code, name).order_by(TagRule.version))}


def patient_tags(*, conn: Connection, patient_id: int, lang: str) -> pd.DataFrame:
    """Open tags of one patient: code, display name, since, and the rule code and version (None if manual)."""
    names = tag_names(conn=conn, lang=lang)
    rows = conn.execute(
        select(PatientTag.id, PatientTag.tag_code, PatientTag.since, TagRule.code, PatientTag.rule_version)
        .outerjoin(TagRule, TagRule.id == PatientTag.rule_id)
        .where(PatientTag.patient_id == patient_id, PatientTag.until.is_(None))
        .order_by(PatientTag.since, PatientTag.tag_code)
    ).all()
    return pd.DataFrame(
        [(i, c, names.get(c, c), s, rc, rv) for i, c, s, rc, rv in rows],
        columns=["id", "code", "name", "since", "rule_code", "rule_version"],
    )
