"""The contact panel of the 360° view: mobile for SMS, e-mail, WeChat and app ids, channel preferences, language."""

from __future__ import annotations

import streamlit as st

from components import data
from components.runtime import settings_or_stop, tr
from queries import messaging as mq
from services import clock
from services.auth import CurrentUser
from services.errors import UserError
from services.messaging import contacts


def patient_contact_panel(patient_id: int, user: CurrentUser) -> None:
    """Shown to the roles that may change it; the service checks the role (and the nurse's reach) again."""
    if user.role not in contacts.EDIT_ROLES:
        return
    settings = settings_or_stop()
    with data.read() as conn:
        view = mq.patient_contact_settings(conn=conn, patient_id=patient_id)
    if view is None:
        return
    st.subheader(tr("messaging.contacts.title"))
    # The version seen when the form was first shown, so a save after someone else's is refused, not merged.
    vkey = f"contacts_version_{patient_id}"
    st.session_state.setdefault(vkey, view.version)
    with st.form(f"contacts_form_{patient_id}"):
        c1, c2 = st.columns(2)
        phone = c1.text_input(tr("messaging.contacts.phone"), value=view.phone, key=f"ct_phone_{patient_id}")
        email = c2.text_input(tr("messaging.contacts.email"), value=view.email, key=f"ct_email_{patient_id}")
        wechat = c1.text_input(tr("messaging.contacts.wechat"), value=view.wechat, key=f"ct_wechat_{patient_id}")
        app = c2.text_input(tr("messaging.contacts.app"), value=view.app, key=f"ct_app_{patient_id}")
        prefs = c1.multiselect(tr("messaging.contacts.prefs"), options=list(contacts.PREF_CHANNELS),
                               default=[c for c in view.channel_prefs if c in contacts.PREF_CHANNELS],
                               format_func=lambda c: tr(f"messaging.contacts.channel.{c}"),
                               key=f"ct_prefs_{patient_id}")
        language = c2.selectbox(tr("messaging.contacts.language"), options=list(contacts.LANGUAGES),
                                index=list(contacts.LANGUAGES).index(view.language)
                                if view.language in contacts.LANGUAGES else 0,
                                format_func=lambda v: tr(f"education.lang.{v}"), key=f"ct_lang_{patient_id}")
        save = st.form_submit_button(tr("messaging.contacts.save"))
    if not save:
        return
    try:
        with data.write() as s:
            contacts.save_contacts(s, patient_id=patient_id, expected_version=int(st.session_state[vkey]),
                                   data=contacts.ContactInput(phone=phone, email=email, wechat=wechat, app=app,
                                                              channel_prefs=tuple(prefs), language=language),
                                   user=user, now=clock.now(settings.timezone))
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))
        if exc.key == "messaging.contacts.stale":
            st.session_state.pop(vkey, None)  # the next run shows (and locks on) the current values
        return
    st.session_state.pop(vkey, None)
    # A saved phone or preference bumps the patient's version; the demographics form re-reads it too.
    st.session_state.pop(f"patient_edit_version_{patient_id}", None)
    st.success(tr("messaging.contacts.saved"))
