"""The listener checks: `listener.public_url` leads to `listener.listen`, and Mattermost may call
it (`ServiceSettings.AllowedUntrustedInternalConnections`, `EnableInsecureOutgoingConnections`).

When the bot is not running, the doctor listens on `listener.listen` itself for a moment, with a
`/healthz` that answers a one-time value, so that reaching it through the public URL proves the
URL leads to this listener and not merely to some server. When the bot is running, its
`/metrics` there also tell how many requests at once it has settled on for each tracker and
monitoring source: one `[info]` line each.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..config import Settings
from ..httpserver import HTTPServer, Request, Response, Router, json_response
from ..mattermost import MattermostAPI, MattermostError
from ..metrics import UPSTREAM_LIMIT
from .mattermost import get_json
from .report import TLS, TLS_NAME, Report, SettingNames, reach_error

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The ranges Mattermost refuses to call unless allowed (its `IsReservedIP`, RFC 6890).
RESERVED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10"))
_INTERNAL_SUFFIXES = (".local", ".localdomain", ".internal", ".intranet", ".lan", ".home",
                      ".corp", ".home.arpa", ".localhost")
_ALLOWED = "ServiceSettings.AllowedUntrustedInternalConnections"
_ALLOWED_WHERE = ("System Console > Environment > Developer > Allow untrusted internal "
                  "connections to")
_INSECURE = "ServiceSettings.EnableInsecureOutgoingConnections"


def internal_reason(host: str, addresses: Iterable[IPAddress],
                    own: Iterable[IPAddress] = ()) -> str:
    """Why Mattermost would refuse to call `host` unless allowed: "a loopback address", "a
    private address", ..., or "" when it calls it freely. `addresses` are what `host` resolves
    to; `own` are the Mattermost server's addresses (it refuses those too)."""
    own = set(own)
    for ip in addresses:
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_link_local:
            return "a link-local address"
        if any(ip.version == net.version and ip in net for net in RESERVED):
            return "a private address"
        if ip in own:
            return "the Mattermost server's own address"
    name = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return ""
    except ValueError:
        pass
    if "." not in name or name == "localhost" or name.endswith(_INTERNAL_SUFFIXES):
        return "an internal name"
    return ""


def allowed_entries(setting: str) -> list[str]:
    """The hosts, IPs and CIDRs of an AllowedUntrustedInternalConnections value."""
    return [e for e in re.split(r"[\s,]+", setting) if e]


def is_allowed(host: str, addresses: Iterable[IPAddress], setting: str) -> bool:
    """Whether the setting lets Mattermost call `host`, as its outgoing client decides: the host
    itself is listed (a name or an IP, as written in the URL), or an address it resolves to is in
    a listed CIDR range. (A plain IP entry matches only a URL written with that IP.)"""
    entries = allowed_entries(setting)
    if host.lower().rstrip(".") in {e.lower().rstrip(".") for e in entries}:
        return True
    networks = []
    for entry in entries:
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
    return any(ip.version == net.version and ip in net
               for ip in addresses for net in networks)


async def resolve(host: str, timeout: float = 5.0) -> list[IPAddress]:
    """The addresses a host name (or IP literal) stands for; [] when it does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, None), timeout)
    except (OSError, TimeoutError):
        return []
    out: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip not in out:
            out.append(ip)
    return out


def url_problem(url: str) -> str:
    """What makes `url` unusable as the listener's public URL, or "" when nothing does."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it has no host name"
    try:
        parts.port  # noqa: B018 - reading it is the check: out of range raises
    except ValueError:
        return "its port is not a number from 1 to 65535"
    if parts.port == 0:
        return "its port is not a number from 1 to 65535"
    return ""


async def _serve_health(host: str, port: int, nonce: str) -> HTTPServer | None:
    """Listen on host:port with a /healthz answering `nonce`; None when the port is taken."""
    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "doctor": nonce})

    router = Router()
    router.get("/healthz", healthz)
    server = HTTPServer(router, host, port)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    return server


