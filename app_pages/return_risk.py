"""Return risk for managers and admins: the fitted model (coefficients, held-out AUC) and who may not come back."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from components import care_data, data, kpi
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from services import audit, clock, return_risk

user = require("return_risk")
st.title(tr("nav.return_risk"))
st.caption(tr("care.return_risk.intro"))
today = clock.today(settings_or_stop().timezone)

# data
model = care_data.return_model(today.isoformat())

# show
st.caption(tr("care.return_risk.method", cutoff=model.cutoff.date().isoformat()))
if not model.fitted:
    st.info(tr("care.return_risk.not_enough", n=return_risk.MIN_PER_CLASS))
    st.stop()
kpi.cards([
    (tr("care.return_risk.auc"), kpi.fmt_num(model.auc, 3), tr("care.return_risk.auc_help", n=model.n_test)),
    (tr("care.return_risk.train_n"), f"{model.n_train:,}", tr("care.return_risk.method",
                                                              cutoff=model.cutoff.date().isoformat())),
])
st.subheader(tr("care.return_risk.coefficients"))
coef = pd.DataFrame(
    [(tr(f"care.return_risk.feature.{k}"), round(v, 3), round(math.exp(v), 3)) for k, v in model.coefficients.items()],
    columns=[tr("care.return_risk.col.feature"), tr("care.return_risk.col.coefficient"),
             tr("care.return_risk.col.odds_ratio")])
data_table(coef, name="return_risk_model", caption=False,
           description=tr("care.return_risk.method", cutoff=model.cutoff.date().isoformat()))

st.subheader(tr("care.return_risk.list_title"))
ids = [s.patient_id for s in model.scores]
with data.read() as conn:
    labels = return_risk.patient_labels(conn, ids=ids, lang=lang())
with data.write() as s:
    audit.record(s, action="return_risk.list", user_id=user.id, username=user.username, entity="patient",
                 detail={"rows": len(ids)})
rows = [(labels.get(sc.patient_id, ("", "", None))[0], labels.get(sc.patient_id, ("", "", None))[1],
         labels.get(sc.patient_id, ("", "", None))[2] or "", f"{sc.probability * 100:.1f}%",
         ", ".join(tr(f"care.return_risk.feature.{r}") for r in sc.reasons)) for sc in model.scores]
st.caption(tr("care.return_risk.list_caption", n=len(rows), total=f"{model.cohort_size:,}"))
data_table(pd.DataFrame(rows, columns=[tr(f"care.return_risk.col.{c}") for c in
                                       ("card_no", "name", "department", "probability", "reasons")]),
           name="return_risk_patients", caption=False,
           description=tr("care.return_risk.list_caption", n=len(rows), total=f"{model.cohort_size:,}"))
