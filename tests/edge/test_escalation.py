"""Escalation: an alert nobody acknowledges reaches the family, the grid worker and the community
office in turn, on time, across restarts and clock steps.

A whole in-process gateway runs in virtual time (``VirtualTime``); a resident's home whose use
stopped is raised as the cessation model raises it (a ``use_stopped`` finding handed to the
pipeline), and nobody acknowledges it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.alerts import Alert, AlertBook, Finding, catalogue
from edge.alerts.escalation import MAX_EVENTS_PER_PASS, SAVE_S, TICK_S, policy_for
from edge.clock import Clock
from edge.config import parse_config
from edge.daemon import Gateway
from edge.schemas import EscalationSection, GatewayConfig
from edge.store import Store
from nbedge.errors import ConfigError
from tests.conftest import wait_until
from tests.support import alerts as support
from tests.support.clocks import VirtualTime

T0 = 1_772_438_400.0  # 2026-03-02 08:00 UTC
MIN = 60.0
DAY = 86_400.0

CONFIG = """
[gateway]
id = "gw-esc"
site = "site-esc"
state_dir = "{state}"

[mqtt]
enabled = false

[local_api]
enabled = false

[store]
batch_max_delay_s = 0.05
housekeeping_interval_s = 60
"""

MINIMAL = '[gateway]\nid = "gw-1"\nsite = "site-1"\n'


def config_for(tmp_path: Path, extra: str = "") -> GatewayConfig:
    return parse_config(CONFIG.format(state=tmp_path / "state") + extra)


@asynccontextmanager
async def running(
    config: GatewayConfig, clock: Clock, virtual: VirtualTime
) -> AsyncIterator[Gateway]:
    """A gateway running on ``clock``, its services asleep on virtual time; stopped after."""
    gateway = Gateway(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        await wait_until(
            lambda: gateway.ready.is_set() and virtual.asleep({"escalation", "housekeeping"}),
            timeout_s=30,
        )
        yield gateway
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


def raise_use_stopped(gateway: Gateway, at: float) -> Alert:
    """The cessation model's finding for a flat whose use stopped; the alert it raised."""
    assert gateway._pipeline is not None
    gateway._pipeline.submit_finding(
        Finding(
            code="use_stopped",
            device="flat-3",
            point="use",
            active=True,
            value=9.2,
            at=at,
            params={
                "variant": "",
                "meters": "electricity+water",
                "hours_quiet": 4,
                "usual_uses": 3.1,
            },
        )
    )
    (alert,) = [a for a in gateway.active_alerts() if a.rule == "use_stopped"]
    return alert


def level(gateway: Gateway, alert_id: str) -> int:
    (alert,) = [a for a in gateway.active_alerts() if a.alert_id == alert_id]
    return alert.level


async def history(config: GatewayConfig, alert_id: str) -> list[dict[str, Any]]:
    async with Store(config.database_path, gateway_id=config.gateway.id) as store:
        return await store.alert_history(alert_id)


