"""Threshold rules from the configuration: 220 V +7 % / -10 % (GB/T 12325), a CT's rating; the
minimum duration and the hysteresis; every mistake refused by ``nbedge config check`` with its
field; and the rule firing on the simulator in a running gateway."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge.alerts import Alert, AlertBook
from edge.cli import main
from edge.config import parse_config
from edge.rules import ThresholdRule
from edge.schemas import ThresholdRuleSection
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
