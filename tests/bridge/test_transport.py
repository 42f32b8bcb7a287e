"""The pooled httpx transport: what httpx users rely on still holds."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web

from bridge.alerts import Alert, AlertStatus, Severity
from bridge.glpi import GLPITracker
from bridge.tickets import NewTicket, Person, TrackerUnavailable
from bridge.transport import EnvProxies, PooledTransport, send_plain
from plugin.config import AlertSettings, Settings
from plugin.monitoring import build_sources
from plugin.sandbox.glpi import GLPISimulator
from plugin.trackers import build_trackers
from tests.e2e.harness import free_port


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "body": body.decode(),
                                  "query": dict(request.query),
                                  "type": request.headers.get("Content-Type", ""),
                                  "x": request.headers.get("X-Test", "")})

    async def zipped(request: web.Request) -> web.Response:
        data = gzip.compress(json.dumps({"zipped": True}).encode())
        return web.Response(body=data, headers={"Content-Encoding": "gzip",
                                                "Content-Type": "application/json"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/zipped", zipped)
    app.router.add_get("/slow", slow)
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_requests_bodies_headers_and_encodings(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, transport=PooledTransport()) as client:
        r = await client.post("/echo", params={"a": "1"}, json={"k": "é"},
                              headers={"X-Test": "yes"})
        assert r.status_code == 200
        assert r.json() == {"method": "POST", "body": '{"k":"é"}', "query": {"a": "1"},
                            "type": "application/json", "x": "yes"}
        files = await client.post("/echo", files={"f": ("a.txt", b"hello", "text/plain")})
        assert "hello" in files.json()["body"]
        assert files.json()["type"].startswith("multipart/form-data")
        assert (await client.get("/zipped")).json() == {"zipped": True}
        redirect = await client.get("/redirect")
        assert redirect.status_code == 302  # redirects are the caller's business


async def test_errors_become_httpx_errors(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, transport=PooledTransport(),
                                 timeout=0.3) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.get("/slow")
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")


async def test_a_tracker_on_the_transport() -> None:
    sim = GLPISimulator(user_token="tok")
    await sim.start()
    try:
        tracker = GLPITracker(url=sim.api_url, user_token="tok",
                              transport=PooledTransport(limit=4), max_in_flight=4)
        person = Person("alice", "alice@sandbox.local", "Alice")
        made = await asyncio.gather(*(tracker.create(NewTicket(
            f"t{i}", "x", person, f"ref-{i}")) for i in range(20)))
        assert len({t.id for t in made}) == 20
        await sim.set_down(True)
        with pytest.raises(TrackerUnavailable):
            await tracker.get(made[0].id)
        await tracker.aclose()
    finally:
        await sim.stop()


async def test_send_plain_is_what_the_client_sends() -> None:
    """The same request on the wire as `client.request` (the client's headers, the query, the
    JSON body, the cookies the server set) and the same answer back, body read."""
    seen: list[dict[str, object]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path,
                     "query": sorted(request.query.items()), "body": await request.read(),
                     "headers": sorted((k.lower(), v) for k, v in request.headers.items()
                                       if k.lower() not in ("host", "content-length"))})
        response = web.json_response({"n": len(seen)})
        response.set_cookie("session", "s1")
        return response

    app = web.Application()
    app.router.add_route("*", "/api/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}/api"
    try:
        for plain in (False, True):
            async with httpx.AsyncClient(base_url=base + "/", transport=PooledTransport(),
                                         follow_redirects=False, timeout=3) as client:
                for path, query, body in (("/Ticket", None, {"input": {"name": "é"}}),
                                          ("/search/User", httpx.QueryParams(
                                              (("criteria[0][field]", "5"), ("x", "a b"))),
                                           None)):
                    headers = {"Session-Token": "t", "Content-Type": "application/json"}
                    method = "POST" if body else "GET"
                    if plain:
                        response = await send_plain(client, method, base + path,
                                                    headers=headers, params=query, json=body)
                    else:
                        response = await client.request(method, path.lstrip("/"),
                                                        params=query, headers=headers,
                                                        json=body)
                    assert response.status_code == 200
                    assert response.json()["n"] == len(seen)
                    assert response.request.method == method
        first, second = seen[:2], seen[2:]
        assert first == second
        assert ("cookie", "session=s1") in first[1]["headers"]  # type: ignore[operator]
    finally:
        await runner.cleanup()


# --- proxies from the environment -------------------------------------------------------------

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@dataclass
class Seen:
    """One request a proxy received: its request line, headers and body."""

    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StubProxy:
    """An HTTP proxy that forwards nothing: it records each request (absolute-form for http://
    targets, CONNECT for https:// ones), answers the former with a JSON-RPC result and refuses
    tunnels with 403."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.seen.append(Seen(head[0], headers, body))
            if head[0].startswith("CONNECT "):
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            else:
                answer = b'{"jsonrpc": "2.0", "result": "7.0.5", "id": 1}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(answer), answer))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StubProxy]:
    """The stub proxy, and an environment without any other proxy setting."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    stub = StubProxy()
    server = await asyncio.start_server(stub.handle, "127.0.0.1", 0)
    stub.port = server.sockets[0].getsockname()[1]
    yield stub
    server.close()
    await server.wait_closed()


async def test_http_goes_through_http_proxy(proxy: StubProxy,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        r = await client.post("http://zabbix.example.invalid/api_jsonrpc.php", json={"a": 1})
    assert r.json()["result"] == "7.0.5"
    assert [s.line for s in proxy.seen] == [
        "POST http://zabbix.example.invalid/api_jsonrpc.php HTTP/1.1"]
    assert proxy.seen[0].headers["host"] == "zabbix.example.invalid"
    assert proxy.seen[0].body == b'{"a":1}'
    assert "proxy-authorization" not in proxy.seen[0].headers


async def test_the_proxy_urls_credentials_go_to_the_proxy_only(
        proxy: StubProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://relay:p%40ss-w0rd@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("https_proxy", f"http://relay:p%40ss-w0rd@127.0.0.1:{proxy.port}")
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        await client.get("http://zabbix.example.invalid/")
        with pytest.raises(httpx.ProxyError) as caught:
            await client.get("https://zabbix.example.invalid/")
    expected = "Basic " + base64.b64encode(b"relay:p@ss-w0rd").decode()
    assert [s.headers.get("proxy-authorization") for s in proxy.seen] == [expected, expected]
    assert "p%40ss" not in str(caught.value) and "p@ss" not in str(caught.value)
    assert f"127.0.0.1:{proxy.port}" in str(caught.value) and "403" in str(caught.value)


async def test_https_is_tunnelled_through_https_proxy(proxy: StubProxy,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")  # no scheme: http:// meant
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        with pytest.raises(httpx.ProxyError, match="refused the connection: HTTP 403"):
            await client.get("https://icinga.example.invalid:5665/v1/status")
        # HTTPS_PROXY is for https:// URLs only: plain http goes direct (and this name does
        # not resolve).
        with pytest.raises(httpx.ConnectError):
            await client.get("http://icinga.example.invalid:5665/v1/status")
    assert [s.line for s in proxy.seen] == [
        "CONNECT icinga.example.invalid:5665 HTTP/1.1"]


async def test_no_proxy_and_loopback_go_direct(proxy: StubProxy, server: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    # Loopback is never sent to a proxy, NO_PROXY or not: the local servers answer.
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        assert (await client.get(server + "/echo")).json()["method"] == "GET"
        assert (await client.get(server.replace("127.0.0.1", "localhost") + "/echo")
                ).status_code == 200
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        assert (await client.get(server + "/echo")).json()["method"] == "GET"
    # A name NO_PROXY lists is reached directly (so here: it does not resolve).
    monkeypatch.setenv("NO_PROXY", "localhost, .example.invalid")
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://zabbix.example.invalid/")
        await client.get("http://zabbix.example.test/")  # not listed: through the proxy
    assert [s.line for s in proxy.seen] == ["GET http://zabbix.example.test/ HTTP/1.1"]


async def test_the_environment_is_ignored_when_asked(proxy: StubProxy,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with httpx.AsyncClient(transport=PooledTransport(trust_env=False)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://zabbix.example.invalid/")
    assert proxy.seen == []


@pytest.mark.parametrize(("host", "no_proxy", "direct"), [
    ("zabbix.example.org", "*", True),
    ("zabbix.example.org", "example.org", True),
    ("zabbix.example.org", ".example.org", True),
    ("zabbix.example.org", "*.example.org", True),
    ("zabbix.example.org", "other.org, Zabbix.Example.Org", True),
    ("zabbix.example.org", "zabbix.example.org:443", True),
    ("notexample.org", "example.org", False),
    ("zabbix.example.org", "", False),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("10.1.2.3", "192.168.0.0/16", False),
    ("fd00::5", "fd00::/8", True),
    ("::1", "", True),
    ("127.0.0.2", "", True),
    ("LOCALHOST.", "", True),
])
def test_which_hosts_go_direct(host: str, no_proxy: str, direct: bool) -> None:
    proxies = EnvProxies({"http": "http://proxy.example.org:3128", "no": no_proxy})
    proxy, _ = proxies.proxy_for("http", host)
    assert (proxy is None) is direct
    assert proxies.proxy_for("https", host) == (None, None)  # no HTTPS_PROXY: always direct


async def test_trackers_and_sources_from_settings_use_the_proxy(
        proxy: StubProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    sources = build_sources(AlertSettings.model_validate({"sources": {
        "zabbix": {"url": "http://zabbix.example.invalid", "api_token": "z" * 64}}}))
    trackers = build_trackers(Settings.model_validate({"trackers": {"redmine": {
        "kind": "redmine", "url": "http://redmine.example.invalid", "api_key": "k" * 40,
        "project": "helpdesk"}}}))
    try:
        assert await sources["zabbix"].check() != []  # type: ignore[attr-defined]
        await sources["generic"].acknowledge(Alert(
            source="generic", key="k1", status=AlertStatus.FIRING, severity=Severity.HIGH,
            title="Disk full", started_at=datetime.now(UTC),
            ref={"callback_url": "http://tool.example.invalid/cb"}), "alice", "")
        with pytest.raises(TrackerUnavailable, match="without the issue"):  # the stub is no Redmine
            await trackers["redmine"].get("1")
    finally:
        for source in sources.values():
            await source.aclose()
        for tracker in trackers.values():
            await tracker.aclose()
    lines = [s.line for s in proxy.seen]
    assert lines[:2] == ["POST http://zabbix.example.invalid/api_jsonrpc.php HTTP/1.1"] * 2
    assert "POST http://tool.example.invalid/cb HTTP/1.1" in lines
    assert any(line.startswith("GET http://redmine.example.invalid/issues/1.json")
               for line in lines)
