"""Where `ZabbixClient` puts the API token, on a mocked API per Zabbix release: the body's
`auth` field on 6.0 and 6.2, the `Authorization: Bearer` header from 6.4 (7.2 refuses the body
field), the fallback when the version cannot be learned, and a web server in front that drops
the header (Apache and PHP-FPM without CGIPassAuth). The real 6.0 loop is in test_zabbix.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bridge.alerts import Alert, AlertStatus, Severity, SourceError, SourceUnavailable
from bridge.zabbix import ZabbixClient, version_tuple
from plugin.doctor.report import Report, SettingNames
from plugin.doctor.systems import _probe

TOKEN = "5ecret-t0ken-" + "ab" * 26
REFUSED = 'Invalid parameter "/": unexpected parameter "auth".'
ALERT = Alert(source="zabbix", key="27", status=AlertStatus.FIRING, severity=Severity.HIGH,
              title="Load is too high", ref={"eventid": "27"})


@dataclass
class FakeZabbix:
    """A JSON-RPC endpoint that authenticates like a given release. `version` None makes
    apiinfo.version fail the way a proxy or an odd frontend might (an HTML page)."""

    version: str | None
    body_auth: bool  # accepts the token in the body's `auth` (up to 7.0)
    header_auth: bool  # accepts `Authorization: Bearer` (6.4 and later)
    #: An Apache that hands requests to PHP-FPM without `CGIPassAuth On`: PHP never sees the
    #: Authorization header. `requests` still records what the client sent.
    strips_header: bool = False
    #: What Zabbix says of a request without a token it knows (the spelling differs by release).
    not_authorized: str = "Not authorized."
    requests: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        authorization = request.headers.get("Authorization")
        self.requests.append((body["method"], body, authorization))
        if self.strips_header:
            authorization = None
        if "auth" in body and not self.body_auth:
            return self.error(body, -32600, "Invalid request.", REFUSED)
        if body["method"] == "apiinfo.version":
            if "auth" in body or authorization is not None:
                return self.error(body, -32602, "Invalid params.", "The \"apiinfo.version\" "
                                  "method must be called without the \"auth\" parameter.")
            if self.version is None:
                return httpx.Response(200, text="<html>maintenance</html>")
            return self.result(body, self.version)
        token_ok = ((self.body_auth and body.get("auth") == TOKEN)
                    or (self.header_auth and authorization == f"Bearer {TOKEN}"))
        if not token_ok:
            return self.error(body, -32602, "Invalid params.", self.not_authorized)
        if body["method"] == "event.acknowledge":
            return self.result(body, {"eventids": [body["params"]["eventids"]]})
        return self.result(body, "4")

    @staticmethod
    def result(body: dict[str, Any], result: Any) -> httpx.Response:
        return httpx.Response(200, json={"jsonrpc": "2.0", "result": result, "id": body["id"]})

    @staticmethod
    def error(body: dict[str, Any], code: int, message: str, data: str) -> httpx.Response:
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "error": {
            "code": code, "message": message, "data": data}})


def release(version: str | None) -> FakeZabbix:
    """A server behaving like `version`; None: a 7.2 whose version cannot be read."""
    parsed = version_tuple(version) if version else (7, 2)
    assert parsed is not None
    return FakeZabbix(version, body_auth=parsed < (7, 2), header_auth=parsed >= (6, 4))


def client_for(server: FakeZabbix) -> ZabbixClient:
    return ZabbixClient(url="https://zabbix.example.org/zabbix/", api_token=TOKEN,
                        transport=httpx.MockTransport(server.handle))


@pytest.mark.parametrize(("version", "header"), [
    ("6.0.14", False), ("6.2.9", False), ("6.4.0", True), ("7.0.5", True), ("7.2.0", True),
    ("7.4.1", True), ("8.0.0alpha1", True)])
async def test_token_goes_where_the_release_reads_it(version: str, header: bool) -> None:
    server = release(version)
    async with client_for(server) as client:
        await client.acknowledge(ALERT, "alice", "on it")
        await client.resolve(ALERT, "alice")
        assert client.server_version == version
    assert server.methods() == ["apiinfo.version", "event.acknowledge", "event.acknowledge"]
    _, probe, probe_auth = server.requests[0]
    assert "auth" not in probe and probe_auth is None  # the version is asked without a token
    for _, body, authorization in server.requests[1:]:
        if header:
            assert "auth" not in body and authorization == f"Bearer {TOKEN}"
        else:
            assert body["auth"] == TOKEN and authorization is None


async def test_unknown_version_uses_the_body_then_the_header_once_refused() -> None:
    server = release(None)  # a 7.2 that will not tell its version
    async with client_for(server) as client:
        await client.acknowledge(ALERT, "alice", "")
        await client.unacknowledge(ALERT, "", "alice")
        assert client.server_version == ""
    assert server.methods() == ["apiinfo.version", "event.acknowledge", "event.acknowledge",
                                "event.acknowledge"]
    _, first, first_auth = server.requests[1]
    assert first["auth"] == TOKEN and first_auth is None
    # Refused, sent again with the header, and the header is kept for the next call.
    for _, body, authorization in server.requests[2:]:
        assert "auth" not in body and authorization == f"Bearer {TOKEN}"


async def test_unknown_version_on_an_older_server_keeps_the_body() -> None:
    server = FakeZabbix(None, body_auth=True, header_auth=False)  # a 6.0 behind an odd proxy
    async with client_for(server) as client:
        await client.acknowledge(ALERT, "alice", "")
        await client.acknowledge(ALERT, "bob", "")
    assert server.methods() == ["apiinfo.version", "event.acknowledge", "event.acknowledge"]
    assert all(body["auth"] == TOKEN and authorization is None
               for _, body, authorization in server.requests[1:])


async def test_an_upgrade_to_7_2_under_a_running_client_switches_to_the_header() -> None:
    server = release("7.0.5")
    async with client_for(server) as client:
        # Learned as 6.2 (body), then the frontend is upgraded past 7.0.
        server.version, server.header_auth = "6.2.9", False
        await client.acknowledge(ALERT, "alice", "")
        server.version, server.body_auth, server.header_auth = "7.2.1", False, True
        await client.acknowledge(ALERT, "alice", "")
        await client.acknowledge(ALERT, "alice", "")
    assert server.methods() == ["apiinfo.version"] + ["event.acknowledge"] * 4
    assert [authorization is not None for _, _, authorization in server.requests[1:]] == [
        False, False, True, True]


async def test_the_version_is_asked_once_even_by_concurrent_first_calls() -> None:
    server = release("7.2.0")
    async with client_for(server) as client:
        await asyncio.gather(*(client.acknowledge(ALERT, f"user{n}", "") for n in range(5)))
        await client.check()
    assert server.methods().count("apiinfo.version") == 1 + 1  # doctor's check asks afresh
    assert server.methods().count("event.acknowledge") == 5


async def test_doctor_check_on_7_2_uses_the_header() -> None:
    server = release("7.2.3")
    async with client_for(server) as client:
        found = await client.check()
    assert found == [("ok", "Zabbix 7.2.3 answers"),
                     ("ok", "API token accepted (4 problems visible to its user)")]
    _, body, authorization = server.requests[1]
    assert body["method"] == "problem.get" and "auth" not in body
    assert authorization == f"Bearer {TOKEN}"


async def test_a_wrong_token_is_not_retried_and_never_shown() -> None:
    server = release("7.2.0")
    wrong = ZabbixClient(url="https://zabbix.example.org", api_token=TOKEN[::-1],
                         transport=httpx.MockTransport(server.handle))
    async with wrong:
        with pytest.raises(SourceError, match="Not authorized") as caught:
            await wrong.acknowledge(ALERT, "alice", "")
    assert server.methods() == ["apiinfo.version", "event.acknowledge"]
    assert TOKEN[::-1] not in str(caught.value)


async def test_the_refusal_of_the_body_field_never_carries_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["method"] == "apiinfo.version":
            return httpx.Response(404, text="not here")
        # Refuses everything, echoing what it got (a hostile or broken frontend).
        return FakeZabbix.error(body, -32600, "Invalid request.",
                                f"{REFUSED} {body.get('auth')} {dict(request.headers)}")

    client = ZabbixClient(url="https://zabbix.example.org", api_token=TOKEN,
                          transport=httpx.MockTransport(handler))
    async with client:
        with pytest.raises(SourceError) as caught:
            await client.acknowledge(ALERT, "alice", "")
    assert "unexpected parameter" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_an_unreachable_server_is_asked_its_version_again_later() -> None:
    server = release("6.0.14")
    down = True

    def handler(request: httpx.Request) -> httpx.Response:
        if down:
            raise httpx.ConnectError("refused", request=request)
        return server.handle(request)

    async with ZabbixClient(url="https://zabbix.example.org", api_token=TOKEN,
                            transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.acknowledge(ALERT, "alice", "")
        assert caught.value.retryable and client.server_version is None
        down = False
        await client.acknowledge(ALERT, "alice", "")
    assert server.methods() == ["apiinfo.version", "event.acknowledge"]
    assert server.requests[1][1]["auth"] == TOKEN


@pytest.mark.parametrize(("text", "parsed"), [
    ("6.0.14", (6, 0)), ("7.2.0rc1", (7, 2)), (" 6.4", (6, 4)), ("v7", None), ("", None)])
def test_version_tuple(text: str, parsed: tuple[int, int] | None) -> None:
    assert version_tuple(text) == parsed


# --- a web server that drops the Authorization header (ZBX-22952) ------------------------------


def behind_apache(version: str, **kwargs: Any) -> FakeZabbix:
    server = release(version)
    server.strips_header = True
    for name, value in kwargs.items():
        setattr(server, name, value)
    return server


def sent_in(request: tuple[str, dict[str, Any], str | None]) -> str:
    """Where a recorded request carried the token: "header", "body" or "" (nowhere)."""
    _, body, authorization = request
    assert not ("auth" in body and authorization is not None), "never both"
    return "header" if authorization is not None else "body" if "auth" in body else ""


@pytest.mark.parametrize(("version", "answer"), [
    ("6.4.0", "Not authorized."), ("7.0.5", "Not authorised."),
    ("7.0.5", "Session terminated, re-login, please.")])
async def test_a_dropped_header_on_6_4_to_7_0_falls_back_to_the_body_once(
        version: str, answer: str) -> None:
    server = behind_apache(version, not_authorized=answer)
    async with client_for(server) as client:
        await client.acknowledge(ALERT, "alice", "on it")
        await client.resolve(ALERT, "alice")
        await client.unacknowledge(ALERT, "", "alice")
        assert client.header_dropped
    assert server.methods() == ["apiinfo.version"] + ["event.acknowledge"] * 4
    # The header once, answered "Not authorized"; the body from then on, remembered.
    assert [sent_in(r) for r in server.requests] == ["", "header", "body", "body", "body"]


async def test_7_2_never_gets_the_body_even_when_the_header_is_dropped() -> None:
    server = behind_apache("7.2.1")
    async with client_for(server) as client:
        for _ in range(2):
            with pytest.raises(SourceError, match="Not authorized") as caught:
                await client.acknowledge(ALERT, "alice", "")
            assert TOKEN not in str(caught.value)
        assert not client.header_dropped
    assert [sent_in(r) for r in server.requests] == ["", "header", "header"]


async def test_an_unknown_version_that_refused_the_body_never_gets_it_again() -> None:
    server = release(None)  # a 7.2 that hides its version
    server.strips_header = True
    async with client_for(server) as client:
        with pytest.raises(SourceError, match="Not authorized"):
            await client.acknowledge(ALERT, "alice", "")
        with pytest.raises(SourceError, match="Not authorized"):
            await client.acknowledge(ALERT, "alice", "")
    assert [sent_in(r) for r in server.requests] == ["", "body", "header", "header"]


async def test_a_wrong_token_on_7_0_is_tried_both_ways_and_never_shown() -> None:
    server = release("7.0.5")
    wrong = ZabbixClient(url="https://zabbix.example.org", api_token=TOKEN[::-1],
                         transport=httpx.MockTransport(server.handle))
    async with wrong:
        for _ in range(2):
            with pytest.raises(SourceError, match="Not authorized") as caught:
                await wrong.acknowledge(ALERT, "alice", "")
            assert TOKEN[::-1] not in str(caught.value)
        assert not wrong.header_dropped
    # Not remembered as the body: each call tries the header first again.
    assert [sent_in(r) for r in server.requests] == ["", "header", "body", "header", "body"]


async def test_after_the_fallback_an_upgrade_to_7_2_goes_back_to_the_header() -> None:
    server = behind_apache("7.0.5")
    async with client_for(server) as client:
        await client.acknowledge(ALERT, "alice", "")
        # Upgraded, and Apache fixed (CGIPassAuth On) on the way.
        server.version, server.body_auth, server.strips_header = "7.2.1", False, False
        await client.acknowledge(ALERT, "alice", "")
        await client.acknowledge(ALERT, "alice", "")
    assert [sent_in(r) for r in server.requests] == [
        "", "header", "body", "body", "header", "header"]


async def doctor_lines(server: FakeZabbix, token: str = TOKEN) -> list[str]:
    """What `switchboard doctor` prints for this Zabbix."""
    lines: list[str] = []
    client = ZabbixClient(url="https://zabbix.example.org", api_token=token,
                          transport=httpx.MockTransport(server.handle))
    names = SettingNames({"settings": {"alerts": {"sources": {"zabbix": {
        "api_token": "${ZABBIX_API_TOKEN}"}}}}})
    await _probe(Report(lines.append, [token]), names, "alert source zabbix",
                 "settings.alerts.sources.zabbix", client.url, client, client.aclose)
    return lines


async def test_doctor_warns_when_the_header_is_dropped_but_the_body_works() -> None:
    server = behind_apache("7.0.5")
    async with client_for(server) as client:
        found = await client.check()
    assert found[0] == ("ok", "Zabbix 7.0.5 answers")
    level, text = found[1]
    assert level == "warn"
    assert text.startswith("ok, but the web server drops the Authorization header (Apache: "
                           "CGIPassAuth On)")
    assert "4 problems visible" in text and " — fix: " in text
    lines = await doctor_lines(behind_apache("7.0.5"))
    assert lines[0] == "[  ok] alert source zabbix: Zabbix 7.0.5 answers"
    assert lines[1].startswith("[warn] alert source zabbix: ok, but the web server drops the "
                               "Authorization header (Apache: CGIPassAuth On)")
    assert "CGIPassAuth On where the frontend is served" in lines[1].partition(" — fix: ")[2]
    assert len(lines) == 2


async def test_doctor_is_ok_when_the_header_gets_through() -> None:
    assert (await doctor_lines(release("7.0.5")))[1] == (
        "[  ok] alert source zabbix: API token accepted (4 problems visible to its user)")


async def test_doctor_names_the_token_when_both_ways_fail() -> None:
    for server in (release("7.0.5"), behind_apache("6.4.2")):
        lines = await doctor_lines(server, token=TOKEN[::-1])
        assert len(lines) == 1 and lines[0].startswith(
            "[FAIL] alert source zabbix: Zabbix does not accept the API token (in the "
            "Authorization header and in the request body: Not authorized) — fix: set "
            "ZABBIX_API_TOKEN (settings.alerts.sources.zabbix.api_token) to a valid API token")
        assert TOKEN[::-1] not in "".join(lines)
    # 6.0 reads only the body: only the body is named.
    lines = await doctor_lines(release("6.0.14"), token=TOKEN[::-1])
    assert "(in the request body: Not authorized)" in lines[0]
    assert "CGIPassAuth" not in lines[0]


async def test_doctor_on_7_2_with_a_dropped_header_names_the_web_server_too() -> None:
    lines = await doctor_lines(behind_apache("7.2.3"))
    assert len(lines) == 1
    assert lines[0].startswith("[FAIL] alert source zabbix: Zabbix does not accept the API "
                               "token (in the Authorization header: Not authorized) — fix: ")
    assert "CGIPassAuth On" in lines[0].partition(" — fix: ")[2]
