"""Risk distribution for managers, quality and admins: patients by level and department, with drill-down."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from components import care_data, data
from components.export_buttons import data_table
from components.filters import tag_segment
from components.navigation import require
from components.runtime import lang, tr
from queries import risk as risk_q
from queries.filters import scope_for
from services import audit
from services.risk import SOURCES, VERSIONS

user = require("risk")
scope = scope_for(role=user.role, department_id=user.department_id)
st.title(tr("nav.risk"))
st.caption(tr("care.risk_page.intro"))

# settings
s1, s2 = st.columns(2)
model = s1.selectbox(tr("care.risk_page.model"), care_data.MODEL_KEYS, key="risk_model",
                     format_func=care_data.labelled(lambda m: tr(f"care.risk.model.{m}"), care_data.MODEL_KEYS))
tag, tag_name = tag_segment(key="risk_tag", container=s2)
segment = [tr("filter.segment_is", tag=tag_name)] if tag else []

# data
dist = care_data.risk_distribution(scope.key, model, lang(), scope, tag)

# show
st.caption(tr("care.risk_page.source", source=SOURCES[model], version=VERSIONS[model]))
st.info(tr("care.risk.china_par_note"))
if dist.empty:
    st.info(tr("care.risk_page.no_data"))
    st.stop()
no_dept = tr("care.risk_page.no_department")
dist = dist.assign(department=dist["department"].fillna(no_dept), level_label=dist["level"].map(care_data.level_label))
cols = {c: tr(f"care.risk_page.col.{c}") for c in ("department", "level", "patients")}
chart_title = tr("filter.separator").join([tr("care.risk_page.chart_title"), *segment])
st.altair_chart(care_data.level_chart(dist, order=care_data.level_order(model), title=chart_title, labels=cols),
                width="stretch")
pivot = dist.pivot_table(index="department", columns="level_label", values="patients", aggfunc="sum", fill_value=0)
data_table(pivot, name=f"risk_{model}", hide_index=False, caption=False,
           description=tr("filter.separator").join([tr(f"care.risk.model.{model}"), tr("care.risk_page.chart_title"),
                                                    *segment]))

st.subheader(tr("care.risk_page.drill_title"))
departments = dist[["department_id", "department"]].drop_duplicates().reset_index(drop=True)
c1, c2 = st.columns(2)
row = c1.selectbox(tr("care.risk_page.drill_department"), list(departments.index), key="risk_drill_dept",
                   format_func=lambda i: str(departments.loc[i, "department"]))  # data, not language
levels = [lv for lv in care_data.level_order(model) if lv in set(dist["level"])]
level = c2.selectbox(tr("care.risk_page.drill_level"), levels, key="risk_drill_level",
                     format_func=care_data.labelled(care_data.level_label, levels))
raw_dept = departments.loc[row, "department_id"]
dept_id = None if pd.isna(raw_dept) else int(raw_dept)  # NaN stands for "no department"
LIMIT = 200
with data.read() as conn:
    patients = risk_q.drilldown(conn=conn, model=model, scope=scope, department_id=dept_id, level=level, limit=LIMIT,
                                tag=tag)
with data.write() as s:
    audit.record(s, action="risk.drilldown", user_id=user.id, username=user.username, entity="risk_assessment",
                 detail={"model": model, "department_id": dept_id, "level": level, "tag": tag, "rows": len(patients)})
st.caption(tr("filter.separator").join([
    tr("care.risk_page.drill_caption", n=len(patients), limit=LIMIT, department=str(departments.loc[row, "department"]),
       level=care_data.level_label(level)), *segment]))
if not patients.empty:

    def _shaped(found: pd.DataFrame) -> pd.DataFrame:
        shown = found.assign(level=found["level"].map(care_data.level_label),
                             factors=found["factors"].map(care_data.factor_text),
                             score=found["score"].round(1)).drop(columns=["patient_id"])
        return shown.rename(columns={c: tr(f"care.risk_page.col.{c}") for c in shown.columns})

    def _all_patients(limit: int) -> pd.DataFrame:
        with data.read() as conn:
            return _shaped(risk_q.drilldown(conn=conn, model=model, scope=scope, department_id=dept_id, level=level,
                                            limit=limit, tag=tag))

    data_table(_shaped(patients), name=f"risk_{model}_patients", caption=False,
               full=_all_patients if len(patients) >= LIMIT else None,
               description=tr("filter.separator").join([tr(f"care.risk.model.{model}"),
                                                        str(departments.loc[row, "department"]),
                                                        care_data.level_label(level), *segment]))
