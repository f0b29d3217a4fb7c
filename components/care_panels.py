"""The care part of the patient 360° view: tags, risk with factors, advice that applies and why, wellness plan,
and the phase summary editor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd
import streamlit as st

from components import care_data, data
from components.export_buttons import data_table
from components.runtime import lang, settings_or_stop, tr
from queries import advice as advice_q
from queries import risk as risk_q
from queries import tags as tags_q
from services import advice, clock, summaries, tags, wellness
from services.auth import CurrentUser
from services.errors import UserError

EDIT_ROLES = frozenset({"nurse", "admin"})
GOAL_INDICATORS = ("SBP", "DBP", "FPG", "HBA1C", "TC", "LDL", "HDL", "TG", "BMI", "WEIGHT", "WAIST")


def _tags(patient_id: int, user: CurrentUser) -> None:
    with data.read() as conn:
        df = tags_q.patient_tags(conn=conn, patient_id=patient_id, lang=lang())
    if df.empty:
        st.info(tr("care.panel.no_tags"))
    else:
        for row in df.itertuples():
            # pandas turns the outer join's missing rule into NaN: a hand-set tag has no rule code.
            by_rule = isinstance(row.rule_code, str)
            origin = (tr("care.panel.tag_rule", code=row.rule_code, version=f"{float(str(row.rule_version)):g}")
                      if by_rule else tr("care.panel.tag_manual"))
            line = f"- **{row.name}** · {tr('care.panel.tag_since', date=str(row.since)[:10])} · {origin}"
            if by_rule or user.role not in EDIT_ROLES:
                st.markdown(line)
                continue
            # Hand-set tags can be ended here (rule tags would come back: their rule decides).
            c1, c2 = st.columns([5, 1])
            c1.markdown(line)
            if c2.button(tr("care.panel.end_tag"), key=f"care_panel_tag_end_{row.id}"):
                _end_tag(int(str(row.id)), str(row.code), user)
    if user.role in EDIT_ROLES:
        c1, c2 = st.columns([3, 1])
        code = c1.text_input(tr("care.rules_page.code"), key=f"care_panel_tag_{patient_id}")
        if c2.button(tr("care.rules_page.add"), key=f"care_panel_tag_add_{patient_id}") and code.strip():
            try:
                with data.write() as s:
                    tags.add_manual_tag(s, patient_id=patient_id, tag_code=code, user_id=user.id,
                                        username=user.username)
                st.rerun()
            except UserError as exc:
                st.error(tr(exc.key, **exc.params))


def _end_tag(tag_id: int, code: str, user: CurrentUser) -> None:
    try:
        with data.write() as s:
            tags.end_manual_tag(s, tag_id=tag_id, user=user)
        st.toast(tr("care.panel.tag_ended", code=code))
        st.rerun()
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))


def _close_plan(plan_id: int, outcome: str, user: CurrentUser, today: date) -> None:
    try:
        with data.write() as s:
            wellness.close_plan(s, plan_id=plan_id, user=user, outcome=outcome, today=today)
        st.toast(tr("care.panel.plan_completed" if outcome == "completed" else "care.panel.plan_closed"))
        st.rerun()
    except UserError as exc:
        st.error(tr(exc.key, **exc.params))


def _risk(patient_id: int) -> None:
    with data.read() as conn:
        results = risk_q.patient_latest(conn=conn, patient_id=patient_id)
    if not results:
        st.info(tr("care.panel.no_risk"))
        return
    for r in results:
        label = tr(f"care.risk.model.{r['model']}")
        error = (r["inputs"] or {}).get("error")
        if r["score"] is None:
            if error == "care.risk.age_out_of_range":
                detail = tr(error, **(r["inputs"].get("error_params") or {}))
            else:
                detail = care_data.missing_text(r["missing"])
            st.markdown(f"**{label}** — {tr('care.risk.missing_inputs')}: {detail}")
            continue
        unit = "%" if r["model"] in ("pce", "framingham") else ""
        st.markdown(f"**{label}** — {r['score']:.1f}{unit} · {care_data.level_label(r['level'])} · "
                    f"{r['model_version']} · {r['assessed_at']:%Y-%m-%d}")
        if r["factors"]:
            factors = pd.DataFrame(r["factors"])
            factors = factors.assign(name=factors["name"].map(lambda n: tr(f"care.risk.factor.{n}")),
                                     value=factors["value"].astype(str),
                                     contribution=factors["contribution"].astype(float).round(3))
            with st.expander(tr("care.panel.factors")):
                data_table(factors, name=f"risk_factors_{r['model']}", key=f"export_factors_{patient_id}_{r['model']}",
                           caption=False, patient_id=patient_id,
                           description=f"{label} · {r['model_version']} · {r['assessed_at']:%Y-%m-%d}")


def _reason(kind: str, value: str, names: dict[str, str]) -> str:
    if kind == "tag":
        return names.get(value, value)
    model, _, level = value.partition(":")
    return f"{tr(f'care.risk.model.{model}')}: {care_data.level_label(level)}"


def _advice(patient_id: int) -> None:
    with data.write() as s:
        items = advice.applicable_advice(s, patient_id=patient_id, lang=lang())
    with data.read() as conn:
        names = tags_q.tag_names(conn=conn, lang=lang())
    if not items:
        st.info(tr("care.panel.no_advice"))
        return
    for a in items:
        st.markdown(f"**{a.title}** ({tr(f'care.advice.category.{a.category}')})  \n{a.body}")
        st.caption(tr("care.panel.why", reasons="; ".join(_reason(k, v, names) for k, v in a.reasons)))


def _wellness(patient_id: int, user: CurrentUser, today: date) -> None:
    now = clock.now(settings_or_stop().timezone)
    with data.write() as s:
        plans = wellness.plans_of(s, patient_id=patient_id)
        progress = {p.id: wellness.progress(s, plan=p, as_of=now) for p in plans}
        shown = [(p.id, p.title, p.status, p.start_on, p.end_on, p.advice_codes) for p in plans]
    if not shown:
        st.info(tr("care.panel.no_plan"))
    for plan_id, title, status, start_on, end_on, codes in shown:
        st.markdown(f"**{title}** · {start_on} – {end_on or ''} · {tr(f'care.panel.plan_status_{status}')}")
        for g in progress[plan_id]:
            state = (tr("care.panel.goal_no_data") if g.met is None else tr("care.panel.goal_met") if g.met
                     else tr("care.panel.goal_overdue") if g.overdue else tr("care.panel.goal_not_met"))
            goal = tr("care.panel.goal", indicator=g.indicator, cmp=g.cmp, target=f"{g.target:g}",
                      date=g.by.isoformat())
            values = tr("care.panel.goal_progress", baseline="—" if g.baseline is None else f"{g.baseline:g}",
                        latest="—" if g.latest is None else f"{g.latest:g}")
            st.markdown(f"- {goal}: {values} — **{state}**")
        if codes:
            st.caption(", ".join(codes))
        if status == "active" and user.role in EDIT_ROLES:
            c1, c2, _ = st.columns([1, 1, 3])
            if c1.button(tr("care.panel.complete_plan"), key=f"care_panel_plan_complete_{plan_id}"):
                _close_plan(plan_id, "completed", user, today)
            if c2.button(tr("care.panel.close_plan"), key=f"care_panel_plan_close_{plan_id}"):
                _close_plan(plan_id, "closed", user, today)
    if user.role not in EDIT_ROLES:
        return
    with st.expander(tr("care.panel.new_plan")):
        with data.read() as conn:
            library = advice_q.items(conn=conn, lang=lang())["code"].tolist()
        with st.form(f"care_panel_plan_{patient_id}"):
            title = st.text_input(tr("care.panel.plan_title"))
            c1, c2, c3, c4 = st.columns(4)
            indicator = c1.selectbox(tr("care.panel.goal_indicator"), GOAL_INDICATORS)
            cmp = c2.selectbox(tr("care.panel.goal_cmp"), wellness.GOAL_CMPS)
            target = c3.number_input(tr("care.panel.goal_target"), value=130.0)
            by = c4.date_input(tr("care.panel.goal_by"), value=today + timedelta(days=90), min_value=today)
            picked = st.multiselect(tr("care.panel.plan_advice"), library)
            create = st.form_submit_button(tr("care.panel.create_plan"))
        if create:
            try:
                with data.write() as s:
                    wellness.create_plan(s, patient_id=patient_id, title=title,
                                         goals=[wellness.Goal(indicator, cmp, float(target), by)],
                                         advice_codes=list(picked), start_on=today, end_on=None, user_id=user.id,
                                         username=user.username)
                st.success(tr("care.panel.plan_created"))
                st.rerun()
            except UserError as exc:
                st.error(tr(exc.key, **exc.params))


def _summary(patient_id: int, user: CurrentUser, today: date) -> None:
    key = f"care_panel_summary_{patient_id}"
    c1, c2, c3 = st.columns([1, 1, 1])
    start = c1.date_input(tr("care.panel.period_from"), value=today - timedelta(days=180), key=f"{key}_from")
    end = c2.date_input(tr("care.panel.period_to"), value=today, key=f"{key}_to")
    if c3.button(tr("care.panel.draft"), key=f"{key}_draft"):
        try:
            with data.write() as s:
                st.session_state[key] = summaries.draft(s, patient_id=patient_id, period_from=start, period_to=end,
                                                        lang=lang())
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
    st.text_area(tr("care.panel.summary_text"), key=key, height=260)
    if user.role in EDIT_ROLES and st.button(tr("care.panel.save_summary"), key=f"{key}_save", type="primary"):
        try:
            with data.write() as s:
                summaries.save(s, patient_id=patient_id, period_from=start, period_to=end, language=lang(),
                               text=st.session_state.get(key, ""), author_id=user.id, username=user.username)
            st.success(tr("care.panel.summary_saved"))
        except UserError as exc:
            st.error(tr(exc.key, **exc.params))
    with data.write() as s:
        past = [(h.period_from, h.period_to, h.created_at, h.text) for h in summaries.summaries_of(s,
                                                                                             patient_id=patient_id)]
    if past:
        st.markdown(f"**{tr('care.panel.past_summaries')}**")
        for p_from, p_to, saved, text in past[:5]:
            with st.expander(tr("care.panel.summary_meta", start=p_from.isoformat(), end=p_to.isoformat(),
                                saved=f"{saved:%Y-%m-%d %H:%M}")):
                st.text(text)


def patient_care_panel(patient_id: int, user: CurrentUser) -> None:
    """Draw the care panel for one patient (the 360° page has already checked scope and audited the read)."""
    today = clock.today(settings_or_stop().timezone)
    st.header(tr("care.panel.title"))
    # Bordered sections, not tabs: the 360° page owns its tab row, and expanders inside here stay possible.
    sections: tuple[tuple[str, Callable[[], None]], ...] = (
                ("tags", lambda: _tags(patient_id, user)), ("risk", lambda: _risk(patient_id)),
                ("advice", lambda: _advice(patient_id)), ("wellness", lambda: _wellness(patient_id, user, today)),
                ("summary", lambda: _summary(patient_id, user, today)))
    for name, draw in sections:
        with st.container(border=True):
            st.subheader(tr(f"care.panel.{name}"))
            draw()
