"""An httpx transport on aiohttp's connection pool.

The bridges speak httpx; this backend carries their requests. httpcore's pool re-checks every
pooled connection (several system calls each) whenever a request starts or ends, which made the
pool cost more CPU than everything else the helpdesk does per ticket. aiohttp's pool does not.
The bridges are unchanged: the transport is injected (`transport=`), as in their tests.

Proxies come from the environment as httpx took them: `HTTP_PROXY`/`HTTPS_PROXY` (or the lower
case names) by the URL's scheme, `NO_PROXY` for the hosts reached directly. aiohttp's own
`trust_env=True` is not used: it would also send `~/.netrc` credentials to every host named there
(next to the bridges' own `Authorization` headers) and costs two thread hand-offs per request.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
from typing import Any
from urllib.request import getproxies_environment

import aiohttp
import httpx
from yarl import URL

log = logging.getLogger(__name__)

#: Headers aiohttp computes itself from the URL and the body.
_COMPUTED = {"host", "content-length", "transfer-encoding"}

#: A proxy and the headers for it (its credentials, from the proxy URL's user info), or
#: (None, None): go direct.
Proxy = tuple[URL | None, dict[str, str] | None]
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


class EnvProxies:
    """The proxies the environment names, read once (as httpx reads them when a client is
    made): `proxy_for(scheme, host)` says which one a request takes, if any."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = getproxies_environment() if environ is None else environ
        self._env = env
        self._by_scheme: dict[str, Proxy] = {}
        for scheme in ("http", "https"):
            raw = env.get(scheme, "").strip()
            if not raw:
                continue
            url = URL(raw if "://" in raw else f"http://{raw}")
            if url.scheme != "http" or not url.host:
                # As aiohttp's own reading of the environment: an http:// proxy (https://
                # targets go through it with CONNECT), not TLS or SOCKS to the proxy itself.
                log.warning("%s_PROXY is not an http:// proxy URL; ignored",
                            scheme.upper())
                continue
            headers = None
            if url.user:
                pair = f"{url.user}:{url.password or ''}".encode()
                headers = {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode()}
            self._by_scheme[scheme] = (url.with_user(None).with_password(None), headers)
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


class AiohttpTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=AiohttpTransport(...))`: at most `limit` connections.

    `server_name`, when given, is the name the server's certificate must carry and the name
    sent in SNI, while the connection still goes to the URL's host: for a server reached by
    an address (or an alias) its certificate does not name.

    `trust_env` (the default, as in httpx) takes proxies from the environment, read when the
    transport is made; see `EnvProxies`."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, limit: int = 8,
                 server_name: str = "", trust_env: bool = True) -> None:
        self._verify = verify
        self._limit = limit
        self._server_name = server_name or None
        self._proxies = EnvProxies() if trust_env else EnvProxies({})
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_option: bool | ssl.SSLContext = (
                self._verify if isinstance(self._verify, ssl.SSLContext) else bool(self._verify))
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=ssl_option)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"))
        headers = [(k, v) for k, v in request.headers.multi_items()
                   if k.lower() not in _COMPUTED]
        body = await request.aread()
        proxy, proxy_headers = self._proxies.proxy_for(request.url.scheme, request.url.host)
        if proxy_headers and request.url.scheme == "http":
            # aiohttp puts `proxy_headers` on a CONNECT only; a plain request to the proxy
            # carries them itself.
            headers += proxy_headers.items()
            proxy_headers = None
        try:
            async with self._client().request(
                    request.method, str(request.url), headers=headers, data=body or None,
                    timeout=timeout, allow_redirects=False, proxy=proxy,
                    proxy_headers=proxy_headers,
                    server_hostname=self._server_name) as response:
                content = await response.read()
                raw_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in response.raw_headers]
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer in time: {exc}", request=request) from None
        except aiohttp.ClientProxyConnectionError as exc:
            raise httpx.ProxyError(f"cannot connect to the proxy {proxy}: {exc.os_error}",
                                   request=request) from None
        except aiohttp.ClientHttpProxyError as exc:
            raise httpx.ProxyError(f"the proxy {proxy} refused the connection: HTTP "
                                   f"{exc.status} {exc.message}", request=request) from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"cannot connect: {exc.os_error}", request=request) from None
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from None
        # The body is handed over as received: httpx decodes it per Content-Encoding.
        return httpx.Response(response.status, headers=raw_headers,
                              stream=httpx.ByteStream(content), request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def send_plain(client: httpx.AsyncClient, method: str, url: str, *,
                     headers: dict[str, str], params: httpx.QueryParams | None = None,
                     json: Any = None) -> httpx.Response:
    """`client.request(method, url, ...)` for the common request: an absolute URL, no
    credentials, no body or a JSON one, no redirect followed (the client must have no `auth`
    and `follow_redirects=False`). The request and the answer are those `client.request` makes:
    the client's headers, cookies and timeouts, the transport it picks for the URL, the body
    read, the cookies it sets kept; without the per-request machinery of auth and redirect
    flows, hooks and logging, which such a request does not use. Anything else goes through
    `client.request`."""
    merged = client.headers.copy()
    merged.update(headers)
    request = httpx.Request(method, url, params=params, headers=merged, json=json,
                            extensions={"timeout": client.timeout.as_dict()})
    if request.url.userinfo or client.is_closed:
        # Credentials in the URL, or a closed client: as the client handles them.
        return await client.request(method, url, params=params, headers=headers, json=json)
    if client.cookies:
        client.cookies.set_cookie_header(request)
    # The transport the client picks for this URL (a proxy mounted from the environment).
    transport = client._transport_for_url(request.url)
    response = await transport.handle_async_request(request)
    response.request = request
    try:
        await response.aread()
    finally:
        await response.aclose()
    if "set-cookie" in response.headers:
        client.cookies.extract_cookies(response)
    return response
