"""Careloop entrypoint: page config, login, the pages of the user's role, the shared sidebar, pg.run()."""

from __future__ import annotations

import streamlit as st

from components import auth_ui, runtime
from components.navigation import pages_for_role
from components.runtime import tr

st.set_page_config(page_title="Careloop", page_icon=":material/favorite:", layout="wide")
runtime.language_selector()
settings = runtime.settings_or_stop()
engine = runtime.engine_or_stop(settings)

user = auth_ui.current_user(engine, settings)
if user is None:
    auth_ui.login_page(engine, settings)
    st.stop()

sections: dict[str, list[st.Page]] = {}
for spec in pages_for_role(user.role):
    sections.setdefault(tr(spec.section_key), []).append(
        st.Page(spec.path, title=tr(spec.title_key), icon=spec.icon, url_path=spec.key)
    )
pg = st.navigation(sections)

auth_ui.sync_cookie(settings)
st.sidebar.markdown(f"**{user.display_name}** · {tr('role.' + user.role)}")
if settings.demo:
    st.sidebar.caption(tr("login.demo_mode_short"))
auth_ui.logout_button(engine, settings)
pg.run()
