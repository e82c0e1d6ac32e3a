"""``nbedge models evaluate``, run as a user runs it: which files each model reads, and what it
says about the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from tests.models.test_cessation import mostly_missing
from tests.models.test_evaluate_doors import write_dwelling, write_hours


def test_evaluate_anomaly_on_files_without_labels_says_so_and_injects_no_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dwelling(tmp_path / "flat.csv", 12, with_doors=True)
    assert main(["models", "evaluate", "anomaly", "--data", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "no file has a labelled anomalous hour" in captured.err
    assert "nbedge models evaluate cessation" in captured.err
    assert "injected stops" not in captured.out


def test_evaluate_anomaly_scores_the_labelled_files_and_names_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dwelling(tmp_path / "flat.csv", 12, with_doors=False)
    rng = np.random.default_rng(0)
    values = 10 + rng.random(12 * 168)
    values[500:520] = 60.0  # labelled: far above the usual
    labels = np.zeros(len(values), dtype=np.int64)
    labels[500:520] = 1
    columns = {"value": [f"{v:.3f}" for v in values], "label": [f"{x:.1f}" for x in labels]}
    write_hours(tmp_path / "hall.csv", columns)
    assert main(["models", "evaluate", "anomaly", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Anomaly flags against labels" in out
    assert "\nhall\n" in out
    assert "injected stops" not in out
    assert "not evaluated, no labelled anomalous hour: flat" in out


def test_evaluate_cessation_has_no_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dwelling(tmp_path / "flat.csv", 12, with_doors=False)
    args = ["models", "evaluate", "cessation", "--data", str(tmp_path), "--bundle", str(tmp_path)]
    assert main(args) == 2
    assert "cessation has no bundle" in capsys.readouterr().err


def test_evaluate_cessation_reports_a_home_with_mostly_missing_hours_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dwelling(tmp_path / "flat.csv", 12, with_doors=False)
    sparse = mostly_missing(52).values
    write_hours(
        tmp_path / "sparse.csv", {"value": ["" if np.isnan(v) else f"{v:.3f}" for v in sparse]}
    )
    assert main(["models", "evaluate", "cessation", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    medians = [line for line in out.splitlines() if line.startswith("median")]
    assert len(medians) == 5  # cessation, stopped, cessation_calibrated and the two baselines
    assert all(line.endswith("(over 1 dwelling)") and "nan" not in line for line in medians)
    assert "1 dwelling evaluated, 1 skipped:" in out
    assert "skipped sparse (electricity): no week has 14 days of known hours" in out


def write_water_only(path: Path, weeks: int, seed: int = 5) -> None:
    """A resident's water alone, up 07:00-22:59 (UTC), who washes, cooks or flushes in nine
    hours of ten she is up: a water-only home's file is timestamp,water."""
    rng = np.random.default_rng(seed)
    n = weeks * 168
    hour = np.arange(n) % 24
    used = (hour >= 7) & (hour <= 22) & (rng.random(n) < 0.9)
    write_hours(path, {"water": [f"{w:.0f}" for w in np.where(used, rng.uniform(3, 40, n), 0)]})


def test_evaluate_cessation_on_a_water_only_home_shows_it_in_its_own_meters_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_water_only(tmp_path / "tap.csv", 30)
    write_dwelling(tmp_path / "flat.csv", 30, with_doors=False)
    assert main(["models", "evaluate", "cessation", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {
        (fields[0], fields[2], fields[3]): fields
        for fields in (line.split() for line in out.splitlines())
        if len(fields) >= 10 and fields[1] == "all"
    }
    tap = rows[("tap", "water", "cessation")]
    assert float(tap[5]) >= 90  # most stops alerted within 3 h on water alone (the cap: 94 %)
    assert ("flat", "electricity", "cessation") in rows
    # each set of meters has its own medians
    assert rows[("median", "water", "cessation")][4] == tap[4]
    assert rows[("median", "water", "cessation")][-1] == "dwelling)"
    assert ("median", "electricity", "cessation") in rows
    assert "tap (water): 100 % of the hours evaluated known" in out


def test_demand_and_anomaly_leave_a_water_only_home_to_cessation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_water_only(tmp_path / "tap.csv", 12)
    for model in ("demand", "anomaly"):
        assert main(["models", "evaluate", model, "--data", str(tmp_path)]) == 1
        assert "nbedge models evaluate cessation reads them" in capsys.readouterr().err
