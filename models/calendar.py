"""The calendar the models see: local hour, weekday and public holidays of UTC hours.

Series and the store keep time in UTC; people keep it in local time. A building's load follows the
local clock (the lights go on at 08:00 local, summer time or not) and its public holidays, so the
features use the local hour and weekday and whether the local day is a public holiday.

``Calendar(timezone="Europe/London", country="GB", subdivision="ENG")``: the timezone is an IANA
name (``zoneinfo``), the country and subdivision are those of the ``holidays`` package (ISO 3166
codes). Without a country no day is a holiday. A series whose timestamps are already local (LEAD,
BDG-2) uses the default ``timezone="UTC"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class LocalTime(NamedTuple):
    """Per hour: local hour of day (0-23), weekday (Monday 0 .. Sunday 6), public holiday."""

    hour: IntArray
    weekday: IntArray
    holiday: BoolArray


@dataclass(frozen=True)
class Calendar:
    timezone: str = "UTC"
    country: str | None = None
    subdivision: str | None = None

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown name
        if self.country is not None:
            holidays.country_holidays(self.country, subdiv=self.subdivision)  # raises if unknown

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _holidays(self) -> holidays.HolidayBase | None:
        if self.country is None:
            return None
        return holidays.country_holidays(self.country, subdiv=self.subdivision)

    def local(self, hours: npt.NDArray[np.datetime64]) -> LocalTime:
        """The local hour, weekday and holiday flag of each UTC hour (``datetime64``)."""
        seconds = np.asarray(hours, dtype="datetime64[s]").astype(np.int64)
        n = len(seconds)
        hour = np.empty(n, dtype=np.int64)
        weekday = np.empty(n, dtype=np.int64)
        holiday = np.zeros(n, dtype=np.bool_)
        zone, days = self._zone, self._holidays
        for i, ts in enumerate(seconds.tolist()):
            local = datetime.fromtimestamp(ts, UTC).astimezone(zone)
            hour[i] = local.hour
            weekday[i] = local.weekday()
            if days is not None:
                holiday[i] = date(local.year, local.month, local.day) in days
        return LocalTime(hour, weekday, holiday)
