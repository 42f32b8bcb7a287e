"""`tls.server_name`: the certificate is checked against that name (and SNI carries it) while
the connection goes to the URL's host. Against a local HTTPS server whose certificate, from a
throwaway CA, names only `localhost`."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from bridge.alerts import Alert, AlertStatus, Severity, SourceUnavailable
from bridge.tickets import TLSOptions
from bridge.transport import PooledTransport
from plugin.config import AlertSettings, TLSSettings
from plugin.doctor.report import TLS, TLS_NAME, reach_error, reach_fix
from plugin.monitoring import build_sources
from plugin.trackers import tls_transport
from tests.pki import Pki, make_pki

#: The only name in the server's certificate.
CERT_NAME = "localhost"


@dataclass
class Server:
    """The local HTTPS server: its address by IP, and what it saw."""

    port: int
    sni: list[str | None] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    #: `/slow` answers once this is set (at the latest when the server stops).
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for CERT_NAME only (no IP address)."""
    return make_pki(tmp_path_factory.mktemp("pki"), CERT_NAME, f"DNS:{CERT_NAME}")


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    seen = Server(port=0)

    def on_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen.sni.append(name)

    context.sni_callback = on_sni

    async def anything(request: web.Request) -> web.Response:
        seen.requests.append(request.path)
        if request.path == "/slow":
            await seen.release.wait()
        if request.path == "/v1/status/IcingaApplication":
            return web.json_response({"results": [
                {"status": {"icingaapplication": {"app": {"version": "r2.14.2"}}}}]})
        return web.json_response({"path": request.path, "host": request.host})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    assert runner.addresses
    seen.port = runner.addresses[0][1]
    yield seen
    seen.release.set()
    await runner.cleanup()


async def _get(url: str, transport: PooledTransport) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        return await client.get(url + "/ping")


async def _refused(url: str, transport: PooledTransport) -> httpx.ConnectError:
    with pytest.raises(httpx.ConnectError) as caught:
        await _get(url, transport)
    return caught.value


async def test_a_url_with_the_certificates_name_is_accepted(pki: Pki, server: Server) -> None:
    options = TLSOptions(ca_bundle=str(pki.ca_file))
    response = await _get(server.url(CERT_NAME), options.transport())
    assert response.status_code == 200
    assert response.json()["host"] == f"{CERT_NAME}:{server.port}"
    assert server.sni == [CERT_NAME]


async def test_a_url_with_another_name_is_refused_as_a_name_mismatch(
        pki: Pki, server: Server) -> None:
    # The CA is trusted; only the name is wrong: 127.0.0.1 is not in the certificate.
    error = await _refused(server.url(), TLSOptions(ca_bundle=str(pki.ca_file)).transport())
    assert reach_error(error) == TLS_NAME
    assert server.requests == []
    # A wrong server_name is refused too: it is what the certificate is checked against.
    wrong = TLSOptions(ca_bundle=str(pki.ca_file), server_name="not-" + CERT_NAME)
    error = await _refused(server.url(CERT_NAME), wrong.transport())
    assert reach_error(error) == TLS_NAME
    assert server.requests == []


async def test_server_name_lets_an_ip_url_be_verified(pki: Pki, server: Server) -> None:
    settings = TLSSettings(ca_bundle=str(pki.ca_file), server_name=CERT_NAME)
    response = await _get(server.url(), tls_transport(settings))
    assert response.status_code == 200
    # Connected to the URL's host (its Host header unchanged); SNI carried the name.
    assert response.json()["host"] == f"127.0.0.1:{server.port}"
    assert server.sni == [CERT_NAME]


async def test_server_name_does_not_make_an_untrusted_certificate_trusted(
        server: Server) -> None:
    # Without the CA, the name alone changes nothing: the chain is still refused.
    settings = TLSSettings(server_name=CERT_NAME)
    error = await _refused(server.url(), tls_transport(settings))
    assert reach_error(error) == TLS
    assert server.requests == []


async def test_a_monitoring_source_is_built_with_the_server_name(
        pki: Pki, server: Server) -> None:
    def source(**tls: str) -> AlertSettings:
        return AlertSettings.model_validate({"sources": {"nagios": {
            "url": server.url(), "api_username": "switchboard", "api_password": "pw-0123",
            "tls": {"ca_bundle": str(pki.ca_file), **tls}}}})

    clients = build_sources(source())
    client = clients["nagios"]
    try:
        with pytest.raises(SourceUnavailable) as caught:
            await client.check()  # type: ignore[attr-defined]
        assert reach_error(caught.value) == TLS_NAME
    finally:
        for c in clients.values():
            await c.aclose()
    assert server.requests == []

    clients = build_sources(source(server_name=CERT_NAME))
    try:
        found = await clients["nagios"].check()  # type: ignore[attr-defined]
    finally:
        for c in clients.values():
            await c.aclose()
    assert found == [("ok", "Icinga r2.14.2 answers; the API user's credentials are accepted")]
    assert server.requests == ["/v1/status/IcingaApplication"]
    assert server.sni[-1] == CERT_NAME


def test_the_doctor_names_server_name_for_a_name_mismatch() -> None:
    fix = reach_fix(TLS_NAME, "ICINGA_URL (x.url)", "x.tls.ca_bundle", "x.tls.server_name")
    assert "x.tls.server_name" in fix and "ICINGA_URL (x.url)" in fix
    # Where there is no such setting (Mattermost), it is not suggested.
    assert "server_name" not in reach_fix(TLS_NAME, "MM_URL", "settings.mattermost.ca_bundle")


@pytest.mark.parametrize("value", ["https://icinga-node", "icinga-node:5665", "icinga node",
                                   "icinga-node/v1"])
def test_server_name_must_be_a_bare_name(value: str) -> None:
    with pytest.raises(ValueError, match="bare host name"):
        TLSSettings(server_name=value)


def test_server_name_is_trimmed_and_defaults_to_none() -> None:
    assert TLSSettings().server_name == ""
    assert TLSSettings(server_name=" icinga-node ").server_name == "icinga-node"


def _callback_alert(url: str) -> Alert:
    return Alert(source="generic", key="db1-disk", status=AlertStatus.FIRING,
                 severity=Severity.HIGH, title="Disk full", ref={"callback_url": url})


async def test_the_generic_callback_uses_its_tls_and_timeout_settings(
        pki: Pki, server: Server) -> None:
    def generic(**settings: object) -> AlertSettings:
        return AlertSettings.model_validate({"sources": {"generic": settings}})

    # No settings: the system's CAs, which do not know this server's.
    clients = build_sources(AlertSettings())
    try:
        with pytest.raises(SourceUnavailable):
            await clients["generic"].acknowledge(_callback_alert(server.url(CERT_NAME) + "/cb"),
                                                 "alice", "")
    finally:
        await clients["generic"].aclose()
    assert server.requests == []

    clients = build_sources(generic(timeout=0.5, tls={"ca_bundle": str(pki.ca_file),
                                                      "server_name": CERT_NAME}))
    try:
        await clients["generic"].acknowledge(_callback_alert(server.url() + "/cb"), "alice", "")
        assert server.requests == ["/cb"] and server.sni[-1] == CERT_NAME  # by its IP
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="ReadTimeout"):
            await clients["generic"].resolve(_callback_alert(server.url() + "/slow"), "alice")
        assert time.monotonic() - started < 5  # the setting's 0.5 s, not the default 10 s
    finally:
        await clients["generic"].aclose()
