"""An httpx transport on the lean HTTP/1.1 client of `bridge.http1`, and `send_plain`.

The bridges speak httpx; this backend carries their requests. httpcore's pool re-checks every
pooled connection (several system calls each) whenever a request starts or ends, and its
per-request machinery, like aiohttp's, cost more CPU than everything else the helpdesk does per
ticket. `bridge.http1` does one write per request and parses the answer as its bytes arrive.
The bridges are unchanged: the transport is injected (`transport=`), as in their tests.

`send_plain` goes one step further for the common request (an absolute URL, a JSON body or
none): when the client's transport for the URL is a `PooledTransport`, it hands the request to
the HTTP client without making httpx's request and response objects, and returns a
`PlainResponse`; the bytes on the wire are those `client.request` sends.

Proxies come from the environment as httpx took them (see `bridge.proxies.EnvProxies`):
`HTTP_PROXY`/`HTTPS_PROXY` by the URL's scheme, `NO_PROXY` for the hosts reached directly.
`~/.netrc` is not read: its credentials would go to every host named there, next to the
bridges' own `Authorization` headers.
"""

from __future__ import annotations

import json as jsonlib
import ssl
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from .http1 import (
    Answer,
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
from .responses import DECODED, PlainRequest, PlainResponse, ResponseLike, decode_body

__all__ = ["EnvProxies", "PooledTransport", "ProxyAddress", "send_plain"]

#: Headers the client computes itself from the URL and the body.
_COMPUTED = frozenset({b"host", b"content-length", b"transfer-encoding"})
_NO_TIMEOUTS: dict[str, Any] = {}
_SCHEMES = frozenset({"http", "https"})
#: JSON bodies as httpx encodes them (`httpx._content.encode_json`): compact, UTF-8, no NaN.
_JSON = jsonlib.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_JSON_TYPE = (b"Content-Type", b"application/json")
HeaderPairs = Sequence[tuple[bytes, bytes]]


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
        answer = await self.exchange(request.method, url, headers, body, lambda: request,
                                     connect=timeouts.get("connect"), read=timeouts.get("read"),
                                     pool=timeouts.get("pool"))
        return _httpx_response(answer, request)

    async def exchange(self, method: str, url: httpx.URL, headers: HeaderPairs, body: bytes,
                       request: Callable[[], httpx.Request], *, connect: float | None,
                       read: float | None, pool: float | None) -> Answer:
        """Send one request (an http(s) URL; `headers` without Host, Content-Length and
        Transfer-Encoding) and read the whole answer. Failures are raised as the httpx
        exceptions of the same meaning, carrying the request `request()` makes."""
        try:
            return await self._client.request(
                method, url.scheme, url.raw_host.decode("ascii"), url.port, url.raw_path,
                headers, body, connect=connect, read=read, pool=pool)
        except HTTPError as exc:
            raise _httpx_error(exc, request()) from exc
        except ValueError as exc:  # a header or target that would break the request's framing
            raise httpx.LocalProtocolError(str(exc), request=request()) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


#: The httpx exception for each of the client's, most specific first (a timeout on connect is
#: a `ConnectTimeout`, not a `ConnectError`); anything else is a `ReadError`.
_HTTPX_ERRORS: tuple[tuple[type[HTTPError], type[httpx.TransportError]], ...] = (
    (ReadTimeout, httpx.ReadTimeout), (ConnectTimeout, httpx.ConnectTimeout),
    (PoolTimeout, httpx.PoolTimeout), (ProxyFailed, httpx.ProxyError),
    (ConnectFailed, httpx.ConnectError), (SendFailed, httpx.WriteError),
    (ProtocolError, httpx.RemoteProtocolError))


def _httpx_error(exc: HTTPError, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception for one of the client's."""
    kind = next((theirs for ours, theirs in _HTTPX_ERRORS if isinstance(exc, ours)),
                httpx.ReadError)
    return kind(str(exc), request=request)


def _httpx_response(answer: Answer, request: httpx.Request) -> httpx.Response:
    """The answer as an httpx response, its body still to be read (and decoded by httpx)."""
    return httpx.Response(answer.status, headers=answer.raw_headers,
                          stream=httpx.ByteStream(answer.body), request=request,
                          extensions={"http_version": answer.version.encode(),
                                      "reason_phrase": answer.reason.encode("latin-1")})


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
                     json: Any = None) -> ResponseLike:
    """`client.request(method, url, params=..., headers=..., json=...)` for an absolute URL,
    with the answer's body read.

    When the client's transport for the URL is a `PooledTransport` and the client has no
    cookies, no default query, no `auth`, no event hooks and does not follow redirects, the
    request goes to that transport's HTTP client directly, with the same bytes on the wire
    (the client's headers and the call's, merged as httpx merges them; the JSON body as httpx
    encodes it) and the client's timeouts; the answer is a `PlainResponse`, its body decoded
    per Content-Encoding. Answers that set cookies, or whose encoding httpx alone decodes, come
    back as the `httpx.Response` the client would have made, their cookies kept by the client.
    Failures are the httpx exceptions `client.request` raises.

    Other requests go through httpx's request and response objects; those the client alone
    handles (a relative URL or one with credentials, `auth`, redirects, default query
    parameters, hooks, a closed client) through `client.request`."""
    parsed = _parsed(url)
    if (not parsed.is_absolute_url or parsed.userinfo or client.is_closed
            or client.auth is not None or client.follow_redirects or client.params
            or any(client.event_hooks.values())):
        return await client.request(method, url, params=params, headers=headers, json=json)
    transport = client._transport_for_url(parsed)
    if (type(transport) is not PooledTransport or client.cookies
            or parsed.scheme not in _SCHEMES or not parsed.raw_host
            or (params is not None and parsed.query)):
        return await _send_httpx(client, method, parsed, headers=headers, params=params,
                                 json=json)
    method = method.upper()
    target = parsed if params is None else httpx.URL(parsed, params=params)
    body = b"" if json is None else _JSON(json).encode("utf-8")
    wire = _wire_headers(client.headers.raw, headers, json is not None)

    def request() -> httpx.Request:
        return _httpx_request(client, method, parsed, headers, params, json)

    timeout = client.timeout
    answer = await transport.exchange(method, target, wire, body, request,
                                      connect=timeout.connect, read=timeout.read,
                                      pool=timeout.pool)
    coding = b""
    codings = 0
    cookies = False
    for name, value in answer.raw_headers:
        name = name.lower()
        if name == b"content-encoding":
            codings += 1
            coding = value.strip().lower()
        elif name == b"set-cookie":
            cookies = True
    if cookies or codings > 1 or coding not in DECODED:
        # Cookies to keep, or an encoding httpx decodes (several, brotli, zstd, unknown ones).
        return await _read_httpx(client, _httpx_response(answer, request()))
    try:
        content = decode_body(answer.body, coding)
    except zlib.error as exc:
        raise httpx.DecodingError(str(exc), request=request()) from exc
    return PlainResponse(answer.status, answer.reason, answer.version, answer.raw_headers,
                         content, PlainRequest(method, target), client._default_encoding)


def _wire_headers(defaults: HeaderPairs, headers: dict[str, str],
                  with_json: bool) -> HeaderPairs:
    """The headers httpx sends for a request: the client's, those of the call replacing the
    client's of the same name (and following them), `Content-Type: application/json` for a
    JSON body unless given; without those the HTTP client computes itself."""
    given = [(key.encode("ascii"), value.encode("ascii")) for key, value in headers.items()]
    names = {key.lower() for key, _ in given}
    merged = [pair for pair in defaults if pair[0].lower() not in names]
    merged += given
    if with_json and not any(key.lower() == b"content-type" for key, _ in merged):
        merged.append(_JSON_TYPE)
    return [pair for pair in merged if pair[0].lower() not in _COMPUTED]


def _httpx_request(client: httpx.AsyncClient, method: str, url: httpx.URL,
                   headers: dict[str, str], params: httpx.QueryParams | None,
                   json: Any) -> httpx.Request:
    """The request `client.request` would make."""
    merged = client.headers.copy()
    merged.update(headers)
    return httpx.Request(method, url, params=params, headers=merged,
                         cookies=client.cookies if client.cookies else None, json=json,
                         extensions={"timeout": client.timeout.as_dict()})


async def _send_httpx(client: httpx.AsyncClient, method: str, url: httpx.URL, *,
                      headers: dict[str, str], params: httpx.QueryParams | None,
                      json: Any) -> httpx.Response:
    """The request and the answer `client.request` makes, through the transport it picks for
    the URL (a proxy it mounted from the environment, say), cookies included; without the
    per-request machinery of auth and redirect flows, hooks and logging."""
    request = _httpx_request(client, method, url, headers, params, json)
    transport = client._transport_for_url(request.url)
    response = await transport.handle_async_request(request)
    response.request = request
    return await _read_httpx(client, response)


async def _read_httpx(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    """The answer read whole, as `client.request` leaves it: cookies it sets kept."""
    response.default_encoding = client._default_encoding
    try:
        await response.aread()
    finally:
        await response.aclose()
    if "set-cookie" in response.headers:
        client.cookies.extract_cookies(response)
    return response
