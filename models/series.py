"""Hourly series of one building, and the loaders that read them from CSV files.

The format users give to ``nbedge models evaluate --data PATH`` (one building per CSV file; a
folder holds one building per ``*.csv`` file, named after the file)::

    timestamp,value[,temperature][,label][,doors][,water][,motion]
    2019-01-01T00:00:00,12.5,3.1,0,0
    2019-01-01T01:00:00,,3.0,0,2

A home with a water meter alone has ``water`` in place of ``value``
(``timestamp,water[,doors][,motion]``).

- ``timestamp``: ISO 8601, on the hour (``2019-01-01 00:00:00`` or ``2019-01-01T00:00``); an offset
  such as ``+01:00`` or ``Z`` is converted to UTC, a naive time is taken as UTC. Rows must be in
  increasing order; hours that are absent are missing (NaN on the grid).
- ``value``: energy in the hour (e.g. kWh of electricity); empty or ``NaN`` means missing.
- ``temperature`` (optional): outdoor dry-bulb temperature in degrees C; empty means missing.
- ``label`` (optional): ``1`` for an hour a person labelled anomalous, ``0`` otherwise (also
  written ``1.0``/``0.0``, as some LEAD exports have them, or ``true``/``false``).
- ``doors`` (optional): how many times the dwelling's door opened in the hour, a whole number of 0
  or more (``3`` or ``3.0``); empty means 0, as do hours absent from the file. A door sensor counts
  openings and has no "missing" state the evaluation could use, so a gap is read as no opening.
- ``water`` (optional): the dwelling's water use in the hour (litres, or the meter's pulses),
  beside its electricity in ``value``, or alone; empty means missing. Only cessation reads it (a
  stop silences both meters); demand and anomaly scoring read ``value`` alone. A file with
  ``water`` and no ``value`` is a water-only home: its series' ``values`` are the water
  (``HourlySeries.meter == "water"``).
- ``motion`` (optional): ``1`` for an hour in which the dwelling's motion sensor saw movement,
  ``0`` for one in which it saw none (also ``1.0``/``0.0`` or ``true``/``false``); empty means
  unknown (the sensor was not heard). Only cessation reads it (``use_stopped`` with a motion
  sensor).

Any line that cannot be read raises :class:`SeriesFormatError` naming the file and the line.

Three adapters read the public data sets shipped beside the project (``../shared/data``):
:func:`load_cambridge_estates`, :func:`load_lead` and :func:`load_uci_household`; the DAIAD
water meters' irregular rows are read by :mod:`models.daiad`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nbedge.errors import NbedgeError

FloatArray = npt.NDArray[np.float64]
HourArray = npt.NDArray[np.datetime64]
LabelArray = npt.NDArray[np.int8]
IntArray = npt.NDArray[np.int64]

ONE_HOUR = np.timedelta64(1, "h")
METERS = ("electricity", "water")  # what a series' values measure (HourlySeries.meter)


class SeriesFormatError(NbedgeError, ValueError):
    """A series file cannot be read: names the file and the 1-based line (0: the whole file)."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """One building's hourly series on a regular grid with no gaps.

    ``timestamps`` are consecutive UTC hours (``datetime64[h]``, hour-beginning); ``values`` is NaN
    where the reading is missing; ``temperature`` (NaN where missing) and ``labels`` (1 for a
    labelled anomalous hour, 0 otherwise, also 0 on missing hours), ``doors`` (the door's
    openings in the hour, 0 on missing hours), ``water`` (a dwelling's water use beside its
    electricity in ``values``, NaN where missing) and ``motion`` (1 for an hour its motion sensor
    saw movement in, 0 for none, NaN where unknown) are ``None`` when the source has none.
    ``meter`` is what ``values`` measures: ``electricity`` (or another energy), or ``water`` for a
    home with a water meter alone (its ``water`` is then ``None``).
    """

    name: str
    timestamps: HourArray
    values: FloatArray
    temperature: FloatArray | None = None
    labels: LabelArray | None = None
    doors: IntArray | None = None
    water: FloatArray | None = None
    meter: str = "electricity"
    motion: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.meter not in METERS:
            raise ValueError(f"{self.name}: meter {self.meter!r} is not one of {METERS}")
        if self.meter == "water" and self.water is not None:
            raise ValueError(f"{self.name}: a water series has no second water meter")
        n = len(self.timestamps)
        if len(self.values) != n:
            raise ValueError(f"{self.name}: {len(self.values)} values for {n} timestamps")
        extra = (
            ("temperature", self.temperature),
            ("labels", self.labels),
            ("doors", self.doors),
            ("water", self.water),
            ("motion", self.motion),
        )
        for what, arr in extra:
            if arr is not None and len(arr) != n:
                raise ValueError(f"{self.name}: {len(arr)} {what} for {n} timestamps")
        if n > 1 and not np.all(np.diff(self.timestamps) == ONE_HOUR):
            raise ValueError(f"{self.name}: timestamps are not consecutive hours")

    def between(self, start: str, end: str) -> HourlySeries:
        """The hours ``start <= t < end`` (ISO dates or times, UTC)."""
        keep = (self.timestamps >= np.datetime64(start, "h")) & (
            self.timestamps < np.datetime64(end, "h")
        )
        return HourlySeries(
            name=self.name,
            timestamps=self.timestamps[keep],
            values=self.values[keep],
            temperature=None if self.temperature is None else self.temperature[keep],
            labels=None if self.labels is None else self.labels[keep],
            doors=None if self.doors is None else self.doors[keep],
            water=None if self.water is None else self.water[keep],
            meter=self.meter,
            motion=None if self.motion is None else self.motion[keep],
        )


def parse_hour(text: str) -> np.datetime64:
    """An ISO 8601 timestamp on the hour as UTC ``datetime64[h]``; ``ValueError`` otherwise."""
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if stamp.minute or stamp.second or stamp.microsecond:
        raise ValueError(f"timestamp {text!r} is not on the hour")
    return np.datetime64(stamp.replace(tzinfo=None), "h")


def _parse_float(text: str) -> float:
    text = text.strip()
    return float("nan") if text == "" else float(text)


def _grid(
    path: Path, lines: list[int], hours: list[np.datetime64], columns: list[list[float]]
) -> tuple[HourArray, list[FloatArray]]:
    """Place rows on a regular hourly grid from the first to the last hour, NaN where absent."""
    if not hours:
        raise SeriesFormatError(path, 0, "no data rows")
    stamps = np.array(hours, dtype="datetime64[h]")
    steps = np.diff(stamps)
    bad = np.flatnonzero(steps <= np.timedelta64(0, "h"))
    if bad.size:
        i = int(bad[0]) + 1
        raise SeriesFormatError(
            path,
            lines[i],
            f"timestamp {stamps[i]} does not follow {stamps[i - 1]} (duplicate or out of order)",
        )
    grid = np.arange(stamps[0], stamps[-1] + ONE_HOUR, ONE_HOUR)
    index = (stamps - stamps[0]).astype(np.int64)
    out = []
    for column in columns:
        filled = np.full(len(grid), np.nan)
        filled[index] = np.asarray(column, dtype=np.float64)
        out.append(filled)
    return grid, out


def _parse_label(text: str) -> float:
    """A label: ``1`` or ``0``, also written ``1.0``/``0.0`` or ``true``/``false`` (any case)."""
    label = text.strip()
    if label.lower() in ("true", "false"):
        return float(label.lower() == "true")
    try:
        number = float(label)
    except ValueError:
        number = math.nan
    if number not in (0.0, 1.0):
        raise ValueError(f"label {label!r} is neither 0 nor 1")
    return number


def _parse_use(text: str, what: str) -> float:
    """A meter's use in an hour: empty is missing; negative or not finite is refused."""
    try:
        use = _parse_float(text)
    except ValueError:
        raise ValueError(f"{what} {text.strip()!r} is not a number") from None
    if math.isinf(use) or use < 0:
        raise ValueError(f"{what} {text.strip()!r} is not a use (negative or infinite)")
    return use


