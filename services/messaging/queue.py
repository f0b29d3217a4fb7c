"""Queue the day's reminders from rules, set-based: one INSERT ... SELECT per rule (and arm), idempotent.

Rules (all under the patient's "followup" consent):
  followup    a pending follow-up task due today whose method is sms or wechat (that channel first)
  revisit     an intervention whose review (revisit) date is tomorrow
  checkup     the last "checkup" encounter was 365 - CHECKUP_LEAD_DAYS days ago: the annual check-up is due soon
  exam        an exam report (status final) that became ready yesterday or today
  medication  an active medication record with detail {"times": ["08:00", "20:00"]}: one reminder per time
Every row passes do-not-contact, active status, consent at queue time, the weekly cap and the channel chain
(rule channel, the patient's preferences, then sms/wechat/email, first usable address wins) in SQL; the send
job checks them all again. The idempotency key per (rule, source row, day) makes a re-run queue nothing twice.
"""

from __future__ import annotations

import time as _time
import typing
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.expression import FunctionElement

from db.datefn import as_date, date_text, day_at
from db.models import (
    Department,
    Encounter,
    ExamReport,
    Experiment,
    ExperimentAssignment,
    FollowupTask,
    HealthHistory,
    Intervention,
    Message,
    MessageTemplate,
    Patient,
    PatientContact,
)
from services import audit
from services.messaging import rules, templates

RULES = ("followup", "revisit", "checkup", "exam", "medication")
RULE_TEMPLATES = {"followup": "reminder_followup", "revisit": "reminder_revisit", "checkup": "reminder_checkup",
                  "exam": "reminder_exam", "medication": "reminder_medication"}
CHECKUP_LEAD_DAYS = 14
QUEUE_LOCK_KEY = 80_800_001  # pg_advisory_xact_lock key of queue_reminders
ANALYZE_AFTER = 1000  # rows a rule queued before the statistics of messages are refreshed
MAX_MED_TIMES = 4
PHONE_SQL = r"^(\+?86)?1[3-9][0-9]{9}$"
EMAIL_SQL = "%_@_%._%"


@dataclass(frozen=True)
class Candidates:
    """Per rule: rows (patient_id, key, date_text, indicator) and the moment the reminder goes out."""

    select: Select[Any]
    scheduled_at: datetime  # when it goes out; with per_row_time, the day whose week the cap counts
    first_channel: Any = None  # a literal channel name or a column (the follow-up step's method)
    per_row_time: bool = False  # the select has a "sched" column (medication times) instead


def _coin(dialect: str) -> ColumnElement[str]:
    # Random assignment in the database: PostgreSQL random() is [0, 1); SQLite's is a signed 64-bit integer.
    if dialect == "postgresql":
        return case((func.random() < 0.5, literal("A", String)), else_=literal("B", String))
    return case((func.abs(func.random() % 2) == 0, literal("A", String)), else_=literal("B", String))


def _key(prefix: str, *parts: Any) -> Any:
    expr: Any = literal(prefix, String)
    for i, p in enumerate(parts):
        if i:
            expr = expr + literal(":", String)
        expr = expr + (literal(p, String) if isinstance(p, str) else cast(p, String))
    return expr


def _at(day: date, t: time, policy: rules.Policy) -> datetime:
    return rules.defer_out_of_quiet(datetime.combine(day, t), policy)


# --- the rules -----------------------------------------------------------------------------------


def _followup(as_of: date, policy: rules.Policy) -> list[Candidates]:
    t = FollowupTask
    sel = select(t.patient_id.label("patient_id"), _key("fu:", t.id).label("key"),
                 date_text(t.due_date).label("date_text"), literal("", String).label("indicator"),
                 t.method.label("first")).where(
        t.status == "pending", t.method.in_(("sms", "wechat")), t.due_date == as_of)
    return [Candidates(sel, _at(as_of, policy.send_time, policy), first_channel="column")]


def _revisit(as_of: date, policy: rules.Policy) -> list[Candidates]:
    i = Intervention
    tomorrow = as_of + timedelta(days=1)
    sel = select(i.patient_id.label("patient_id"), _key("rv:", i.id).label("key"),
                 date_text(i.next_review_on).label("date_text"), literal("", String).label("indicator")).where(
        i.next_review_on == tomorrow)
    return [Candidates(sel, _at(as_of, policy.send_time, policy))]


