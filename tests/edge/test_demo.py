"""``nbedge demo`` as a new user runs it: data, the voltage alert and the flat's leak and SOS
alerts reach the central API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.demo import LEAK_AT_S, SOS_AT_S


@pytest.mark.slow  # about 50 s: the demo runs for real (the slow suite, in CI)
def test_demo_shows_summaries_and_the_voltage_alert_within_a_minute(tmp_path: Path) -> None:
    # The demo's own bound (45 s and a stop) is well inside pytest's: a demo that does not stop
    # fails here with what it printed, including the gateway's log of the task that hung.
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge.cli",
                "demo",
                "--duration",
                "45",
                "--state-dir",
                str(tmp_path / "demo"),
            ],
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the demo did not stop:\n{_text(exc.stdout)[-3000:]}\n{_text(exc.stderr)[-3000:]}"
        )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p \d+ -t 'nbedge/#' -v", out)
    assert re.search(r"curl -H 'Authorization: Bearer \S+' http://127\.0\.0\.1:\d+/v1/sites/", out)
    raised = re.search(r"\+\s*(\d+) s\s+alert raised\s+main-meter/voltage_l1: overvoltage", out)
    summary = re.search(r"\+\s*(\d+) s\s+summary main-meter/voltage_l1", out)
    assert raised, out
    assert summary, out
    # The simulated gate's badge traffic reaches the platform's access-event feed.
    assert re.search(
        r"access\s+(granted|denied|opened|closed|held_open|forced_open)\s+entrance", out
    )
    assert re.search(
        r"curl -X POST -H 'Authorization: Bearer \S+' http://127\.0\.0\.1:\d+/api/gates/entrance/open",
        out,
    )
    assert int(summary.group(1)) <= 60
    # The flat's quiet hours in two stages: the check-in first, then the visit when its motion
    # sensor agrees (the check-in cleared: the visit supersedes it); how to act on the visit
    # from the three places, and its escalation.
    quiet = re.search(r"alert raised\s+flat-1/use: flat-1: quiet for \d h .*please check in", out)
    visit = re.search(
        r"alert raised\s+flat-1/use: flat-1: no electricity or water use for \d h and no movement "
        r"seen for \d h.*please visit",
        out,
    )
    assert quiet, out
    assert visit, out
    assert quiet.start() < visit.start()
    assert re.search(r"alert cleared\s+flat-1/use: flat-1: in use again", out) is None
    assert re.search(r"alert cleared\s+flat-1/use: flat-1: still quiet; a visit is asked for", out)
    assert re.search(r"/v1/sites/demo-site/gateways/demo-gw/alerts/use_stopped\S+/acknowledge", out)
    assert re.search(r"mosquitto_pub .* -t 'nbedge/demo-site/demo-gw/alerts/\S+/set/", out)
    assert re.search(r"/api/alerts/use_stopped\S+/resolve", out)
    assert re.search(r"alert escalated flat-1/use: .*escalated to the family \(level 1\)", out)
    # The flat's BLE sensors, through the simulated radio: the guide says what will happen, and
    # the leak and the SOS press reach the platform within seconds of happening.
    assert re.search(rf"flat-1-leak .*wet {LEAK_AT_S:.0f} s after the gateway starts", out)
    assert re.search(rf"flat-1-sos .*pressed {SOS_AT_S:.0f} s after the gateway starts", out)
    leak = re.search(r"\+\s*(\d+) s\s+alert raised\s+flat-1-leak/leak: water leak", out)
    sos = re.search(r"\+\s*(\d+) s\s+alert raised\s+flat-1-sos/button: SOS", out)
    assert leak, out
    assert sos, out
    assert LEAK_AT_S <= int(leak.group(1)) <= LEAK_AT_S + 10
    assert SOS_AT_S <= int(sos.group(1)) <= 45
    assert (tmp_path / "demo" / "central.db").exists()
    assert "Traceback" not in result.stderr


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
