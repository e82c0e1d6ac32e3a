"""Loading hourly series from the documented CSV format, and refusing bad files clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.series import (
    HourlySeries,
    SeriesFormatError,
    load_csv,
    load_path,
    zero_runs_to_nan,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_full_format_with_a_gap(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hall.csv",
        "timestamp,value,temperature,label\n"
        "2019-01-01T00:00:00,1.5,3.0,0\n"
        "2019-01-01 01:00:00,,2.5,1\n"
        "2019-01-01T04:00,4.0,,0\n",
    )
    s = load_csv(path)
    assert s.name == "hall"
    assert s.timestamps.dtype == np.dtype("datetime64[h]")
    assert s.timestamps[0] == np.datetime64("2019-01-01T00", "h")
    assert len(s.timestamps) == 5  # hours 0..4, 2 and 3 absent
    np.testing.assert_array_equal(s.values, [1.5, np.nan, np.nan, np.nan, 4.0])
    assert s.temperature is not None
    np.testing.assert_array_equal(s.temperature, [3.0, 2.5, np.nan, np.nan, np.nan])
    assert s.labels is not None
    assert s.labels.tolist() == [0, 1, 0, 0, 0]


@pytest.mark.parametrize(("one", "zero"), [("1", "0"), ("1.0", "0.0"), ("True", "false")])
def test_labels_written_as_floats_or_booleans_are_read(tmp_path: Path, one: str, zero: str) -> None:
    path = write(
        tmp_path / "lead.csv",
        f"timestamp,value,label\n2019-01-01T00:00,1.5,{zero}\n2019-01-01T01:00,9.0,{one}\n",
    )
    s = load_csv(path)
    assert s.labels is not None
    assert s.labels.tolist() == [0, 1]


def test_value_only_and_utc_offsets(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.csv",
        "timestamp,value\n2019-06-01T02:00:00+02:00,1\n2019-06-01T01:00:00Z,2\n",
    )
    s = load_csv(path)
    assert s.temperature is None
    assert s.labels is None
    assert s.doors is None
    assert s.water is None
    assert s.timestamps.tolist() == [
        np.datetime64("2019-06-01T00", "h").item(),
        np.datetime64("2019-06-01T01", "h").item(),
    ]


def test_doors_column_counts_openings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flat.csv",
        "timestamp,value,doors\n"
        "2019-01-01T00:00,0.2,0\n"
        "2019-01-01T01:00,0.3,\n"
        "2019-01-01T02:00,1.1,2\n"
        "2019-01-01T04:00,0.9,1.0\n",
    )
    s = load_csv(path)
    assert s.doors is not None
    assert s.doors.dtype == np.int64
    assert s.doors.tolist() == [0, 0, 2, 0, 1]  # empty and absent hours: no opening
    assert s.labels is None
    assert s.between("2019-01-01T02", "2019-01-01T05").doors.tolist() == [2, 0, 1]


def test_water_column_is_the_dwellings_second_meter(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flat.csv",
        "timestamp,value,water,doors\n"
        "2019-01-01T00:00,0.2,0,0\n"
        "2019-01-01T01:00,0.3,,1\n"
        "2019-01-01T03:00,1.1,12.5,0\n",
    )
    s = load_csv(path)
    assert s.water is not None
    np.testing.assert_array_equal(s.water, [0.0, np.nan, np.nan, 12.5])  # empty, absent: missing
    assert s.values.tolist()[3] == 1.1
    assert s.doors is not None
    assert s.doors.tolist() == [0, 1, 0, 0]
    np.testing.assert_array_equal(s.between("2019-01-01T03", "2019-01-01T04").water, [12.5])


def test_a_water_column_without_value_is_a_water_only_home(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flat.csv",
        "timestamp,water,doors\n2019-01-01T00:00,0,0\n2019-01-01T01:00,,1\n2019-01-01T03:00,12,0\n",
    )
    s = load_csv(path)
    assert s.meter == "water"
    np.testing.assert_array_equal(s.values, [0.0, np.nan, np.nan, 12.0])
    assert s.water is None
    assert s.doors is not None
    assert s.doors.tolist() == [0, 1, 0, 0]
    assert s.between("2019-01-01T01", "2019-01-01T04").meter == "water"
    assert load_csv(
        write(tmp_path / "hall.csv", "timestamp,value\n2019-01-01T00:00,1\n")
    ).meter == ("electricity")


def test_a_motion_column_is_an_hour_with_movement_or_unknown(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flat.csv",
        "timestamp,value,motion\n2019-01-01T00:00,1,1\n2019-01-01T01:00,1,\n"
        "2019-01-01T03:00,1,false\n",
    )
    s = load_csv(path)
    assert s.motion is not None
    np.testing.assert_array_equal(s.motion, [1.0, np.nan, np.nan, 0.0])
    np.testing.assert_array_equal(s.between("2019-01-01T03", "2019-01-01T04").motion, [0.0])
    assert (
        load_csv(write(tmp_path / "hall.csv", "timestamp,value\n2019-01-01T00:00,1\n")).motion
        is None
    )


def test_doors_must_match_the_timestamps() -> None:
    hours = np.arange(np.datetime64("2019-01-01T00", "h"), np.datetime64("2019-01-01T03", "h"))
    with pytest.raises(ValueError, match="2 doors for 3 timestamps"):
        HourlySeries("x", hours, np.zeros(3), doors=np.zeros(2, dtype=np.int64))


def test_folder_is_one_building_per_file(tmp_path: Path) -> None:
    write(tmp_path / "b.csv", "timestamp,value\n2019-01-01T00:00,1\n")
    write(tmp_path / "a.csv", "timestamp,value\n2019-01-01T00:00,2\n")
    write(tmp_path / "notes.txt", "ignored")
    assert [s.name for s in load_path(tmp_path)] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("timestamp,temperature\n2019-01-01T00:00,1\n", 1, "no 'value' column"),
        ("timestamp,value\n2019-01-01T00:00,1\nyesterday,2\n", 3, "Invalid isoformat"),
        ("timestamp,value\n2019-01-01T00:00,1\n2019-01-01T00:30,2\n", 3, "not on the hour"),
        ("timestamp,value\n2019-01-01T01:00,1\n2019-01-01T00:00,2\n", 3, "out of order"),
        ("timestamp,value\n2019-01-01T00:00,1\n2019-01-01T00:00,2\n", 3, "duplicate"),
        ("timestamp,value\n2019-01-01T00:00,lots\n", 2, "could not convert"),
        ("timestamp,value\n2019-01-01T00:00\n", 2, "1 fields"),
        ("timestamp,value,label\n2019-01-01T00:00,1,yes\n", 2, "neither 0 nor 1"),
        ("timestamp,value,label\n2019-01-01T00:00,1,0.5\n", 2, "'0.5' is neither 0 nor 1"),
        ("timestamp,value,label\n2019-01-01T00:00,1,nan\n", 2, "'nan' is neither 0 nor 1"),
        ("timestamp,value,doors\n2019-01-01T00:00,1,0\n2019-01-01T01:00,1,-1\n", 3, "negative"),
        ("timestamp,value,doors\n2019-01-01T00:00,1,1.5\n", 2, "not a whole number"),
        ("timestamp,value,doors\n2019-01-01T00:00,1,nan\n", 2, "not a whole number"),
        ("timestamp,value,doors\n2019-01-01T00:00,1,open\n", 2, "not a number of openings"),
        ("timestamp,value,motion\n2019-01-01T00:00,1,2\n", 2, "motion '2' is not 1 or 0"),
        ("timestamp,value,motion\n2019-01-01T00:00,1,seen\n", 2, "motion 'seen' is not 1 or 0"),
        ("timestamp,water,motion\n2019-01-01T00:00,1,1e400\n", 2, "motion '1e400' is not 1"),
        ("timestamp,value,water\n2019-01-01T00:00,1,-3\n", 2, "water '-3' is not a use"),
        ("timestamp,value,water\n2019-01-01T00:00,1,inf\n", 2, "water 'inf' is not a use"),
        ("timestamp,value,water\n2019-01-01T00:00,1,tap\n", 2, "water 'tap' is not a number"),
        ("timestamp,water\n2019-01-01T00:00,-1\n", 2, "water '-1' is not a use"),
        ("value,water\n1,2\n", 1, "no 'timestamp' column"),
        ("timestamp,value,kwh\n", 1, "unknown column"),
        ("timestamp,value\n", 0, "no data rows"),
        ("", 0, "empty file"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(SeriesFormatError, match=message) as info:
        load_csv(path)
    assert info.value.line == line
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SeriesFormatError, match="no such file"):
        load_path(tmp_path / "absent.csv")
    with pytest.raises(SeriesFormatError, match=r"no \*\.csv"):
        load_path(tmp_path)


def test_zero_runs_to_nan() -> None:
    values = np.array([1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0])
    out = zero_runs_to_nan(values, 2)
    np.testing.assert_array_equal(out, [1, 0, 2, np.nan, np.nan, np.nan, 3, np.nan, np.nan])
    assert np.isnan(zero_runs_to_nan(values, 1)[1])
    assert values[3] == 0.0  # the input is not changed