def _checkup(as_of: date, policy: rules.Policy) -> list[Candidates]:
    due = as_of + timedelta(days=CHECKUP_LEAD_DAYS)
    last_day = due - timedelta(days=365)
    e, later = Encounter, aliased(Encounter)
    start, end = datetime.combine(last_day, time.min), datetime.combine(last_day + timedelta(days=1), time.min)
    sel = (select(e.patient_id.label("patient_id"), _key("ck:", e.patient_id, due.isoformat()).label("key"),
                  literal(due.isoformat(), String).label("date_text"), literal("", String).label("indicator"))
           .where(e.kind == "checkup", e.started_at >= start, e.started_at < end,
                  ~exists().where(later.patient_id == e.patient_id, later.kind == "checkup",
                                  later.started_at >= end))
           .distinct())
    return [Candidates(sel, _at(as_of, policy.send_time, policy))]


def _exam(as_of: date, policy: rules.Policy) -> list[Candidates]:
    r = ExamReport
    start = datetime.combine(as_of - timedelta(days=1), time.min)
    end = datetime.combine(as_of + timedelta(days=1), time.min)
    sel = select(r.patient_id.label("patient_id"), _key("ex:", r.id).label("key"),
                 date_text(as_date(r.reported_at)).label("date_text"), r.title.label("indicator")).where(
        r.status == "final", r.reported_at >= start, r.reported_at < end)
    return [Candidates(sel, _at(as_of, policy.send_time, policy))]


def _active_meds(as_of: date) -> list[ColumnElement[bool]]:
    h = HealthHistory
    return [h.kind == "medication", or_(h.started_on.is_(None), h.started_on <= as_of),
            or_(h.ended_on.is_(None), h.ended_on >= as_of)]


class json_times_at(FunctionElement[str]):
    """detail.times[pos] as text, pos being a column (PostgreSQL ->, SQLite json_extract with a built path)."""

    type = String()
    inherit_cache = True


@compiles(json_times_at, "postgresql")
def _json_times_at_pg(element: json_times_at, compiler: Any, **kw: Any) -> str:
    detail, pos = list(element.clauses)
    return f"(({compiler.process(detail, **kw)}) -> 'times' ->> CAST({compiler.process(pos, **kw)} AS INTEGER))"


@compiles(json_times_at, "sqlite")
def _json_times_at_sqlite(element: json_times_at, compiler: Any, **kw: Any) -> str:
    detail, pos = list(element.clauses)
    return (f"json_extract({compiler.process(detail, **kw)}, '$.times[' || {compiler.process(pos, **kw)} || ']')")


def _medication(as_of: date, policy: rules.Policy) -> list[Candidates]:
    """One pass over active medications x the first MAX_MED_TIMES habit times, quiet hours applied in SQL."""
    h = HealthHistory
    slots = union_all(*[select(literal(i, Integer).label("pos")) for i in range(MAX_MED_TIMES)]).subquery("slots")
    raw = json_times_at(h.detail, slots.c.pos)
    qs, qe = policy.quiet_start.strftime("%H:%M"), policy.quiet_end.strftime("%H:%M")
    today, tomorrow = as_of.isoformat(), (as_of + timedelta(days=1)).isoformat()
    hhmm = func.substr(raw, 1, 5)
    if policy.quiet_start > policy.quiet_end:  # quiet across midnight: late -> tomorrow morning, early -> today
        sched = case((hhmm >= qs, day_at(literal(tomorrow, String), literal(qe, String))),
                     (hhmm < qe, day_at(literal(today, String), literal(qe, String))),
                     else_=day_at(literal(today, String), hhmm))
    else:
        sched = case((and_(hhmm >= qs, hhmm < qe), day_at(literal(today, String), literal(qe, String))),
                     else_=day_at(literal(today, String), hhmm))
    sel = (select(h.patient_id.label("patient_id"),
                  _key("md:", h.id, as_of.isoformat(), func.replace(hhmm, ":", "")).label("key"),
                  literal(as_of.isoformat(), String).label("date_text"), h.text.label("indicator"),
                  sched.label("sched"))
           .select_from(h).join(slots, true())
           # A malformed time in imported data gives no reminder rather than a wrong one.
           .where(*_active_meds(as_of), raw.regexp_match(r"^([01][0-9]|2[0-3]):[0-5][0-9]")))
    return [Candidates(sel, datetime.combine(as_of, policy.send_time), per_row_time=True)]


# --- the one insert --------------------------------------------------------------------------------


def _channel_case(first: Any, prefs: Any, ok: dict[str, ColumnElement[bool]]) -> ColumnElement[Any]:
    whens: list[tuple[ColumnElement[bool], Any]] = []
    dynamic = [first] if first is not None else []
    dynamic += [prefs[i].as_string() for i in range(len(rules.CHANNELS))]
    for expr in dynamic:
        for ch in rules.CHANNELS:
            whens.append((and_(expr == ch, ok[ch]), literal(ch, String)))
    for ch in rules.DEFAULT_CHAIN:
        whens.append((ok[ch], literal(ch, String)))
    return case(*whens, else_=null())


