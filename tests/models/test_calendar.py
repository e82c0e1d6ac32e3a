"""The local calendar: vectorised, and equal to converting each hour on its own."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from models.calendar import Calendar

HOURS = np.arange(np.datetime64("2018-12-20T00", "h"), np.datetime64("2020-01-05T00", "h"))


@pytest.mark.parametrize(
    "calendar",
    [
        Calendar("Europe/London", "GB", "ENG"),
        Calendar("America/New_York", "US"),
        Calendar("Asia/Kolkata", "IN"),
        Calendar("Australia/Lord_Howe"),  # a half-hour summer-time step
        Calendar(),
    ],
    ids=lambda c: c.timezone,
)
def test_each_hour_as_zoneinfo_and_holidays_see_it(calendar: Calendar) -> None:
    got = calendar.local(HOURS)
    zone = calendar._zone
    days = calendar._holidays
    for i, hour in enumerate(HOURS.astype("datetime64[s]").astype(np.int64).tolist()):
        local = datetime.fromtimestamp(hour, UTC).astimezone(zone)
        assert got.hour[i] == local.hour
        assert got.weekday[i] == local.weekday()
        expected = days is not None and date(local.year, local.month, local.day) in days
        assert got.holiday[i] == expected


def test_a_known_day() -> None:
    christmas = np.array([np.datetime64("2019-12-25T12", "h")])
    got = Calendar("Europe/London", "GB", "ENG").local(christmas)
    assert (got.hour[0], got.weekday[0], bool(got.holiday[0])) == (12, 2, True)
    summer = Calendar("Europe/London").local(np.array([np.datetime64("2019-07-01T12", "h")]))
    assert summer.hour[0] == 13
    assert Calendar().local(np.array([], dtype="datetime64[h]")).hour.size == 0