def _parse_doors(text: str) -> float:
    """Door openings in an hour: a count, so negative or fractional values are refused."""
    text = text.strip()
    if text == "":
        return 0.0
    try:
        count = float(text)
    except ValueError:
        raise ValueError(f"doors {text!r} is not a number of openings") from None
    if not math.isfinite(count) or count != int(count):
        raise ValueError(f"doors {text!r} is not a whole number of openings")
    if count < 0:
        raise ValueError(f"doors {text!r} is negative")
    return count


def _parse_motion(text: str) -> float:
    """Whether a motion sensor saw movement in an hour: 1, 0, or empty for unknown (NaN)."""
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return _parse_label(text)
    except ValueError:
        raise ValueError(f"motion {text!r} is not 1 or 0") from None


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if row and any(cell.strip() for cell in row):
                yield number, row


def load_csv(path: Path | str, name: str | None = None) -> HourlySeries:
    """One building from a CSV file in the documented format (see the module docstring)."""
    path = Path(path)
    rows = _rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise SeriesFormatError(path, 0, "empty file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SeriesFormatError(path, 0, f"cannot read: {exc}") from exc
    header = [cell.strip().lower() for cell in header]
    if "timestamp" not in header:
        raise SeriesFormatError(path, 1, f"no 'timestamp' column in header {header}")
    if "value" not in header and "water" not in header:
        raise SeriesFormatError(path, 1, f"no 'value' column (nor 'water') in header {header}")
    known = {"timestamp", "value", "temperature", "label", "doors", "water", "motion"}
    unknown = set(header) - known
    if unknown:
        raise SeriesFormatError(path, 1, f"unknown column(s) {sorted(unknown)}")
    col = {key: header.index(key) for key in header}
    has_temp, has_label, has_doors = "temperature" in col, "label" in col, "doors" in col
    water_only = "value" not in col  # a home with a water meter alone
    has_water = "water" in col and not water_only
    has_motion = "motion" in col

    lines: list[int] = []
    hours: list[np.datetime64] = []
    values: list[float] = []
    temps: list[float] = []
    labels: list[float] = []
    doors: list[float] = []
    water: list[float] = []
    motion: list[float] = []
    try:
        for number, row in rows:
            if len(row) != len(header):
                raise SeriesFormatError(
                    path, number, f"{len(row)} fields where the header has {len(header)}"
                )
            try:
                hours.append(parse_hour(row[col["timestamp"]]))
                if water_only:
                    values.append(_parse_use(row[col["water"]], "water"))
                else:
                    values.append(_parse_float(row[col["value"]]))
                if has_temp:
                    temps.append(_parse_float(row[col["temperature"]]))
                if has_label:
                    labels.append(_parse_label(row[col["label"]]))
                if has_doors:
                    doors.append(_parse_doors(row[col["doors"]]))
                if has_water:
                    water.append(_parse_use(row[col["water"]], "water"))
                if has_motion:
                    motion.append(_parse_motion(row[col["motion"]]))
            except ValueError as exc:
                raise SeriesFormatError(path, number, str(exc)) from exc
            lines.append(number)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SeriesFormatError(path, 0, f"cannot read: {exc}") from exc

    optional = [
        (has_temp, temps),
        (has_label, labels),
        (has_doors, doors),
        (has_water, water),
        (has_motion, motion),
    ]
    columns = [values] + [column for present, column in optional if present]
    grid, filled = _grid(path, lines, hours, columns)
    rest = iter(filled[1:])
    temperature = next(rest) if has_temp else None
    label_arr = None
    if has_label:
        label_arr = np.nan_to_num(next(rest), nan=0.0).astype(np.int8)
    door_arr = None
    if has_doors:
        door_arr = np.nan_to_num(next(rest), nan=0.0).astype(np.int64)
    water_arr = next(rest) if has_water else None
    motion_arr = next(rest) if has_motion else None
    return HourlySeries(
        name=name or path.stem,
        timestamps=grid,
        values=filled[0],
        temperature=temperature,
        labels=label_arr,
        doors=door_arr,
        water=water_arr,
        meter="water" if water_only else "electricity",
        motion=motion_arr,
    )


def load_path(path: Path | str) -> list[HourlySeries]:
    """One building per CSV file: ``path`` is a file, or a folder of ``*.csv`` files (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise SeriesFormatError(path, 0, "folder holds no *.csv file")
        return [load_csv(file) for file in files]
    if not path.exists():
        raise SeriesFormatError(path, 0, "no such file or folder")
    return [load_csv(path)]


def zero_runs_to_nan(values: FloatArray, min_run_h: int) -> FloatArray:
    """A copy of ``values`` with every run of ``min_run_h`` or more consecutive zeros set to NaN."""
    out = values.copy()
    is_zero = np.concatenate(([False], values == 0.0, [False]))
    edges = np.flatnonzero(np.diff(is_zero.astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= min_run_h:
            out[start:stop] = np.nan
    return out


def _read_columns(
    path: Path, wanted: dict[str, str]
) -> tuple[list[int], list[np.datetime64], dict[str, list[float]]]:
    """Read a CSV with a known header; ``wanted`` maps a header name to a key ('' for the time)."""
    rows = _rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise SeriesFormatError(path, 0, "empty file") from None
    header = [cell.strip() for cell in header]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise SeriesFormatError(path, 1, f"no column(s) {missing} in header {header}")
    index = {name: header.index(name) for name in wanted}
    lines: list[int] = []
    hours: list[np.datetime64] = []
    columns: dict[str, list[float]] = {key: [] for key in wanted.values() if key}
    for number, row in rows:
        try:
            for name, key in wanted.items():
                cell = row[index[name]]
                if key:
                    columns[key].append(_parse_float(cell))
                else:
                    hours.append(parse_hour(cell))
        except (ValueError, IndexError) as exc:
            raise SeriesFormatError(path, number, str(exc) or "too few fields") from exc
        lines.append(number)
    return lines, hours, columns


def _concat_years(
    files: list[Path], wanted: dict[str, str]
) -> tuple[HourArray, dict[str, FloatArray]]:
    lines: list[int] = []
    hours: list[np.datetime64] = []
    columns: dict[str, list[float]] = {key: [] for key in wanted.values() if key}
    last_path = files[0]
    for file in files:
        file_lines, file_hours, file_columns = _read_columns(file, wanted)
        lines += file_lines
        hours += file_hours
        for key, column in file_columns.items():
            columns[key] += column
        last_path = file
    keys = list(columns)
    grid, filled = _grid(last_path, lines, hours, [columns[key] for key in keys])
    return grid, dict(zip(keys, filled, strict=True))


def load_cambridge_estates(
    root: Path | str,
    *,
    buildings: list[str] | None = None,
    zero_run_as_missing_h: int = 1,
    with_temperature: bool = True,
) -> list[HourlySeries]:
    """The Cambridge University estates buildings (``cambridge_estates/`` of the shared data).

    Each building is a folder ``electricity/<name>/`` of yearly files
    ``datetime,equipment load [kWh]``; outdoor temperature comes from ``weather_bedford/<year>.csv``
    (``air_temperature [degC]``). Timestamps are UTC (DataSources.md).

    Zeros: the publisher replaced missing or invalid half-hourly readings by 0 before summing them
    to hours, so an hourly 0 means both half-hours were missing. These estate buildings never draw
    nothing for a whole hour (their smallest non-zero hours are far above 0), so by default every
    run of ``zero_run_as_missing_h=1`` or more zeros is treated as missing (NaN). Pass a larger
    value to keep short zero runs as readings.
    """
    root = Path(root)
    folders = sorted(p for p in (root / "electricity").iterdir() if p.is_dir())
    if buildings is not None:
        folders = [p for p in folders if p.name in buildings]
    weather: tuple[HourArray, FloatArray] | None = None
    if with_temperature:
        weather_files = sorted((root / "weather_bedford").glob("*.csv"))
        if weather_files:
            grid, cols = _concat_years(
                weather_files, {"datetime": "", "air_temperature [degC]": "t"}
            )
            weather = (grid, cols["t"])
    series = []
    for folder in folders:
        files = sorted(folder.glob("*.csv"))
        if not files:
            continue
        grid, cols = _concat_years(files, {"datetime": "", "equipment load [kWh]": "v"})
        values = zero_runs_to_nan(cols["v"], zero_run_as_missing_h)
        temperature = None
        if weather is not None:
            temperature = _align(grid, *weather)
        series.append(
            HourlySeries(name=folder.name, timestamps=grid, values=values, temperature=temperature)
        )
    return series


def _align(grid: HourArray, source_grid: HourArray, source: FloatArray) -> FloatArray:
    """``source`` (on ``source_grid``) placed on ``grid``, NaN where it does not reach."""
    out = np.full(len(grid), np.nan)
    offset = int((source_grid[0] - grid[0]).astype(np.int64))
    lo, hi = max(0, offset), min(len(grid), offset + len(source))
    if lo < hi:
        out[lo:hi] = source[lo - offset : hi - offset]
    return out


def load_lead(root: Path | str) -> list[HourlySeries]:
    """The LEAD1.0 buildings (``lead_subset/filtered_data_<id>.csv``): values and labels.

    No temperature. Columns ``timestamp,building_id,meter_reading,anomaly``; an empty reading is
    missing; hours
    absent from the file are missing and not anomalous. Zeros are kept as readings: in LEAD a zero
    run is itself something the labellers judged.
    """
    root = Path(root)
    series = []
    for file in sorted(root.glob("filtered_data_*.csv")):
        lines, hours, cols = _read_columns(
            file, {"timestamp": "", "meter_reading": "v", "anomaly": "a"}
        )
        bad = [n for n, a in zip(lines, cols["a"], strict=True) if a not in (0.0, 1.0)]
        if bad:
            raise SeriesFormatError(file, bad[0], "anomaly is neither 0 nor 1")
        grid, (values, labels) = _grid(file, lines, hours, [cols["v"], cols["a"]])
        name = "lead_" + file.stem.removeprefix("filtered_data_")
        series.append(
            HourlySeries(
                name=name,
                timestamps=grid,
                values=values,
                labels=np.nan_to_num(labels, nan=0.0).astype(np.int8),
            )
        )
    return series


def load_uci_household(path: Path | str) -> HourlySeries:
    """The UCI "Individual household electric power consumption" data, hourly (kWh per hour).

    The file (``uci_household_power/household_power_consumption_hourly.csv``) holds hourly sums of
    the per-minute readings; ``Global_active_power`` (kW, summed over 60 minutes) / 60 is kWh.
    Timestamps are the household's clock (they show no summer-time jumps); they are kept as
    they are (read with ``Calendar(country="FR")``, timezone UTC). The publisher of the hourly file
    filled the missing minutes of the original by repeating the previous day: an hour whose seven
    columns all equal those 24 h before is such a copy and is read as missing (NaN), as are the
    hours on either side of each copied run (partly copied). That is 421 copied hours in 8 runs.
    """
    path = Path(path)
    times: list[np.datetime64] = []
    rows: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader)]
        if header[:2] != ["datetime", "Global_active_power"] or len(header) != 8:
            raise SeriesFormatError(path, 1, f"unexpected header {header}")
        for number, row in enumerate(reader, start=2):
            try:
                times.append(parse_hour(row[0]))
                rows.append([float(cell) for cell in row[1:8]])
            except (ValueError, IndexError) as exc:
                raise SeriesFormatError(path, number, str(exc) or "too few fields") from exc
    stamps = np.array(times, dtype="datetime64[h]")
    if np.any(np.diff(stamps) != np.timedelta64(1, "h")):
        raise SeriesFormatError(path, 0, "hours are not consecutive")
    table = np.array(rows)
    copied = np.zeros(len(stamps), dtype=np.bool_)
    copied[24:] = np.all(table[24:] == table[:-24], axis=1)
    missing = copied | np.r_[copied[1:], False] | np.r_[False, copied[:-1]]
    values = np.where(missing, np.nan, table[:, 0] / 60)
    return HourlySeries(name=path.parent.name or path.stem, timestamps=stamps, values=values)
