"""Threshold rules from the configuration: 220 V +7 % / -10 % (GB/T 12325), a CT's rating; the
minimum duration and the hysteresis; every mistake refused by ``nbedge config check`` with its
field; and the rule firing on the simulator in a running gateway."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.alerts import Alert, AlertBook
from edge.cli import main
from edge.config import parse_config
from edge.rules import EveryIntervalRule, ThresholdRule, WindowRule
from edge.schemas import EveryIntervalRuleSection, ThresholdRuleSection, WindowRuleSection
from firmware_bridge.readings import Reading
from nbedge.errors import ConfigError
from tests.conftest import Broker, wait_until
from tests.support.console import console_building, retained_when

GB = {"name": "supply_gb", "label": "供电电压", "point": "voltage_l1", "nominal": 220.0,
      "above_pct": 7.0, "below_pct": 10.0, "hysteresis": 2.0}  # fmt: skip
GATEWAY = '[gateway]\nid = "gw-1"\nsite = "site-1"\n'
METER = '\n[[modbus.devices]]\nname = "main"\nprofile = "eastron_sdm630"\nhost = "10.0.0.2"\n'


def volts(value: float, at: float = 0.0, device: str = "main") -> Reading:
    return Reading(device, "voltage_l1", value, "V", at, 0)


def changes(rule: ThresholdRule, readings: Sequence[Reading], book: AlertBook) -> list[Alert]:
    found = [change for f in rule.evaluate(readings) for change in book.apply(f)]
    return [c for c in found if c.event in ("raised", "cleared")]


def test_220_v_plus_7_minus_10_percent() -> None:
    section = ThresholdRuleSection.model_validate(GB)
    assert (section.low, section.high) == pytest.approx((198.0, 235.4))
    rule, book = ThresholdRule([section]), AlertBook()
    assert changes(rule, [volts(235.0), volts(199.0)], book) == []
    (raised,) = changes(rule, [volts(236.0, at=1)], book)
    assert (raised.rule, raised.severity, raised.params["variant"]) == (
        "threshold",
        "warning",
        "above",
    )
    assert raised.text("en") == "供电电压: voltage_l1 of main at 236.0 V, above 235.4 V"
    assert raised.text("zh-Hans") == "供电电压：main 的 voltage_l1 为 236.0 V，高于 235.4 V"
    assert changes(rule, [volts(234.0, at=2)], book) == []  # inside, not yet by the hysteresis
    (cleared,) = changes(rule, [volts(233.0, at=3)], book)
    assert cleared.condition == "cleared"
    (low,) = changes(rule, [volts(150.0, at=4)], book)
    assert low.params["variant"] == "below"
    assert low.params["limit"] == pytest.approx(198.0)


def test_a_minimum_duration_and_a_return_inside_starts_it_again() -> None:
    section = ThresholdRuleSection.model_validate(GB | {"for_s": 60})
    rule, book = ThresholdRule([section]), AlertBook()
    assert changes(rule, [volts(240.0, at=0), volts(240.0, at=59)], book) == []
    assert changes(rule, [volts(230.0, at=60), volts(240.0, at=61)], book) == []  # again
    assert changes(rule, [volts(240.0, at=120)], book) == []
    (raised,) = changes(rule, [volts(240.0, at=121)], book)
    assert raised.params["for_s"] == 60


def test_one_device_and_a_critical_rating() -> None:
    section = ThresholdRuleSection.model_validate(
        {"name": "ct", "device": "flat-1", "point": "current", "above": 60, "severity": "critical"}
    )
    rule, book = ThresholdRule([section]), AlertBook()
    other = Reading("flat-2", "current", 99.0, "A", 0, 0)
    assert changes(rule, [other], book) == []
    (raised,) = changes(rule, [Reading("flat-1", "current", 61.0, "A", 0, 0)], book)
    assert raised.severity == "critical"
    assert raised.needs_person
    assert raised.text("en") == "ct: current of flat-1 at 61.0 A, above 60.0 A"


def test_the_gb_rule_passes_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in GB.items())
    path = tmp_path / "gateway.toml"
    path.write_text(
        GATEWAY + METER + "\n[rules.voltage]\nenabled = false\n\n[[rules.threshold]]\n" + rule
    )
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("1 Modbus device(s), 1 rule(s) of your own)")
    assert "note:" not in out


def test_config_check_notes_a_rule_that_the_built_in_voltage_rule_doubles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in GB.items())
    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY + METER + "\n[[rules.threshold]]\n" + rule)
    assert main(["config", "check", str(path)]) == 0  # valid, but one fault would alert twice
    (_, note) = capsys.readouterr().out.splitlines()
    assert note.startswith(f"note: rules.threshold.0 ({GB['name']}) and [rules.voltage] (EN 50160")
    assert f"both watch {GB['point']}" in note
    assert "enabled = false" in note


@pytest.mark.parametrize(
    ("rule", "path", "says"),
    [
        ('name = "a"\npoint = "v"\n', "rules.threshold.0", "give a limit"),
        ('name = "a"\npoint = "v"\nabove = 1\nnominal = 2\n', "rules.threshold.0", "not both"),
        ('name = "a"\npoint = "v"\nabove_pct = 7\n', "rules.threshold.0", "need nominal"),
        ('name = "a"\npoint = "v"\nabove = 1\nbelow = 2\n', "rules.threshold.0", "must be below"),
        (
            'name = "a"\npoint = "v"\nabove = 3\nbelow = 1\nhysteresis = 1\n',
            "rules.threshold.0",
            "wider than half",
        ),
        (
            'name = "a"\npoint = "v"\nbelow_pct = 120\nnominal = 1\n',
            "rules.threshold.0.below_pct",
            "less than or equal to 100",
        ),
        ('name = "a"\npoint = "v"\nabove = 1e999\n', "rules.threshold.0.above", "finite"),
        (
            'name = "a"\npoint = "v"\nabove = 1\nseverity = "urgent"\n',
            "rules.threshold.0.severity",
            "info",
        ),
        ('name = "a"\npoint = "v"\nabove = 1\ndevice = "nope"\n', "", "not a device"),
        ('name = "a b"\npoint = "v"\nabove = 1\n', "rules.threshold.0.name", "pattern"),
    ],
)
def test_a_mistake_is_refused_with_its_field(rule: str, path: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(GATEWAY + METER + "\n[[rules.threshold]]\n" + rule)
    text = str(refused.value)
    assert says in text, text
    assert re.search(rf"^  {re.escape(path)}", text, re.MULTILINE) or not path, text


def test_two_rules_on_one_point_are_refused() -> None:
    twice = '\n[[rules.threshold]]\nname = "a"\npoint = "v"\nabove = 1\n'
    other = twice.replace('"a"', '"b"').replace("point", 'device = "main"\npoint')
    with pytest.raises(ConfigError, match="one rule per point"):
        parse_config(GATEWAY + METER + twice + other)


async def test_the_rule_fires_on_the_simulator(tmp_path: Path, mosquitto: Broker) -> None:
    rule = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in GB.items())
    extra = "\n[rules.voltage]\nenabled = false\n\n[[rules.threshold]]\n" + rule
    async with console_building(tmp_path, mosquitto, extra=extra) as building:
        gateway = building.gateway
        building.main.override("voltage_l1", 240.0)  # inside EN 50160, above GB/T 12325

        def raised() -> Alert | None:
            return next((a for a in gateway.active_alerts() if a.rule == "threshold"), None)

        await wait_until(lambda: raised() is not None, 10)
        alert = raised()
        assert alert is not None
        assert not any(a.rule == "voltage" for a in gateway.active_alerts())
        message = await retained_when(
            mosquitto, building.topic(alert.alert_id), lambda m: m["condition"] == "active"
        )
        assert message["texts"]["zh-Hans"].startswith("供电电压：main 的 voltage_l1 为 240.0 V")
        building.main.override("voltage_l1", 220.0)
        await wait_until(lambda: raised() is None, 10)  # cleared, and resolved by itself


# --- window and every_interval ------------------------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = {"name": "night_water", "label": "夜间用水", "point": "volume", "rate": True,
         "above": 0.02, "start": "23:00", "end": "05:00"}  # fmt: skip


def at_local(hour: int, minute: int = 0, day: int = 2) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI).timestamp()


def water(value: float, at: float, device: str = "flat-1-water") -> Reading:
    return Reading(device, "volume", value, "m3", at, 0)


def test_water_flowing_at_night_and_not_by_day() -> None:
    rule = WindowRule([WindowRuleSection.model_validate(NIGHT)], SHANGHAI)
    book = AlertBook()
    by_day = [water(10.0, at_local(14)), water(10.5, at_local(14, 30))]  # 1 m3/h, by day
    assert changes(rule, by_day, book) == []
    night = [water(11.0, at_local(23, 30)), water(11.1, at_local(23, 45))]  # 0.4 m3/h
    (raised,) = changes(rule, night, book)
    assert raised.rule == "window"
    assert raised.value == pytest.approx(0.4)
    assert (
        raised.text("en") == "夜间用水: volume of flat-1-water at 0.4 m3/h between 23:00 and 05:00"
    )
    assert changes(rule, [water(11.2, at_local(0, 30, day=3))], book) == []  # past midnight: on
    (cleared,) = changes(rule, [water(11.3, at_local(5, 15, day=3))], book)  # the night is over
    assert cleared.condition == "cleared"


def test_a_counter_that_goes_back_gives_no_rate() -> None:
    rule = WindowRule([WindowRuleSection.model_validate(NIGHT)], SHANGHAI)
    assert rule.evaluate([water(11.0, at_local(23, 30)), water(2.0, at_local(23, 45))]) == []


def test_water_in_every_half_hour_of_a_day_is_a_suspected_leak() -> None:
    section = EveryIntervalRuleSection.model_validate(
        {"name": "leak", "label": "疑似漏水", "point": "volume", "intervals": 48}
    )
    rule, book = EveryIntervalRule([section]), AlertBook()
    start = at_local(0) // 1800 * 1800
    dripping = [water(100 + 0.01 * n, start + 600 * n) for n in range(3 * 47 + 1)]
    assert changes(rule, dripping, book) == []  # 47 half hours: not yet
    (raised,) = changes(rule, [water(101.5, start + 600 * 145)], book)  # the 48th is over
    assert raised.rule == "every_interval"
    assert raised.params["intervals"] == 48
    assert raised.text("en").startswith("疑似漏水: volume of flat-1-water rose in each of the last")
    assert "30 min" in raised.text("en")
    still = [water(101.5, start + 600 * n) for n in range(146, 152)]  # a half hour at rest
    (cleared,) = changes(rule, still, book)
    assert cleared.condition == "cleared"


def test_an_interval_without_a_reading_breaks_the_run() -> None:
    section = EveryIntervalRuleSection.model_validate(
        {"name": "leak", "point": "volume", "interval_s": 60, "intervals": 3}
    )
    rule, book = EveryIntervalRule([section]), AlertBook()
    run = [water(float(n), 60.0 * n + 1) for n in range(3)]
    assert changes(rule, run, book) == []
    assert changes(rule, [water(9.0, 60.0 * 9 + 1)], book) == []  # six silent minutes
    more = [water(10.0 + n, 60.0 * (10 + n) + 1) for n in range(4)]
    (raised,) = changes(rule, more, book)  # three whole minutes moved after the gap
    assert raised.value == 3


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ('name = "w"\npoint = "v"\nabove = 1\nstart = "23:00"\nend = "23:00"\n', "empty"),
        ('name = "w"\npoint = "v"\nstart = "23:00"\nend = "05:00"\n', "give the condition"),
        ('name = "w"\npoint = "v"\nabove = 1\nstart = "24:00"\nend = "05:00"\n', "pattern"),
        ('name = "w"\npoint = "v"\nabove = 1\nstart = "٢٣:00"\nend = "05:00"\n', "pattern"),
    ],
)
def test_a_window_mistake_is_refused(rule: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_config(GATEWAY + METER + "\n[[rules.window]]\n" + rule)


def test_an_every_interval_mistake_is_refused_with_its_field() -> None:
    rule = '\n[[rules.every_interval]]\nname = "l"\npoint = "v"\nintervals = 1\ninterval_s = 9\n'
    with pytest.raises(ConfigError) as refused:
        parse_config(GATEWAY + METER + rule)
    paths = {issue.path for issue in refused.value.issues}
    assert paths == {"rules.every_interval.0.intervals", "rules.every_interval.0.interval_s"}