def _bot_health(response: httpx.Response) -> str | None:
    """The bot's own /healthz answer: its status ("ok", "unhealthy"), else None."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and "websocket" in body and "status" in body:
        return str(body["status"])
    return None


async def check_listener(report: Report, s: Settings, names: SettingNames,
                         api: MattermostAPI | None, bot: str = "the bot") -> None:
    """The public URL reaches the listener; then, with `api` (signed in as `bot`), the
    server's side of it."""
    public, listen = s.listener.public_url, s.listener.listen
    public_name, listen_name = names("settings.listener.public_url"), \
        names("settings.listener.listen")
    if not public:
        report.warn("settings.listener.public_url is empty: Mattermost cannot call the bot, so "
                    "buttons, dialogs and slash commands cannot work",
                    f"set {public_name} to the URL Mattermost uses to reach {listen}")
        return
    wrong = url_problem(public)
    if wrong:
        report.fail(f"the public URL {public} is not valid: {wrong}",
                    f"set {public_name} to the URL Mattermost uses to reach {listen}, e.g. "
                    "https://switchboard.example.com")
        return
    nonce = secrets.token_hex(8)
    try:
        server = await _serve_health(s.listener.host, s.listener.port, nonce)
    except OSError as exc:
        report.fail(f"the listener cannot listen on {listen} ({exc.strerror or exc})",
                    f"set {listen_name} to an address of this host (0.0.0.0:8470 for every "
                    "interface) and a free port")
        return
    try:
        verified = await _reach(report, s, names, server is not None, nonce)
    finally:
        if server is not None:
            await server.stop()
    if server is None and verified is not None:
        await _upstream_limits(report, _local_url(s))
    if api is not None:
        await _server_side(report, s, api, verified is not False, bot)