def _insert(session: Session, *, cand: Candidates, purpose: str, template: MessageTemplate, now: datetime,
            policy: rules.Policy, arm: tuple[int, str] | None = None, forced_channel: str | None = None) -> int:
    dialect = session.get_bind().dialect.name
    c = cand.select.subquery("cand")
    p = Patient
    email = aliased(PatientContact)
    wechat = aliased(PatientContact)
    phone_ok = p.phone.regexp_match(PHONE_SQL)
    ok = {"sms": and_(p.phone.is_not(None), phone_ok), "email": email.address.like(EMAIL_SQL),
          "wechat": wechat.address.is_not(None)}
    first: Any = literal(forced_channel, String) if forced_channel else (
        c.c.first if cand.first_channel == "column" else None)
    # Each patient reads the template (and the department's name) in their own language.
    english = p.language == "en"
    dept_name = case((english, Department.name_en), else_=Department.name_zh)
    at = cand.scheduled_at
    # The week's counts as one aggregate joined in (a correlated count per row goes quadratic as the day's
    # inserts grow the table faster than the planner's statistics).
    week = rules.week_counts(at)
    done = aliased(Message)
    inner = (
        select(c.c.patient_id, c.c.key, c.c.date_text, c.c.indicator,
               (c.c.sched if cand.per_row_time else literal(None)).label("sched"), p.name.label("name"),
               dept_name.label("department"), p.phone.label("phone"), email.address.label("email"),
               wechat.address.label("wechat"), _channel_case(first, p.channel_prefs, ok).label("channel"),
               english.label("english"),
               func.coalesce(week.c.n, 0).label("week_n"),
               # dense_rank and lag over one window (one sort): a key listed twice (the same habit time
               # twice) is one message and counts once towards the cap.
               func.dense_rank().over(partition_by=c.c.patient_id, order_by=c.c.key).label("rn"),
               func.lag(c.c.key).over(partition_by=c.c.patient_id, order_by=c.c.key).label("prev_key"))
        .select_from(c)
        .join(p, p.id == c.c.patient_id)
        .outerjoin(Department, Department.id == p.department_id)
        .outerjoin(email, and_(email.patient_id == p.id, email.channel == "email"))
        .outerjoin(wechat, and_(wechat.patient_id == p.id, wechat.channel == "wechat"))
        .outerjoin(week, week.c.patient_id == p.id)
        .where(p.do_not_contact.is_(False), p.status == "active",
               rules.consent_clause(p.id, purpose, now),
               # Keys queued before (an earlier run today) drop out before the cap is counted: they are in
               # week_n already, and a re-run does no more work than this anti-join.
               ~exists().where(done.idempotency_key == c.c.key))
    )
    if arm is not None:
        inner = inner.join(ExperimentAssignment, and_(ExperimentAssignment.patient_id == p.id,
                                                      ExperimentAssignment.experiment_id == arm[0],
                                                      ExperimentAssignment.arm == arm[1]))
    i = inner.subquery("i")
    fields = {"name": i.c.name, "date": i.c.date_text, "department": i.c.department, "indicator": i.c.indicator}
    body_sql = case((i.c.english, templates.sql_body(template.body_en, fields)),
                    else_=templates.sql_body(template.body_zh, fields))
    recipient = case((i.c.channel == "sms", i.c.phone), (i.c.channel == "email", i.c.email),
                     else_=i.c.wechat)
    scheduled: Any = i.c.sched if cand.per_row_time else literal(at)
    sel = select(i.c.patient_id, i.c.channel, literal(purpose, String), literal(template.code, String), body_sql,
                 scheduled, literal("queued", String), literal(0, Integer), i.c.key, recipient).where(
        # The weekly cap counts what is already queued or sent plus the rows of this very statement.
        i.c.channel.is_not(None), i.c.week_n + i.c.rn <= policy.weekly_cap, i.c.prev_key.is_distinct_from(i.c.key))
    cols = ["patient_id", "channel", "purpose", "template_code", "body", "scheduled_at", "status", "attempts",
            "idempotency_key", "recipient"]
    table = typing.cast(Table, Message.__table__)
    if dialect == "postgresql":
        # Plain INSERT ... SELECT, keys already queued filtered by the anti-join above: ON CONFLICT's
        # speculative insertion costs an extra WAL record and index pass per row, a million times. Safe
        # because queue_reminders holds an advisory lock: no other run can add the same keys meanwhile.
        stmt: Any = postgresql.insert(table).from_select(cols, sel)
    else:
        stmt = sqlite.insert(table).from_select(cols, sel).on_conflict_do_nothing(index_elements=["idempotency_key"])
    bulk = dialect == "postgresql" and cand.per_row_time
    if bulk:
        # The planner cannot estimate how many medications carry habit times and guesses a few dozen rows;
        # its nested loops then go quadratic against the week's message counts at a million patients. This
        # statement is a bulk pass over the population, so hash joins are right; SET LOCAL is put back after.
        previous = session.scalar(text("SELECT current_setting('enable_nestloop')"))
        session.execute(text("SET LOCAL enable_nestloop = off"))
    try:
        return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
    finally:
        if bulk:
            session.execute(text("SELECT set_config('enable_nestloop', :v, true)"), {"v": previous})


