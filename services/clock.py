"""The site's wall clock: naive datetimes in the hospital's time zone, as the data model stores them."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Shanghai"


def now(tz: str = DEFAULT_TZ) -> datetime:
    return datetime.now(ZoneInfo(tz)).replace(tzinfo=None, microsecond=0)


def today(tz: str = DEFAULT_TZ) -> date:
    return now(tz).date()
