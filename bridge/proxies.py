"""Which proxy a request takes, from the environment as httpx reads it.

`HTTP_PROXY`/`HTTPS_PROXY` (or the lower case names) by the URL's scheme, `NO_PROXY` for the
hosts reached directly, loopback never proxied. Only http:// proxies are taken (https://
targets go through them with CONNECT); credentials in the proxy URL become a
`Proxy-Authorization` header for the proxy alone. `~/.netrc` is not read.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from typing import NamedTuple
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment

log = logging.getLogger("bridge.transport")


class ProxyAddress(NamedTuple):
    """An http:// proxy; shown as its URL, without credentials."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


#: A proxy and the headers for it (its credentials), or (None, None): go direct.
Proxy = tuple[ProxyAddress | None, dict[str, str] | None]
_DIRECT: Proxy = (None, None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy(host: str, no_proxy: str) -> bool:
    """Whether `NO_PROXY` names `host`: `*`, the host itself, a domain it is in (`example.org`,
    `.example.org` or `*.example.org`), or a network holding its address (`10.0.0.0/8`)."""
    for entry in no_proxy.lower().split(","):
        name = entry.strip()
        if name == "*":
            return True
        if "/" in name:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if name.count(":") == 1:  # host:port; the port is not told apart here
            name = name.partition(":")[0]
        name = name.strip("[]").lstrip("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _parse(scheme: str, raw: str) -> Proxy | None:
    """The proxy a `<scheme>_proxy` value names, or None (with a warning) when it is not an
    http:// proxy URL."""
    try:
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        port = parts.port or 80
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme.lower() != "http" or not parts.hostname:
        log.warning("%s_PROXY is not an http:// proxy URL; ignored", scheme.upper())
        return None
    headers = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
    return ProxyAddress(parts.hostname, port), headers


class EnvProxies:
    """The proxies the environment names, read once (as httpx reads them when a client is
    made): `proxy_for(scheme, host)` says which one a request takes, if any."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = getproxies_environment() if environ is None else environ
        self._env = env
        self._by_scheme: dict[str, Proxy] = {}
        for scheme in ("http", "https"):
            raw = env.get(scheme, "").strip()
            proxy = _parse(scheme, raw) if raw else None
            if proxy is not None:
                self._by_scheme[scheme] = proxy
        self._bypass: dict[str, bool] = {}

    def proxy_for(self, scheme: str, host: str) -> Proxy:
        """The proxy for a request to `host` by `scheme`; `(None, None)` to connect directly."""
        proxy = self._by_scheme.get(scheme)
        if proxy is None:
            return _DIRECT
        host = host.lower().rstrip(".").strip("[]")
        bypass = self._bypass.get(host)
        if bypass is None:
            # This host's loopback is never the proxy's: a proxy could only reach its own.
            bypass = _is_loopback(host) or _no_proxy(host, self._env.get("no", ""))
            self._bypass[host] = bypass
        return _DIRECT if bypass else proxy
