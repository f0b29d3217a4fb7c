"""Follow-up plan templates for administrators: list, create, change (new version), activate, built-ins."""

from __future__ import annotations

import streamlit as st

from components import data, followup_data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from db.models import ROLES
from queries import followup as q
from services import clock, followup
from services.errors import UserError
from services.followup import PlanSpec

user = require("plans")
st.title(tr("nav.plans"))
now = clock.now(settings_or_stop().timezone)
flash = st.session_state.pop("plans_flash", None)
if flash:
    st.success(flash)


def _run(action: str, message: str) -> None:
    """Run one service call in its own transaction; a UserError is shown, nothing is written."""
    try:
        with data.write() as s:
            if action == "builtin":
                followup.ensure_builtin_plans(s)
            elif action == "create":
                followup.create_plan(s, spec=_spec(), user=user, now=now)
            elif action == "edit":
                followup.update_plan(s, plan_id=int(st.session_state["plans_pick"]), spec=_spec("edit_"), user=user,
                                     now=now)
            elif action == "toggle":
                plan_id = int(st.session_state["plans_pick"])
                active = bool(plans.loc[plans["plan_id"] == plan_id, "active"].iloc[0])
                followup.set_plan_active(s, plan_id=plan_id, active=not active, user=user, now=now)
        st.session_state["plans_flash"] = message
        st.rerun()
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))


def _spec(prefix: str = "") -> PlanSpec:
    ss = st.session_state
    return PlanSpec(code=ss.get(f"plans_{prefix}code", "") or "", name_zh=ss[f"plans_{prefix}name_zh"],
                    name_en=ss[f"plans_{prefix}name_en"], trigger=ss[f"plans_{prefix}trigger"],
                    trigger_param=ss[f"plans_{prefix}param"] or None, owner_role=ss[f"plans_{prefix}role"],
                    steps=followup.parse_steps(ss[f"plans_{prefix}steps"]))


def _fields(prefix: str, defaults: dict[str, str]) -> None:
    c1, c2 = st.columns(2)
    c1.text_input(tr("fu_plans.name_zh"), value=defaults.get("name_zh", ""), key=f"plans_{prefix}name_zh")
    c2.text_input(tr("fu_plans.name_en"), value=defaults.get("name_en", ""), key=f"plans_{prefix}name_en")
    triggers = list(followup.TRIGGERS)
    c3, c4, c5 = st.columns(3)
    c3.selectbox(tr("fu_plans.trigger"), triggers, index=triggers.index(defaults.get("trigger", "discharge")),
                 format_func=followup_data.labelled(lambda t: tr(f"trigger.{t}"), triggers),
                 key=f"plans_{prefix}trigger")
    c4.text_input(tr("fu_plans.trigger_param"), value=defaults.get("param", ""), key=f"plans_{prefix}param")
    roles = list(ROLES)
    c5.selectbox(tr("fu_plans.owner_role"), roles, index=roles.index(defaults.get("role", "nurse")),
                 format_func=followup_data.labelled(lambda r: tr(f"role.{r}"), roles), key=f"plans_{prefix}role")
    st.text_input(tr("fu_plans.steps"), value=defaults.get("steps", "3:phone, 7:phone, 30:phone"),
                  key=f"plans_{prefix}steps")


# data
with data.read() as conn:
    plans = q.plans(conn=conn, lang=lang())

# show
if st.button(tr("fu_plans.builtin"), key="plans_builtin"):
    _run("builtin", tr("fu_plans.builtin_done"))
shown = plans.drop(columns=["name_zh", "name_en"]).assign(trigger=plans["trigger"].map(lambda t: tr(f"trigger.{t}")),
                     owner_role=plans["owner_role"].map(lambda r: tr(f"role.{r}")))
data_table(shown.rename(columns={c: tr(f"fu_plans.col.{c}") for c in shown.columns}), name="followup_plans",
           description=tr("fu_plans.caption", n=len(plans)))

if not plans.empty:
    st.subheader(tr("fu_plans.edit"))
    labels = {int(i): f"{c} v{v} · {n}" for i, c, v, n in zip(plans["plan_id"].tolist(), plans["code"].tolist(),
                                                              plans["version"].tolist(), plans["name"].tolist(),
                                                              strict=True)}
    picked = st.selectbox(tr("fu_plans.pick"), list(labels), format_func=labels.__getitem__, key="plans_pick")
    row = plans.loc[plans["plan_id"] == picked].iloc[0]
    with st.form("plans_edit"):
        _fields("edit_", {"name_zh": str(row["name_zh"]), "name_en": str(row["name_en"]),
                          "trigger": str(row["trigger"]), "param": str(row["trigger_param"] or ""),
                          "role": str(row["owner_role"]), "steps": str(row["steps"])})
        if st.form_submit_button(tr("fu_plans.save")):
            _run("edit", tr("fu_plans.saved"))
    if st.button(tr("fu_plans.toggle"), key="plans_toggle"):
        _run("toggle", tr("fu_plans.deactivated") if bool(row["active"]) else tr("fu_plans.activated"))

st.subheader(tr("fu_plans.create"))
with st.form("plans_create"):
    st.text_input(tr("fu_plans.code"), key="plans_code")
    _fields("", {})
    if st.form_submit_button(tr("fu_plans.save"), type="primary"):
        _run("create", tr("fu_plans.saved"))
