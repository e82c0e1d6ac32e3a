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
        """The local hour, weekday and holiday flag of each UTC hour (``datetime64``).

        Vectorised: the offset to UTC is looked up once per UTC day (per hour only on the days
        the offset changes), the holidays once per local day.
        """
        seconds = np.asarray(hours, dtype="datetime64[s]").astype(np.int64)
        if seconds.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return LocalTime(empty, empty.copy(), np.zeros(0, dtype=np.bool_))
        days, inverse = np.unique(seconds // 86_400, return_inverse=True)
        first = np.array([self._offset(int(d) * 86_400) for d in days.tolist()])
        last = np.array([self._offset(int(d) * 86_400 + 86_399) for d in days.tolist()])
        offsets = first[inverse]
        changing = (first != last)[inverse]
        if changing.any():  # the days summer time starts or ends: hour by hour
            offsets[changing] = [self._offset(int(ts)) for ts in seconds[changing].tolist()]
        local = seconds + offsets
        local_days = local // 86_400
        hour = (local // 3600) % 24
        weekday = (local_days + 3) % 7  # 1 January 1970 was a Thursday
        holiday = np.zeros(len(seconds), dtype=np.bool_)
        if self._holidays is not None:
            unique_days, where = np.unique(local_days, return_inverse=True)
            flags = np.array(
                [date.fromordinal(_EPOCH_ORDINAL + int(d)) in self._holidays for d in unique_days]
            )
            holiday = flags[where]
        return LocalTime(hour.astype(np.int64), weekday.astype(np.int64), holiday)

    def _offset(self, timestamp: int) -> int:
        """Seconds to add to UTC for local time at ``timestamp``."""
        offset = datetime.fromtimestamp(timestamp, UTC).astimezone(self._zone).utcoffset()
        return 0 if offset is None else int(offset.total_seconds())


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
