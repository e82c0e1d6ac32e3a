"""``nbedge models evaluate cessation`` on dwelling files: the door column adds the door methods,
the water column the dwelling's second meter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.cli import main

START = np.datetime64("2024-01-01T00", "h")  # a Monday


def write_dwelling(path: Path, weeks: int, *, with_doors: bool, seed: int = 3) -> None:
    """A home used from 07:00 to 22:59 (UTC) that goes out most days, the door announcing it.

    The outings (2 to 4 h, starting 09:00-16:00) are quiet stretches at active times, the false
    alarms a door sensor should explain: the door opens in the hour before (leaving) and in the
    hour after (coming back).
    """
    rng = np.random.default_rng(seed)
    n = weeks * 168
    hour = np.arange(n) % 24
    used = (hour >= 7) & (hour <= 22) & (rng.random(n) < 0.95)
    doors = np.zeros(n, dtype=np.int64)
    for day in range(weeks * 7):
        if rng.random() < 0.6:
            start = day * 24 + int(rng.integers(9, 17))
            stop = start + int(rng.integers(2, 5))
            used[start:stop] = False
            used[start - 1] = used[stop] = True
            doors[start - 1] += 1
            doors[stop] += 1
    values = 0.15 + 0.1 * rng.random(n) + np.where(used, rng.uniform(0.5, 2.0, n), 0.0)
    columns = {"value": [f"{v:.3f}" for v in values]}
    write_hours(path, columns | ({"doors": [str(d) for d in doors]} if with_doors else {}))


def write_hours(path: Path, columns: dict[str, list[str]]) -> None:
    """A dwelling file: the header, then one line per hour from START with the given cells."""
    n = len(next(iter(columns.values())))
    stamps = START + np.arange(n) * np.timedelta64(1, "h")
    lines = [",".join(["timestamp", *columns])]
    rows = zip(stamps, *columns.values(), strict=True)
    lines += [",".join([f"{t}:00", *cells]) for t, *cells in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_dwelling_with_doors_gets_the_door_methods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dwelling(tmp_path / "flat.csv", 12, with_doors=True)
    write_dwelling(tmp_path / "house.csv", 12, with_doors=False, seed=4)
    assert main(["models", "evaluate", "cessation", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    methods = {(line.split()[0], line.split()[3]) for line in out.splitlines() if "all" in line}
    for name in ("flat", "house", "median"):
        assert (name, "cessation") in methods
        assert (name, "cessation_calibrated") in methods
    # only the file with a doors column is evaluated with the door sensor
    assert ("flat", "cessation+doors") in methods
    assert ("flat", "cessation_calibrated+doors") in methods
    assert ("house", "cessation+doors") not in methods
    assert ("median", "cessation+doors") in methods
    assert ("median", "cessation_calibrated+doors") in methods


def write_resident(path: Path, weeks: int, *, with_water: bool, seed: int = 5) -> None:
    """A resident living alone, up 07:00-22:59 (UTC), who stays in: electricity in 90 % of those
    hours, water in 60 %."""
    rng = np.random.default_rng(seed)
    n = weeks * 168
    hour = np.arange(n) % 24
    home = (hour >= 7) & (hour <= 22)
    used, washed = home & (rng.random(n) < 0.9), home & (rng.random(n) < 0.6)
    values = 0.15 + 0.1 * rng.random(n) + np.where(used, rng.uniform(0.5, 2.0, n), 0.0)
    water = np.where(washed, rng.uniform(5, 40, n), 0.0)
    columns = {"value": [f"{v:.3f}" for v in values]}
    write_hours(path, columns | ({"water": [f"{w:.1f}" for w in water]} if with_water else {}))


def test_a_dwelling_file_with_water_is_evaluated_on_both_meters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_resident(tmp_path / "alone.csv", 40, with_water=False)
    write_resident(tmp_path / "both.csv", 40, with_water=True)  # the same electricity
    assert main(["models", "evaluate", "cessation", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {
        (fields[0], fields[3]): fields
        for fields in (line.split() for line in out.splitlines())
        if len(fields) == 10 and fields[1] == "all"
    }
    alone, both = rows[("alone", "cessation")], rows[("both", "cessation")]
    assert alone[2] == "electricity"
    assert both[2] == "electricity+water"
    assert float(both[5]) >= 95  # detected within 3 h
    assert float(both[8]) < float(alone[8])  # fewer false alarms a month with water
    assert "both (electricity and water): 100 % of the hours evaluated known" in out
    assert "alone (electricity): 100 % of the hours evaluated known" in out
