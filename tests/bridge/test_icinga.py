"""The Nagios-family parser, the notification script, and IcingaClient against a real Icinga 2
(Debian's package, a private instance started by the fixture)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.alerts import (
    AlertKind,
    AlertParseError,
    AlertStatus,
    Severity,
    SourceError,
    SourceUnavailable,
)
from bridge.icinga import IcingaClient, parse_nagios
from bridge.tickets import TLSOptions
from tests.servers.icinga import NODE_NAME, NOTIFY_SCRIPT, IcingaServer
from tests.servers.icinga_fixture import IcingaFactory

TOKEN = "s3cret-token-for-tests"


def payload(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Service", "notification_type": "PROBLEM", "host": "web01", "service": "disk",
        "state": "CRITICAL", "state_id": 2, "output": "DISK CRITICAL - 97% used",
        "long_output": "/ 97%\n/var 40%", "ack_author": "", "ack_comment": "",
        "time": 1700000100, "problem_start": 1700000000}
    body.update(kw)
    return body


# --------------------------------------------------------------------------- parser


def test_problem_is_a_firing_alert() -> None:
    [alert] = parse_nagios(payload())
    assert alert.source == "nagios"
    assert alert.key == "web01!disk!1700000000"
    assert alert.status is AlertStatus.FIRING
    assert alert.severity is Severity.CRITICAL
    assert alert.kind is AlertKind.ALERT
    assert (alert.host, alert.service) == ("web01", "disk")
    assert alert.title == "disk on web01 is CRITICAL" and alert.name == "disk"
    assert alert.identity == "web01!disk"  # the check, whatever problem it is in
    assert alert.text == "DISK CRITICAL - 97% used\n/ 97%\n/var 40%"
    assert alert.started_at is not None and alert.started_at.timestamp() == 1700000000
    assert alert.ref == {"type": "Service", "host": "web01", "service": "disk"}


def test_one_incident_shares_its_key() -> None:
    problem = parse_nagios(payload())[0]
    ack = parse_nagios(payload(notification_type="ACKNOWLEDGEMENT", ack_author="alice",
                               ack_comment="on it", time=1700000200))[0]
    recovery = parse_nagios(payload(notification_type="RECOVERY", state="OK", state_id=0,
                                    output="DISK OK", time=1700000300))[0]
    assert problem.key == ack.key == recovery.key
    assert ack.kind is AlertKind.UPDATE and ack.status is AlertStatus.FIRING
    assert ack.update == "acknowledged by alice: on it"
    assert recovery.status is AlertStatus.RESOLVED and recovery.kind is AlertKind.ALERT
    assert recovery.severity is Severity.INFO
    again = parse_nagios(payload(problem_start=1700009999))[0]
    assert again.key != problem.key


@pytest.mark.parametrize(("state", "severity"), [
    ("CRITICAL", Severity.CRITICAL), ("WARNING", Severity.WARNING),
    ("UNKNOWN", Severity.UNKNOWN), ("OK", Severity.INFO)])
def test_service_severities(state: str, severity: Severity) -> None:
    assert parse_nagios(payload(state=state, state_id=None))[0].severity is severity


@pytest.mark.parametrize(("state", "state_id", "severity"), [
    ("DOWN", 1, Severity.CRITICAL), ("UNREACHABLE", 2, Severity.UNKNOWN),
    ("UP", 0, Severity.INFO), ("", 1, Severity.CRITICAL)])
def test_host_notifications(state: str, state_id: int, severity: Severity) -> None:
    [alert] = parse_nagios(payload(type="Host", service="", state=state, state_id=state_id))
    assert alert.severity is severity
    assert alert.key == "web01!1700000000"
    assert alert.ref == {"type": "Host", "host": "web01", "service": ""}
    assert alert.service == ""


@pytest.mark.parametrize(("kind", "words"), [
    ("FLAPPINGSTART", "started flapping"), ("FLAPPINGSTOP", "stopped flapping"),
    ("FLAPPINGEND", "stopped flapping"), ("DOWNTIMESTART", "downtime started"),
    ("DOWNTIMEEND", "downtime ended"), ("DOWNTIMECANCELLED", "downtime cancelled"),
    ("DOWNTIMEREMOVED", "downtime removed"), ("CUSTOM", "custom notification")])
def test_updates(kind: str, words: str) -> None:
    [alert] = parse_nagios(payload(notification_type=kind))
    assert alert.kind is AlertKind.UPDATE
    assert alert.update == words
    assert alert.key == "web01!disk!1700000000"


def test_key_from_problem_id_then_object_alone() -> None:
    with_id = payload(problem_id="4711")
    del with_id["problem_start"]
    assert parse_nagios(with_id)[0].key == "web01!disk!#4711"
    bare = payload(problem_start=None, time="1700000100", state_id="2")
    assert parse_nagios(bare)[0].key == "web01!disk"


def test_numbers_may_be_strings_and_unknown_keys_are_ignored() -> None:
    [alert] = parse_nagios(payload(problem_start="1700000000.750", extra={"x": [1]}))
    assert alert.key == "web01!disk!1700000000.75"
    [alert] = parse_nagios(payload(problem_start=1700000000.1234))
    assert alert.key == "web01!disk!1700000000.123"


@pytest.mark.parametrize("body", [
    None, [], "text", payload(host=""), payload(host=5), payload(service=""),
    payload(type="Hostgroup"), payload(notification_type="BOGUS"),
    payload(notification_type=""), payload(state="MELTING"), payload(state="", state_id=None),
    payload(state="", state_id=9), payload(state="", state_id=1.5), payload(time="yesterday"),
    payload(problem_start=float("inf")), payload(problem_start=-5), payload(problem_start=True),
    payload(problem_id=[1]), payload(output={"a": 1}), payload(host="h" * 5000)])
def test_malformed_notifications(body: Any) -> None:
    with pytest.raises(AlertParseError):
        parse_nagios(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
_FIELDS = ["type", "notification_type", "host", "service", "state", "state_id", "output",
           "long_output", "ack_author", "ack_comment", "time", "problem_start", "problem_id"]
_plausible = st.sampled_from(["Host", "Service", "PROBLEM", "RECOVERY", "ACKNOWLEDGEMENT",
                              "CRITICAL", "OK", "UP", "DOWN", "web01", "", "0", "2",
                              "1700000000", "-1", "nan", "1e400"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, st.dictionaries(st.sampled_from(_FIELDS), _plausible | _json)))
def test_hostile_payloads_only_raise_parse_errors(body: Any) -> None:
    try:
        alerts = parse_nagios(body)
    except AlertParseError:
        return
    assert len(alerts) == 1
    assert alerts[0].host and alerts[0].key.startswith(alerts[0].host)


# --------------------------------------------------------------------------- client offline


def _alert(**kw: Any) -> Any:
    return parse_nagios(payload(**kw))[0]


async def test_client_maps_http_answers() -> None:
    seen: list[dict[str, Any]] = []
    answers = iter([
        httpx.Response(200, json={"results": [{"code": 200, "status": "ok"}]}),
        httpx.Response(409, json={"results": [{"code": 409, "status":
                                               "Service web01!disk is already acknowledged."}]}),
        httpx.Response(409, json={"results": [{"code": 409, "status":
                                               "Service web01!disk is OK."}]}),
        httpx.Response(503, text="busy"),
        httpx.Response(500, json={"results": []}),
        httpx.Response(401, text="<h1>Unauthorized</h1>"),
        httpx.Response(404, json={"error": 404, "status": "No objects found."}),
    ])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.headers["authorization"].startswith("Basic ")
        return next(answers)

    client = IcingaClient(url="https://icinga.test:5665", username="u", password="hunter2",
                          transport=httpx.MockTransport(handler))
    alert = _alert()
    assert await client.acknowledge(alert, "alice", "on it") == ""
    assert seen[0] == {"type": "Service",
                       "filter": "host.name == sb_host && service.name == sb_service",
                       "filter_vars": {"sb_host": "web01", "sb_service": "disk"},
                       "author": "alice", "comment": "on it", "notify": False, "sticky": False}
    assert await client.acknowledge(alert, "alice", "on it") == ""
    with pytest.raises(SourceError, match="is OK") as refused:
        await client.acknowledge(alert, "alice", "on it")
    assert not isinstance(refused.value, SourceUnavailable)
    with pytest.raises(SourceUnavailable):
        await client.acknowledge(alert, "alice", "on it")
    with pytest.raises(SourceError, match="no object"):
        await client.acknowledge(alert, "alice", "on it")
    with pytest.raises(SourceError, match="credentials") as denied:
        await client.acknowledge(alert, "alice", "on it")
    assert "hunter2" not in str(denied.value)
    with pytest.raises(SourceError, match="No objects found"):
        await client.unacknowledge(alert, "", "alice")
    with pytest.raises(SourceError):
        await client.resolve(alert, "alice")
    assert client.can_acknowledge and client.can_silence and not client.can_resolve
    assert client.name == "icinga"
    await client.aclose()


async def test_unreachable_icinga_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with IcingaClient(url=f"https://127.0.0.1:{port}", username="u",
                            password="hunter2", timeout=2.0) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.acknowledge(_alert(), "alice", "on it")
    assert "hunter2" not in str(caught.value)


# --------------------------------------------------------------------------- receiver


@dataclass
class Receiver:
    url: str
    deliveries: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    refused: int = 0
    answer_status: int = 200

    async def next(self, timeout: float = 15.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.deliveries.get(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A small bot stand-in: POST /alerts/nagios with the bearer token, JSON in a queue."""
    box: list[Receiver] = []

    async def alerts(request: web.Request) -> web.Response:
        rec = box[0]
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            rec.refused += 1
            return web.Response(status=401, text="bad token")
        if rec.answer_status != 200:
            return web.Response(status=rec.answer_status, text="not now")
        await rec.deliveries.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/alerts/nagios", alerts)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    box.append(Receiver(url=f"http://127.0.0.1:{port}"))
    yield box[0]
    await runner.cleanup()


