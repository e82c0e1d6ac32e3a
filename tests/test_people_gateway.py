"""People on a running gateway: an in-process gateway with its local API on a loopback port and
a simulated gate controller. People added, changed and removed with ``nbedge users`` while it
runs are taken without a restart; only installers command gates; a broken people file leaves the
last good copy in use; odd tokens are refused and counted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.cli import main
from edge.config import parse_config
from edge.daemon import Gateway
from sim.gate import SimulatedGate
from tests.conftest import free_port, wait_until
from tests.test_gate_events import config_toml, gate_building

OPERATOR_TOKEN = "field-crew-token-0123456789"
CHECK_S = 1.1  # the gateway looks at the people file at most once a second
TOKEN_LINE = re.compile(r"^  (\S{43})$", flags=re.MULTILINE)


def users(capsys: pytest.CaptureFixture[str], state: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["users", *argv, "--state-dir", str(state)])
    out, err = capsys.readouterr()
    return status, out, err


def new_token(out: str) -> str:
    (token,) = TOKEN_LINE.findall(out)
    return str(token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: Path,
) -> AsyncIterator[tuple[Gateway, SimulatedGate, httpx.AsyncClient, Path]]:
    """A gateway with one operator in its configuration, and a client of its local API."""
    digest = hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest()
    port = free_port()
    local_api = (
        f'host = "127.0.0.1"\nport = {port}\n'
        f'[[local_api.operators]]\nname = "field-crew"\ntoken_sha256 = "{digest}"'
    )
    async with gate_building() as (building, gate):
        text = config_toml(
            tmp_path, building.port, None, local_api=local_api, gate="confirm_timeout_s = 2.0"
        )
        gateway = Gateway(parse_config(text))
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(gateway.run(stop))
            await asyncio.wait_for(gateway.ready.wait(), 10)
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=10
                ) as client:
                    await wait_until(lambda: gateway.gates()[0].state == "closed", 5.0)
                    yield gateway, gate, client, tmp_path / "state"
            finally:
                stop.set()


async def closed_after(gateway: Gateway, events: int) -> None:
    """Wait until the gateway has read ``events`` events and sees the gate closed."""

    def closed() -> bool:
        (gate,) = gateway.gates()
        return (gate.last_seq or 0) >= events and gate.state == "closed"

    await wait_until(closed, 5.0)


async def status(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/api/status")).json()["local_api"])


async def test_people_added_while_it_runs_work_at_once_and_only_installers_open_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_gateway(tmp_path) as (gateway, gate, client, state):
        assert (await status(client))["people"] == {"viewer": 0, "responder": 0, "installer": 1}

        added = await asyncio.to_thread(
            users, capsys, state, "add", "li.lei", "--role", "installer", "--no-password"
        )
        installer = new_token(added[1])
        _, out, _ = await asyncio.to_thread(
            users,
            capsys,
            state,
            "add",
            "wang.fang",
            "--role",
            "responder",
            "--display",
            "王芳",
            "--no-password",
        )
        responder = new_token(out)
        _, out, _ = await asyncio.to_thread(
            users, capsys, state, "add", "door.tablet", "--role", "viewer", "--no-password"
        )
        viewer = new_token(out)
        await asyncio.sleep(CHECK_S)

        as_viewer = await client.post("/api/gates/entrance/open", headers=bearer(viewer))
        as_responder = await client.post("/api/gates/entrance/open", headers=bearer(responder))
        opened = await client.post("/api/gates/entrance/open", headers=bearer(installer))
        after_roles = await status(client)
        await closed_after(gateway, 2)  # opened, closed
        by_operator = await client.post("/api/gates/entrance/open", headers=bearer(OPERATOR_TOKEN))

        await asyncio.to_thread(users, capsys, state, "role", "wang.fang", "installer")
        await asyncio.to_thread(users, capsys, state, "remove", "li.lei")
        await asyncio.sleep(CHECK_S)
        await closed_after(gateway, 4)
        removed = await client.post("/api/gates/entrance/open", headers=bearer(installer))
        promoted = await client.post("/api/gates/entrance/open", headers=bearer(responder))
        final = await status(client)

    assert added[0] == 0
    assert (as_viewer.status_code, as_responder.status_code) == (403, 403)
    assert as_viewer.json()["detail"] == "this needs the installer role; door.tablet is a viewer"
    assert as_responder.json()["detail"] == (
        "this needs the installer role; wang.fang is a responder"
    )
    assert opened.status_code == 200, opened.text
    assert (opened.json()["result"], opened.json()["operator"]) == ("confirmed", "li.lei")
    assert after_roles["people"] == {"viewer": 1, "responder": 1, "installer": 2}
    assert (after_roles["forbidden"], after_roles["auth_failures"]) == (2, 0)
    assert by_operator.status_code == 200, by_operator.text
    assert by_operator.json()["operator"] == "field-crew", "an operator is an installer"

    assert removed.status_code == 401
    assert removed.headers["www-authenticate"] == "Bearer"
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["operator"] == "wang.fang"
    assert final["people"] == {"viewer": 1, "responder": 0, "installer": 2}
    assert (final["forbidden"], final["auth_failures"], final["from_configuration"]) == (2, 1, 1)

    commands = [r for r in caplog.records if r.getMessage() == "gate command"]
    assert [(r.operator, r.result) for r in commands] == [  # type: ignore[attr-defined]
        ("li.lei", "confirmed"),
        ("field-crew", "confirmed"),
        ("wang.fang", "confirmed"),
    ]
    assert len([e for e in gate.events if e.event == "opened" and e.detail == 1]) == 3
    refused = [r for r in caplog.records if r.getMessage() == "local API: refused, role too low"]
    assert [(r.person, r.needed) for r in refused] == [  # type: ignore[attr-defined]
        ("door.tablet", "installer"),
        ("wang.fang", "installer"),
    ]
    for token in (installer, responder, viewer, OPERATOR_TOKEN):
        assert token not in caplog.text


async def test_a_broken_people_file_leaves_the_last_good_copy_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_gateway(tmp_path) as (_, gate, client, state):
        _, out, _ = await asyncio.to_thread(
            users, capsys, state, "add", "wang.fang", "--role", "responder", "--no-password"
        )
        responder = new_token(out)
        await asyncio.sleep(CHECK_S)
        before = await client.post("/api/gates/entrance/open", headers=bearer(responder))

        people = state / "people.json"
        people.write_text('{"format": 1, "people": [{"name": "wang.fang", "role": "boss"}]}')
        await asyncio.sleep(CHECK_S)
        during = await client.post("/api/gates/entrance/open", headers=bearer(responder))
        broken = await status(client)
        refused_change = await asyncio.to_thread(
            users, capsys, state, "add", "li.lei", "--role", "installer", "--no-password"
        )
        still_broken = people.read_text()

        people.unlink()
        await asyncio.to_thread(
            users, capsys, state, "add", "li.lei", "--role", "viewer", "--no-password"
        )
        await asyncio.sleep(CHECK_S)
        after = await client.post("/api/gates/entrance/open", headers=bearer(responder))
        mended = await status(client)

    assert (before.status_code, during.status_code) == (403, 403), "still known: a responder"
    assert broken["people_file_problem"] is not None
    assert "people.0.role" in broken["people_file_problem"]
    assert broken["people"] == {"viewer": 0, "responder": 1, "installer": 1}
    assert refused_change[0] == 1
    assert refused_change[2].startswith(f"nbedge: {people}: people.0.role")
    assert "boss" in still_broken, "the CLI changed nothing"
    logged = [r for r in caplog.records if r.getMessage().startswith("people file refused")]
    assert len(logged) == 1
    assert logged[0].problem == broken["people_file_problem"]  # type: ignore[attr-defined]
    assert after.status_code == 401, "the file is mended and wang.fang is no longer in it"
    assert mended["people_file_problem"] is None
    assert mended["people"] == {"viewer": 1, "responder": 0, "installer": 1}
    assert not [e for e in gate.events if e.event == "opened"]


async def test_odd_tokens_are_refused_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    odd: list[dict[str, Any]] = [
        {},
        {"Authorization": "Bearer tok en"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic ZmllbGQtY3JldzpzZWNyZXQ="},
        {"Authorization": "Bearer " + "x" * 8000},
        {"Authorization": b"Bearer \xff\xfe\xe7\x8e\x8b"},
        {"Authorization": "Bearer " + OPERATOR_TOKEN + "x"},
        {"Authorization": "Bearer " + OPERATOR_TOKEN.upper()},
    ]
    async with running_gateway(tmp_path) as (_, gate, client, state):
        answers = [await client.post("/api/gates/entrance/open", headers=h) for h in odd]
        counted = await status(client)
    assert [a.status_code for a in answers] == [401] * len(odd)
    assert counted["auth_failures"] == len(odd)
    assert counted["forbidden"] == 0
    reasons = [
        r.reason  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "local API: refused, no valid token"
    ]
    no, malformed, unknown = "no bearer token", "malformed bearer token", "unknown bearer token"
    assert reasons == [no, malformed, no, no, malformed, malformed, unknown, unknown]
    assert "x" * 100 not in caplog.text
    assert OPERATOR_TOKEN not in caplog.text
    assert not (state / "people.json").exists(), "nothing was written"
    assert not [e for e in gate.events if e.event == "opened"]
