"""`switchboard doctor`'s parts: the report and its exit status, the names of settings, what a
connection failure was, Mattermost's AllowedUntrustedInternalConnections matching, and the
bridges' probes (on the GLPI simulator and on mocked APIs)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from bridge.alertmanager import AlertmanagerClient
from bridge.alerts import SourceError
from bridge.glpi import GLPITracker
from bridge.icinga import IcingaClient
from bridge.limiter import Limiter
from bridge.redmine import RedmineTracker
from bridge.tickets import TrackerError, TrackerRejected, TrackerUnavailable
from bridge.zabbix import ZabbixClient
from plugin.config import load, parse
from plugin.doctor import doctor, secret_values
from plugin.doctor import listener as doctor_listener
from plugin.doctor.listener import allowed_entries, internal_reason, is_allowed
from plugin.doctor.report import (
    DNS,
    REFUSED,
    TIMEOUT,
    TLS,
    TLS_NAME,
    Report,
    SettingNames,
    guarded,
    reach_error,
)
from plugin.doctor.systems import _probe
from plugin.metrics import Metrics, watch_upstream
from plugin.sandbox.glpi import GLPISimulator
from plugin.sandbox.mattermost import MattermostSimulator

ip = ip_address


# --- the report --------------------------------------------------------------------------------


Finding = tuple[str, ...]


def run_report(findings: list[Finding], secrets: tuple[str, ...] = ()
               ) -> tuple[int, list[str]]:
    """Report ("ok", text), ("warn", text, fix) and ("FAIL", text, fix) findings."""
    lines: list[str] = []
    report = Report(lines.append, secrets)
    for level, *words in findings:
        if level == "ok":
            report.ok(*words)
        elif level == "warn":
            report.warn(*words)
        else:
            report.fail(*words)
    return report.verdict(), lines


def test_each_finding_is_one_line_and_warnings_alone_pass() -> None:
    code, lines = run_report([("ok", "Mattermost answers"),
                              ("warn", "no channel", "add the bot to one")])
    assert code == 0
    assert lines == ["[  ok] Mattermost answers", "[warn] no channel — fix: add the bot to one",
                     "verdict: ready (1 ok, 1 warning: read the [warn] lines)"]


def test_any_failure_fails_the_verdict_and_names_its_fix() -> None:
    code, lines = run_report([("ok", "a"), ("FAIL", "the token is rejected", "set it"),
                              ("ok", "b")])
    assert code == 1
    assert lines[1] == "[FAIL] the token is rejected — fix: set it"
    assert lines[-1].startswith("verdict: NOT READY (1 failed, 0 warnings, 2 ok)")
    assert run_report([("ok", "all good")])[0] == 0


def test_no_line_carries_a_secret() -> None:
    secret = "s3cr3t-token-value"
    code, lines = run_report([("FAIL", f"refused: Bearer {secret}", f"not {secret}")],
                             (secret,))
    assert code == 1
    assert not any(secret in line for line in lines)
    assert "[redacted]" in lines[0]


def test_every_configured_secret_is_found() -> None:
    config = parse("""
manifest: {id: io.test.bot, name: T, version: 1.0.0, min_server_version: 5.36.0}
settings:
  mattermost: {url: "http://mm", token: mm-token-1}
  security: {secret: signing-secret-0123456789}
  listener: {slash_tokens: [slash-tok-1]}
  trackers:
    g: {kind: glpi, url: "http://g/apirest.php", user_token: glpi-user-1, app_token: glpi-app-1}
    r: {kind: redmine, url: "http://r", api_key: redmine-key-1, project: p}
  alerts:
    token: alerts-tok-1
    sources: {zabbix: {url: "http://z", api_token: zabbix-tok-1}}