async def run_script(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(NOTIFY_SCRIPT), *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


NOTIFY_ARGS = ("--type", "Service", "--notification-type", "PROBLEM", "--host", "web01",
               "--service", "disk", "--state", "CRITICAL", "--state-id", "2",
               "--output", "DISK CRITICAL\nlong part", "--problem-start", "1700000000.5")


async def test_notify_script(receiver: Receiver, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SWITCHBOARD_URL": receiver.url,
            "SWITCHBOARD_TOKEN_FILE": str(token_file)}

    code, out = await run_script(*NOTIFY_ARGS, env=base)
    assert (code, out) == (0, "")
    body = await receiver.next()
    assert body["output"] == "DISK CRITICAL" and body["long_output"] == "long part"
    assert body["problem_start"] == 1700000000.5
    [alert] = parse_nagios(body)
    assert alert.key == "web01!disk!1700000000.5"

    code, out = await run_script(*NOTIFY_ARGS, env=base | {"SWITCHBOARD_TOKEN": "wrong"})
    assert code == 1 and "401" in out and receiver.refused == 1
    receiver.answer_status = 500
    code, out = await run_script(*NOTIFY_ARGS, env=base)
    assert code == 1 and "500" in out
    receiver.answer_status = 200

    token_file.chmod(0o640)
    code, out = await run_script(*NOTIFY_ARGS, env=base)
    assert code == 2 and "chmod 600" in out
    token_file.chmod(0o600)
    code, out = await run_script(*NOTIFY_ARGS, env=base | {"SWITCHBOARD_URL": ""})
    assert code == 2 and "URL" in out

    # Nagios/Naemon environment macros stand in for missing options.
    macros = {"NAGIOS_NOTIFICATIONTYPE": "RECOVERY", "NAGIOS_HOSTNAME": "db1",
              "NAGIOS_SERVICEDESC": "load", "NAGIOS_SERVICESTATE": "OK",
              "NAGIOS_SERVICESTATEID": "0", "NAGIOS_SERVICEOUTPUT": "LOAD OK",
              "NAGIOS_SERVICEPROBLEMID": "0", "NAGIOS_LASTSERVICEPROBLEMID": "812"}
    code, out = await run_script(env=base | macros)
    assert code == 0, out
    [alert] = parse_nagios(await receiver.next())
    assert alert.key == "db1!load!#812" and alert.status is AlertStatus.RESOLVED

    # A bot that accepts the connection and never answers: the timeout ends it.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out = await run_script(*NOTIFY_ARGS, "--timeout", "0.5",
                                     env=base | {"SWITCHBOARD_URL": f"http://127.0.0.1:{port}"})
    finally:
        server.close()
    assert code == 1 and "timed out" in out


