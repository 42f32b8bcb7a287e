"""https:// through an HTTP proxy: a CONNECT tunnel (the proxy's credentials on the CONNECT
only), TLS inside it checked against a throwaway CA, the tunnel kept alive for the next
request. Against a small tunnelling proxy and a local HTTPS server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bridge.http1 import ConnectFailed, HTTPClient, ProxyFailed
from bridge.proxies import EnvProxies
from bridge.transport import PooledTransport
from plugin.doctor.report import TLS, reach_error
from tests.pki import make_pki

#: The name in the server's certificate; the proxy takes it to 127.0.0.1.
NAME = "service.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for NAME: (CA file, certificate, key)."""
    made = make_pki(tmp_path_factory.mktemp("proxy-pki"), NAME, f"DNS:{NAME}")
    return made.ca_file, made.cert_file, made.key_file


@dataclass
class Site:
    port: int = 0
    sni: list[str | None] = field(default_factory=list)
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def site(pki: tuple[Path, Path, Path]) -> AsyncIterator[Site]:
    _, cert, key = pki
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    found = Site()

    def on_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        found.sni.append(name)

    context.sni_callback = on_sni

    async def anything(request: web.Request) -> web.Response:
        found.seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    found.port = runner.addresses[0][1]
    yield found
    await runner.cleanup()


@dataclass
class TunnelProxy:
    """Opens CONNECT tunnels, to 127.0.0.1 whatever the name asked for; records each CONNECT's
    line and headers."""

    port: int = 0
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (h.partition(":") for h in head[1:] if h)}
        self.seen.append((head[0], headers))
        method, authority, _ = head[0].split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", int(authority.rpartition(":")[2]))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TunnelProxy]:
    tunnel = TunnelProxy()
    server = await asyncio.start_server(tunnel.handle, "127.0.0.1", 0)
    tunnel.port = server.sockets[0].getsockname()[1]
    yield tunnel
    server.close()


async def test_https_goes_through_a_connect_tunnel_with_tls_inside(
        pki: tuple[Path, Path, Path], site: Site, proxy: TunnelProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://relay:s%3Acret@127.0.0.1:{proxy.port}")
    trusted = ssl.create_default_context(cafile=str(pki[0]))
    async with httpx.AsyncClient(transport=PooledTransport(verify=trusted)) as client:
        first = await client.get(f"https://{NAME}:{site.port}/one")
        second = await client.post(f"https://{NAME}:{site.port}/two", json={})
    assert first.json() == {"path": "/one"} and second.json() == {"path": "/two"}
    # One tunnel for both requests, opened with the proxy's credentials.
    assert [line for line, _ in proxy.seen] == [f"CONNECT {NAME}:{site.port} HTTP/1.1"]
    expected = "Basic " + base64.b64encode(b"relay:s:cret").decode()
    assert proxy.seen[0][1]["proxy-authorization"] == expected
    assert proxy.seen[0][1]["host"] == f"{NAME}:{site.port}"
    # Inside the tunnel: the server's name in SNI and Host, no proxy credentials.
    assert site.sni == [NAME]
    assert [h["host"] for h in site.seen] == [f"{NAME}:{site.port}"] * 2
    assert all("proxy-authorization" not in h for h in site.seen)


async def test_an_untrusted_certificate_inside_the_tunnel_is_refused(
        site: Site, proxy: TunnelProxy) -> None:
    client = HTTPClient(proxies=EnvProxies({"https": f"127.0.0.1:{proxy.port}"}))
    try:
        with pytest.raises(ConnectFailed) as caught:
            await client.request("GET", "https", NAME, site.port, b"/", connect=5)
    finally:
        await client.aclose()
    assert not isinstance(caught.value, ProxyFailed)  # the proxy did its part
    assert reach_error(caught.value) == TLS
    assert site.seen == [] and len(proxy.seen) == 1