""", env={})
    found = set(secret_values(config))
    assert {"mm-token-1", "signing-secret-0123456789", "slash-tok-1", "glpi-user-1",
            "glpi-app-1", "redmine-key-1", "alerts-tok-1", "zabbix-tok-1"} <= found


# --- names of settings -------------------------------------------------------------------------


def test_settings_are_named_by_their_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text("settings:\n  trackers:\n    glpi:\n      url: ${GLPI_URL:-}\n"
                    "      user_token: ${GLPI_USER_TOKEN}\n      timeout: 5\n"
                    "      web_url: https://${HOST}/${PATH}\n")
    names = SettingNames.from_file(path)
    assert names("settings.trackers.glpi.url") == "GLPI_URL (settings.trackers.glpi.url)"
    assert names("settings.trackers.glpi.user_token") == \
        "GLPI_USER_TOKEN (settings.trackers.glpi.user_token)"
    assert names("settings.trackers.glpi.timeout") == "settings.trackers.glpi.timeout"
    assert names("settings.trackers.glpi.web_url") == "settings.trackers.glpi.web_url"
    assert names("settings.nothing.here") == "settings.nothing.here"
    assert names.explain("set `user_token` and `nope`", "settings.trackers.glpi") == \
        ("set GLPI_USER_TOKEN (settings.trackers.glpi.user_token) and "
         "settings.trackers.glpi.nope")
    assert SettingNames.from_file(tmp_path / "missing.yaml")("settings.x") == "settings.x"


# --- what a connection failure was --------------------------------------------------------------


def raised(inner: BaseException, *, hide: bool = False) -> TrackerUnavailable:
    """A bridge error raised while handling `inner`, as the bridges and transports chain them."""
    try:
        try:
            raise inner
        except BaseException as exc:
            if hide:
                raise httpx.ConnectError("cannot connect") from None
            raise httpx.ConnectError("cannot connect") from exc
    except httpx.ConnectError as exc:
        try:
            raise TrackerUnavailable("GLPI unreachable (ConnectError)") from exc
        except TrackerUnavailable as outer:
            return outer
    raise AssertionError("unreachable")


def test_connection_failures_are_told_apart() -> None:
    assert reach_error(raised(socket.gaierror(-2, "Name or service not known"))) == DNS
    assert reach_error(raised(ConnectionRefusedError(111, "Connection refused"))) == REFUSED
    assert reach_error(raised(ssl.SSLCertVerificationError(1, "certificate verify failed"))) \
        == TLS
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed: IP address "
                                               "mismatch, certificate is not valid for '::1'")
    assert reach_error(raised(mismatch)) == TLS_NAME
    # `raise ... from None` keeps the context, which still says what happened.
    assert reach_error(raised(ConnectionRefusedError(111, "refused"), hide=True)) == REFUSED
    assert reach_error(TrackerUnavailable("x")) is None
    timeout = TrackerUnavailable("GLPI did not answer")
    timeout.__cause__ = httpx.ReadTimeout("no answer in time")
    assert reach_error(timeout) == TIMEOUT
    assert reach_error(TrackerRejected("GLPI refused the user token")) is None


# --- AllowedUntrustedInternalConnections ---------------------------------------------------------


@pytest.mark.parametrize(("host", "addresses", "reason"), [
    ("127.0.0.1", ["127.0.0.1"], "a loopback address"),
    ("::1", ["::1"], "a loopback address"),
    ("10.1.2.3", ["10.1.2.3"], "a private address"),
    ("172.20.0.5", ["172.20.0.5"], "a private address"),
    ("192.168.1.10", ["192.168.1.10"], "a private address"),
    ("fd00::5", ["fd00::5"], "a private address"),
    ("169.254.10.1", ["169.254.10.1"], "a link-local address"),
    ("bot.example.org", ["10.0.0.7"], "a private address"),
    ("bot", [], "an internal name"),
    ("bot.internal", [], "an internal name"),
    ("printer.local", [], "an internal name"),
    ("bot.example.org", ["93.184.216.34"], ""),
    ("bot.example.org", [], ""),
    ("93.184.216.34", ["93.184.216.34"], ""),
    ("2001:db8::1", ["2001:db8::1"], ""),
])
def test_which_callback_hosts_mattermost_treats_as_internal(host: str, addresses: list[str],
                                                            reason: str) -> None:
    assert internal_reason(host, [ip(a) for a in addresses]) == reason


def test_the_mattermost_servers_own_address_is_internal_too() -> None:
    assert internal_reason("chat.example.org", [ip("93.184.216.34")],
                           own=[ip("93.184.216.34")]) == "the Mattermost server's own address"


@pytest.mark.parametrize(("host", "addresses", "setting", "allowed"), [
    ("10.1.2.3", ["10.1.2.3"], "10.1.2.3", True),
    ("10.1.2.3", ["10.1.2.3"], "10.0.0.0/8", True),
    ("10.1.2.3", ["10.1.2.3"], "192.168.0.0/16 10.1.2.0/24", True),
    ("10.1.2.3", ["10.1.2.3"], "chat.example.org,10.1.2.3", True),
    ("10.1.2.3", ["10.1.2.3"], "a.example.org ,\n\t10.1.2.3", True),
    ("10.1.2.3", ["10.1.2.3"], "10.1.2.4 10.1.3.0/24", False),
    ("10.1.2.3", ["10.1.2.3"], "", False),
    ("bot.internal", ["10.0.0.7"], "bot.internal", True),
    ("Bot.Internal", ["10.0.0.7"], "bot.internal", True),
    ("bot.internal", ["10.0.0.7"], "10.0.0.0/24", True),
    # A plain IP entry is compared with the URL's host only, as Mattermost does.
    ("bot.internal", ["10.0.0.7"], "10.0.0.7", False),
    ("bot", [], "bot.internal", False),
    ("::1", ["::1"], "::1/128", True),
    ("::1", ["::1"], "127.0.0.0/8", False),
    ("127.0.0.1", ["127.0.0.1"], "::/0 not-a-cidr/99", False),
])
def test_allowed_untrusted_internal_connections_matching(host: str, addresses: list[str],
                                                         setting: str, allowed: bool) -> None:
    assert is_allowed(host, [ip(a) for a in addresses], setting) is allowed


def test_the_setting_is_split_on_blanks_and_commas() -> None:
    assert allowed_entries(" a.example.org,10.0.0.0/8  ::1\n") == \
        ["a.example.org", "10.0.0.0/8", "::1"]


# --- a probe's findings in the report -------------------------------------------------------------


class FakeProbe:
    def __init__(self, found: list[tuple[str, str]] | None = None,
                 error: BaseException | None = None) -> None:
        self.found, self.error, self.closed = found or [], error, False

    async def check(self) -> list[tuple[str, str]]:
        if self.error is not None:
            raise self.error
        return self.found

    async def aclose(self) -> None:
        self.closed = True


async def probe_lines(client: FakeProbe) -> list[str]:
    lines: list[str] = []
    names = SettingNames({"settings": {"trackers": {"g": {"user_token": "${GLPI_USER_TOKEN}"}}}})
    await _probe(Report(lines.append), names, "tracker g (glpi)", "settings.trackers.g",
                 "http://127.0.0.1:9/apirest.php", client, client.aclose)
    assert client.closed
    return lines


async def test_a_probe_failure_names_the_operators_setting() -> None:
    lines = await probe_lines(FakeProbe(error=TrackerRejected(
        "GLPI refused the user token — fix: set `user_token`")))
    assert lines == ["[FAIL] tracker g (glpi): GLPI refused the user token — fix: set "
                     "GLPI_USER_TOKEN (settings.trackers.g.user_token)"]
    lines = await probe_lines(FakeProbe(error=raised(ConnectionRefusedError(111, "x"))))
    assert lines[0].startswith("[FAIL] tracker g (glpi): cannot reach "
                               "http://127.0.0.1:9/apirest.php (connection refused) — fix: ")
    assert "settings.trackers.g.url" in lines[0]
    lines = await probe_lines(FakeProbe(error=TrackerRejected("GLPI: HTTP 400 on GET /x")))
    assert lines[0].startswith("[FAIL] tracker g (glpi): GLPI: HTTP 400 on GET /x — fix: ")


async def test_a_probe_reports_what_it_found() -> None:
    lines = await probe_lines(FakeProbe([("ok", "session opened"),
                                         ("warn", "odd — fix: change `user_token`")]))
    assert lines == ["[  ok] tracker g (glpi): session opened",
                     "[warn] tracker g (glpi): odd — fix: change GLPI_USER_TOKEN "
                     "(settings.trackers.g.user_token)"]


# --- GLPI's probe, on the simulator ------------------------------------------------------------

USER_TOKEN = "doctor-user-token-0123"
APP_TOKEN = "doctor-app-token-4567"


@pytest.fixture
async def glpi() -> AsyncIterator[GLPISimulator]:
    server = GLPISimulator(user_token=USER_TOKEN, app_token=APP_TOKEN)
    await server.start()
    yield server
    await server.stop()


async def glpi_check(sim: GLPISimulator, **kwargs: Any) -> list[tuple[str, str]]:
    options: dict[str, Any] = {"url": sim.api_url, "user_token": USER_TOKEN,
                               "app_token": APP_TOKEN, "timeout": 5.0}
    options.update(kwargs)
    tracker = GLPITracker(**options)
    try:
        return await tracker.check()
    finally:
        await tracker.aclose()


async def test_glpi_probe_opens_and_closes_a_session(glpi: GLPISimulator) -> None:
    found = await glpi_check(glpi, requesttypes_id=7, entities_id=0)
    assert found[0] == ("ok", "API session opened as helpdesk, and closed")
    assert [text for _, text in found[1:]] == ["request source 7 (Chat) exists",
                                               "entity 0 (Root entity) exists"]
    paths = [r.path.rsplit("/", 1)[-1] for r in glpi.request_log]
    assert paths[0] == "initSession" and paths[-1] == "killSession"


@pytest.mark.parametrize(("options", "words"), [
    ({"user_token": "wrong-user-token"}, ["ERROR_GLPI_LOGIN_USER_TOKEN", "`user_token`",
                                          "Remote access keys", "external token"]),
    ({"app_token": "wrong-app-token"}, ["ERROR_WRONG_APP_TOKEN_PARAMETER", "`app_token`"]),
    ({"app_token": ""}, ["ERROR_APP_TOKEN_PARAMETERS_MISSING", "`app_token`"]),
    ({"requesttypes_id": 99}, ["request source 99", "`requesttypes_id`"]),
])
async def test_glpi_probe_says_which_setting_is_wrong(glpi: GLPISimulator,
                                                      options: dict[str, Any],
                                                      words: list[str]) -> None:
    with pytest.raises(TrackerRejected) as caught:
        await glpi_check(glpi, **options)
    message = str(caught.value)
    assert " — fix: " in message
    for word in words:
        assert word in message
    assert USER_TOKEN not in message and APP_TOKEN not in message


async def test_glpi_probe_names_the_api_client_ip_filter(glpi: GLPISimulator) -> None:
    glpi.ip_allowed = False
    with pytest.raises(TrackerRejected, match=r"ERROR_NOT_ALLOWED_IP.*API client"):
        await glpi_check(glpi)


def mocked(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


async def test_glpi_probe_names_a_disabled_api_and_a_wrong_url() -> None:
    disabled = mocked(lambda r: httpx.Response(400, json=["ERROR", "API disabled"]))
    tracker = GLPITracker(url="http://glpi/apirest.php", user_token="t", transport=disabled)
    with pytest.raises(TrackerRejected, match=r"REST API is disabled.*Enable Rest API"):
        await tracker.check()
    await tracker.aclose()
    page = mocked(lambda r: httpx.Response(404, text="<html>Not Found</html>"))
    tracker = GLPITracker(url="http://glpi/", user_token="t", transport=page)
    with pytest.raises(TrackerRejected, match=r"no GLPI API answers at `url`.*apirest.php"):
        await tracker.check()
    await tracker.aclose()


# --- Redmine's probe, on a mocked API ------------------------------------------------------------


def redmine(routes: dict[str, httpx.Response], **kwargs: Any) -> RedmineTracker:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Redmine-API-Key"] == "k3y-0123456789"
        return routes.get(request.url.path, httpx.Response(404))
    options: dict[str, Any] = {"url": "http://redmine", "api_key": "k3y-0123456789",
                               "project": "helpdesk", "transport": mocked(handler)}
    return RedmineTracker(**options | kwargs)


ME = httpx.Response(200, json={"user": {"id": 5, "login": "bot", "admin": False}})
PROJECT = httpx.Response(200, json={"project": {"id": 1, "identifier": "helpdesk",
                                                "name": "Helpdesk",
                                                "trackers": [{"id": 1, "name": "Bug"}]}})


@pytest.mark.parametrize(("routes", "options", "words"), [
    ({"/users/current.json": httpx.Response(401)}, {}, ["rejected the API key", "`api_key`"]),
    ({"/users/current.json": httpx.Response(403)}, {}, ["REST API is off",
                                                        "Enable REST web service"]),
    ({}, {}, ["no Redmine API answers at `url`"]),
    ({"/users/current.json": ME}, {}, ["bot sees no project 'helpdesk'", "`project`",
                                       "member"]),
    ({"/users/current.json": ME, "/projects/helpdesk.json": httpx.Response(403)}, {},
     ["sees no project"]),
    ({"/users/current.json": ME, "/projects/helpdesk.json": PROJECT}, {"tracker_id": 9},
     ["tracker 9", "`tracker_id`", "1 (Bug)"]),
])
async def test_redmine_probe_says_which_setting_is_wrong(routes: dict[str, httpx.Response],
                                                         options: dict[str, Any],
                                                         words: list[str]) -> None:
    tracker = redmine(routes, **options)
    with pytest.raises(TrackerError) as caught:
        await tracker.check()
    await tracker.aclose()
    for word in words:
        assert word in str(caught.value)
    assert " — fix: " in str(caught.value) and "k3y-0123456789" not in str(caught.value)


async def test_redmine_probe_warns_when_switch_user_has_no_admin_key() -> None:
    tracker = redmine({"/users/current.json": ME, "/projects/helpdesk.json": PROJECT},
                      switch_user=True)
    found = await tracker.check()
    await tracker.aclose()
    assert found[0] == ("ok", "API key of bot accepted")
    assert found[1][0] == "warn" and "not an administrator" in found[1][1]
    assert found[2] == ("ok", "project 'helpdesk' (Helpdesk) is visible to bot")


# --- the monitoring sources' probes, on mocked APIs ----------------------------------------------


async def test_alertmanager_probe() -> None:
    status = {"versionInfo": {"version": "0.25.0"}, "cluster": {"status": "ready"}}
    client = AlertmanagerClient(url="http://am", transport=mocked(
        lambda r: httpx.Response(200, json=status)))
    assert await client.check() == [("ok", "Alertmanager 0.25.0 answers (cluster: ready)")]
    for code, words in ((401, "refused the credentials"), (404, "no Alertmanager API v2")):
        def answer(request: httpx.Request, code: int = code) -> httpx.Response:
            return httpx.Response(code, text="nope")
        client = AlertmanagerClient(url="http://am", bearer="b3arer-xyz",
                                    transport=mocked(answer))
        with pytest.raises(SourceError, match=words) as caught:
            await client.check()
        assert " — fix: " in str(caught.value) and "b3arer-xyz" not in str(caught.value)


async def test_zabbix_probe_asks_the_version_without_the_token_then_uses_it() -> None:
    seen: list[dict[str, Any]] = []

    def api(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if body["method"] == "apiinfo.version":
            return httpx.Response(200, json={"jsonrpc": "2.0", "result": "5.0.1", "id": 1})
        if body.get("auth") != "z-token-0123":
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": 2, "error": {
                "code": -32602, "message": "Invalid params.", "data": "Not authorized."}})
        return httpx.Response(200, json={"jsonrpc": "2.0", "result": "3", "id": 2})

    client = ZabbixClient(url="http://zbx", api_token="z-token-0123", transport=mocked(api))
    found = await client.check()
    assert "auth" not in seen[0] and seen[1]["auth"] == "z-token-0123"
    assert found[0] == ("ok", "Zabbix 5.0.1 answers")
    assert found[1][0] == "warn" and "older than 6.0" in found[1][1]
    assert found[2] == ("ok", "API token accepted (3 problems visible to its user)")
    wrong = ZabbixClient(url="http://zbx", api_token="other-token", transport=mocked(api))
    with pytest.raises(SourceError, match=r"Not authorized.*fix: set `api_token`"):
        await wrong.check()
    missing = ZabbixClient(url="http://zbx", api_token="t", transport=mocked(
        lambda r: httpx.Response(404, text="no")))
    with pytest.raises(SourceError, match="no Zabbix API answers at `url`"):
        await missing.check()


async def test_icinga_probe() -> None:
    status = {"results": [{"status": {"icingaapplication": {"app": {"version": "r2.13.7"}}}}]}
    client = IcingaClient(url="https://icinga:5665", username="sb", password="pw-0123",
                          transport=mocked(lambda r: httpx.Response(200, json=status)))
    assert (await client.check())[0][1].startswith("Icinga r2.13.7 answers")
    forbidden = IcingaClient(url="https://icinga:5665", username="sb", password="pw-0123",
                             transport=mocked(lambda r: httpx.Response(403, json={})))
    levels = [level for level, _ in await forbidden.check()]
    assert levels == ["ok", "warn"]
    refused = IcingaClient(url="https://icinga:5665", username="sb", password="pw-0123",
                           transport=mocked(lambda r: httpx.Response(401, text="")))
    with pytest.raises(SourceError, match=r"credentials.*fix: set `api_username`"):
        await refused.check()


# --- a self-signed public URL, through the whole doctor (in process) -----------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    # Debian's ca-certificates brings openssl: missing, it is a broken machine, not a skip.
    assert shutil.which("openssl"), "the openssl command is needed to make a certificate"
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
async def mattermost() -> AsyncIterator[MattermostSimulator]:
    server = MattermostSimulator(bot_token="doctor-bot-token-0123")
    await server.start()
    async with httpx.AsyncClient() as client:  # the bot may read the server's configuration
        made = await client.put(f"{server.url}/api/v4/users/{server.bot_id}/roles",
                                json={"roles": "system_user system_admin"},
                                headers={"Authorization": f"Bearer {server.token('admin')}"})
        assert made.status_code == 200
    yield server
    await server.stop()


async def test_a_self_signed_public_url_warns_when_mattermost_would_refuse_it(
        mattermost: MattermostSimulator, tmp_path: Path) -> None:
    listen = free_port()

    async def forward(request: web.Request) -> web.Response:
        # A TLS proxy in front of the listener, as a deployment would have.
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{listen}/healthz")
        return web.Response(body=answer.content, status=answer.status_code,
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp_path))
    await site.start()
    proxy = int(runner.addresses[0][1])
    config, path = doctor_config(mattermost, tmp_path, listen=listen,
                                 public_url=f"https://127.0.0.1:{proxy}")
    service = mattermost.server_config["ServiceSettings"]
    try:
        lines: list[str] = []
        assert await doctor(config, lines.append, config_path=str(path)) == 0, lines
        reached = next(line for line in lines if "where the doctor listened" in line)
        assert "certificate does not verify" in reached
        assert any(line.startswith("[warn] the certificate of https://127.0.0.1:")
                   and "EnableInsecureOutgoingConnections is off" in line for line in lines)
        assert any("AllowedUntrustedInternalConnections lets Mattermost call it" in line
                   for line in lines)

        service["EnableInsecureOutgoingConnections"] = True
        lines = []
        assert await doctor(config, lines.append, config_path=str(path)) == 0, lines
        assert not any(line.startswith("[warn] the certificate") for line in lines), lines
        assert "doctor-bot-token-0123" not in "\n".join(lines)
    finally:
        await runner.cleanup()


# --- an error no check expected ----------------------------------------------------------------


def test_an_unexpected_error_is_one_masked_fail_line_and_the_next_group_runs() -> None:
    lines: list[str] = []
    report = Report(lines.append, ("hidden-token-0123",))
    with guarded(report, "the listener"):
        raise ExceptionGroup("unhandled errors in a TaskGroup", [
            OverflowError("connect(): port must be 0-65535 (hidden-token-0123)")])
    with guarded(report, "tracker glpi"):
        report.ok("tracker glpi: reached")
    assert report.verdict() == 1
    assert lines[0] == ("[FAIL] the listener: unexpected error OverflowError: connect(): port "
                        "must be 0-65535 ([redacted]) — fix: unexpected error in the doctor's "
                        "checks; please report it, with this line (the other checks went on)")
    assert lines[1] == "[  ok] tracker glpi: reached"
    # A file it could not open is named with its setting, not reported as a fault.
    missing = "/nonexistent/private-ca.pem"
    lines.clear()
    with guarded(Report(lines.append), "tracker glpi", [("GLPI_CA (x.ca_bundle)", missing)]):
        raise FileNotFoundError(2, "No such file or directory")
    assert lines == [f"[FAIL] tracker glpi: the file {missing} does not exist (set in GLPI_CA "
                     "(x.ca_bundle)) — fix: set GLPI_CA (x.ca_bundle) to an existing, readable "
                     "CA bundle file (PEM), or empty it to use the system's CAs"]
    # What the guard does not catch: being cancelled or interrupted.
    with pytest.raises(KeyboardInterrupt), guarded(Report(lines.append), "x"):
        raise KeyboardInterrupt


def doctor_config(mattermost: MattermostSimulator, tmp_path: Path, extra: str = "", *,
                  listen: int = 0, public_url: str = "") -> Any:
    """A configuration for the doctor (and where it is): the bot's listener on `listen` (a
    free port by default), reached at `public_url` (by default a port nothing listens on)."""
    path = tmp_path / "plugin.yaml"
    path.write_text(f"""
