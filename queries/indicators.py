"""Indicators of one patient over the years: series, guideline bands, flags, yearly means, first vs latest."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, event, func, select

from db.datefn import month_of
from db.models import GuidelineBand, Indicator, Observation, Patient, PatientIdentifier

SERIES_COLUMNS = ["indicator_id", "code", "observed_at", "value", "status", "source", "original_value",
                  "original_unit"]
BAND_COLUMNS = ["indicator_id", "code", "band", "sex", "low", "high", "abnormal", "source", "version"]


@dataclass(frozen=True)
class IndicatorRow:
    id: int
    code: str
    name_zh: str
    name_en: str
    unit: str
    ref_low: float | None
    ref_high: float | None
    decimals: int

    def name(self, lang: str) -> str:
        return self.name_zh if lang.startswith("zh") else self.name_en


def catalogue(*, conn: Connection) -> list[IndicatorRow]:
    rows = conn.execute(
        select(Indicator.id, Indicator.code, Indicator.name_zh, Indicator.name_en, Indicator.unit, Indicator.ref_low,
               Indicator.ref_high, Indicator.decimals).order_by(Indicator.position, Indicator.code)
    ).all()
    return [IndicatorRow(*r) for r in rows]


def bands(*, conn: Connection, sex: str | None = None) -> pd.DataFrame:
    """Guideline bands of every indicator; sex-specific bands only for that sex (or all when sex is None)."""
    stmt = select(GuidelineBand.indicator_id, Indicator.code, GuidelineBand.band, GuidelineBand.sex,
                  GuidelineBand.low, GuidelineBand.high, GuidelineBand.abnormal, GuidelineBand.source,
                  GuidelineBand.version).join(Indicator, Indicator.id == GuidelineBand.indicator_id)
    if sex in ("M", "F"):
        stmt = stmt.where((GuidelineBand.sex.is_(None)) | (GuidelineBand.sex == sex))
    elif sex is not None:
        stmt = stmt.where(GuidelineBand.sex.is_(None))
    rows = conn.execute(stmt.order_by(Indicator.position, GuidelineBand.low.is_not(None),
                                      GuidelineBand.low)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=BAND_COLUMNS)


# Reference data (catalogue, guideline bands) changes rarely: held per process and engine, dropped whenever this
# process writes an indicator or band through the ORM, and re-read after REFERENCE_TTL seconds in any case (another
# process may have changed it).
REFERENCE_TTL = 60.0
_reference: weakref.WeakKeyDictionary[Engine, dict[tuple[str, str | None], tuple[float, Any]]] = (
    weakref.WeakKeyDictionary())
_reference_lock = threading.Lock()


def reference_changed(*_args: Any) -> None:
    """Forget the cached catalogue and bands of every engine (called on any ORM write to them)."""
    with _reference_lock:
        _reference.clear()


for _model in (Indicator, GuidelineBand):
    for _event in ("after_insert", "after_update", "after_delete"):
        event.listen(_model, _event, reference_changed)


def _cached(conn: Connection, key: tuple[str, str | None], load: Any) -> Any:
    now = time.monotonic()
    with _reference_lock:
        hit = _reference.get(conn.engine, {}).get(key)
    if hit is not None and now - hit[0] < REFERENCE_TTL:
        return hit[1]
    value = load()
    with _reference_lock:
        _reference.setdefault(conn.engine, {})[key] = (now, value)
    return value


def cached_catalogue(*, conn: Connection) -> list[IndicatorRow]:
    """catalogue() held per process (reference data); a new list each call, the rows are frozen."""
    return list(_cached(conn, ("catalogue", None), lambda: catalogue(conn=conn)))


def cached_bands(*, conn: Connection, sex: str | None = None) -> pd.DataFrame:
    """bands() held per process (reference data); a copy each call so callers may change it."""
    frame: pd.DataFrame = _cached(conn, ("bands", sex), lambda: bands(conn=conn, sex=sex))
    return frame.copy()


def band_of(value: float, indicator_bands: pd.DataFrame) -> tuple[str | None, bool]:
    """(band, abnormal) for a value: low inclusive, high exclusive, None unbounded (as GuidelineBand defines)."""
    for band, low_raw, high_raw, abnormal in zip(indicator_bands["band"], indicator_bands["low"],
                                                 indicator_bands["high"], indicator_bands["abnormal"], strict=True):
        low = _num(low_raw)
        high = _num(high_raw)
        if (low is None or value >= low) and (high is None or value < high):
            return str(band), bool(abnormal)
    return None, False


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if f != f else f  # NaN from a pandas column means "unbounded"


def series(*, conn: Connection, patient_id: int, indicator_ids: tuple[int, ...] = ()) -> pd.DataFrame:
    """Every observation of a patient (all years), oldest first; one patient's rows, not a table."""
    stmt = (
        select(Observation.indicator_id, Indicator.code, Observation.observed_at, Observation.value,
               Observation.status, Observation.source, Observation.original_value, Observation.original_unit)
        .join(Indicator, Indicator.id == Observation.indicator_id)
        .where(Observation.patient_id == patient_id, Observation.status != "cancelled")
        .order_by(Observation.indicator_id, Observation.observed_at)
    )
    if indicator_ids:
        stmt = stmt.where(Observation.indicator_id.in_(indicator_ids))
    rows = conn.execute(stmt).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=SERIES_COLUMNS)
    if not df.empty:
        df["observed_at"] = pd.to_datetime(df["observed_at"])
    return df