def _local_url(s: Settings) -> str:
    """The listener's address as this host reaches it (a wildcard address: loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        s.listener.host, s.listener.host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{s.listener.port}"


async def _upstream_limits(report: Report, base: str) -> None:
    """One `[info]` line per tracker and monitoring source of the running bot: the requests at
    once it has settled on, out of its ceiling. Nothing when its /metrics cannot be read."""
    try:
        response = await _get(base + "/metrics", verify=False)
        text = response.text if response.status_code == 200 else ""
        values: dict[tuple[str, str], dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("switchboard_upstream_"):
                continue
            for sample in family.samples:
                key = (sample.labels.get("kind", ""), sample.labels.get("system", ""))
                values.setdefault(key, {})[sample.name] = sample.value
    except (httpx.HTTPError, ValueError):
        return
    for (kind, system), found in sorted(values.items(), key=lambda i: (i[0][0] != 'tracker', i[0])):
        limit = found.get(UPSTREAM_LIMIT)
        if limit is None:
            continue
        what = {"tracker": "tracker", "source": "alert source"}.get(kind, kind or "system")
        ceiling = found.get(UPSTREAM_LIMIT + "_max")
        most = f" (at most {ceiling:g})" if ceiling is not None else ""
        report.info(f"{what} {system}: the running bot keeps up to {limit:g} requests at once "
                    f"on the wire to it{most}, as its answers allow")


async def _get(url: str, verify: bool) -> httpx.Response:
    async with httpx.AsyncClient(verify=verify, timeout=5.0, trust_env=False) as client:
        return await client.get(url)


async def _reach(report: Report, s: Settings, names: SettingNames, serving: bool,
                 nonce: str) -> bool | None:
    """GET {public_url}/healthz. Returns whether its certificate verified (True for http), or
    None when the URL does not lead to the listener (or nothing could be served there)."""
    public, listen = s.listener.public_url, s.listener.listen
    public_name = names("settings.listener.public_url")
    if not serving:
        try:
            local = await _get(_local_url(s) + "/healthz", verify=False)
        except httpx.HTTPError:
            local = None
        if local is None or _bot_health(local) is None:
            report.fail(f"another program holds {listen}, so the bot cannot listen there",
                        f"stop that program, or set {names('settings.listener.listen')} to a "
                        "free port")
            return None
    verified = True
    try:
        try:
            response = await _get(public + "/healthz", verify=True)
        except httpx.ConnectError as exc:
            if reach_error(exc) not in (TLS, TLS_NAME):
                raise
            verified = False
            response = await _get(public + "/healthz", verify=False)
    except httpx.HTTPError as exc:
        kind = reach_error(exc) or type(exc).__name__
        report.fail(f"{public}/healthz cannot be reached from this host ({kind})",
                    f"{public_name} must lead to the listener ({listen}): check its host name "
                    "and port, a firewall, or the proxy in front of the listener")
        return None
    health = _bot_health(response)
    if serving:
        try:
            ours = response.json().get("doctor") == nonce
        except (ValueError, AttributeError):
            ours = False
    else:
        ours = health is not None
    if not ours:
        report.fail(f"{public} leads to some other server (HTTP {response.status_code} on "
                    "/healthz), not to this listener",
                    f"point {public_name}, or the proxy in front of the listener, at {listen}")
        return None
    who = (f"{listen}, where the doctor listened for a moment" if serving
           else f"the running bot on {listen}")
    note = "" if verified else (f"; its certificate does not verify from here: if it is "
                                f"self-signed, Mattermost needs {_INSECURE}")
    report.ok(f"{public} leads to {who} (checked from this host; Mattermost's host must reach "
              f"it too){note}")
    if not serving and health != "ok":
        report.warn(f"the running bot says it is {health}: its event stream is down or deaf",
                    "read the bot's log")
    return verified


async def _server_side(report: Report, s: Settings, api: MattermostAPI, verified: bool,
                       bot: str) -> None:
    """What the Mattermost server's settings say about calling the public URL."""
    parts = urlsplit(s.listener.public_url)
    host = parts.hostname or ""
    own = await resolve(urlsplit(s.mattermost.url).hostname or "")
    addresses = await resolve(host)
    reason = internal_reason(host, addresses, own)
    if not reason:
        report.ok(f"{host} is a public address: Mattermost calls it without {_ALLOWED}")
    try:
        config = await get_json(api, "/config")
        service = config.get("ServiceSettings") if isinstance(config, dict) else None
        if not isinstance(service, dict):
            raise MattermostError(0, "", "no ServiceSettings in the answer", "/config")
    except MattermostError as exc:
        if reason:
            why = (f"{bot} may not read the server's configuration" if exc.status == 403
                   else f"the server's configuration cannot be read ({exc})")
            report.warn(f"{host} is {reason}: Mattermost calls it only when {_ALLOWED} lists "
                        f"it, and {why}",
                        f"check by hand that {_ALLOWED_WHERE} lists {host}")
        return
    if reason:
        allowed = str(service.get("AllowedUntrustedInternalConnections") or "")
        if is_allowed(host, addresses, allowed):
            report.ok(f"{host} is {reason}, and {_ALLOWED} lets Mattermost call it")
        else:
            wanted = " ".join([*allowed_entries(allowed), host])
            report.fail(f"Mattermost will refuse to call {s.listener.public_url}: {host} is "
                        f"{reason} and {_ALLOWED} ({allowed!r}) does not list it",
                        f"add {host} there ({_ALLOWED_WHERE}), making it {wanted!r}")
    if parts.scheme == "https" and not verified and service.get(
            "EnableInsecureOutgoingConnections") is False:
        report.warn(f"the certificate of {s.listener.public_url} does not verify from this "
                    f"host, and {_INSECURE} is off: Mattermost refuses it unless its own host "
                    "trusts it",
                    "give the listener's proxy a certificate Mattermost trusts, or turn on "
                    "System Console > Environment > Web Server > Enable Insecure Outgoing "
                    "Connections for a self-signed one")