manifest: {{id: io.test.bot, name: T, version: 1.0.0, min_server_version: 5.36.0}}
settings:
  mattermost: {{url: "{mattermost.url}", token: "${{MM_BOT_TOKEN}}"}}
  security: {{secret: signing-secret-0123456789}}
  listener: {{listen: "127.0.0.1:{listen or free_port()}",
              public_url: "{public_url or f'http://127.0.0.1:{free_port()}'}"}}
  stream: {{hello_timeout: 3}}
{extra}""")
    return load(path, env={"MM_BOT_TOKEN": "doctor-bot-token-0123"}), str(path)


async def test_a_crashing_listener_check_and_a_missing_ca_bundle_do_not_end_the_doctor(
        mattermost: MattermostSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    async def overflowing(url: str, verify: bool) -> httpx.Response:
        # What httpx raises for a public URL whose port is out of range.
        raise ExceptionGroup("unhandled errors in a TaskGroup", [
            OverflowError("connect(): port must be 0-65535.")])

    monkeypatch.setattr(doctor_listener, "_get", overflowing)
    missing = tmp_path / "no-such-ca.pem"
    closed = f"http://127.0.0.1:{free_port()}"
    config, path = doctor_config(mattermost, tmp_path, f"""
  trackers:
    glpi: {{kind: glpi, url: "{closed}/apirest.php", user_token: glpi-user-token-0123,
           tls: {{ca_bundle: "{missing}"}}}}
    redmine: {{kind: redmine, url: "{closed}", api_key: {"k" * 40}, project: helpdesk}}
  alerts: {{sources: {{generic: {{}}}}}}