def flag(df: pd.DataFrame, band_df: pd.DataFrame) -> pd.DataFrame:
    """Adds band and abnormal columns to a series, from the GuidelineBand rows (not constants).

    Vectorised per band (a few dozen rows) rather than per observation: a patient may have thousands.
    """
    out = df.copy()
    n = len(out)
    band = np.full(n, None, dtype=object)
    abnormal = np.zeros(n, dtype=bool)
    if n and not band_df.empty:
        values = out["value"].to_numpy(dtype=float)
        inds = out["indicator_id"].to_numpy()
        done = np.zeros(n, dtype=bool)
        for ind, name, low, high, abn in zip(band_df["indicator_id"], band_df["band"], band_df["low"],
                                             band_df["high"], band_df["abnormal"], strict=True):
            m = (inds == ind) & ~done
            lo, hi = _num(low), _num(high)
            if lo is not None:
                m &= values >= lo
            if hi is not None:
                m &= values < hi
            band[m] = name
            abnormal[m] = bool(abn)
            done |= m
    out["band"] = band
    out["abnormal"] = abnormal
    return out


def yearly_means(*, conn: Connection, patient_id: int) -> pd.DataFrame:
    """Mean, min, max and count per indicator and calendar year, aggregated in SQL."""
    year = func.substr(month_of(Observation.observed_at), 1, 4)
    rows = conn.execute(
        select(Indicator.code, year.label("year"), func.avg(Observation.value), func.min(Observation.value),
               func.max(Observation.value), func.count())
        .join(Indicator, Indicator.id == Observation.indicator_id)
        .where(Observation.patient_id == patient_id, Observation.status != "cancelled")
        .group_by(Indicator.code, Indicator.position, year)
        .order_by(Indicator.position, year)
    ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["code", "year", "mean", "min", "max", "n"])


def year_over_year(yearly: pd.DataFrame) -> pd.DataFrame:
    """One row per indicator, one column per year (yearly mean), as the year-over-year table shows it."""
    if yearly.empty:
        return pd.DataFrame()
    table = yearly.pivot(index="code", columns="year", values="mean")
    order = list(dict.fromkeys(yearly["code"]))
    return table.reindex(order)


def first_latest(df: pd.DataFrame) -> pd.DataFrame:
    """First and latest value per indicator and the change between them."""
    if df.empty:
        return pd.DataFrame(columns=["indicator_id", "code", "first_at", "first", "latest_at", "latest", "change",
                                     "n"])
    g = df.sort_values("observed_at").groupby(["indicator_id", "code"], sort=False)
    out = pd.DataFrame({
        "first_at": g["observed_at"].first(), "first": g["value"].first(),
        "latest_at": g["observed_at"].last(), "latest": g["value"].last(), "n": g["value"].size(),
    }).reset_index()
    out["change"] = out["latest"] - out["first"]
    return out


EXPORT_COLUMNS = ["card_no", "source_patient_id", "indicator", "loinc_code", "value", "unit", "original_value",
                  "original_unit", "observed_at", "source"]


def export_observations(*, conn: Connection, batch: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
    """Every observation with its patient's card and source id, in batches (streamed, never one frame)."""
    source_id = (
        select(func.min(PatientIdentifier.value)).where(PatientIdentifier.patient_id == Observation.patient_id)
        .scalar_subquery()
    )
    stmt = (
        select(Patient.card_no, source_id, Indicator.code, Observation.loinc_code, Observation.value, Indicator.unit,
               Observation.original_value, Observation.original_unit, Observation.observed_at, Observation.source)
        .join(Patient, Patient.id == Observation.patient_id)
        .join(Indicator, Indicator.id == Observation.indicator_id)
        .order_by(Observation.id)
    )
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
    for part in result.partitions(batch):
        yield [tuple(r) for r in part]
