"""Admin: user accounts, their lockout state, unlocking, disabling and creating users."""

from __future__ import annotations

import streamlit as st

from components import data
from components.export_buttons import data_table
from components.navigation import require
from components.runtime import lang, settings_or_stop, tr
from db.models import ROLES
from queries.admin import users
from services import auth, clock
from services.errors import UserError

admin = require("users")
settings = settings_or_stop()
st.title(tr("users.title"))
now = clock.now(settings.timezone)

with data.read() as conn:
    table = users(conn=conn, now=now, lang=lang())

shown = table.drop(columns=["id", "locked_until"]).assign(role=table["role"].map(lambda r: tr(f"role.{r}")))
data_table(shown.rename(columns={c: tr(f"users.col.{c}") for c in shown.columns}), name="users",
           description=tr("users.caption", n=len(table)))

labels = {int(i): f"{u} ({n})" for i, u, n in zip(table["id"].tolist(), table["username"].tolist(),
                                                    table["display_name"].tolist(), strict=True)}
with st.form("users_manage"):
    target = st.selectbox(tr("users.pick"), options=list(labels), format_func=lambda i: labels[i])
    c1, c2, c3 = st.columns(3)
    unlock = c1.form_submit_button(tr("users.unlock"))
    disable = c2.form_submit_button(tr("users.disable"))
    enable = c3.form_submit_button(tr("users.enable"))
if target is not None and (unlock or disable or enable):
    try:
        with data.write() as s:
            if unlock:
                auth.unlock_user(s, user_id=target, actor=admin, now=now)
            else:
                auth.set_active(s, user_id=target, active=bool(enable), actor=admin, now=now)
        st.success(tr("users.saved"))
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))

st.subheader(tr("users.create"))
with st.form("users_create", clear_on_submit=True):
    username = st.text_input(tr("users.col.username"))
    display_name = st.text_input(tr("users.col.display_name"))
    role = st.selectbox(tr("users.col.role"), options=list(ROLES), format_func=lambda r: tr(f"role.{r}"))
    password = st.text_input(tr("login.password"), type="password")
    submitted = st.form_submit_button(tr("users.create_submit"))
if submitted:
    try:
        with data.write() as s:
            auth.create_user(s, username=username, password=password, role=role, now=now,
                             display_name=display_name or None, actor=admin.username)
        st.success(tr("users.created", username=username))
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))