def outbox_events(config: GatewayConfig) -> list[tuple[str, int, dict[str, Any]]]:
    conn = sqlite3.connect(config.database_path)
    try:
        rows = conn.execute("SELECT kind, priority, payload FROM outbox ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(kind, priority, json.loads(payload)["body"]) for kind, priority, payload in rows]


async def advance_to(virtual: VirtualTime, when: float) -> None:
    """Move virtual time to wall time ``when`` (before any wall step)."""
    await virtual.advance(when - virtual.time() + virtual.wall_step)


AUDIENCES = ["family", "grid_worker", "community_office"]


async def test_an_alert_nobody_acknowledges_escalates_at_10_20_and_30_minutes_and_no_further(
    tmp_path: Path,
) -> None:
    config = config_for(tmp_path)  # no [[alerts.escalation]]: the default policies
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        at = raised.raised_at
        for k, audience in enumerate(AUDIENCES, start=1):
            await advance_to(virtual, at + k * 10 * MIN - 1)
            assert level(gateway, raised.alert_id) == k - 1, f"level {k} came early"
            if k == 1:
                status = (await gateway.status()).escalation
                (waiting,) = status.waiting
                assert (waiting.alert_id, waiting.next_level) == (raised.alert_id, 1)
                assert (waiting.next_audience, waiting.next_due_in_s) == ("family", 1.0)
            await virtual.advance(1)
            assert level(gateway, raised.alert_id) == k, f"level {k} ({audience}) did not come"
        await virtual.advance(3 * 3600)
        assert level(gateway, raised.alert_id) == 3
        status = (await gateway.status()).escalation
        assert (status.escalated, status.waiting) == (3, ())

    events = await history(config, raised.alert_id)
    assert [(e["event"], e["level"], e["audience"]) for e in events] == [
        ("raised", 0, None),
        ("escalated", 1, "family"),
        ("escalated", 2, "grid_worker"),
        ("escalated", 3, "community_office"),
    ]
    assert [e["at"] for e in events] == [at, at + 600, at + 1200, at + 1800]
    assert [e["via"] for e in events[1:]] == ["policy"] * 3
    # Synced first: every alert event is in the outbox at priority 0, in order of the events.
    outbox = [(k, p, b) for k, p, b in outbox_events(config) if k == "alert_event"]
    assert [(p, b["event"], b["level"], b["audience"]) for _, p, b in outbox] == [
        (0, "raised", 0, None),
        (0, "escalated", 1, "family"),
        (0, "escalated", 2, "grid_worker"),
        (0, "escalated", 3, "community_office"),
    ]
    texts = [b["text"] for _, _, b in outbox[1:]]
    assert texts[0]["en"].endswith(
        "please visit; not acknowledged: escalated to the family (level 1)"
    )
    assert texts[1]["en"].endswith("escalated to the grid worker (level 2)")
    assert texts[2]["en"].endswith("escalated to the community office (level 3)")
    assert texts[0]["zh-Hans"].endswith("无人确认，已升级通知家属（第 1 级）")
    assert texts[1]["zh-Hans"].endswith("无人确认，已升级通知网格员（第 2 级）")
    assert texts[2]["zh-Hans"].endswith("无人确认，已升级通知社区办公室（第 3 级）")


@pytest.mark.parametrize("action", ["acknowledge", "resolve", "clear"])
async def test_an_acknowledgement_a_resolution_or_the_cause_ending_stops_it(
    tmp_path: Path, action: str
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        await advance_to(virtual, raised.raised_at + 10 * MIN + 30)
        assert level(gateway, raised.alert_id) == 1
        pipeline = gateway._pipeline
        assert pipeline is not None
        if action == "clear":  # the home is in use again: open until someone resolves it
            pipeline.submit_finding(
                Finding(
                    code="use_stopped",
                    device="flat-3",
                    point="use",
                    active=False,
                    value=0.0,
                    at=virtual.time(),
                )
            )
        else:
            result = pipeline.act(
                raised.alert_id,
                action,  # type: ignore[arg-type]
                by="wang.fang",
                via="local_api",
                at=virtual.time(),
                outcome="resident_ok" if action == "resolve" else None,
            )
            assert result.refused is None
        await virtual.advance(2 * 3600)
        assert (await gateway.status()).escalation.escalated == 1
    events = [(e["event"], e["level"]) for e in await history(config, raised.alert_id)]
    kind = {"acknowledge": "acknowledged", "resolve": "resolved", "clear": "cleared"}[action]
    assert events == [("raised", 0), ("escalated", 1), (kind, 1)]


@pytest.mark.parametrize(
    ("boot", "synchronised", "counted"),
    [
        ("boot-virtual", False, True),  # a restart of the process: the same monotonic clock
        ("boot-2", True, True),  # a reboot, both wall times synchronised
        ("boot-2", False, False),  # a reboot with the clock never synchronised: not trusted
    ],
    ids=["same-boot", "reboot-synced", "reboot-unsynced"],
)
async def test_after_a_restart_the_next_level_comes_when_due_and_the_first_is_not_repeated(
    tmp_path: Path, boot: str, synchronised: bool, counted: bool
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        at = raised.raised_at
        await advance_to(virtual, at + 11 * MIN + 40)
        assert level(gateway, raised.alert_id) == 1
    await advance_to(virtual, at + 15 * MIN)  # the gateway is down for 3 min 20 s
    clock = virtual.clock(boot_id=boot, synchronised=lambda: synchronised)
    async with running(config, clock, virtual) as gateway:
        assert level(gateway, raised.alert_id) == 1
        earliest = at + 20 * MIN if counted else at + 20 * MIN + 200  # the downtime lost
        # and, not counted, the running time since the last save (saved every minute) with it
        due = earliest if counted else earliest + SAVE_S + TICK_S
        await advance_to(virtual, earliest - 1)
        assert level(gateway, raised.alert_id) == 1, "level 2 came early"
        await advance_to(virtual, due)
        assert level(gateway, raised.alert_id) == 2, "level 2 did not come when due"
        await advance_to(virtual, due + 10 * MIN)
        assert level(gateway, raised.alert_id) == 3
    events = await history(config, raised.alert_id)
    assert [(e["event"], e["audience"]) for e in events] == [
        ("raised", None),
        ("escalated", "family"),
        ("escalated", "grid_worker"),
        ("escalated", "community_office"),
    ]
    if counted:
        assert [e["at"] for e in events] == [at, at + 600, at + 1200, at + 1800]


async def test_a_level_reached_is_the_least_an_alert_has_waited_after_an_untrusted_reboot(
    tmp_path: Path,
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        await virtual.advance(SAVE_S / 2)  # raised between two saves of the timers
        raised = raise_use_stopped(gateway, virtual.time())
        at = raised.raised_at
        await advance_to(virtual, at + 10 * MIN + 3)  # stopped right after level 1
        assert level(gateway, raised.alert_id) == 1
    await virtual.advance(5 * MIN)
    clock = virtual.clock(boot_id="boot-2", synchronised=lambda: False)
    async with running(config, clock, virtual) as gateway:
        restarted = virtual.time()
        await advance_to(virtual, restarted + 10 * MIN - 3 - 1)
        assert level(gateway, raised.alert_id) == 1
        # Its wait saved before the escalation was less, but level 1 says 10 min had passed.
        await advance_to(virtual, restarted + 10 * MIN)
        assert level(gateway, raised.alert_id) == 2


async def test_a_clock_synchronised_after_a_reboot_adds_the_downtime_then(
    tmp_path: Path,
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        at = raised.raised_at
        await advance_to(virtual, at + 11 * MIN)
    await advance_to(virtual, at + 16 * MIN)
    synced = [False]
    clock = virtual.clock(boot_id="boot-2", synchronised=lambda: synced[0])
    async with running(config, clock, virtual) as gateway:
        await advance_to(virtual, at + 17 * MIN)
        synced[0] = True  # NTP answers; the gateway looks within a minute
        await advance_to(virtual, at + 20 * MIN - 1)
        assert level(gateway, raised.alert_id) == 1
        await virtual.advance(1)
        assert level(gateway, raised.alert_id) == 2, "the downtime was not added once synced"


async def test_levels_missed_while_the_gateway_was_down_all_come_at_the_restart_in_order(
    tmp_path: Path,
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        at = raised.raised_at
        await advance_to(virtual, at + 11 * MIN)
        assert level(gateway, raised.alert_id) == 1
    await advance_to(virtual, at + 45 * MIN)  # down across the second and third due times
    clock = virtual.clock(boot_id="boot-2")
    async with running(config, clock, virtual) as gateway:
        assert level(gateway, raised.alert_id) == 3
        restarted = virtual.time()
    events = await history(config, raised.alert_id)
    assert [(e["event"], e["level"], e["audience"]) for e in events] == [
        ("raised", 0, None),
        ("escalated", 1, "family"),
        ("escalated", 2, "grid_worker"),
        ("escalated", 3, "community_office"),
    ]
    assert [e["at"] for e in events[2:]] == [restarted, restarted]


@pytest.mark.parametrize("step", [DAY, -DAY], ids=["forward", "back"])
async def test_a_wall_clock_step_neither_fires_a_level_early_nor_delays_one(
    tmp_path: Path, step: float
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        start = virtual.elapsed
        await virtual.advance(5 * MIN)
        virtual.step_wall(step)
        await virtual.advance(5 * MIN - 1)
        assert level(gateway, raised.alert_id) == 0, "escalated early after the step"
        await virtual.advance(1)
        assert level(gateway, raised.alert_id) == 1
        virtual.step_wall(-step)  # and stepped back again
        await virtual.advance(10 * MIN - 1)
        assert level(gateway, raised.alert_id) == 1
        await virtual.advance(1)
        assert level(gateway, raised.alert_id) == 2
        assert virtual.elapsed - start == 20 * MIN


async def test_a_configured_policy_by_rule_takes_precedence_over_one_by_severity(
    tmp_path: Path,
) -> None:
    config = config_for(
        tmp_path,
        """
[[alerts.escalation]]
severity = "critical"
after_s = 60
levels = ["community_office"]

[[alerts.escalation]]
rule = "use_stopped"
after_s = 300
every_s = 120
levels = ["grid_worker", "social_worker", "street-office"]
""",
    )
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        raised = raise_use_stopped(gateway, virtual.time())
        await advance_to(virtual, raised.raised_at + 299)
        assert level(gateway, raised.alert_id) == 0
        await advance_to(virtual, raised.raised_at + 300 + 2 * 120)
        assert level(gateway, raised.alert_id) == 3
    outbox = [b for k, _, b in outbox_events(config) if k == "alert_event"]
    assert [b["audience"] for b in outbox] == [
        None,
        "grid_worker",
        "social_worker",
        "street-office",
    ]
    # An audience nobody translated is shown as written.
    assert outbox[3]["text"]["zh-Hans"].endswith("无人确认，已升级通知street-office（第 3 级）")
    assert outbox[2]["text"]["en"].endswith("escalated to the social worker (level 2)")


async def test_a_pass_makes_at_most_its_share_of_events_and_the_rest_follow_at_once(
    tmp_path: Path,
) -> None:
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    count = MAX_EVENTS_PER_PASS + 20
    async with running(config, virtual.clock(), virtual) as gateway:
        pipeline = gateway._pipeline
        assert pipeline is not None
        for n in range(count):
            pipeline.submit_finding(
                Finding(
                    code="disk_full",
                    device=f"gw-{n}",
                    point="store",
                    active=True,
                    value=0.0,
                    at=virtual.time(),
                )
            )
        escalator = gateway.escalator
        assert escalator is not None
        await virtual.advance(10 * MIN - 1)
        assert escalator.escalated == 0
        passes = escalator.passes
        await virtual.advance(1)
        assert escalator.escalated == count
        assert escalator.passes == passes + 2  # the second pass at the same moment
        assert {a.level for a in gateway.active_alerts()} == {1}
        assert {a.at for a in gateway.active_alerts()} == {T0 + 10 * MIN}


# --- the policies --------------------------------------------------------------------------


def test_policy_for_picks_rule_and_severity_then_rule_then_severity() -> None:
    by_severity = EscalationSection(severity="critical", levels=["a"])
    by_rule = EscalationSection(rule="use_stopped", levels=["b"])
    by_both = EscalationSection(rule="use_stopped", severity="warning", levels=["c"])
    policies = [by_severity, by_both, by_rule]
    book = AlertBook()
    stopped = support.raise_alert(book, rule="use_stopped", device="f1", point="use")
    downgraded = support.raise_alert(
        book, rule="use_stopped", device="f2", point="use", severity="warning"
    )
    disk = support.raise_alert(book, rule="disk_full", device="gw", point="store")
    voltage = support.raise_alert(book)
    assert policy_for(stopped, policies) is by_rule
    assert policy_for(downgraded, policies) is by_both
    assert policy_for(disk, policies) is by_severity
    assert policy_for(voltage, policies) is None


def test_by_default_a_stopped_home_goes_to_the_family_first_other_critical_alerts_to_staff() -> (
    None
):
    policies = parse_config(MINIMAL).alerts.escalation
    book = AlertBook()
    stopped = policy_for(support.raise_alert(book, rule="use_stopped", point="use"), policies)
    disk = policy_for(support.raise_alert(book, rule="disk_full", point="store"), policies)
    assert stopped is not None
    assert disk is not None
    assert (stopped.levels, stopped.due_s(1), stopped.due_s(3)) == (AUDIENCES, 600, 1800)
    assert (disk.levels, disk.due_s(1), disk.due_s(2)) == (
        ["grid_worker", "community_office"],
        600,
        1200,
    )
    assert policy_for(support.raise_alert(book), policies) is None  # a warning does not escalate
    assert {a for p in policies for a in p.levels} <= set(catalogue.AUDIENCES)  # all translated
    assert parse_config(MINIMAL + "\n[alerts]\nescalation = []\n").alerts.escalation == []


FAMILY = 'levels = ["family"]'


@pytest.mark.parametrize(
    ("table", "field", "message"),
    [
        (f'rule = "use_stoped"\n{FAMILY}', "rule", "unknown alert code 'use_stoped'"),
        (f"severity = 'urgent'\n{FAMILY}", "severity", "'info', 'warning' or 'critical'"),
        (f"rule = 'use_stopped'\nafter_s = -60\n{FAMILY}", "after_s", "greater than or equal to 0"),
        (f"rule = 'use_stopped'\nevery_s = -1\n{FAMILY}", "every_s", "greater than 0"),
        (f"rule = 'use_stopped'\nevery_s = 0\n{FAMILY}", "every_s", "greater than 0"),
        ("rule = 'use_stopped'\nlevels = []", "levels", "from 1 to 10 levels"),
        ("rule = 'use_stopped'", "levels", "required key is missing"),
        ("rule = 'use_stopped'\nlevels = ['the family']", "levels.0", "should match pattern"),
        (f"after_s = 60\n{FAMILY}", "", "set rule, severity or both"),
    ],
    ids=["unknown-rule", "unknown-severity", "negative-after", "negative-every", "zero-every",
         "empty-levels", "no-levels", "audience-not-an-identifier", "no-selection"],
)  # fmt: skip
def test_an_escalation_table_with_a_mistake_is_refused_naming_the_field(
    table: str, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + "\n[[alerts.escalation]]\n" + table + "\n")
    issues = {issue.path: issue.message for issue in caught.value.issues}
    path = "alerts.escalation.0" + (f".{field}" if field else "")
    assert path in issues, issues
    assert message in issues[path]


def test_two_tables_for_the_same_alerts_are_refused() -> None:
    table = '\n[[alerts.escalation]]\nrule = "use_stopped"\nlevels = ["family"]\n'
    with pytest.raises(ConfigError, match=r"escalation.1 is for the same alerts as escalation.0"):
        parse_config(MINIMAL + table + table)


# --- the timers in the store ---------------------------------------------------------------


async def test_the_store_keeps_each_alert_s_unacknowledged_time_from_its_first_row(
    tmp_path: Path,
) -> None:
    virtual = VirtualTime(T0)
    clock = virtual.clock()
    book = AlertBook()
    waiting = support.raise_alert(book, rule="use_stopped", point="use", at=T0)
    acked = support.raise_alert(book, rule="disk_full", point="store", at=T0)
    async with Store(tmp_path / "gw.db", gateway_id="gw", clock=clock) as store:
        await store.write([], [waiting, acked])
        times = await store.unacked_times()
        assert times[waiting.alert_id].seconds == 0.0
        assert times[waiting.alert_id].stamp.clock_synced is True
        assert times[waiting.alert_id].stamp.wall_time == T0
        result = book.act(acked.alert_id, "acknowledge", by="li", via="local_api", at=T0 + 5)
        await store.write([], list(result.changes))
        assert set(await store.unacked_times()) == {waiting.alert_id}  # acknowledged: no timer
        later = type(times[waiting.alert_id])(420.0, clock.stamp())
        await store.save_unacked([(waiting.alert_id, later), (acked.alert_id, later)])
        assert (await store.unacked_times())[waiting.alert_id] == later


async def test_an_alert_from_before_the_upgrade_counts_from_the_first_start_after_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "gateway.db"
    book = AlertBook()
    old = support.raise_alert(book, rule="use_stopped", device="flat-3", point="use", at=T0 - DAY)
    async with Store(path, gateway_id="gw-esc", clock=Clock(synchronised=lambda: True)) as store:
        await store.write([], [old])
    conn = sqlite3.connect(path)  # as schema 7 left it: no timer
    conn.execute("UPDATE alerts SET unacked_s = NULL, unacked_wall = NULL")
    conn.close()
    config = config_for(tmp_path)
    virtual = VirtualTime(T0)
    async with running(config, virtual.clock(), virtual) as gateway:
        await virtual.advance(10 * MIN - 1)
        assert level(gateway, old.alert_id) == 0, "a day old, but its wait is not known"
        await virtual.advance(1)
        assert level(gateway, old.alert_id) == 1
