"""An httpx transport on the lean HTTP/1.1 client of `bridge.http1`.

The bridges speak httpx; this backend carries their requests. httpcore's pool re-checks every
pooled connection (several system calls each) whenever a request starts or ends, and its
per-request machinery, like aiohttp's, cost more CPU than everything else the helpdesk does per
ticket. `bridge.http1` does one write per request and parses the answer as its bytes arrive.
The bridges are unchanged: the transport is injected (`transport=`), as in their tests.

Proxies come from the environment as httpx took them (see `bridge.proxies.EnvProxies`):
`HTTP_PROXY`/`HTTPS_PROXY` by the URL's scheme, `NO_PROXY` for the hosts reached directly.
`~/.netrc` is not read: its credentials would go to every host named there, next to the
bridges' own `Authorization` headers.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from .http1 import (
    ConnectFailed,
    ConnectTimeout,
    HTTPClient,
    HTTPError,
    PoolTimeout,
    ProtocolError,
    ProxyFailed,
    ReadTimeout,
    SendFailed,
)
from .proxies import EnvProxies, ProxyAddress

__all__ = ["EnvProxies", "PooledTransport", "ProxyAddress", "send_plain"]

#: Headers the client computes itself from the URL and the body.
_COMPUTED = frozenset({b"host", b"content-length", b"transfer-encoding"})
_NO_TIMEOUTS: dict[str, Any] = {}
_SCHEMES = frozenset({"http", "https"})


class PooledTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=PooledTransport(...))`: keep-alive connections, at most
    `limit` per server.

    `server_name`, when given, is the name the server's certificate must carry and the name
    sent in SNI, while the connection still goes to the URL's host: for a server reached by
    an address (or an alias) its certificate does not name.

    `trust_env` (the default, as in httpx) takes proxies from the environment, read when the
    transport is made; see `EnvProxies`."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, limit: int = 8,
                 server_name: str = "", trust_env: bool = True) -> None:
        self._client = HTTPClient(limit=limit, verify=verify, server_name=server_name,
                                  proxies=EnvProxies() if trust_env else EnvProxies({}))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _SCHEMES:
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {url.scheme!r}: http or https", request=request)
        timeouts: dict[str, Any] = request.extensions.get("timeout") or _NO_TIMEOUTS
        headers = [pair for pair in request.headers.raw if pair[0].lower() not in _COMPUTED]
        body = await request.aread()
        try:
            answer = await self._client.request(
                request.method, url.scheme, url.raw_host.decode("ascii"), url.port,
                url.raw_path, headers, body, connect=timeouts.get("connect"),
                read=timeouts.get("read"), pool=timeouts.get("pool"))
        except HTTPError as exc:
            raise _httpx_error(exc, request) from exc
        except ValueError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        # The body is handed over as received: httpx decodes it per Content-Encoding.
        return httpx.Response(answer.status, headers=answer.raw_headers,
                              stream=httpx.ByteStream(answer.body), request=request,
                              extensions={"http_version": answer.version.encode(),
                                          "reason_phrase": answer.reason.encode("latin-1")})

    async def aclose(self) -> None:
        await self._client.aclose()


def _httpx_error(exc: HTTPError, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception for one of the client's."""
    kind: type[httpx.TransportError]
    if isinstance(exc, ReadTimeout):
        kind = httpx.ReadTimeout
    elif isinstance(exc, ConnectTimeout):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, PoolTimeout):
        kind = httpx.PoolTimeout
    elif isinstance(exc, ProxyFailed):
        kind = httpx.ProxyError
    elif isinstance(exc, ConnectFailed):
        kind = httpx.ConnectError
    elif isinstance(exc, SendFailed):
        kind = httpx.WriteError
    elif isinstance(exc, ProtocolError):
        kind = httpx.RemoteProtocolError
    else:
        kind = httpx.ReadError
    return kind(str(exc), request=request)


#: Parsed URLs by their text (httpx URLs are immutable): a tracker sends to a few URLs again
#: and again, and parsing one costs more than the rest of the request's preparation.
_URLS: dict[str, httpx.URL] = {}
_URLS_KEPT = 256


def _parsed(url: str) -> httpx.URL:
    parsed = _URLS.get(url)
    if parsed is None:
        if len(_URLS) >= _URLS_KEPT:
            _URLS.clear()
        parsed = _URLS[url] = httpx.URL(url)
    return parsed


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
    request = httpx.Request(method, _parsed(url), params=params, headers=merged, json=json,
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