def _experiment(session: Session, rule: str, as_of: date) -> Experiment | None:
    return session.scalars(select(Experiment).where(
        Experiment.rule == rule, Experiment.active.is_(True), Experiment.started_on <= as_of,
        or_(Experiment.ended_on.is_(None), Experiment.ended_on >= as_of)).order_by(Experiment.id)).first()


def _assign(session: Session, exp: Experiment, cand: Candidates, now: datetime) -> None:
    """Patients reached by the rule for the first time get an arm at random, recorded once per experiment."""
    dialect = session.get_bind().dialect.name
    c = cand.select.subquery("cand")
    pats = select(c.c.patient_id).distinct().where(~exists().where(
        ExperimentAssignment.experiment_id == exp.id, ExperimentAssignment.patient_id == c.c.patient_id)).subquery()
    # "WHERE true": SQLite cannot tell INSERT ... SELECT ... ON CONFLICT from a join's ON without it.
    sel = select(literal(exp.id, Integer), pats.c.patient_id, _coin(dialect), literal(now)).where(true())
    table = typing.cast(Table, ExperimentAssignment.__table__)
    ins: Any = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))
    session.execute(ins.from_select(["experiment_id", "patient_id", "arm", "assigned_at"], sel)
                    .on_conflict_do_nothing(index_elements=["experiment_id", "patient_id"]))


def queue_reminders(session: Session, *, as_of: date, now: datetime | None = None,
                    policy: rules.Policy = rules.DEFAULT_POLICY) -> dict[str, int]:
    """Queue the reminders of as_of from every rule; returns rows queued per rule (and "total", "seconds").

    Each message is rendered in its patient's language (patients.language), in the same statement.
    """
    started = _time.perf_counter()
    now = now or datetime.combine(as_of, time(hour=1))
    templates.ensure_builtin_templates(session, now=now)
    if session.get_bind().dialect.name == "postgresql":
        # One queue run at a time (held to commit): the inserts rely on it to skip keys without ON CONFLICT.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": QUEUE_LOCK_KEY})
        _analyze_outbox(session)
    counts: dict[str, int] = {}
    _queue_rules(session, as_of=as_of, now=now, policy=policy, counts=counts)
    counts["total"] = sum(counts[r] for r in RULES)
    audit.record(session, action="queue_reminders", entity="message",
                 detail={"as_of": as_of.isoformat(), **counts}, at=now)
    counts["seconds"] = int(round(_time.perf_counter() - started))
    return counts


def _analyze_outbox(session: Session) -> None:
    """Fresh statistics on messages: each rule joins the week's counts, which the rules before it just grew.

    With the statistics of an empty outbox the planner takes that aggregate for one row and rescans it per
    candidate (a nested loop: 17 s for 2,700 check-up reminders after 13,000 follow-ups at a million patients).
    """
    session.execute(text("ANALYZE messages"))


def _queue_rules(session: Session, *, as_of: date, now: datetime, policy: rules.Policy,
                 counts: dict[str, int]) -> None:
    builders = {"followup": lambda: _followup(as_of, policy), "revisit": lambda: _revisit(as_of, policy),
                "checkup": lambda: _checkup(as_of, policy), "exam": lambda: _exam(as_of, policy),
                "medication": lambda: _medication(as_of, policy)}
    for rule in RULES:
        code = RULE_TEMPLATES[rule]
        tpl = templates.get_template(session, code)
        exp = _experiment(session, rule, as_of)
        n = 0
        for cand in builders[rule]():
            if exp is None:
                n += _insert(session, cand=cand, purpose="followup", template=tpl, now=now, policy=policy)
                continue
            _assign(session, exp, cand, now)
            for arm, value in (("A", exp.arm_a), ("B", exp.arm_b)):
                if exp.variant == "wording":
                    arm_tpl = templates.get_template(session, value)
                    n += _insert(session, cand=cand, purpose="followup", template=arm_tpl, now=now, policy=policy,
                                 arm=(exp.id, arm))
                else:
                    n += _insert(session, cand=cand, purpose="followup", template=tpl, now=now, policy=policy,
                                 arm=(exp.id, arm), forced_channel=value)
        counts[rule] = n
        if n >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
            _analyze_outbox(session)
