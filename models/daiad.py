"""The DAIAD smart water meter files (``daiad_water/`` of the shared data) as hourly water use.

One household per file, ``households/<user key>.csv``, as published: ``user key;datetime;meter
reading;diff``, semicolon-separated, the time ``DD/MM/YYYY HH:MM:SS`` on the local clock, the
meter's reading and ``diff`` (the use since the row before) in litres. Rows come about hourly, at
any minute, with gaps; the use after a gap covers all of it.

:func:`load_daiad` reads the data set's folder, a folder of such files, or one file, into one
water-only :class:`~models.series.HourlySeries` per household (UTC hours); :func:`hourly_use`
is the rule that puts a meter's readings on the hourly grid: the meter reading at each full hour
is interpolated between the rows around it, and an hour that a gap of more than
:data:`MAX_INTERVAL_H` between rows touches is unknown (NaN), not zero. docs/models.md says why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from models.series import FloatArray, HourlySeries, IntArray, SeriesFormatError

HEADER = ["user key", "datetime", "meter reading", "diff"]
# the clock of the files: local time of a Central European zone (the hour 02:00-02:59 comes twice
# on 30 October 2016 and not at all on 27 March 2016); the source does not name the zone
TIMEZONE = "CET"
MAX_INTERVAL_H = 1.5  # rows further apart than this: the hours between them are unknown
HOUR_S = 3600


def _files(path: Path) -> list[Path]:
    if path.is_dir() and (path / "households").is_dir():
        path = path / "households"
    return sorted(path.glob("*.csv")) if path.is_dir() else [path]


def is_daiad(path: Path | str) -> bool:
    """Whether ``path`` (the data set's folder, a folder of its files, or one) is in this format."""
    files = [f for f in _files(Path(path)) if f.is_file()]
    if not files:
        return False
    try:
        with files[0].open(encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return [cell.strip().lower() for cell in first.split(";")] == HEADER


def load_daiad(path: Path | str, *, timezone: str = TIMEZONE) -> list[HourlySeries]:
    """Each household's hourly water use (litres), named after its file, sorted by name."""
    files = _files(Path(path))
    if not files:
        raise SeriesFormatError(path, 0, "folder holds no *.csv file")
    zone = ZoneInfo(timezone)
    return [read_household(file, zone) for file in files]


def read_household(path: Path, zone: ZoneInfo) -> HourlySeries:
    """One household's file: its rows on the UTC hourly grid (:func:`hourly_use`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeriesFormatError(path, 0, f"cannot read: {exc}") from exc
    lines = text.splitlines()
    if not lines or [cell.strip().lower() for cell in lines[0].split(";")] != HEADER:
        raise SeriesFormatError(path, 1, f"the header is not {';'.join(HEADER)}")
    stamps: list[str] = []
    readings: list[float] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(";")
        if len(cells) != len(HEADER):
            raise SeriesFormatError(path, number, f"{len(cells)} fields where the header has 4")
        try:
            stamps.append(_iso(cells[1]))
            readings.append(float(cells[2]))
        except ValueError as exc:
            raise SeriesFormatError(path, number, str(exc)) from exc
        numbers.append(number)
    if not stamps:
        raise SeriesFormatError(path, 0, "no data rows")
    try:
        local = np.array(stamps, dtype="datetime64[s]")
    except ValueError:  # find the row
        for number, stamp in zip(numbers, stamps, strict=True):
            try:
                np.datetime64(stamp, "s")
            except ValueError:
                raise SeriesFormatError(path, number, f"no such time {stamp!r}") from None
        raise
    utc = to_utc(local.astype(np.int64), zone)
    hours, use = hourly_use(utc, np.array(readings, dtype=np.float64))
    return HourlySeries(name=path.stem, timestamps=hours, values=use, meter="water")


def _iso(cell: str) -> str:
    """``DD/MM/YYYY HH:MM:SS`` as ``YYYY-MM-DDTHH:MM:SS``; ValueError when it is not that."""
    day, _, clock = cell.strip().partition(" ")
    parts = day.split("/")
    if len(parts) != 3 or len(clock) != 8 or not all(p.isdigit() for p in parts):
        raise ValueError(f"time {cell.strip()!r} is not DD/MM/YYYY HH:MM:SS")
    return f"{parts[2]}-{parts[1]}-{parts[0]}T{clock}"


def _offset(local_s: int, zone: ZoneInfo, fold: int) -> int:
    """Seconds the zone is ahead of UTC at a local time (``fold=1``: the repeated hour's second)."""
    naive = datetime(1970, 1, 1) + timedelta(seconds=local_s)
    offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def to_utc(local_s: IntArray, zone: ZoneInfo) -> IntArray:
    """Local times (seconds, in the order of the file) as UTC seconds.

    A time of the hour that comes twice when the clocks go back is read the first time round,
    unless that puts it before the row before it: it is then the second time round.
    """
    days, inverse = np.unique(local_s // 86_400, return_inverse=True)
    first = np.array([_offset(int(d) * 86_400, zone, 0) for d in days.tolist()])
    last = np.array([_offset(int(d) * 86_400 + 86_399, zone, 0) for d in days.tolist()])
    utc = local_s - first[inverse]
    for i in np.flatnonzero((first != last)[inverse]).tolist():  # the days the clocks change
        once = int(local_s[i]) - _offset(int(local_s[i]), zone, 0)
        twice = int(local_s[i]) - _offset(int(local_s[i]), zone, 1)
        before = int(utc[i - 1]) if i else None
        utc[i] = twice if before is not None and once <= before < twice else once
    return np.asarray(utc, dtype=np.int64)


def hourly_use(
    utc_s: npt.ArrayLike, readings: npt.ArrayLike, max_interval_h: float = MAX_INTERVAL_H
) -> tuple[npt.NDArray[np.datetime64], FloatArray]:
    """A meter's readings (UTC seconds, cumulative) as use per UTC hour, NaN where unknown.

    - A row whose time does not follow the row kept before it (a duplicate) is left out.
    - The reading cannot go down: a reading below the highest before it (the last litres
      flickering, or two rows out of order) adds no use; use counts again above that highest.
    - Between two rows at most ``max_interval_h`` apart the use is taken as even: the reading at
      each full hour is interpolated between them, and an hour's use is the difference of the
      readings at its ends.
    - An hour that a longer interval touches, or that the rows do not cover, is unknown: the use
      reported after the gap is spread over none of its hours.

    The grid runs over the hours from the first row to the last.
    """
    times = np.asarray(utc_s, dtype=np.int64)
    values = np.asarray(readings, dtype=np.float64)
    after = times > np.maximum.accumulate(np.r_[np.iinfo(np.int64).min, times[:-1]])
    times, values = times[after], values[after]
    level = np.maximum.accumulate(values)
    first_h = int(times[0] // HOUR_S)
    end_h = int(-(-times[-1] // HOUR_S))  # the hour after the last one the rows reach into
    edges = np.arange(first_h, max(end_h, first_h) + 1, dtype=np.int64) * HOUR_S
    use = np.diff(np.interp(edges, times, level))
    n = len(use)
    gaps = np.zeros(n + 1, dtype=np.int64)  # +1 where a long interval begins to touch, -1 after
    gap = np.flatnonzero(np.diff(times) > max_interval_h * HOUR_S)
    np.add.at(gaps, times[gap] // HOUR_S - first_h, 1)
    np.add.at(gaps, -(-times[gap + 1] // HOUR_S) - first_h, -1)
    unknown = np.cumsum(gaps)[:n] > 0
    unknown |= edges[:-1] < times[0]
    unknown |= edges[1:] > times[-1]
    hours = (first_h + np.arange(n)).astype("datetime64[h]")
    return hours, np.where(unknown, np.nan, use)
