"""Alertmanager: the webhook parser (payloads written from the documented version-4 format,
and hostile ones), the client's error mapping over httpx.MockTransport, and the whole loop
against a real Alertmanager (Debian's package, started by the fixture) posting to a small
aiohttp receiver run here."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.alertmanager import (
    SILENCE_MARK,
    AlertmanagerClient,
    fingerprint_of,
    map_severity,
    parse_alertmanager,
)
from bridge.alerts import (
    Alert,
    AlertKind,
    AlertParseError,
    AlertStatus,
    Severity,
    SourceError,
    SourceUnavailable,
)
from tests.servers.alertmanager import AlertmanagerServer, free_port, sweep_orphans
from tests.servers.alertmanager_fixture import AlertmanagerFactory

# --------------------------------------------------------------------------- payloads

FIRING: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="HighLatency"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "switchboard",
    "groupLabels": {"alertname": "HighLatency"},
    "commonLabels": {"alertname": "HighLatency", "job": "api", "severity": "page"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example.net:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "instance": "api-1:8080", "job": "api",
                       "severity": "page"},
            "annotations": {"summary": "p99 latency above 2 s on api-1",
                            "description": "p99 has been 3.4 s for 10 minutes.",
                            "runbook_url": "https://wiki.example.net/runbooks/latency"},
            "startsAt": "2024-05-02T08:15:30.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.net:9090/graph?g0.expr=latency",
            "fingerprint": "4f1c2b3a5d6e7f80",
        },
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "host": "api-2", "service": "gateway",
                       "severity": "warning"},
            "annotations": {"title": "Latency creeping up", "message": "p99 at 1.8 s"},
            "startsAt": "2024-05-02T08:16:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "0123456789abcdef",
        },
    ],
}


def payload(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(FIRING)
    body.update(changes)
    return body


def one_alert(**fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": "firing", "labels": {"alertname": "Thing"},
                             "annotations": {}, "startsAt": "2024-01-01T00:00:00Z",
                             "fingerprint": "aaaaaaaaaaaaaaaa"}
    entry.update(fields)
    return {"version": "4", "status": entry["status"], "alerts": [entry]}


# --------------------------------------------------------------------------- parser


def test_parse_firing_group() -> None:
    first, second = parse_alertmanager(FIRING)
    assert first.source == "alertmanager"
    assert first.key == "4f1c2b3a5d6e7f80:2024-05-02T08:15:30.123456789Z"
    assert first.status is AlertStatus.FIRING
    assert first.severity is Severity.CRITICAL
    assert first.title == "p99 latency above 2 s on api-1"
    assert first.name == first.labels["alertname"]
    assert first.identity == "4f1c2b3a5d6e7f80"  # the fingerprint: the same when it fires again
    assert first.host == "api-1:8080"
    assert first.service == "api"
    assert first.text == "p99 has been 3.4 s for 10 minutes."
    assert first.labels["alertname"] == "HighLatency"
    assert first.links == (
        ("Source", "http://prometheus.example.net:9090/graph?g0.expr=latency"),
        ("Alertmanager", "http://alertmanager.example.net:9093/#/alerts"),
        ("Runbook", "https://wiki.example.net/runbooks/latency"),
    )
    assert first.started_at == datetime(2024, 5, 2, 8, 15, 30, 123456, tzinfo=UTC)
    assert first.kind is AlertKind.ALERT
    assert first.ref == {"labels": FIRING["alerts"][0]["labels"],
                         "fingerprint": "4f1c2b3a5d6e7f80"}

    assert second.severity is Severity.WARNING
    assert second.title == "Latency creeping up"
    assert second.host == "api-2"
    assert second.service == "gateway"
    assert second.text == "p99 at 1.8 s"
    assert second.links == (("Alertmanager", "http://alertmanager.example.net:9093/#/alerts"),)


def test_resolved_keeps_the_key() -> None:
    firing = parse_alertmanager(FIRING)[0]
    body = payload(status="resolved")
    body["alerts"][0]["status"] = "resolved"
    body["alerts"][0]["endsAt"] = "2024-05-02T09:00:00Z"
    resolved = parse_alertmanager(body)[0]
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.key == firing.key


def test_missing_start_and_fingerprint() -> None:
    body = one_alert(labels={"alertname": "X"}, startsAt="0001-01-01T00:00:00Z")
    del body["alerts"][0]["fingerprint"]
    (alert,) = parse_alertmanager(body)
    # Alertmanager's own fingerprint of {alertname="X"}, checked against the real one below.
    assert alert.key == fingerprint_of({"alertname": "X"}) == "d2aeefc389ca7746"
    assert alert.started_at is None
    del body["alerts"][0]["startsAt"]
    assert parse_alertmanager(body)[0].key == "d2aeefc389ca7746"


def test_title_falls_back_to_alertname_then_fingerprint() -> None:
    assert parse_alertmanager(one_alert(labels={"alertname": "Boom"}))[0].title == "Boom"
    assert "aaaaaaaaaaaaaaaa" in parse_alertmanager(one_alert(labels={"a": "b"}))[0].title


def test_no_alerts_is_an_empty_list_and_extra_keys_are_fine() -> None:
    assert parse_alertmanager({"version": "4", "alerts": []}) == []
    body = one_alert(somethingNew={"x": [1, 2]})
    body["alerts"][0]["silencedBy"] = ["abc"]
    body["future"] = True
    assert len(parse_alertmanager(body)) == 1


def test_links_only_http() -> None:
    body = one_alert(generatorURL="javascript:alert(1)",
                     annotations={"runbook_url": "file:///etc/passwd"})
    body["externalURL"] = "ftp://x"
    assert parse_alertmanager(body)[0].links == ()


@pytest.mark.parametrize(("label", "expected"), [
    ("critical", Severity.CRITICAL), ("page", Severity.CRITICAL), ("HIGH", Severity.HIGH),
    ("error", Severity.HIGH), ("warning", Severity.WARNING), (" warn ", Severity.WARNING),
    ("info", Severity.INFO), ("none", Severity.INFO), ("disaster", Severity.UNKNOWN),
    ("", Severity.UNKNOWN),
])
def test_severity(label: str, expected: Severity) -> None:
    assert map_severity(label) is expected
    assert parse_alertmanager(one_alert(labels={"severity": label}))[0].severity is expected


@pytest.mark.parametrize(("body", "reason"), [
    (None, "not a JSON object"),
    ([], "not a JSON object"),
    ("alerts", "not a JSON object"),
    ({"version": "4"}, "no alerts list"),
    ({"version": "4", "alerts": {"a": 1}}, "no alerts list"),
    ({"version": "3", "alerts": []}, "version"),
    ({"alerts": ["x"]}, "alerts[0] is not an object"),
    ({"alerts": [{"status": "firing"}]}, "no labels"),
    ({"alerts": [{"labels": {"a": "b"}}]}, "no status"),
    ({"alerts": [{"labels": {"a": "b"}, "status": "pending"}]}, "unknown status"),
    ({"alerts": [{"labels": ["a"], "status": "firing"}]}, "labels is not an object"),
    ({"alerts": [{"labels": {"a": 1}, "status": "firing"}]}, "not a string"),
    ({"alerts": [{"labels": {}, "status": "firing", "annotations": "x"}]},
     "annotations is not an object"),
    ({"alerts": [{"labels": {}, "status": "firing", "startsAt": "yesterday"}]},
     "startsAt is not a timestamp"),
    ({"alerts": [{"labels": {}, "status": "firing", "fingerprint": 7}]},
     "fingerprint is not a string"),
    ({"alerts": [], "externalURL": 5}, "externalURL"),
])
def test_malformed(body: Any, reason: str) -> None:
    with pytest.raises(AlertParseError, match=re.escape(reason)):
        parse_alertmanager(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)
_alert_keys = st.sampled_from(["status", "labels", "annotations", "startsAt", "endsAt",
                               "generatorURL", "fingerprint", "other"])


def _outcome(body: Any) -> list[Alert] | None:
    try:
        alerts = parse_alertmanager(body)
    except AlertParseError as exc:
        assert str(exc)
        assert len(str(exc)) < 200
        return None
    assert all(isinstance(a, Alert) for a in alerts)
    return alerts


@settings(max_examples=300, deadline=None)
@given(_json)
def test_any_json_is_parsed_or_refused(body: Any) -> None:
    _outcome(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), _alert_keys, _json), max_size=6),
       st.one_of(st.none(), _json))
def test_damaged_payloads_are_parsed_or_refused(damage: list[tuple[int, str, Any]],
                                                external: Any) -> None:
    body = payload()
    if external is not None:
        body["externalURL"] = external
    for index, key, value in damage:
        body["alerts"][index][key] = value
    _outcome(body)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5),
       st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=40), max_size=5),
       st.text(max_size=40))
def test_any_strings_parse(labels: dict[str, str], annotations: dict[str, str],
                           starts: str) -> None:
    body = one_alert(labels=labels, annotations=annotations, startsAt=starts)
    alerts = _outcome(body)
    if alerts is not None:
        (alert,) = alerts
        assert alert.labels == labels
        assert alert.key.startswith("aaaaaaaaaaaaaaaa")
        assert all(url.startswith(("http://", "https://")) for _, url in alert.links)


# --------------------------------------------------------------------------- client, mocked

ALERT = parse_alertmanager(FIRING)[0]
SECRET = "tok-very-secret-123"


def mocked(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> AlertmanagerClient:
    return AlertmanagerClient(url="http://am.invalid:9093/prefix",
                              transport=httpx.MockTransport(handler), **kw)


async def test_server_errors_are_unavailable_and_client_errors_carry_the_message() -> None:
    answers = iter([
        httpx.Response(503, text="overloaded"),
        httpx.Response(200, json=[]),
        httpx.Response(400, json={"code": 400, "message": "bad matcher: x"}),
    ])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    client = mocked(handler, bearer=SECRET)
    with pytest.raises(SourceUnavailable) as unavailable:
        await client.acknowledge(ALERT, "alice", "on it")
    assert unavailable.value.retryable
    with pytest.raises(SourceError) as refused:
        await client.acknowledge(ALERT, "alice", "on it")
    assert not isinstance(refused.value, SourceUnavailable)
    assert "bad matcher: x" in str(refused.value)
    assert seen[0].url.path == "/prefix/api/v2/silences"
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"
    assert all(SECRET not in str(e.value) for e in (unavailable, refused))
    await client.aclose()


async def test_credentials_never_in_messages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=[])
        return httpx.Response(422, text=f"rejected Basic {request.headers['authorization']}"
                                        f" and pw hunter2-pw")

    client = mocked(handler, username="admin", password="hunter2-pw")
    with pytest.raises(SourceError) as refused:
        await client.silence(ALERT, 600, "bob")
    assert "hunter2-pw" not in str(refused.value)
    await client.aclose()

    def unauthorised(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"who is {request.headers.get('authorization')}")

    client = mocked(unauthorised, bearer=SECRET)
    with pytest.raises(SourceError, match="credentials were refused") as refused:
        await client.acknowledge(ALERT, "alice", "")
    assert SECRET not in str(refused.value)
    await client.aclose()


async def test_timeouts_and_garbage_are_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = mocked(slow)
    with pytest.raises(SourceUnavailable, match="timed out"):
        await client.acknowledge(ALERT, "alice", "")
    await client.aclose()

    client = mocked(lambda request: httpx.Response(200, text="<html>"))
    with pytest.raises(SourceUnavailable, match="not JSON"):
        await client.acknowledge(ALERT, "alice", "")
    await client.aclose()


async def test_resolve_is_refused_and_empty_labels_cannot_be_silenced() -> None:
    client = mocked(lambda request: httpx.Response(500))
    assert client.can_acknowledge and client.can_silence and not client.can_resolve
    with pytest.raises(SourceError):
        await client.resolve(ALERT, "alice")
    bare = Alert(source="alertmanager", key="k", status=AlertStatus.FIRING,
                 severity=Severity.INFO, title="t")
    with pytest.raises(SourceError, match="no labels"):
        await client.acknowledge(bare, "alice", "")
    await client.aclose()


async def test_unreachable_is_unavailable() -> None:
    client = AlertmanagerClient(url=f"http://127.0.0.1:{free_port()}", password="pw-zz",
                                username="u", timeout=2.0)
    with pytest.raises(SourceUnavailable) as failed:
        await client.acknowledge(ALERT, "alice", "")
    assert "pw-zz" not in str(failed.value)
    await client.aclose()


# --------------------------------------------------------------------------- the real thing


@dataclass
class Receiver:
    """A webhook receiver: every POST to /hook is kept with its Authorization header."""

    url: str = ""
    seen: list[tuple[str, Any]] = field(default_factory=list)

    async def wait_for(self, predicate: Callable[[Alert], bool], timeout: float = 20.0
                       ) -> tuple[str, Alert]:
        """The first notification holding an alert that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            for auth, body in self.seen:
                for alert in parse_alertmanager(body):
                    if predicate(alert):
                        return auth, alert
            if time.monotonic() > deadline:
                raise AssertionError(f"no such notification within {timeout} s; got "
                                     f"{json.dumps([b for _, b in self.seen])[:2000]}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()

    async def hook(request: web.Request) -> web.Response:
        box.seen.append((request.headers.get("Authorization", ""), await request.json()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    box.url = f"http://{host}:{port}/hook"
    yield box
    await runner.cleanup()


async def poll(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Calls `check` (in a thread) until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or check}")
        await asyncio.sleep(0.1)


def ours(server: AlertmanagerServer, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The active silences whose matchers are exactly `labels`."""
    wanted = sorted((k, v, False, True) for k, v in labels.items())
    return [s for s in server.active_silences()
            if sorted((m["name"], m["value"], m["isRegex"], m.get("isEqual", True))
                      for m in s["matchers"]) == wanted]


async def test_the_whole_loop(alertmanager_factory: AlertmanagerFactory,
                              receiver: Receiver) -> None:
    token = "hook-" + uuid.uuid4().hex
    server = alertmanager_factory(receiver.url, bearer=token)
    assert server.version.startswith("0.")
    labels = {"alertname": "DiskFull", "instance": "db-1:9100", "job": "node",
              "severity": "critical", "mountpoint": '/var/"lib"', "run": uuid.uuid4().hex}
    annotations = {"summary": "Disk almost full on db-1", "description": "97% used on /var",
                   "runbook_url": "https://runbooks.example.net/disk"}
    starts = await asyncio.to_thread(
        server.inject, labels, annotations, None, None, "http://prom.example.net/graph?g=1")

    began = time.monotonic()
    auth, alert = await receiver.wait_for(lambda a: a.labels.get("run") == labels["run"])
    delivery = time.monotonic() - began
    assert auth == f"Bearer {token}"
    assert alert.status is AlertStatus.FIRING
    assert alert.severity is Severity.CRITICAL
    assert alert.title == "Disk almost full on db-1"
    assert alert.host == "db-1:9100" and alert.service == "node"
    assert alert.text == "97% used on /var"
    fingerprint = fingerprint_of(labels)
    assert alert.ref["fingerprint"] == fingerprint
    assert alert.key.startswith(fingerprint + ":")
    assert alert.started_at is not None
    assert abs(alert.started_at - datetime.fromisoformat(starts.replace("Z", "+00:00"))
               ) < timedelta(milliseconds=1)
    assert dict(alert.links) == {"Source": "http://prom.example.net/graph?g=1",
                                 "Alertmanager": server.url + "/#/alerts",
                                 "Runbook": "https://runbooks.example.net/disk"}

    client = AlertmanagerClient(url=server.url, bearer="not-needed-" + token, timeout=5.0)
    try:
        # Acknowledge: one silence, however many times and however concurrently.
        handle = await client.acknowledge(alert, "alice", "looking")
        again = await client.acknowledge(alert, "bob", "me too")
        both = await asyncio.gather(client.acknowledge(alert, "carol", ""),
                                    client.acknowledge(alert, "dave", ""))
        assert {again, *both} == {handle}
        (silence,) = await asyncio.to_thread(ours, server, labels)
        assert silence["id"] == handle
        assert silence["createdBy"] == "alice"
        assert silence["comment"].startswith("Acknowledged by alice: looking")
        assert silence["comment"].endswith(SILENCE_MARK)
        length = (datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
                  - datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00")))
        assert abs(length - timedelta(hours=24)) < timedelta(seconds=5)

        def suppressed() -> bool:
            return any(a["labels"].get("run") == labels["run"]
                       and a["status"]["state"] == "suppressed"
                       and handle in a["status"]["silencedBy"] for a in server.alerts())

        await poll(suppressed, what="the alert to be silenced")

        # Un-acknowledge expires it; doing it again is fine.
        await client.unacknowledge(alert, handle, "alice")
        assert await asyncio.to_thread(ours, server, labels) == []
        states = {s["id"]: s["status"]["state"] for s in await asyncio.to_thread(
            server.silences)}
        assert states[handle] == "expired"
        await client.unacknowledge(alert, handle, "alice")
        with pytest.raises(SourceError) as bogus:
            await client.unacknowledge(alert, "not-a-silence-id", "alice")
        assert token not in str(bogus.value)

        # Silence for a while, then longer: still one silence, now ending later.
        short = await client.silence(alert, 600, "bob")
        longer = await client.silence(alert, 7200, "bob")
        (silence,) = await asyncio.to_thread(ours, server, labels)
        assert silence["id"] == longer
        assert short != handle
        ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
        assert abs(ends - (datetime.now(UTC) + timedelta(hours=2))) < timedelta(seconds=30)
        assert await client.silence(alert, 60, "bob") == longer
        # An acknowledgement and a Silence are separate silences: ending one keeps the other.
        acked = await client.acknowledge(alert, "alice", "")
        assert acked != longer
        await client.unacknowledge(alert, "", "alice")
        assert [s["id"] for s in await asyncio.to_thread(ours, server, labels)] == [longer]
        # Without a handle, the bot finds its own silence.
        await client.unsilence(alert, "", "bob")
        assert await asyncio.to_thread(ours, server, labels) == []

        # Resolve at the source: the resolved notification comes with the same key.
        await asyncio.to_thread(server.resolve, labels)
        _, done = await receiver.wait_for(lambda a: a.labels.get("run") == labels["run"]
                                          and a.status is AlertStatus.RESOLVED)
        assert done.key == alert.key
        assert done.ref == alert.ref
    finally:
        await client.aclose()
    print(f"\nAlertmanager {server.version}: start {server.start_seconds:.2f} s, "
          f"first delivery {delivery:.2f} s")


async def test_receiver_set_after_start(alertmanager_factory: AlertmanagerFactory,
                                        receiver: Receiver) -> None:
    server = alertmanager_factory()
    await asyncio.to_thread(server.set_receiver, receiver.url, "later-token")
    labels = {"alertname": "Late", "run": uuid.uuid4().hex}
    await asyncio.to_thread(server.inject, labels, {"summary": "late"})
    auth, alert = await receiver.wait_for(lambda a: a.labels.get("run") == labels["run"])
    assert auth == "Bearer later-token"
    assert alert.title == "late"
    assert alert.severity is Severity.UNKNOWN


def test_server_stops_and_cleans_up(alertmanager_install: float) -> None:
    with AlertmanagerServer() as server:
        pid, workdir = server.pid, server.workdir
        assert pid is not None and server.running
        assert httpx.get(server.url + "/-/healthy", timeout=5).status_code == 200
    assert not server.running
    assert not workdir.exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/-/healthy", timeout=2)


def test_started_from_a_passing_thread_it_keeps_running(alertmanager_install: float) -> None:
    box: list[AlertmanagerServer] = []
    worker = threading.Thread(target=lambda: box.append(AlertmanagerServer().start()))
    worker.start()
    worker.join()
    (server,) = box
    try:
        time.sleep(0.3)  # the parent-death signal, if any, is immediate
        assert server.running
    finally:
        server.stop()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_it_dies_with_the_test_process(alertmanager_install: float) -> None:
    root = Path(__file__).resolve().parents[2]
    script = ("import time\n"
              "from tests.servers.alertmanager import AlertmanagerServer\n"
              "server = AlertmanagerServer().start()\n"
              "print(server.pid, flush=True)\n"
              "time.sleep(120)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=root, text=True,
                             stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert not _gone(pid)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    deadline = time.monotonic() + 10
    while not _gone(pid):
        assert time.monotonic() < deadline, f"Alertmanager {pid} outlived its test process"
        time.sleep(0.05)
    sweep_orphans()
