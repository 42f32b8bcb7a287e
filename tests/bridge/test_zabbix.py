"""Zabbix: the webhook parser on documented and hostile payloads, the client on a mocked API, and
the whole loop against a real Zabbix 6.0 (started by the `zabbix_server` fixture): a trapper
value raises a problem, the media type's webhook reaches a receiver here, the alert is
acknowledged through `ZabbixClient`, the update and the recovery come back on the same key."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.alerts import (
    Alert,
    AlertKind,
    AlertParseError,
    AlertStatus,
    Severity,
    SourceError,
    SourceUnavailable,
)
from bridge.zabbix import ZabbixClient, parse_zabbix
from tests.servers.zabbix import HOST, ITEM_KEY, ZabbixServer, free_port

# What the media type sends, as it arrives (every value a string; macros that do not apply
# to the message stay literal).
PROBLEM: dict[str, str] = {
    "event_id": "27",
    "event_value": "1",
    "event_status": "PROBLEM",
    "event_recovery_id": "{EVENT.RECOVERY.ID}",
    "event_update_status": "0",
    "event_update_action": "{EVENT.UPDATE.ACTION}",
    "event_update_message": "{EVENT.UPDATE.MESSAGE}",
    "user_fullname": "{USER.FULLNAME}",
    "event_name": "Load is too high on web-01",
    "event_nseverity": "4",
    "event_date": "2024.05.01",
    "event_time": "10:42:07",
    "event_recovery_date": "{EVENT.RECOVERY.DATE}",
    "event_recovery_time": "{EVENT.RECOVERY.TIME}",
    "event_opdata": "",
    "status": "PROBLEM",
    "severity": "4",
    "hostname": "web-01",
    "host": "web-01",
    "trigger_id": "19000",
    "trigger_name": "Load is too high on web-01",
    "trigger_key": "system.cpu.load",
    "trigger_expression": "last(/web-01/system.cpu.load)>90",
    "detail": "system.cpu.load: 95",
    "event_timestamp": "1714560127",
    "event_recovery_timestamp": "",
    "event_url": "https://zabbix.example.org/tr_events.php?triggerid=19000&eventid=27",
}
UPDATE = {**PROBLEM, "event_update_status": "1",
          "event_update_action": "acknowledged and commented",
          "event_update_message": "Acknowledged in Mattermost by @alice: on it",
          "user_fullname": "Zabbix Administrator (Admin)"}
RECOVERY = {**PROBLEM, "event_value": "0", "event_status": "RESOLVED", "status": "OK",
            "event_recovery_id": "31", "event_recovery_date": "2024.05.01",
            "event_recovery_time": "10:50:00", "detail": "system.cpu.load: 3"}


def one(body: Any) -> Alert:
    alerts = parse_zabbix(body)
    assert len(alerts) == 1
    return alerts[0]


# --------------------------------------------------------------------------- the parser


def test_problem() -> None:
    alert = one(PROBLEM)
    assert alert.source == "zabbix" and alert.key == "27"
    assert alert.status is AlertStatus.FIRING and alert.kind is AlertKind.ALERT
    assert alert.severity is Severity.HIGH
    assert alert.title == "Load is too high on web-01"
    assert alert.name == "Load is too high on web-01"  # the trigger
    assert alert.identity == f"trigger:{PROBLEM['trigger_id']}"
    assert alert.host == "web-01" and alert.service == "system.cpu.load"
    assert alert.text == "system.cpu.load: 95"
    assert alert.started_at == datetime(2024, 5, 1, 10, 42, 7, tzinfo=UTC)
    assert alert.links == (("Zabbix event", PROBLEM["event_url"]),)
    assert alert.ref == {"eventid": "27"}
    assert alert.update == ""
    assert "event_recovery_id" not in alert.labels  # a literal macro is absent
    assert alert.labels["trigger_expression"] == "last(/web-01/system.cpu.load)>90"


def test_recovery_keeps_the_problem_key() -> None:
    alert = one(RECOVERY)
    assert alert.key == "27" and alert.status is AlertStatus.RESOLVED
    assert alert.kind is AlertKind.ALERT
    assert alert.ref == {"eventid": "27", "recovery_eventid": "31"}


def test_update_names_who_and_what() -> None:
    alert = one(UPDATE)
    assert alert.kind is AlertKind.UPDATE and alert.key == "27"
    assert alert.status is AlertStatus.FIRING
    assert alert.update == ("acknowledged and commented by Zabbix Administrator (Admin): "
                            "Acknowledged in Mattermost by @alice: on it")


def test_update_without_message_or_user() -> None:
    body = {**UPDATE, "event_update_message": "", "user_fullname": "{USER.FULLNAME}",
            "event_update_action": "closed"}
    assert one(body).update == "closed"


@pytest.mark.parametrize(("value", "severity"), [
    ("5", Severity.CRITICAL), ("4", Severity.HIGH), ("3", Severity.WARNING),
    ("2", Severity.WARNING), ("1", Severity.INFO), ("0", Severity.UNKNOWN),
    ("Disaster", Severity.CRITICAL), ("{TRIGGER.NSEVERITY}", Severity.UNKNOWN)])
def test_severity(value: str, severity: Severity) -> None:
    body = {k: v for k, v in PROBLEM.items() if k != "event_nseverity"}
    assert one({**body, "severity": value}).severity is severity


def test_event_severity_wins_over_the_trigger_severity() -> None:
    assert one({**PROBLEM, "event_nseverity": "5"}).severity is Severity.CRITICAL


def test_seed_shape_with_only_trigger_status() -> None:
    body = {"event_id": 12, "status": "OK", "severity": 2, "hostname": "db",
            "trigger_name": "Disk full", "trigger_key": "vfs.fs.size[/,pfree]",
            "detail": "vfs.fs.size[/,pfree]: 3"}
    alert = one(body)
    assert alert.key == "12" and alert.status is AlertStatus.RESOLVED
    assert alert.severity is Severity.WARNING and alert.started_at is None


def test_literal_macros_are_absent() -> None:
    body = {**PROBLEM, "hostname": "{HOST.NAME}", "host": "{HOST.HOST}",
            "trigger_name": "{TRIGGER.NAME}", "event_name": "{EVENT.NAME}",
            "trigger_key": "{ITEM.KEY1}", "detail": "{ITEM.KEY1}: {ITEM.LASTVALUE1}",
            "event_timestamp": "{EVENT.TIMESTAMP}", "event_date": "{EVENT.DATE}",
            "event_url": "{$ZABBIX.URL}"}
    alert = one(body)
    assert alert.host == "" and alert.service == ""
    assert alert.title == "Zabbix event 27"
    assert alert.started_at is None and alert.links == ()
    # Text that merely contains macros is kept: it is what Zabbix sent.
    assert alert.text == "{ITEM.KEY1}: {ITEM.LASTVALUE1}"


def test_date_and_time_without_timestamp() -> None:
    body = {**PROBLEM, "event_timestamp": ""}
    assert one(body).started_at == datetime(2024, 5, 1, 10, 42, 7, tzinfo=UTC)


def test_json_text_and_bytes() -> None:
    assert one(json.dumps(PROBLEM)).key == "27"
    assert one(json.dumps(PROBLEM).encode()).key == "27"


def test_link_must_be_http() -> None:
    assert one({**PROBLEM, "event_url": "javascript:alert(1)"}).links == ()


@pytest.mark.parametrize(("body", "reason"), [
    ([], "not a JSON object"),
    ("{", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    ({}, "no event_id"),
    ({**PROBLEM, "event_id": "{EVENT.ID}"}, "no event_id"),
    ({**PROBLEM, "event_id": "27; drop"}, "not a number"),
    ({**PROBLEM, "event_value": "7"}, "event_value"),
    ({**PROBLEM, "event_value": "{EVENT.VALUE}", "status": "maybe"}, "trigger status"),
    ({**PROBLEM, "severity": "9", "event_nseverity": ""}, "between 0 and 5"),
    ({**PROBLEM, "severity": "loud", "event_nseverity": ""}, "unknown severity"),
    ({**PROBLEM, "hostname": {"a": 1}}, "not text"),
    ({**PROBLEM, "event_value": True}, "boolean"),
])
def test_malformed(body: Any, reason: str) -> None:
    with pytest.raises(AlertParseError, match=reason):
        parse_zabbix(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
field_names = st.sampled_from(sorted(PROBLEM)) | st.text(max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, st.dictionaries(field_names, json_values, max_size=12),
                 st.builds(lambda extra: {**PROBLEM, **extra},
                           st.dictionaries(field_names, json_values, max_size=6)),
                 st.binary(max_size=64), st.text(max_size=64)))
def test_hostile_payloads_only_raise_parse_errors(body: Any) -> None:
    try:
        alerts = parse_zabbix(body)
    except AlertParseError as exc:
        assert 0 < len(str(exc)) < 200
        return
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.key.isdigit() and alert.ref["eventid"] == alert.key
    assert isinstance(alert.title, str) and alert.title
    assert all(url.startswith(("http://", "https://")) for _, url in alert.links)


# --------------------------------------------------------------------------- the client, mocked

TOKEN = "c0ffee" * 10


def mocked(handler: Callable[[httpx.Request], httpx.Response]) -> ZabbixClient:
    return ZabbixClient(url="https://zabbix.example.org/", api_token=TOKEN,
                        transport=httpx.MockTransport(handler))


def rpc_result(request: httpx.Request, result: Any) -> httpx.Response:
    sent = json.loads(request.content)
    return httpx.Response(200, json={"jsonrpc": "2.0", "result": result, "id": sent["id"]})


async def test_acknowledge_request() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://zabbix.example.org/api_jsonrpc.php"
        body = json.loads(request.content)
        if body["method"] == "apiinfo.version":  # asked once, without the token
            assert "auth" not in body and "Authorization" not in request.headers
            return rpc_result(request, "6.0.14")
        seen.append(body)
        return rpc_result(request, {"eventids": ["27"]})

    async with mocked(handler) as client:
        assert client.can_acknowledge and client.can_resolve and not client.can_silence
        alert = one(PROBLEM)
        assert await client.acknowledge(alert, "alice", "on it") == ""
        await client.unacknowledge(alert, "", "@bob")
        await client.resolve(alert, "carol")
    assert [s["params"]["action"] for s in seen] == [6, 20, 5]
    assert all(s["method"] == "event.acknowledge" and s["auth"] == TOKEN for s in seen)
    assert all(s["params"]["eventids"] == "27" for s in seen)
    assert [s["params"]["message"] for s in seen] == [
        "Acknowledged in Mattermost by @alice: on it", "Unacknowledged in Mattermost by @bob",
        "Closed in Mattermost by @carol"]


async def test_refusal_carries_zabbix_reason_never_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "error": {
            "code": -32500, "message": "Application error.",
            "data": f"Cannot close problem: trigger does not allow manual closing. {TOKEN}"}})

    async with mocked(handler) as client:
        with pytest.raises(SourceError) as caught:
            await client.resolve(one(PROBLEM), "alice")
    assert not isinstance(caught.value, SourceUnavailable)
    assert "does not allow manual closing" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("failure", ["503", "connect", "timeout"])
async def test_unavailable(failure: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if failure == "connect":
            raise httpx.ConnectError("refused", request=request)
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(503, text=f"down {TOKEN}")

    async with mocked(handler) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.acknowledge(one(PROBLEM), "alice", "")
    assert caught.value.retryable and TOKEN not in str(caught.value)


async def test_not_json_and_silence() -> None:
    async with mocked(lambda r: httpx.Response(200, text="<html>login</html>")) as client:
        with pytest.raises(SourceError, match="JSON"):
            await client.acknowledge(one(PROBLEM), "alice", "")
        with pytest.raises(SourceError):
            await client.silence(one(PROBLEM), 600, "alice")


# --------------------------------------------------------------------------- the real Zabbix


class Receiver:
    """The bot's `/alerts/zabbix` endpoint in miniature: checks the bearer token, keeps the
    bodies, and can refuse the first deliveries to exercise Zabbix's retries."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.refuse_next = 0
        self.unauthorized = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return web.Response(status=401, text="bad token")
        body = await request.json()
        if self.refuse_next > 0:
            self.refuse_next -= 1
            self.refused += 1
            return web.Response(status=503, text="try again later")
        self.bodies.append(body)
        return web.Response(status=202, text="accepted")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alerts/zabbix", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/alerts/zabbix"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(self, what: str, match: Callable[[Alert], bool], server: ZabbixServer,
                   timeout: float = 45.0) -> Alert:
        """The first parsed alert matching `match`, polling with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for body in self.bodies:
                alert = one(body)
                if match(alert):
                    return alert
            if time.monotonic() > deadline:
                diagnosis = await asyncio.to_thread(server.diagnosis)
                raise AssertionError(
                    f"no {what} within {timeout:.0f} s; received {self.bodies!r} "
                    f"(refused {self.refused}, unauthorized {self.unauthorized})\n"
                    f"{diagnosis}\n--- zabbix_server.log ---\n{server.logtail(40)}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def receiver(zabbix_server: ZabbixServer) -> AsyncIterator[Receiver]:
    hook = Receiver(secrets.token_urlsafe(24))
    await hook.start()
    await asyncio.to_thread(zabbix_server.set_receiver, hook.url, hook.token)
    yield hook
    await hook.stop()


@pytest.fixture
async def client(zabbix_server: ZabbixServer) -> AsyncIterator[ZabbixClient]:
    async with ZabbixClient(url=zabbix_server.url, api_token=zabbix_server.api_token) as c:
        yield c


async def send(server: ZabbixServer, value: int) -> None:
    await asyncio.to_thread(server.send_value, value)


async def test_problem_ack_update_recovery(zabbix_server: ZabbixServer, receiver: Receiver,
                                           client: ZabbixClient) -> None:
    # The first delivery is refused: Zabbix must retry it (the script throws on non-2xx).
    receiver.refuse_next = 1
    await send(zabbix_server, 95)
    problem = await receiver.wait(
        "problem", lambda a: a.status is AlertStatus.FIRING and a.kind is AlertKind.ALERT,
        zabbix_server, timeout=60)
    assert receiver.refused == 1 and receiver.unauthorized == 0
    assert problem.host == HOST and problem.service == ITEM_KEY
    assert problem.title == f"Load is too high on {HOST}"
    assert problem.severity is Severity.HIGH
    assert problem.text == f"{ITEM_KEY}: 95"
    assert problem.started_at is not None
    assert abs(problem.started_at.timestamp() - time.time()) < 120
    assert "recovery_eventid" not in problem.ref

    await client.acknowledge(problem, "alice", "looking at it")
    update = await receiver.wait("update", lambda a: a.kind is AlertKind.UPDATE, zabbix_server)
    assert update.key == problem.key and update.status is AlertStatus.FIRING
    assert "Acknowledged in Mattermost by @alice: looking at it" in update.update
    assert update.update.startswith("acknowledged")
    events = await asyncio.to_thread(zabbix_server.api, "event.get", {
        "eventids": problem.key, "output": ["acknowledged"]})
    assert events[0]["acknowledged"] == "1"

    await send(zabbix_server, 5)
    recovery = await receiver.wait("recovery", lambda a: a.status is AlertStatus.RESOLVED,
                                   zabbix_server)
    assert recovery.key == problem.key and recovery.kind is AlertKind.ALERT
    assert recovery.ref["recovery_eventid"] != problem.key
    assert recovery.text == f"{ITEM_KEY}: 5"


async def test_resolve_closes_the_problem(zabbix_server: ZabbixServer, receiver: Receiver,
                                          client: ZabbixClient) -> None:
    await send(zabbix_server, 99)
    problem = await receiver.wait("problem", lambda a: a.status is AlertStatus.FIRING,
                                  zabbix_server)
    try:
        await client.resolve(problem, "bob")
        recovery = await receiver.wait(
            "recovery after closing", lambda a: a.status is AlertStatus.RESOLVED,
            zabbix_server)
        assert recovery.key == problem.key
    finally:
        await send(zabbix_server, 0)


async def test_refusals_from_the_real_api(zabbix_server: ZabbixServer) -> None:
    unknown = one({**PROBLEM, "event_id": "987654321"})
    async with ZabbixClient(url=zabbix_server.url, api_token="0" * 64) as bad:
        with pytest.raises(SourceError) as caught:
            await bad.acknowledge(unknown, "alice", "")
    assert not isinstance(caught.value, SourceUnavailable)
    assert "0" * 64 not in str(caught.value)
    async with ZabbixClient(url=zabbix_server.url, api_token=zabbix_server.api_token) as good:
        with pytest.raises(SourceError, match=r"(?i)no permissions|not exist"):
            await good.acknowledge(unknown, "alice", "")
    async with ZabbixClient(url=f"http://127.0.0.1:{free_port()}", api_token="x",
                            timeout=2.0) as gone:
        with pytest.raises(SourceUnavailable):
            await gone.acknowledge(unknown, "alice", "")