""")
    lines: list[str] = []
    assert await doctor(config, lines.append, config_path=path) == 1
    text = "\n".join(lines)
    failures = [line for line in lines if line.startswith("[FAIL] ")]
    assert any(line.startswith("[FAIL] the listener: unexpected error OverflowError: connect(): "
                               "port must be 0-65535.") and "please report it" in line
               for line in failures), text
    glpi = [line for line in failures if line.startswith("[FAIL] tracker glpi: ")]
    assert glpi == [f"[FAIL] tracker glpi: the file {missing} does not exist (set in "
                    "settings.trackers.glpi.tls.ca_bundle) — fix: set "
                    "settings.trackers.glpi.tls.ca_bundle to an existing, readable CA bundle "
                    "file (PEM), or empty it to use the system's CAs"], text
    # The checks after the broken ones still ran.
    assert any(line.startswith("[FAIL] tracker redmine: cannot reach") for line in failures), text
    assert "[  ok] alert source generic: nothing to reach" in text
    assert lines[-1].startswith("verdict: NOT READY")
    assert "glpi-user-token-0123" not in text and "k" * 40 not in text


async def test_a_public_url_with_an_impossible_port_is_named_with_its_fix(
        mattermost: MattermostSimulator, tmp_path: Path) -> None:
    config, path = doctor_config(mattermost, tmp_path)
    s = config.settings
    # Built past the configuration's own checks, as an older or hand-made one may be.
    config = config.model_copy(update={"settings": s.model_copy(update={
        "listener": s.listener.model_copy(update={"public_url": "http://127.0.0.1:99999"})})})
    lines: list[str] = []
    assert await doctor(config, lines.append, config_path=path) == 1
    failures = [line for line in lines if line.startswith("[FAIL] ")]
    assert failures == ["[FAIL] the public URL http://127.0.0.1:99999 is not valid: its port is "
                        "not a number from 1 to 65535 — fix: set settings.listener.public_url "
                        f"to the URL Mattermost uses to reach {s.listener.listen}, e.g. "
                        "https://switchboard.example.com"], "\n".join(lines)
    assert lines[-1].startswith("verdict: NOT READY")


# --- settings given in part --------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[2] / "plugin.yaml"
GIVEN_SECRET = "given-secret-value-0123456789"


async def doctor_on_shipped(env: dict[str, str]) -> tuple[int, list[str]]:
    """`switchboard doctor` on the shipped plugin.yaml with only `env` set (the sandbox: no
    Mattermost to reach)."""
    lines: list[str] = []
    code = await doctor(load(SHIPPED, {"SWITCHBOARD_DB": NO_STATE_YET} | env), lines.append,
                        config_path=str(SHIPPED))
    assert not any(GIVEN_SECRET in line for line in lines), lines
    return code, lines


#: A state file not made yet (a new installation).
NO_STATE_YET = "/nonexistent/switchboard-doctor/state.db"
STATE_OK = (f"[  ok] the state store is the SQLite file {NO_STATE_YET}; it is made at first "
            "start")


SANDBOX_WARNING = ("[warn] MM_URL (settings.mattermost.url) is empty: `switchboard run` starts "
                   "the built-in sandbox, and there is no Mattermost to check")
GENERIC_OK = "[  ok] alert source generic: nothing to reach (senders post to /alerts/generic)"


@pytest.mark.parametrize(("env", "failure"), [
    ({"GLPI_URL": "https://glpi.example.org/apirest.php"},
     "[FAIL] settings.trackers.glpi: url is set but user_token is empty — fix: set "
     "GLPI_USER_TOKEN (settings.trackers.glpi.user_token)"),
    ({"REDMINE_API_KEY": GIVEN_SECRET},
     "[FAIL] settings.trackers.redmine: api_key is set but url and project are empty — fix: set "
     "REDMINE_URL (settings.trackers.redmine.url) and REDMINE_PROJECT "
     "(settings.trackers.redmine.project)"),
    ({"ALERTS_CHANNEL": "ops/alerts"},
     "[FAIL] settings.alerts: channel is set but token is empty, so every alert is refused — "
     "fix: set ALERTS_TOKEN (settings.alerts.token)"),
])
async def test_the_doctor_fails_a_setting_given_in_part_with_its_fix(
        env: dict[str, str], failure: str) -> None:
    code, lines = await doctor_on_shipped(env)
    assert code == 1
    assert lines == [failure, SANDBOX_WARNING, GENERIC_OK, STATE_OK,
                     "verdict: NOT READY (1 failed, 1 warning, 2 ok): fix the [FAIL] lines, "
                     "then run `switchboard doctor` again"]


async def test_the_doctor_fails_an_alert_source_whose_alerts_cannot_arrive() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code, lines = await doctor_on_shipped({"ALERTMANAGER_URL": closed})
    assert code == 1
    assert lines[0] == (
        "[FAIL] settings.alerts.sources.alertmanager: url is set but alerts.token and "
        "alerts.channel are empty, so alerts sent to /alerts/alertmanager are refused — fix: set "
        "ALERTS_TOKEN (settings.alerts.token) and ALERTS_CHANNEL (settings.alerts.channel)")
    assert not any("complete enough to run" in line for line in lines)
    # Its API is still checked, on its own line.
    assert any(line.startswith(f"[FAIL] alert source alertmanager: cannot reach {closed}")
               for line in lines), lines


@pytest.mark.parametrize(("env", "warning"), [
    ({"ZABBIX_URL": "https://zabbix.example.org"},
     "[warn] settings.alerts.sources.zabbix: url is set but api_token is empty, so "
     "acknowledgements and silences stay in the chat and never reach Zabbix — fix: set "
     "ZABBIX_API_TOKEN (settings.alerts.sources.zabbix.api_token)"),
    ({"ICINGA_URL": "https://icinga.example.org:5665"},
     "[warn] settings.alerts.sources.nagios: url is set but api_username and api_password are "
     "empty, so acknowledgements and silences stay in the chat and never reach Icinga 2 — fix: "
     "set ICINGA_USER (settings.alerts.sources.nagios.api_username) and ICINGA_PASSWORD "
     "(settings.alerts.sources.nagios.api_password)"),
])
async def test_the_doctor_warns_when_decisions_cannot_go_back_to_the_source(
        env: dict[str, str], warning: str) -> None:
    code, lines = await doctor_on_shipped(
        {"ALERTS_TOKEN": GIVEN_SECRET, "ALERTS_CHANNEL": "ops/alerts"} | env)
    assert code == 0
    # Named once, by the configuration's check: the source's API is not probed without it.
    assert lines == [warning, "[  ok] the configuration is complete enough to run",
                     SANDBOX_WARNING, GENERIC_OK, STATE_OK,
                     "verdict: ready (3 ok, 2 warnings: read the [warn] lines)"]


def test_a_token_list_is_named_by_its_variable() -> None:
    names = SettingNames({"settings": {"listener": {
        "outgoing_tokens": ["${OUTGOING_TOKEN:-}"], "slash_tokens": ["${A}", "${B}"]}}})
    assert names("settings.listener.outgoing_tokens") == \
        "OUTGOING_TOKEN (settings.listener.outgoing_tokens)"
    assert names("settings.listener.slash_tokens") == "settings.listener.slash_tokens"


# --- the running bot's limits ------------------------------------------------------------------


async def test_the_doctor_tells_the_limits_the_running_bot_settled_on(
        mattermost: MattermostSimulator, tmp_path: Path) -> None:
    listen = free_port()
    glpi, zabbix = Limiter(32), Limiter(32)
    glpi.limit = 17
    watch_upstream("tracker", "helpdesk-glpi", glpi)
    watch_upstream("source", "zabbix", zabbix)
    metrics = Metrics()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "websocket": "connected"})

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", listen).start()
    config, path = doctor_config(mattermost, tmp_path, listen=listen,
                                 public_url=f"http://127.0.0.1:{listen}")
    try:
        lines: list[str] = []
        assert await doctor(config, lines.append, config_path=str(path)) == 0, lines
    finally:
        await runner.cleanup()
    assert any("leads to the running bot" in line for line in lines), lines
    # (Clients other tests built may linger in this process until collected: not these.)
    info = [line for line in lines if line.startswith(("[info] tracker helpdesk-glpi:",
                                                      "[info] alert source zabbix:"))]
    assert info == [
        "[info] tracker helpdesk-glpi: the running bot keeps up to 17 requests at once on the "
        "wire to it (at most 32), as its answers allow",
        "[info] alert source zabbix: the running bot keeps up to 4 requests at once on the "
        "wire to it (at most 32), as its answers allow"], lines
    assert lines[-1].startswith("verdict: ready")