# --------------------------------------------------------------------------- real Icinga 2


def _client(icinga: IcingaServer, **kw: Any) -> IcingaClient:
    # Verified as the bot verifies it: Icinga's CA, and the node's name (not 127.0.0.1).
    tls = TLSOptions(ca_bundle=icinga.ca_file, server_name=NODE_NAME)
    options: dict[str, Any] = {"url": icinga.url, "username": icinga.username,
                               "password": icinga.password, "transport": tls.transport()}
    options.update(kw)
    return IcingaClient(**options)


async def test_problem_ack_recovery_against_real_icinga(
        receiver: Receiver, icinga_factory: IcingaFactory) -> None:
    icinga = await asyncio.to_thread(icinga_factory, receiver.url, TOKEN)

    await asyncio.to_thread(icinga.raise_problem, 2, "DISK CRITICAL - 97% used\n/ 97%")
    problem_body = await receiver.next()
    [problem] = parse_nagios(problem_body)
    assert problem.status is AlertStatus.FIRING and problem.kind is AlertKind.ALERT
    assert problem.severity is Severity.CRITICAL
    assert problem.key.startswith("web01!disk!")
    assert problem.text == "DISK CRITICAL - 97% used\n/ 97%"

    async with _client(icinga) as client:
        assert await client.acknowledge(problem, "alice", "looking at it") == ""
        assert await asyncio.to_thread(icinga.acknowledgement) == 1
        assert await client.acknowledge(problem, "bob", "me too") == ""  # already: fine
        await client.unacknowledge(problem, "", "alice")
        assert await asyncio.to_thread(icinga.acknowledgement) == 0
        assert await client.acknowledge(problem, "alice", "looking at it") == ""
        assert await asyncio.to_thread(icinga.acknowledgement) == 1

        await asyncio.to_thread(icinga.recover, "DISK OK")
        # notify=false: no ACKNOWLEDGEMENT notification came before the recovery.
        [recovery] = parse_nagios(await receiver.next())
        assert recovery.status is AlertStatus.RESOLVED
        assert recovery.key == problem.key
        assert await asyncio.to_thread(icinga.acknowledgement) == 0  # cleared by recovery
        with pytest.raises(SourceError, match="is OK"):
            await client.acknowledge(recovery, "alice", "late")

        # The next problem is another incident; a silence is a fixed downtime.
        await asyncio.to_thread(icinga.raise_problem, 1, "DISK WARNING")
        [second] = parse_nagios(await receiver.next())
        assert second.severity is Severity.WARNING and second.key != problem.key
        handle = await client.silence(second, 600, "carol")
        assert handle in await asyncio.to_thread(icinga.downtimes)
        [started] = parse_nagios(await receiver.next())
        assert started.kind is AlertKind.UPDATE and started.key == second.key
        assert started.update.startswith("downtime started")
        await client.unacknowledge(second, handle, "carol")
        assert await asyncio.to_thread(icinga.downtimes) == []

        missing = parse_nagios(payload(host="no-such-host"))[0]
        with pytest.raises(SourceError, match="no object"):
            await client.acknowledge(missing, "alice", "x")

    async with _client(icinga, password="wrong-password") as bad:
        with pytest.raises(SourceError) as denied:
            await bad.acknowledge(problem, "alice", "x")
    assert "wrong-password" not in str(denied.value)
    assert receiver.refused == 0
