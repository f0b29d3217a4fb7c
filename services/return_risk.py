"""Return risk: who may not come back for the next annual check-up. A logistic model fitted (numpy IRLS) on the
site's own history, its coefficients shown, its AUC measured on held-out patients, and reasons per patient."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from db.models import Encounter, FollowupRecord, Patient, RiskAssessment, SurveyResponse

FEATURES = ("recency", "frequency", "missed", "detractor", "no_survey", "high_risk")
YEAR = timedelta(days=365)
MIN_PER_CLASS = 10
MISSED_OUTCOMES = ("no_answer", "wrong_number", "refused")
Arr = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Cohort:
    ids: list[int]
    x: Arr  # one row per patient, columns FEATURES


def cohort(conn: Connection | Session, *, as_of: datetime) -> Cohort:
    """Patients seen in the year before `as_of` (due for their next annual check-up), with features as of then."""
    last_visit = dict(conn.execute(
        select(Encounter.patient_id, func.max(Encounter.started_at))
        .where(Encounter.started_at < as_of).group_by(Encounter.patient_id)
        .having(func.max(Encounter.started_at) >= as_of - YEAR)).all())
    ids = sorted(last_visit)
    if not ids:
        return Cohort([], np.zeros((0, len(FEATURES))))
    three_years = as_of - 3 * YEAR
    visits = dict(conn.execute(
        select(Encounter.patient_id, func.count()).where(Encounter.started_at < as_of,
                                                         Encounter.started_at >= three_years)
        .group_by(Encounter.patient_id)).all())
    missed = dict(conn.execute(
        select(FollowupRecord.patient_id, func.count()).where(
            FollowupRecord.contacted_at < as_of, FollowupRecord.contacted_at >= three_years,
            FollowupRecord.outcome.in_(MISSED_OUTCOMES)).group_by(FollowupRecord.patient_id)).all())
    ranked_nps = (
        select(SurveyResponse.patient_id, SurveyResponse.nps_score,
               func.row_number().over(partition_by=SurveyResponse.patient_id,
                                      order_by=(SurveyResponse.submitted_at.desc(), SurveyResponse.id.desc()))
               .label("rn"))
        .where(SurveyResponse.patient_id.is_not(None), SurveyResponse.nps_score.is_not(None),
               SurveyResponse.submitted_at < as_of)
        .subquery()
    )
    nps = dict(conn.execute(
        select(ranked_nps.c.patient_id, ranked_nps.c.nps_score).where(ranked_nps.c.rn == 1)).all())
    ranked_risk = (
        select(RiskAssessment.patient_id, RiskAssessment.model, RiskAssessment.level,
               func.row_number().over(partition_by=(RiskAssessment.patient_id, RiskAssessment.model),
                                      order_by=(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc()))
               .label("rn"))
        .where(RiskAssessment.model.in_(("pce", "framingham")), RiskAssessment.assessed_at < as_of)
        .subquery()
    )
    high = set(conn.execute(select(ranked_risk.c.patient_id).where(
        ranked_risk.c.rn == 1, ranked_risk.c.level == "high")).scalars())
    x = np.zeros((len(ids), len(FEATURES)))
    for i, pid in enumerate(ids):
        score = nps.get(pid)
        x[i] = (
            (as_of - last_visit[pid]).days / 100.0,
            visits.get(pid, 0),
            missed.get(pid, 0),
            1.0 if score is not None and score <= 6 else 0.0,
            1.0 if score is None else 0.0,
            1.0 if pid in high else 0.0,
        )
    return Cohort(ids, x)


def returned(conn: Connection | Session, *, ids: list[int], start: datetime, end: datetime) -> set[int]:
    rows = conn.execute(select(Encounter.patient_id).where(
        Encounter.started_at >= start, Encounter.started_at < end).distinct()).scalars()
    wanted = set(ids)
    return {pid for pid in rows if pid in wanted}


def fit_logistic(x: Arr, y: Arr, *, ridge: float = 1e-3, iterations: int = 50) -> Arr:
    """Logistic regression by iteratively reweighted least squares; column 0 of the result is the intercept."""
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(design.shape[1])
    penalty = ridge * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        w = p * (1 - p)
        hessian = design.T @ (design * w[:, None]) + penalty
        gradient = design.T @ (y - p) - penalty @ beta
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if float(np.max(np.abs(step))) < 1e-8:
            break
    return beta


def predict(beta: Arr, x: Arr) -> Arr:
    return np.asarray(1.0 / (1.0 + np.exp(-(beta[0] + x @ beta[1:]))), dtype=np.float64)


def auc(y: Arr, score: Arr) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    pos, neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both outcomes")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((np.sum(ranks[y == 1]) - pos * (pos + 1) / 2.0) / (pos * neg))


@dataclass(frozen=True)
class PatientScore:
    patient_id: int
    probability: float
    reasons: list[str]  # feature names, strongest first


@dataclass(frozen=True)
class ReturnModel:
    cutoff: datetime
    coefficients: dict[str, float]
    auc: float | None
    n_train: int
    n_test: int
    fitted: bool
    scores: list[PatientScore] = field(default_factory=list)
    cohort_size: int = 0


def build(conn: Connection | Session, *, as_of: datetime, top: int = 100) -> ReturnModel:
    """Fit on the year before `as_of - 1 year` (outcome: a visit within the following year), test on held-out
    patients (id % 5 == 0), then score today's cohort and keep the `top` most likely not to return."""
    cutoff = as_of - YEAR
    past = cohort(conn, as_of=cutoff)
    came_back = returned(conn, ids=past.ids, start=cutoff, end=as_of)
    y = np.array([0.0 if pid in came_back else 1.0 for pid in past.ids])
    held = np.array([pid % 5 == 0 for pid in past.ids], dtype=bool)
    train_y, test_y = y[~held], y[held]
    if min(int(np.sum(train_y == 1)), int(np.sum(train_y == 0))) < MIN_PER_CLASS:
        return ReturnModel(cutoff, {}, None, int(len(train_y)), int(len(test_y)), False)
    beta = fit_logistic(past.x[~held], train_y)
    test_auc = None
    if len(test_y) and 0 < int(np.sum(test_y)) < len(test_y):
        test_auc = auc(test_y, predict(beta, past.x[held]))
    coefficients = {"intercept": float(beta[0])} | {f: float(b) for f, b in zip(FEATURES, beta[1:], strict=True)}
    now = cohort(conn, as_of=as_of)
    scores: list[PatientScore] = []
    if now.ids:
        p = predict(beta, now.x)
        means = now.x.mean(axis=0)
        order = np.argsort(-p, kind="mergesort")[:top]
        for i in order:
            push = beta[1:] * (now.x[i] - means)
            reasons = [FEATURES[k] for k in np.argsort(-push) if push[k] > 0][:3]
            scores.append(PatientScore(now.ids[i], float(p[i]), reasons))
    return ReturnModel(cutoff, coefficients, test_auc, int(len(train_y)), int(len(test_y)), True, scores,
                       len(now.ids))


def patient_labels(conn: Connection, *, ids: list[int], lang: str) -> dict[int, tuple[str, str, str | None]]:
    """Card number, name and department of the listed patients (for the page's table)."""
    from db.models import Department

    dept = Department.name_zh if lang == "zh_CN" else Department.name_en
    rows = conn.execute(select(Patient.id, Patient.card_no, Patient.name, dept)
                        .outerjoin(Department, Department.id == Patient.department_id)
                        .where(Patient.id.in_(ids))).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}
